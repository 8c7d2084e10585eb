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

/// Flips a bit in the last byte of `tenant`'s frame that holds `tenant_seq`, below the log API,
/// as disk corruption would; returns the frame's first tenant_seq.
pub(crate) fn flip_last_byte_of_frame(dir: &std::path::Path, tenant: &str, tenant_seq: u64) -> u64 {
    use crate::events::keys;
    let tenant: crate::tenancy::TenantId = crate::tenancy::fixtures::id(tenant);
    let db = sled::open(dir).unwrap();
    let tree = db.open_tree(crate::events::log::TREE_NAME).unwrap();
    let (start, _) = keys::frame_range(&tenant);
    let upto = keys::frame_key(&tenant, tenant_seq);
    let (key, value) = tree.range(start..=upto).next_back().unwrap().unwrap();
    let mut value = value.to_vec();
    let last = value.len() - 1;
    value[last] ^= 0x40;
    tree.insert(&key, value).unwrap();
    db.flush().unwrap();
    keys::frame_key_seq(&key, &tenant).unwrap()
}

/// `sled::open(dir)` once the log that had it open let go: a JetStream log's client runtime
/// shuts down in the background after the log is dropped, and its tasks may hold the files'
/// lock a moment longer. Retries a lock error for up to 10 s.
pub(crate) fn open_sled_when_free(dir: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{}: {e}", dir.display()),
        }
    }
}

/// A key ring over a secret store in `dir` with a fixed master key (the sealing tests').
pub(crate) fn keyring(dir: &std::path::Path) -> std::sync::Arc<crate::events::keyring::Keyring> {
    use crate::secrets::{key::KeySources, store::SecretStore, value::SecretValue};
    let sources = KeySources {
        master_key_hex: Some(SecretValue::new(b"cd".repeat(32))),
        signing_key: None,
    };
    let store = SecretStore::open_with(dir, sources).unwrap();
    std::sync::Arc::new(crate::events::keyring::Keyring::new(store))
}
