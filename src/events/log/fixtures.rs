//! Test fixtures shared by the log's tests and its readers' tests: tenant acme (env prod, team
//! support), session s1 on channel slack.

use crate::events::log::AppendGroup;
use crate::events::schema::EventKind;
use crate::tenancy::{SessionId, TenantCtx};

/// acme / prod / support.
pub(crate) fn acme_ctx() -> TenantCtx {
    TenantCtx::new(
        "acme".parse().unwrap(),
        "prod".parse().unwrap(),
        Some("support".parse().unwrap()),
    )
}

/// One group of session s1 by user ada at `expected_seq`: the session's start at 0, else the
/// message `text` with `message_id`; no idempotency record.
pub(crate) fn s1_group(expected_seq: u64, at_ms: u64, message_id: &str, text: &str) -> AppendGroup {
    let kinds = if expected_seq == 0 {
        vec![EventKind::SessionStarted {
            user: "ada".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        }]
    } else {
        vec![EventKind::MessageReceived {
            message_id: message_id.into(),
            user: "ada".into(),
            text: text.into(),
        }]
    };
    AppendGroup {
        ctx: acme_ctx(),
        channel: "slack".parse().unwrap(),
        session: SessionId::parse("s1").unwrap(),
        expected_seq,
        at_ms,
        kinds,
        idempotency: None,
    }
}
