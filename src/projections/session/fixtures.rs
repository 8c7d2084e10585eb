//! Test fixtures shared by the tests that fold sessions (this module's and the flow engine's).

use super::SessionState;
use crate::events::schema::{Event, EventKind};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

/// The empty state of session acme / prod / support / s1.
pub(crate) fn acme_s1() -> SessionState {
    SessionState::new(
        TenantId::parse("acme").unwrap(),
        EnvId::parse("prod").unwrap(),
        TeamId::parse("support").unwrap(),
        SessionId::parse("s1").unwrap(),
    )
}

/// Wraps `kind` in the envelope of the event that follows `state`: next seq, the session's ids,
/// channel `web`, a nil id, and `tenant_seq` and `at_ms` equal to the seq (callers that need
/// another tenant order or clock override them).
pub(crate) fn next_event(state: &SessionState, kind: EventKind) -> Event {
    let seq = state.last_seq + 1;
    Event {
        id: uuid::Uuid::nil(),
        tenant: state.tenant.clone(),
        env: state.env.clone(),
        team: state.team.clone(),
        channel: ChannelId::parse("web").unwrap(),
        session: state.session.clone(),
        seq,
        tenant_seq: seq,
        at_ms: seq,
        kind,
    }
}
