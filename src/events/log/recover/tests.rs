//! A real full disk: the log on an 8 MiB tmpfs that a filler file fills up, then frees.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::events::codec::TEXT_BYTES_MAX;
use crate::events::log::fixtures::{acme_support as ctx, ada_group};
use crate::events::log::{AppendError, AppendGroup, AppendOutcome, EventLog, LogOptions};
use crate::events::schema::EventKind;
use crate::tenancy::{SessionId, TenantId};

/// A tmpfs mounted on a temp dir; unmounted when dropped.
pub(crate) struct Tmpfs {
    pub(crate) dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after a loud message) only when this process may not mount.
    pub(crate) fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                why.contains("permission denied") || why.contains("must be superuser"),
                "mount failed for another reason than permissions: {why}"
            );
            eprintln!(
                "\n\n*** SKIPPED: the full-disk test needs to mount a tmpfs, which is not \
                 permitted here ({why}). Run it as root. ***\n\n"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn group(expected_seq: u64, text: &str) -> AppendGroup {
    let message_id = format!("m{expected_seq}");
    AppendGroup {
        idempotency: Some(crate::events::log::Idempotency {
            message_id: message_id.clone(),
            ack: Vec::new(),
        }),
        ..ada_group(expected_seq, message_id, text, 1000 + expected_seq)
    }
}

/// Texts in the log of the session, read through the session and the tenant readers (which
/// must agree).
fn texts(log: &EventLog) -> Vec<String> {
    let from_session: Vec<String> = log
        .scope(&ctx())
        .session_events(&SessionId::parse("s1").unwrap(), 1..=u64::MAX)
        .map(|e| match e.unwrap().event.kind {
            EventKind::MessageReceived { text, .. } => text,
            other => other.name().to_owned(),
        })
        .collect();
    let from_tenant = log
        .tenant(&ctx().tenant)
        .events(1..=u64::MAX)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
        .len();
    assert_eq!(from_session.len(), from_tenant);
    from_session
}

/// Fills the file system with a filler file, leaving about `leave` bytes.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let filler = dir.join("filler");
    let stat = free_bytes(dir);
    let size = stat.saturating_sub(leave);
    std::fs::write(&filler, vec![0xa5u8; usize::try_from(size).unwrap()]).unwrap();
    filler
}

fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn text(i: u64) -> String {
    format!("{i:06}:{}", "x".repeat(TEXT_BYTES_MAX / 2))
}

/// A log on the tmpfs `fs`, appended to until a write fails for want of space.
struct Filled {
    log: EventLog,
    dir: PathBuf,
    opts: LogOptions,
    /// What was acked, as [`texts`] shows it.
    acked: Vec<String>,
    /// The `expected_seq` of the group whose append failed.
    failed_seq: u64,
    /// The file that takes the space; remove it to free the disk.
    filler: PathBuf,
}

fn fill_until_a_write_fails(fs: &Tmpfs) -> Filled {
    let dir = fs.path().join("log");
    let opts = LogOptions {
        cache_capacity_bytes: 4 * 1024 * 1024,
        ..LogOptions::default()
    };
    let log = EventLog::open(&dir, &opts).unwrap();
    assert!(matches!(
        log.append_blocking(group(0, "")),
        Ok(AppendOutcome::Appended(_))
    ));
    let filler = fill(fs.path(), 1024 * 1024);

    // Append until the disk is full; remember what was acked.
    let mut acked = vec!["SessionStarted".to_owned()];
    let mut failed_text = None;
    for seq in 1..1000 {
        match log.append_blocking(group(seq, &text(seq))) {
            Ok(AppendOutcome::Appended(_)) => acked.push(text(seq)),
            Err(AppendError::Failed(e)) => {
                failed_text = Some((seq, e));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (failed_seq, error) = failed_text.expect("the disk filled up");
    println!(
        "acked {} messages, then at expected_seq {failed_seq}: {error}",
        acked.len() - 1
    );
    Filled {
        log,
        dir,
        opts,
        acked,
        failed_seq,
        filler,
    }
}

/// Waits (at most 20 s) until `log` accepts writes again.
fn await_recovery(log: &EventLog) {
    let started = Instant::now();
    while log.write_failure().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the log did not recover: {:?}",
            log.write_failure()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_hides_unflushed_events_and_the_log_recovers_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let Filled {
        log,
        dir,
        opts,
        mut acked,
        failed_seq,
        filler,
    } = fill_until_a_write_fails(&fs);
    let tenant: TenantId = ctx().tenant;
    let failure = log.write_failure().expect("the log says it refuses writes");
    assert!(!failure.is_empty());
    // sled applied the failed group (it is in sled's tree) but no flush covered it.
    let failed_key = crate::events::keys::frame_key(&tenant, acked.len() as u64 + 1);
    let raw = log
        .inner
        .shared
        .store()
        .unwrap()
        .tree
        .get(&failed_key)
        .unwrap();
    assert!(raw.is_some(), "the failed group is in sled's tree");
    // Readers stop at the durable frontier: exactly what was acked, in every reader.
    assert_eq!(texts(&log), acked);
    assert_eq!(log.durable_frontier(&tenant), acked.len() as u64);
    let scope = log.scope(&ctx());
    assert_eq!(
        scope
            .session_last_seq(&SessionId::parse("s1").unwrap())
            .unwrap(),
        acked.len() as u64
    );
    let failed_id = format!("m{failed_seq}");
    assert_eq!(
        scope
            .idempotency(&"slack".parse().unwrap(), &failed_id)
            .unwrap(),
        None
    );
    // Still full: appends keep failing, reads go on, and nothing changes.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(matches!(
        log.append_blocking(group(failed_seq, &text(failed_seq))),
        Err(AppendError::Failed(_))
    ));
    assert_eq!(texts(&log), acked);

    // Space comes back: the writer recovers without a restart (once no reader holds the
    // files).
    drop(scope);
    std::fs::remove_file(&filler).unwrap();
    await_recovery(&log);
    assert_eq!(texts(&log), acked, "what failed is gone after the recovery");
    // The failed message id was never appended: its retry appends now, after the acked ones.
    let retry = log.append_blocking(group(failed_seq, "retried"));
    assert!(
        matches!(retry, Ok(AppendOutcome::Appended(ref a)) if a.first_seq == failed_seq + 1),
        "{retry:?}"
    );
    acked.push("retried".to_owned());
    assert_eq!(texts(&log), acked);
    drop(log);

    // After a restart: the same, and the chain verifies.
    let log = EventLog::open(&dir, &opts).unwrap();
    assert_eq!(texts(&log), acked);
    let verdict = crate::audit::verify::verify_log(&log, &tenant).unwrap();
    assert!(verdict.is_intact(), "{verdict}");
}

/// The write error usually surfaces in the syncer's flush, after the writer has gone back to
/// waiting for requests: it must recover by itself even when no request ever comes (the edges
/// may fail every message before it reaches the log, e.g. on a session load that cannot read).
#[test]
fn a_log_recovers_without_another_append_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let filled = fill_until_a_write_fails(&fs);
    assert!(filled.log.write_failure().is_some());
    std::fs::remove_file(&filled.filler).unwrap();
    await_recovery(&filled.log);
    assert_eq!(texts(&filled.log), filled.acked);
}
