//! Test fixture shared by the session fold's tests and the flow engine's tests.

use crate::events::schema::{Event, EventKind};
use crate::projections::session::SessionState;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

/// The empty state of session `s1` of acme/prod/support.
pub(crate) fn acme_session() -> SessionState {
    SessionState::new(
        TenantId::parse("acme").unwrap(),
        EnvId::parse("prod").unwrap(),
        TeamId::parse("support").unwrap(),
        SessionId::parse("s1").unwrap(),
    )
}

/// Wraps `kind` in the envelope of the event that follows `state`: next seq, the state's ids, a
/// nil event id, channel `web`, and the given `tenant_seq` and time.
pub(crate) fn event_after(
    state: &SessionState,
    kind: EventKind,
    tenant_seq: u64,
    at_ms: u64,
) -> Event {
    Event {
        id: uuid::Uuid::nil(),
        tenant: state.tenant.clone(),
        env: state.env.clone(),
        team: state.team.clone(),
        channel: ChannelId::parse("web").unwrap(),
        session: state.session.clone(),
        seq: state.last_seq + 1,
        tenant_seq,
        at_ms,
        kind,
    }
}
