use super::*;
use crate::events::log::fixtures::ada_group;
use crate::events::log::EventLog;

fn log_with_one_session(dir: &Path) {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    log.append_blocking(ada_group(0, String::new(), "", 1))
        .unwrap();
    log.append_blocking(ada_group(1, "m1".into(), "compact-canary", 2))
        .unwrap();
}

fn events(dir: &Path) -> usize {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    let tenant = crate::events::log::fixtures::acme_support().tenant;
    log.tenant(&tenant).events(1..=u64::MAX).count()
}

#[test]
fn a_compacted_log_reads_the_same_and_keeps_its_backend_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    log_with_one_session(&dir);
    let done = compact(&dir).unwrap();
    assert!(done.bytes_after > 0);
    assert_eq!(events(&dir), 2);
    assert!(dir.join("backend").is_file());
    assert!(!copy_dir(&dir).exists());
}

#[test]
fn a_copy_cut_short_is_removed_and_a_finished_one_is_swapped_in_at_the_next_open() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("log");
    log_with_one_session(&dir);
    // Cut before the marker: the copy goes, the old log stays.
    let copy = copy_dir(&dir);
    fs::create_dir_all(&copy).unwrap();
    fs::write(copy.join("db"), b"half a copy").unwrap();
    assert_eq!(events(&dir), 2);
    assert!(!copy.exists());
    // Cut after the marker (the old log already gone): the copy is the log.
    fs::rename(&dir, &copy).unwrap();
    fs::write(copy.join(COMPLETE_MARKER), b"").unwrap();
    assert_eq!(events(&dir), 2);
    assert!(!copy.exists() && !dir.join(COMPLETE_MARKER).exists());
}
