//! One tenant at a time: bringing its cache to the stream (a node that follows a tenant another
//! node owns, or one about to own it), and the takeover record that fences the previous owner.

use super::apply::{clear, local_rev, same_head, unfinished_migration};
use super::{encode, publish_chain, Record, Replica, ReplicaError, RECORD_VERSION};
use crate::events::log::Head;
use crate::tenancy::TenantId;

impl Replica {
    /// Brings `tenant`'s cache in `tree` to its last record: applies the records after the last
    /// one this node knows, or, when it knows none, that one was purged (a compaction) or the
    /// local head does not match the stream's, clears the tenant's cache and applies every
    /// record. `local` is the tenant's
    /// head in `tree`. Returns the last record's stream sequence and head (`None`: no records).
    pub(in crate::events::log) fn catch_up(
        &self,
        tree: &sled::Tree,
        tenant: &TenantId,
        local: Option<Head>,
    ) -> Result<Option<(u64, Head)>, ReplicaError> {
        let Some((seq, record)) = self.rt.block_on(self.last_record(tenant))? else {
            clear(tree, tenant)?;
            self.last_map().remove(tenant);
            self.confirmed_map().remove(tenant);
            return Ok(None);
        };
        if unfinished_migration(&record) {
            return Err(ReplicaError::Record {
                tenant: tenant.clone(),
                seq,
                detail: "it is part of an unfinished migration; finish it with `tenantry migrate \
                         --to jetstream` before a node takes the tenant"
                    .into(),
            });
        }
        let head = record.head().unwrap_or(Head::EMPTY);
        let known = self.last_map().get(tenant).copied();
        let rev = local_rev(tree, tenant)?;
        match known {
            Some(known) if known == seq && same_head(&record, local.as_ref(), rev) => {}
            // The record this node knew last must still be there: a tenant deleted (its
            // subject purged) and written again since has new records only, which a cache of
            // the old ones cannot take.
            Some(known) if known < seq && self.still_at(tenant, known, local.as_ref(), rev)? => {
                self.rt
                    .block_on(self.apply_range(tree, tenant, known + 1, seq))?;
                // Purged meanwhile (a compaction racing this catch-up): records may have gone
                // before they were read, so rebuild from what remains.
                if !self.rt.block_on(self.has_record(tenant, known))? {
                    self.rebuild(tree, tenant, seq)?;
                }
            }
            _ if same_head(&record, local.as_ref(), rev) => {}
            _ => self.rebuild(tree, tenant, seq)?,
        }
        self.last_map().insert(tenant.clone(), seq);
        self.confirmed_map().insert(tenant.clone(), seq);
        Ok(Some((seq, head)))
    }

    /// Whether the tenant's record at stream sequence `known` is still in the stream with the
    /// cache's head `local` and ops revision `rev`.
    fn still_at(
        &self,
        tenant: &TenantId,
        known: u64,
        local: Option<&Head>,
        rev: u64,
    ) -> Result<bool, ReplicaError> {
        match local {
            Some(local) => self.rt.block_on(self.cache_at(tenant, known, local, rev)),
            None => Ok(false),
        }
    }

    /// Publishes a record with no writes and the tenant's current head and ops revision `rev`,
    /// expecting the last record at `expected` (0: none): from then on, a node that appended
    /// before it (a previous owner, paused or cut off) is refused. Returns the record's stream
    /// sequence.
    pub(in crate::events::log) fn takeover(
        &self,
        tenant: &TenantId,
        expected: u64,
        head: Head,
        rev: u64,
    ) -> Result<u64, ReplicaError> {
        let record = Record {
            v: RECORD_VERSION,
            node: self.node.clone(),
            head_seq: head.tenant_seq,
            head_hash: head.hash.to_vec(),
            ops: Vec::new(),
            rev,
        };
        let subject = self.subject(tenant);
        let chain = publish_chain(
            &self.js,
            tenant.clone(),
            subject,
            expected,
            vec![encode(&record)],
        );
        let (_, published) = self.rt.block_on(chain);
        let seq = published?;
        self.last_map().insert(tenant.clone(), seq);
        self.confirmed_map().insert(tenant.clone(), seq);
        Ok(seq)
    }

    /// The stream's last sequence and message count over all tenants: unchanged means nothing
    /// new to follow (a purge lowers the count, a record raises the sequence).
    pub(in crate::events::log) fn stream_mark(&self) -> Result<(u64, u64), ReplicaError> {
        let info = self.rt.block_on(self.stream.get_info());
        info.map(|i| (i.state.last_sequence, i.state.messages))
            .map_err(|e| ReplicaError::Stream {
                stream: self.name.clone(),
                detail: format!("reading its state: {e}"),
            })
    }

    /// The tenants with records in the stream.
    pub(in crate::events::log) fn stream_tenants(&self) -> Result<Vec<TenantId>, ReplicaError> {
        self.rt.block_on(self.tenants())
    }
}
