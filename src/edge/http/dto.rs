//! The JSON shapes of the HTTP API (docs/http.md): request bodies and query strings as clients send
//! them, and responses built from the runtime's types.
//!
//! Invariants: these are the only `Serialize`/`Deserialize` types of the edge; domain types are
//! mapped field by field (never serialized as they are), so a change to an event or a projection
//! cannot silently change the API. Times are unix milliseconds; hashes are lowercase hex.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::actors::messages::Ack;
use crate::events::log::StoredEvent;
use crate::projections::session::{Cursor, SessionState, SessionStatus};

/// `POST /api/v1/messages`. Ids arrive as text and are validated by the handler, so that an
/// error can name the field.
#[derive(Debug, Deserialize)]
pub struct MessageBody {
    /// Defaults to `X-Team-ID`, then the token's team, then `default`.
    #[serde(default)]
    pub team: Option<String>,
    /// The channel the message came in on.
    pub channel: String,
    /// The session to continue; none: the user's open session on the channel, or a new one.
    #[serde(default)]
    pub session: Option<String>,
    /// The sender.
    pub user: String,
    /// The message text.
    pub text: String,
    /// The client's id for the message; a retry with the same id gets the first answer.
    #[serde(default)]
    pub message_id: Option<String>,
}

/// The answer to `POST /api/v1/messages`.
#[derive(Debug, Serialize)]
pub struct AckBody<'a> {
    /// The session the message went to.
    pub session: &'a str,
    /// The seq of the message's `MessageReceived` event in the session.
    pub seq: u64,
    /// The bot's replies, in order.
    pub replies: &'a [String],
    /// Only on a retry whose first answer's replies were too big to keep: `replies` is empty and
    /// the replies are in the session's events.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replies_omitted: bool,
}

impl<'a> AckBody<'a> {
    /// The JSON view of `ack`.
    pub fn new(ack: &'a Ack) -> AckBody<'a> {
        AckBody {
            session: ack.session.as_str(),
            seq: ack.seq,
            replies: &ack.replies,
            replies_omitted: ack.replies_omitted,
        }
    }
}

/// `?limit=&after=&q=&status=&since=` of `GET /api/v1/sessions`.
#[derive(Debug, Deserialize)]
pub struct SessionsQuery {
    /// Most sessions to return.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Return sessions after this opaque cursor (`next_after` of the previous page).
    #[serde(default)]
    pub after: Option<String>,
    /// Case-insensitive substring of the session's user or of its last message's text.
    #[serde(default)]
    pub q: Option<String>,
    /// `open`, `ended` or `quarantined`.
    #[serde(default)]
    pub status: Option<String>,
    /// Unix ms, or an RFC 3339 date or date-time: sessions active at or after it.
    #[serde(default)]
    pub since: Option<String>,
}

/// `?from_seq=&to_seq=` of `GET /api/v1/sessions/{id}/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// First seq to return (default 1).
    #[serde(default)]
    pub from_seq: Option<u64>,
    /// Last seq to return (default: the last).
    #[serde(default)]
    pub to_seq: Option<u64>,
}

/// One entry of `GET /api/v1/sessions`.
#[derive(Debug, Serialize)]
pub struct SessionItem {
    session: String,
    env: String,
    team: String,
    channel: String,
    user: String,
    started_at: u64,
    state_key: String,
    /// Unix ms of the session's last event.
    last_activity: u64,
    /// `open`, `ended` or `quarantined`.
    status: &'static str,
    /// The text of the last `MessageReceived` (cut at 200 chars), or null.
    last_message: Option<String>,
}

impl SessionItem {
    /// The JSON view of a session's read-model `state`, with its `status` and `last_message`.
    pub fn new(
        state: &SessionState,
        status: &'static str,
        last_message: Option<String>,
    ) -> SessionItem {
        SessionItem {
            session: state.session.to_string(),
            env: state.env.to_string(),
            team: state.team.to_string(),
            channel: state
                .channel
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            user: state.user.to_string(),
            started_at: state.started_at_ms,
            state_key: state.state_key(),
            last_activity: state.last_activity_ms,
            status,
            last_message,
        }
    }
}

/// The answer to `GET /api/v1/sessions`.
#[derive(Debug, Serialize)]
pub struct SessionsBody {
    /// The page, latest activity first (ties: team, session).
    pub sessions: Vec<SessionItem>,
    /// Pass as `?after=` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// The answer to `GET /api/v1/sessions/{id}`: the session state projection.
#[derive(Debug, Serialize)]
pub struct SessionStateBody {
    session: String,
    state_key: String,
    tenant: String,
    env: String,
    team: String,
    channel: Option<String>,
    user: String,
    flow: String,
    flow_version: String,
    /// `open` or `ended`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    ended_reason: Option<String>,
    /// Where the next message starts: `{"at":"start"}` or `{"at":"awaiting","node","key"}`.
    cursor: Value,
    current_node: Option<String>,
    vars: BTreeMap<String, String>,
    last_seq: u64,
    last_tenant_seq: u64,
    messages_in: u64,
    replies_out: u64,
    flow_errors: u64,
    started_at: u64,
    last_activity: u64,
}

impl SessionStateBody {
    /// The JSON view of `state`.
    pub fn new(state: &SessionState) -> SessionStateBody {
        let (status, ended_reason) = match &state.status {
            SessionStatus::Open => ("open", None),
            SessionStatus::Ended { reason } => ("ended", Some(reason.clone())),
        };
        let cursor = match &state.cursor {
            Cursor::Start => json!({ "at": "start" }),
            Cursor::Awaiting { node, key } => json!({ "at": "awaiting", "node": node, "key": key }),
        };
        SessionStateBody {
            session: state.session.to_string(),
            state_key: state.state_key(),
            tenant: state.tenant.to_string(),
            env: state.env.to_string(),
            team: state.team.to_string(),
            channel: state.channel.as_ref().map(ToString::to_string),
            user: state.user.to_string(),
            flow: state.flow.to_string(),
            flow_version: state.flow_version.to_string(),
            status,
            ended_reason,
            cursor,
            current_node: state.current_node.as_deref().map(str::to_owned),
            vars: state.vars.clone(),
            last_seq: state.last_seq,
            last_tenant_seq: state.last_tenant_seq,
            messages_in: state.messages_in,
            replies_out: state.replies_out,
            flow_errors: state.flow_errors,
            started_at: state.started_at_ms,
            last_activity: state.last_activity_ms,
        }
    }
}

/// One event of `GET /api/v1/sessions/{id}/events`.
#[derive(Debug, Serialize)]
pub struct EventItem {
    id: String,
    seq: u64,
    tenant_seq: u64,
    at: u64,
    env: String,
    team: String,
    channel: String,
    session: String,
    kind: &'static str,
    data: Value,
    prev_hash: String,
    hash: String,
}

impl EventItem {
    /// The JSON view of `stored`.
    pub fn new(stored: &StoredEvent) -> EventItem {
        let e = &stored.event;
        EventItem {
            id: e.id.to_string(),
            seq: e.seq,
            tenant_seq: e.tenant_seq,
            at: e.at_ms,
            env: e.env.to_string(),
            team: e.team.to_string(),
            channel: e.channel.to_string(),
            session: e.session.to_string(),
            kind: e.kind.name(),
            data: stored.data_json(),
            prev_hash: hex(&stored.prev_hash),
            hash: hex(&stored.hash),
        }
    }
}

/// The answer to `GET /api/v1/sessions/{id}/events`.
#[derive(Debug, Serialize)]
pub struct EventsBody {
    /// Events in seq order.
    pub events: Vec<EventItem>,
    /// Set when the range holds more events than one response: ask again from this seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_from_seq: Option<u64>,
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}
