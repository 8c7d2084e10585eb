//! The debugging and live routes (`/api/v1` session views, streams, what-if, close) under every
//! kind of wrong scope: the HTTP edge's isolation as clients see it, with the shared tenants and
//! canaries of [`super::http`].

use std::io::Read;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{assert_no_bigcorp, auth_headers, config, seed_bigcorp, start, with};
use crate::support::{claims, sign, token, Reply, Serve, ServeProcess};

/// acme's canaries: the text of its prod support session `shared-1` (the id bigcorp has too),
/// of its prod sales session, and of its staging session. Each caller may see its own only.
const PROD_SUPPORT: &str = "ACME-PROD-SUPPORT-CANARY";
const PROD_SALES: &str = "ACME-PROD-SALES-CANARY";
const STAGING: &str = "ACME-STAGING-CANARY";
/// Most bytes of a response the route matrix reads (a stream never ends by itself).
const MATRIX_BODY_BYTES_MAX: usize = 64 * 1024;
/// How long the route matrix reads one response; a stream's body is what came by then.
const MATRIX_READ_TIMEOUT: Duration = Duration::from_millis(1500);

/// How a route treats a caller that is not in the session's env or team.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reach {
    /// Looks a session up: another env's or team's is missing (404).
    Session,
    /// The caller's env (and team): answers with what is in it (200).
    Scoped,
    /// The tenant's whole chain: any env may ask, a team may not (403).
    Chain,
}

/// The `/api/v1` routes of the debugging and live views, with the query parameters they take;
/// `text`: a 200 answer shows message texts. `close` comes last: it ends the session.
const MATRIX_ROUTES: &[(&str, &str, Reach, bool)] = &[
    (
        "GET",
        "/api/v1/sessions?q=canary&status=open&since=2020-01-01",
        Reach::Scoped,
        true,
    ),
    ("GET", "/api/v1/sessions/shared-1", Reach::Session, false),
    (
        "GET",
        "/api/v1/sessions/shared-1/events",
        Reach::Session,
        true,
    ),
    (
        "GET",
        "/api/v1/sessions/shared-1/state?at_seq=2",
        Reach::Session,
        false,
    ),
    (
        "POST",
        "/api/v1/sessions/shared-1/what-if",
        Reach::Session,
        true,
    ),
    (
        "POST",
        "/api/v1/sessions/shared-1/reset",
        Reach::Session,
        false,
    ),
    (
        "GET",
        "/api/v1/usage?by=team&since=2020-01-01&until=2099-12-31",
        Reach::Scoped,
        false,
    ),
    ("GET", "/api/v1/audit/export", Reach::Scoped, true),
    ("GET", "/api/v1/audit/verify", Reach::Chain, false),
    ("GET", "/api/v1/events/stream?after=0", Reach::Scoped, true),
    (
        "GET",
        "/api/v1/sessions/shared-1/events/stream",
        Reach::Session,
        true,
    ),
    (
        "POST",
        "/api/v1/sessions/shared-1/close",
        Reach::Session,
        false,
    ),
];

/// One caller of the route matrix: its headers, the answer per [`Reach`] (`""`: 200), the
/// canary it must see where a route shows texts, and those it must never see.
struct MatrixCaller {
    what: &'static str,
    headers: Vec<(String, String)>,
    answer: fn(Reach) -> (u16, &'static str),
    own: Option<&'static str>,
    forbidden: &'static [&'static str],
}

/// `method path` with `headers` (and `body` for a POST), read for at most
/// [`MATRIX_READ_TIMEOUT`] and [`MATRIX_BODY_BYTES_MAX`].
fn call_capped(
    server: &ServeProcess,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &str,
) -> Reply {
    let agent = crate::support::agent(MATRIX_READ_TIMEOUT);
    let response = if method == "POST" {
        let mut request = agent.post(server.url(path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send(body)
    } else {
        let mut request = agent.get(server.url(path));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.call()
    };
    let response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let mut reader = response.into_body().into_reader();
    let mut body = Vec::new();
    let mut chunk = [0u8; 4096];
    // A stream runs until the timeout cuts it: what came until then is the body.
    while body.len() < MATRIX_BODY_BYTES_MAX {
        match reader.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Reply {
        status,
        retry_after: None,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A token of acme with `key` set to `value` (env, team).
fn acme_token_with(key: &str, value: &str) -> String {
    sign(&with(claims("acme"), key, json!(value)))
}

/// The events of `tenant`'s session `shared-1` in its prod support team.
fn shared_events(server: &ServeProcess, tenant: &str) -> Vec<Value> {
    let reply = server
        .get_as(tenant, "/api/v1/sessions/shared-1/events")
        .ok();
    reply["events"].as_array().unwrap().clone()
}

/// Every debugging and live route under every kind of wrong scope (no token, another tenant's
/// token, another env's, another team's by claim and by `X-Team-ID`), then the right one: the
/// documented status, no other tenant's, env's or team's canary in any body (streams: what came
/// within the read timeout), and a write in the wrong scope changes nothing.
#[test]
fn authz_matrix_of_the_debugging_and_live_routes() {
    route_matrix_on(&start(""));
}

/// The same on a JetStream log.
#[test]
fn authz_matrix_of_the_debugging_and_live_routes_on_jetstream() {
    let js = crate::support::JetStream::single();
    let jetstream = format!(
        "{}[nats]\nurl = \"{}\"\n[log]\nbackend = \"jetstream\"\n[cluster]\nnode = \"n1\"\n",
        config(""),
        js.url(0)
    );
    route_matrix_on(&Serve::config(&jetstream).start());
}

fn route_matrix_on(server: &ServeProcess) {
    seed_bigcorp(server);
    let post = |token: &str, body: Value| {
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];
        server
            .post("/api/v1/messages", &headers, &body.to_string())
            .ok();
    };
    let prod = token("acme");
    let staging = acme_token_with("env", "staging");
    for text in ["hello", "again"] {
        post(
            &prod,
            json!({"team": "support", "channel": "webchat", "session": "shared-1",
                   "user": "alice", "text": format!("{PROD_SUPPORT} {text}")}),
        );
    }
    post(
        &prod,
        json!({"team": "sales", "channel": "webchat", "session": "sales-1",
               "user": "bob", "text": format!("{PROD_SALES} quote")}),
    );
    post(
        &staging,
        json!({"team": "support", "channel": "webchat", "session": "staging-1",
               "user": "cy", "text": format!("{STAGING} test")}),
    );
    let flow = std::fs::read_to_string(server.dir.join("flows/acme_support.yaml")).unwrap();
    let ours_before = shared_events(server, "acme");
    let theirs_before = shared_events(server, "bigcorp");

    let headers = |token: Option<&str>, team: Option<&str>| {
        let mut h = vec![("X-Tenant-ID".to_owned(), "acme".to_owned())];
        if let Some(token) = token {
            h.extend(auth_headers(token));
        }
        if let Some(team) = team {
            h.push(("X-Team-ID".to_owned(), team.to_owned()));
        }
        h
    };
    let all_of_acme: &[&str] = &[PROD_SUPPORT, PROD_SALES, STAGING];
    let team_answer: fn(Reach) -> (u16, &'static str) = |reach| match reach {
        Reach::Session => (404, "session_not_found"),
        Reach::Scoped => (200, ""),
        Reach::Chain => (403, "team_scoped"),
    };
    let wrong = vec![
        MatrixCaller {
            what: "no token",
            headers: headers(None, None),
            answer: |_| (401, "missing_token"),
            own: None,
            forbidden: all_of_acme,
        },
        MatrixCaller {
            what: "bigcorp's token, acme's X-Tenant-ID",
            headers: headers(Some(&token("bigcorp")), None),
            answer: |_| (403, "tenant_mismatch"),
            own: None,
            forbidden: all_of_acme,
        },
        MatrixCaller {
            what: "acme's staging token",
            headers: headers(Some(&staging), None),
            answer: |reach| match reach {
                Reach::Session => (404, "session_not_found"),
                Reach::Scoped | Reach::Chain => (200, ""),
            },
            own: Some(STAGING),
            forbidden: &[PROD_SUPPORT, PROD_SALES],
        },
        MatrixCaller {
            what: "acme's sales token",
            headers: headers(Some(&acme_token_with("team", "sales")), None),
            answer: team_answer,
            own: Some(PROD_SALES),
            forbidden: &[PROD_SUPPORT, STAGING],
        },
        MatrixCaller {
            what: "acme's token with X-Team-ID sales",
            headers: headers(Some(&prod), Some("sales")),
            answer: team_answer,
            own: Some(PROD_SALES),
            forbidden: &[PROD_SUPPORT, STAGING],
        },
        MatrixCaller {
            what: "acme's support token with X-Team-ID sales",
            headers: headers(Some(&acme_token_with("team", "support")), Some("sales")),
            answer: |_| (403, "team_mismatch"),
            own: None,
            forbidden: all_of_acme,
        },
        MatrixCaller {
            what: "acme's token with an X-Team-ID acme does not have",
            headers: headers(Some(&prod), Some("nope")),
            answer: |reach| match reach {
                Reach::Session | Reach::Scoped => (404, "unknown_team"),
                Reach::Chain => (403, "team_scoped"),
            },
            own: None,
            forbidden: all_of_acme,
        },
    ];
    let right = MatrixCaller {
        what: "acme's prod token",
        headers: headers(Some(&prod), None),
        answer: |_| (200, ""),
        own: Some(PROD_SUPPORT),
        forbidden: &[STAGING],
    };
    for caller in &wrong {
        run_matrix_caller(server, caller, &flow);
    }
    // Nothing any wrong caller did (close, reset, what-if) changed acme's or bigcorp's session.
    assert_eq!(shared_events(server, "acme"), ours_before);
    assert_eq!(shared_events(server, "bigcorp"), theirs_before);
    let session = server.get_as("acme", "/api/v1/sessions/shared-1").ok();
    assert_eq!(session["status"], "open", "{session}");

    run_matrix_caller(server, &right, &flow);
    // The right caller's close ended acme's session, and only it.
    let ours = shared_events(server, "acme");
    assert_eq!(ours.len(), ours_before.len() + 1);
    assert_eq!(ours[..ours_before.len()], ours_before[..]);
    let last = ours.last().unwrap();
    assert_eq!(last["kind"], "SessionEnded", "{last}");
    assert_eq!(last["data"]["reason"], "closed by operator", "{last}");
    assert_eq!(shared_events(server, "bigcorp"), theirs_before);
}

/// Every route of [`MATRIX_ROUTES`] as `caller`.
fn run_matrix_caller(server: &ServeProcess, caller: &MatrixCaller, flow: &str) {
    for &(method, path, reach, text) in MATRIX_ROUTES {
        let what = format!("{method} {path} as {}", caller.what);
        let reply = call_capped(server, method, path, &caller.headers, flow);
        assert_no_bigcorp(&reply);
        for canary in caller.forbidden {
            assert!(
                !reply.body.contains(canary),
                "{what}: {canary} in {}",
                reply.body
            );
        }
        let (status, code) = (caller.answer)(reach);
        if status == 200 {
            assert_eq!(reply.status, 200, "{what}: {}", reply.body);
            if let (true, Some(own)) = (text, caller.own) {
                assert!(
                    reply.body.contains(own),
                    "{what}: no {own} in {}",
                    reply.body
                );
            }
        } else {
            assert_eq!(reply.error(status), code, "{what}: {}", reply.body);
        }
    }
}
