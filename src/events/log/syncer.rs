//! The log's syncer thread: makes the batches the stager applied durable (`Db::flush`, then
//! `fdatasync` of sled's data file), moves the durable frontier past them, and only then
//! answers their callers. One flush covers every batch waiting (group commit).
//!
//! Invariants: a reply is sent only after a flush that started after its batch was applied;
//! the frontier moves before the reply, so a caller reads its own acknowledged events; a
//! failed flush fails every waiting batch and stops appends until the stager recovers.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::rebase::BaseChunk;
use super::replica::Replica;
use super::sled_files::BlobFiles;
use super::store::{Shared, Store};
use super::writer::Applied;
#[cfg(debug_assertions)]
use super::writer::{fault_ack_before_flush, FAULT_ACK_BEFORE_FLUSH_VAR, FAULT_SLOW_DISK};
use super::{AppendError, AppendOutcome, LogMetrics};

/// The syncer: makes applied batches durable, moves the frontier and answers their callers.
pub(super) struct Syncer {
    pub(super) shared: Arc<Shared>,
}

impl Syncer {
    pub(super) fn run(self, rx: Receiver<Applied>) {
        #[cfg(debug_assertions)]
        let slow_disk =
            fault_ack_before_flush(std::env::var_os(FAULT_ACK_BEFORE_FLUSH_VAR).as_deref());
        let mut waiting = Vec::new();
        while let Ok(first) = rx.recv() {
            #[cfg(debug_assertions)]
            if slow_disk {
                std::thread::sleep(FAULT_SLOW_DISK);
            }
            waiting.push(first);
            waiting.extend(rx.try_iter());
            // Every waiting batch went to the same handles: a recovery replaces them only
            // once the syncer has answered everything.
            let store = waiting.iter().rev().find_map(|a| match a {
                Applied::Appends { store, .. }
                | Applied::Delete { store, .. }
                | Applied::Base { store, .. } => store.clone(),
            });
            let synced = match (&store, self.shared.failure()) {
                (_, Some(e)) => Err(e),
                (None, None) => Err("the event log files are closed".to_owned()),
                (Some(store), None) => match &self.shared.replica {
                    None => {
                        let blobs = &self.shared.blobs;
                        self.timed(appended_groups(&waiting), || flush(store, blobs))
                    }
                    Some(replica) => {
                        let groups = appended_groups(&waiting);
                        let replicated = self.timed(groups, || replicate(replica, &mut waiting));
                        // Another node took these tenants over: no more appends for them here,
                        // whatever the leases say, until this node adopts them again.
                        for tenant in replica.take_fenced() {
                            tracing::warn!(tenant = %tenant, "the stream refused this node's records: another node owns the tenant now");
                            self.shared.disown(&tenant);
                        }
                        replicated
                    }
                },
            };
            drop(store);
            if let Err(e) = &synced {
                tracing::error!(error = %e, "event log flush failed; refusing appends until recovered");
                self.shared.fail(e.clone());
            }
            for applied in waiting.drain(..) {
                self.settle(applied, &synced);
            }
        }
    }

    /// Runs one commit of `groups` appended groups, timing it into the log's metrics.
    fn timed(
        &self,
        groups: usize,
        commit: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let started = std::time::Instant::now();
        let result = commit();
        let metrics = &self.shared.metrics;
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        metrics.commit_groups.observe(groups as f64);
        result
    }

    /// Moves the frontier past a durable batch, then answers its callers.
    fn settle(&self, applied: Applied, synced: &Result<(), String>) {
        let batch = match &applied {
            Applied::Appends {
                batch,
                tops,
                failed: false,
                ..
            } if synced.is_ok() => {
                self.shared.advance(tops);
                self.shared
                    .durable_batch
                    .fetch_max(*batch, Ordering::SeqCst);
                Some(*batch)
            }
            Applied::Appends { batch, .. } => Some(*batch),
            Applied::Delete {
                tenant,
                result: Ok(_),
                ..
            } if synced.is_ok() => {
                self.shared.forget(tenant);
                None
            }
            Applied::Delete { .. } | Applied::Base { .. } => None,
        };
        answer(applied, synced, &self.shared.metrics);
        if let Some(batch) = batch {
            self.shared.batch_answered(batch);
        }
    }
}

/// Groups the waiting batches append (not retries, not refused or failed ones).
fn appended_groups(waiting: &[Applied]) -> usize {
    waiting
        .iter()
        .map(|a| match a {
            Applied::Appends {
                replies,
                failed: false,
                ..
            } => replies
                .iter()
                .filter(|(_, r)| matches!(r, Ok(AppendOutcome::Appended(_))))
                .count(),
            _ => 0,
        })
        .sum()
}

/// The JetStream backend's "flush": publishes the waiting batches' groups and waits for the
/// stream's acks; a deleted tenant's records are purged in turn. The local files are not
/// flushed: they are a cache, which `replica::reconcile` brings back to the stream after a
/// crash.
fn replicate(replica: &Replica, waiting: &mut [Applied]) -> Result<(), String> {
    let mut units = Vec::new();
    for applied in waiting.iter_mut() {
        match applied {
            Applied::Appends {
                units: batch,
                failed: false,
                ..
            } => units.append(batch),
            Applied::Appends { .. } => {}
            Applied::Delete {
                tenant,
                result: Ok(_),
                ..
            } => {
                replica
                    .commit(std::mem::take(&mut units))
                    .map_err(|e| e.to_string())?;
                replica.purge(tenant).map_err(|e| e.to_string())?;
            }
            Applied::Delete { .. } => {}
            Applied::Base {
                tenant,
                unit,
                before,
                ..
            } => {
                // After every record handed over earlier, as a record of its own.
                replica
                    .commit(std::mem::take(&mut units))
                    .map_err(|e| e.to_string())?;
                *before = replica.last_seq(tenant);
                let chunk = unit.take().into_iter().collect();
                replica.commit(chunk).map_err(|e| e.to_string())?;
            }
        }
    }
    replica.commit(units).map_err(|e| e.to_string())
}

/// `Db::flush`, then an fsync of sled's new blob files and `fdatasync` of its data file:
/// sled's flush ends in sync_file_range, which leaves the data in a volatile drive cache, and
/// sled never syncs a blob file; the syncs make the ack survive a power loss.
pub(super) fn flush(store: &Store, blobs: &BlobFiles) -> Result<(), String> {
    store.db.flush().map_err(|e| e.to_string())?;
    // sled never fsyncs its blob files; the data file's records may point at them.
    blobs
        .sync_new()
        .map_err(|e| format!("fsync of sled's blob files: {e}"))?;
    store.data_file.sync_data().map_err(|e| e.to_string())
}

/// Sends each caller its result, turning successes into failures when the write did not hold.
pub(super) fn answer(applied: Applied, synced: &Result<(), String>, metrics: &LogMetrics) {
    match applied {
        Applied::Appends {
            replies,
            failed,
            ops_reply,
            ..
        } => {
            if let Some(reply) = ops_reply {
                let result = match (synced, failed) {
                    (Err(e), _) => Err(AppendError::Failed(e.clone())),
                    (Ok(()), true) => Err(AppendError::Failed("tenant ops apply failed".into())),
                    (Ok(()), false) => Ok(()),
                };
                let _ = reply.send(result);
            }
            for (reply, result) in replies {
                let result = match (result, synced, failed) {
                    (Ok(_), Err(e), _) => Err(AppendError::Failed(e.clone())),
                    (Ok(_), Ok(()), true) => Err(AppendError::Failed("batch apply failed".into())),
                    (r, _, _) => r,
                };
                reply.send(result, metrics);
            }
        }
        Applied::Base {
            reply,
            before,
            next,
            ..
        } => {
            let result = match synced {
                Ok(()) => Ok(BaseChunk { before, next }),
                Err(e) => Err(AppendError::Failed(e.clone())),
            };
            let _ = reply.send(result);
        }
        Applied::Delete { reply, result, .. } => {
            let result = match (result, synced) {
                (Ok(_), Err(e)) => Err(AppendError::Failed(e.clone())),
                (r, _) => r,
            };
            let _ = reply.send(result);
        }
    }
}
