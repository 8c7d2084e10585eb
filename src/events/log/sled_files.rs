//! sled's own files in the log directory, tidied before sled opens them.
//!
//! sled 0.34.7 writes a snapshot of its page table at every open that finds the log grown since
//! the last one: it writes `snap.{lsn:016X}.generating`, fsyncs it, and renames it to
//! `snap.{lsn:016X}`. But its reader takes the last `snap.*` file by name and skips only an
//! older temporary suffix (`.in___motion`), not `.generating`. A process killed during that
//! write (a `kill -9` or a crash of any short-lived command: `trim`, `verify`, a starting
//! `serve`) leaves a partial `.generating` file that sorts last, and every later open fails with
//! "Read corrupted data at file offset None" (sled issue #1527). Measured here: about 1 kill in
//! 300 of a 60 ms `tenantry trim`, which spends much of its life in that open.
//!
//! A `.generating` file is never a published snapshot: sled deletes it after a successful
//! rename, and recovers from the previous snapshot (or from the log alone) without it. So
//! [`remove_unfinished_snapshots`] deletes such files before sled opens the directory, while
//! holding sled's own lock on `db` (a flock), so that it never touches the file of a live
//! process that is writing its snapshot right now.
//!
//! Invariant: only files named `snap.*.generating` are removed, and only while this process
//! holds the lock on `db`.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// The suffix of sled's snapshot while it is being written.
const UNFINISHED_SUFFIX: &str = ".generating";
/// The prefix of sled's snapshot files.
const SNAPSHOT_PREFIX: &str = "snap.";

/// Deletes sled's unfinished snapshot files in `dir` (see the module) and returns their paths.
/// Does nothing when `dir` has no `db` yet or another process holds it (the open that follows
/// reports that process).
pub(super) fn remove_unfinished_snapshots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let db = match File::open(dir.join("db")) {
        Ok(db) => db,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    match db.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(Vec::new()),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(UNFINISHED_SUFFIX) {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    if !removed.is_empty() {
        File::open(dir)?.sync_all()?;
    }
    // Dropping `db` releases the lock; sled takes it again when it opens the file.
    drop(db);
    Ok(removed)
}

/// Takes sled's lock on `dir/db` (the flock a process holding the log has) without opening
/// the log: `Ok(Some(file))` holds it until the file is dropped, so no process opens the log
/// meanwhile; `Ok(None)` when `dir` has no log yet. `Err` with kind `WouldBlock` when a
/// process holds the log now.
pub fn hold_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let db = match File::open(dir.join("db")) {
        Ok(db) => db,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match db.try_lock() {
        Ok(()) => Ok(Some(db)),
        Err(TryLockError::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// What to say when sled reports corrupted data at open (`sled_text`): sled names no file, and
/// it read its data file `db` and the newest `snap.*` file.
pub(super) fn corruption_detail(dir: &Path, sled_text: &str) -> String {
    let snaps: Vec<String> = snapshot_files(dir)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let snaps = if snaps.is_empty() {
        "none".to_owned()
    } else {
        snaps.join(", ")
    };
    format!(
        "{sled_text}: in {} or in its snapshot file ({snaps})",
        dir.join("db").display()
    )
}

/// The `snap.*` files in `dir`, sorted.
fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(SNAPSHOT_PREFIX))
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

/// sled's blob files, `dir/blobs/{lsn}`: a page (a whole node) larger than a quarter of a log
/// segment goes to a file of its own, which sled 0.34.7 writes and never fsyncs, while the
/// segment record pointing at it is in the data file that the syncer `fdatasync`s. Frames are
/// sized so that the stager's leaves stay below that threshold (`codec::FRAME_COALESCE_BYTES`),
/// but a leaf of several large single-group frames (texts of many KiB) still passes it. So
/// every commit fsyncs the blob files it has not synced yet, and the directory after new ones.
///
/// Invariant: after [`BlobFiles::sync_new`] returned `Ok`, every blob file that existed when it
/// listed the directory is on stable media (or was removed by sled meanwhile).
pub(super) struct BlobFiles {
    dir: PathBuf,
    /// The names synced so far that were still there at the last listing.
    synced: std::sync::Mutex<std::collections::HashSet<std::ffi::OsString>>,
}

impl BlobFiles {
    pub(super) fn new(log_dir: &Path) -> BlobFiles {
        BlobFiles {
            dir: log_dir.join("blobs"),
            synced: std::sync::Mutex::default(),
        }
    }

    /// Fsyncs the blob files not synced before (and then the directory); returns how many. An
    /// empty or missing directory costs one listing.
    pub(super) fn sync_new(&self) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut present = std::collections::HashSet::with_capacity(synced.len());
        let mut new = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if !synced.contains(&name) {
                match File::open(entry.path()) {
                    Ok(file) => file.sync_data()?,
                    // Removed by sled's segment cleaning since the listing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                new += 1;
            }
            present.insert(name);
        }
        if new > 0 {
            File::open(&self.dir)?.sync_all()?;
        }
        *synced = present;
        Ok(new)
    }

    /// The blob files synced and still present at the last listing.
    #[cfg(test)]
    pub(super) fn synced(&self) -> std::collections::BTreeSet<std::ffi::OsString> {
        let synced = self
            .synced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        synced.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests;
