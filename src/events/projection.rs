//! Storage for projections (read models folded from the log): a sled tree beside the log,
//! tenant-prefixed like it, with a per-tenant checkpoint (the last `tenant_seq` folded in) that is
//! written in the same atomic batch as the data it covers.
//!
//! Invariants:
//! - data and checkpoint of a tenant change together or not at all, so a projection resumes
//!   exactly where it stopped after any crash;
//! - every key starts with `{tenant}\0`: a tenant's projection is read or cleared alone;
//! - since sled writes one log for all trees in order, a projection batch that reached disk
//!   implies the log batches it folded reached disk too.

use std::collections::BTreeMap;

use crate::events::keys;
use crate::events::log::EventLog;
use crate::tenancy::TenantId;

const TAG_CHECKPOINT: u8 = b'C';
const TAG_DATA: u8 = b'D';
const TAG_ERASURES: u8 = b'E';

/// A projection store failed: storage broken. Report it; the projection can be rebuilt.
#[derive(Debug, thiserror::Error)]
#[error("projection store {name}: {detail}")]
pub struct ProjectionError {
    pub name: &'static str,
    pub detail: String,
}

/// A raw key/value pair of a projection tree.
pub type Entry = (Vec<u8>, Vec<u8>);

/// One projection's tree. It looks the sled tree up for each operation, so that it never holds
/// the files open across a recovery of the log (which reopens them).
#[derive(Clone)]
pub struct ProjectionTree {
    log: EventLog,
    name: &'static str,
}

impl EventLog {
    /// The projection tree `name` (created empty on first use).
    pub fn projection(&self, name: &'static str) -> Result<ProjectionTree, ProjectionError> {
        let tree = ProjectionTree {
            log: self.clone(),
            name,
        };
        tree.tree()?;
        Ok(tree)
    }
}

fn tagged(tenant: &TenantId, tag: u8, key: &[u8]) -> Vec<u8> {
    let mut k = keys::tenant_prefix(tenant);
    k.push(tag);
    k.extend_from_slice(key);
    k
}

impl ProjectionTree {
    /// The log this projection belongs to.
    pub fn log(&self) -> &EventLog {
        &self.log
    }

    fn err(&self, e: impl ToString) -> ProjectionError {
        ProjectionError {
            name: self.name,
            detail: e.to_string(),
        }
    }

    fn tree(&self) -> Result<sled::Tree, ProjectionError> {
        let db = self.log.db().ok_or_else(|| {
            self.err("the event log is reopening its files after a write error; retry shortly")
        })?;
        db.open_tree(format!("projection:{}", self.name))
            .map_err(|e| self.err(e))
    }

    /// The last `tenant_seq` folded into this projection for `tenant` (0: nothing yet).
    pub fn checkpoint(&self, tenant: &TenantId) -> Result<u64, ProjectionError> {
        self.counter(tenant, TAG_CHECKPOINT, "checkpoint")
    }

    /// The tenant's big-endian counter under `tag` (0 when absent).
    fn counter(&self, tenant: &TenantId, tag: u8, what: &str) -> Result<u64, ProjectionError> {
        let Some(v) = self
            .tree()?
            .get(tagged(tenant, tag, &[]))
            .map_err(|e| self.err(e))?
        else {
            return Ok(0);
        };
        let bytes: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| self.err(format!("malformed {what}")))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// How many of the log's erasures of `tenant` this projection has taken in (0: none).
    pub fn erasures_folded(&self, tenant: &TenantId) -> Result<u64, ProjectionError> {
        self.counter(tenant, TAG_ERASURES, "erasure count")
    }

    /// Records that the projection has taken in `erasures` erasures of `tenant`.
    pub fn set_erasures_folded(
        &self,
        tenant: &TenantId,
        erasures: u64,
    ) -> Result<(), ProjectionError> {
        self.tree()?
            .insert(
                tagged(tenant, TAG_ERASURES, &[]),
                &erasures.to_be_bytes()[..],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn get(&self, tenant: &TenantId, key: &[u8]) -> Result<Option<Vec<u8>>, ProjectionError> {
        let v = self
            .tree()?
            .get(tagged(tenant, TAG_DATA, key))
            .map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.to_vec()))
    }

    /// The tenant's entries whose key starts with `prefix`, in key order (keys without the
    /// tenant prefix).
    pub fn scan(
        &self,
        tenant: &TenantId,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<Entry, ProjectionError>> + '_ {
        let full = tagged(tenant, TAG_DATA, prefix);
        let skip = full.len() - prefix.len();
        let (tree, error) = match self.tree() {
            Ok(tree) => (Some(tree), None),
            Err(e) => (None, Some(Err(e))),
        };
        let entries = tree
            .into_iter()
            .flat_map(move |t| t.scan_prefix(full.clone()));
        error.into_iter().chain(entries.map(move |entry| {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            Ok((k.get(skip..).unwrap_or_default().to_vec(), v.to_vec()))
        }))
    }

    /// Writes `entries` and moves the checkpoint to `checkpoint`, atomically.
    pub fn commit(
        &self,
        tenant: &TenantId,
        entries: &BTreeMap<Vec<u8>, Vec<u8>>,
        checkpoint: u64,
    ) -> Result<(), ProjectionError> {
        let mut batch = sled::Batch::default();
        for (k, v) in entries {
            batch.insert(tagged(tenant, TAG_DATA, k), v.as_slice());
        }
        batch.insert(
            tagged(tenant, TAG_CHECKPOINT, &[]),
            &checkpoint.to_be_bytes()[..],
        );
        self.tree()?.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// Replaces everything of `tenant` with `entries` and the checkpoint `checkpoint`, in one
    /// atomic batch: a reader sees the old projection or the new one, never a mix, and a crash
    /// leaves one of the two. The batch removes every old key `entries` does not overwrite (the
    /// keys are scanned first; their count bounds the batch's memory).
    pub fn replace_tenant(
        &self,
        tenant: &TenantId,
        entries: &BTreeMap<Vec<u8>, Vec<u8>>,
        checkpoint: u64,
    ) -> Result<(), ProjectionError> {
        let tree = self.tree()?;
        let data = tagged(tenant, TAG_DATA, &[]);
        let mut batch = sled::Batch::default();
        for key in tree.scan_prefix(&data).keys() {
            let key = key.map_err(|e| self.err(e))?;
            if !entries.contains_key(key.get(data.len()..).unwrap_or_default()) {
                batch.remove(key);
            }
        }
        for (k, v) in entries {
            batch.insert(tagged(tenant, TAG_DATA, k), v.as_slice());
        }
        batch.insert(
            tagged(tenant, TAG_CHECKPOINT, &[]),
            &checkpoint.to_be_bytes()[..],
        );
        tree.apply_batch(batch).map_err(|e| self.err(e))
    }

    /// Removes everything of `tenant` (data and checkpoint), for a rebuild.
    pub fn clear_tenant(&self, tenant: &TenantId) -> Result<u64, ProjectionError> {
        const CLEAR_BATCH_KEYS: usize = 4096;
        let prefix = keys::tenant_prefix(tenant);
        let mut removed = 0u64;
        let tree = self.tree()?;
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0u64;
            for key in tree.scan_prefix(&prefix).keys().take(CLEAR_BATCH_KEYS) {
                batch.remove(key.map_err(|e| self.err(e))?);
                n += 1;
            }
            if n == 0 {
                return Ok(removed);
            }
            tree.apply_batch(batch).map_err(|e| self.err(e))?;
            removed += n;
        }
    }

    /// Every entry of `tenant`, raw: for comparing an incremental projection with a rebuild.
    pub fn dump(&self, tenant: &TenantId) -> Result<Vec<Entry>, ProjectionError> {
        self.tree()?
            .scan_prefix(keys::tenant_prefix(tenant))
            .map(|e| {
                e.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| self.err(e))
            })
            .collect()
    }
}
