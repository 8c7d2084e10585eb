//! Offline compaction of the log's sled files: every tree copied into a fresh database (with the
//! log's own files beside sled's, such as `backend`) that then replaces the old one, so values
//! removed or overwritten before (an erased session's wrapped key, read-model rows, idempotency
//! records) leave the disk. sled is log-structured and keeps old values in its segments until it
//! happens to rewrite them; erasure (`crate::erase`) needs them gone now.
//!
//! **Crash safety.** The copy is built in `{dir}.compact`, flushed, every file fsynced, then the
//! marker `{dir}.compact/COMPACT_COMPLETE` written and fsynced. Only then is `{dir}` removed and
//! `{dir}.compact` renamed into its place. `finish_interrupted` (run by every open of the log)
//! completes a swap cut short after the marker, and removes a copy cut short before it (the old
//! database is then still whole).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::contain::contained;
use super::{open_db, open_error, sync_dir, LogOptions, OpenError};

/// The marker of a finished copy.
const COMPLETE_MARKER: &str = "COMPACT_COMPLETE";

/// What a compaction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Bytes of the log directory before.
    pub bytes_before: u64,
    /// Bytes after.
    pub bytes_after: u64,
}

fn copy_dir(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_owned();
    name.push(".compact");
    dir.with_file_name(name)
}

fn storage(dir: &Path, what: &str, e: impl std::fmt::Display) -> OpenError {
    OpenError::Storage {
        path: dir.to_owned(),
        detail: format!("compacting the log: {what}: {e}"),
    }
}

/// Completes or discards a compaction of `dir` that a crash cut short (see the module doc).
pub(super) fn finish_interrupted(dir: &Path) -> Result<(), OpenError> {
    let copy = copy_dir(dir);
    if !copy.exists() {
        return Ok(());
    }
    if copy.join(COMPLETE_MARKER).is_file() {
        swap_in(dir, &copy)
    } else {
        fs::remove_dir_all(&copy).map_err(|e| storage(dir, "removing an unfinished copy", e))
    }
}

fn swap_in(dir: &Path, copy: &Path) -> Result<(), OpenError> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| storage(dir, "removing the old files", e))?;
    }
    fs::rename(copy, dir).map_err(|e| storage(dir, "renaming the copy into place", e))?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(|e| storage(dir, "syncing the data dir", e))?;
    }
    let marker = dir.join(COMPLETE_MARKER);
    fs::remove_file(&marker).map_err(|e| storage(dir, "removing the marker", e))?;
    sync_dir(dir).map_err(|e| storage(dir, "syncing the log dir", e))
}

/// Rewrites the closed log at `dir` into fresh files (see the module doc). The log must not be
/// open (sled's lock refuses it otherwise: [`OpenError::InUse`]).
pub fn compact(dir: &Path) -> Result<Compacted, OpenError> {
    finish_interrupted(dir)?;
    let bytes_before = dir_bytes(dir);
    let copy = copy_dir(dir);
    let opts = LogOptions::default();
    {
        let old = open_db(dir, &opts)?;
        crate::private_fs::create_private_dir(&copy)
            .map_err(|e| storage(dir, "creating the copy's directory", e))?;
        let new = sled::Config::new()
            .path(&copy)
            .cache_capacity(opts.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .create_new(true)
            .open()
            .map_err(|e| open_error(&copy, e))?;
        contained(|| new.import(old.export()))
            .map_err(|e| storage(dir, "sled failed copying the trees", e))?;
        new.flush()
            .map_err(|e| storage(dir, "flushing the copy", e))?;
    }
    copy_own_files(dir, &copy).map_err(|e| storage(dir, "copying the log's own files", e))?;
    crate::private_fs::restrict_tree(&copy).map_err(|e| storage(dir, "restricting the copy", e))?;
    sync_tree(&copy).map_err(|e| storage(dir, "syncing the copy", e))?;
    let marker = copy.join(COMPLETE_MARKER);
    File::create(&marker)
        .and_then(|f| f.sync_all())
        .and_then(|()| sync_dir(&copy))
        .map_err(|e| storage(dir, "writing the marker", e))?;
    swap_in(dir, &copy)?;
    Ok(Compacted {
        bytes_before,
        bytes_after: dir_bytes(dir),
    })
}

/// Copies the files beside sled's in `dir` (the `backend` file) into `copy`: every top-level
/// file the fresh database did not make itself, except sled's snapshots (`snap.*`).
fn copy_own_files(dir: &Path, copy: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let target = copy.join(&name);
        let sled_snapshot = name.to_string_lossy().starts_with("snap.");
        if entry.file_type()?.is_file() && !sled_snapshot && !target.exists() {
            fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// fsyncs every file and directory under `dir`.
fn sync_tree(dir: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// Bytes of the files under `dir` (0 when unreadable).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

#[cfg(test)]
mod tests;
