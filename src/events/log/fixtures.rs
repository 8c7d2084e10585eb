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

/// A key of `tenant` no other family uses: `{t}\0Z{name}` (for tenant-ops tests).
pub(crate) fn own_key(tenant: &str, name: &str) -> Vec<u8> {
    let mut key = crate::events::keys::tenant_prefix(&crate::tenancy::fixtures::id(tenant));
    key.push(b'Z');
    key.extend_from_slice(name.as_bytes());
    key
}

/// A tenant op that sets `key` to `value`.
pub(crate) fn put(key: Vec<u8>, value: &str) -> crate::events::log::replica::Op {
    (
        serde_bytes::ByteBuf::from(key),
        Some(serde_bytes::ByteBuf::from(value.as_bytes().to_vec())),
    )
}

/// Every message payload in the stream `LOG` of `replica`'s server, raw.
pub(crate) fn raw_payloads(replica: &crate::events::log::Replica) -> Vec<Vec<u8>> {
    let js = replica.jetstream();
    replica.block_on(async {
        let stream = js.get_stream("LOG").await.unwrap();
        let last = stream.get_info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(m.payload.to_vec());
            }
        }
        out
    })
}

/// Whether any of `payloads` holds `canary`.
pub(crate) fn holds(payloads: &[Vec<u8>], canary: &str) -> bool {
    payloads
        .iter()
        .any(|p| p.windows(canary.len()).any(|w| w == canary.as_bytes()))
}
