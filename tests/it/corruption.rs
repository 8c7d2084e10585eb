//! The corruption matrix (issue #6, "Proof under fire"): damage below every API, the way a disk
//! or a crash would, and check what opening and reading make of it.
//!
//! - A tenant's last frame (its sled value) truncated at every offset and bit-flipped: the open
//!   names the damaged tenant and position, reads give the valid prefix and then a typed error
//!   naming both, a second open says the same, nothing panics, and every other tenant reads,
//!   appends and verifies exactly as before.
//! - sled's own files (the data file's written tail, its snapshot and `conf`) truncated and
//!   bit-flipped: open and read never panic; the result is a clean error or, per tenant, a prefix
//!   of what was written.
//! - sled's data file in a ~100 MB database (generated once per run) XORed at 60%, 99% and 99.9%,
//!   with and without sled's snapshot file: the real `verify --tenant` and `serve` never panic
//!   or hang; they work, or exit with an error naming the file and what to do.
//! - Snapshot files truncated and bit-flipped: `load_session` refuses them and rebuilds the state
//!   from the log, equal to a clean replay; the session actor then replaces the bad file.
//!
//! Randomness comes from a seeded generator; the seed is printed and `CORRUPTION_SEED=<n>`
//! replays a run.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use tenantry::audit::verify::verify_log;
use tenantry::events::log::{
    AppendError, AppendGroup, AppendOutcome, EventLog, LogOptions, OpenError, StoredEvent,
};
use tenantry::events::schema::EventKind;
use tenantry::projections::session::SessionState;
use tenantry::projections::snapshot::{SnapshotKey, SnapshotStore};
use tenantry::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

use crate::support::copy_dir;

/// Three tenants that reuse the same session ids.
const TENANTS: [&str; 3] = ["acme", "bigcorp", "globex"];
const SESSIONS: [&str; 2] = ["s1", "s2"];
/// The tenant whose last frame is damaged.
pub(crate) const VICTIM: &str = "acme";

pub(crate) fn seed() -> u64 {
    let seed = std::env::var("CORRUPTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e4a_17c0_ffee);
    println!("corruption matrix seed: {seed} (replay with CORRUPTION_SEED={seed})");
    seed
}

/// splitmix64: small, seedable, good enough to pick offsets and bits.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Counts panics on any thread (sled's and the log's own threads too, which `catch_unwind` on
/// the test thread cannot see), except the test threads' own assertion failures.
static PANICS: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_tests = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/"));
            if !in_tests {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

pub(crate) fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(
        TenantId::parse(tenant).unwrap(),
        EnvId::parse("prod").unwrap(),
        Some(TeamId::parse("support").unwrap()),
    )
}

pub(crate) fn group(
    tenant: &str,
    session: &str,
    expected_seq: u64,
    kinds: Vec<EventKind>,
) -> AppendGroup {
    AppendGroup {
        ctx: ctx(tenant),
        channel: "slack".parse().unwrap(),
        session: SessionId::parse(session).unwrap(),
        expected_seq,
        at_ms: 1_763_900_000_000 + expected_seq,
        kinds,
        idempotency: None,
    }
}

fn message(text: &str) -> EventKind {
    EventKind::MessageReceived {
        message_id: format!("m-{text}"),
        user: "u".into(),
        text: text.into(),
    }
}

pub(crate) fn appended(outcome: Result<AppendOutcome, AppendError>) -> u64 {
    match outcome {
        Ok(AppendOutcome::Appended(a)) => a.first_tenant_seq,
        other => panic!("expected an append, got {other:?}"),
    }
}

pub(crate) fn open(dir: &Path) -> EventLog {
    EventLog::open(&dir.join("log"), &LogOptions::default()).unwrap()
}

/// A data dir written through the library, and what it holds.
pub(crate) struct Pristine {
    dir: tempfile::TempDir,
    /// Holds sled's lock, idle (no background flush), so that copies are of a quiet database.
    _quiet: sled::Db,
    pub(crate) events: BTreeMap<&'static str, Vec<StoredEvent>>,
    /// tenant_seq of the first event of the victim's last frame.
    pub(crate) last_frame_seq: u64,
    pub(crate) states: BTreeMap<(&'static str, &'static str), SessionState>,
}

impl Pristine {
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub(crate) fn build() -> Pristine {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let log = open(&data);
        for tenant in TENANTS {
            for session in SESSIONS {
                let start = vec![
                    EventKind::SessionStarted {
                        user: "u".into(),
                        flow: "f".into(),
                        flow_version: "1".into(),
                    },
                    EventKind::NodeEntered {
                        node: "greet".into(),
                    },
                    EventKind::ReplySent {
                        node: "greet".into(),
                        text: format!("hello {tenant}"),
                    },
                ];
                appended(log.append_blocking(group(tenant, session, 0, start)));
                let set = vec![
                    message("name"),
                    EventKind::StateSet {
                        key: "name".into(),
                        value: format!("{tenant}-{session}"),
                    },
                ];
                appended(log.append_blocking(group(tenant, session, 3, set)));
            }
        }
        // The victim's last frame: one small event, so that every offset can be tried.
        let last_frame_seq =
            appended(log.append_blocking(group(VICTIM, "s2", 5, vec![message("x")])));
        let events = TENANTS
            .iter()
            .map(|t| (*t, read_all(&log, t).unwrap()))
            .collect();
        let snapshots = SnapshotStore::new(data.join("sessions"));
        let mut states = BTreeMap::new();
        for tenant in TENANTS {
            for session in SESSIONS {
                let state = replay(&log, tenant, session);
                let (t, e, m, s) = ids(tenant, session);
                snapshots
                    .write(&key(&t, &e, &m, &s), state.last_seq, &state)
                    .unwrap();
                states.insert((tenant, session), state);
            }
        }
        drop(log);
        Pristine {
            _quiet: quiet(&data.join("log")),
            dir,
            events,
            last_frame_seq,
            states,
        }
    }

    /// A fresh copy of the data dir.
    pub(crate) fn copy(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&self.data(), &copy.path().join("data"));
        copy
    }
}

/// Opens sled once the previous handle's lock is gone, with no periodic flush.
pub(crate) fn quiet(dir: &Path) -> sled::Db {
    for _ in 0..200 {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    panic!("{}: sled lock never released", dir.display());
}

pub(crate) fn ids(tenant: &str, session: &str) -> (TenantId, EnvId, TeamId, SessionId) {
    (
        TenantId::parse(tenant).unwrap(),
        EnvId::parse("prod").unwrap(),
        TeamId::parse("support").unwrap(),
        SessionId::parse(session).unwrap(),
    )
}

pub(crate) fn key<'a>(
    t: &'a TenantId,
    e: &'a EnvId,
    m: &'a TeamId,
    s: &'a SessionId,
) -> SnapshotKey<'a> {
    SnapshotKey {
        tenant: t,
        env: e,
        team: m,
        session: s,
    }
}

fn read_all(log: &EventLog, tenant: &str) -> Result<Vec<StoredEvent>, String> {
    log.tenant(&TenantId::parse(tenant).unwrap())
        .events(1..=u64::MAX)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())
}

/// A session's state folded from the log alone.
pub(crate) fn replay(log: &EventLog, tenant: &str, session: &str) -> SessionState {
    let (t, e, m, s) = ids(tenant, session);
    let mut state = SessionState::new(t, e, m, s.clone());
    for event in log.scope(&ctx(tenant)).session_events(&s, 1..=u64::MAX) {
        state.apply(&event.unwrap().event);
    }
    state
}

/// What an open and a full read of the victim show; compared across two opens.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    damaged: Vec<String>,
    /// Events read before the first error, and that error.
    events: Vec<StoredEvent>,
    error: Option<String>,
    session_events: usize,
    session_error: Option<String>,
    append: String,
}

fn look(log: &EventLog) -> Seen {
    let victim = TenantId::parse(VICTIM).unwrap();
    let mut events = Vec::new();
    let mut error = None;
    for e in log.tenant(&victim).events(1..=u64::MAX) {
        match e {
            Ok(e) => events.push(e),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    let mut session_events = 0;
    let mut session_error = None;
    let s2 = SessionId::parse("s2").unwrap();
    for e in log.scope(&ctx(VICTIM)).session_events(&s2, 1..=u64::MAX) {
        match e {
            Ok(_) => session_events += 1,
            Err(e) => {
                session_error = Some(e.to_string());
                break;
            }
        }
    }
    // An append that would follow the damaged frame: refused while the tenant is damaged.
    let append = match log.append_blocking(group(VICTIM, "s1", 5, vec![message("after")])) {
        Ok(_) => "appended".to_owned(),
        Err(e) => e.to_string(),
    };
    Seen {
        damaged: log
            .damaged()
            .iter()
            .map(|d| format!("{} {} {}", d.tenant, d.position, d.detail))
            .collect(),
        events,
        error,
        session_events,
        session_error,
        append,
    }
}

/// Writes `value` as the victim's last frame, below the log API (as disk corruption would).
fn put_last_frame(data: &Path, tenant_seq: u64, value: &[u8]) -> Vec<u8> {
    let db = sled::open(data.join("log")).unwrap();
    let tree = db.open_tree("log").unwrap();
    let mut key = format!("{VICTIM}\0L").into_bytes();
    key.extend_from_slice(&tenant_seq.to_be_bytes());
    let old = tree.insert(key, value).unwrap().unwrap().to_vec();
    db.flush().unwrap();
    old
}

fn read_last_frame(data: &Path, tenant_seq: u64) -> Vec<u8> {
    let db = sled::open(data.join("log")).unwrap();
    let tree = db.open_tree("log").unwrap();
    let mut key = format!("{VICTIM}\0L").into_bytes();
    key.extend_from_slice(&tenant_seq.to_be_bytes());
    tree.get(key).unwrap().unwrap().to_vec()
}

/// One damaged-frame trial: what the victim shows is the valid prefix and a typed error that
/// names it and the position, twice alike, and the other tenants are untouched.
fn frame_trial(p: &Pristine, frame: &[u8], label: &str) {
    let copy = p.copy();
    let data = copy.path().join("data");
    put_last_frame(&data, p.last_frame_seq, frame);
    let position = format!("tenant_seq {}", p.last_frame_seq);
    let pristine = &p.events[VICTIM];
    let prefix = &pristine[..usize::try_from(p.last_frame_seq - 1).unwrap()];

    let first = catch_unwind(AssertUnwindSafe(|| {
        let log = open(&data);
        let seen = look(&log);
        // Every other tenant reads, verifies and appends exactly as before.
        for tenant in TENANTS.iter().filter(|t| **t != VICTIM) {
            assert_eq!(
                &read_all(&log, tenant).unwrap(),
                &p.events[tenant],
                "{label} {tenant}"
            );
            let t = TenantId::parse(tenant).unwrap();
            assert!(
                verify_log(&log, &t).unwrap().is_intact(),
                "{label} {tenant}"
            );
        }
        seen
    }));
    let first = first.unwrap_or_else(|_| panic!("{label}: open or read panicked"));
    assert_eq!(first.damaged.len(), 1, "{label}: {first:?}");
    let damage = &first.damaged[0];
    assert!(
        damage.starts_with(VICTIM) && damage.contains(&position),
        "{label}: {damage}"
    );
    assert_eq!(&first.events, prefix, "{label}: not the valid prefix");
    let error = first
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("{label}: no error"));
    assert!(
        error.contains(VICTIM) && error.contains(&position),
        "{label}: {error}"
    );
    assert_eq!(first.session_events, 5, "{label}");
    let session_error = first.session_error.as_deref().unwrap_or("");
    assert!(
        session_error.contains(VICTIM) && session_error.contains(&position),
        "{label}: {session_error}"
    );
    assert!(
        first.append.contains(VICTIM) && first.append.contains(&position),
        "{label}: {}",
        first.append
    );

    // No restart loop: a second open gives the same answer, and the others still append.
    let log = catch_unwind(AssertUnwindSafe(|| open(&data)))
        .unwrap_or_else(|_| panic!("{label}: second open panicked"));
    assert_eq!(look(&log), first, "{label}: the second open disagrees");
    for tenant in TENANTS.iter().filter(|t| **t != VICTIM) {
        appended(log.append_blocking(group(tenant, "s1", 5, vec![message("after")])));
        let after = read_all(&log, tenant).unwrap();
        assert_eq!(
            &after[..after.len() - 1],
            &p.events[tenant][..],
            "{label} {tenant}"
        );
        assert!(verify_log(&log, &TenantId::parse(tenant).unwrap())
            .unwrap()
            .is_intact());
    }
}

#[test]
fn a_damaged_last_frame_is_named_and_isolated() {
    count_panics();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let mut rng = Rng(seed());
    let p = Pristine::build();
    let scratch = p.copy();
    let frame = read_last_frame(&scratch.path().join("data"), p.last_frame_seq);
    drop(scratch);
    assert!(
        frame.len() < 400,
        "the victim's frame should be small: {}",
        frame.len()
    );

    // Every truncation, from empty to one byte short.
    let mut trials = 0;
    for len in 0..frame.len() {
        frame_trial(&p, &frame[..len], &format!("truncated to {len}"));
        trials += 1;
    }
    // Random flips of 1 to 4 bits.
    let mut flips = 0;
    while flips < 200 {
        let mut bad = frame.clone();
        let n = 1 + rng.below(4);
        let mut what = Vec::new();
        for _ in 0..n {
            let (at, bit) = (rng.below(bad.len()), rng.below(8));
            bad[at] ^= 1 << bit;
            what.push((at, bit));
        }
        if bad == frame {
            continue; // two flips cancelled out
        }
        frame_trial(&p, &bad, &format!("bits flipped at {what:?}"));
        flips += 1;
    }
    println!("damaged-frame trials: {trials} truncations, {flips} bit flips");
    assert!(trials >= 100 && flips >= 200);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics_before,
        "a thread panicked"
    );
}

/// Deletes sled's snapshot files (`snap.*`) from `log_dir`, so that it recovers by scanning.
pub(crate) fn remove_sled_snapshots(log_dir: &Path) {
    for entry in std::fs::read_dir(log_dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("snap.")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// The sled data file damaged in its tail: no panic; a clean error, or per tenant a prefix of
/// what was written whose chain verifies.
///
/// With `Recovery::Scan` sled's snapshot files are removed first, so that sled rebuilds its page
/// table by scanning the damaged log (as after a crash before its first snapshot) instead of
/// comparing the log with a snapshot that covers all of it.
fn sled_trial(
    p: &Pristine,
    recovery: Recovery,
    damage: impl FnOnce(&Path),
    label: &str,
) -> &'static str {
    let copy = p.copy();
    let data = copy.path().join("data");
    if recovery == Recovery::Scan {
        remove_sled_snapshots(&data.join("log"));
    }
    let label = format!("{label} ({recovery:?})");
    let label = label.as_str();
    damage(&data.join("log").join("db"));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let log = match EventLog::open(&data.join("log"), &LogOptions::default()) {
            Ok(log) => log,
            Err(OpenError::Storage { detail, .. } | OpenError::Damaged { detail, .. }) => {
                assert!(!detail.is_empty(), "{label}");
                return "open error";
            }
            Err(e) => panic!("{label}: unexpected open error {e}"),
        };
        let mut whole = true;
        let mut reported = !log.damaged().is_empty();
        for tenant in TENANTS {
            let t = TenantId::parse(tenant).unwrap();
            let mut read = Vec::new();
            for e in log.tenant(&t).events(1..=u64::MAX) {
                match e {
                    Ok(e) => read.push(e),
                    Err(e) => {
                        // A typed error naming the tenant.
                        assert!(e.to_string().contains(tenant), "{label}: {e}");
                        reported = true;
                        break;
                    }
                }
            }
            let written = &p.events[tenant];
            assert!(
                read.len() <= written.len() && read[..] == written[..read.len()],
                "{label}: {tenant} read {} events that are not a prefix of what was written",
                read.len()
            );
            // The prefix's chain links from genesis.
            let mut prev = [0u8; 32];
            for e in &read {
                assert_eq!(e.prev_hash, prev, "{label}: {tenant}");
                assert_eq!(
                    e.hash,
                    tenantry::events::codec::chain_hash(
                        &prev,
                        &tenantry::events::codec::encode_body(&e.event)
                    )
                );
                prev = e.hash;
            }
            whole &= read.len() == written.len();
        }
        match (whole, reported) {
            (true, _) => "all data",
            (false, true) => "prefix, damage reported",
            // sled dropped the tail itself; nothing tells the operator.
            (false, false) => "prefix, silently",
        }
    }));
    outcome.unwrap_or_else(|_| panic!("{label}: open or read panicked"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recovery {
    /// sled's own snapshot files are kept.
    Snapshot,
    /// They are removed, so sled scans the log.
    Scan,
}

/// The end of the bytes sled actually wrote (the file is preallocated in segments, zero-padded).
fn used_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

#[test]
fn damaged_sled_files_never_panic_and_never_invent_data() {
    count_panics();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let mut rng = Rng(seed() ^ 0x51ed);
    let p = Pristine::build();
    let db_file = p.data().join("log").join("db");
    let pristine = std::fs::read(&db_file).unwrap();
    let used = used_len(&pristine);
    println!("sled db file: {} bytes, {used} used", pristine.len());
    let files: Vec<String> = std::fs::read_dir(p.data().join("log"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    println!("sled files: {files:?}");
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    // Undamaged, both ways of recovering give all the data back.
    for recovery in [Recovery::Snapshot, Recovery::Scan] {
        assert_eq!(sled_trial(&p, recovery, |_| {}, "undamaged"), "all data");
    }

    // Truncations: the last 64 bytes one by one, then evenly through the used tail.
    let mut cuts: Vec<usize> = (1..=64).map(|d| used.saturating_sub(d)).collect();
    cuts.extend((0..64).map(|i| used - used * i / 128));
    cuts.sort_unstable();
    cuts.dedup();
    for cut in &cuts {
        let cut = *cut;
        let label = format!("db truncated to {cut} of {used} used bytes");
        for recovery in [Recovery::Snapshot, Recovery::Scan] {
            let truncate = |f: &Path| {
                let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
                file.set_len(cut as u64).unwrap();
            };
            let o = sled_trial(&p, recovery, truncate, &label);
            *outcomes.entry(format!("{recovery:?}: {o}")).or_default() += 1;
        }
    }
    // Bit flips in the used tail (the last 64 KiB written).
    let tail = used.min(64 * 1024);
    let flips = 100;
    for _ in 0..flips {
        let at = used - 1 - rng.below(tail);
        let bit = rng.below(8);
        let label = format!("db bit {bit} flipped at {at}");
        for recovery in [Recovery::Snapshot, Recovery::Scan] {
            let flip = |f: &Path| {
                let mut bytes = std::fs::read(f).unwrap();
                bytes[at] ^= 1 << bit;
                std::fs::write(f, bytes).unwrap();
            };
            let o = sled_trial(&p, recovery, flip, &label);
            *outcomes.entry(format!("{recovery:?}: {o}")).or_default() += 1;
        }
    }
    println!(
        "sled file trials: {} truncations and {flips} bit flips, each with and without sled's \
         snapshot: {outcomes:?}",
        cuts.len()
    );
    assert!(2 * (cuts.len() + flips) >= 200);
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics_before,
        "a thread panicked"
    );
}

#[test]
fn damaged_sled_snapshot_and_conf_files_never_panic() {
    count_panics();
    let panics_before = PANICS.load(Ordering::SeqCst);
    let mut rng = Rng(seed() ^ 0xc0f);
    let p = Pristine::build();
    let log_dir = p.data().join("log");
    let snap_name = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .find(|n| n.to_string_lossy().starts_with("snap."))
        .expect("sled wrote a snapshot at close");
    let snap = std::fs::read(log_dir.join(&snap_name)).unwrap();
    let conf = std::fs::read(log_dir.join("conf")).unwrap();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut trial = |file: &str, bad: Vec<u8>, label: String| {
        let damage = |db: &Path| std::fs::write(db.with_file_name(file), &bad).unwrap();
        *outcomes
            .entry(sled_trial(&p, Recovery::Snapshot, damage, &label))
            .or_default() += 1;
    };
    let snap_file = snap_name.to_string_lossy().into_owned();
    for len in 0..snap.len() {
        trial(
            &snap_file,
            snap[..len].to_vec(),
            format!("{snap_file} truncated to {len}"),
        );
    }
    for (file, pristine) in [(snap_file.as_str(), &snap), ("conf", &conf)] {
        for _ in 0..100 {
            let mut bad = pristine.clone();
            let (at, bit) = (rng.below(bad.len()), rng.below(8));
            bad[at] ^= 1 << bit;
            trial(file, bad, format!("{file} bit {bit} flipped at {at}"));
        }
    }
    println!(
        "sled snapshot/conf trials: {} truncations, 200 bit flips: {outcomes:?}",
        snap.len()
    );
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        panics_before,
        "a thread panicked"
    );
}
