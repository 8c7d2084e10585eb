//! Frames of several groups: which groups of a batch the stager puts into one frame, and that
//! every read (a session's, the tenant's, the fold's, the head at open, retention's trim) finds
//! each group in such frames.

use std::collections::BTreeMap;

use super::Staged;
use crate::events::codec::{self, decode_frame, FRAME_VERSION, FRAME_VERSION_GROUPS};
use crate::events::keys;
use crate::events::log::{
    read, AppendGroup, AppendOutcome, EventLog, Head, LogOptions, StoredEvent, TREE_NAME,
};
use crate::events::schema::EventKind;
use crate::tenancy::fixtures::id;
use crate::tenancy::{TenantCtx, TenantId};

/// Applies a stager's batch to a fresh tree and returns each tenant's frames: first
/// tenant_seq → (version, records).
fn frames_of(mut staged: Staged, tenants: &[&str]) -> BTreeMap<(String, u64), (u8, usize)> {
    staged.seal_frames();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree(TREE_NAME).unwrap();
    tree.apply_batch(staged.batch).unwrap();
    let mut out = BTreeMap::new();
    for tenant in tenants {
        let (start, end) = keys::frame_range(&id(tenant));
        for kv in tree.range(start..end) {
            let (key, value) = kv.unwrap();
            let frame = decode_frame(&value).unwrap();
            let seq = keys::frame_key_seq(&key, &id(tenant)).unwrap();
            out.insert(
                (tenant.to_string(), seq),
                (frame.version, frame.bodies.len()),
            );
        }
    }
    out
}

fn bodies(n: usize, len: usize) -> Vec<Vec<u8>> {
    (b'a'..=b'z')
        .cycle()
        .take(n)
        .map(|b| vec![b; len])
        .collect()
}

fn stage(staged: &mut Staged, tenant: &str, first_tenant_seq: u64, bodies: Vec<Vec<u8>>, s: &str) {
    let tenant: TenantId = id(tenant);
    let session = keys::session_index_prefix(&tenant, &id("prod"), &id("support"), &id(s));
    staged.stage_frame(&tenant, (first_tenant_seq, &[7; 32]), bodies, &session);
}

#[test]
fn a_batchs_groups_of_one_tenant_share_a_frame_until_a_session_comes_again() {
    let mut staged = Staged::new(false);
    stage(&mut staged, "acme", 1, bodies(2, 40), "s1");
    stage(&mut staged, "acme", 3, bodies(1, 40), "s2");
    stage(&mut staged, "beta", 1, bodies(1, 40), "s1");
    // s1's second group in the batch starts another frame: a session is one run in a frame.
    stage(&mut staged, "acme", 4, bodies(1, 40), "s1");
    stage(&mut staged, "acme", 5, bodies(3, 40), "s3");
    let created = staged.undo.created.clone();
    let frames = frames_of(staged, &["acme", "beta"]);
    let want = BTreeMap::from([
        (("acme".to_string(), 1), (FRAME_VERSION_GROUPS, 3)),
        (("acme".to_string(), 4), (FRAME_VERSION_GROUPS, 4)),
        (("beta".to_string(), 1), (FRAME_VERSION, 1)),
    ]);
    assert_eq!(frames, want);
    // Every frame's key is in the undo, so a failed batch takes each back.
    for (tenant, seq) in want.keys() {
        assert!(created.contains(&keys::frame_key(&id(tenant), *seq)));
    }
}

#[test]
fn a_frame_takes_no_group_past_its_byte_bound() {
    let mut staged = Staged::new(false);
    let len = codec::FRAME_COALESCE_BYTES / 4;
    for (i, s) in ["s1", "s2", "s3", "s4"].iter().enumerate() {
        stage(&mut staged, "acme", 1 + i as u64, bodies(1, len), s);
    }
    // A group larger than the bound alone is a frame of its own.
    stage(
        &mut staged,
        "acme",
        5,
        bodies(1, 2 * codec::FRAME_COALESCE_BYTES),
        "s5",
    );
    stage(&mut staged, "acme", 6, bodies(1, len), "s6");
    let three = codec::FRAME_HEADER_BYTES + 3 * (4 + len);
    assert!(three <= codec::FRAME_COALESCE_BYTES && three + 4 + len > codec::FRAME_COALESCE_BYTES);
    let frames = frames_of(staged, &["acme"]);
    let want = BTreeMap::from([
        (("acme".to_string(), 1), (FRAME_VERSION_GROUPS, 3)),
        (("acme".to_string(), 4), (FRAME_VERSION, 1)),
        (("acme".to_string(), 5), (FRAME_VERSION, 1)),
        (("acme".to_string(), 6), (FRAME_VERSION, 1)),
    ]);
    assert_eq!(frames, want);
}

/// Stages a group as the stager does for the stream: its frame, its index entry (of `value`
/// bytes), its unit's end.
fn stage_for_stream(
    staged: &mut Staged,
    (tenant, s): (&str, &str),
    first: u64,
    n: usize,
    value: usize,
) {
    staged.unit_ops.clear();
    let t: TenantId = id(tenant);
    let session = keys::session_index_prefix(&t, &id("prod"), &id("support"), &id(s));
    staged.stage_frame(&t, (first, &[7; 32]), bodies(n, 40), &session);
    staged.put(keys::session_index_key(&session, first), vec![1; value]);
    let last = first + n as u64 - 1;
    let head = Head {
        tenant_seq: last,
        hash: [u8::try_from(last).unwrap(); 32],
    };
    staged.end_unit(&t, head, 5);
}

#[test]
fn for_the_stream_a_frame_and_its_groups_writes_are_one_unit() {
    let mut staged = Staged::new(true);
    stage_for_stream(&mut staged, ("acme", "s1"), 1, 2, 12);
    stage_for_stream(&mut staged, ("acme", "s2"), 3, 1, 12);
    stage_for_stream(&mut staged, ("beta", "s1"), 1, 1, 12);
    // s1 again: another frame, so another unit.
    stage_for_stream(&mut staged, ("acme", "s1"), 4, 1, 12);
    staged.seal_frames();
    let units = std::mem::take(&mut staged.units);
    // Per tenant: (first tenant_seq, records of its frame, index entries, head).
    let mut got: Vec<(String, u64, usize, usize, u64)> = units
        .iter()
        .map(|unit| {
            let (key, frame) = &unit.ops[0];
            let start =
                keys::frame_key_seq(key, &unit.tenant).expect("a unit starts with its frame");
            let frame = decode_frame(frame.as_ref().expect("a put")).unwrap();
            assert_eq!(unit.rev, 5);
            let head = unit.head.tenant_seq;
            assert_eq!(unit.head.hash, [u8::try_from(head).unwrap(); 32]);
            let t = unit.tenant.to_string();
            (t, start, frame.bodies.len(), unit.ops.len() - 1, head)
        })
        .collect();
    got.sort();
    let want = vec![
        ("acme".to_string(), 1, 3, 2, 3),
        ("acme".to_string(), 4, 1, 1, 4),
        ("beta".to_string(), 1, 1, 1, 1),
    ];
    assert_eq!(got, want);
    // The tenant's units keep their order; the sled batch holds exactly the units' writes.
    let acme: Vec<u64> = units
        .iter()
        .filter(|u| u.tenant == id("acme"))
        .map(|u| u.head.tenant_seq)
        .collect();
    assert_eq!(acme, [3, 4]);
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree(TREE_NAME).unwrap();
    tree.apply_batch(staged.batch).unwrap();
    let ops: Vec<_> = units.iter().flat_map(|u| u.ops.iter()).collect();
    assert_eq!(tree.len(), ops.len());
    for (key, value) in ops {
        let stored = tree
            .get(key.as_ref())
            .unwrap()
            .expect("every write of a unit is staged");
        assert_eq!(Some(stored.as_ref()), value.as_deref().map(|v| v.as_ref()));
    }
}

#[test]
fn for_the_stream_a_large_unit_takes_no_more_groups() {
    let mut staged = Staged::new(true);
    // Other writes of 200 KiB a group: the unit closes after the second (past 384 KiB).
    let big = 200 * 1024;
    for (i, s) in ["s1", "s2", "s3", "s4", "s5"].iter().enumerate() {
        stage_for_stream(&mut staged, ("acme", s), 1 + i as u64, 1, big);
    }
    staged.seal_frames();
    let frames: Vec<(u64, usize)> = staged
        .units
        .iter()
        .map(|unit| {
            let start = keys::frame_key_seq(&unit.ops[0].0, &unit.tenant).unwrap();
            let bytes: usize = unit.ops.iter().map(super::op_bytes).sum();
            assert!(
                bytes <= super::super::replica::RECORD_BYTES_MAX,
                "{bytes} bytes"
            );
            (start, unit.ops.len() - 1)
        })
        .collect();
    assert_eq!(frames, [(1, 2), (3, 2), (5, 1)]);
}

fn ctx() -> TenantCtx {
    TenantCtx::new(id("acme"), id("prod"), Some(id("support")))
}

fn group(session: &str, expected_seq: u64, at_ms: u64) -> AppendGroup {
    let kinds = if expected_seq == 0 {
        vec![
            EventKind::SessionStarted {
                user: format!("user-{session}"),
                flow: "f".into(),
                flow_version: "1".into(),
            },
            EventKind::NodeEntered {
                node: "greet".into(),
            },
        ]
    } else {
        vec![EventKind::MessageReceived {
            message_id: format!("{session}-{expected_seq}"),
            user: format!("user-{session}"),
            text: format!("text {session} {expected_seq}"),
        }]
    };
    AppendGroup {
        ctx: ctx(),
        channel: id("slack"),
        session: id(session),
        expected_seq,
        at_ms,
        kinds,
        idempotency: None,
    }
}

const SESSIONS: usize = 24;

/// Appends one group to each session at once (from a thread each, so the stager takes many
/// in one batch); returns each session's last seq after it.
fn round(log: &EventLog, seqs: &mut [u64], at_ms: u64) {
    std::thread::scope(|s| {
        for (n, seq) in seqs.iter_mut().enumerate() {
            s.spawn(move || {
                let g = group(&format!("s{n}"), *seq, at_ms);
                match log.append_blocking(g).unwrap() {
                    AppendOutcome::Appended(a) => *seq = a.last_seq,
                    other => panic!("{other:?}"),
                }
            });
        }
    });
}

fn versions(log: &EventLog) -> Vec<u8> {
    let store = log.inner.shared.store().unwrap();
    let (start, end) = keys::frame_range(&id("acme"));
    store
        .tree
        .range(start..end)
        .values()
        .map(|v| decode_frame(&v.unwrap()).unwrap().version)
        .collect()
}

fn all(log: &EventLog) -> Vec<StoredEvent> {
    let events = log.tenant(&id("acme")).events(1..=u64::MAX);
    events.collect::<Result<_, _>>().unwrap()
}

/// A log in `dir` with rounds of [`SESSIONS`] sessions at `at_ms` 1000 until it holds a frame of
/// several groups: the log, each session's last seq and the rounds.
fn log_with_frames_of_groups(dir: &std::path::Path) -> (EventLog, Vec<u64>, usize) {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    let (seqs, rounds) = rounds_until_frames_of_groups(&log);
    (log, seqs, rounds)
}

/// Rounds of [`SESSIONS`] sessions at `at_ms` 1000 until `log` holds a frame of several groups:
/// each session's last seq and the rounds.
fn rounds_until_frames_of_groups(log: &EventLog) -> (Vec<u64>, usize) {
    let mut seqs = vec![0u64; SESSIONS];
    let mut rounds = 0;
    // Threads racing the stager: a round or a few put several groups in one frame.
    while !versions(log).contains(&FRAME_VERSION_GROUPS) {
        assert!(
            rounds < 50,
            "no frame of several groups after {rounds} rounds"
        );
        round(log, &mut seqs, 1_000);
        rounds += 1;
    }
    (seqs, rounds)
}

#[test]
fn every_read_finds_each_group_in_frames_of_many() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut seqs, rounds) = log_with_frames_of_groups(dir.path());
    let events = all(&log);
    assert_eq!(events.len(), SESSIONS * (2 + rounds - 1));
    let mut prev = codec::GENESIS_HASH;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event.tenant_seq, i as u64 + 1);
        assert_eq!(e.prev_hash, prev, "the chain runs through every frame");
        prev = e.hash;
    }
    let scope = log.scope(&ctx());
    for n in 0..SESSIONS {
        let session = id(&format!("s{n}"));
        let read: Vec<StoredEvent> = scope
            .session_events(&session, 1..=u64::MAX)
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<&StoredEvent> = events
            .iter()
            .filter(|e| e.event.session == session)
            .collect();
        assert_eq!(read.iter().collect::<Vec<_>>(), want, "session s{n}");
        let seqs: Vec<u64> = read.iter().map(|e| e.event.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        let tail: Vec<u64> = scope
            .session_events(&session, 3..=3)
            .map(|e| e.unwrap().event.seq)
            .collect();
        let want_tail: Vec<u64> = seqs.iter().copied().filter(|s| *s == 3).collect();
        assert_eq!(tail, want_tail, "session s{n} from seq 3");
    }
    // The fold gets one group at a time: one session, consecutive seqs.
    let mut groups = 0;
    log.tenant(&id("acme"))
        .fold_frames(1..=u64::MAX, &mut |views| {
            let first = &views[0];
            for (i, v) in views.iter().enumerate() {
                assert_eq!((v.session, v.seq), (first.session, first.seq + i as u64));
            }
            groups += 1;
            Ok::<(), crate::events::log::ReadError>(())
        })
        .unwrap();
    assert_eq!(groups, SESSIONS * rounds);
    // Reopened, the log finds its head in the last frame and appends after it.
    let head = Head {
        tenant_seq: events.len() as u64,
        hash: prev,
    };
    drop(scope);
    drop(log);
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    assert_eq!(log.tenant(&id("acme")).head().unwrap(), Some(head));
    round(&log, &mut seqs, 1_000);
    assert_eq!(all(&log).len(), events.len() + SESSIONS);
}

#[test]
fn a_trim_removes_the_index_entry_of_every_group_in_a_trimmed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let (log, mut seqs, _) = log_with_frames_of_groups(dir.path());
    // A later round keeps a frame after the old ones (the last frame always stays).
    round(&log, &mut seqs, 5_000);
    let report = log.trim(&id("acme"), 2_000, 9_000).unwrap();
    let anchor = report.anchor.unwrap();
    assert!(report.frames > 0);
    let store = log.inner.shared.store().unwrap();
    let dangling: Vec<u64> = store
        .tree
        .scan_prefix(keys::tenant_prefix(&id("acme")))
        .filter_map(|kv| {
            let (k, v) = kv.unwrap();
            let tag = k.get("acme".len() + 1).copied();
            let index = super::super::read::decode_index_value(&v);
            (tag == Some(keys::TAG_SESSION_INDEX)).then(|| index.unwrap().0)
        })
        .filter(|seq| *seq < anchor.first_tenant_seq)
        .collect();
    assert_eq!(
        dangling,
        Vec::<u64>::new(),
        "index entries of trimmed groups"
    );
    // Every session reads what is left of it without an error.
    for n in 0..SESSIONS {
        let read: Vec<StoredEvent> = log
            .scope(&ctx())
            .session_events(&id(&format!("s{n}")), 1..=u64::MAX)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            read.iter().all(|e| e.event.at_ms == 5_000),
            "s{n}: {read:?}"
        );
        assert_eq!(read.len(), 1, "s{n}");
    }
}

#[test]
fn a_damaged_index_never_hands_a_session_another_sessions_events() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = log_with_frames_of_groups(dir.path());
    let store = log.inner.shared.store().unwrap();
    let tree = &store.tree;
    let tenant: TenantId = id("acme");
    // A group followed by another session's group in its frame; its index entry then names one
    // event more than the group has, as a damaged disk might.
    let (session, index_key, tenant_seq, count) = (0..SESSIONS)
        .flat_map(|n| {
            let session = id(&format!("s{n}"));
            let prefix = keys::session_index_prefix(&tenant, &id("prod"), &id("support"), &session);
            let entries: Vec<_> = tree.scan_prefix(&prefix).map(Result::unwrap).collect();
            entries.into_iter().map(move |(k, v)| {
                let (seq, count) = super::super::read::decode_index_value(&v).unwrap();
                (session.clone(), k, seq, count)
            })
        })
        .find(|(_, _, seq, count)| {
            let (start, _) = keys::frame_range(&tenant);
            let upto = keys::frame_key(&tenant, *seq);
            let (key, frame) = tree.range(start..=upto).next_back().unwrap().unwrap();
            let first = keys::frame_key_seq(&key, &tenant).unwrap();
            first + codec::frame_records(&frame).unwrap() as u64 > seq + u64::from(*count)
        })
        .expect("a frame of several groups has a group before its last");
    let mut value = tenant_seq.to_be_bytes().to_vec();
    value.extend_from_slice(&(count + 1).to_be_bytes());
    tree.insert(index_key, value).unwrap();
    let read: Result<Vec<StoredEvent>, _> = log
        .scope(&ctx())
        .session_events(&session, 1..=u64::MAX)
        .collect();
    let err = read.unwrap_err().to_string();
    assert!(err.contains("breaks the group's session or seq"), "{err}");
}

/// Every session index entry of `log`'s tenant acme: (key, value, the first tenant_seq of the
/// frame that holds the group).
fn index_entries(log: &EventLog) -> Vec<(sled::IVec, sled::IVec, u64)> {
    let store = log.inner.shared.store().unwrap();
    let tree = &store.tree;
    let tenant: TenantId = id("acme");
    let mut out = Vec::new();
    for n in 0..SESSIONS {
        let prefix =
            keys::session_index_prefix(&tenant, &id("prod"), &id("support"), &id(&format!("s{n}")));
        for kv in tree.scan_prefix(&prefix) {
            let (k, v) = kv.unwrap();
            let (seq, _) = read::decode_index_value(&v).unwrap();
            let (start, _) = keys::frame_range(&tenant);
            let upto = keys::frame_key(&tenant, seq);
            let (key, _) = tree.range(start..=upto).next_back().unwrap().unwrap();
            out.push((k, v, keys::frame_key_seq(&key, &tenant).unwrap()));
        }
    }
    out
}

fn sessions(log: &EventLog) -> Vec<Vec<StoredEvent>> {
    let scope = log.scope(&ctx());
    (0..SESSIONS)
        .map(|n| {
            scope
                .session_events(&id(&format!("s{n}")), 1..=u64::MAX)
                .collect::<Result<_, _>>()
                .unwrap()
        })
        .collect()
}

#[test]
fn a_groups_index_entry_names_the_frame_that_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = log_with_frames_of_groups(dir.path());
    let entries = index_entries(&log);
    for (_, v, frame_start) in &entries {
        assert_eq!(read::index_frame_start(v), Some(*frame_start));
    }
    assert!(
        entries
            .iter()
            .any(|(_, v, start)| read::decode_index_value(v).unwrap().0 != *start),
        "some group is not its frame's first"
    );
}

#[test]
fn index_entries_of_the_older_form_or_naming_another_frame_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = log_with_frames_of_groups(dir.path());
    let want = sessions(&log);
    let store = log.inner.shared.store().unwrap();
    let entries = index_entries(&log);
    // Written before the index kept the group's place: the frame is searched for.
    for (k, v, _) in &entries {
        store.tree.insert(k, &v[..10]).unwrap();
    }
    assert_eq!(sessions(&log), want, "entries of the older form");
    // An offset naming the tenant's first frame, which holds only the earliest groups.
    for (k, v, _) in &entries {
        let (seq, count) = read::decode_index_value(v).unwrap();
        let offset = u16::try_from(seq - 1).ok();
        store
            .tree
            .insert(k, read::encode_index_value(seq, count, offset))
            .unwrap();
    }
    assert_eq!(sessions(&log), want, "entries naming another frame");
}

#[test]
fn an_index_value_reads_in_both_forms_and_no_other_length() {
    let new = read::encode_index_value(9, 3, Some(4));
    assert_eq!(new.len(), 12);
    assert_eq!(read::decode_index_value(&new), Some((9, 3)));
    assert_eq!(read::index_frame_start(&new), Some(5));
    let old = read::encode_index_value(9, 3, None);
    assert_eq!(old.len(), 10);
    assert_eq!(read::decode_index_value(&old), Some((9, 3)));
    assert_eq!(read::index_frame_start(&old), None);
    for len in [0, 8, 9, 11, 13] {
        let mut v = new.clone();
        v.resize(len, 0);
        assert_eq!(read::decode_index_value(&v), None, "{len} bytes");
    }
    // An offset past the group's own tenant_seq names no frame.
    assert_eq!(
        read::index_frame_start(&read::encode_index_value(3, 1, Some(4))),
        None
    );
}

/// sled writes a page (a whole leaf of up to 17 items) over segment size / 4 (128 KiB) to a blob
/// file of its own, which it never fsyncs: a power loss could take acknowledged events with it.
/// Frames of several groups stay small enough that a leaf of them never gets there.
#[test]
fn frames_of_several_groups_never_make_sled_write_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let text = "x".repeat(1_500);
    let mut seqs = vec![0u64; 48];
    for _ in 0..12 {
        std::thread::scope(|s| {
            for (n, seq) in seqs.iter_mut().enumerate() {
                let (log, text) = (&log, &text);
                s.spawn(move || {
                    let mut g = group(&format!("s{n}"), *seq, 1_000);
                    if let Some(EventKind::MessageReceived { text: t, .. }) = g.kinds.first_mut() {
                        t.clone_from(text);
                    }
                    match log.append_blocking(g).unwrap() {
                        AppendOutcome::Appended(a) => *seq = a.last_seq,
                        other => panic!("{other:?}"),
                    }
                });
            }
        });
    }
    assert!(versions(&log).contains(&FRAME_VERSION_GROUPS));
    drop(log);
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("blobs"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert_eq!(blobs, Vec::<std::ffi::OsString>::new(), "sled's blob files");
}

/// A group of five 16 KiB texts is a frame of ~80 KiB; two in a leaf pass sled's blob threshold.
fn big_group(session: &str, expected_seq: u64) -> AppendGroup {
    let text = "y".repeat(codec::TEXT_BYTES_MAX);
    let mut g = group(session, expected_seq, 1_000);
    if let Some(EventKind::MessageReceived { text: t, .. }) = g.kinds.first_mut() {
        t.clone_from(&text);
    }
    g.kinds.extend((0..4).map(|i| EventKind::StateSet {
        key: format!("k{i}"),
        value: text.clone(),
    }));
    g
}

fn blob_files(dir: &std::path::Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect()
}

#[test]
fn every_blob_file_sled_writes_is_fsynced_by_the_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let mut seqs = vec![0u64; 1];
    round(&log, &mut seqs, 1_000);
    for _ in 0..40 {
        match log.append_blocking(big_group("s0", seqs[0])).unwrap() {
            AppendOutcome::Appended(a) => seqs[0] = a.last_seq,
            other => panic!("{other:?}"),
        }
    }
    let before = blob_files(dir.path());
    assert!(
        !before.is_empty(),
        "leaves of large frames make sled write blob files"
    );
    round(&log, &mut seqs, 1_000);
    // Every blob file there before that commit (and not removed by sled since) was synced.
    let synced = log.inner.shared.blobs.synced();
    let now = blob_files(dir.path());
    let unsynced: Vec<_> = before
        .intersection(&now)
        .filter(|f| !synced.contains(*f))
        .collect();
    assert!(unsynced.is_empty(), "not synced: {unsynced:?}");
}

/// Each MessageReceived of the tenant as (session, text, erased), read by the event read and by
/// the fold (which opens sealed fields its own way).
/// (session, text, erased) as the event read has them.
type ReadTexts = Vec<(String, String, bool)>;
/// (session, text) as the fold has them.
type FoldedTexts = Vec<(String, String)>;

fn texts(log: &EventLog) -> (ReadTexts, FoldedTexts) {
    let read = all(log)
        .into_iter()
        .filter_map(|e| match e.event.kind {
            EventKind::MessageReceived { text, .. } => {
                Some((e.event.session.to_string(), text, e.erased))
            }
            _ => None,
        })
        .collect();
    let mut folded = Vec::new();
    log.tenant(&id("acme"))
        .fold_frames(1..=u64::MAX, &mut |views| {
            for v in views {
                if let crate::events::schema::KindView::MessageReceived { text } = v.kind {
                    folded.push((v.session.to_owned(), text.to_owned()));
                }
            }
            Ok::<(), crate::events::log::ReadError>(())
        })
        .unwrap();
    (read, folded)
}

#[test]
fn sealed_groups_sharing_a_frame_open_with_their_own_sessions_keys_and_erase_alone() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keyring: Some(crate::events::log::fixtures::keyring(dir.path())),
        ..LogOptions::default()
    };
    let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
    let mut seqs = vec![0u64; SESSIONS];
    round(&log, &mut seqs, 1_000);
    round(&log, &mut seqs, 1_000);
    while !versions(&log).contains(&FRAME_VERSION_GROUPS) {
        round(&log, &mut seqs, 1_000);
    }
    // Every text is its own session's, opened (its seq is in the text the group wrote).
    let (read, folded) = texts(&log);
    assert!(!read.is_empty());
    for (session, text, erased) in &read {
        assert!(
            text.starts_with(&format!("text {session} ")),
            "{session}: {text}"
        );
        assert!(!erased);
    }
    let plain: Vec<(String, String)> = read
        .iter()
        .map(|(s, t, _)| (s.clone(), t.clone()))
        .collect();
    assert_eq!(folded, plain);
    // Erasing s0 empties only s0's texts, in frames it shares with the other sessions.
    let sessions: Vec<_> = log
        .scope(&ctx())
        .sessions()
        .map(Result::unwrap)
        .filter(|s| s.session.as_str() == "s0")
        .collect();
    let done = log.erase_sessions_offline(&id("acme"), &sessions).unwrap();
    assert_eq!(done.keys_destroyed, 1);
    let (read, folded) = texts(&log);
    for ((session, text, erased), (_, folded_text)) in read.iter().zip(&folded) {
        let is_s0 = session == "s0";
        assert_eq!(
            (*erased, text.is_empty()),
            (is_s0, is_s0),
            "{session}: {text}"
        );
        assert_eq!(folded_text, text);
    }
}

#[test]
fn on_the_jetstream_backend_frames_of_several_groups_travel_to_a_fresh_cache() {
    let server = crate::events::log::replica::tests::JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    let (seqs, rounds) = rounds_until_frames_of_groups(&log);
    let written = all(&log);
    assert_eq!(written.len(), SESSIONS * (2 + rounds - 1));
    drop(log);

    // Another node's cache is made from the stream alone: the same frames, every session whole.
    let other = server.open(b.path(), "LOG", "n2").unwrap();
    assert!(versions(&other).contains(&FRAME_VERSION_GROUPS));
    assert_eq!(all(&other), written);
    let scope = other.scope(&ctx());
    for (n, last) in seqs.iter().enumerate() {
        let session = id(&format!("s{n}"));
        let read: Vec<u64> = scope
            .session_events(&session, 1..=u64::MAX)
            .map(|e| e.unwrap().event.seq)
            .collect();
        assert_eq!(read, (1..=*last).collect::<Vec<_>>(), "session s{n}");
    }
    // And it appends after them.
    drop(scope);
    let next = other.append_blocking(group("s0", seqs[0], 2_000)).unwrap();
    assert!(matches!(next, AppendOutcome::Appended(a) if a.first_seq == seqs[0] + 1));
}
