//! Entry points for the fuzz targets in `fuzz/` and the decoders' property tests
//! (`fuzzing/tests.rs`): one `check_*` function per input format that crosses a trust boundary.
//!
//! Each function hands untrusted bytes to the real decoder, exactly as the product does, and when
//! the decoder accepts them, checks that the value survives a round trip through its encoder.
//! It returns whether the input was accepted. It panics only when an invariant is broken (the
//! decoder panicked, or an accepted value does not round-trip): that is what a fuzzer reports
//! as a crash.
//!
//! Not used by the server, and adds no behaviour: the decoders are the ones the edges and the
//! log call. Fixed ids and keys below let a seed corpus built from valid encodings reach past
//! the identity and signature checks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use base64::Engine;

use crate::config::flow::Flow;
use crate::config::{AuthConfig, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEFAULT_SUBJECT_PREFIX};
use crate::edge::auth::{bearer_token, Authenticator, HsKeys, SigningKey};
use crate::edge::http::dto::MessageBody;
use crate::edge::nats::subject::{parse_ingress, stem, tenant_token};
use crate::events::codec::{
    decode_body, decode_body_view, decode_frame, encode_body, encode_frame, FrameBuilder,
    EVENT_BYTES_MAX, FRAME_VERSION_GROUPS,
};
use crate::events::schema::EventView;
use crate::projections::session::SessionState;
use crate::projections::snapshot::{file_with_raw_state, SnapshotKey, SnapshotStore};
use crate::tenancy::{EnvId, SessionId, TeamId, TenantId};

/// The HS256 key of [`check_jwt`] and [`check_jwt_claims`]. Public so that seed generators can
/// sign valid tokens; it protects nothing.
pub const SIGNING_KEY: &[u8] = b"tenantry-fuzzing-key-0123456789abcdef";
/// The session every snapshot input is decoded as: `acme` / `prod` / `support` / `s1`.
pub const SNAPSHOT_IDS: [&str; 4] = ["acme", "prod", "support", "s1"];
/// The NATS subject prefix of [`check_nats_subject`].
pub const SUBJECT_PREFIX: &str = DEFAULT_SUBJECT_PREFIX;

/// An append-group frame as stored in the log: structure and CRC, then every body. `true` when
/// the frame and all its bodies decode.
pub fn check_event_frame(bytes: &[u8]) -> bool {
    let Ok(frame) = decode_frame(bytes) else {
        return false;
    };
    let mut again = FrameBuilder::with_capacity(&frame.prev_hash, bytes.len());
    if frame.version == FRAME_VERSION_GROUPS {
        again.next_group();
    }
    for body in &frame.bodies {
        again.push(body);
    }
    assert!(
        again.finish() == bytes,
        "an accepted frame must re-encode to the same bytes"
    );
    assert_eq!(frame.hashes().last(), Some(&frame.last_hash()));
    // Every body is checked, even after one is refused.
    let accepted: Vec<bool> = frame.bodies.iter().map(|b| check_event_body(b)).collect();
    accepted.iter().all(|&ok| ok)
}

/// One event body (MessagePack envelope plus the kind's data).
pub fn check_event_body(bytes: &[u8]) -> bool {
    // The fold's decoder of the same bytes: never panics, and reads every body the full decoder
    // accepts, as the full decoder reads it (it may accept more: it skips fields it does not
    // read, and leaves the ids to the log's fold read).
    let view = decode_body_view(bytes);
    let Ok(event) = decode_body(bytes) else {
        return false;
    };
    match view {
        Ok(view) => assert_eq!(
            view,
            EventView::from(&event),
            "the fold must read the event"
        ),
        Err(e) => panic!("the fold refuses a body the full decoder accepts: {e}"),
    }
    let again = encode_body(&event);
    // An accepted body may use a shorter MessagePack form than ours (a struct as an array), so
    // its re-encoding can be longer; only one within the limit must decode.
    if again.len() <= EVENT_BYTES_MAX {
        match decode_body(&again) {
            Ok(decoded) => assert_eq!(decoded, event, "an event must round-trip"),
            Err(e) => panic!("a re-encoded event does not decode: {e}"),
        }
    }
    true
}

/// A CBOR snapshot file of the session [`SNAPSHOT_IDS`], as a whole file and as the raw state
/// behind a valid envelope (so that mutated states reach the state decoder past the CRC).
pub fn check_snapshot(bytes: &[u8]) -> bool {
    let ids = SnapshotIds::new();
    let key = ids.key();
    let store = SnapshotStore::new(PathBuf::from("fuzz-sessions"));
    let whole = decode_snapshot(&store, &key, bytes);
    let inner = decode_snapshot(&store, &key, &file_with_raw_state(&key, 1, bytes));
    whole || inner
}

fn decode_snapshot(store: &SnapshotStore, key: &SnapshotKey, bytes: &[u8]) -> bool {
    let Ok(snap) = store.decode::<SessionState>(key, bytes) else {
        return false;
    };
    // A state past the size limit is refused by the writer; nothing to round-trip then.
    if let Ok(again) = store.encode(key, snap.seq, &snap.state) {
        match store.decode::<SessionState>(key, &again) {
            Ok(decoded) => assert_eq!(decoded, snap, "a snapshot must round-trip"),
            Err(e) => panic!("a re-encoded snapshot does not decode: {e}"),
        }
    }
    true
}

/// Owned ids from which a borrowed [`SnapshotKey`] is built: for the snapshot seeds here and
/// the snapshot store's tests.
pub(crate) struct SnapshotIds {
    pub(crate) tenant: TenantId,
    pub(crate) env: EnvId,
    pub(crate) team: TeamId,
    pub(crate) session: SessionId,
}

impl SnapshotIds {
    /// The ids of the snapshot seeds ([`SNAPSHOT_IDS`]).
    fn new() -> SnapshotIds {
        let [tenant, env, team, session] = SNAPSHOT_IDS;
        SnapshotIds::of(tenant, env, team, session)
    }

    /// Parses fixed ids; panics on an invalid one (seeds and tests only).
    pub(crate) fn of(tenant: &str, env: &str, team: &str, session: &str) -> SnapshotIds {
        let valid = "fixed ids are valid";
        SnapshotIds {
            tenant: TenantId::parse(tenant).expect(valid),
            env: EnvId::parse(env).expect(valid),
            team: TeamId::parse(team).expect(valid),
            session: SessionId::parse(session).expect(valid),
        }
    }

    pub(crate) fn key(&self) -> SnapshotKey<'_> {
        SnapshotKey {
            tenant: &self.tenant,
            env: &self.env,
            team: &self.team,
            session: &self.session,
        }
    }
}

/// An inbound message body: the HTTP `POST /api/v1/messages` JSON and the NATS ingress payload.
pub fn check_ingress_json(bytes: &[u8]) -> bool {
    let http = serde_json::from_slice::<MessageBody>(bytes);
    if let Ok(m) = &http {
        let again = serde_json::json!({
            "team": m.team, "channel": m.channel, "session": m.session,
            "user": m.user, "text": m.text, "message_id": m.message_id,
        });
        match serde_json::from_value::<MessageBody>(again) {
            Ok(back) => assert_eq!(format!("{back:?}"), format!("{m:?}")),
            Err(e) => panic!("a re-encoded HTTP message does not parse: {e}"),
        }
    }
    let nats = crate::edge::nats::ingress::parse_payload_bytes(bytes, None);
    if let Ok(inbound) = &nats {
        let again = serde_json::json!({
            "session": inbound.session.as_ref().map(SessionId::as_str),
            "user": inbound.user, "text": inbound.text, "message_id": inbound.message_id,
        });
        let again = serde_json::to_vec(&again).unwrap_or_default();
        match crate::edge::nats::ingress::parse_payload_bytes(&again, None) {
            Ok(back) => assert_eq!(format!("{back:?}"), format!("{inbound:?}")),
            Err(e) => panic!("a re-encoded NATS payload does not parse: {e}"),
        }
    }
    http.is_ok() || nats.is_ok()
}

/// A NATS ingress subject under [`SUBJECT_PREFIX`].
pub fn check_nats_subject(subject: &str) -> bool {
    let token = tenant_token(SUBJECT_PREFIX, subject);
    let Ok(a) = parse_ingress(SUBJECT_PREFIX, subject) else {
        return false;
    };
    let rebuilt = format!(
        "{}{}.{}.{}.{}",
        stem(SUBJECT_PREFIX, "ingress"),
        a.env,
        a.tenant,
        a.team,
        a.channel
    );
    assert_eq!(rebuilt, subject, "a parsed subject must rebuild exactly");
    assert_eq!(token, Some(a.tenant.as_str()));
    true
}

/// Flow YAML, parsed and validated as a flow file.
pub fn check_flow_yaml(text: &str) -> bool {
    Flow::parse(Path::new("fuzz/flow.yaml"), text).is_ok()
}

/// `config.toml` text, checked up to the seed and flow files it names (which are not read).
pub fn check_config_toml(text: &str) -> bool {
    crate::config::load::check_config_text(Path::new("fuzz/config.toml"), text).is_ok()
}

/// Seed YAML text as a bundle, a tenant file and a team file.
pub fn check_seed_yaml(text: &str) -> bool {
    crate::config::load::check_seed_text(Path::new("fuzz/bundle.yaml"), text)
        .iter()
        .any(Result::is_ok)
}

fn authenticator() -> Authenticator {
    let key = SigningKey::new(SIGNING_KEY.to_vec()).expect("SIGNING_KEY is long enough");
    Authenticator::new(
        HsKeys::single(key),
        None,
        &AuthConfig {
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            // The seeds are fixed text with a fixed `exp` (2100): a bound that admits them keeps
            // the fuzzer exploring the decoders. The bound itself is unit-tested in edge::auth.
            token_lifetime_max: Duration::from_secs(200 * 365 * 24 * 60 * 60),
            jwks: None,
        },
    )
}

/// `bytes` as an `Authorization` header value (through `bearer_token`) and as a bare token,
/// checked by the HTTP edge's `Authenticator` with [`SIGNING_KEY`].
pub fn check_jwt(bytes: &[u8]) -> bool {
    let auth = authenticator();
    let mut accepted = false;
    if let Ok(value) = HeaderValue::from_bytes(bytes) {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        if let Ok(token) = bearer_token(&headers) {
            accepted |= auth.verify(token).is_ok();
        }
    }
    if let Ok(token) = std::str::from_utf8(bytes) {
        accepted |= auth.verify(token).is_ok();
    }
    accepted
}

/// `claims` as the payload of an HS256 token correctly signed with [`SIGNING_KEY`], so that the
/// claim checks (types, `exp`/`nbf`, issuer, audience, ids) see arbitrary JSON.
pub fn check_jwt_claims(claims: &[u8]) -> bool {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let message = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(claims)
    );
    let key = jsonwebtoken::EncodingKey::from_secret(SIGNING_KEY);
    let Ok(signature) =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256)
    else {
        return false;
    };
    authenticator()
        .verify(&format!("{message}.{signature}"))
        .is_ok()
}

/// The fuzz targets, one per format; `fuzz/fuzz_targets/{name}.rs` calls [`Target::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A log frame or a single event body ([`check_event_frame`], [`check_event_body`]).
    EventRecord,
    /// A CBOR snapshot file ([`check_snapshot`]).
    Snapshot,
    /// Inbound message JSON of HTTP and NATS ([`check_ingress_json`]).
    IngressJson,
    /// A NATS ingress subject ([`check_nats_subject`]).
    NatsSubject,
    /// Flow YAML, `config.toml` and seed YAML text ([`check_flow_yaml`], [`check_config_toml`],
    /// [`check_seed_yaml`]).
    Config,
    /// The first byte selects: even, the rest is an `Authorization` value or bare token
    /// ([`check_jwt`]); odd, the rest is the claims JSON of a correctly signed token
    /// ([`check_jwt_claims`]).
    Jwt,
}

impl Target {
    /// Every target, in a fixed order.
    pub const ALL: [Target; 6] = [
        Target::EventRecord,
        Target::Snapshot,
        Target::IngressJson,
        Target::NatsSubject,
        Target::Config,
        Target::Jwt,
    ];

    /// The cargo-fuzz target name (and corpus directory).
    pub fn name(self) -> &'static str {
        match self {
            Target::EventRecord => "event_record",
            Target::Snapshot => "snapshot",
            Target::IngressJson => "ingress_json",
            Target::NatsSubject => "nats_subject",
            Target::Config => "config",
            Target::Jwt => "jwt",
        }
    }

    /// Feeds `data` to the target's decoders; `true` when one accepted it.
    pub fn check(self, data: &[u8]) -> bool {
        match self {
            Target::EventRecord => check_event_frame(data) | check_event_body(data),
            Target::Snapshot => check_snapshot(data),
            Target::IngressJson => check_ingress_json(data),
            Target::NatsSubject => std::str::from_utf8(data).is_ok_and(check_nats_subject),
            Target::Config => std::str::from_utf8(data).is_ok_and(|text| {
                check_flow_yaml(text) | check_config_toml(text) | check_seed_yaml(text)
            }),
            Target::Jwt => match data.split_first() {
                Some((selector, rest)) if selector % 2 == 0 => check_jwt(rest),
                Some((_, rest)) => check_jwt_claims(rest),
                None => false,
            },
        }
    }

    /// Valid encodings, named; the fuzzers' seed corpus (checked in under `fuzz/seeds/`).
    pub fn seeds(self) -> Vec<(String, Vec<u8>)> {
        match self {
            Target::EventRecord => event_seeds(),
            Target::Snapshot => snapshot_seeds(),
            Target::IngressJson => [
                r#"{"team":"support","channel":"slack","user":"ada","text":"hello"}"#,
                r#"{"channel":"slack","session":"s1","user":"ada","text":"hi \"x\" \u00e9","message_id":"m-1"}"#,
                r#"{"session":"0196f0d0-aaaa-7bbb-8ccc-123456789abc","user":"u","text":"","message_id":"42"}"#,
                r#"{"user":"u","text":"t"}"#,
            ]
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("valid-{i}"), s.as_bytes().to_vec()))
            .collect(),
            Target::NatsSubject => [
                "greentic.messaging.ingress.prod.acme.support.slack",
                "greentic.messaging.ingress.default.bigcorp.default.web-chat",
                "greentic.messaging.ingress.prod.a_b.team-1.c0",
            ]
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("valid-{i}"), s.as_bytes().to_vec()))
            .collect(),
            Target::Config => vec![
                ("config.toml".into(), include_bytes!("../config.toml").to_vec()),
                (
                    "acme_support.yaml".into(),
                    include_bytes!("../flows/acme_support.yaml").to_vec(),
                ),
                (
                    "bigcorp_helpdesk.yaml".into(),
                    include_bytes!("../flows/bigcorp_helpdesk.yaml").to_vec(),
                ),
                ("bundle.yaml".into(), SEED_BUNDLE.as_bytes().to_vec()),
            ],
            Target::Jwt => jwt_seeds(),
        }
    }

    /// Known nasty inputs, named: huge declared lengths, deep nesting. Each must be refused
    /// quickly without allocating what it declares; `fuzzing/tests.rs` checks them and
    /// `fuzz/seeds/` holds them so that fuzzers start from them too.
    pub fn regressions(self) -> Vec<(&'static str, Vec<u8>)> {
        regressions(self, REGRESSION_DEPTH)
    }
}

/// Nesting depth of the regression inputs in the seed corpus: past every decoder's depth limit
/// (128 at most), yet small, because fuzzers mutate seeds and deep YAML costs time per run (the
/// unit tests use 100k).
pub const REGRESSION_DEPTH: usize = 512;

const SEED_BUNDLE: &str = "tenants:
  acme:
    name: ACME Corporation
    settings: { timezone: America/New_York }
    environments: [prod, staging]
    teams:
      support:
        name: Customer Support
        channels:
          slack:
            provider: messaging-slack
            config: { workspace_id: T123456 }
";

/// Named nasty inputs for `target`, built around `depth` levels of nesting.
pub(crate) fn regressions(target: Target, depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    match target {
        Target::EventRecord => event_record_regressions(depth),
        Target::Snapshot => snapshot_regressions(depth),
        Target::IngressJson => ingress_json_regressions(depth),
        Target::NatsSubject => nats_subject_regressions(depth),
        Target::Config => config_regressions(depth),
        Target::Jwt => jwt_regressions(depth),
    }
}

/// `depth` nested one-element arrays: MessagePack `0x91`, CBOR `0x81`, JSON and YAML `[`.
fn nested(open: &[u8], close: &[u8], depth: usize) -> Vec<u8> {
    let mut v = open.repeat(depth);
    v.extend(close.repeat(depth));
    v
}

fn event_record_regressions(depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    // A frame whose only record declares u32::MAX bytes, with a correct CRC.
    let mut huge_record = encode_frame(&[0; 32], &[vec![0xc0]]);
    let at = crate::events::codec::FRAME_HEADER_BYTES;
    huge_record[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&huge_record[5..]);
    huge_record[1..5].copy_from_slice(&crc.to_le_bytes());
    let mut deep = vec![0x91; depth];
    deep.push(0xc0);
    // The same under an unknown key of the envelope map, which the decoder skips
    // (recursively) rather than refusing at the first marker.
    let mut deep_unknown = vec![0x81, 0xa2, b'z', b'z'];
    deep_unknown.extend_from_slice(&deep);
    vec![
        ("frame-record-len-u32-max", huge_record),
        ("msgpack-str32-4gib", vec![0xdb, 0xff, 0xff, 0xff, 0xff]),
        ("msgpack-bin32-4gib", vec![0xc6, 0xff, 0xff, 0xff, 0xff]),
        ("msgpack-array32-4g", vec![0xdd, 0xff, 0xff, 0xff, 0xff]),
        ("msgpack-map32-4g", vec![0xdf, 0xff, 0xff, 0xff, 0xff]),
        ("msgpack-nested-arrays", deep),
        ("msgpack-nested-arrays-unknown-key", deep_unknown),
    ]
}

fn snapshot_regressions(depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    let huge = |head: u8| {
        let mut v = vec![head];
        v.extend_from_slice(&u64::MAX.to_be_bytes());
        v
    };
    vec![
        ("cbor-bytes-2^64", huge(0x5b)),
        ("cbor-text-2^64", huge(0x7b)),
        ("cbor-array-2^64", huge(0x9b)),
        ("cbor-map-2^64", huge(0xbb)),
        ("cbor-nested-arrays", nested(&[0x81], &[0x00], depth)),
    ]
}

fn ingress_json_regressions(depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("json-nested-arrays", nested(b"[", b"]", depth)),
        // Skipped as an unknown field by the HTTP body's decoder, recursively.
        ("json-nested-arrays-unknown-key", {
            let mut v = br#"{"x":"#.to_vec();
            v.extend(nested(b"[", b"]", depth));
            v.push(b'}');
            v
        }),
        ("json-nested-objects", {
            let mut v = br#"{"user":"#.repeat(depth);
            v.extend(b"1}".repeat(depth));
            v
        }),
        (
            "json-huge-number",
            format!(
                r#"{{"user":"u","text":"t","session":1{}}}"#,
                "0".repeat(depth)
            )
            .into_bytes(),
        ),
    ]
}

fn nats_subject_regressions(depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("subject-many-dots", {
            let mut v = b"greentic.messaging.ingress.".to_vec();
            v.extend(b".".repeat(depth));
            v
        }),
        ("subject-long-token", {
            let mut v = b"greentic.messaging.ingress.prod.".to_vec();
            v.extend(b"a".repeat(depth));
            v.extend(b".support.slack");
            v
        }),
    ]
}

fn config_regressions(depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("yaml-nested-sequences", nested(b"[", b"]", depth)),
        ("yaml-nested-block-mappings", {
            let mut v = Vec::new();
            for level in 0..depth.min(150) {
                v.extend(b" ".repeat(level));
                v.extend(b"a:\n");
            }
            v
        }),
        ("yaml-alias-bomb", {
            let mut v = b"a: &a [x, x, x, x, x, x, x, x, x]\n".to_vec();
            for (i, name) in (b'b'..=b'k').enumerate() {
                let prev = char::from(b'a' + u8::try_from(i).unwrap_or(0));
                let name = char::from(name);
                v.extend(
                format!("{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n")
                    .into_bytes(),
            );
            }
            v
        }),
        ("toml-nested-arrays", {
            let mut v = b"x = ".to_vec();
            v.extend(nested(b"[", b"]", depth));
            v
        }),
        ("toml-nested-inline-tables", {
            let mut v = b"x = ".to_vec();
            v.extend(b"{a=".repeat(depth));
            v.push(b'1');
            v.extend(b"}".repeat(depth));
            v
        }),
    ]
}

fn jwt_regressions(depth: usize) -> Vec<(&'static str, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut deep_claims = vec![1u8];
    deep_claims.extend(nested(b"[", b"]", depth));
    let mut deep_header = vec![0u8];
    deep_header.extend(b64.encode(nested(b"[", b"]", depth)).into_bytes());
    deep_header.extend(b".e30.sig");
    vec![
        ("jwt-claims-nested-arrays", deep_claims),
        ("jwt-header-nested-arrays", deep_header),
        ("jwt-exp-as-string", {
            let mut v = vec![1u8];
            v.extend(
                br#"{"tenant":"acme","env":"prod","exp":"4102444800","iss":"tenantry","aud":"tenantry-api"}"#,
            );
            v
        }),
        ("jwt-alg-none", {
            let mut v = vec![0u8];
            v.extend(
                format!(
                    "{}.{}.",
                    b64.encode(br#"{"alg":"none"}"#),
                    b64.encode(VALID_CLAIMS)
                )
                .into_bytes(),
            );
            v
        }),
    ]
}

const VALID_CLAIMS: &[u8] = br#"{"tenant":"acme","env":"prod","team":"support","exp":4102444800,"iss":"tenantry","aud":"tenantry-api"}"#;

/// One event kind of each type, with plausible values: the seeds' events, and the codec tests'.
pub(crate) fn sample_kinds() -> Vec<crate::events::schema::EventKind> {
    use crate::events::schema::EventKind;
    vec![
        EventKind::SessionStarted {
            user: "ada".into(),
            flow: "acme_support_flow".into(),
            flow_version: "1.0".into(),
        },
        EventKind::MessageReceived {
            message_id: "m-1".into(),
            user: "ada".into(),
            text: "hello".into(),
        },
        EventKind::NodeEntered {
            node: "greet".into(),
        },
        EventKind::ReplySent {
            node: "greet".into(),
            text: "Welcome".into(),
        },
        EventKind::AwaitingInput {
            node: "ask".into(),
            key: "name".into(),
        },
        EventKind::StateSet {
            key: "name".into(),
            value: "Ada".into(),
        },
        EventKind::FlowFailed {
            node: "n".into(),
            error: "boom".into(),
        },
        EventKind::SessionEnded {
            reason: "done".into(),
        },
        EventKind::ConnectorRegistered {
            connector: "slack-1".into(),
            provider: "messaging-slack".into(),
            version: "1.2.0".into(),
            capabilities: vec!["text".into(), "files".into()],
            healed: false,
        },
        EventKind::ConnectorStateChanged {
            connector: "slack-1".into(),
            from: "live".into(),
            to: "stale".into(),
        },
        EventKind::OutboxAcked {
            connector: "slack-1".into(),
            up_to: 42,
        },
        EventKind::OutboxDeadLettered {
            connector: "slack-1".into(),
            from: 43,
            up_to: 50,
            count: 3,
        },
    ]
}

fn sample_events() -> Vec<crate::events::schema::Event> {
    use crate::events::schema::Event;
    let ids = SnapshotIds::new();
    let kinds = sample_kinds();
    kinds
        .into_iter()
        .zip(1u64..)
        .map(|(kind, seq)| Event {
            id: uuid::Uuid::from_u128(0x0196_f0d0_0000_7000_8000_0000_0000_0000 + u128::from(seq)),
            tenant: ids.tenant.clone(),
            env: ids.env.clone(),
            team: ids.team.clone(),
            channel: crate::tenancy::ChannelId::parse("slack").expect("a valid id"),
            session: ids.session.clone(),
            seq,
            tenant_seq: seq,
            at_ms: 1_763_900_000_000 + seq,
            kind,
        })
        .collect()
}

fn event_seeds() -> Vec<(String, Vec<u8>)> {
    let events = sample_events();
    let bodies: Vec<Vec<u8>> = events.iter().map(encode_body).collect();
    let mut out: Vec<(String, Vec<u8>)> = events
        .iter()
        .zip(&bodies)
        .map(|(e, body)| (format!("body-{}", e.kind.name()), body.clone()))
        .collect();
    out.push(("frame-one".into(), encode_frame(&[0; 32], &bodies[..1])));
    out.push(("frame-all".into(), encode_frame(&[7; 32], &bodies)));
    let mut groups = FrameBuilder::with_capacity(&[9; 32], 0);
    for (i, body) in bodies.iter().enumerate() {
        if i > 0 {
            groups.next_group();
        }
        groups.push(body);
    }
    out.push(("frame-groups".into(), groups.finish()));
    out
}

fn snapshot_seeds() -> Vec<(String, Vec<u8>)> {
    let ids = SnapshotIds::new();
    let key = ids.key();
    let store = SnapshotStore::new(PathBuf::from("fuzz-sessions"));
    let mut state = SessionState::new(
        ids.tenant.clone(),
        ids.env.clone(),
        ids.team.clone(),
        ids.session.clone(),
    );
    let mut out = Vec::new();
    for event in sample_events() {
        state.apply(&event);
        if let Ok(bytes) = store.encode(&key, state.last_seq, &state) {
            out.push((format!("after-{}", event.kind.name()), bytes));
        }
    }
    out
}

fn jwt_seeds() -> Vec<(String, Vec<u8>)> {
    let key = jsonwebtoken::EncodingKey::from_secret(SIGNING_KEY);
    let claims: serde_json::Value =
        serde_json::from_slice(VALID_CLAIMS).unwrap_or(serde_json::Value::Null);
    let token =
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap_or_default();
    let with = |selector: u8, rest: &[u8]| {
        let mut v = vec![selector];
        v.extend_from_slice(rest);
        v
    };
    vec![
        ("token".into(), with(0, token.as_bytes())),
        (
            "bearer-header".into(),
            with(2, format!("Bearer {token}").as_bytes()),
        ),
        ("claims".into(), with(1, VALID_CLAIMS)),
        (
            "claims-no-team".into(),
            with(
                3,
                br#"{"tenant":"bigcorp","env":"default","exp":4102444800,"nbf":1,"iss":"tenantry","aud":"tenantry-api","sub":"x"}"#,
            ),
        ),
    ]
}

#[cfg(test)]
mod tests;
