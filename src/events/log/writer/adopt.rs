//! The stager's side of a cluster: adopting a tenant whose lease this node won.

use std::sync::PoisonError;

use super::Stager;
use crate::events::keys;
use crate::events::log::ops;
use crate::events::log::read::tenant_head;
use crate::events::log::{Head, ReplicaError};
use crate::tenancy::TenantId;

/// Takeover records an adoption tries before giving up: each refusal means another node
/// appended meanwhile, so the cache is brought to the stream again first.
const ADOPT_ATTEMPTS: usize = 3;

impl Stager {
    /// Brings the tenant's cache to the stream, fences earlier writers with a takeover record,
    /// reloads the caches the stager keeps of the tenant, and only then takes its appends.
    pub(super) fn adopt(&mut self, tenant: &TenantId) -> Result<(), String> {
        let (Some(replica), Some(owned)) = (self.shared.replica.clone(), &self.shared.owned) else {
            return Ok(());
        };
        let Some(store) = self.store.clone() else {
            return Err(self.failed().to_string());
        };
        // The catch-up below applies another owner's records, message ids included: the
        // tenant's filter is built again from the tree at its next check.
        self.seen.forget(tenant);
        let _sync = self
            .shared
            .sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut attempt = 1;
        let head = loop {
            let local = tenant_head(&store.tree, tenant).map_err(|e| e.to_string())?;
            let caught = replica
                .catch_up(&store.tree, tenant, local)
                .map_err(|e| e.to_string())?;
            let (expected, head) = caught.unwrap_or((0, Head::EMPTY));
            let rev = ops::revision(&store.tree, tenant).map_err(|e| e.to_string())?;
            match replica.takeover(tenant, expected, head, rev) {
                Ok(_) => break head,
                Err(ReplicaError::Fenced { .. }) if attempt < ADOPT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e.to_string()),
            }
        };
        if head.tenant_seq == 0 {
            self.heads.remove(tenant);
        } else {
            self.heads.insert(tenant.clone(), head);
        }
        // Keys cached while another node owned it may have been destroyed by its erasures.
        if let Some(ring) = &self.shared.opts.keyring {
            ring.forget_tenant(tenant);
        }
        let prefix = keys::tenant_prefix(tenant);
        self.sessions.retain(|key, _| !key.starts_with(&prefix));
        self.damaged.remove(tenant);
        self.revs.remove(tenant);
        self.shared.set_frontier(tenant, head.tenant_seq);
        owned
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.clone());
        tracing::info!(tenant = %tenant, tenant_seq = head.tenant_seq, "tenant adopted: this node appends for it");
        Ok(())
    }
}
