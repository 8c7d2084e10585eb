//! Loading one session's state: its CBOR snapshot (when usable) plus every later event in the
//! log. Used by session actors when they start and by readers of a passivated session.
//!
//! Invariant: the result equals folding all of the session's events from seq 1; the snapshot
//! only saves work. An unusable snapshot is reported, never trusted.

use crate::events::log::{EventLog, ReadError};
use crate::projections::session::SessionState;
use crate::projections::snapshot::{SnapshotKey, SnapshotStore};
use crate::tenancy::{SessionId, TenantCtx};

/// A loaded session.
pub struct Loaded {
    pub state: SessionState,
    /// The seq the snapshot used covered (0 when none was used).
    pub snapshot_seq: u64,
    /// Why an existing snapshot was not used (log it and count it).
    pub snapshot_problem: Option<String>,
}

/// Loads `session` in `ctx` (whose team, or `default`, is the session's team).
pub fn load_session(
    log: &EventLog,
    snapshots: &SnapshotStore,
    ctx: &TenantCtx,
    session: &SessionId,
) -> Result<Loaded, ReadError> {
    let team = ctx.team_or_default();
    let fresh = || {
        SessionState::new(
            ctx.tenant.clone(),
            ctx.env.clone(),
            team.clone(),
            session.clone(),
        )
    };
    let key = SnapshotKey {
        tenant: &ctx.tenant,
        env: &ctx.env,
        team: &team,
        session,
    };
    let (mut state, snapshot_seq, snapshot_problem) = match snapshots.read::<SessionState>(&key) {
        Ok(None) => (fresh(), 0, None),
        Ok(Some(snap)) => {
            let s = &snap.state;
            let same = s.tenant == ctx.tenant
                && s.env == ctx.env
                && s.team == team
                && &s.session == session;
            if same && snap.seq == s.last_seq {
                (snap.state, snap.seq, None)
            } else {
                (
                    fresh(),
                    0,
                    Some("snapshot header does not match its state".to_owned()),
                )
            }
        }
        Err(e) => (fresh(), 0, Some(e.to_string())),
    };
    for event in log
        .scope(ctx)
        .session_events(session, state.last_seq + 1..=u64::MAX)
    {
        state.apply(&event?.event);
    }
    Ok(Loaded {
        state,
        snapshot_seq,
        snapshot_problem,
    })
}

/// Why snapshots could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error(transparent)]
    Projector(#[from] crate::projections::projector::ProjectorError),
    #[error(transparent)]
    Snapshot(#[from] crate::projections::snapshot::SnapshotError),
}

/// Replaces every snapshot of `tenant` by one of its session's state folded from the log (the
/// read models must be caught up: `Projector::rebuild` or `catch_up` first). Returns how many
/// were written.
pub fn rewrite_snapshots(
    log: &EventLog,
    projector: &crate::projections::projector::Projector,
    snapshots: &SnapshotStore,
    tenant: &crate::tenancy::TenantId,
) -> Result<u64, RewriteError> {
    projector.catch_up(log, tenant, &mut |_| {})?;
    snapshots.remove_tenant(tenant)?;
    let mut written = 0;
    for state in projector.all_sessions(tenant) {
        let state = state?;
        let key = SnapshotKey {
            tenant: &state.tenant,
            env: &state.env,
            team: &state.team,
            session: &state.session,
        };
        snapshots.write(&key, state.last_seq, &state)?;
        written += 1;
    }
    Ok(written)
}
