//! Scope words over real HTTP (issue #16 item 2, docs/http.md#scopes): a token with a `scope`
//! claim has exactly its words' rights (`admin` all of them), a token without one keeps the
//! rights every token had before scopes (messages, reads, audit, close and reset), and a refusal
//! is 403 `scope_required` naming the word and the route, before anything changes.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{claims, sign, Reply, Serve, ServeProcess, SIGNING_KEY};

/// `Bearer` token of acme/prod with this `scope` claim (none for `None`).
fn bearer(scope: Option<&str>) -> String {
    let mut c = claims("acme");
    if let Some(scope) = scope {
        c["scope"] = json!(scope);
    }
    format!("Bearer {}", sign(&c))
}

/// `tenantry token --scope <scope>` for acme/prod, minted by the CLI with the server's config.
fn minted(server: &ServeProcess, scope: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .current_dir(&server.dir)
        .env("TENANTRY_SIGNING_KEY", SIGNING_KEY)
        .env_remove("TENANTRY_CONFIG")
        .args([
            "token", "--tenant", "acme", "--env", "prod", "--scope", scope,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("Bearer {}", String::from_utf8_lossy(&out.stdout).trim())
}

fn call(server: &ServeProcess, auth: &str, method: &str, path: &str, body: &str) -> Reply {
    let headers = [("Authorization", auth), ("X-Tenant-ID", "acme")];
    match method {
        "GET" => server.get(path, &headers),
        "POST" => server.post(path, &headers, body),
        other => panic!("no helper for {other}"),
    }
}

fn message(text: &str) -> String {
    json!({"team": "support", "channel": "slack", "user": "ada", "text": text}).to_string()
}

/// acme's chain head (`/audit/verify`'s result), asked with an admin token.
fn head(server: &ServeProcess) -> Value {
    let reply = call(
        server,
        &bearer(Some("admin")),
        "GET",
        "/api/v1/audit/verify",
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let last = reply.body.lines().last().unwrap();
    serde_json::from_str::<Value>(last).unwrap()["result"]["head"].clone()
}

/// Asserts a 403 `scope_required` naming `word` and the route.
#[track_caller]
fn refused(reply: &Reply, word: &str, route: &str) {
    assert_eq!(
        reply.error(403),
        "scope_required",
        "{route}: {}",
        reply.body
    );
    assert!(
        reply.body.contains(&format!("the {word} scope")) && reply.body.contains(route),
        "{route}: {}",
        reply.body
    );
}

#[test]
fn a_scoped_token_has_exactly_its_words_rights() {
    let server = Serve::shipped().start();
    let plain = bearer(None);
    let ack = call(&server, &plain, "POST", "/api/v1/messages", &message("hi")).ok();
    let session = ack["session"].as_str().unwrap().to_owned();
    let s = |suffix: &str| format!("/api/v1/sessions/{session}{suffix}");

    // What each word grants: (method, path, body).
    let messages_routes = vec![("POST", "/api/v1/messages".to_owned(), message("again"))];
    let read_routes = vec![
        ("GET", "/api/v1/sessions".to_owned(), String::new()),
        ("GET", s(""), String::new()),
        ("GET", s("/events"), String::new()),
        ("GET", s("/state?at_seq=1"), String::new()),
        ("GET", "/api/v1/usage".to_owned(), String::new()),
    ];
    let audit_routes = vec![
        ("GET", "/api/v1/audit/export".to_owned(), String::new()),
        ("GET", "/api/v1/audit/verify".to_owned(), String::new()),
    ];
    let messages = bearer(Some("messages"));
    let read = minted(&server, "read");
    let audit = bearer(Some("audit"));
    for (token, routes) in [
        (&messages, &messages_routes),
        (&read, &read_routes),
        (&audit, &audit_routes),
        // A token without `scope` keeps all three (existing clients).
        (&plain, &messages_routes),
        (&plain, &read_routes),
        (&plain, &audit_routes),
    ] {
        for (method, path, body) in routes {
            let reply = call(&server, token, method, path, body);
            assert_eq!(reply.status, 200, "{method} {path}: {}", reply.body);
        }
    }

    // One route of every other word, per word.
    let close = s("/close");
    let cases: [(&str, &str, &str, &str, &str); 9] = [
        (
            &messages,
            "GET",
            "/api/v1/usage",
            "read",
            "GET /api/v1/usage",
        ),
        (
            &messages,
            "GET",
            "/api/v1/audit/export",
            "audit",
            "GET /api/v1/audit/export",
        ),
        (
            &messages,
            "POST",
            &close,
            "admin",
            "POST /api/v1/sessions/{id}/close",
        ),
        (
            &read,
            "POST",
            "/api/v1/messages",
            "messages",
            "POST /api/v1/messages",
        ),
        (
            &read,
            "GET",
            "/api/v1/audit/verify",
            "audit",
            "GET /api/v1/audit/verify",
        ),
        (
            &read,
            "POST",
            &close,
            "admin",
            "POST /api/v1/sessions/{id}/close",
        ),
        (
            &audit,
            "GET",
            "/api/v1/events/stream",
            "read",
            "GET /api/v1/events/stream",
        ),
        (
            &audit,
            "POST",
            "/api/v1/messages",
            "messages",
            "POST /api/v1/messages",
        ),
        (
            &audit,
            "POST",
            &close,
            "admin",
            "POST /api/v1/sessions/{id}/close",
        ),
    ];
    for (token, method, path, word, route) in cases {
        refused(
            &call(&server, token, method, path, &message("no")),
            word,
            route,
        );
    }

    // A refused post appends nothing: the head is where it was.
    let before = head(&server);
    for token in [&read, &audit] {
        let reply = call(
            &server,
            token,
            "POST",
            "/api/v1/messages",
            &message("refused"),
        );
        refused(&reply, "messages", "POST /api/v1/messages");
    }
    assert_eq!(head(&server), before);
    let sessions = call(&server, &plain, "GET", "/api/v1/sessions", "").ok();
    assert!(!sessions.to_string().contains("refused"), "{sessions}");

    // Operator actions: a token without `scope` keeps close; a scoped one needs `admin`.
    call(&server, &plain, "POST", &close, "").ok();
    let other = call(&server, &plain, "POST", "/api/v1/messages", &message("b")).ok();
    let other = format!(
        "/api/v1/sessions/{}/close",
        other["session"].as_str().unwrap()
    );
    call(&server, &bearer(Some("admin")), "POST", &other, "").ok();
}

/// Scopes never widen a tenant: bigcorp's `read` token (or `admin`) is refused on acme.
#[test]
fn a_scope_word_does_not_cross_tenants() {
    let server = Serve::shipped().start();
    for scope in ["read", "admin"] {
        let mut c = claims("bigcorp");
        c["scope"] = json!(scope);
        let auth = format!("Bearer {}", sign(&c));
        let reply = call(&server, &auth, "GET", "/api/v1/sessions", "");
        assert_eq!(reply.error(403), "tenant_mismatch", "{}", reply.body);
    }
}
