//! Recovery of the write path after a write error, without a restart.
//!
//! sled keeps its first I/O error forever (a full disk, say), so the stager closes the files,
//! reopens them, takes back every batch that no successful flush covered (the keys each created
//! are removed, the open-session keys each changed are restored, newest batch first), makes that
//! durable, re-checks every tenant's tail as at open, and reloads its caches from disk. Only
//! then does the log accept appends again. It retries every [`RECOVERY_RETRY`] until this
//! succeeds, i.e. once the cause is gone.
//!
//! With the JetStream backend the stream decides what the cache holds, so a recovery first
//! waits (up to [`STREAM_WAIT`]) for the stream to answer short probes, and only then closes
//! the files: while the stream elects a leader or its servers are away, reads go on, and the
//! recovery notices the new leader within a probe instead of a request's full timeout.
//!
//! Invariant: after a recovery the log holds exactly the groups whose callers were told they
//! succeeded (a batch is atomic in sled, and a batch not covered by a flush is undone whether or
//! not any of it reached the disk).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::contain::contained;
use super::read::recover_heads;
use super::replica::{reconcile, STREAM_WAIT};
use super::syncer::flush;
use super::writer::Stager;
use super::{open_store, RECOVERY_RETRY};

/// Bytes the disk must take (written and synced to a probe file beside sled's files) before a
/// recovery closes the files: two of sled's 512 KiB segments.
pub const PROBE_BYTES: usize = 1024 * 1024;

/// Longest a recovery keeps new readers out while waiting for those in flight to finish.
const READERS_WAIT: Duration = Duration::from_secs(2);

/// Longest a recovery waits for the syncer to answer the batches it holds.
const SYNCER_WAIT: Duration = Duration::from_secs(5);

impl Stager {
    /// Recovers unless the last attempt was less than [`RECOVERY_RETRY`] ago.
    pub(super) fn recover_if_due(&mut self) {
        if self
            .last_recovery
            .is_some_and(|at| at.elapsed() < RECOVERY_RETRY)
        {
            return;
        }
        self.last_recovery = Some(Instant::now());
        match self.recover() {
            Ok(()) => tracing::warn!(
                "event log recovered after a write error: files reopened, unflushed batches \
                 undone, tails checked; appends are accepted again"
            ),
            Err(e) => tracing::warn!(error = %e, "event log recovery failed; retrying"),
        }
    }

    fn recover(&mut self) -> Result<(), String> {
        if let Some(replica) = &self.shared.replica {
            replica
                .wait_available(STREAM_WAIT)
                .map_err(|e| format!("waiting for the stream: {e}"))?;
        }
        // Closing the files would stop the reads too: only when the disk takes writes again.
        probe(&self.shared.dir)?;
        // Nothing may still be using the old handles: the syncer answers every batch first.
        let deadline = Instant::now() + SYNCER_WAIT;
        while self.shared.answered_batch.load(Ordering::SeqCst) < self.batch {
            if Instant::now() > deadline {
                return Err("the syncer has not answered every batch yet".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Close: new readers wait (they get an error meanwhile) while those in flight finish,
        // for at most READERS_WAIT; a reader that holds the files longer (a long export) keeps
        // sled's lock, so then put them back and retry later, and reads go on meanwhile.
        self.store = None;
        if let Some(old) = self.shared.close() {
            let deadline = Instant::now() + READERS_WAIT;
            while Arc::strong_count(&old) > 1 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if Arc::strong_count(&old) > 1 {
                self.shared.put_back(old.clone());
                self.store = Some(old);
                return Err("readers still hold the files".into());
            }
        }
        let store = open_store(&self.shared.dir, &self.shared.opts)
            .map_err(|e| format!("reopening: {e}"))?;

        let durable = self.shared.durable_batch.load(Ordering::SeqCst);
        self.unconfirmed.retain(|(batch, _)| *batch > durable);
        if !self.unconfirmed.is_empty() {
            // One batch, so that the undo is atomic too. Newest first: an open-session key
            // changed by several batches ends at its value before the oldest.
            let mut undo = sled::Batch::default();
            for (_, u) in self.unconfirmed.iter().rev() {
                for key in &u.created {
                    undo.remove(key.as_slice());
                }
                for (key, before) in &u.open {
                    match before {
                        Some(value) => undo.insert(key.as_slice(), value.clone()),
                        None => undo.remove(key.as_slice()),
                    }
                }
            }
            store
                .tree
                .apply_batch(undo)
                .map_err(|e| format!("undoing unflushed batches: {e}"))?;
            flush(&store, &self.shared.blobs).map_err(|e| format!("flushing the undo: {e}"))?;
        }
        let check = || {
            contained(|| recover_heads(&store.tree))
                .map_err(|e| format!("checking the tails: sled panicked: {e}"))
        };
        let (mut heads, mut damaged) = check()?;
        if let Some(replica) = &self.shared.replica {
            // What failed may have reached the stream (an ack lost on the way), and another
            // node may have appended: the stream decides.
            let broken = damaged.iter().map(|d| d.tenant.clone()).collect();
            reconcile(replica, &store.tree, &heads, &broken)
                .map_err(|e| format!("bringing the cache to the stream: {e}"))?;
            (heads, damaged) = check()?;
        }
        for d in &damaged {
            tracing::error!(tenant = %d.tenant, position = %d.position, detail = %d.detail, "tenant log damaged");
        }
        self.damaged = damaged
            .iter()
            .map(|d| (d.tenant.clone(), d.clone()))
            .collect();
        self.heads = heads;
        self.sessions.clear();
        self.revs.clear();
        // A data key made for a batch that failed may not be on disk: read them again.
        if let Some(ring) = &self.shared.opts.keyring {
            ring.forget_cached();
        }
        // Batches were undone and the stream may have brought other nodes' message ids.
        self.seen.clear();
        self.unconfirmed.clear();
        self.shared.reset(&self.heads, damaged);
        self.store = Some(self.shared.install(store));
        self.shared.recovered();
        Ok(())
    }
}

/// Writes and syncs [`PROBE_BYTES`] in `dir`, then removes the file: whether the cause of the
/// write error (a full disk, a failing device) is gone.
fn probe(dir: &Path) -> Result<(), String> {
    let path = dir.join(".recovery-probe");
    let written = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let removed = std::fs::remove_file(&path);
    written
        .and(removed)
        .map_err(|e| format!("the disk still refuses writes ({}): {e}", path.display()))
}

#[cfg(test)]
mod tests;
