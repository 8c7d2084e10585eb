//! The stager's side of tenant ops (`log::ops`): writes of a tenant's keys beside its appends
//! (trims, erasures), applied as one sled batch and made durable like a batch of groups: on
//! sled the syncer flushes them, on JetStream it publishes them as one record of the tenant.

use tokio::sync::oneshot;

use super::{Applied, Stager, Undo, Unit};
use crate::events::keys;
use crate::events::log::ops::{check_ops, revision};
use crate::events::log::replica::Op;
use crate::events::log::AppendError;
use crate::tenancy::TenantId;

/// Where the caller of a tenant-ops request waits.
pub(in crate::events::log) type OpsReply = oneshot::Sender<Result<(), AppendError>>;

impl Stager {
    /// The tenant's ops revision (cached), for the units of the stream.
    pub(super) fn ops_rev(
        &mut self,
        tree: &sled::Tree,
        tenant: &TenantId,
    ) -> Result<u64, AppendError> {
        if let Some(rev) = self.revs.get(tenant) {
            return Ok(*rev);
        }
        let rev = revision(tree, tenant).map_err(|e| AppendError::Failed(e.to_string()))?;
        self.revs.insert(tenant.clone(), rev);
        Ok(rev)
    }

    /// Checks and applies one tenant-ops request. Returns the batch for the syncer, which
    /// answers the caller once it is durable; `None` when the caller was answered here (refused,
    /// or nothing to write).
    pub(super) fn apply_ops(
        &mut self,
        tree: Option<&sled::Tree>,
        tenant: &TenantId,
        ops: Vec<Op>,
        reply: OpsReply,
    ) -> Option<Applied> {
        let replicate = self.shared.replica.is_some();
        let checked = match tree {
            Some(tree) => self.check_ops_request(tree, tenant, &ops),
            None => Err(self.failed()),
        };
        let (tree, head, rev) = match (tree, checked) {
            (Some(tree), Ok(Some((head, rev)))) => (tree, head, rev),
            (_, Ok(None)) => {
                let _ = reply.send(Ok(()));
                return None;
            }
            (_, Err(e)) => {
                let _ = reply.send(Err(e));
                return None;
            }
            (None, Ok(Some(_))) => {
                let _ = reply.send(Err(self.failed()));
                return None;
            }
        };
        let rev_key = keys::ops_revision_key(tenant);
        let mut undo = Undo::default();
        let mut batch = sled::Batch::default();
        let mut all = ops;
        all.push((
            rev_key.into(),
            Some((rev + 1).to_be_bytes().to_vec().into()),
        ));
        for (key, value) in &all {
            // What each key held before: a recovery puts it back if no flush covered the batch.
            match tree.get(key.as_slice()) {
                Ok(before) => undo.open.push((key.to_vec(), before)),
                Err(e) => {
                    self.shared.fail(e.to_string());
                    let _ = reply.send(Err(AppendError::Failed(e.to_string())));
                    return None;
                }
            }
            match value {
                Some(value) => batch.insert(key.as_slice(), value.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        self.batch += 1;
        self.unconfirmed.push_back((self.batch, undo));
        let failed = match tree.apply_batch(batch) {
            Ok(()) => false,
            Err(e) => {
                tracing::error!(error = %e, tenant = %tenant, "tenant ops apply failed; refusing appends until recovered");
                self.shared.fail(e.to_string());
                true
            }
        };
        // The ops may have changed keys the stager caches: read them again when needed.
        let prefix = keys::tenant_prefix(tenant);
        self.sessions.retain(|k, _| !k.starts_with(&prefix));
        self.seen.forget(tenant);
        self.revs.insert(tenant.clone(), rev + 1);
        let units = if replicate {
            vec![Unit {
                tenant: tenant.clone(),
                head,
                rev: rev + 1,
                ops: all,
            }]
        } else {
            Vec::new()
        };
        Some(Applied::Appends {
            replies: Vec::new(),
            failed,
            store: self.store.clone(),
            batch: self.batch,
            tops: Vec::new(),
            units,
            ops_reply: Some(reply),
        })
    }

    /// Refuses the request while the log has failed, for a tenant this node does not own or
    /// whose log is damaged or empty, and for a key outside the tenant; `Ok(None)`: no ops.
    /// Otherwise the tenant's head and ops revision.
    fn check_ops_request(
        &mut self,
        tree: &sled::Tree,
        tenant: &TenantId,
        ops: &[Op],
    ) -> Result<Option<(crate::events::log::Head, u64)>, AppendError> {
        self.check_writable(tenant)?;
        check_ops(tenant, ops)?;
        if ops.is_empty() {
            return Ok(None);
        }
        let Some(head) = self.heads.get(tenant).copied() else {
            return Err(AppendError::NoLog(tenant.clone()));
        };
        Ok(Some((head, self.ops_rev(tree, tenant)?)))
    }
}
