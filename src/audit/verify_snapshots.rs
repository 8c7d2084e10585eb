//! `verify --tenant`, second part: the tenant's session snapshots against its log.
//!
//! A snapshot is an optimisation that the log must back: its last event (seq, `tenant_seq`,
//! time) must be in the log. One that is not was written against another history, typically
//! an older `log/` restored beside newer `sessions/`. The server discards such a snapshot when
//! the session loads (and counts it); this check reports them before that, so an operator
//! learns that the log lost events the snapshots had seen.
//!
//! Invariant: only the tenant's own snapshot directory is listed, and each file is read under
//! the key its path names, so a file of another tenant or session is refused by the snapshot
//! reader, never folded.

use super::verify::{problem, Problem, ProblemKind};
use super::AuditError;
use crate::events::log::EventLog;
use crate::projections::load::snapshot_not_in_log;
use crate::projections::session::SessionState;
use crate::projections::snapshot::{SnapshotKey, SnapshotStore};
use crate::tenancy::{TenantCtx, TenantId};

/// Checks every snapshot of `tenant` against the log. `Ok(None)` when every snapshot is backed
/// by the log (or there are none); else a problem naming how many are not, and the first one's
/// file and reason. Unreadable snapshot files are not problems here (the server rebuilds them
/// and says so); a log that cannot be read is an `Err`.
pub fn verify_snapshots(
    log: &EventLog,
    store: &SnapshotStore,
    tenant: &TenantId,
) -> Result<Option<Problem>, AuditError> {
    let listed = store
        .list_tenant(tenant)
        .map_err(|e| AuditError::io("listing snapshots", std::io::Error::other(e.to_string())))?;
    let mut bad = 0u64;
    let mut first = None;
    for (env, team, session) in &listed {
        let key = SnapshotKey {
            tenant,
            env,
            team,
            session,
        };
        let Ok(Some(snap)) = store.read::<SessionState>(&key) else {
            continue;
        };
        let reader = log.scope(&TenantCtx::new(
            tenant.clone(),
            env.clone(),
            Some(team.clone()),
        ));
        if let Some(reason) = snapshot_not_in_log(&reader, &snap.state)? {
            bad += 1;
            first.get_or_insert_with(|| format!("{}: {reason}", store.path(&key).display()));
        }
    }
    Ok(first.map(|first| {
        let detail = format!(
            "{bad} of {} snapshots are not backed by the log (they are discarded when their \
             session loads; `tenantry rebuild --snapshots` rewrites them from the log); first: \
             {first}",
            listed.len()
        );
        problem(None, None, ProblemKind::SnapshotNotInLog, detail)
    }))
}
