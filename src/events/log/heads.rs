//! Signed chain heads kept beside a tenant's frames (`{t}\0 H {tenant_seq:be64}`,
//! [`crate::events::keys`]). The log stores them as opaque bytes: what they hold and how they
//! are signed and checked is `audit::anchor`'s.
//!
//! With sled a head is written beside the writer, not through it: it names a `tenant_seq` at or
//! below the durable frontier, which no recovery takes back, so it never points at an event
//! that could vanish. It is flushed before [`EventLog::put_signed_head`] returns; one lost in a
//! crash is signed again at the next interval. With JetStream the cache is rebuilt from the
//! stream, so a head goes through the writer as a tenant op ([`EventLog::apply_tenant_ops_blocking`]):
//! published as a record of the tenant, it reaches every node's cache and survives a rebuild.
//! Only the tenant's writer may publish (another node's record would be fenced), so a node that
//! does not own the tenant stores nothing ([`HeadStored::NotOwner`]). Deleting a tenant removes
//! its heads with its other keys (one prefix).

use serde_bytes::ByteBuf;

use super::contain::contained;
use super::{store, EventLog, ReadError};
use crate::events::keys;
use crate::tenancy::TenantId;

/// What [`EventLog::put_signed_head`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadStored {
    /// The head is durable in the log (flushed, or acked by the stream).
    Stored,
    /// Nothing: a cluster node that does not own the tenant (its owner signs).
    NotOwner,
}

impl EventLog {
    /// Stores `value` as the signed head of `tenant` at `tenant_seq` and flushes it. Refused
    /// when `tenant_seq` is past the tenant's durable frontier: its log was deleted (offboarding)
    /// after the head was read, and a head must never outlive the events it names. (A deletion
    /// landing between this check and the insert can still leave one; a second deletion run
    /// removes it.)
    pub fn put_signed_head(
        &self,
        tenant: &TenantId,
        tenant_seq: u64,
        value: &[u8],
    ) -> Result<HeadStored, ReadError> {
        let err = |detail: String| ReadError {
            tenant: tenant.clone(),
            position: format!("signed head at tenant_seq {tenant_seq}"),
            detail,
        };
        let store = self
            .inner
            .shared
            .store()
            .ok_or_else(|| err(store::CLOSED.into()))?;
        if tenant_seq > self.durable_frontier(tenant) {
            return Err(err(
                "past the durable frontier (the tenant's log was deleted meanwhile)".into(),
            ));
        }
        let key = keys::signed_head_key(tenant, tenant_seq);
        if self.replica().is_some() {
            if !self.owns(tenant) {
                return Ok(HeadStored::NotOwner);
            }
            let op = (ByteBuf::from(key), Some(ByteBuf::from(value)));
            self.apply_tenant_ops_blocking(tenant, vec![op])
                .map_err(|e| err(e.to_string()))?;
            return Ok(HeadStored::Stored);
        }
        contained(|| {
            store.tree.insert(key, value)?;
            store.db.flush().map(drop)
        })
        .map_err(err)?
        .map_err(|e| err(e.to_string()))?;
        Ok(HeadStored::Stored)
    }

    /// The signed heads of `tenant` at or below `upto`, the newest `max` of them, in ascending
    /// `tenant_seq` order, as `(tenant_seq, value)`.
    pub fn signed_heads(
        &self,
        tenant: &TenantId,
        upto: u64,
        max: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, ReadError> {
        let err = |detail: String| ReadError {
            tenant: tenant.clone(),
            position: "signed heads".into(),
            detail,
        };
        // The reader's parts keep the store open while the range is read.
        let parts = self.inner.shared.reader(tenant);
        let tree = parts.tree.clone()?;
        let (start, _) = keys::signed_head_range(tenant);
        let end = keys::signed_head_key(tenant, upto);
        let mut out = Vec::new();
        let mut range = tree.range(start.clone()..=end);
        while out.len() < max {
            let Some(item) = contained(|| range.next_back()).map_err(err)? else {
                break;
            };
            let (key, value) = item.map_err(|e| err(e.to_string()))?;
            let seq = key
                .get(start.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| err("malformed signed head key".into()))?;
            out.push((seq, value.to_vec()));
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
