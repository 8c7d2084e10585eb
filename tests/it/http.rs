//! The HTTP API (docs/http.md) as clients see it: the real `tenantry serve` binary on a free port,
//! real HTTP (ureq), tokens minted with jsonwebtoken and the shared key.
//!
//! Two tenants share every id they can (envs, teams, channels, a session id); bigcorp's data
//! carries canary strings that must never appear in any response to acme.

use std::io::Read;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::support::{claims, read, sign, token, Reply, Serve, ServeProcess, SIGNING_KEY as KEY};

/// In bigcorp's message text, user and session: must never reach acme.
const CANARY: &str = "BIGCORP-CANARY";
/// bigcorp's flow reply, also never shown to acme.
const BIGCORP_REPLY: &str = "BigCorp Helpdesk";

pub(crate) fn config(acme_extra: &str) -> String {
    let team = |tenant: &str, team: &str, flow: &str| {
        format!(
            "[tenants.{tenant}.teams.{team}]\nflow = \"flows/{flow}\"\n\
             [tenants.{tenant}.teams.{team}.channels.webchat]\nprovider = \"messaging-webchat\"\n\
             [tenants.{tenant}.teams.{team}.channels.slack]\nprovider = \"messaging-slack\"\n"
        )
    };
    format!(
        "[server]\ndata_dir = \"./data\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [tenants.acme]\nname = \"ACME Corporation\"\nenvironments = [\"prod\", \"staging\"]\n{acme_extra}\n\
         {}{}\
         [tenants.bigcorp]\nname = \"BigCorp Inc.\"\nenvironments = [\"prod\"]\n\
         {}{}",
        team("acme", "support", "acme_support.yaml"),
        team("acme", "sales", "acme_support.yaml"),
        team("bigcorp", "support", "bigcorp_helpdesk.yaml"),
        team("bigcorp", "sales", "bigcorp_helpdesk.yaml"),
    )
}

/// A running `tenantry serve` with [`config`]`(acme_extra)`.
pub(crate) fn start(acme_extra: &str) -> ServeProcess {
    Serve::config(&config(acme_extra)).start()
}

/// SIGTERM, then expect a clean exit and the runtime's last log line.
fn stop(mut server: ServeProcess) {
    let status = server.stop();
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = server.lines.try_iter().collect();
    let stopping_http = rest.iter().position(|l| l.contains("stopping HTTP"));
    let draining = rest.iter().position(|l| l.contains("draining queued"));
    assert!(
        stopping_http.is_some() && stopping_http < draining,
        "{rest:#?}"
    );
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:#?}");
}

fn now() -> i64 {
    i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap()
}

fn sign_with(claims: &Value, alg: Algorithm, key: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

pub(crate) fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// Unpadded base64url, to hand-craft an `alg: none` token.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// One row of the authz matrix: what is wrong, the headers, the expected status and code.
type Case<'a> = (&'a str, Vec<(String, String)>, u16, &'a str);

pub(crate) fn auth_headers(token: &str) -> Vec<(String, String)> {
    vec![("Authorization".into(), format!("Bearer {token}"))]
}

/// Asserts that a response to acme holds none of bigcorp's data.
#[track_caller]
pub(crate) fn assert_no_bigcorp(reply: &Reply) {
    for needle in [CANARY, BIGCORP_REPLY, "bigcorp"] {
        assert!(
            !reply.body.to_lowercase().contains(&needle.to_lowercase()),
            "bigcorp data ({needle}) in a response to acme: {reply:?}"
        );
    }
}

/// bigcorp's canary session, which shares its id with acme's `shared-1`, and a session only
/// bigcorp has.
pub(crate) fn seed_bigcorp(server: &ServeProcess) {
    for session in ["shared-1", "theirs-only-1"] {
        let ack = server
            .post_as(
                "bigcorp",
                &json!({"team": "support", "channel": "webchat", "session": session,
                        "user": format!("{CANARY}-user"), "text": format!("{CANARY} secret text")}),
            )
            .ok();
        assert!(ack["replies"][0].as_str().unwrap().contains(BIGCORP_REPLY));
    }
}

#[test]
fn messages_sessions_and_events_happy_path_and_metrics() {
    let server = start("");
    assert_eq!(server.get("/healthz", &[]).ok(), json!({"status": "ok"}));
    seed_bigcorp(&server);

    // A message without a session opens one and is answered by acme's flow.
    let first = server.post_as(
        "acme",
        &json!({"team": "support", "channel": "webchat", "user": "alice", "text": "hello",
                "message_id": "m-1"}),
    );
    assert_no_bigcorp(&first);
    let first = first.ok();
    let session = first["session"].as_str().unwrap().to_owned();
    assert_eq!(first["seq"], 2, "{first}");
    assert_eq!(
        first["replies"],
        json!(["Welcome to ACME Support! How can I help?"])
    );

    // The same user's next message goes to the same open session; a retry gets the first ack.
    let second = server
        .post_as(
            "acme",
            &json!({"team": "support", "channel": "webchat", "user": "alice", "text": "again"}),
        )
        .ok();
    assert_eq!(second["session"], session.as_str());
    assert!(second["seq"].as_u64().unwrap() > 2, "{second}");
    let retry = server
        .post_as(
            "acme",
            &json!({"team": "support", "channel": "webchat", "user": "alice", "text": "hello",
                    "message_id": "m-1"}),
        )
        .ok();
    assert_eq!(retry, first);

    // acme's own `shared-1` is acme's, whatever bigcorp holds under the same id.
    let shared = server.post_as(
        "acme",
        &json!({"channel": "webchat", "team": "support", "session": "shared-1", "user": "bob",
                "text": "hi"}),
    );
    assert_no_bigcorp(&shared);
    assert_eq!(shared.ok()["session"], "shared-1");

    // The state projection, found without naming the team.
    let state = server.get_as("acme", &format!("/api/v1/sessions/{session}"));
    assert_no_bigcorp(&state);
    let state = state.ok();
    assert_eq!(
        state["state_key"],
        format!("state:acme:prod:support:{session}")
    );
    assert_eq!(state["status"], "open");
    assert_eq!(state["messages_in"], 2);
    assert_eq!(state["user"], "alice");
    let shared = server.get_as("acme", "/api/v1/sessions/shared-1").ok();
    assert_eq!(shared["user"], "bob");
    assert_eq!(shared["tenant"], "acme");

    // Events in seq order, chained by hash.
    let events = server
        .get_as("acme", &format!("/api/v1/sessions/{session}/events"))
        .ok();
    let events = events["events"].as_array().unwrap().clone();
    assert_eq!(events.len() as u64, state["last_seq"].as_u64().unwrap());
    assert_eq!(events[0]["kind"], "SessionStarted");
    assert_eq!(events[1]["kind"], "MessageReceived");
    assert_eq!(events[1]["data"]["text"], "hello");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["seq"], i as u64 + 1);
        for field in ["hash", "prev_hash"] {
            let hex = event[field].as_str().unwrap();
            assert_eq!(hex.len(), 64, "{event}");
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{event}");
        }
        assert!(event["id"].as_str().is_some() && event["at"].as_u64().is_some());
    }
    for pair in events.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a["tenant_seq"].as_u64() < b["tenant_seq"].as_u64());
        if b["tenant_seq"].as_u64().unwrap() == a["tenant_seq"].as_u64().unwrap() + 1 {
            assert_eq!(b["prev_hash"], a["hash"]);
        }
    }
    let window = server
        .get_as(
            "acme",
            &format!("/api/v1/sessions/{session}/events?from_seq=2&to_seq=3"),
        )
        .ok();
    let seqs: Vec<u64> = window["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3]);
    let code = server
        .get_as(
            "acme",
            &format!("/api/v1/sessions/{session}/events?from_seq=x"),
        )
        .error(400);
    assert_eq!(code, "invalid_parameter");

    // The session list: acme's only, all teams or one, paged.
    let list = server.get_as("acme", "/api/v1/sessions");
    assert_no_bigcorp(&list);
    let list = list.ok();
    let ids: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    assert!(ids.contains(&session.as_str()) && ids.contains(&"shared-1"));
    let page = server.get_as("acme", "/api/v1/sessions?limit=1").ok();
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
    let after = page["next_after"].as_str().unwrap().to_owned();
    let rest = server
        .get_as("acme", &format!("/api/v1/sessions?limit=1&after={after}"))
        .ok();
    assert_eq!(rest["sessions"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_after").is_none(), "{rest}");
    let bearer = format!("Bearer {}", token("acme"));
    let sales = server
        .get(
            "/api/v1/sessions",
            &[
                ("Authorization", &bearer),
                ("X-Tenant-ID", "acme"),
                ("X-Team-ID", "sales"),
            ],
        )
        .ok();
    assert_eq!(sales["sessions"], json!([]));
    server.get_as("acme", "/api/v1/sessions?limit=0").error(400);

    // One session id in two teams: ambiguous without X-Team-ID, found with it.
    for team in ["support", "sales"] {
        let body = json!({"team": team, "channel": "webchat", "session": "twice-1",
                          "user": team, "text": "hi"});
        server.post_as("acme", &body).ok();
    }
    let reply = server.get_as("acme", "/api/v1/sessions/twice-1");
    assert_eq!(reply.error(409), "ambiguous_session");
    let bearer = format!("Bearer {}", token("acme"));
    let in_sales = [
        ("Authorization", bearer.as_str()),
        ("X-Tenant-ID", "acme"),
        ("X-Team-ID", "sales"),
    ];
    let state = server.get("/api/v1/sessions/twice-1", &in_sales).ok();
    assert_eq!(state["user"], "sales");
    assert_eq!(state["state_key"], "state:acme:prod:sales:twice-1");

    // Bad input names the field; unknown things are 400 on POST.
    let cases = [
        (
            json!({"channel": "web chat", "user": "a", "text": "t"}),
            "invalid_channel",
        ),
        (
            json!({"channel": "webchat", "user": "a", "text": "t", "team": "Support"}),
            "invalid_team",
        ),
        (
            json!({"channel": "webchat", "user": "a", "text": "t", "session": "../x"}),
            "invalid_session",
        ),
        (
            json!({"channel": "telegram", "team": "support", "user": "a", "text": "t"}),
            "unknown_channel",
        ),
        (
            json!({"channel": "webchat", "team": "nope", "user": "a", "text": "t"}),
            "unknown_team",
        ),
        (json!({"user": "a", "text": "t"}), "invalid_json"),
        (
            json!({"channel": "webchat", "team": "support", "user": "", "text": "t"}),
            "invalid_message",
        ),
    ];
    for (body, expected) in cases {
        let reply = server.post_as("acme", &body);
        assert_eq!(reply.error(400), expected, "{body}");
    }
    let bearer = format!("Bearer {}", token("acme"));
    let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];
    assert_eq!(
        server
            .post("/api/v1/messages", &headers, "{not json")
            .error(400),
        "invalid_json"
    );
    assert_eq!(server.get("/api/v1/nope", &headers).error(404), "not_found");
    assert_eq!(
        server.get("/api/v1/messages", &headers).error(405),
        "method_not_allowed"
    );

    // Metrics: tenant-labelled counters after that traffic.
    let metrics = server.get_metrics();
    assert_eq!(metrics.status, 200);
    let text = &metrics.body;
    for line in [
        r#"tenantry_messages_total{tenant="acme",env="prod"} 5"#,
        r#"tenantry_messages_total{tenant="bigcorp",env="prod"} 2"#,
        r#"tenantry_replies_total{tenant="acme",env="prod"} 5"#,
        r#"tenantry_errors_total{tenant="acme",code="invalid_channel"} 1"#,
        r#"tenantry_ack_latency_seconds_count{tenant="acme"} 5"#,
        "tenantry_log_append_seconds_count 8\n", // 7 messages and the retry
        "tenantry_log_sled_writes_total ",
        "tenantry_active_sessions ",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    stop(server);
}

/// Every route under every kind of bad credential: the right status, the error shape, and
/// nothing of bigcorp's in the body.
#[test]
fn authz_matrix() {
    authz_matrix_on(&start(""));
}

/// The same matrix on a cluster node whose log is a JetStream stream: isolation does not depend
/// on the backend.
#[test]
fn authz_matrix_on_jetstream() {
    let js = crate::support::JetStream::single();
    let jetstream = format!(
        "{}[nats]\nurl = \"{}\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n",
        config(""),
        js.url(0)
    );
    authz_matrix_on(&Serve::config(&jetstream).start());
}

fn authz_matrix_on(server: &ServeProcess) {
    seed_bigcorp(server);
    let acme = server
        .post_as(
            "acme",
            &json!({"team": "support", "channel": "webchat", "session": "shared-1",
                    "user": "alice", "text": "hi"}),
        )
        .ok();
    assert_eq!(acme["session"], "shared-1");

    let none_token = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("acme").to_string().as_bytes())
    );
    let mut string_exp = claims("acme");
    string_exp["exp"] = json!((now() + 300).to_string());
    let support_token = sign(&with(claims("acme"), "team", json!("support")));

    // (what, headers, expected status, expected code)
    let mut cases: Vec<Case> = Vec::new();
    let with_tenant = |mut h: Vec<(String, String)>| {
        h.push(("X-Tenant-ID".into(), "acme".into()));
        h
    };
    cases.push(("no token", with_tenant(vec![]), 401, "missing_token"));
    let bad_tokens = [
        ("garbage token", "garbage".to_owned()),
        ("alg none", none_token),
        (
            "HS256 with a wrong key",
            sign_with(&claims("acme"), Algorithm::HS256, "wrong-key"),
        ),
        ("HS512", sign_with(&claims("acme"), Algorithm::HS512, KEY)),
        (
            "expired",
            sign(&with(claims("acme"), "exp", json!(now() - 120))),
        ),
        (
            "nbf in the future",
            sign(&with(claims("acme"), "nbf", json!(now() + 120))),
        ),
        (
            "wrong iss",
            sign(&with(claims("acme"), "iss", json!("other"))),
        ),
        (
            "wrong aud",
            sign(&with(claims("acme"), "aud", json!("other"))),
        ),
        ("exp as a string", sign(&string_exp)),
        (
            "exp centuries ahead",
            sign(&with(
                claims("acme"),
                "exp",
                json!(now() + 300 * 365 * 86_400),
            )),
        ),
        (
            "iat in the future",
            sign(&with(claims("acme"), "iat", json!(now() + 3600))),
        ),
        ("a crit header", {
            let mut header = Header::new(Algorithm::HS256);
            header.crit = Some(vec!["exp".to_owned()]);
            jsonwebtoken::encode(
                &header,
                &claims("acme"),
                &EncodingKey::from_secret(KEY.as_bytes()),
            )
            .unwrap()
        }),
        (
            "tenant claim not an id",
            sign(&with(claims("acme"), "tenant", json!("ACME"))),
        ),
    ];
    for (what, t) in &bad_tokens {
        cases.push((what, with_tenant(auth_headers(t)), 401, "invalid_token"));
    }
    let mut basic = with_tenant(vec![]);
    basic.push(("Authorization".into(), "Basic YWNtZTp4".into()));
    cases.push(("basic auth", basic, 401, "invalid_token"));
    cases.push((
        "missing X-Tenant-ID",
        auth_headers(&token("acme")),
        400,
        "missing_tenant_header",
    ));
    let mut mismatch = auth_headers(&token("acme"));
    mismatch.push(("X-Tenant-ID".into(), "bigcorp".into()));
    cases.push(("X-Tenant-ID != claim", mismatch, 403, "tenant_mismatch"));
    let mut mismatch = auth_headers(&token("acme"));
    mismatch.push(("X-Tenant-ID".into(), "ACME".into()));
    cases.push(("X-Tenant-ID not an id", mismatch, 403, "tenant_mismatch"));
    let mut mismatch = auth_headers(&token("bigcorp"));
    mismatch.push(("X-Tenant-ID".into(), "acme".into()));
    cases.push((
        "bigcorp token, acme header",
        mismatch,
        403,
        "tenant_mismatch",
    ));
    let mut duplicated = auth_headers(&token("acme"));
    duplicated.push(("X-Tenant-ID".into(), "acme".into()));
    duplicated.push(("X-Tenant-ID".into(), "acme".into()));
    cases.push((
        "duplicated X-Tenant-ID",
        duplicated,
        400,
        "ambiguous_header",
    ));
    let mut duplicated = auth_headers(&token("acme"));
    duplicated.push(("X-Tenant-ID".into(), "acme".into()));
    duplicated.push(("X-Tenant-ID".into(), "bigcorp".into()));
    cases.push((
        "two different X-Tenant-IDs",
        duplicated,
        400,
        "ambiguous_header",
    ));
    let mut team = with_tenant(auth_headers(&support_token));
    team.push(("X-Team-ID".into(), "sales".into()));
    cases.push(("X-Team-ID != team claim", team, 403, "team_mismatch"));

    let message = json!({"team": "support", "channel": "webchat", "session": "shared-1",
                         "user": "mallory", "text": "hi"})
    .to_string();
    let routes = [
        ("POST", "/api/v1/messages"),
        ("GET", "/api/v1/sessions"),
        ("GET", "/api/v1/sessions/shared-1"),
        ("GET", "/api/v1/sessions/shared-1/events"),
        ("GET", "/api/v1/sessions/theirs-only-1"),
        ("GET", "/api/v1/usage"),
        ("GET", "/api/v1/audit/export"),
        ("GET", "/api/v1/connectors"),
        ("POST", "/api/v1/connectors"),
        ("POST", "/api/v1/connectors/slack-1/heartbeat"),
        ("DELETE", "/api/v1/sessions/shared-1"),
        ("DELETE", "/api/v1/sessions/theirs-only-1"),
        ("GET", "/api/v1/connectors/slack-1/outbox"),
        ("POST", "/api/v1/connectors/slack-1/outbox/ack"),
    ];
    for (method, path) in routes {
        for (what, headers, status, code) in &cases {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let reply = match method {
                "POST" => server.post(path, &headers, &message),
                "DELETE" => crate::support::read(
                    headers
                        .iter()
                        .fold(server.agent().delete(&server.url(path)), |r, (k, v)| {
                            r.header(*k, *v)
                        })
                        .call(),
                ),
                _ => server.get(path, &headers),
            };
            assert_no_bigcorp(&reply);
            assert_eq!(
                (reply.status, reply.error(*status).as_str()),
                (*status, *code),
                "{method} {path}, {what}: {}",
                reply.body
            );
        }
    }

    // Valid acme credentials never reach bigcorp's sessions: 404 as if they did not exist.
    for path in [
        "/api/v1/sessions/theirs-only-1",
        "/api/v1/sessions/theirs-only-1/events",
    ] {
        let reply = server.get_as("acme", path);
        assert_no_bigcorp(&reply);
        assert_eq!(reply.error(404), "session_not_found");
    }
    // The shared id shows acme's session, and its events are acme's.
    for path in [
        "/api/v1/sessions/shared-1",
        "/api/v1/sessions/shared-1/events",
    ] {
        let reply = server.get_as("acme", path);
        assert_no_bigcorp(&reply);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // A team-bound token sees only its team: acme's shared-1 is in support, not sales.
    let sales_token = sign(&with(claims("acme"), "team", json!("sales")));
    let bearer = format!("Bearer {sales_token}");
    let sales = [("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];
    assert_eq!(
        server.get("/api/v1/sessions/shared-1", &sales).error(404),
        "session_not_found"
    );
    let list = server.get("/api/v1/sessions", &sales).ok();
    assert_eq!(list["sessions"], json!([]));
    // A body team that disagrees with the token's team: 403.
    let reply = server.post("/api/v1/messages", &sales, &message);
    assert_eq!(reply.error(403), "team_mismatch");
    // An X-Team-ID naming a team the tenant does not have: 404 on reads.
    let bearer = format!("Bearer {}", token("acme"));
    let unknown = [
        ("Authorization", bearer.as_str()),
        ("X-Tenant-ID", "acme"),
        ("X-Team-ID", "nope"),
    ];
    assert_eq!(
        server.get("/api/v1/sessions", &unknown).error(404),
        "unknown_team"
    );
    // A token for a tenant this instance does not serve.
    let stranger = sign(&claims("zeta"));
    let bearer = format!("Bearer {stranger}");
    let reply = server.get(
        "/api/v1/sessions",
        &[("Authorization", &bearer), ("X-Tenant-ID", "zeta")],
    );
    assert_eq!(reply.error(404), "unknown_tenant");

    // Rejections are counted under the tenant only once its token was valid.
    let metrics = server.get_metrics().body;
    for line in [
        r#"tenantry_rejected_requests_total{tenant="unknown",status="401"}"#,
        r#"tenantry_rejected_requests_total{tenant="acme",status="403"}"#,
        r#"tenantry_rejected_requests_total{tenant="acme",status="400"}"#,
        r#"tenantry_errors_total{tenant="unknown",code="invalid_token"}"#,
    ] {
        assert!(metrics.contains(line), "{line:?} not in\n{metrics}");
    }
    assert!(!metrics.contains("zeta"), "{metrics}");
}

/// A reader that yields `len` bytes of a JSON string body, so ureq sends it chunked (no
/// Content-Length).
struct Chunked {
    body: Vec<u8>,
    at: usize,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.body.len() - self.at).min(4096);
        buf[..n].copy_from_slice(&self.body[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[test]
fn oversized_bodies_are_refused_with_and_without_content_length() {
    let server = start("");
    let bearer = format!("Bearer {}", token("acme"));
    let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];
    let big = json!({"team": "support", "channel": "webchat", "user": "a",
                     "text": "x".repeat(100 * 1024)})
    .to_string();

    let reply = server.post("/api/v1/messages", &headers, &big);
    assert_eq!(reply.error(413), "payload_too_large");

    let mut reader = Chunked {
        body: big.into_bytes(),
        at: 0,
    };
    let mut request = server
        .agent()
        .post(server.url("/api/v1/messages"))
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let reply = read(request.send(ureq::SendBody::from_reader(&mut reader)));
    assert_eq!(reply.error(413), "payload_too_large");

    // Under the limit, a chunked body is read and handled.
    let small = json!({"team": "support", "channel": "webchat", "user": "a", "text": "hi"});
    let mut reader = Chunked {
        body: small.to_string().into_bytes(),
        at: 0,
    };
    let mut request = server.agent().post(server.url("/api/v1/messages"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let reply = read(request.send(ureq::SendBody::from_reader(&mut reader)));
    assert_eq!(reply.status, 200, "{}", reply.body);

    let metrics = server.get_metrics().body;
    let line = r#"tenantry_rejected_requests_total{tenant="acme",status="413"} 2"#;
    assert!(metrics.contains(line), "{line:?} not in\n{metrics}");
}

#[test]
fn a_tenant_over_quota_gets_429_while_another_is_served() {
    // acme: 5 requests per second; bigcorp keeps the default (1000/s).
    let server = start("rate_limit_per_s = 5");
    let (mut acme_ok, mut acme_429) = (0, 0);
    for _ in 0..50 {
        let reply = server.get_as("acme", "/api/v1/sessions");
        match reply.status {
            200 => acme_ok += 1,
            429 => {
                acme_429 += 1;
                assert_eq!(reply.error(429), "quota_exceeded");
                let retry: u64 = reply.retry_after.as_deref().unwrap().parse().unwrap();
                assert!(retry >= 1, "{reply:?}");
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
        let reply = server.get_as("bigcorp", "/api/v1/sessions");
        assert_eq!(reply.status, 200, "bigcorp refused: {}", reply.body);
    }
    assert!(acme_ok >= 5, "acme got {acme_ok} through");
    assert!(acme_429 >= 25, "acme got only {acme_429} refusals");

    let metrics = server.get_metrics().body;
    let line = r#"tenantry_rejected_requests_total{tenant="acme",status="429"}"#;
    assert!(metrics.contains(line), "{line:?} not in\n{metrics}");
    assert!(
        !metrics.contains(r#"tenant="bigcorp",status="429""#),
        "{metrics}"
    );
}

#[test]
fn usage_and_audit_export_are_the_callers_tenant_only() {
    let server = start("");
    seed_bigcorp(&server);
    for text in ["one", "two"] {
        server
            .post_as(
                "acme",
                &json!({"team": "support", "channel": "webchat", "user": "alice", "text": text}),
            )
            .ok();
    }
    let usage = server.get_as("acme", "/api/v1/usage?by=channel");
    assert_no_bigcorp(&usage);
    let usage = usage.ok();
    let rows = usage["usage"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{usage}");
    assert_eq!(rows[0]["channel"], "webchat");
    assert_eq!(rows[0]["messages_in"], 2);
    assert_eq!(rows[0]["bytes_in"], 6);
    assert_eq!(
        server.get_as("acme", "/api/v1/usage?by=week").error(400),
        "invalid_parameter"
    );

    // The export streams acme's events and a manifest, and verifies with the CLI.
    let export = server.get_as("acme", "/api/v1/audit/export?format=jsonl");
    assert_eq!(export.status, 200);
    assert_no_bigcorp(&export);
    let lines: Vec<Value> = export
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let manifest = lines.last().unwrap();
    assert_eq!(manifest["type"], "manifest", "{manifest}");
    assert_eq!(manifest["tenant"], "acme");
    assert_eq!(
        manifest["count"].as_u64().unwrap() as usize,
        lines.len() - 1
    );
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l["tenant"] == "acme"));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &export.body).unwrap();
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("verify")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let csv = server.get_as("acme", "/api/v1/audit/export?format=csv");
    assert_eq!(csv.status, 200);
    assert!(
        csv.body.starts_with("type,tenant,"),
        "{}",
        &csv.body[..80.min(csv.body.len())]
    );
    assert_no_bigcorp(&csv);
}

#[test]
fn metrics_are_served_on_their_own_listener_only() {
    let server = start("");
    server.post_as(
        "acme",
        &json!({"team": "support", "channel": "webchat", "user": "u", "text": "hi"}),
    );
    // The API port knows no /metrics: tenant ids are not listed to whoever reaches the API.
    let on_api = server.get("/metrics", &[]);
    assert_eq!(on_api.error(404), "not_found");
    assert!(!on_api.body.contains("acme"), "{}", on_api.body);
    // The metrics listener serves them, and nothing of the API.
    let metrics = server.get_metrics();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains(r#"tenantry_messages_total{tenant="acme",env="prod"} 1"#),
        "{}",
        metrics.body
    );
    let api_on_metrics = read(
        server
            .agent()
            .get(format!("{}/healthz", server.metrics_base()))
            .call(),
    );
    assert_eq!(api_on_metrics.status, 404);
    assert_ne!(server.base(), server.metrics_base());
    stop(server);
}
