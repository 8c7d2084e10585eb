//! The log's part of erasing sessions (`crate::erase`): destroy their data keys (the key ring
//! rotates the tenant's KEK) and drop the plain copies of personal data the log keeps beside
//! the sealed events: the user in the session meta, the open-session entry keyed by the user,
//! and the idempotency records (their stored replies). The events themselves stay, sealed; the
//! chain is untouched.
//!
//! Offline, or online with the tenant paused (the runtime refuses its messages and waits for
//! those in flight, so nothing is appended for it meanwhile; the writer's cached session head
//! names the user only by pseudonym). Offline the caller compacts the files afterwards
//! ([`super::compact`]), since sled keeps removed values in its segments; online that is needed
//! only for sessions with plain copies, which the route refuses.
//!
//! Every write (meta rewrites, removals, the key ring's removed and re-wrapped keys) goes out
//! as one set: on sled one batch, flushed and synced; on the JetStream backend one record of
//! the tenant through the writer ([`EventLog::apply_tenant_ops_blocking`]), so every cache of
//! the stream applies it. The stream keeps its older records (sealed fields and the old wrapped
//! keys, whose KEK the rotation destroys). On a `[cluster]` the KEKs live in the cluster's key
//! stream (`replica::keys`), so the rotation is seen by every node; a `[cluster]` node without
//! a cluster key has no key ring and is refused.

use serde::Deserialize;
use serde_bytes::ByteBuf;

use super::replica::Op;
use super::{meta, EventLog, SessionInfo, SessionMeta};
use crate::events::keyring::{KeyringError, LogWrite};
use crate::events::keys;
use crate::events::schema::decode_limited;
use crate::events::seal::SealScope;
use crate::tenancy::TenantId;

/// Why a `[cluster]` node does not erase (the CLI and the HTTP route say it too).
pub const CLUSTER_REFUSAL: &str = "erasure is not available on this [cluster] node of the \
     jetstream backend: it has no cluster key, so it writes unsealed events and keeps no data \
     keys to destroy (nothing was changed). Give every node the same cluster key (env \
     TENANTRY_CLUSTER_KEY or {data_dir}/cluster.key, 64 hex characters) and restart them: \
     events written from then on are sealed and can be erased";

/// Why the log could not erase.
#[derive(Debug, thiserror::Error)]
pub enum LogEraseError {
    /// The log was opened without a key ring: no master key for the data dir's secrets.
    #[error("the log has no key ring (no master key: set env TENANTRY_MASTER_KEY or keep {{data_dir}}/master.key), so its data keys cannot be destroyed")]
    NoKeyring,
    /// A `[cluster]` node of the JetStream backend without a cluster key: it writes unsealed
    /// events.
    #[error("{CLUSTER_REFUSAL}")]
    Cluster,
    /// The writer could not make the erasure's writes durable (they may or may not have been
    /// kept; the old KEK still opens every kept key): erasing the same sessions again
    /// completes it.
    #[error("writing the erasure to the log: {0}")]
    Write(#[source] super::AppendError),
    #[error("the log's files are closed (a recovery is under way); retry")]
    Closed,
    #[error(transparent)]
    Keys(#[from] KeyringError),
    #[error("erasing in the log: {0}")]
    Storage(#[from] sled::Error),
    #[error("a stored record of tenant {tenant} is malformed: {detail}")]
    Corrupt { tenant: String, detail: String },
}

/// What the log erased.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogErased {
    /// Wrapped data keys removed (sessions that had sealed events).
    pub keys_destroyed: u64,
    /// Idempotency records removed.
    pub idempotency_records: u64,
    /// Open-session entries removed.
    pub open_sessions: u64,
}

impl EventLog {
    /// How many erasures `tenant`'s log has had (`keys::erasures_key`).
    pub fn erasures(&self, tenant: &TenantId) -> Result<u64, String> {
        let store = self
            .inner
            .shared
            .store()
            .ok_or_else(|| LogEraseError::Closed.to_string())?;
        erasure_count(&store.tree, tenant).map_err(|e| e.to_string())
    }

    /// True when `tenant` has wrapped data keys in the log: it has (or had) sealed events.
    pub fn has_data_keys(&self, tenant: &TenantId) -> Result<bool, String> {
        let store = self
            .inner
            .shared
            .store()
            .ok_or_else(|| LogEraseError::Closed.to_string())?;
        let (start, end) = keys::data_key_range(tenant);
        let first = store.tree.range(start..end).next().transpose();
        Ok(first.map_err(|e| e.to_string())?.is_some())
    }

    /// After `tenant`'s log range was deleted ([`crate::offboard`]): destroys its keys in the
    /// cluster's key stream, if they live there, and forgets the key ring's cached ones.
    /// Returns how many shared secrets were destroyed.
    pub fn destroy_tenant_keys(&self, tenant: &TenantId) -> Result<u64, KeyringError> {
        match &self.inner.shared.opts.keyring {
            Some(ring) => ring.destroy_tenant(tenant),
            None => Ok(0),
        }
    }

    /// The data key of the session `scope`: `None` without a key ring, or when the session has
    /// no sealed event or was erased.
    pub fn session_data_key(
        &self,
        scope: &SealScope<'_>,
    ) -> Result<Option<crate::events::seal::DataKey>, String> {
        let Some(ring) = &self.inner.shared.opts.keyring else {
            return Ok(None);
        };
        let store = self
            .inner
            .shared
            .store()
            .ok_or_else(|| LogEraseError::Closed.to_string())?;
        ring.read_key(&store.tree, scope).map_err(|e| e.to_string())
    }

    /// Erases `sessions` (all of `tenant`) from the log: see the module doc. Flushed before it
    /// returns.
    pub fn erase_sessions_offline(
        &self,
        tenant: &TenantId,
        sessions: &[SessionInfo],
    ) -> Result<LogErased, LogEraseError> {
        let Some(ring) = self.inner.shared.opts.keyring.clone() else {
            if self.replica().is_some_and(|r| r.cluster()) {
                return Err(LogEraseError::Cluster);
            }
            return Err(LogEraseError::NoKeyring);
        };
        let store = self.inner.shared.store().ok_or(LogEraseError::Closed)?;
        let tree = &store.tree;
        let mut done = LogErased::default();
        let mut writes: Vec<LogWrite> = Vec::new();
        for s in sessions {
            let scope = (tenant, &s.env, &s.team, &s.channel);
            let open_keys = meta::open_keys(Some(&ring), scope, &s.user).map_err(|e| {
                LogEraseError::Corrupt {
                    tenant: tenant.to_string(),
                    detail: e.to_string(),
                }
            })?;
            for open_key in open_keys {
                if tree
                    .get(&open_key)?
                    .is_some_and(|v| v.as_ref() == s.session.as_str().as_bytes())
                {
                    writes.push((open_key, None));
                    done.open_sessions += 1;
                }
            }
            let meta = SessionMeta {
                channel: s.channel.clone(),
                user: String::new(),
                started_at: s.started_at_ms,
                user_sealed: None,
                open_as: None,
            };
            let meta = rmp_serde::to_vec_named(&meta)
                .expect("MessagePack encoding of plain fields is infallible");
            let key = keys::session_meta_key(tenant, &s.env, &s.team, &s.session);
            writes.push((key, Some(meta)));
        }
        done.idempotency_records = remove_idempotency(tree, tenant, sessions, &mut writes)?;
        let scopes: Vec<SealScope<'_>> = sessions
            .iter()
            .map(|s| SealScope {
                tenant: tenant.as_str(),
                env: s.env.as_str(),
                team: s.team.as_str(),
                session: s.session.as_str(),
            })
            .collect();
        // `data_kek.next` is stored before the writes, the KEK replaced after them.
        let mut rotation = ring.start_erasure(tree, tenant, &scopes)?;
        writes.append(&mut rotation.writes);
        // Last, so a node that applies the erasure's parts counts it once all are there.
        let erasures = erasure_count(tree, tenant)?;
        writes.push((
            keys::erasures_key(tenant),
            Some((erasures + 1).to_be_bytes().to_vec()),
        ));
        self.write_erasure(tenant, writes)?;
        done.keys_destroyed = ring.finish_erasure(rotation)?;
        Ok(done)
    }

    /// Makes an erasure's `writes` durable through the writer, beside the tenant's appends
    /// ([`EventLog::apply_tenant_ops_blocking`]), in as few parts as fit one record each (a
    /// tenant with thousands of sessions re-wraps more keys than one record holds): on sled
    /// each part one batch, flushed and synced; on the JetStream backend one record of
    /// `tenant`, acked by the stream. A failure between two parts leaves some kept keys under
    /// the next KEK and some under the current one, both still stored, and the erased keys
    /// perhaps still there: the caller was not told it succeeded, and erasing again finishes it
    /// under the same next KEK ([`crate::events::keyring::Keyring::start_erasure`]).
    fn write_erasure(&self, tenant: &TenantId, writes: Vec<LogWrite>) -> Result<(), LogEraseError> {
        let ops: Vec<Op> = writes
            .into_iter()
            .map(|(key, value)| (ByteBuf::from(key), value.map(ByteBuf::from)))
            .collect();
        for part in super::ops::split_ops(ops) {
            self.apply_tenant_ops_blocking(tenant, part)
                .map_err(LogEraseError::Write)?;
        }
        Ok(())
    }
}

/// The tenant's erasure count in `tree` (a malformed value counts as 0: the next erasure
/// writes a good one).
fn erasure_count(tree: &sled::Tree, tenant: &TenantId) -> Result<u64, sled::Error> {
    let value = tree.get(keys::erasures_key(tenant))?;
    Ok(value
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(0, u64::from_be_bytes))
}

/// Adds the removal of the idempotency records of `sessions` to `writes`; returns how many.
fn remove_idempotency(
    tree: &sled::Tree,
    tenant: &TenantId,
    sessions: &[SessionInfo],
    writes: &mut Vec<LogWrite>,
) -> Result<u64, LogEraseError> {
    /// The part of a record that names its session.
    #[derive(Deserialize)]
    struct Session {
        session: String,
    }
    let (start, end) = keys::idempotency_range(tenant);
    let mut removed = 0;
    for item in tree.range(start..end) {
        let (key, value) = item?;
        let rec: Session = decode_limited(&value).map_err(|e| LogEraseError::Corrupt {
            tenant: tenant.to_string(),
            detail: format!("idempotency record: {e}"),
        })?;
        // The key names env, team and channel; the record the session.
        let hit = sessions.iter().any(|s| {
            rec.session == s.session.as_str()
                && key.starts_with(&keys::idempotency_key(
                    tenant, &s.env, &s.team, &s.channel, "",
                ))
        });
        if hit {
            writes.push((key.to_vec(), None));
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
