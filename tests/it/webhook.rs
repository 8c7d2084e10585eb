//! Inbound webhooks (`POST /api/v1/webhooks/{tenant}/{env}/{team}/{channel}`) over real HTTP to
//! the real binary, signed by an outside implementation (python3's `hmac`): a correct signature
//! is accepted; a bad, missing or stale one is 401; a secret of one tenant or team does not sign
//! for another; an unknown or non-webhook path is one and the same 404; the body limit holds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::{dir_with_flows, Reply, Serve, ServeProcess};

const CONFIG: &str = "[server]\ndata_dir = \"data\"\nhttp_body_bytes_max = 4096\n\
     [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
     [tenants.acme]\nenvironments = [\"prod\", \"dev\"]\n\
     [tenants.acme.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
     [tenants.acme.teams.support.channels.hook]\nprovider = \"webhook\"\n\
     [tenants.acme.teams.support.channels.slack]\nprovider = \"messaging-slack\"\n\
     [tenants.acme.teams.sales]\nflow = \"flows/acme_support.yaml\"\n\
     [tenants.acme.teams.sales.channels.hook]\nprovider = \"webhook\"\n\
     [tenants.acmex]\nenvironments = [\"prod\"]\n\
     [tenants.acmex.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
     [tenants.acmex.teams.support.channels.hook]\nprovider = \"webhook\"\n";

/// `tenantry secrets set NS... webhook_secret` with `value` on stdin.
fn set_secret(dir: &Path, ns: &[&str], value: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("--config")
        .arg(dir.join("config.toml"))
        .args(["secrets", "set"])
        .args(ns)
        .arg("webhook_secret")
        .env_remove("TENANTRY_MASTER_KEY")
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{value}\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `sha256=<hex>` of `{timestamp}.{body}` under `secret`, by python3's hmac module.
fn python_sign(secret: &str, timestamp: &str, body: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib, hmac, sys\n\
             key, ts, body = (a.encode() for a in sys.argv[1:4])\n\
             print('sha256=' + hmac.new(key, ts + b'.' + body, hashlib.sha256).hexdigest())",
            secret,
            timestamp,
            body,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Hook {
    server: ServeProcess,
}

impl Hook {
    /// POSTs `body` to the webhook `path` (after `/api/v1/webhooks/`), signed with `secret` at
    /// `at_s` (no signature header when `secret` is `None`).
    fn post(&self, path: &str, secret: Option<&str>, at_s: u64, body: &str) -> Reply {
        let ts = at_s.to_string();
        let signature = secret.map(|s| python_sign(s, &ts, body));
        let mut headers = vec![("X-Tenantry-Timestamp", ts.as_str())];
        if let Some(signature) = &signature {
            headers.push(("X-Tenantry-Signature", signature.as_str()));
        }
        self.server
            .post(&format!("/api/v1/webhooks/{path}"), &headers, body)
    }
}

fn message(user: &str, id: &str) -> String {
    json!({"user": user, "text": "hello from a webhook", "message_id": id}).to_string()
}

fn code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_signed_webhook_is_taken_and_every_other_one_refused() {
    let dir = dir_with_flows();
    std::fs::write(dir.path().join("config.toml"), CONFIG).unwrap();
    set_secret(dir.path(), &["--tenant", "acme"], "acme-secret");
    set_secret(
        dir.path(),
        &["--tenant", "acme", "--team", "sales"],
        "sales-secret",
    );
    set_secret(dir.path(), &["--tenant", "acmex"], "acmex-secret");
    let hook = Hook {
        server: Serve::config(CONFIG).in_dir(dir.path()).start(),
    };
    let now = now_s();

    // Signed with the tenant's secret: taken, answered like POST /messages.
    let body = message("ada", "w-1");
    let reply = hook.post("acme/prod/support/hook", Some("acme-secret"), now, &body);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ack = reply.json();
    assert!(
        ack["session"].is_string() && ack["seq"] == json!(2),
        "{ack}"
    );
    // The same message again (a retry): the first answer, nothing appended twice.
    let again = hook.post("acme/prod/support/hook", Some("acme-secret"), now, &body);
    assert_eq!(again.json()["session"], ack["session"], "{}", again.body);
    assert_eq!(again.json()["seq"], json!(2), "{}", again.body);
    // Another env of the tenant is another path, same tenant secret.
    let reply = hook.post(
        "acme/dev/support/hook",
        Some("acme-secret"),
        now,
        &message("ada", "w-2"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Bad signatures: another tenant's secret, in both directions; a team secret for another
    // team; the tenant's secret where the team has its own; none at all; a bad timestamp.
    let bad = [
        ("acme/prod/support/hook", Some("acmex-secret")),
        ("acmex/prod/support/hook", Some("acme-secret")),
        ("acme/prod/support/hook", Some("sales-secret")),
        ("acme/prod/sales/hook", Some("acme-secret")),
        ("acme/prod/support/hook", None),
    ];
    for (path, secret) in bad {
        let reply = hook.post(path, secret, now, &message("eve", "w-bad"));
        assert_eq!(
            (reply.status, code(&reply)),
            (401, "invalid_signature".to_owned()),
            "{path} {secret:?}: {}",
            reply.body
        );
    }
    let body = message("eve", "w-ts");
    let signature = python_sign("acme-secret", &now.to_string(), &body);
    let no_ts = hook.server.post(
        "/api/v1/webhooks/acme/prod/support/hook",
        &[("X-Tenantry-Signature", signature.as_str())],
        &body,
    );
    assert_eq!(
        (no_ts.status, code(&no_ts)),
        (401, "invalid_signature".to_owned())
    );
    assert!(
        no_ts.body.contains("X-Tenantry-Timestamp"),
        "{}",
        no_ts.body
    );
    // A tampered body under a good signature.
    let tampered = hook.server.post(
        "/api/v1/webhooks/acme/prod/support/hook",
        &[
            ("X-Tenantry-Timestamp", now.to_string().as_str()),
            ("X-Tenantry-Signature", signature.as_str()),
        ],
        &message("eve", "w-other"),
    );
    assert_eq!(
        (tampered.status, code(&tampered)),
        (401, "invalid_signature".to_owned())
    );

    // The right secrets for the other tenant and the team with its own.
    for (path, secret) in [
        ("acmex/prod/support/hook", "acmex-secret"),
        ("acme/prod/sales/hook", "sales-secret"),
    ] {
        let reply = hook.post(path, Some(secret), now, &message("bo", "w-3"));
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }

    // Correctly signed but too old or too far ahead: a replay.
    for at in [now - 400, now + 400] {
        let reply = hook.post(
            "acme/prod/support/hook",
            Some("acme-secret"),
            at,
            &message("ada", "w-4"),
        );
        assert_eq!(
            (reply.status, code(&reply)),
            (401, "stale_timestamp".to_owned()),
            "{}",
            reply.body
        );
    }

    // No webhook there: one answer for all, signed or not.
    let not_found = hook.post(
        "acme/prod/support/slack",
        Some("acme-secret"),
        now,
        &message("ada", "w-5"),
    );
    assert_eq!(
        (not_found.status, code(&not_found)),
        (404, "webhook_not_found".to_owned())
    );
    for path in [
        "nope/prod/support/hook",
        "acme/qa/support/hook",
        "acme/prod/ops/hook",
        "acme/prod/support/nochan",
        "acme/prod/support/a.b",
        "acmex/dev/support/hook",
    ] {
        let reply = hook.post(path, Some("acme-secret"), now, &message("ada", "w-6"));
        assert_eq!(
            (reply.status, &reply.body),
            (404, &not_found.body),
            "{path}"
        );
    }

    // The body limit holds here too.
    let big = json!({"user": "ada", "text": "x".repeat(5_000)}).to_string();
    let reply = hook.post("acme/prod/support/hook", Some("acme-secret"), now, &big);
    assert_eq!(
        (reply.status, code(&reply)),
        (413, "payload_too_large".to_owned())
    );

    // Isolation: acmex's sessions hold only its own webhook message.
    let sessions: Value = hook.server.get_as("acmex", "/api/v1/sessions").ok();
    let listed = sessions.to_string();
    assert!(
        listed.contains("\"bo\"") && !listed.contains("ada") && !listed.contains("eve"),
        "{listed}"
    );
}

#[test]
fn webhooks_are_charged_to_the_tenants_quota_only_once_signed() {
    let config = CONFIG.replace(
        "environments = [\"prod\", \"dev\"]\n",
        "environments = [\"prod\", \"dev\"]\nrate_limit_per_s = 2\n",
    );
    let dir = dir_with_flows();
    std::fs::write(dir.path().join("config.toml"), &config).unwrap();
    set_secret(dir.path(), &["--tenant", "acme"], "acme-secret");
    let hook = Hook {
        server: Serve::config(&config).in_dir(dir.path()).start(),
    };
    let now = now_s();
    let ts = now.to_string();
    // Signed beforehand (python takes a while): the requests then follow each other closely.
    let signed = |secret: &str, id: &str| {
        let body = message("ada", id);
        (python_sign(secret, &ts, &body), body)
    };
    let bad: Vec<_> = (0..10).map(|i| signed("wrong", &format!("b{i}"))).collect();
    let good: Vec<_> = (0..8)
        .map(|i| signed("acme-secret", &format!("q{i}")))
        .collect();
    let send = |(signature, body): &(String, String)| {
        let headers = [
            ("X-Tenantry-Timestamp", ts.as_str()),
            ("X-Tenantry-Signature", signature.as_str()),
        ];
        let reply = hook
            .server
            .post("/api/v1/webhooks/acme/prod/support/hook", &headers, body);
        (reply.status, code(&reply))
    };
    // Badly signed requests, many more than the quota: all 401, none charged...
    for request in &bad {
        assert_eq!(send(request).0, 401);
    }
    // ...so the next signed one is served, and signed ones past the quota are refused like
    // any request of the tenant.
    assert_eq!(send(&good[0]).0, 200);
    let statuses: Vec<(u16, String)> = good[1..].iter().map(send).collect();
    assert!(
        statuses.contains(&(429, "quota_exceeded".to_owned())),
        "{statuses:?}"
    );
}
