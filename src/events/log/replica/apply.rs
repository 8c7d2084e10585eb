//! Bringing the local cache to the stream: compare each tenant's local head with the head in its
//! last record; a tenant that differs catches up from the last record this node knew of when
//! its cache is at that record, and is rebuilt otherwise; remove the tenants that have no
//! records.

use std::collections::{HashMap, HashSet};

use async_nats::jetstream::stream::LastRawMessageErrorKind;
use futures_util::TryStreamExt;

use super::{Record, Replica, ReplicaError, RECORD_VERSION};
use crate::events::keys;
use crate::events::log::Head;
use crate::events::schema::decode_limited;
use crate::tenancy::TenantId;

/// Keys removed per sled batch when a tenant's cache is cleared.
const CLEAR_BATCH_KEYS: usize = 4096;

/// What a reconcile did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Tenants whose cache matched the stream.
    pub kept: usize,
    /// Tenants whose cache was at the last record this node knew of (its head is that
    /// record's head) and got only the records after it.
    pub caught_up: Vec<TenantId>,
    /// Tenants rebuilt from their records.
    pub rebuilt: Vec<TenantId>,
    /// Tenants removed from the cache: no records in the stream.
    pub removed: Vec<TenantId>,
}

/// Makes the local tree equal to the stream for every tenant, and sets the replica's last
/// stream sequences. `local` holds the heads read from the tree; `damaged` the tenants whose
/// local tail failed its checks (always rebuilt).
pub(in crate::events::log) fn reconcile(
    replica: &Replica,
    tree: &sled::Tree,
    local: &HashMap<TenantId, Head>,
    damaged: &HashSet<TenantId>,
) -> Result<Reconciled, ReplicaError> {
    let in_stream = replica.rt.block_on(replica.tenants())?;
    // The last record of each tenant this node published or applied, before this reconcile.
    let known = replica.last_map().clone();
    let confirmed = replica.confirmed_map().clone();
    let mut done = Reconciled::default();
    let mut last = HashMap::new();
    for tenant in &in_stream {
        // Listed a moment ago, purged since: nothing to keep.
        let Some((seq, record)) = replica.rt.block_on(replica.last_record(tenant))? else {
            continue;
        };
        if unfinished_migration(&record) {
            tracing::error!(tenant = %tenant, "the tenant's last record is part of an unfinished migration: \
                its cache is left as it is; finish it with `tenantry migrate --to jetstream`");
            continue;
        }
        let rev = local_rev(tree, tenant)?;
        if same_head(&record, local.get(tenant), rev) && !damaged.contains(tenant) {
            done.kept += 1;
        } else if !damaged.contains(tenant)
            && replica.rt.block_on(replica.catch_up_from(
                tree,
                tenant,
                &[confirmed.get(tenant).copied(), known.get(tenant).copied()],
                local.get(tenant),
                seq,
            ))?
        {
            done.caught_up.push(tenant.clone());
        } else {
            replica.rebuild(tree, tenant, seq)?;
            done.rebuilt.push(tenant.clone());
        }
        last.insert(tenant.clone(), seq);
    }
    let stream_tenants: HashSet<&TenantId> = in_stream.iter().collect();
    for tenant in local.keys().chain(damaged.iter()) {
        if !stream_tenants.contains(tenant) && !done.removed.contains(tenant) {
            tracing::warn!(tenant = %tenant, "the stream has no records of this tenant: removing its cache");
            clear(tree, tenant)?;
            done.removed.push(tenant.clone());
        }
    }
    // The cache is now at each tenant's last record.
    *replica.confirmed_map() = last.clone();
    *replica.last_map() = last;
    Ok(done)
}

/// A record with writes but head 0: all but the last record of a migration carry that, so that
/// an interrupted copy never looks complete. As a tenant's last record it means the copy did not
/// finish; nothing may append after it.
pub(super) fn unfinished_migration(record: &Record) -> bool {
    record.head_seq == 0 && !record.ops.is_empty()
}

/// Whether the record's head and ops revision are the local ones (a head at `tenant_seq` 0 is
/// an empty tenant). The revision tells apart a cache at the head but before later tenant-ops
/// records, which keep the head.
pub(super) fn same_head(record: &Record, local: Option<&Head>, local_rev: u64) -> bool {
    let head = match (record.head(), local) {
        (Some(head), None) => head.tenant_seq == 0,
        (Some(head), Some(local)) => head == *local,
        (None, _) => false,
    };
    head && record.rev == local_rev
}

/// The tenant's ops revision in the cache.
pub(super) fn local_rev(tree: &sled::Tree, tenant: &TenantId) -> Result<u64, ReplicaError> {
    crate::events::log::ops::revision(tree, tenant).map_err(|e| ReplicaError::Cache(e.to_string()))
}

/// Removes every local key of the tenant.
pub(super) fn clear(tree: &sled::Tree, tenant: &TenantId) -> Result<(), ReplicaError> {
    let prefix = keys::tenant_prefix(tenant);
    loop {
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for key in tree.scan_prefix(&prefix).keys().take(CLEAR_BATCH_KEYS) {
            batch.remove(key.map_err(|e| ReplicaError::Cache(e.to_string()))?);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        tree.apply_batch(batch)
            .map_err(|e| ReplicaError::Cache(e.to_string()))?;
    }
}

/// Decodes a record and checks that every key is the tenant's.
pub(super) fn decode_record(
    tenant: &TenantId,
    seq: u64,
    payload: &[u8],
) -> Result<Record, ReplicaError> {
    let invalid = |detail: String| ReplicaError::Record {
        tenant: tenant.clone(),
        seq,
        detail,
    };
    let record: Record = decode_limited(payload).map_err(|e| invalid(e.to_string()))?;
    if record.v != RECORD_VERSION {
        return Err(invalid(format!(
            "record version {} (this build reads {RECORD_VERSION})",
            record.v
        )));
    }
    let prefix = keys::tenant_prefix(tenant);
    if let Some((key, _)) = record.ops.iter().find(|(k, _)| !k.starts_with(&prefix)) {
        let shown = String::from_utf8_lossy(&key[..key.len().min(80)]).into_owned();
        return Err(invalid(format!(
            "holds a key outside the tenant: {shown:?}"
        )));
    }
    if record.head().is_none() {
        return Err(invalid("its head hash is not 32 bytes".into()));
    }
    Ok(record)
}

impl Replica {
    /// The tenants with records in the stream.
    pub(super) async fn tenants(&self) -> Result<Vec<TenantId>, ReplicaError> {
        let error = |detail: String| ReplicaError::Stream {
            stream: self.name.clone(),
            detail,
        };
        let filter = format!("{}.*", self.name);
        let subjects: Vec<(String, usize)> = self
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| error(format!("listing its subjects: {e}")))?
            .try_collect()
            .await
            .map_err(|e| error(format!("listing its subjects: {e}")))?;
        let prefix = format!("{}.", self.name);
        let mut tenants = Vec::with_capacity(subjects.len());
        for (subject, _) in subjects {
            match subject
                .strip_prefix(&prefix)
                .and_then(|t| TenantId::parse(t).ok())
            {
                Some(tenant) => tenants.push(tenant),
                None => {
                    tracing::warn!(subject = %subject, "a stream subject that names no tenant; ignored")
                }
            }
        }
        tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(tenants)
    }

    /// The tenant's last record and its stream sequence; `None` when it has none.
    pub(super) async fn last_record(
        &self,
        tenant: &TenantId,
    ) -> Result<Option<(u64, Record)>, ReplicaError> {
        let message = match self
            .stream
            .get_last_raw_message_by_subject(&self.subject(tenant))
            .await
        {
            Ok(message) => message,
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
            Err(e) => {
                return Err(ReplicaError::Read {
                    tenant: tenant.clone(),
                    detail: e.to_string(),
                })
            }
        };
        let record = decode_record(tenant, message.sequence, &message.payload)?;
        Ok(Some((message.sequence, record)))
    }

    /// Applies the tenant's records after the first stream sequence of `candidates` the cache
    /// is at (the tenant's record there has the local head), up to `until`. A failover that lost
    /// an ack leaves the cache a record or two behind the stream, and this reads those instead of
    /// every record of the tenant. Returns whether it did; `false`: the cache must be rebuilt.
    pub(super) async fn catch_up_from(
        &self,
        tree: &sled::Tree,
        tenant: &TenantId,
        candidates: &[Option<u64>],
        local: Option<&Head>,
        until: u64,
    ) -> Result<bool, ReplicaError> {
        let Some(local) = local else {
            return Ok(false);
        };
        let rev = local_rev(tree, tenant)?;
        let mut tried = Vec::new();
        for &from in candidates.iter().flatten() {
            if from == 0 || from >= until || tried.contains(&from) {
                continue;
            }
            tried.push(from);
            if self.cache_at(tenant, from, local, rev).await? {
                tracing::info!(tenant = %tenant, from, until, "catching the tenant's log cache up with the stream");
                self.apply_range(tree, tenant, from + 1, until).await?;
                // A compaction that purged `from` meanwhile may have purged records before they
                // were read (their removals missed): the caller rebuilds.
                return self.has_record(tenant, from).await;
            }
        }
        Ok(false)
    }

    /// Whether the tenant's record at stream sequence `from` has the head `local` and the ops
    /// revision `local_rev`.
    pub(super) async fn cache_at(
        &self,
        tenant: &TenantId,
        from: u64,
        local: &Head,
        local_rev: u64,
    ) -> Result<bool, ReplicaError> {
        let message = self
            .stream
            .get_first_raw_message_by_subject(&self.subject(tenant), from)
            .await
            .map_err(|e| ReplicaError::Read {
                tenant: tenant.clone(),
                detail: format!("the record at stream sequence {from}: {e}"),
            })?;
        if message.sequence != from {
            return Ok(false);
        }
        let record = decode_record(tenant, message.sequence, &message.payload)?;
        Ok(same_head(&record, Some(local), local_rev))
    }

    /// Whether the tenant's record at stream sequence `seq` is still in the stream (not purged
    /// by a compaction).
    pub(super) async fn has_record(
        &self,
        tenant: &TenantId,
        seq: u64,
    ) -> Result<bool, ReplicaError> {
        let message = self
            .stream
            .get_first_raw_message_by_subject(&self.subject(tenant), seq)
            .await
            .map_err(|e| ReplicaError::Read {
                tenant: tenant.clone(),
                detail: format!("the record at or after stream sequence {seq}: {e}"),
            })?;
        Ok(message.sequence == seq)
    }

    /// Replaces the tenant's cache with its records up to stream sequence `until`.
    pub(super) fn rebuild(
        &self,
        tree: &sled::Tree,
        tenant: &TenantId,
        until: u64,
    ) -> Result<(), ReplicaError> {
        tracing::info!(tenant = %tenant, "rebuilding the tenant's log cache from the stream");
        clear(tree, tenant)?;
        self.rt.block_on(self.apply_range(tree, tenant, 1, until))
    }

    /// Applies the tenant's records with stream sequences in `from..=until`, in order.
    pub(super) async fn apply_range(
        &self,
        tree: &sled::Tree,
        tenant: &TenantId,
        from: u64,
        until: u64,
    ) -> Result<(), ReplicaError> {
        let subject = self.subject(tenant);
        let mut next = from;
        while next <= until {
            let message = self
                .stream
                .get_first_raw_message_by_subject(&subject, next)
                .await
                .map_err(|e| ReplicaError::Read {
                    tenant: tenant.clone(),
                    detail: format!("the record at or after stream sequence {next}: {e}"),
                })?;
            let record = decode_record(tenant, message.sequence, &message.payload)?;
            let mut batch = sled::Batch::default();
            for (key, value) in record.ops {
                match value {
                    Some(value) => batch.insert(key.into_vec(), value.into_vec()),
                    None => batch.remove(key.into_vec()),
                }
            }
            tree.apply_batch(batch)
                .map_err(|e| ReplicaError::Cache(e.to_string()))?;
            next = message.sequence + 1;
        }
        Ok(())
    }
}
