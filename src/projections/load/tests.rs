use std::path::Path;

use super::*;
use crate::events::log::fixtures::{acme_support as ctx, ada_group};
use crate::events::log::{AppendGroup, AppendOutcome, LogOptions};
use crate::tenancy::TenantId;

fn sid() -> SessionId {
    SessionId::parse("s1").unwrap()
}

fn group(expected_seq: u64, at_ms: u64, text: &str) -> AppendGroup {
    ada_group(expected_seq, format!("m-{text}"), text, at_ms)
}

fn append(log: &EventLog, g: AppendGroup) {
    assert!(matches!(
        log.append_blocking(g),
        Ok(AppendOutcome::Appended(_))
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A log of the session's first `older` messages saved as `old/`, then `newer` more appended in
/// `new/` with a snapshot of the newer state under `sessions/`. Returns the newer state.
fn snapshot_ahead(dir: &Path, older: u64, newer: u64) -> SessionState {
    let log = EventLog::open(&dir.join("new"), &LogOptions::default()).unwrap();
    append(&log, group(0, 1000, "start"));
    for seq in 1..older {
        append(&log, group(seq, 1000 + seq, &seq.to_string()));
    }
    drop(log);
    copy_dir(&dir.join("new"), &dir.join("old"));
    let log = EventLog::open(&dir.join("new"), &LogOptions::default()).unwrap();
    for seq in older..older + newer {
        append(&log, group(seq, 5000 + seq, &format!("new{seq}")));
    }
    let store = SnapshotStore::new(dir.join("sessions"));
    let loaded = load_session(&log, &store, &ctx(), &sid()).unwrap();
    let key = SnapshotKey {
        tenant: &loaded.state.tenant,
        env: &loaded.state.env,
        team: &loaded.state.team,
        session: &loaded.state.session,
    };
    store
        .write(&key, loaded.state.last_seq, &loaded.state)
        .unwrap();
    loaded.state
}

#[test]
fn a_snapshot_ahead_of_the_log_is_discarded_and_the_state_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let newer = snapshot_ahead(dir.path(), 10, 9);
    assert_eq!(newer.last_seq, 19);
    let old = EventLog::open(&dir.path().join("old"), &LogOptions::default()).unwrap();
    let store = SnapshotStore::new(dir.path().join("sessions"));
    let loaded = load_session(&old, &store, &ctx(), &sid()).unwrap();
    assert_eq!(loaded.state.last_seq, 10, "the log holds 10 events");
    assert_eq!(loaded.snapshot_seq, 0);
    let problem = loaded.snapshot_problem.expect("the snapshot is reported");
    assert!(problem.contains("only up to seq 10"), "{problem}");
}

#[test]
fn a_snapshot_of_another_history_at_the_same_seq_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    snapshot_ahead(dir.path(), 3, 2);
    // The old log grows to the same seq by other events (other times).
    let old = EventLog::open(&dir.path().join("old"), &LogOptions::default()).unwrap();
    append(&old, group(3, 9000, "other3"));
    append(&old, group(4, 9001, "other4"));
    let store = SnapshotStore::new(dir.path().join("sessions"));
    let loaded = load_session(&old, &store, &ctx(), &sid()).unwrap();
    assert_eq!(loaded.state.last_seq, 5);
    assert_eq!(loaded.state.last_activity_ms, 9001);
    let problem = loaded.snapshot_problem.expect("the snapshot is reported");
    assert!(problem.contains("another history"), "{problem}");
}

#[test]
fn a_snapshot_that_matches_the_log_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let newer = snapshot_ahead(dir.path(), 2, 3);
    let log = EventLog::open(&dir.path().join("new"), &LogOptions::default()).unwrap();
    append(&log, group(5, 7000, "after"));
    let store = SnapshotStore::new(dir.path().join("sessions"));
    let loaded = load_session(&log, &store, &ctx(), &sid()).unwrap();
    assert_eq!(loaded.snapshot_problem, None);
    assert_eq!(loaded.snapshot_seq, newer.last_seq);
    assert_eq!(loaded.state.last_seq, 6);
}

#[test]
fn verify_reports_a_snapshot_ahead_of_the_log() {
    use crate::audit::verify::ProblemKind;
    use crate::audit::verify_snapshots::verify_snapshots;
    let dir = tempfile::tempdir().unwrap();
    snapshot_ahead(dir.path(), 10, 9);
    let store = SnapshotStore::new(dir.path().join("sessions"));
    let new = EventLog::open(&dir.path().join("new"), &LogOptions::default()).unwrap();
    let tenant = ctx().tenant;
    assert_eq!(verify_snapshots(&new, &store, &tenant).unwrap(), None);
    drop(new);
    let old = EventLog::open(&dir.path().join("old"), &LogOptions::default()).unwrap();
    let problem = verify_snapshots(&old, &store, &tenant)
        .unwrap()
        .expect("the snapshot ahead of the log is reported");
    assert_eq!(problem.kind, ProblemKind::SnapshotNotInLog);
    assert!(
        problem.detail.contains("1 of 1 snapshots"),
        "{}",
        problem.detail
    );
    assert!(problem.detail.contains("s1.cbor"), "{}", problem.detail);
    // Another tenant's verification does not see acme's snapshots.
    let other: TenantId = "bigcorp".parse().unwrap();
    assert_eq!(verify_snapshots(&old, &store, &other).unwrap(), None);
}
