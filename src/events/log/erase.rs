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

use serde::Deserialize;

use super::{meta, EventLog, SessionInfo, SessionMeta};
use crate::events::keyring::KeyringError;
use crate::events::keys;
use crate::events::schema::decode_limited;
use crate::events::seal::SealScope;
use crate::tenancy::TenantId;

/// Why the log could not erase.
#[derive(Debug, thiserror::Error)]
pub enum LogEraseError {
    /// The log was opened without a key ring: no master key for the data dir's secrets.
    #[error("the log has no key ring (no master key: set env TENANTRY_MASTER_KEY or keep {{data_dir}}/master.key), so its data keys cannot be destroyed")]
    NoKeyring,
    /// The JetStream backend: the stream holds the records, this node only a cache.
    #[error("erasure is not available with log.backend = \"jetstream\"")]
    Replicated,
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

    /// Forgets the key ring's cached keys of `tenant` after its secrets and log range were
    /// deleted ([`crate::offboard`]).
    pub fn forget_tenant_keys(&self, tenant: &TenantId) {
        if let Some(ring) = &self.inner.shared.opts.keyring {
            ring.forget_tenant(tenant);
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
        if self.replica().is_some() {
            return Err(LogEraseError::Replicated);
        }
        let ring = self
            .inner
            .shared
            .opts
            .keyring
            .clone()
            .ok_or(LogEraseError::NoKeyring)?;
        let store = self.inner.shared.store().ok_or(LogEraseError::Closed)?;
        let tree = &store.tree;
        let mut done = LogErased::default();
        let mut batch = sled::Batch::default();
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
                    batch.remove(open_key);
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
            batch.insert(
                keys::session_meta_key(tenant, &s.env, &s.team, &s.session),
                meta,
            );
        }
        done.idempotency_records = remove_idempotency(tree, tenant, sessions, &mut batch)?;
        tree.apply_batch(batch)?;
        tree.flush()?;
        let scopes: Vec<SealScope<'_>> = sessions
            .iter()
            .map(|s| SealScope {
                tenant: tenant.as_str(),
                env: s.env.as_str(),
                team: s.team.as_str(),
                session: s.session.as_str(),
            })
            .collect();
        done.keys_destroyed = ring.erase_sessions(tree, tenant, &scopes)?;
        store.data_file.sync_data().map_err(sled::Error::Io)?;
        Ok(done)
    }
}

/// Adds the removal of the idempotency records of `sessions` to `batch`; returns how many.
fn remove_idempotency(
    tree: &sled::Tree,
    tenant: &TenantId,
    sessions: &[SessionInfo],
    batch: &mut sled::Batch,
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
            batch.remove(key);
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;
