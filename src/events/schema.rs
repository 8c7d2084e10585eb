//! Event types: the on-disk contract.
//!
//! An event is stored as a MessagePack *body*: an envelope (ids, seqs, time, kind name, schema
//! version) plus the kind's data as an opaque byte string (itself MessagePack). The hash chain
//! covers the body exactly as written, so sealing the personal fields per session (schema v3,
//! [`crate::events::seal`]) keeps chains verifiable after their keys are destroyed (erasure).
//!
//! Invariants: variants and field names are never renamed; a new field gets `#[serde(default)]` or
//! a new schema version with an upcast in [`EventKind::decode_data`]; every schema version ever
//! written keeps decoding.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

mod fast;
pub(crate) use fast::known_kind;

/// Deepest MessagePack nesting accepted when decoding (our shapes need 2).
pub const DECODE_DEPTH_MAX: usize = 8;

/// Decodes MessagePack with the nesting limit. Callers check the input size first.
pub(crate) fn decode_limited<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, SchemaError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(DECODE_DEPTH_MAX);
    T::deserialize(&mut de).map_err(|e| SchemaError::Malformed(e.to_string()))
}

/// Newest schema version this build reads and writes.
///
/// History: v1 `MessageReceived` had no `message_id` (records from before idempotent ingest);
/// v2 added it; v3 moves the personal fields into a sealed part (`events::seal`), written when
/// the log has a key ring.
pub const SCHEMA_VERSION: u16 = 3;

/// Schema version of a body written without sealing (a log opened without a key ring).
pub const SCHEMA_VERSION_PLAIN: u16 = 2;

/// Schema version of a body whose personal fields are sealed.
pub const SCHEMA_VERSION_SEALED: u16 = 3;

/// Oldest schema version this build still decodes.
pub const SCHEMA_VERSION_MIN: u16 = 1;

/// What happened in a session. The data of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// First event of every session (seq 1).
    SessionStarted {
        user: String,
        flow: String,
        flow_version: String,
    },
    /// An inbound user message.
    MessageReceived {
        message_id: String,
        user: String,
        text: String,
    },
    /// The flow entered a node.
    NodeEntered { node: String },
    /// The flow sent a reply to the user.
    ReplySent { node: String, text: String },
    /// The flow set a session state key.
    StateSet { key: String, value: String },
    /// The flow stopped at an `ask` node: the session's next message is stored under `key` and
    /// the flow resumes after `node`. Makes the session state a fold of events alone.
    AwaitingInput { node: String, key: String },
    /// The flow could not complete a node; the session stays usable.
    FlowFailed { node: String, error: String },
    /// Last event of a session; later messages open a new one.
    SessionEnded { reason: String },
    /// A connector was registered (or re-registered from its heartbeat after the registry lost
    /// it: `healed`), in its system session (`crate::connectors`). Not a user message.
    ConnectorRegistered {
        connector: String,
        provider: String,
        version: String,
        capabilities: Vec<String>,
        healed: bool,
    },
    /// A connector's heartbeat state changed (`live`, `stale`, `dead`), in its system session.
    ConnectorStateChanged {
        connector: String,
        from: String,
        to: String,
    },
    /// A connector acknowledged its outbox up to `tenant_seq` `up_to` (`crate::connectors`'s
    /// outbox), in its system session: its cursor moves there.
    OutboxAcked { connector: String, up_to: u64 },
    /// The `count` replies of a connector's outbox with `tenant_seq` in `from..=up_to` were older
    /// than `connectors.outbox_ttl` and were given up (dead letters); its cursor moves to `up_to`.
    OutboxDeadLettered {
        connector: String,
        from: u64,
        up_to: u64,
        count: u64,
    },
}

/// `MessageReceived` as written by schema v1.
#[derive(Deserialize)]
struct MessageReceivedV1 {
    user: String,
    text: String,
}

impl EventKind {
    /// The variant's name, as stored in the envelope and shown in exports.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SessionStarted { .. } => "SessionStarted",
            EventKind::MessageReceived { .. } => "MessageReceived",
            EventKind::NodeEntered { .. } => "NodeEntered",
            EventKind::ReplySent { .. } => "ReplySent",
            EventKind::StateSet { .. } => "StateSet",
            EventKind::AwaitingInput { .. } => "AwaitingInput",
            EventKind::FlowFailed { .. } => "FlowFailed",
            EventKind::SessionEnded { .. } => "SessionEnded",
            EventKind::ConnectorRegistered { .. } => "ConnectorRegistered",
            EventKind::ConnectorStateChanged { .. } => "ConnectorStateChanged",
            EventKind::OutboxAcked { .. } => "OutboxAcked",
            EventKind::OutboxDeadLettered { .. } => "OutboxDeadLettered",
        }
    }

    /// The kind's fields as a JSON object, named as in the stored data (exports, API).
    pub fn data_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            EventKind::SessionStarted {
                user,
                flow,
                flow_version,
            } => {
                json!({ "user": user, "flow": flow, "flow_version": flow_version })
            }
            EventKind::MessageReceived {
                message_id,
                user,
                text,
            } => {
                json!({ "message_id": message_id, "user": user, "text": text })
            }
            EventKind::NodeEntered { node } => json!({ "node": node }),
            EventKind::ReplySent { node, text } => json!({ "node": node, "text": text }),
            EventKind::StateSet { key, value } => json!({ "key": key, "value": value }),
            EventKind::AwaitingInput { node, key } => json!({ "node": node, "key": key }),
            EventKind::FlowFailed { node, error } => json!({ "node": node, "error": error }),
            EventKind::SessionEnded { reason } => json!({ "reason": reason }),
            EventKind::ConnectorRegistered {
                connector,
                provider,
                version,
                capabilities,
                healed,
            } => json!({
                "connector": connector,
                "provider": provider,
                "version": version,
                "capabilities": capabilities,
                "healed": healed,
            }),
            EventKind::ConnectorStateChanged {
                connector,
                from,
                to,
            } => json!({ "connector": connector, "from": from, "to": to }),
            EventKind::OutboxAcked { connector, up_to } => {
                json!({ "connector": connector, "up_to": up_to })
            }
            EventKind::OutboxDeadLettered {
                connector,
                from,
                up_to,
                count,
            } => json!({ "connector": connector, "from": from, "up_to": up_to, "count": count }),
        }
    }

    /// Encodes the kind's data (without the kind name, which the envelope carries).
    pub(crate) fn encode_data(&self) -> Vec<u8> {
        // Serializing plain strings into a Vec cannot fail; an error here is a bug in serde.
        fn b(s: &str) -> Cow<'_, str> {
            Cow::Borrowed(s)
        }
        let encoded = match self {
            EventKind::SessionStarted {
                user,
                flow,
                flow_version,
            } => rmp_serde::to_vec_named(&SessionStartedData {
                user: b(user),
                flow: b(flow),
                flow_version: b(flow_version),
            }),
            EventKind::MessageReceived {
                message_id,
                user,
                text,
            } => rmp_serde::to_vec_named(&MessageReceivedData {
                message_id: b(message_id),
                user: b(user),
                text: b(text),
            }),
            EventKind::NodeEntered { node } => rmp_serde::to_vec_named(&NodeData { node: b(node) }),
            EventKind::ReplySent { node, text } => rmp_serde::to_vec_named(&NodeTextData {
                node: b(node),
                text: b(text),
            }),
            EventKind::StateSet { key, value } => rmp_serde::to_vec_named(&StateSetData {
                key: b(key),
                value: b(value),
            }),
            EventKind::AwaitingInput { node, key } => rmp_serde::to_vec_named(&AwaitingInputData {
                node: b(node),
                key: b(key),
            }),
            EventKind::FlowFailed { node, error } => rmp_serde::to_vec_named(&FlowFailedData {
                node: b(node),
                error: b(error),
            }),
            EventKind::SessionEnded { reason } => {
                rmp_serde::to_vec_named(&SessionEndedData { reason: b(reason) })
            }
            EventKind::ConnectorRegistered {
                connector,
                provider,
                version,
                capabilities,
                healed,
            } => rmp_serde::to_vec_named(&ConnectorRegisteredData {
                connector: b(connector),
                provider: b(provider),
                version: b(version),
                capabilities: capabilities.iter().map(|c| b(c)).collect(),
                healed: *healed,
            }),
            EventKind::ConnectorStateChanged {
                connector,
                from,
                to,
            } => rmp_serde::to_vec_named(&ConnectorStateChangedData {
                connector: b(connector),
                from: b(from),
                to: b(to),
            }),
            EventKind::OutboxAcked { connector, up_to } => {
                rmp_serde::to_vec_named(&OutboxAckedData {
                    connector: b(connector),
                    up_to: *up_to,
                })
            }
            EventKind::OutboxDeadLettered {
                connector,
                from,
                up_to,
                count,
            } => rmp_serde::to_vec_named(&OutboxDeadLetteredData {
                connector: b(connector),
                from: *from,
                up_to: *up_to,
                count: *count,
            }),
        };
        encoded.expect("MessagePack encoding of strings is infallible")
    }

    /// Decodes a kind from its name, schema version and data bytes, upcasting old versions.
    pub(crate) fn decode_data(
        name: &str,
        version: u16,
        data: &[u8],
        event_id: &uuid::Uuid,
    ) -> Result<EventKind, SchemaError> {
        if !(SCHEMA_VERSION_MIN..=SCHEMA_VERSION).contains(&version) {
            return Err(SchemaError::Version(version));
        }
        let kind = match name {
            "SessionStarted" => {
                let d: SessionStartedData = decode_limited(data)?;
                EventKind::SessionStarted {
                    user: d.user.into_owned(),
                    flow: d.flow.into_owned(),
                    flow_version: d.flow_version.into_owned(),
                }
            }
            "MessageReceived" if version == 1 => {
                let d: MessageReceivedV1 = decode_limited(data)?;
                // v1 predates client message ids: the event's own id stands in, which is unique
                // and stable, so idempotency records built from it never collide.
                EventKind::MessageReceived {
                    message_id: event_id.to_string(),
                    user: d.user,
                    text: d.text,
                }
            }
            "MessageReceived" => {
                let d: MessageReceivedData = decode_limited(data)?;
                EventKind::MessageReceived {
                    message_id: d.message_id.into_owned(),
                    user: d.user.into_owned(),
                    text: d.text.into_owned(),
                }
            }
            "NodeEntered" => {
                let d: NodeData = decode_limited(data)?;
                EventKind::NodeEntered {
                    node: d.node.into_owned(),
                }
            }
            "ReplySent" => {
                let d: NodeTextData = decode_limited(data)?;
                EventKind::ReplySent {
                    node: d.node.into_owned(),
                    text: d.text.into_owned(),
                }
            }
            "StateSet" => {
                let d: StateSetData = decode_limited(data)?;
                EventKind::StateSet {
                    key: d.key.into_owned(),
                    value: d.value.into_owned(),
                }
            }
            "AwaitingInput" => {
                let d: AwaitingInputData = decode_limited(data)?;
                EventKind::AwaitingInput {
                    node: d.node.into_owned(),
                    key: d.key.into_owned(),
                }
            }
            "FlowFailed" => {
                let d: FlowFailedData = decode_limited(data)?;
                EventKind::FlowFailed {
                    node: d.node.into_owned(),
                    error: d.error.into_owned(),
                }
            }
            "SessionEnded" => {
                let d: SessionEndedData = decode_limited(data)?;
                EventKind::SessionEnded {
                    reason: d.reason.into_owned(),
                }
            }
            other => return EventKind::decode_connector_data(other, data),
        };
        Ok(kind)
    }

    /// [`EventKind::decode_data`] of the connector kinds (registry and outbox).
    fn decode_connector_data(name: &str, data: &[u8]) -> Result<EventKind, SchemaError> {
        let kind = match name {
            "ConnectorRegistered" => {
                let d: ConnectorRegisteredData = decode_limited(data)?;
                EventKind::ConnectorRegistered {
                    connector: d.connector.into_owned(),
                    provider: d.provider.into_owned(),
                    version: d.version.into_owned(),
                    capabilities: d.capabilities.into_iter().map(Cow::into_owned).collect(),
                    healed: d.healed,
                }
            }
            "ConnectorStateChanged" => {
                let d: ConnectorStateChangedData = decode_limited(data)?;
                EventKind::ConnectorStateChanged {
                    connector: d.connector.into_owned(),
                    from: d.from.into_owned(),
                    to: d.to.into_owned(),
                }
            }
            "OutboxAcked" => {
                let d: OutboxAckedData = decode_limited(data)?;
                EventKind::OutboxAcked {
                    connector: d.connector.into_owned(),
                    up_to: d.up_to,
                }
            }
            "OutboxDeadLettered" => {
                let d: OutboxDeadLetteredData = decode_limited(data)?;
                EventKind::OutboxDeadLettered {
                    connector: d.connector.into_owned(),
                    from: d.from,
                    up_to: d.up_to,
                    count: d.count,
                }
            }
            other => return Err(SchemaError::UnknownKind(other.chars().take(64).collect())),
        };
        Ok(kind)
    }
}

/// An event's fields as a fold needs them, borrowed from the stored body (or from an [`Event`]):
/// no event id, and of the free texts a fold only counts (message and reply text) just their
/// length. [`crate::projections`] folds these, so a fold over the log allocates nothing per
/// event, and a fold over decoded [`Event`]s runs the very same code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventView<'a> {
    pub tenant: &'a str,
    pub env: &'a str,
    pub team: &'a str,
    pub channel: &'a str,
    pub session: &'a str,
    /// Position in the session, gapless from 1.
    pub seq: u64,
    /// Position in the tenant's log, gapless from 1.
    pub tenant_seq: u64,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub kind: KindView<'a>,
}

impl EventView<'_> {
    /// Whether `other` is an event of the same session (env, team and session id).
    pub fn same_session(&self, other: &EventView<'_>) -> bool {
        same_str(self.session, other.session)
            && same_str(self.team, other.team)
            && same_str(self.env, other.env)
    }
}

/// `a == b`, answered without comparing bytes when both are the same slice: the ids a frame's
/// read borrows from the record before (`codec::decode_body_view_after`).
pub fn same_str(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// [`EventKind`] as a fold sees it (see [`EventView`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindView<'a> {
    SessionStarted {
        user: &'a str,
        flow: &'a str,
        flow_version: &'a str,
    },
    MessageReceived {
        /// The message text.
        text: &'a str,
    },
    NodeEntered {
        node: &'a str,
    },
    ReplySent {
        /// Bytes of the reply text.
        text_bytes: usize,
    },
    StateSet {
        key: &'a str,
        value: &'a str,
    },
    AwaitingInput {
        node: &'a str,
        key: &'a str,
    },
    FlowFailed,
    SessionEnded {
        reason: &'a str,
    },
    /// A connector registry or outbox event (`ConnectorRegistered`, `ConnectorStateChanged`,
    /// `OutboxAcked`, `OutboxDeadLettered`): folds only
    /// note that the session is a system session's.
    Connector,
}

impl<'a> From<&'a EventKind> for KindView<'a> {
    fn from(kind: &'a EventKind) -> KindView<'a> {
        match kind {
            EventKind::SessionStarted {
                user,
                flow,
                flow_version,
            } => KindView::SessionStarted {
                user,
                flow,
                flow_version,
            },
            EventKind::MessageReceived { text, .. } => KindView::MessageReceived { text },
            EventKind::NodeEntered { node } => KindView::NodeEntered { node },
            EventKind::ReplySent { text, .. } => KindView::ReplySent {
                text_bytes: text.len(),
            },
            EventKind::StateSet { key, value } => KindView::StateSet { key, value },
            EventKind::AwaitingInput { node, key } => KindView::AwaitingInput { node, key },
            EventKind::FlowFailed { .. } => KindView::FlowFailed,
            EventKind::SessionEnded { reason } => KindView::SessionEnded { reason },
            EventKind::ConnectorRegistered { .. }
            | EventKind::ConnectorStateChanged { .. }
            | EventKind::OutboxAcked { .. }
            | EventKind::OutboxDeadLettered { .. } => KindView::Connector,
        }
    }
}

impl<'a> From<&'a Event> for EventView<'a> {
    fn from(e: &'a Event) -> EventView<'a> {
        EventView {
            tenant: e.tenant.as_str(),
            env: e.env.as_str(),
            team: e.team.as_str(),
            channel: e.channel.as_str(),
            session: e.session.as_str(),
            seq: e.seq,
            tenant_seq: e.tenant_seq,
            at_ms: e.at_ms,
            kind: KindView::from(&e.kind),
        }
    }
}

impl<'a> KindView<'a> {
    /// Decodes the fields a fold needs from a kind's name, schema version and data bytes,
    /// borrowing its strings from `data`. Every schema version that [`EventKind::decode_data`]
    /// reads decodes here (the fields a view takes are in all of them); fields the view does not
    /// take are skipped unread.
    pub(crate) fn decode(
        name: &str,
        version: u16,
        data: &'a [u8],
    ) -> Result<KindView<'a>, SchemaError> {
        if !(SCHEMA_VERSION_MIN..=SCHEMA_VERSION).contains(&version) {
            return Err(SchemaError::Version(version));
        }
        match fast::kind_view(name, version, data) {
            Some(view) => Ok(view),
            None => KindView::decode_serde(name, version, data),
        }
    }

    /// [`KindView::decode`] of a known version the serde way: any form serde reads.
    fn decode_serde(name: &str, version: u16, data: &'a [u8]) -> Result<KindView<'a>, SchemaError> {
        let kind = match name {
            "SessionStarted" => {
                let d: SessionStartedView = decode_limited(data)?;
                KindView::SessionStarted {
                    user: d.user,
                    flow: d.flow,
                    flow_version: d.flow_version,
                }
            }
            "MessageReceived" if version == 1 => {
                let d: MessageReceivedV1View = decode_limited(data)?;
                KindView::MessageReceived { text: d.text }
            }
            "MessageReceived" => {
                let d: MessageReceivedView = decode_limited(data)?;
                KindView::MessageReceived { text: d.text }
            }
            "NodeEntered" => {
                let d: NodeView = decode_limited(data)?;
                KindView::NodeEntered { node: d.node }
            }
            "ReplySent" => {
                let d: ReplySentView = decode_limited(data)?;
                KindView::ReplySent {
                    text_bytes: d.text.len(),
                }
            }
            "StateSet" => {
                let d: StateSetView = decode_limited(data)?;
                KindView::StateSet {
                    key: d.key,
                    value: d.value,
                }
            }
            "AwaitingInput" => {
                let d: AwaitingInputView = decode_limited(data)?;
                KindView::AwaitingInput {
                    node: d.node,
                    key: d.key,
                }
            }
            "FlowFailed" => {
                let _: FlowFailedView = decode_limited(data)?;
                KindView::FlowFailed
            }
            "SessionEnded" => {
                let d: SessionEndedView = decode_limited(data)?;
                KindView::SessionEnded { reason: d.reason }
            }
            "ConnectorRegistered" => {
                let _: ConnectorRegisteredData = decode_limited(data)?;
                KindView::Connector
            }
            "ConnectorStateChanged" => {
                let _: ConnectorStateChangedData = decode_limited(data)?;
                KindView::Connector
            }
            "OutboxAcked" => {
                let _: OutboxAckedData = decode_limited(data)?;
                KindView::Connector
            }
            "OutboxDeadLettered" => {
                let _: OutboxDeadLetteredData = decode_limited(data)?;
                KindView::Connector
            }
            other => return Err(SchemaError::UnknownKind(other.chars().take(64).collect())),
        };
        Ok(kind)
    }
}

/// A record that this build cannot interpret. Data on disk or from a peer is wrong or newer.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Written by a newer (or corrupt) writer; upgrade tenantry or treat the record as corrupt.
    #[error("unsupported event schema version {0} (this build reads {SCHEMA_VERSION_MIN}..={SCHEMA_VERSION})")]
    Version(u16),
    /// The kind name is not one this build knows.
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
    /// The bytes are not valid MessagePack for the expected shape.
    #[error("malformed event: {0}")]
    Malformed(String),
}

// Payload shapes; field names are the on-disk contract. `Cow` lets one type both encode from
// borrowed strings (no clone on the append path) and decode into owned ones.
#[derive(Serialize, Deserialize)]
struct SessionStartedData<'a> {
    user: Cow<'a, str>,
    flow: Cow<'a, str>,
    flow_version: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct MessageReceivedData<'a> {
    message_id: Cow<'a, str>,
    user: Cow<'a, str>,
    text: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct NodeData<'a> {
    node: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct NodeTextData<'a> {
    node: Cow<'a, str>,
    text: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct StateSetData<'a> {
    key: Cow<'a, str>,
    value: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct AwaitingInputData<'a> {
    node: Cow<'a, str>,
    key: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct FlowFailedData<'a> {
    node: Cow<'a, str>,
    error: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct SessionEndedData<'a> {
    reason: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct ConnectorRegisteredData<'a> {
    connector: Cow<'a, str>,
    provider: Cow<'a, str>,
    version: Cow<'a, str>,
    capabilities: Vec<Cow<'a, str>>,
    healed: bool,
}
#[derive(Serialize, Deserialize)]
struct ConnectorStateChangedData<'a> {
    connector: Cow<'a, str>,
    from: Cow<'a, str>,
    to: Cow<'a, str>,
}
#[derive(Serialize, Deserialize)]
struct OutboxAckedData<'a> {
    connector: Cow<'a, str>,
    up_to: u64,
}
#[derive(Serialize, Deserialize)]
struct OutboxDeadLetteredData<'a> {
    connector: Cow<'a, str>,
    from: u64,
    up_to: u64,
    count: u64,
}

/// One event with its full envelope, as appended and as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// UUID v7, assigned at append.
    pub id: uuid::Uuid,
    pub tenant: TenantId,
    pub env: EnvId,
    pub team: TeamId,
    pub channel: ChannelId,
    pub session: SessionId,
    /// Position in the session, gapless from 1.
    pub seq: u64,
    /// Position in the tenant's log, gapless from 1.
    pub tenant_seq: u64,
    /// Unix time in milliseconds, from the caller's clock.
    pub at_ms: u64,
    pub kind: EventKind,
}

// Borrowed views of the payload shapes, for [`KindView::decode`]: the same field names. A field
// a fold does not read is `IgnoredAny`: it must be there, as [`EventKind::decode_data`] requires,
// but its value is skipped unread.
#[derive(Deserialize)]
struct SessionStartedView<'a> {
    user: &'a str,
    flow: &'a str,
    flow_version: &'a str,
}
#[derive(Deserialize)]
struct MessageReceivedView<'a> {
    #[serde(rename = "message_id")]
    _message_id: IgnoredAny,
    #[serde(rename = "user")]
    _user: IgnoredAny,
    text: &'a str,
}
#[derive(Deserialize)]
struct MessageReceivedV1View<'a> {
    #[serde(rename = "user")]
    _user: IgnoredAny,
    text: &'a str,
}
#[derive(Deserialize)]
struct ReplySentView<'a> {
    #[serde(rename = "node")]
    _node: IgnoredAny,
    text: &'a str,
}
#[derive(Deserialize)]
struct NodeView<'a> {
    node: &'a str,
}
#[derive(Deserialize)]
struct StateSetView<'a> {
    key: &'a str,
    value: &'a str,
}
#[derive(Deserialize)]
struct AwaitingInputView<'a> {
    node: &'a str,
    key: &'a str,
}
#[derive(Deserialize)]
struct FlowFailedView {
    #[serde(rename = "node")]
    _node: IgnoredAny,
    #[serde(rename = "error")]
    _error: IgnoredAny,
}
#[derive(Deserialize)]
struct SessionEndedView<'a> {
    reason: &'a str,
}
