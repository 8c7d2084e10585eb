//! Loading one session's state: its CBOR snapshot (when usable) plus every later event in the
//! log. Used by session actors when they start and by readers of a passivated session.
//!
//! Invariant: the result equals folding all of the session's events from seq 1; the snapshot
//! only saves work. An unusable snapshot is reported, never trusted.
//!
//! Retention (docs/storage.md#retention): when the session's start was trimmed, a snapshot
//! whose last event was trimmed is used as it is (it cannot be checked against the log, which
//! no longer holds that event) if the session's kept events continue it; otherwise the state is
//! folded from the events that remain and marked with `trimmed_before_seq`.

use crate::events::log::{EventLog, ReadError, ScopedReader};
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
    let (mut state, snapshot_seq, mut snapshot_problem) = match snapshots.read::<SessionState>(&key)
    {
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
    let reader = log.scope(ctx);
    if snapshot_seq > 0 {
        if let Some(problem) = snapshot_not_in_log(&reader, &state)? {
            state = fresh();
            snapshot_problem = Some(problem);
        }
    }
    let mut from_snapshot = snapshot_seq > 0;
    for (i, event) in reader
        .session_events(session, state.last_seq + 1..=u64::MAX)
        .enumerate()
    {
        let event = event?.event;
        if i == 0 && state.last_seq > 0 && event.seq > state.last_seq + 1 {
            // The events right after the snapshot were trimmed by retention: the snapshot
            // cannot be continued, so the state is folded from what remains (marked trimmed).
            state = fresh();
            from_snapshot = false;
        }
        state.apply(&event);
    }
    let snapshot_seq = if snapshot_problem.is_some() || !from_snapshot {
        0
    } else {
        snapshot_seq
    };
    Ok(Loaded {
        state,
        snapshot_seq,
        snapshot_problem,
    })
}

/// Whether the log holds the event a snapshot's state ends with: the session's event at
/// `state.last_seq` must exist and carry the snapshot's `last_tenant_seq` and `last_activity_ms`.
/// `Some(reason)` when it does not: the snapshot is ahead of the log (an older `log/` restored
/// beside newer `sessions/`) or from another history, and must not be trusted. The snapshot
/// format holds no chain hash, so these two fields of the last event are its fingerprint.
pub fn snapshot_not_in_log(
    reader: &ScopedReader,
    state: &SessionState,
) -> Result<Option<String>, ReadError> {
    let seq = state.last_seq;
    let found = reader
        .session_events(&state.session, seq..=seq)
        .next()
        .transpose()?;
    Ok(match found {
        None if trimmed_away(reader, state)? => None,
        None => {
            let last = reader.session_last_seq(&state.session)?;
            Some(format!(
                "snapshot covers seq {seq}, but the log holds this session only up to seq {last} \
                 (was an older log restored?); rebuilt from the log"
            ))
        }
        Some(stored) => {
            let e = &stored.event;
            (e.seq != seq
                || e.tenant_seq != state.last_tenant_seq
                || e.at_ms != state.last_activity_ms)
                .then(|| {
                    format!(
                        "snapshot's seq {seq} is tenant_seq {} at {} ms, but the log's is \
                         tenant_seq {} at {} ms: the snapshot is from another history; rebuilt \
                         from the log",
                        state.last_tenant_seq, state.last_activity_ms, e.tenant_seq, e.at_ms
                    )
                })
        }
    })
}

/// Whether the event a snapshot ends with was trimmed by retention: it lies before the
/// tenant's retention anchor.
fn trimmed_away(reader: &ScopedReader, state: &SessionState) -> Result<bool, ReadError> {
    Ok(reader
        .retention_anchor()?
        .is_some_and(|a| state.last_tenant_seq < a.first_tenant_seq))
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

#[cfg(test)]
mod tests;
