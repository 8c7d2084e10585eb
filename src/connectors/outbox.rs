//! A connector's outbox (docs/connectors.md "Outbox"): not a copy of the replies but a cursor over
//! the tenant's log. Its pending replies are the `ReplySent` events of the connector's env, team
//! and channel with a `tenant_seq` past its cursor; the cursor starts at the `tenant_seq` of the
//! connector's first registration and moves only by durable events of its system session
//! (`OutboxAcked`, `OutboxDeadLettered`), so it survives restarts exactly.
//!
//! Invariants: a read returns replies in `tenant_seq` order and never past the durable frontier;
//! one read decodes at most [`OUTBOX_SCAN_EVENTS_MAX`] events and returns at most
//! [`OUTBOX_PAGE_MAX`] replies; its `cursor` is the last `tenant_seq` it accounted for (every
//! reply at or before it was returned or was not the connector's).

use std::collections::HashMap;

use super::Connector;
use crate::events::log::{EventLog, ReadError};
use crate::events::schema::EventKind;
use crate::tenancy::TenantId;

/// Most replies one outbox read returns.
pub const OUTBOX_PAGE_MAX: usize = 100;
/// Most events of the tenant's log one outbox read (or one dead-letter check) decodes; a read
/// that stops there returns what it found with the cursor where it stopped.
pub const OUTBOX_SCAN_EVENTS_MAX: u64 = 10_000;

/// One pending reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxItem {
    /// The reply's position in the tenant's log: what `up_to` of an ack names.
    pub tenant_seq: u64,
    pub session: String,
    /// The reply's seq in its session.
    pub seq: u64,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub node: String,
    pub text: String,
    /// The `message_id` of the message this replies to, when the read saw it (it is the same
    /// append as the reply, unless the read began between them).
    pub reply_to: Option<String>,
}

/// What one outbox read found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<OutboxItem>,
    /// The last `tenant_seq` this read accounted for: acking up to it acknowledges every item.
    pub cursor: u64,
}

/// Replies older than the outbox's time to live, to be given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The first `tenant_seq` given up (the cursor + 1).
    pub from: u64,
    /// The last expired reply's `tenant_seq`: the new cursor.
    pub up_to: u64,
    pub count: u64,
}

/// The pending replies of `connector` of `tenant` after `after`, at most `limit`
/// (capped at [`OUTBOX_PAGE_MAX`]). Blocking: a read of the log.
pub fn read(
    log: &EventLog,
    tenant: &TenantId,
    connector: &Connector,
    after: u64,
    limit: usize,
) -> Result<Page, ReadError> {
    let limit = limit.clamp(1, OUTBOX_PAGE_MAX);
    let mut page = Page {
        items: Vec::new(),
        cursor: after,
    };
    let mut asked: HashMap<String, String> = HashMap::new();
    let end = after.saturating_add(OUTBOX_SCAN_EVENTS_MAX);
    for stored in log.tenant(tenant).events(after.saturating_add(1)..=end) {
        let event = stored?.event;
        page.cursor = event.tenant_seq;
        if !mine(connector, &event) {
            continue;
        }
        match event.kind {
            EventKind::MessageReceived { message_id, .. } => {
                asked.insert(event.session.to_string(), message_id);
            }
            EventKind::ReplySent { node, text } => {
                let session = event.session.to_string();
                page.items.push(OutboxItem {
                    tenant_seq: event.tenant_seq,
                    reply_to: asked.get(&session).cloned(),
                    session,
                    seq: event.seq,
                    at_ms: event.at_ms,
                    node,
                    text,
                });
                if page.items.len() == limit {
                    break;
                }
            }
            _ => {}
        }
    }
    Ok(page)
}

/// The replies of `connector` after `after` appended before `cutoff_ms` (Unix ms), up to the
/// first one that is not, within [`OUTBOX_SCAN_EVENTS_MAX`] events; `None` when there is none.
/// Blocking: a read of the log.
pub fn expired(
    log: &EventLog,
    tenant: &TenantId,
    connector: &Connector,
    after: u64,
    cutoff_ms: u64,
) -> Result<Option<Expired>, ReadError> {
    let mut found: Option<Expired> = None;
    let end = after.saturating_add(OUTBOX_SCAN_EVENTS_MAX);
    for stored in log.tenant(tenant).events(after.saturating_add(1)..=end) {
        let event = stored?.event;
        if !mine(connector, &event) || !matches!(event.kind, EventKind::ReplySent { .. }) {
            continue;
        }
        if event.at_ms >= cutoff_ms {
            break;
        }
        let e = found.get_or_insert(Expired {
            from: after.saturating_add(1),
            up_to: 0,
            count: 0,
        });
        e.up_to = event.tenant_seq;
        e.count += 1;
    }
    Ok(found)
}

/// Whether `event` is of `connector`'s env, team and channel (and not a system session's).
fn mine(connector: &Connector, event: &crate::events::schema::Event) -> bool {
    event.env == connector.env
        && event.team == connector.team
        && event.channel == connector.channel
        && !super::is_system_session(event.session.as_str())
}
