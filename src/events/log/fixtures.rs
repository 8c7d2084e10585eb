//! Test fixtures shared by the log's tests and the projections' tests that append to a log.

use crate::events::log::AppendGroup;
use crate::events::schema::EventKind;
use crate::tenancy::{ChannelId, SessionId, TeamId, TenantCtx};

/// Tenant `acme`, env `prod`, team `support`.
pub(crate) fn acme_support() -> TenantCtx {
    TenantCtx::new(
        "acme".parse().unwrap(),
        "prod".parse().unwrap(),
        Some(TeamId::parse("support").unwrap()),
    )
}

/// Ada's append group at `expected_seq` in session `s1` of [`acme_support`] on `slack`: her
/// `SessionStarted` at 0, else her message `text` with id `message_id`; no idempotency.
pub(crate) fn ada_group(
    expected_seq: u64,
    message_id: String,
    text: &str,
    at_ms: u64,
) -> AppendGroup {
    let kinds = if expected_seq == 0 {
        vec![EventKind::SessionStarted {
            user: "ada".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        }]
    } else {
        vec![EventKind::MessageReceived {
            message_id,
            user: "ada".into(),
            text: text.into(),
        }]
    };
    AppendGroup {
        ctx: acme_support(),
        channel: ChannelId::parse("slack").unwrap(),
        session: SessionId::parse("s1").unwrap(),
        expected_seq,
        at_ms,
        kinds,
        idempotency: None,
    }
}
