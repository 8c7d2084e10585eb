//! The connector registry (docs/connectors.md "Connectors"): the processes that bridge a channel
//! (Slack, a web chat...) to tenantry register with `POST /api/v1/connectors`, heartbeat, and are
//! listed with their state. [`Registry`] holds each node's view in memory; every registration
//! and state change is an event in the tenant's log, in the connector's *system session*:
//!
//! - its id is [`SYSTEM_SESSION_PREFIX`] + the connector id ([`system_session`]), in the
//!   connector's env, team and channel; its `SessionStarted` has no user (no message can have an
//!   empty user, so none resolves to it) and the flow [`REGISTRY_FLOW`];
//! - it holds only `ConnectorRegistered` and `ConnectorStateChanged` events, appended through
//!   its session actor like a message (`Runtime::record`), so chain, export, verify and replay
//!   see them as any event; messages and closes naming such a session are refused;
//! - usage does not count it, and `GET /api/v1/sessions` does not list it.
//!
//! State: `live` within 2 heartbeat intervals of the last heartbeat (or registration), `stale`
//! within 5, else `dead`; only a heartbeat or a registration makes a connector `live` again.

pub mod outbox;
mod outbox_registry;
mod registry;
#[cfg(test)]
mod tests;
pub mod webhook;

pub use registry::{Connector, Registration, Registry};

use std::time::Duration;

use crate::actors::messages::RuntimeError;
use crate::tenancy::{ChannelId, ConnectorId, EnvId, SessionId, TeamId};

/// The session id prefix of connectors' system sessions (a connector id is at most 63 bytes, so
/// the id stays within `SessionId::LEN_MAX`).
pub const SYSTEM_SESSION_PREFIX: &str = "sys-connector-";
/// `SessionStarted.flow` of a system session.
pub const REGISTRY_FLOW: &str = "connector-registry";
/// `SessionStarted.flow_version` of a system session.
pub const REGISTRY_FLOW_VERSION: &str = "1";
/// A connector is `live` within this many heartbeat intervals of its last heartbeat.
pub const LIVE_INTERVALS: u32 = 2;
/// ... and `stale` within this many; `dead` after.
pub const STALE_INTERVALS: u32 = 5;

/// Whether `session` is a connector's system session.
pub fn is_system_session(session: &str) -> bool {
    session.starts_with(SYSTEM_SESSION_PREFIX)
}

/// The system session of `connector`.
pub fn system_session(connector: &ConnectorId) -> SessionId {
    SessionId::parse(&format!("{SYSTEM_SESSION_PREFIX}{connector}"))
        .expect("a connector id is a valid session id suffix and short enough")
}

/// A connector's heartbeat state, in the order it decays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectorState {
    Live,
    Stale,
    Dead,
}

impl ConnectorState {
    /// The name shown in the API and recorded in events.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Live => "live",
            ConnectorState::Stale => "stale",
            ConnectorState::Dead => "dead",
        }
    }

    /// The state recorded as `name`, if it is one.
    pub fn parse(name: &str) -> Option<ConnectorState> {
        [
            ConnectorState::Live,
            ConnectorState::Stale,
            ConnectorState::Dead,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }

    /// The state of a connector whose last heartbeat was `age` ago.
    pub fn by_age(age: Duration, interval: Duration) -> ConnectorState {
        if age < interval * LIVE_INTERVALS {
            ConnectorState::Live
        } else if age < interval * STALE_INTERVALS {
            ConnectorState::Stale
        } else {
            ConnectorState::Dead
        }
    }
}

/// Why a registry operation was refused; statuses are decided in `edge::http::error`.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The body's `env` differs from the token's env. 403 `env_mismatch`.
    #[error("env {got} is not the token's env {token}; use a token of env {got}")]
    EnvMismatch { got: EnvId, token: EnvId },
    /// The id is registered with another team or channel. 409 `connector_conflict`.
    #[error(
        "connector {connector} is registered with {field} {registered}, not {got}; use another id \
         or the registered {field}"
    )]
    Conflict {
        connector: ConnectorId,
        field: &'static str,
        registered: String,
        got: String,
    },
    /// A connector token's connector is registered in another team than the token's. 403
    /// `connector_team_mismatch`.
    #[error(
        "connector {connector} is registered in team {registered}, not the token's team {token}"
    )]
    TeamMismatch {
        connector: ConnectorId,
        registered: TeamId,
        token: TeamId,
    },
    /// A connector token posted a message before its connector was registered (or healed by a
    /// heartbeat). 403 `connector_not_registered`.
    #[error(
        "connector {0} is not registered in this env; register it (POST /api/v1/connectors) or \
         send a heartbeat first"
    )]
    NotRegistered(ConnectorId),
    /// A connector token posted a message for another channel than its connector's. 403
    /// `connector_channel_mismatch`.
    #[error("connector {connector} may only post messages of its channel {registered}, not {got}")]
    ChannelMismatch {
        connector: ConnectorId,
        registered: ChannelId,
        got: ChannelId,
    },
    /// A field of the request is missing or invalid (a heartbeat that must register its
    /// connector again). 400 naming the field.
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The record could not be appended (the runtime's error, answered as for a message).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The log could not be read (an outbox read, or a record read back). 500.
    #[error("reading the log: {0}")]
    Read(String),
    /// No connector with this id is registered in the caller's env (and team). 404
    /// `connector_not_found`.
    #[error("connector {0} is not registered in this env; register it first")]
    NotFound(ConnectorId),
    /// An outbox ack behind the connector's cursor. 409 `outbox_ack_behind`.
    #[error(
        "up_to {up_to} is behind connector {connector}'s outbox cursor {acked}: those replies are          acknowledged already; ack up to the cursor of your last read"
    )]
    AckBehind {
        connector: ConnectorId,
        up_to: u64,
        acked: u64,
    },
    /// An outbox ack past what was handed out. 409 `outbox_ack_ahead`.
    #[error(
        "up_to {up_to} is past the last cursor handed to connector {connector} ({delivered});          read the outbox (GET /api/v1/connectors/{connector}/outbox) and ack up to its cursor"
    )]
    AckAhead {
        connector: ConnectorId,
        up_to: u64,
        delivered: u64,
    },
}
