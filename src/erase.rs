//! Erasure of one session or one user's sessions by crypto-shredding (`tenantry erase`):
//! [`erase`] destroys the sessions' data keys, so their events' sealed personal fields never
//! open again, and removes every plain copy of their personal data from the data dir.
//!
//! In order: (1) the sessions are found in the log (by id, or by the user named in their
//! session meta) in one env of the tenant, every team; none found is an error that changes
//! nothing; (2) the log erases ([`EventLog::erase_sessions_offline`]): the user in the session
//! meta, the open-session entry, the idempotency records, the wrapped data keys (rotating the
//! tenant's KEK); (3) the tenant's read models are rebuilt from the log, whose erased events
//! now fold without their personal fields; (4) the sessions' snapshot files are removed (the
//! next start replays the log); (5) the caller closes the log and compacts its files
//! ([`crate::events::log::compact::compact`]) so that no removed value lingers in sled's
//! segments.
//!
//! What stays: every event, with its ids, seqs, time, kind, non-personal fields and sealed
//! part (ciphertext); the hash chain (it covers the stored bytes, which do not change), so
//! `verify` still passes; usage counters.
//!
//! On sled and on the JetStream backend (there the log's writes of step 2 go to the stream as
//! records of the tenant, and step 5 compacts the offline cache; the stream keeps its older
//! records, whose personal fields are sealed and whose wrapped keys need the destroyed KEK): a
//! single node, or the tenant's owner in a `[cluster]` with a cluster key, whose KEKs live in
//! the cluster's key stream (the other nodes take the erasure in from the stream:
//! `Projector::refold_if_erased`); a `[cluster]` node without one refuses
//! ([`crate::events::log::CLUSTER_REFUSAL`]). Offline
//! (`tenantry erase`, then step 5), or online (`DELETE /api/v1/sessions/{id}`,
//! [`erase_sessions`]) with the tenant paused by the runtime and without step 5: only for
//! sessions whose every copy is sealed ([`SessionInfo::user_sealed`]), whose old values in
//! sled's segments (and the stream's old records) then never open.

use std::path::Path;

use serde::Serialize;

use crate::events::log::{EventLog, LogEraseError, ReadError, SessionInfo};
use crate::projections::projector::{Projector, ProjectorError};
use crate::projections::snapshot::{SnapshotError, SnapshotKey, SnapshotStore};
use crate::tenancy::{EnvId, SessionId, TenantCtx, TenantId};

/// Directory of the data dir holding the session snapshots.
const SESSIONS_DIR: &str = "sessions";

/// What to erase.
#[derive(Clone, Debug)]
pub enum Target {
    /// One session (in any team of the env).
    Session(SessionId),
    /// Every session whose first message came from this user id.
    User(String),
}

/// Why nothing (or not everything) was erased.
#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    /// No session matched: nothing was changed.
    #[error("tenant {tenant} env {env} has no session {what}; nothing was erased (list the sessions with `tenantry sessions`, and check --env)")]
    NotFound {
        tenant: TenantId,
        env: EnvId,
        what: String,
    },
    #[error(transparent)]
    Log(#[from] LogEraseError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    ReadModels(#[from] ProjectorError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// What an erasure did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub tenant: String,
    pub env: String,
    /// The erased sessions, as `team/session`.
    pub sessions: Vec<String>,
    /// Their events (kept, now without personal fields).
    pub events: u64,
    /// Data keys destroyed.
    pub keys_destroyed: u64,
    /// Idempotency records removed.
    pub idempotency_records: u64,
    /// Open-session entries removed.
    pub open_sessions: u64,
    /// Events the tenant's read models were rebuilt from.
    pub read_models_rebuilt_from: u64,
    /// Snapshot files removed.
    pub snapshot_files: u64,
}

impl Erased {
    /// The report as a two-column table (what, value).
    pub fn table(&self) -> String {
        let rows: [(&str, String); 9] = [
            ("tenant", self.tenant.clone()),
            ("env", self.env.clone()),
            ("sessions", self.sessions.join(" ")),
            (
                "events (kept, personal fields erased)",
                self.events.to_string(),
            ),
            ("data keys destroyed", self.keys_destroyed.to_string()),
            (
                "idempotency records removed",
                self.idempotency_records.to_string(),
            ),
            (
                "open-session entries removed",
                self.open_sessions.to_string(),
            ),
            (
                "read models rebuilt from events",
                self.read_models_rebuilt_from.to_string(),
            ),
            ("snapshot files removed", self.snapshot_files.to_string()),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:<width$}  {v}\n"))
            .collect()
    }
}

/// The sessions of `target` in `env` of `tenant`, every team.
pub fn find_sessions(
    log: &EventLog,
    tenant: &TenantId,
    env: &EnvId,
    target: &Target,
) -> Result<Vec<SessionInfo>, EraseError> {
    let ctx = TenantCtx {
        tenant: tenant.clone(),
        env: env.clone(),
        team: None,
    };
    let mut found = Vec::new();
    for info in log.scope(&ctx).sessions() {
        let info = info?;
        let hit = match target {
            Target::Session(id) => &info.session == id,
            Target::User(user) => !user.is_empty() && &info.user == user,
        };
        if hit {
            found.push(info);
        }
    }
    if found.is_empty() {
        let what = match target {
            Target::Session(id) => id.to_string(),
            Target::User(user) => format!("of user {user:?}"),
        };
        return Err(EraseError::NotFound {
            tenant: tenant.clone(),
            env: env.clone(),
            what,
        });
    }
    Ok(found)
}

/// Erases `target` (see the module doc, steps 1 to 4), rebuilding the read models of
/// `projector`. The caller then drops `log` and compacts its directory.
pub fn erase(
    log: &EventLog,
    projector: &Projector,
    data_dir: &Path,
    tenant: &TenantId,
    env: &EnvId,
    target: &Target,
) -> Result<Erased, EraseError> {
    let sessions = find_sessions(log, tenant, env, target)?;
    erase_sessions(log, projector, data_dir, (tenant, env), sessions)
}

/// Erases `sessions` (found by [`find_sessions`] in `env` of `tenant`): steps 2 to 4 of the
/// module doc. Online (`DELETE /api/v1/sessions/{id}`) the caller has paused the tenant.
pub fn erase_sessions(
    log: &EventLog,
    projector: &Projector,
    data_dir: &Path,
    (tenant, env): (&TenantId, &EnvId),
    sessions: Vec<SessionInfo>,
) -> Result<Erased, EraseError> {
    let mut events = 0;
    for s in &sessions {
        let ctx = TenantCtx {
            tenant: tenant.clone(),
            env: s.env.clone(),
            team: Some(s.team.clone()),
        };
        events += log.scope(&ctx).session_last_seq(&s.session)?;
    }
    let done = log.erase_sessions_offline(tenant, &sessions)?;
    let rebuilt = projector.rebuild(log, tenant, &mut |_| {})?;
    projector.erasures_taken_in(log, tenant)?;
    let snapshots = SnapshotStore::new(data_dir.join(SESSIONS_DIR));
    let mut snapshot_files = 0;
    for s in &sessions {
        let key = SnapshotKey {
            tenant,
            env: &s.env,
            team: &s.team,
            session: &s.session,
        };
        if snapshots.path(&key).exists() {
            snapshot_files += 1;
        }
        snapshots.remove(&key)?;
    }
    Ok(Erased {
        tenant: tenant.to_string(),
        env: env.to_string(),
        sessions: sessions
            .iter()
            .map(|s| format!("{}/{}", s.team, s.session))
            .collect(),
        events,
        keys_destroyed: done.keys_destroyed,
        idempotency_records: done.idempotency_records,
        open_sessions: done.open_sessions,
        read_models_rebuilt_from: rebuilt,
        snapshot_files,
    })
}
