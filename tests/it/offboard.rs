//! Offboarding (issue #15 item 2): `DELETE /api/v1/tenants/{tenant}` on a running server and
//! `tenantry tenant delete` offline remove one tenant's events, sessions, idempotency records,
//! read models, snapshots, secrets and metrics series, report what they freed, free nothing
//! the second time, and leave the other tenant's chain, export and usage byte for byte as they
//! were. The admin route is refused to every caller but the tenant's own whole-tenant admin.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

use crate::support::{claims, sign, Reply, Serve, ServeProcess};

/// Text of acme's messages; must vanish with acme.
pub(crate) const CANARY: &str = "acme-offboard-canary";

pub(crate) fn tenantry(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .current_dir(dir)
        .env("TENANTRY_SIGNING_KEY", crate::support::SIGNING_KEY)
        .args(args)
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG")
        .env_remove("TENANTRY_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A refused DELETE: its headers, then the status and code it must get.
type Refusal = (Vec<(&'static str, String)>, u16, &'static str);

/// A bearer token of `tenant` in `env` with these extra claims (`scope`, `team`).
pub(crate) fn bearer(tenant: &str, env: &str, extra: &[(&str, &str)]) -> String {
    let mut c = claims(tenant);
    c["env"] = json!(env);
    for (k, v) in extra {
        c[*k] = json!(v);
    }
    format!("Bearer {}", sign(&c))
}

pub(crate) fn post(server: &ServeProcess, tenant: &str, body: Value) -> Value {
    let auth = bearer(tenant, "prod", &[]);
    server
        .post(
            "/api/v1/messages",
            &[("Authorization", &auth), ("X-Tenant-ID", tenant)],
            &body.to_string(),
        )
        .ok()
}

/// Both tenants' messages, with message ids (idempotency records) and acme's canary.
pub(crate) fn traffic(server: &ServeProcess, round: &str) {
    for (i, user) in ["ada", "bob"].iter().enumerate() {
        post(
            server,
            "acme",
            json!({"team": "support", "channel": "slack", "user": user,
                   "text": format!("{CANARY} {round}"), "message_id": format!("a-{round}-{i}")}),
        );
        post(
            server,
            "bigcorp",
            json!({"team": "helpdesk", "channel": "webchat", "user": user,
                   "text": format!("bigcorp {round}"), "message_id": format!("b-{round}-{i}")}),
        );
    }
}

pub(crate) fn delete(server: &ServeProcess, path: &str, headers: &[(&str, &str)]) -> Reply {
    crate::support::read(
        headers
            .iter()
            .fold(server.agent().delete(&server.url(path)), |r, (k, v)| {
                r.header(*k, *v)
            })
            .call(),
    )
}

/// What a tenant's own whole-tenant caller sees: chain verification, export, usage.
pub(crate) fn views(server: &ServeProcess, tenant: &str) -> (String, String, String) {
    let get = |path: &str| {
        let reply = server.get_as(tenant, path);
        assert_eq!(reply.status, 200, "{tenant} {path}: {}", reply.body);
        reply.body
    };
    (
        get("/api/v1/audit/verify"),
        get("/api/v1/audit/export"),
        get("/api/v1/usage?by=day"),
    )
}

/// The events a verification's result line counts (more than zero).
pub(crate) fn chain_events(verify: &str) -> u64 {
    let last: Value = serde_json::from_str(verify.lines().last().unwrap()).unwrap();
    let events = last["result"]["events"].as_u64().unwrap();
    assert!(events > 0 && last["result"]["ok"] == true, "{verify}");
    events
}

/// An export without the signed heads of its manifest (`,"heads":[…]`).
fn without_heads(export: &str) -> String {
    let Some(start) = export.find(",\"heads\":[") else {
        return export.to_owned();
    };
    let end = export[start..]
        .find(']')
        .map_or(export.len(), |i| start + i + 1);
    format!("{}{}", &export[..start], &export[end..])
}

/// The bytes of every file under `dir`, by path.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn set_secret(dir: &Path, args: &[&str]) {
    let mut all = vec!["secrets", "set"];
    all.extend(args);
    let out = tenantry(dir, &all, b"s3cret-value");
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn secret_names(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["secrets", "list"];
    all.extend(args);
    let out = tenantry(dir, &all, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

/// A server with both tenants' history, snapshots (written at the first server's stop) and
/// secrets, restarted on the same dir; acme also has metrics series in the new process.
fn seeded() -> (tempfile::TempDir, ServeProcess) {
    let mut first = Serve::shipped().start();
    traffic(&first, "one");
    assert!(first.stop().success());
    let dir = first.take_dir();
    set_secret(dir.path(), &["--tenant", "acme", "api_key"]);
    set_secret(
        dir.path(),
        &["--tenant", "acme", "--team", "support", "hook"],
    );
    set_secret(dir.path(), &["--tenant", "bigcorp", "api_key"]);
    // Heads are signed only at a stop here, so a comparison's export cannot gain one meanwhile.
    let server = Serve::shipped()
        .section("audit", "head_sign_interval = \"24h\"")
        .in_dir(dir.path())
        .start();
    traffic(&server, "two");
    // An error series for acme too (an unknown channel).
    let auth = bearer("acme", "prod", &[]);
    let bad = server.post(
        "/api/v1/messages",
        &[("Authorization", &auth), ("X-Tenant-ID", "acme")],
        r#"{"team":"support","channel":"nope","user":"ada","text":"x"}"#,
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    (dir, server)
}

#[test]
fn deleting_a_tenant_over_http_frees_its_data_once_and_leaves_the_other_tenant_intact() {
    let (dir, mut server) = seeded();
    let data = dir.path().join("data");
    assert!(data.join("sessions/acme").is_dir() && data.join("sessions/bigcorp").is_dir());
    let bigcorp_before = views(&server, "bigcorp");
    let bigcorp_snapshots = files(&data.join("sessions/bigcorp"));
    let acme_before = views(&server, "acme");
    assert!(acme_before.1.contains(CANARY));
    let metrics = server.get_metrics().body;
    assert!(metrics.contains("tenant=\"acme\""), "{metrics}");

    // The scope matrix: nobody but acme's own whole-tenant admin; nothing changes meanwhile.
    let path = "/api/v1/tenants/acme";
    let refused: Vec<Refusal> = vec![
        (vec![("X-Tenant-ID", "acme".into())], 401, "missing_token"),
        (
            vec![
                ("Authorization", bearer("acme", "prod", &[])),
                ("X-Tenant-ID", "acme".into()),
            ],
            403,
            "scope_required",
        ),
        (
            vec![
                (
                    "Authorization",
                    bearer("acme", "prod", &[("scope", "read messages audit")]),
                ),
                ("X-Tenant-ID", "acme".into()),
            ],
            403,
            "scope_required",
        ),
        (
            vec![
                (
                    "Authorization",
                    bearer("bigcorp", "prod", &[("scope", "admin")]),
                ),
                ("X-Tenant-ID", "bigcorp".into()),
            ],
            403,
            "tenant_mismatch",
        ),
        (
            vec![
                (
                    "Authorization",
                    bearer("bigcorp", "prod", &[("scope", "admin")]),
                ),
                ("X-Tenant-ID", "acme".into()),
            ],
            403,
            "tenant_mismatch",
        ),
        (
            vec![
                (
                    "Authorization",
                    bearer("acme", "prod", &[("scope", "admin"), ("team", "support")]),
                ),
                ("X-Tenant-ID", "acme".into()),
            ],
            403,
            "team_scoped",
        ),
        (
            vec![
                (
                    "Authorization",
                    bearer("acme", "prod", &[("scope", "admin")]),
                ),
                ("X-Tenant-ID", "acme".into()),
                ("X-Team-ID", "support".into()),
            ],
            403,
            "team_scoped",
        ),
        (
            vec![
                (
                    "Authorization",
                    bearer("acme", "prod", &[("scope", "admin root")]),
                ),
                ("X-Tenant-ID", "acme".into()),
            ],
            401,
            "invalid_token",
        ),
    ];
    for (headers, status, code) in &refused {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = delete(&server, path, &headers);
        assert_eq!(reply.error(*status), *code, "{headers:?}: {}", reply.body);
        assert!(!reply.body.contains(CANARY) && !reply.body.contains("\"events\""));
        if *code == "invalid_token" {
            assert!(
                reply.body.contains("root"),
                "the unknown word is named: {}",
                reply.body
            );
        }
    }
    assert_eq!(
        views(&server, "acme"),
        acme_before,
        "a refused delete changed acme"
    );

    // acme's admin (a token `tenantry token --scope` minted), from another env: the whole
    // tenant goes.
    let minted = tenantry(
        dir.path(),
        &[
            "token", "--tenant", "acme", "--env", "staging", "--scope", "admin",
        ],
        b"",
    );
    assert!(minted.status.success(), "{}", text(&minted.stderr));
    let admin = format!("Bearer {}", text(&minted.stdout).trim());
    let as_admin = [("Authorization", admin.as_str()), ("X-Tenant-ID", "acme")];
    let freed = delete(&server, path, &as_admin).ok();
    assert_eq!(freed["tenant"], "acme", "{freed}");
    assert_eq!(freed["events"], chain_events(&acme_before.0), "{freed}");
    for (field, at_least) in [
        ("sessions", 2),
        ("idempotency_records", 4),
        ("log_keys", 10),
        ("log_bytes", 1000),
        ("read_model_rows", 3),
        ("snapshot_files", 2),
        ("snapshot_bytes", 100),
        ("secrets", 2),
        ("secret_bytes", 20),
        ("metrics_series", 4),
    ] {
        assert!(
            freed[field].as_u64().unwrap() >= at_least,
            "{field}: {freed}"
        );
    }
    assert!(freed["signed_heads"].as_u64().unwrap() >= 1, "{freed}");
    assert_eq!(freed["resumed"], false);

    // acme's series are gone from /metrics; bigcorp's stay.
    let metrics = server.get_metrics().body;
    assert!(!metrics.contains("tenant=\"acme\""), "{metrics}");
    assert!(metrics.contains("tenant=\"bigcorp\""), "{metrics}");
    // Nothing of acme in what the API, the secrets and the snapshot dir report.
    let (verify, export, usage) = views(&server, "acme");
    for body in [&verify, &export, &usage] {
        assert!(!body.contains(CANARY), "{body}");
    }
    assert!(verify.contains("\"events\":0"), "{verify}");
    assert_eq!(
        server.get_as("acme", "/api/v1/usage").ok()["usage"],
        json!([])
    );
    assert_eq!(
        server.get_as("acme", "/api/v1/sessions").ok()["sessions"],
        json!([])
    );
    assert!(!data.join("sessions/acme").exists());
    assert!(!data.join("secrets/tenants/acme").exists());
    assert_eq!(secret_names(dir.path(), &["--tenant", "acme"]), "");
    assert_eq!(
        secret_names(dir.path(), &["--tenant", "bigcorp"]),
        // data_kek: the tenant's key encryption key of its sealed events; user_mac_key: the
        // key of its users' pseudonyms (the open-session index).
        "api_key\ndata_kek\nuser_mac_key\n"
    );
    for (file, bytes) in files(&data) {
        if !file.contains("/data/log/") {
            assert!(!text(&bytes).contains(CANARY), "{file} holds acme's canary");
        }
    }
    // bigcorp: the same chain head, export bytes, usage and snapshot files.
    assert!(
        views(&server, "bigcorp") == bigcorp_before,
        "bigcorp's views changed"
    );
    assert_eq!(files(&data.join("sessions/bigcorp")), bigcorp_snapshots);

    // Again: nothing freed, no error.
    let again = delete(&server, path, &as_admin).ok();
    for (field, value) in again.as_object().unwrap() {
        if field != "tenant" {
            assert!(value == 0 || value == false, "{field} in {again}");
        }
    }

    // acme is still in the config: served again, empty, its chain from genesis.
    let ack = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": "ada", "text": "fresh",
               "message_id": "a-one-0"}),
    );
    assert!(
        ack["duplicate"] != json!(true),
        "the idempotency record went too: {ack}"
    );
    let (verify, _, _) = views(&server, "acme");
    assert!(verify.contains("\"ok\":true"), "{verify}");
    assert!(
        views(&server, "bigcorp") == bigcorp_before,
        "bigcorp's views changed"
    );
    assert!(server.stop().success());
}

#[test]
fn tenant_delete_offline_refuses_while_served_and_without_yes_then_frees_once() {
    let (dir, mut server) = seeded();
    let held = tenantry(dir.path(), &["tenant", "delete", "acme", "--yes"], b"");
    assert!(!held.status.success());
    let stderr = text(&held.stderr);
    assert!(
        stderr.contains("in use by a running server")
            && stderr.contains("DELETE /api/v1/tenants/acme"),
        "{stderr}"
    );
    let bigcorp_before = views(&server, "bigcorp");
    let acme_events = chain_events(&views(&server, "acme").0);
    assert!(server.stop().success());

    let bad_scope = [
        "token",
        "--tenant",
        "acme",
        "--env",
        "prod",
        "--scope",
        "admin root",
    ];
    let bad_scope = tenantry(dir.path(), &bad_scope, b"");
    assert!(!bad_scope.status.success() && bad_scope.stdout.is_empty());
    assert!(
        text(&bad_scope.stderr).contains("\"root\""),
        "{}",
        text(&bad_scope.stderr)
    );

    let unconfirmed = tenantry(dir.path(), &["tenant", "delete", "acme"], b"acme\n");
    assert!(!unconfirmed.status.success());
    assert!(
        text(&unconfirmed.stderr).contains("--yes"),
        "{}",
        text(&unconfirmed.stderr)
    );

    let args = ["tenant", "delete", "acme", "--yes", "--format", "json"];
    let out = tenantry(dir.path(), &args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let freed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        freed["events"], acme_events,
        "nothing was deleted before: {freed}"
    );
    assert_eq!(
        (freed["secrets"].as_u64(), freed["metrics_series"].as_u64()),
        // api_key, data_kek (the key encryption key of its sealed events), user_mac_key (its
        // users' pseudonyms), teams/support/hook
        (Some(4), Some(0))
    );
    assert!(freed["snapshot_files"].as_u64().unwrap() >= 2, "{freed}");
    assert!(
        text(&out.stderr).contains("still in the config"),
        "{}",
        text(&out.stderr)
    );
    let table = tenantry(dir.path(), &["tenant", "delete", "acme", "--yes"], b"");
    assert!(table.status.success(), "{}", text(&table.stderr));
    assert!(
        text(&table.stdout).contains("events"),
        "{}",
        text(&table.stdout)
    );
    assert!(
        text(&table.stderr).contains("nothing to free"),
        "{}",
        text(&table.stderr)
    );
    let again = tenantry(dir.path(), &args, b"");
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["log_keys"], 0, "{again}");

    let server = Serve::shipped().in_dir(dir.path()).start();
    // The stop signed bigcorp's head once more (its final round): compare without the heads.
    let strip =
        |(verify, export, usage): (String, String, String)| (verify, without_heads(&export), usage);
    assert!(
        strip(views(&server, "bigcorp")) == strip(bigcorp_before),
        "bigcorp changed"
    );
    let (verify, export, _) = views(&server, "acme");
    assert!(
        verify.contains("\"events\":0") && !export.contains(CANARY),
        "{verify}"
    );
}
