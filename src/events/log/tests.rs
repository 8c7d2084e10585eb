use std::collections::HashMap;
use std::ops::RangeInclusive;

use proptest::prelude::*;

use super::*;
use crate::events::codec::{self, chain_hash, GENESIS_HASH, TEXT_BYTES_MAX};
use crate::events::log::fixtures::flip_last_byte_of_frame;
use crate::events::schema::EventView;
use crate::tenancy::fixtures::id;

fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(id(tenant), id("prod"), Some(id("support")))
}

fn open(dir: &Path) -> EventLog {
    EventLog::open(dir, &LogOptions::default()).unwrap()
}

fn start(ctx: &TenantCtx, session: &str, user: &str) -> AppendGroup {
    AppendGroup {
        ctx: ctx.clone(),
        channel: id("slack"),
        session: id(session),
        expected_seq: 0,
        at_ms: 1000,
        kinds: vec![
            EventKind::SessionStarted {
                user: user.into(),
                flow: "f".into(),
                flow_version: "1".into(),
            },
            EventKind::NodeEntered {
                node: "greet".into(),
            },
        ],
        idempotency: None,
    }
}

fn message(ctx: &TenantCtx, session: &str, expected_seq: u64, text: &str) -> AppendGroup {
    AppendGroup {
        ctx: ctx.clone(),
        channel: id("slack"),
        session: id(session),
        expected_seq,
        at_ms: 2000,
        kinds: vec![EventKind::MessageReceived {
            message_id: format!("m-{text}"),
            user: "u".into(),
            text: text.into(),
        }],
        idempotency: None,
    }
}

fn appended(outcome: Result<AppendOutcome, AppendError>) -> Appended {
    match outcome {
        Ok(AppendOutcome::Appended(a)) => a,
        other => panic!("expected Appended, got {other:?}"),
    }
}

fn all_events(log: &EventLog, tenant: &str) -> Vec<StoredEvent> {
    log.tenant(&id(tenant))
        .events(1..=u64::MAX)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn seqs_are_assigned_gapless_per_session_and_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = ctx("acme");
    let first = appended(log.append_blocking(start(&a, "s1", "u")));
    assert_eq!(
        (
            first.first_seq,
            first.last_seq,
            first.first_tenant_seq,
            first.last_tenant_seq
        ),
        (1, 2, 1, 2)
    );
    let second = appended(log.append_blocking(start(&a, "s2", "u")));
    assert_eq!((second.first_seq, second.first_tenant_seq), (1, 3));
    let third = appended(log.append_blocking(message(&a, "s1", 2, "hi")));
    assert_eq!((third.first_seq, third.first_tenant_seq), (3, 5));

    let events = all_events(&log, "acme");
    assert_eq!(
        events
            .iter()
            .map(|e| e.event.tenant_seq)
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let mut prev = GENESIS_HASH;
    for e in &events {
        assert_eq!(e.prev_hash, prev);
        prev = e.hash;
    }
    assert_eq!(
        log.tenant(&id("acme")).head().unwrap().unwrap(),
        Head {
            tenant_seq: 5,
            hash: prev
        }
    );
    let s1: Vec<u64> = log
        .scope(&a)
        .session_events(&id("s1"), 1..=u64::MAX)
        .map(|e| e.unwrap().event.seq)
        .collect();
    assert_eq!(s1, vec![1, 2, 3]);
    let s1_tail: Vec<u64> = log
        .scope(&a)
        .session_events(&id("s1"), 2..=2)
        .map(|e| e.unwrap().event.seq)
        .collect();
    assert_eq!(s1_tail, vec![2]);
}

#[test]
fn seq_conflicts_and_misplaced_starts_are_rejected_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = ctx("acme");
    appended(log.append_blocking(start(&a, "s1", "u")));
    let err = log
        .append_blocking(message(&a, "s1", 1, "stale"))
        .unwrap_err();
    assert!(
        matches!(
            err,
            AppendError::Rejected(Rejection::SeqConflict {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{err:?}"
    );
    let err = log.append_blocking(start(&a, "s1", "u")).unwrap_err();
    assert!(
        matches!(err, AppendError::Rejected(Rejection::SeqConflict { .. })),
        "{err:?}"
    );
    let err = log
        .append_blocking(message(&a, "new", 0, "no start"))
        .unwrap_err();
    assert!(
        matches!(err, AppendError::Rejected(Rejection::SessionStartMisplaced)),
        "{err:?}"
    );
    let mut too_big = message(&a, "s1", 2, "x");
    too_big.kinds = vec![EventKind::NodeEntered { node: "n".into() }; GROUP_EVENTS_MAX + 1];
    assert!(matches!(
        log.append_blocking(too_big),
        Err(AppendError::Rejected(Rejection::GroupSize(_)))
    ));
    let long_text = "x".repeat(TEXT_BYTES_MAX + 1);
    let mut long = message(&a, "s1", 2, "x");
    long.kinds = vec![EventKind::MessageReceived {
        message_id: "m".into(),
        user: "u".into(),
        text: long_text,
    }];
    assert!(matches!(
        log.append_blocking(long),
        Err(AppendError::Rejected(Rejection::TooLong {
            field: "text",
            ..
        }))
    ));
    let mut other_channel = message(&a, "s1", 2, "x");
    other_channel.channel = id("telegram");
    assert!(matches!(
        log.append_blocking(other_channel),
        Err(AppendError::Rejected(Rejection::ChannelMismatch { .. }))
    ));
    assert_eq!(all_events(&log, "acme").len(), 2);
}

#[test]
fn a_message_id_is_appended_once_and_retries_get_the_first_ack() {
    let dir = tempfile::tempdir().unwrap();
    let a = ctx("acme");
    let with_id = |expected, ack: &str| {
        let mut g = message(&a, "s1", expected, "hello");
        g.idempotency = Some(Idempotency {
            message_id: "msg-1".into(),
            ack: ack.as_bytes().to_vec(),
        });
        g
    };
    {
        let log = open(dir.path());
        appended(log.append_blocking(start(&a, "s1", "u")));
        appended(log.append_blocking(with_id(2, "first")));
        let dup = log.append_blocking(with_id(3, "second")).unwrap();
        let AppendOutcome::Duplicate(rec) = dup else {
            panic!("{dup:?}")
        };
        assert_eq!(
            (rec.first_seq, rec.last_seq, rec.ack.as_slice()),
            (3, 3, b"first".as_slice())
        );
    }
    // Survives a restart, and is scoped: the same id on another channel or tenant is new.
    let log = open(dir.path());
    assert!(matches!(
        log.append_blocking(with_id(3, "third")),
        Ok(AppendOutcome::Duplicate(_))
    ));
    assert_eq!(all_events(&log, "acme").len(), 3);
    let b = ctx("bigcorp");
    appended(log.append_blocking(start(&b, "s1", "u")));
    let mut other_tenant = message(&b, "s1", 2, "hello");
    other_tenant.idempotency = Some(Idempotency {
        message_id: "msg-1".into(),
        ack: vec![],
    });
    appended(log.append_blocking(other_tenant));
    assert!(log
        .scope(&a)
        .idempotency(&id("telegram"), "msg-1")
        .unwrap()
        .is_none());
    assert!(log
        .scope(&a)
        .idempotency(&id("slack"), "msg-1")
        .unwrap()
        .is_some());
}

#[test]
fn concurrent_duplicates_in_one_batch_append_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = ctx("acme");
    appended(log.append_blocking(start(&a, "s1", "u")));
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            let mut g = message(&a, "s1", 2, "same");
            g.idempotency = Some(Idempotency {
                message_id: "dup".into(),
                ack: vec![1],
            });
            std::thread::spawn(move || log.append_blocking(g))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let appended_count = results
        .iter()
        .filter(|r| matches!(r, Ok(AppendOutcome::Appended(_))))
        .count();
    let duplicates = results
        .iter()
        .filter(|r| matches!(r, Ok(AppendOutcome::Duplicate(_))))
        .count();
    assert_eq!((appended_count, duplicates), (1, 15), "{results:?}");
    assert_eq!(all_events(&log, "acme").len(), 3);
}

#[test]
fn tenant_prefixes_never_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for t in ["a", "ab", "a_b", "a-b", "b"] {
        appended(log.append_blocking(start(&ctx(t), "s1", t)));
    }
    for t in ["a", "ab", "a_b", "a-b", "b"] {
        let events = all_events(&log, t);
        assert_eq!(events.len(), 2, "tenant {t}");
        assert!(events.iter().all(|e| e.event.tenant.as_str() == t));
        let sessions: Vec<_> = log
            .scope(&ctx(t))
            .sessions()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].user, t);
    }
    let mut tenants: Vec<String> = log
        .tenants()
        .unwrap()
        .iter()
        .map(|t| t.to_string())
        .collect();
    tenants.sort();
    assert_eq!(tenants, vec!["a", "a-b", "a_b", "ab", "b"]);
    let removed = log.delete_tenant_blocking(&id("a")).unwrap();
    assert!(removed >= 4, "{removed}");
    assert!(all_events(&log, "a").is_empty());
    for t in ["ab", "a_b", "a-b", "b"] {
        assert_eq!(all_events(&log, t).len(), 2, "tenant {t} after deleting a");
    }
}

#[test]
fn open_sessions_follow_start_and_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = ctx("acme");
    appended(log.append_blocking(start(&a, "s1", "ada")));
    assert_eq!(
        log.scope(&a).open_session(&id("slack"), "ada").unwrap(),
        Some(id("s1"))
    );
    assert_eq!(
        log.scope(&a).open_session(&id("telegram"), "ada").unwrap(),
        None
    );
    assert_eq!(
        log.scope(&ctx("bigcorp"))
            .open_session(&id("slack"), "ada")
            .unwrap(),
        None
    );
    let mut end = message(&a, "s1", 2, "bye");
    end.kinds.push(EventKind::SessionEnded {
        reason: "done".into(),
    });
    appended(log.append_blocking(end));
    assert_eq!(
        log.scope(&a).open_session(&id("slack"), "ada").unwrap(),
        None
    );
    appended(log.append_blocking(start(&a, "s2", "ada")));
    assert_eq!(
        log.scope(&a).open_session(&id("slack"), "ada").unwrap(),
        Some(id("s2"))
    );
}

#[test]
fn the_frontier_watch_of_a_tenant_changes_when_its_frontier_moves_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let (acme, bigcorp) = (ctx("acme"), ctx("bigcorp"));
    let mut acme_watch = log.watch_frontier(&acme.tenant);
    let bigcorp_watch = log.watch_frontier(&bigcorp.tenant);
    assert!(!acme_watch.has_changed().unwrap());
    appended(log.append_blocking(start(&acme, "s1", "ada")));
    // Acked means durable means the watch has moved: a stream woken now reads the event.
    assert!(acme_watch.has_changed().unwrap());
    assert!(
        !bigcorp_watch.has_changed().unwrap(),
        "another tenant's watch stays still"
    );
    acme_watch.mark_unchanged();
    assert!(log.durable_frontier(&acme.tenant) > 0);
    appended(log.append_blocking(start(&bigcorp, "s1", "bob")));
    assert!(bigcorp_watch.has_changed().unwrap());
    assert!(!acme_watch.has_changed().unwrap());
}

#[test]
fn a_second_open_of_the_same_dir_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _log = open(dir.path());
    let err = EventLog::open(dir.path(), &LogOptions::default())
        .err()
        .unwrap();
    assert!(matches!(err, OpenError::InUse(_)), "{err}");
    assert!(err.to_string().contains("in use"));
}

#[test]
fn a_corrupt_frame_damages_only_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        appended(log.append_blocking(start(&ctx("acme"), "s1", "u")));
        appended(log.append_blocking(message(&ctx("acme"), "s1", 2, "tail")));
        appended(log.append_blocking(start(&ctx("bigcorp"), "s1", "u")));
    }
    // Acme's last frame.
    flip_last_byte_of_frame(dir.path(), "acme", 3);
    let log = open(dir.path());
    assert_eq!(log.damaged().len(), 1);
    let damage = &log.damaged()[0];
    assert_eq!(damage.tenant.as_str(), "acme");
    assert!(damage.position.contains("tenant_seq 3"), "{damage:?}");
    // The valid prefix is readable, then a clear error naming the tenant and position.
    let read: Vec<_> = log.tenant(&id("acme")).events(1..=u64::MAX).collect();
    assert_eq!(read.len(), 3);
    assert!(read[0].is_ok() && read[1].is_ok());
    let err = read[2].as_ref().unwrap_err();
    assert_eq!(err.tenant.as_str(), "acme");
    assert!(err.to_string().contains("tenant_seq 3"), "{err}");
    // Appends to the damaged tenant are refused; the other tenant is untouched and writable.
    assert!(matches!(
        log.append_blocking(start(&ctx("acme"), "s9", "u")),
        Err(AppendError::TenantDamaged { .. })
    ));
    assert_eq!(all_events(&log, "bigcorp").len(), 2);
    appended(log.append_blocking(message(&ctx("bigcorp"), "s1", 2, "still fine")));
}

#[test]
fn reads_by_tenant_seq_range_start_inside_a_frame() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = ctx("acme");
    appended(log.append_blocking(start(&a, "s1", "u")));
    appended(log.append_blocking(six_event_group(&a, "s1")));
    let seqs: Vec<u64> = log
        .tenant(&id("acme"))
        .events(4..=6)
        .map(|e| e.unwrap().event.tenant_seq)
        .collect();
    assert_eq!(seqs, vec![4, 5, 6]);
}

// ---- The fold's and the export's reads: the same events as `events`, checked the same way. ----

/// acme: s1 (2 events), a 6-event group, s2 (2 events); and acmex with the same ids.
fn log_for_fast_reads(dir: &Path) -> EventLog {
    let log = open(dir);
    for tenant in ["acme", "acmex"] {
        let a = ctx(tenant);
        appended(log.append_blocking(start(&a, "s1", "u")));
        appended(log.append_blocking(six_event_group(&a, "s1")));
        appended(log.append_blocking(start(&a, "s2", "w")));
    }
    log
}

/// The fold read's events of `range`, frame by frame, as the views of decoded events.
fn folded(log: &EventLog, tenant: &str, range: RangeInclusive<u64>) -> Vec<Vec<String>> {
    let mut frames = Vec::new();
    log.tenant(&id(tenant))
        .fold_frames(range, &mut |views| {
            frames.push(views.iter().map(|v| format!("{v:?}")).collect());
            Ok::<(), ReadError>(())
        })
        .unwrap();
    frames
}

#[test]
fn the_fold_read_hands_out_each_frame_as_the_event_read_decodes_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_for_fast_reads(dir.path());
    let frames_of = |range: RangeInclusive<u64>| -> Vec<Vec<u64>> {
        let mut frames = Vec::new();
        log.tenant(&id("acme"))
            .fold_frames(range, &mut |views| {
                frames.push(views.iter().map(|v| v.tenant_seq).collect());
                Ok::<(), ReadError>(())
            })
            .unwrap();
        frames
    };
    // One call per frame (s1's start, its 6-event group, s2's start), cut to the range.
    assert_eq!(
        frames_of(1..=u64::MAX),
        vec![vec![1, 2], (3..=8).collect(), vec![9, 10]]
    );
    assert_eq!(frames_of(4..=6), vec![vec![4, 5, 6]]);
    assert_eq!(frames_of(2..=3), vec![vec![2], vec![3]]);
    assert!(frames_of(11..=20).is_empty());
    for range in [1..=u64::MAX, 4..=6, 2..=3, 9..=10] {
        let expected: Vec<String> = log
            .tenant(&id("acme"))
            .events(range.clone())
            .map(|e| format!("{:?}", EventView::from(&e.unwrap().event)))
            .collect();
        let views: Vec<String> = folded(&log, "acme", range.clone()).concat();
        assert_eq!(views, expected, "range {range:?}");
    }
    assert!(folded(&log, "acme", 1..=u64::MAX)
        .concat()
        .iter()
        .all(|v| v.contains("tenant: \"acme\"")));
}

#[test]
fn the_export_read_carries_each_events_stored_body_which_chains() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_for_fast_reads(dir.path());
    for range in [1..=u64::MAX, 4..=6, 9..=10, 11..=20] {
        let events: Vec<StoredEvent> = log
            .tenant(&id("acme"))
            .events(range.clone())
            .collect::<Result<_, _>>()
            .unwrap();
        let frames: Vec<StoredFrame> = log
            .tenant(&id("acme"))
            .stored_frames(range.clone())
            .collect::<Result<_, _>>()
            .unwrap();
        let mut read = Vec::new();
        for frame in &frames {
            assert!(!frame.is_empty() && frame.len() <= frame.events().count());
            for (stored, body) in frame.events() {
                assert_eq!(chain_hash(&stored.prev_hash, body), stored.hash);
                assert_eq!(codec::decode_body(body).unwrap(), stored.event);
                read.push(stored.clone());
            }
        }
        assert_eq!(read, events, "range {range:?}");
    }
}

#[test]
fn the_fold_and_export_reads_stop_at_a_corrupt_frame_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_for_fast_reads(dir.path()));
    // Acme's 6-event frame (tenant_seq 3..=8).
    flip_last_byte_of_frame(dir.path(), "acme", 3);
    let log = open(dir.path());
    let reader = log.tenant(&id("acme"));
    let mut seen = Vec::new();
    let err = reader
        .fold_frames(1..=u64::MAX, &mut |views| {
            seen.extend(views.iter().map(|v| v.tenant_seq));
            Ok::<(), ReadError>(())
        })
        .unwrap_err();
    assert_eq!(seen, vec![1, 2]);
    assert!(err.to_string().contains("tenant_seq 3"), "{err}");
    let frames: Vec<_> = reader.stored_frames(1..=u64::MAX).collect();
    assert_eq!(
        frames.len(),
        2,
        "the valid frame, then the error, then nothing"
    );
    assert!(frames[0].is_ok());
    let err = frames[1].as_ref().err().unwrap();
    assert!(err.to_string().contains("tenant_seq 3"), "{err}");
    // The other tenant, with the same ids, reads whole.
    assert_eq!(folded(&log, "acmex", 1..=u64::MAX).len(), 3);
}

// ---- Model-based property test: random appends and restarts over 3 tenants sharing ids. ----

#[derive(Clone, Debug)]
enum Op {
    Append {
        tenant: usize,
        session: usize,
        events: usize,
        message_id: Option<u8>,
        end: bool,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3usize, 0..3usize, 1..4usize, proptest::option::of(0..4u8), proptest::bool::weighted(0.15))
            .prop_map(|(tenant, session, events, message_id, end)| Op::Append { tenant, session, events, message_id, end }),
        1 => Just(Op::Restart),
    ]
}

const TENANTS: [&str; 3] = ["t1", "t1x", "t2"];

/// What the model remembers of one event.
#[derive(Clone, Debug, PartialEq)]
struct Summary {
    session: String,
    seq: u64,
    kind: EventKind,
}

#[derive(Default)]
struct Model {
    events: HashMap<usize, Vec<Summary>>,
    // (tenant, session slot) -> (session id, last seq, ended)
    sessions: HashMap<(usize, usize), (String, u64, bool)>,
    generation: HashMap<(usize, usize), usize>,
    seen_ids: HashMap<(usize, u8), ()>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reads_equal_the_model_across_restarts(ops in proptest::collection::vec(op(), 1..40)) {
        check_against_model(ops, &open)?;
    }
}

proptest! {
    // Each case starts its own nats-server: fewer cases than for sled.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// The same model, with the JetStream backend; a restart opens a new, empty cache dir, so
    /// every read after it comes from the stream.
    #[test]
    fn reads_equal_the_model_across_restarts_on_jetstream(ops in proptest::collection::vec(op(), 1..40)) {
        let server = super::replica::tests::JetStreamServer::start();
        let caches = std::cell::RefCell::new(Vec::new());
        check_against_model(ops, &|_: &Path| {
            let dir = tempfile::tempdir().unwrap();
            let log = server.open(dir.path(), "MODEL", "n1").unwrap();
            caches.borrow_mut().push(dir);
            log
        })?;
    }
}

/// Runs `ops` against a log opened (and reopened at each `Restart`) by `open`, and checks every
/// tenant's and session's reads against the model.
fn check_against_model(
    ops: Vec<Op>,
    open: &dyn Fn(&Path) -> EventLog,
) -> Result<(), TestCaseError> {
    {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Restart => {
                    drop(log);
                    log = open(dir.path());
                }
                Op::Append {
                    tenant,
                    session,
                    events,
                    message_id,
                    end,
                } => {
                    let c = ctx(TENANTS[tenant]);
                    let generation = *model.generation.get(&(tenant, session)).unwrap_or(&0);
                    // The same session ids are reused in every tenant.
                    let sid = format!("s{session}g{generation}");
                    let (last, _) = model
                        .sessions
                        .get(&(tenant, session))
                        .map(|s| (s.1, s.2))
                        .unwrap_or((0, false));
                    let mut kinds = Vec::new();
                    if last == 0 {
                        kinds.push(EventKind::SessionStarted {
                            user: format!("u{session}"),
                            flow: "f".into(),
                            flow_version: "1".into(),
                        });
                    }
                    for i in 0..events {
                        kinds.push(EventKind::ReplySent {
                            node: "n".into(),
                            text: format!("{tenant}/{sid}/{last}/{i}"),
                        });
                    }
                    if end {
                        kinds.push(EventKind::SessionEnded {
                            reason: "done".into(),
                        });
                    }
                    let group = AppendGroup {
                        ctx: c,
                        channel: id("web"),
                        session: id(&sid),
                        expected_seq: last,
                        at_ms: 7,
                        kinds: kinds.clone(),
                        idempotency: message_id.map(|m| Idempotency {
                            message_id: format!("m{m}"),
                            ack: vec![m],
                        }),
                    };
                    let outcome = log.append_blocking(group).unwrap();
                    let duplicate =
                        message_id.is_some_and(|m| model.seen_ids.contains_key(&(tenant, m)));
                    prop_assert_eq!(matches!(outcome, AppendOutcome::Duplicate(_)), duplicate);
                    if duplicate {
                        continue;
                    }
                    if let Some(m) = message_id {
                        model.seen_ids.insert((tenant, m), ());
                    }
                    let evs = model.events.entry(tenant).or_default();
                    for (i, kind) in kinds.into_iter().enumerate() {
                        evs.push(Summary {
                            session: sid.clone(),
                            seq: last + 1 + i as u64,
                            kind,
                        });
                    }
                    let new_last = last + events as u64 + u64::from(last == 0) + u64::from(end);
                    if end {
                        model.sessions.remove(&(tenant, session));
                        *model.generation.entry((tenant, session)).or_default() += 1;
                    } else {
                        model
                            .sessions
                            .insert((tenant, session), (sid, new_last, false));
                    }
                }
            }
        }
        for (t, name) in TENANTS.iter().enumerate() {
            let read = all_events(&log, name);
            // Never another tenant's event, tenant_seq gapless, chain linked.
            let mut prev = GENESIS_HASH;
            for (i, e) in read.iter().enumerate() {
                prop_assert_eq!(e.event.tenant.as_str(), *name);
                prop_assert_eq!(e.event.tenant_seq, i as u64 + 1);
                prop_assert_eq!(e.prev_hash, prev);
                prop_assert_eq!(e.hash, chain_hash(&prev, &codec::encode_body(&e.event)));
                prev = e.hash;
            }
            let got: Vec<Summary> = read
                .iter()
                .map(|e| Summary {
                    session: e.event.session.to_string(),
                    seq: e.event.seq,
                    kind: e.event.kind.clone(),
                })
                .collect();
            let want = model.events.get(&t).cloned().unwrap_or_default();
            prop_assert_eq!(&got, &want);
            // Each session read alone equals the model's events of that session, seq gapless.
            let mut by_session: HashMap<String, Vec<Summary>> = HashMap::new();
            for s in want {
                by_session.entry(s.session.clone()).or_default().push(s);
            }
            for (sid, evs) in by_session {
                let read: Vec<Summary> = log
                    .scope(&ctx(name))
                    .session_events(&id(&sid), 1..=u64::MAX)
                    .map(|e| {
                        let e = e.unwrap().event;
                        Summary {
                            session: e.session.to_string(),
                            seq: e.seq,
                            kind: e.kind,
                        }
                    })
                    .collect();
                prop_assert_eq!(
                    read.iter().map(|s| s.seq).collect::<Vec<_>>(),
                    (1..=evs.len() as u64).collect::<Vec<_>>()
                );
                prop_assert_eq!(read, evs);
            }
        }
    }
    Ok(())
}

/// The crash test's negative control needs a writer that acks before the flush. That fault must
/// not exist in a release build: there the switch is compiled out and the variable is ignored.
/// A debug `cargo test` checks the first half; `cargo test --release` checks the second.
#[test]
fn the_ack_before_flush_fault_exists_only_with_debug_assertions() {
    use std::ffi::OsStr;
    assert_eq!(
        writer::FAULT_ACK_BEFORE_FLUSH_VAR,
        "TENANTRY_FAULT_ACK_BEFORE_FLUSH"
    );
    assert_eq!(
        writer::fault_ack_before_flush(Some(OsStr::new("1"))),
        cfg!(debug_assertions)
    );
    for off in [
        None,
        Some(OsStr::new("0")),
        Some(OsStr::new("")),
        Some(OsStr::new("yes")),
    ] {
        assert!(!writer::fault_ack_before_flush(off), "{off:?}");
    }
}

/// A 6-event group at seq 2 of `session`: a message and five `StateSet`s.
fn six_event_group(ctx: &TenantCtx, session: &str) -> AppendGroup {
    let mut g = message(ctx, session, 2, "x");
    g.kinds.extend((0..5).map(|i| EventKind::StateSet {
        key: format!("k{i}"),
        value: "v".into(),
    }));
    g
}
