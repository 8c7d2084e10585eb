use std::path::{Path, PathBuf};

use super::*;
use crate::events::log::fixtures::{acme_support, ada_group};
use crate::events::log::{EventLog, LogOptions, OpenError};

fn open(dir: &Path) -> Result<EventLog, OpenError> {
    EventLog::open(dir, &LogOptions::default())
}

/// Appends `n` groups to ada's session after `after`.
fn append(log: &EventLog, after: u64, n: u64) {
    for seq in after..after + n {
        log.append_blocking(ada_group(seq, format!("m{seq}"), "hi", 1_000))
            .unwrap();
    }
}

fn events(log: &EventLog) -> usize {
    log.tenant(&acme_support().tenant)
        .events(1..=u64::MAX)
        .map(Result::unwrap)
        .count()
}

/// A log written by two processes' worth of opens, so that sled has published a snapshot;
/// returns that snapshot's path and its lsn.
fn log_with_a_snapshot(dir: &Path) -> (PathBuf, u64) {
    append(&open(dir).unwrap(), 0, 10);
    append(&open(dir).unwrap(), 10, 10);
    let snaps = snapshot_files(dir);
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let name = snaps[0].file_name().unwrap().to_string_lossy().into_owned();
    let lsn = u64::from_str_radix(name.trim_start_matches(SNAPSHOT_PREFIX), 16).unwrap();
    (snaps[0].clone(), lsn)
}

/// What a kill during sled's snapshot write leaves: the next snapshot's file, half written.
fn unfinished_snapshot(snap: &Path, lsn: u64) -> PathBuf {
    let bytes = std::fs::read(snap).unwrap();
    let path = snap.with_file_name(format!("snap.{:016X}.generating", lsn + 1));
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    path
}

#[test]
fn a_snapshot_left_unfinished_by_a_kill_does_not_stop_the_log_opening() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, lsn) = log_with_a_snapshot(dir.path());
    let unfinished = unfinished_snapshot(&snap, lsn);
    // An empty one, as a kill right after the create leaves, too.
    let empty = snap.with_file_name(format!("snap.{:016X}.generating", lsn + 2));
    std::fs::write(&empty, b"").unwrap();

    let log = open(dir.path()).unwrap_or_else(|e| panic!("the log opens: {e}"));
    assert_eq!(events(&log), 20);
    assert!(!unfinished.exists() && !empty.exists());
    append(&log, 20, 1);
    drop(log);
    assert_eq!(events(&open(dir.path()).unwrap()), 21);
}

#[test]
fn the_unfinished_snapshot_of_a_process_holding_the_log_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, lsn) = log_with_a_snapshot(dir.path());
    let unfinished = unfinished_snapshot(&snap, lsn);
    let holder = File::open(dir.path().join("db")).unwrap();
    holder.try_lock().unwrap();

    assert_eq!(
        remove_unfinished_snapshots(dir.path()).unwrap(),
        Vec::<PathBuf>::new()
    );
    assert!(unfinished.exists());
    assert!(matches!(open(dir.path()), Err(OpenError::InUse(_))));
    assert!(unfinished.exists());

    drop(holder);
    assert_eq!(
        remove_unfinished_snapshots(dir.path()).unwrap(),
        vec![unfinished.clone()]
    );
    assert!(snap.exists() && !unfinished.exists());
}

#[test]
fn a_damaged_published_snapshot_is_an_error_naming_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (snap, _) = log_with_a_snapshot(dir.path());
    let bytes = std::fs::read(&snap).unwrap();
    std::fs::write(&snap, &bytes[..bytes.len() / 2]).unwrap();

    let err = open(dir.path()).map(drop).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OpenError::Damaged { .. }), "{text}");
    assert!(
        text.contains(&snap.display().to_string())
            && text.contains(&dir.path().join("db").display().to_string())
            && text.contains("restore the data dir from a backup"),
        "{text}"
    );
    // Nothing was removed: a published snapshot is the operator's to judge.
    assert!(snap.exists());
}
