//! What travels between the runtime's callers and its actors.

use actix::Message;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::events::log::{AppendError, ReadError};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// An inbound user message, as the edges hand it over (already size-checked by them or by
/// [`crate::actors::runtime::Runtime::send`]).
#[derive(Clone, Debug)]
pub struct Inbound {
    /// The session to continue; `None` means the sender's open session on this channel, or a
    /// new one.
    pub session: Option<SessionId>,
    pub user: String,
    pub text: String,
    /// The client's id for this message; a retry with the same id gets the first answer.
    pub message_id: Option<String>,
}

/// The answer to an inbound message, sent only after its events are durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub session: SessionId,
    /// Seq of the message's `MessageReceived` event in the session.
    pub seq: u64,
    /// The bot's replies, in order.
    pub replies: Vec<String>,
    /// True when this answers a retry of a message that was already appended.
    #[serde(skip)]
    pub duplicate: bool,
    /// Set on a retry's answer when the first answer's replies were too big to keep for
    /// retries: `replies` is empty, and the replies are in the session's events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replies_omitted: bool,
}

/// Why a message was not handled. Rejections are the caller's doing (4xx); the rest are ours.
///
/// (De)serialisable so that a node forwarding a message to its tenant's owner
/// (`cluster::forward`) answers with the very error the owner gave: the wire tag of each variant
/// is its [`code`](Self::code) (a test holds them equal), its ids are validated when read back.
#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", content = "fields", rename_all = "snake_case")]
pub enum RuntimeError {
    /// The tenant is not served by this instance. 404 at the edges.
    #[error("tenant {0} is not served here")]
    UnknownTenant(TenantId),
    /// The tenant has no such environment. 400.
    #[error("tenant {tenant} has no environment {env}")]
    UnknownEnv { tenant: TenantId, env: EnvId },
    /// The tenant has no such team. 400.
    #[error("tenant {tenant} has no team {team}")]
    UnknownTeam { tenant: TenantId, team: TeamId },
    /// The team has no such channel. 400.
    #[error("team {team} has no channel {channel}")]
    UnknownChannel { team: TeamId, channel: ChannelId },
    /// Bad input (sizes, empty fields). 400.
    #[error("invalid message: {0}")]
    #[serde(rename = "invalid_message")]
    Invalid(String),
    /// The named session has ended; send without a session to open a new one. 409.
    #[error("session {0} has ended")]
    SessionEnded(SessionId),
    /// The named session lives on another channel. 409.
    #[error("session {session} belongs to channel {channel}")]
    SessionChannel {
        session: SessionId,
        channel: ChannelId,
    },
    /// The session failed repeatedly and is parked until an operator resets it. 503.
    #[error("session {0} is quarantined after repeated failures; reset it to continue")]
    #[serde(rename = "session_quarantined")]
    Quarantined(SessionId),
    /// The flow crashed on this message; a `FlowFailed` event records it and the session was
    /// restarted. 500.
    #[error("the flow failed on this message in session {0}")]
    #[serde(rename = "flow_failed")]
    FlowCrashed(SessionId),
    /// A queue on the way is full; retry later. 429 with Retry-After.
    #[error("overloaded, retry later")]
    Overloaded,
    /// No room for another live session (`runtime.sessions_max` over all tenants, or the
    /// tenant's `runtime.tenant_sessions_max`) and none idle to passivate early; a message to a
    /// session already live is unaffected. 429 with Retry-After.
    #[error("too many live sessions (limit {limit}); retry later")]
    SessionsFull { limit: usize },
    /// The runtime is shutting down. 503.
    #[error("shutting down")]
    ShuttingDown,
    /// The tenant's data is being deleted (offboarding); retry once the deletion answered.
    /// 503 with Retry-After.
    #[error("tenant {0} is being deleted; retry later")]
    TenantDeleting(TenantId),
    /// The message was dropped before it was answered: an actor on its way panicked and was
    /// restarted, or (in a cluster) the tenant's owner node did not answer a forwarded message,
    /// or no node owned the tenant in time (`cluster::forward`). Whether it was appended is
    /// unknown to the caller; a retry with the same `message_id` gets its first answer if it
    /// was. 503 with Retry-After.
    #[error("the message was interrupted before an answer; retry it with the same message_id")]
    Interrupted,
    /// The log refused or failed the append. 500 (details logged, not shown).
    #[error("storage: {0}")]
    #[serde(rename = "internal")]
    Storage(String),
}

impl RuntimeError {
    /// The stable, snake_case code clients see in `{"error":{"code",...}}` (HTTP and NATS).
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::UnknownTenant(_) => "unknown_tenant",
            RuntimeError::UnknownEnv { .. } => "unknown_env",
            RuntimeError::UnknownTeam { .. } => "unknown_team",
            RuntimeError::UnknownChannel { .. } => "unknown_channel",
            RuntimeError::Invalid(_) => "invalid_message",
            RuntimeError::SessionEnded(_) => "session_ended",
            RuntimeError::SessionChannel { .. } => "session_channel",
            RuntimeError::Quarantined(_) => "session_quarantined",
            RuntimeError::FlowCrashed(_) => "flow_failed",
            RuntimeError::Overloaded => "overloaded",
            RuntimeError::SessionsFull { .. } => "sessions_full",
            RuntimeError::ShuttingDown => "shutting_down",
            RuntimeError::TenantDeleting(_) => "tenant_deleting",
            RuntimeError::Interrupted => "interrupted",
            RuntimeError::Storage(_) => "internal",
        }
    }

    /// What a client is told, on every edge (HTTP body, NATS error reply): the stable
    /// [`code`](Self::code) and a message that is safe to show. Rejections name only the
    /// caller's own ids; a failure of ours (storage: paths, seqs of a conflict) says only
    /// [`INTERNAL_ERROR_MESSAGE`], and its detail is for the log. The match is exhaustive so a
    /// new variant must be classified here.
    pub fn public(&self) -> (&'static str, String) {
        let message = match self {
            RuntimeError::Storage(_) => INTERNAL_ERROR_MESSAGE.to_owned(),
            RuntimeError::UnknownTenant(_)
            | RuntimeError::UnknownEnv { .. }
            | RuntimeError::UnknownTeam { .. }
            | RuntimeError::UnknownChannel { .. }
            | RuntimeError::Invalid(_)
            | RuntimeError::SessionEnded(_)
            | RuntimeError::SessionChannel { .. }
            | RuntimeError::Quarantined(_)
            | RuntimeError::FlowCrashed(_)
            | RuntimeError::Overloaded
            | RuntimeError::SessionsFull { .. }
            | RuntimeError::ShuttingDown
            | RuntimeError::TenantDeleting(_)
            | RuntimeError::Interrupted => self.to_string(),
        };
        (self.code(), message)
    }

    /// True for failures of ours whose detail must be logged (once, by the edge answering).
    pub fn is_internal(&self) -> bool {
        matches!(self, RuntimeError::Storage(_))
    }
}

/// The message a client sees for a failure of ours; the detail goes to the log only.
pub const INTERNAL_ERROR_MESSAGE: &str = "internal error";

impl From<AppendError> for RuntimeError {
    fn from(e: AppendError) -> RuntimeError {
        match e {
            AppendError::Overloaded => RuntimeError::Overloaded,
            AppendError::Closed => RuntimeError::ShuttingDown,
            // The tenant moved to another node on the message's way: nothing was written.
            AppendError::NotOwner(_) => RuntimeError::Interrupted,
            other => RuntimeError::Storage(other.to_string()),
        }
    }
}

impl From<ReadError> for RuntimeError {
    fn from(e: ReadError) -> RuntimeError {
        RuntimeError::Storage(e.to_string())
    }
}

pub(crate) type Responder = oneshot::Sender<Result<Ack, RuntimeError>>;

/// The `SessionEnded` reason of a session an operator closed (`Runtime::close_session`).
pub const CLOSED_BY_OPERATOR: &str = "closed by operator";

/// What a [`Deliver`] asks of its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Run the flow on the inbound message and append what it decides.
    Message,
    /// End the session for an operator: append `SessionEnded` with [`CLOSED_BY_OPERATOR`] alone
    /// (no flow run, no message recorded); the ack's `seq` is that event's.
    Close,
    /// Append these connector registry events to a connector's system session (no flow run;
    /// `SessionStarted` first when the session is new); the ack's `seq` is the first one's.
    Record(Vec<crate::events::schema::EventKind>),
}

/// One message on its way to its session actor.
pub(crate) struct Deliver {
    /// A message to run, or an operator's close.
    pub op: Op,
    /// Tenant, env and concrete team (never `None` past the runtime handle).
    pub ctx: TenantCtx,
    pub team: TeamId,
    pub channel: ChannelId,
    pub inbound: Inbound,
    /// Whether the caller named the session (an ended named session is an error; an ended
    /// resolved one is replaced by a new session).
    pub named: bool,
    /// Set once the env actor has routed this message again after its session ended, so it
    /// cannot bounce forever.
    pub rerouted: bool,
    pub reply: Responder,
    /// The request's span, tagged with tenant, env, team, channel (and session once resolved).
    pub span: tracing::Span,
    /// Its place among its tenant's running messages, given back when this is dropped
    /// (answered or given up): see [`super::lane`].
    pub running: Option<super::lane::Running>,
}

impl Message for Deliver {
    type Result = ();
}

impl Deliver {
    /// Answers the caller; a caller that went away is not an error.
    pub fn answer(self, result: Result<Ack, RuntimeError>) {
        let _ = self.reply.send(result);
    }
}

// ---- Between the actors -------------------------------------------------------------------

/// Look for idle sessions now and passivate them; resolves when they have stopped.
pub(crate) struct Sweep;
impl Message for Sweep {
    type Result = ();
}

/// Passivate the least recently used idle sessions now: another env needs room.
pub(super) struct Evict;
impl Message for Evict {
    type Result = ();
}

/// Passivate every session and resolve when all have stopped (graceful shutdown).
pub(crate) struct Shutdown;
impl Message for Shutdown {
    type Result = ();
}

/// A session actor found its session ended under a message that did not name it: route the
/// message again, to the user's next session.
pub(super) struct Reroute(pub Deliver);
impl Message for Reroute {
    type Result = ();
}

/// A session ended: its user's next message on that channel opens a new one.
pub(super) struct Ended {
    pub team: TeamId,
    pub channel: ChannelId,
    pub user: String,
    pub session: SessionId,
}
impl Message for Ended {
    type Result = ();
}

/// Lift a session's quarantine; `reply` is answered once the session has (or there is no live
/// session to reset), or with `Overloaded` when a mailbox on the way is full.
pub(crate) struct ResetSession {
    pub env: EnvId,
    pub team: TeamId,
    pub session: SessionId,
    pub reply: oneshot::Sender<Result<(), RuntimeError>>,
}
impl Message for ResetSession {
    type Result = ();
}

impl ResetSession {
    /// Answers the caller; a caller that went away is not an error.
    pub fn answer(self, result: Result<(), RuntimeError>) {
        let _ = self.reply.send(result);
    }
}

/// Snapshot (if behind) and stop, after the messages already queued.
pub(super) struct Passivate;
impl Message for Passivate {
    type Result = ();
}

/// Lift the quarantine, then answer `reply`.
pub(super) struct Reset(pub ResetSession);
impl Message for Reset {
    type Result = ();
}
