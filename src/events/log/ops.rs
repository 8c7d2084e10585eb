//! Tenant ops: writes of a tenant's own keys beside its appends (a retention trim's removals, an
//! erasure's key removals), made through the writer so that they reach every backend.
//!
//! The stager applies them as one sled batch between two batches of groups (never inside one)
//! and hands them to the syncer like a batch of groups: with sled it flushes and `fdatasync`s
//! before answering; with JetStream it publishes them as one record of the tenant (its head
//! unchanged, fenced like any record) and answers only after the ack. So every node's cache
//! gets them: a node that follows the tenant applies the record, a fresh node replays it.
//!
//! A tenant-ops record keeps the tenant's head, so the head alone no longer tells whether a
//! cache has every record: each ops batch also raises the tenant's *ops revision* (the key
//! `{t}\0R`, written in the same batch and record), and every record carries the revision after
//! it (`Record::rev`). A cache is at a record only when both the head and the revision match.
//!
//! Invariant: every op key is the tenant's (inside `keys::tenant_prefix`) and none is the
//! revision key; a request breaking it is refused whole, before anything is written.

use super::replica::{Op, RECORD_BYTES_MAX};
use super::{AppendError, EventLog, Request};
use crate::events::keys;
use crate::tenancy::TenantId;

/// Most bytes of a refused key shown in the error.
const KEY_SHOWN_BYTES_MAX: usize = 80;

/// Most bytes of ops one call writes (keys and values, plus [`OP_OVERHEAD_BYTES`] each): they
/// must fit one record, with room for the ops revision the log adds. Larger: split the call.
pub const TENANT_OPS_BYTES_MAX: usize = RECORD_BYTES_MAX - 4096;

/// Bytes an op counts for besides its key and value (as records count them).
const OP_OVERHEAD_BYTES: usize = 8;

impl EventLog {
    /// Writes `ops` (key, new value or `None` to remove) of `tenant`'s keys as one batch beside
    /// its appends, durably: answered after the flush (sled) or the stream's ack (JetStream).
    /// Every key must lie in the tenant's range and must not be its ops revision key, else
    /// [`AppendError::ForeignKey`] and nothing is written; ops over [`TENANT_OPS_BYTES_MAX`] get
    /// [`AppendError::OpsTooLarge`] (split them); a tenant without events gets
    /// [`AppendError::NoLog`]. A failure fails the log, which recovers as after a failed append
    /// (on JetStream its cache is brought back to the stream).
    pub fn apply_tenant_ops_blocking(
        &self,
        tenant: &TenantId,
        ops: Vec<Op>,
    ) -> Result<(), AppendError> {
        check_ops(tenant, &ops)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let req = Request::TenantOps {
            tenant: tenant.clone(),
            ops,
            reply,
        };
        self.inner.tx.send(req).map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }
}

/// What an op counts for against [`TENANT_OPS_BYTES_MAX`].
fn op_bytes((key, value): &Op) -> usize {
    key.len() + value.as_ref().map_or(0, |v| v.len()) + OP_OVERHEAD_BYTES
}

/// `ops` in order, cut into parts that each fit one call of
/// [`EventLog::apply_tenant_ops_blocking`] (an op too large on its own is a part by itself,
/// which that call refuses).
pub fn split_ops(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut parts = Vec::new();
    let (mut part, mut bytes) = (Vec::new(), 0);
    for op in ops {
        let size = op_bytes(&op);
        if !part.is_empty() && bytes + size > TENANT_OPS_BYTES_MAX {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += size;
        part.push(op);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// Refuses ops over [`TENANT_OPS_BYTES_MAX`], or with a key outside the tenant or on its ops
/// revision key.
pub(super) fn check_ops(tenant: &TenantId, ops: &[Op]) -> Result<(), AppendError> {
    let prefix = keys::tenant_prefix(tenant);
    let rev_key = keys::ops_revision_key(tenant);
    let foreign = ops
        .iter()
        .find(|(key, _)| !key.starts_with(&prefix) || key.as_slice() == rev_key.as_slice());
    let bytes: usize = ops.iter().map(op_bytes).sum();
    if bytes > TENANT_OPS_BYTES_MAX {
        return Err(AppendError::OpsTooLarge {
            tenant: tenant.clone(),
            bytes,
        });
    }
    match foreign {
        None => Ok(()),
        Some((key, _)) => Err(AppendError::ForeignKey {
            tenant: tenant.clone(),
            key: format!(
                "{:?}",
                String::from_utf8_lossy(&key[..key.len().min(KEY_SHOWN_BYTES_MAX)])
            ),
        }),
    }
}

/// The tenant's ops revision in `tree`: how many tenant-ops batches its log has had.
pub(super) fn revision(tree: &sled::Tree, tenant: &TenantId) -> Result<u64, sled::Error> {
    let value = tree.get(keys::ops_revision_key(tenant))?;
    Ok(value
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

#[cfg(test)]
mod tests;
