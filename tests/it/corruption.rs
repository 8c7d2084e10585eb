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
use tenantry::projections::load::load_session;
use tenantry::projections::session::SessionState;
use tenantry::projections::snapshot::{SnapshotKey, SnapshotStore};
use tenantry::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

use crate::support::{acme_config, copy_dir, verify_tenant, Serve};

/// Three tenants that reuse the same session ids.
const TENANTS: [&str; 3] = ["acme", "bigcorp", "globex"];
const SESSIONS: [&str; 2] = ["s1", "s2"];
/// The tenant whose last frame is damaged.
const VICTIM: &str = "acme";

fn seed() -> u64 {
    let seed = std::env::var("CORRUPTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e4a_17c0_ffee);
    println!("corruption matrix seed: {seed} (replay with CORRUPTION_SEED={seed})");
    seed
}

/// splitmix64: small, seedable, good enough to pick offsets and bits.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Counts panics on any thread (sled's and the log's own threads too, which `catch_unwind` on
/// the test thread cannot see), except the test threads' own assertion failures.
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
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

fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(
        TenantId::parse(tenant).unwrap(),
        EnvId::parse("prod").unwrap(),
        Some(TeamId::parse("support").unwrap()),
    )
}

fn group(tenant: &str, session: &str, expected_seq: u64, kinds: Vec<EventKind>) -> AppendGroup {
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

fn appended(outcome: Result<AppendOutcome, AppendError>) -> u64 {
    match outcome {
        Ok(AppendOutcome::Appended(a)) => a.first_tenant_seq,
        other => panic!("expected an append, got {other:?}"),
    }
}

fn open(dir: &Path) -> EventLog {
    EventLog::open(&dir.join("log"), &LogOptions::default()).unwrap()
}

/// A data dir written through the library, and what it holds.
struct Pristine {
    dir: tempfile::TempDir,
    /// Holds sled's lock, idle (no background flush), so that copies are of a quiet database.
    _quiet: sled::Db,
    events: BTreeMap<&'static str, Vec<StoredEvent>>,
    /// tenant_seq of the first event of the victim's last frame.
    last_frame_seq: u64,
    states: BTreeMap<(&'static str, &'static str), SessionState>,
}

impl Pristine {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn build() -> Pristine {
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
    fn copy(&self) -> tempfile::TempDir {
        let copy = tempfile::tempdir().unwrap();
        copy_dir(&self.data(), &copy.path().join("data"));
        copy
    }
}

/// Opens sled once the previous handle's lock is gone, with no periodic flush.
fn quiet(dir: &Path) -> sled::Db {
    for _ in 0..200 {
        match sled::Config::new().path(dir).flush_every_ms(None).open() {
            Ok(db) => return db,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    panic!("{}: sled lock never released", dir.display());
}

fn ids(tenant: &str, session: &str) -> (TenantId, EnvId, TeamId, SessionId) {
    (
        TenantId::parse(tenant).unwrap(),
        EnvId::parse("prod").unwrap(),
        TeamId::parse("support").unwrap(),
        SessionId::parse(session).unwrap(),
    )
}

fn key<'a>(t: &'a TenantId, e: &'a EnvId, m: &'a TeamId, s: &'a SessionId) -> SnapshotKey<'a> {
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
fn replay(log: &EventLog, tenant: &str, session: &str) -> SessionState {
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
fn remove_sled_snapshots(log_dir: &Path) {
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
fn damaged_snapshots_are_rebuilt_from_the_log() {
    count_panics();
    let mut rng = Rng(seed() ^ 0x5a5);
    let p = Pristine::build();
    let copy = p.copy();
    let data = copy.path().join("data");
    let log = open(&data);
    let snapshots = SnapshotStore::new(data.join("sessions"));
    let (t, e, m, s) = ids(VICTIM, "s2");
    let path = snapshots.path(&key(&t, &e, &m, &s));
    let good = std::fs::read(&path).unwrap();
    let clean = &p.states[&(VICTIM, "s2")];
    assert_eq!(&replay(&log, VICTIM, "s2"), clean);

    let check = |bad: &[u8], label: &str| {
        std::fs::write(&path, bad).unwrap();
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            load_session(&log, &snapshots, &ctx(VICTIM), &s)
        }))
        .unwrap_or_else(|_| panic!("{label}: load panicked"))
        .unwrap();
        assert!(
            loaded.snapshot_problem.is_some(),
            "{label}: a damaged snapshot was trusted"
        );
        assert_eq!(loaded.snapshot_seq, 0, "{label}");
        assert_eq!(
            &loaded.state, clean,
            "{label}: the rebuilt state differs from a clean replay"
        );
    };
    let mut trials = 0;
    for len in 0..good.len() {
        check(&good[..len], &format!("snapshot truncated to {len}"));
        trials += 1;
    }
    let mut flips = 0;
    while flips < 200 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bad.len());
            bad[at] ^= 1 << rng.below(8);
        }
        if bad == good {
            continue;
        }
        check(&bad, &format!("snapshot bits flipped (trial {flips})"));
        flips += 1;
    }
    println!("snapshot trials: {trials} truncations, {flips} bit flips");
    assert!(trials >= 100);
    // The good file is still used as it is.
    std::fs::write(&path, &good).unwrap();
    let loaded = load_session(&log, &snapshots, &ctx(VICTIM), &s).unwrap();
    assert_eq!(
        (loaded.snapshot_seq, loaded.snapshot_problem),
        (clean.last_seq, None)
    );
}

/// The session actor that fell back to the log replaces the bad snapshot: after a restart with
/// a truncated snapshot and one more message, the file on disk is valid again and matches a
/// clean replay.
#[actix_rt::test]
async fn a_bad_snapshot_is_replaced_by_the_session_that_rebuilt_it() {
    use tenantry::actors::messages::Inbound;
    use tenantry::actors::runtime::{Runtime, RuntimeOptions};
    use tenantry::config::{Config, LoadOptions};

    let dir = crate::support::dir_with_flows();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, Serve::shipped().config_text()).unwrap();
    let config = Config::load(&config_path, &LoadOptions::default()).unwrap();
    let data = config.server().data_dir.clone();
    let start = || {
        Runtime::start(
            &config,
            open(&data),
            SnapshotStore::new(data.join("sessions")),
            RuntimeOptions::from_config(&config),
        )
    };
    let acme = ctx("acme");
    let slack = "slack".parse().unwrap();
    let say = |session: Option<SessionId>, text: &str| Inbound {
        session,
        user: "ada".into(),
        text: text.into(),
        message_id: None,
    };

    let rt = start();
    let first = rt.send(&acme, &slack, say(None, "hello")).await.unwrap();
    let session = first.session;
    rt.send(&acme, &slack, say(Some(session.clone()), "again"))
        .await
        .unwrap();
    rt.shutdown().await; // snapshots every session
    drop(rt);

    let store = SnapshotStore::new(data.join("sessions"));
    let (t, e, m, _) = ids("acme", "s1");
    let path = store.path(&key(&t, &e, &m, &session));
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();

    let rt = start();
    rt.send(&acme, &slack, say(Some(session.clone()), "third"))
        .await
        .unwrap();
    let fallbacks = rt
        .metrics()
        .snapshot_fallbacks
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(fallbacks, 1, "the truncated snapshot was not refused");
    rt.shutdown().await;
    drop(rt);

    let log = open(&data);
    let loaded = load_session(&log, &store, &acme, &session).unwrap();
    assert_eq!(
        loaded.snapshot_problem, None,
        "the bad snapshot is still there"
    );
    assert_eq!(loaded.snapshot_seq, loaded.state.last_seq);
    let mut clean = SessionState::new(t, e, m, session.clone());
    for event in log.scope(&acme).session_events(&session, 1..=u64::MAX) {
        clean.apply(&event.unwrap().event);
    }
    assert_eq!(loaded.state, clean);
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

// ---- sled's own files in a large database ------------------------------------------------------
//
// sled 0.34 panics (assertions in its page cache) on some damage that only a large `db` shows
// (PITFALLS.md: ~100 MB, 16 bytes XORed at 60% without its snapshot file, at 99% or 99.9% with
// it; here at the start of the segment holding that offset, where it reliably hits). The large data dir is generated once per test run; each trial damages a copy and runs the
// real `verify --tenant` and `serve` on it: neither may panic or hang; each either works or
// exits with an error naming the damaged file and what to do.

/// The generated database's size, in bytes (at least).
const LARGE_DB_BYTES: u64 = 100 * 1024 * 1024;
/// sled 0.34's default segment size, in bytes.
const SLED_SEGMENT_BYTES: usize = 512 * 1024;
/// Most a damaged `serve` may take to start serving or exit.
const LARGE_TRIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// A data dir whose `log/db` holds at least [`LARGE_DB_BYTES`], built once per run: groups of
/// large messages appended in turn to four sessions of tenant acme.
fn large_data() -> &'static Path {
    static LARGE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    LARGE
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("data");
            let log = open(&data);
            let started = std::time::Instant::now();
            // One writer, in turn over four sessions, one group per flush.
            let db = data.join("log").join("db");
            let mut seqs = [0u64; 4];
            let mut n = 0usize;
            while std::fs::metadata(&db).map_or(0, |m| m.len()) < LARGE_DB_BYTES {
                let t = n % 4;
                n += 1;
                let seq = seqs[t];
                let kinds: Vec<EventKind> = if seq == 0 {
                    vec![EventKind::SessionStarted {
                        user: "u".into(),
                        flow: "f".into(),
                        flow_version: "1".into(),
                    }]
                } else {
                    (0..4)
                        .map(|i| EventKind::MessageReceived {
                            message_id: format!("m{seq}-{i}"),
                            user: "u".into(),
                            text: (0..15_000)
                                .map(|j| char::from(b'a' + ((seq + i + j) % 26) as u8))
                                .collect(),
                        })
                        .collect()
                };
                seqs[t] += kinds.len() as u64;
                let session = format!("large-{t}");
                appended(log.append_blocking(group("acme", &session, seq, kinds)));
            }
            drop(log);
            let size = std::fs::metadata(data.join("log").join("db"))
                .unwrap()
                .len();
            println!(
                "large db: {size} bytes in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            // A quiet reopen and close, so that sled writes its snapshot file.
            drop(quiet(&data.join("log")));
            dir
        })
        .path()
}

/// What a damaged copy made `verify --tenant` and `serve` do.
#[derive(Debug)]
struct LargeOutcome {
    verify: std::process::Output,
    serve: Option<i32>,
    serve_stderr: String,
}

fn large_trial(fraction: f64, keep_snapshot: bool) -> LargeOutcome {
    let copy = crate::support::dir_with_flows();
    let data = copy.path().join("data");
    copy_dir(&large_data().join("data"), &data);
    let log_dir = data.join("log");
    if !keep_snapshot {
        remove_sled_snapshots(&log_dir);
    }
    let db = log_dir.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    // The start of the sled segment that holds `fraction` of the file: its header, which sled
    // reads when it recovers (mid-segment damage often lands in superseded data and is
    // harmless, which varies with sled's flush timing from run to run).
    let at = (bytes.len() as f64 * fraction) as usize / SLED_SEGMENT_BYTES * SLED_SEGMENT_BYTES;
    for b in &mut bytes[at..at + 16] {
        *b ^= 0xa5;
    }
    std::fs::write(&db, bytes).unwrap();
    let serve = Serve::config(&acme_config(&data)).in_dir(copy.path());
    let verify = verify_tenant(&serve.write_config(), "acme");
    let mut server = serve.spawn();
    let started = std::time::Instant::now();
    let mut stderr = String::new();
    let code = loop {
        while let Ok(line) = server.lines.try_recv() {
            stderr.push_str(&line);
            stderr.push('\n');
        }
        if stderr.contains("listening on") {
            // It serves: fine, as long as it does not panic later in the catch-up reads.
            std::thread::sleep(std::time::Duration::from_secs(2));
            match server.child().try_wait().unwrap() {
                Some(status) => break status.code(),
                None => {
                    server.child().kill().unwrap();
                    server.child().wait().unwrap();
                    break None;
                }
            }
        }
        if let Some(status) = server.child().try_wait().unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(200));
            for line in server.lines.try_iter() {
                stderr.push_str(&line);
                stderr.push('\n');
            }
            break status.code();
        }
        if started.elapsed() > LARGE_TRIAL_TIMEOUT {
            server.child().kill().unwrap();
            server.child().wait().unwrap();
            panic!("serve neither served nor exited in {LARGE_TRIAL_TIMEOUT:?}: {stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    LargeOutcome {
        verify,
        serve: code,
        serve_stderr: stderr,
    }
}

#[test]
fn sled_damage_in_a_large_db_never_panics_and_names_the_file() {
    let mut contained = 0;
    let trials = [(0.99, true), (0.999, true), (0.6, false)];
    for (fraction, keep_snapshot) in trials {
        let label = format!(
            "16 bytes XORed at {:.1}% of log/db, {} sled's snapshot file",
            fraction * 100.0,
            if keep_snapshot { "with" } else { "without" }
        );
        let o = large_trial(fraction, keep_snapshot);
        let verify_out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.verify.stdout),
            String::from_utf8_lossy(&o.verify.stderr)
        );
        println!(
            "{label}: verify exit {:?}: {}\n  serve exit {:?}: {}",
            o.verify.status.code(),
            verify_out.lines().last().unwrap_or(""),
            o.serve,
            o.serve_stderr.lines().last().unwrap_or("")
        );
        assert_ne!(
            o.verify.status.code(),
            Some(101),
            "{label}: verify panicked: {verify_out}"
        );
        assert!(!verify_out.contains("panicked"), "{label}: {verify_out}");
        if o.verify.status.code() == Some(2) {
            assert!(
                verify_out.contains("log/db") && verify_out.contains("restore"),
                "{label}: verify's error must name the file and what to do: {verify_out}"
            );
        }
        assert_ne!(
            o.serve,
            Some(101),
            "{label}: serve panicked: {}",
            o.serve_stderr
        );
        if o.serve.is_some() {
            assert!(
                o.serve_stderr.contains("log/db") && o.serve_stderr.contains("restore"),
                "{label}: serve's error must name the file and what to do: {}",
                o.serve_stderr
            );
        }
        contained += usize::from(verify_out.contains("sled failed reading"));
    }
    // The matrix still reaches sled's panics (a segment header at 60% without the snapshot
    // file: measured to panic on every run).
    assert!(
        contained > 0,
        "no trial made sled panic: the matrix lost its point"
    );
}
