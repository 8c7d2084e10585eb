//! The route table, the OpenAPI document and the operator console against the real `tenantry
//! serve` over real HTTP, and the console driven in a real headless Chromium
//! (tests/console/drive.py, playwright-python from `target/console-venv`, Debian's
//! `/usr/bin/chromium`; `scripts/test.sh` installs both). A missing browser or venv fails the
//! test: it is never skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tenantry::edge::http::console::{CONSOLE_CSP, OPENAPI_JSON};
use tenantry::edge::http::ROUTES;

use crate::support::{agent, claims, read, sign, Reply, Serve, ServeProcess};

/// A well-formed session id that no server has.
const ABSENT_SESSION: &str = "0192f3a4-5b6c-7d8e-9f00-112233445566";

/// Sessions the browser test makes in acme/prod: more than the console's page of 50.
const PROD_SESSIONS: usize = 56;

/// The browser the console is tested in (Debian's package `chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";
/// The venv with playwright-python, under the workspace (made by `scripts/test.sh`).
const CONSOLE_VENV: &str = "target/console-venv";

/// `path` (an OpenAPI template) with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", ABSENT_SESSION)
        .replace("{tenant}", "acme")
}

/// `method path` without credentials, redirects not followed.
fn call(server: &ServeProcess, method: &str, path: &str) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = server.url(&concrete(path));
    match method {
        "GET" => read(agent.get(&url).call()),
        "POST" => read(agent.post(&url).send_empty()),
        "DELETE" => read(agent.delete(&url).call()),
        other => panic!("no client for method {other}"),
    }
}

/// The error code of a JSON error body, if it is one.
fn code(reply: &Reply) -> Option<String> {
    let body: Value = serde_json::from_str(&reply.body).ok()?;
    body["error"]["code"].as_str().map(str::to_owned)
}

/// Every (METHOD, path) of the OpenAPI document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn every_listed_route_is_served_and_every_other_documented_one_is_not() {
    let server = Serve::shipped().start();
    // The check itself can fail: an unknown route is told apart.
    let unknown = call(&server, "GET", "/api/v1/no-such-route");
    assert_eq!(
        (unknown.status, code(&unknown).as_deref()),
        (404, Some("not_found"))
    );
    for (method, path) in ROUTES {
        let reply = call(&server, method, path);
        assert_ne!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert!(
            !(reply.status == 404 && code(&reply).as_deref() == Some("not_found")),
            "{method} {path} is in ROUTES but not served: {}",
            reply.body
        );
        let public = !path.starts_with("/api/v1/") || *path == "/api/v1/openapi.json";
        if path.starts_with("/api/v1/webhooks/") {
            // Signed, not token-authenticated: `{env}` and the rest name no webhook channel.
            assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
            assert_eq!(code(&reply).as_deref(), Some("webhook_not_found"));
        } else if public {
            assert!(
                [200, 308].contains(&reply.status),
                "{method} {path}: {}",
                reply.status
            );
        } else {
            // Authenticated before anything else: no token, 401.
            assert_eq!(reply.status, 401, "{method} {path}: {}", reply.body);
            assert_eq!(code(&reply).as_deref(), Some("missing_token"));
        }
    }
    // Documented but not listed: must really be absent (so ROUTES lists every documented route
    // that is registered); these are the contract's routes still to be merged.
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    for (method, path) in documented().difference(&listed) {
        let reply = call(&server, method, path);
        assert!(
            reply.status == 405 || code(&reply).as_deref() == Some("not_found"),
            "{method} {path} is served but not in ROUTES: add it there ({} {})",
            reply.status,
            reply.body
        );
        eprintln!("PENDING route (documented, not registered yet): {method} {path}");
    }
}

#[test]
fn console_and_openapi_are_served_without_auth_with_strict_headers() {
    let server = Serve::shipped().start();
    let redirect = call(&server, "GET", "/console");
    assert_eq!(redirect.status, 308);
    let agent = agent(Duration::from_secs(30));
    let get = |path: &str| agent.get(server.url(path)).call().unwrap();
    let location = agent
        .get(server.url("/console"))
        .config()
        .max_redirects(0)
        .build()
        .call()
        .unwrap();
    assert_eq!(location.headers()["location"], "/console/");
    for (path, content_type, needle) in [
        (
            "/console/",
            "text/html; charset=utf-8",
            "data-testid=\"login-token\"",
        ),
        (
            "/console/app.js",
            "text/javascript; charset=utf-8",
            "use strict",
        ),
        (
            "/console/reports.js",
            "text/javascript; charset=utf-8",
            "function drawChart",
        ),
        (
            "/console/app.css",
            "text/css; charset=utf-8",
            ":focus-visible",
        ),
    ] {
        let mut response = get(path);
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-type"], content_type, "{path}");
        assert_eq!(headers["cache-control"], "no-cache", "{path}");
        assert_eq!(headers["content-security-policy"], CONSOLE_CSP, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let body = response.body_mut().read_to_string().unwrap();
        assert!(body.contains(needle), "{path}");
    }
    let page = get("/console/").body_mut().read_to_string().unwrap();
    assert!(
        page.contains("GET /api/v1/sessions/{id}/events;"),
        "routes in the page"
    );
    assert!(CONSOLE_CSP.starts_with("default-src 'self'") && !CONSOLE_CSP.contains("unsafe"));

    let mut openapi = get("/api/v1/openapi.json");
    assert_eq!(openapi.status(), 200);
    assert_eq!(openapi.headers()["content-type"], "application/json");
    let served = openapi.body_mut().read_to_string().unwrap();
    let in_repo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json"))
            .unwrap();
    assert_eq!(served, in_repo, "the served document is docs/openapi.json");
    // A token does not change what public routes answer; a wrong one is not even looked at.
    let reply = server.get(
        "/api/v1/openapi.json",
        &[
            ("Authorization", "Bearer nonsense"),
            ("X-Tenant-ID", "acme"),
        ],
    );
    assert_eq!(reply.status, 200);
    // Other methods on the console's routes are refused.
    let post = read(agent.post(server.url("/console/")).send_empty());
    assert_eq!(post.error(405), "method_not_allowed");
    let asset = read(agent.get(server.url("/console/other.js")).call());
    assert_eq!(asset.error(404), "not_found");
}

/// A token of acme in `env`.
fn token_in(env: &str) -> String {
    let mut claims = claims("acme");
    claims["env"] = json!(env);
    sign(&claims)
}

/// The console's token of acme/prod: with the `admin` scope, so that its connectors are listed
/// and it may close sessions (a scoped token has only its words' rights; `admin` implies every
/// other word, docs/http.md#scopes).
fn console_token_a() -> String {
    let mut claims = claims("acme");
    claims["env"] = json!("prod");
    claims["scope"] = json!("admin");
    sign(&claims)
}

/// Posts a first message in `env` as `user`; the new session's id.
fn new_session(server: &ServeProcess, env: &str, user: &str) -> String {
    let bearer = format!("Bearer {}", token_in(env));
    let body = json!({"team": "support", "channel": "slack", "user": user, "text": "hello"});
    let reply = server.post(
        "/api/v1/messages",
        &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
        &body.to_string(),
    );
    reply.ok()["session"].as_str().unwrap().to_owned()
}

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn console_in_headless_chromium() {
    let python = root().join(CONSOLE_VENV).join("bin/python");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the console's browser test needs Debian's chromium \
         (scripts/test.sh installs it: apt-get install chromium)"
    );
    assert!(
        python.exists(),
        "{} is missing: scripts/test.sh makes it (python3 -m venv {CONSOLE_VENV} && \
         {CONSOLE_VENV}/bin/pip install playwright==<pinned>)",
        python.display()
    );
    // The shipped config: acme has envs prod and staging.
    let server = Serve::shipped().start();
    let session_a = new_session(&server, "prod", "ada");
    // More than a page of the console's list (50), so that "Load more" is exercised.
    for i in 0..PROD_SESSIONS - 1 {
        new_session(&server, "prod", &format!("user-{i}"));
    }
    let session_b = new_session(&server, "staging", "grace");
    // The prod token sees only prod's sessions (the browser checks the same through the page).
    let listed = server.get_as("acme", "/api/v1/sessions").ok();
    assert_eq!(
        listed["sessions"].as_array().unwrap().len(),
        PROD_SESSIONS,
        "{listed}"
    );

    // A connector of acme/prod, which the prod token (scope connectors) lists with its state.
    let mut admin = claims("acme");
    admin["scope"] = json!("admin");
    let bearer = format!("Bearer {}", sign(&admin));
    let registration = json!({"id": "slack-1", "env": "prod", "team": "support",
                              "channel": "slack", "provider": "messaging-slack"});
    let reply = server.post(
        "/api/v1/connectors",
        &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
        &registration.to_string(),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);

    let artifacts = root().join("target/console-artifacts");
    let output = Command::new(&python)
        .arg(root().join("tests/console/drive.py"))
        .env("CONSOLE_BASE", server.base())
        .env("CONSOLE_TOKEN_A", console_token_a())
        .env("CONSOLE_TOKEN_B", token_in("staging"))
        .env("CONSOLE_SESSION_A", &session_a)
        .env("CONSOLE_SESSION_B", &session_b)
        .env("CONSOLE_PROD_SESSIONS", PROD_SESSIONS.to_string())
        .env("CONSOLE_CHROMIUM", CHROMIUM)
        .env("CONSOLE_ARTIFACTS", &artifacts)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("drive.py stdout:\n{stdout}\ndrive.py stderr:\n{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed ({}); screenshots in {}",
        output.status,
        artifacts.display()
    );
    assert!(stdout.contains("\nOK ("), "{stdout}");
    assert!(artifacts.join("console.png").exists());
}
