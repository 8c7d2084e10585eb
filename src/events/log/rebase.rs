//! Stream compaction of one tenant (JetStream backend): its current cache state is published as
//! *base* records, and its records before the first of them are purged, so that what the
//! tenant's records once held and no longer hold (a trimmed frame, an erased key) leaves the
//! stream.
//!
//! The stager reads the tenant's keys chunk by chunk (puts only, each chunk under
//! [`RECORD_BYTES_MAX`], with the tenant's current head and ops revision), between batches of
//! groups, so appends go on meanwhile. A chunk read after every earlier batch was applied is
//! correct: every record before the first chunk is reflected in the cache it was read from, and
//! a later record (an interleaved append) overrides a chunk's older value because it comes after
//! that chunk in the stream. The syncer publishes each chunk as a record of its own, after every
//! record handed to it earlier; the first chunk's answer names the tenant's last stream sequence
//! before it. Once every chunk was acked, the tenant's records strictly before the first chunk
//! are purged.
//!
//! A crash midway leaves harmless duplicate puts (the next compaction starts over). Readers of
//! records cope with the purge: a catch-up from a record that is gone rebuilds the tenant's cache
//! from what remains (`Replica::catch_up`, `Replica::catch_up_from`); fencing is unchanged, as
//! the tenant's last record is never purged.

use super::replica::RECORD_BYTES_MAX;
use super::{AppendError, EventLog, Request};
use crate::tenancy::TenantId;

/// What the stager answers for one base chunk.
pub(super) struct BaseChunk {
    /// The tenant's last stream sequence before the chunk's record (0: none).
    pub(super) before: u64,
    /// The last key the chunk holds, where the next chunk starts (after it); `None`: the chunk
    /// was the last.
    pub(super) next: Option<Vec<u8>>,
}

/// What a compaction did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Base records published.
    pub chunks: u64,
    /// Records purged from the stream.
    pub purged: u64,
}

impl EventLog {
    /// JetStream backend: rewrites `tenant`'s records as base records of its current state and
    /// purges the records before them (see the module docs); appends go on meanwhile. With the
    /// sled backend there are no records: `Ok` with nothing done. Errors as for appends (this
    /// node must own the tenant; a failure fails the log, which recovers as after an append).
    pub fn compact_tenant_records_blocking(
        &self,
        tenant: &TenantId,
    ) -> Result<Compacted, AppendError> {
        let Some(replica) = self.replica() else {
            return Ok(Compacted::default());
        };
        let mut done = Compacted::default();
        let mut after = None;
        let mut first_chunk = None;
        loop {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let req = Request::BaseChunk {
                tenant: tenant.clone(),
                after: after.take(),
                reply,
            };
            self.inner.tx.send(req).map_err(|_| AppendError::Closed)?;
            let chunk = rx.blocking_recv().map_err(|_| AppendError::Closed)??;
            done.chunks += 1;
            first_chunk.get_or_insert(chunk.before + 1);
            match chunk.next {
                Some(key) => after = Some(key),
                None => break,
            }
        }
        if let Some(keep_from) = first_chunk {
            done.purged = replica
                .purge_before(tenant, keep_from)
                .map_err(|e| AppendError::Failed(e.to_string()))?;
        }
        Ok(done)
    }
}

/// Bytes of ops per base chunk: the ops' size as records count it (`Unit::bytes`).
pub(super) const BASE_CHUNK_BYTES_MAX: usize = RECORD_BYTES_MAX;

#[cfg(test)]
mod tests;
