//! The stager's side of stream compaction (`log::rebase`): reading one base chunk of a tenant's
//! keys between batches of groups, for the syncer to publish.

use tokio::sync::oneshot;

use super::{Applied, Stager, Unit};
use crate::events::keys;
use crate::events::log::rebase::{BaseChunk, BASE_CHUNK_BYTES_MAX};
use crate::events::log::replica::Op;
use crate::events::log::AppendError;
use crate::tenancy::TenantId;

/// Bytes an op adds to a record besides its key and value (as `Unit::bytes` counts it).
const OP_OVERHEAD_BYTES: usize = 8;

/// Where the caller of a base chunk waits.
pub(in crate::events::log) type BaseReply = oneshot::Sender<Result<BaseChunk, AppendError>>;

impl Stager {
    /// Reads the tenant's next base chunk (its keys after `after`, puts only) with its current
    /// head and ops revision. Returns the chunk for the syncer, which publishes it after every
    /// earlier batch and answers; `None` when the caller was answered here (refused).
    pub(super) fn base_chunk(
        &mut self,
        tree: Option<&sled::Tree>,
        tenant: &TenantId,
        after: Option<Vec<u8>>,
        reply: BaseReply,
    ) -> Option<Applied> {
        let read = match tree {
            Some(tree) => self.read_chunk(tree, tenant, after),
            None => Err(self.failed()),
        };
        match read {
            Ok((unit, next)) => Some(Applied::Base {
                tenant: tenant.clone(),
                unit: Some(unit),
                next,
                before: 0,
                reply,
                store: self.store.clone(),
            }),
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    fn read_chunk(
        &mut self,
        tree: &sled::Tree,
        tenant: &TenantId,
        after: Option<Vec<u8>>,
    ) -> Result<(Unit, Option<Vec<u8>>), AppendError> {
        self.check_writable(tenant)?;
        let Some(head) = self.heads.get(tenant).copied() else {
            return Err(AppendError::NoLog(tenant.clone()));
        };
        let rev = self.ops_rev(tree, tenant)?;
        let start = match after {
            // The smallest key after `key`.
            Some(mut key) => {
                key.push(0);
                key
            }
            None => keys::tenant_prefix(tenant),
        };
        let mut ops: Vec<Op> = Vec::new();
        let mut bytes = 0;
        let mut next = None;
        for kv in tree.range(start..keys::tenant_end(tenant)) {
            let (key, value) = kv.map_err(|e| AppendError::Failed(e.to_string()))?;
            let size = key.len() + value.len() + OP_OVERHEAD_BYTES;
            if !ops.is_empty() && bytes + size > BASE_CHUNK_BYTES_MAX {
                next = ops.last().map(|(k, _)| k.to_vec());
                break;
            }
            bytes += size;
            ops.push((key.to_vec().into(), Some(value.to_vec().into())));
        }
        let unit = Unit {
            tenant: tenant.clone(),
            head,
            rev,
            ops,
        };
        Ok((unit, next))
    }
}
