//! The reporting routes and the request log under abuse, against the real `tenantry serve` over
//! real HTTP: team scope of `/audit/export` and `/usage`, bounded exports (429 past the limits,
//! a stalled export ended after `server.export_write_timeout`), and a bounded log under a flood
//! of refused requests with long paths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tenantry::edge::http::observe::REFUSED_LOG_LINES_PER_S;
use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::TenantCtx;

use crate::support::{claims, sign, Reply, Serve, ServeProcess};

/// The export route.
const EXPORT: &str = "/api/v1/audit/export";

/// Three tenants; acme has two teams.
fn config() -> String {
    let team = |tenant: &str, team: &str, flow: &str| {
        format!(
            "[tenants.{tenant}.teams.{team}]\nflow = \"flows/{flow}\"\n\
             [tenants.{tenant}.teams.{team}.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        )
    };
    format!(
        "[server]\ndata_dir = \"./data\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [tenants.acme]\nenvironments = [\"prod\"]\n{}{}\
         [tenants.bigcorp]\nenvironments = [\"prod\"]\n{}\
         [tenants.cedar]\nenvironments = [\"prod\"]\n{}",
        team("acme", "support", "acme_support.yaml"),
        team("acme", "sales", "acme_support.yaml"),
        team("bigcorp", "support", "bigcorp_helpdesk.yaml"),
        team("cedar", "support", "acme_support.yaml"),
    )
}

/// Writes the config into a fresh dir, lets `seed` write its data dir, then serves it.
fn start(server_extra: &str, seed: impl FnOnce(&Path) + 'static) -> ServeProcess {
    Serve::config(&config())
        .section("server", server_extra)
        .seed(seed)
        .start()
}

/// GET `path` with `headers` (see [`as_tenant`]).
fn get(server: &ServeProcess, path: &str, headers: &[(&str, String)]) -> Reply {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    server.get(path, &headers)
}

/// The metrics page, from the metrics listener.
fn metrics(server: &ServeProcess) -> String {
    let reply = server.get_metrics();
    assert_eq!(reply.status, 200);
    reply.body
}

fn post_message(server: &ServeProcess, tenant: &str, team: &str, user: &str, text: &str) {
    let body = json!({"team": team, "channel": "webchat", "user": user, "text": text});
    let headers = [
        ("Authorization", bearer(tenant, None)),
        ("X-Tenant-ID", tenant.to_owned()),
    ];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = server.post("/api/v1/messages", &headers, &body.to_string());
    assert_eq!(reply.status, 200);
}

/// The JSONL lines of a 200 reply.
#[track_caller]
fn jsonl(reply: &Reply) -> Vec<Value> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `Bearer <token>` for `tenant` (with a `team` claim when given).
fn bearer(tenant: &str, team: Option<&str>) -> String {
    let mut claims = claims(tenant);
    if let Some(team) = team {
        claims["team"] = json!(team);
    }
    format!("Bearer {}", sign(&claims))
}

/// Headers of a request as `tenant`, with a `team` claim and an `X-Team-ID` when given.
fn as_tenant(
    tenant: &str,
    claim: Option<&str>,
    header: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Authorization", bearer(tenant, claim)),
        ("X-Tenant-ID", tenant.to_owned()),
    ];
    if let Some(team) = header {
        headers.push(("X-Team-ID", team.to_owned()));
    }
    headers
}

fn run_verify(file: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("verify")
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn export_and_usage_hold_only_the_callers_team() {
    let server = start("", |_| {});
    post_message(&server, "acme", "support", "alice", "support-one");
    post_message(&server, "acme", "support", "alice", "support-two");
    post_message(&server, "acme", "sales", "bob", "SALES-SECRET");
    post_message(&server, "bigcorp", "support", "carol", "BIGCORP-SECRET");

    // A team named by X-Team-ID or by the token's claim: that team's events only.
    for (claim, header) in [(None, Some("support")), (Some("support"), None)] {
        let export = get(&server, EXPORT, &as_tenant("acme", claim, header));
        let lines = jsonl(&export);
        let (manifest, events) = lines.split_last().unwrap();
        assert!(!events.is_empty());
        assert!(
            events
                .iter()
                .all(|e| e["team"] == "support" && e["tenant"] == "acme"),
            "{}",
            export.body
        );
        assert!(!export.body.contains("SALES-SECRET") && !export.body.contains("BIGCORP"));
        assert_eq!(manifest["type"], "manifest");
        assert_eq!(manifest["team"], "support", "{manifest}");
        assert_eq!(manifest["contiguous"], false, "{manifest}");
        assert_eq!(manifest["count"].as_u64().unwrap() as usize, events.len());
    }
    let csv = get(
        &server,
        "/api/v1/audit/export?format=csv",
        &as_tenant("acme", None, Some("support")),
    );
    assert_eq!(csv.status, 200, "{}", csv.body);
    let mut rows = csv.body.lines();
    assert!(rows.next().unwrap().starts_with("type,tenant,env,team,"));
    let rows: Vec<&str> = rows.collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.starts_with("event,acme,prod,support,")),
        "{rows:#?}"
    );
    assert!(!csv.body.contains("SALES-SECRET"));

    // An unknown team is 404 on both reports, as on every read.
    for path in [EXPORT, "/api/v1/usage?by=team"] {
        let reply = get(&server, path, &as_tenant("acme", None, Some("nope")));
        assert_eq!(reply.error(404), "unknown_team", "{path}");
    }

    // Usage by day for one team: that team's counts only.
    let usage = get(
        &server,
        "/api/v1/usage?by=day",
        &as_tenant("acme", None, Some("support")),
    );
    assert_eq!(usage.status, 200, "{}", usage.body);
    let usage: Value = serde_json::from_str(&usage.body).unwrap();
    let rows = usage["usage"].as_array().unwrap();
    assert!(!rows.is_empty(), "{usage}");
    assert!(rows
        .iter()
        .all(|r| r["team"] == "support" && r["day"].is_string()));
    let messages: u64 = rows
        .iter()
        .map(|r| r["messages_in"].as_u64().unwrap())
        .sum();
    assert_eq!(messages, 2, "{usage}");

    // The team-scoped export verifies, and says which team it holds.
    let export = get(&server, EXPORT, &as_tenant("acme", None, Some("support")));
    let scoped = server.dir.join("support.jsonl");
    std::fs::write(&scoped, &export.body).unwrap();
    let (ok, text) = run_verify(&scoped);
    assert!(ok, "{text}");
    assert!(text.contains("team support"), "{text}");
    // A sales line slipped into it (each line's own hash is intact) is caught.
    let everything = get(&server, EXPORT, &as_tenant("acme", None, None));
    let all_lines = jsonl(&everything);
    let (_, all_events) = all_lines.split_last().unwrap();
    let manifest = jsonl(&export).pop().unwrap();
    let mut mixed: Vec<String> = all_events.iter().map(Value::to_string).collect();
    mixed.push(manifest.to_string());
    let mixed_file = server.dir.join("mixed.jsonl");
    std::fs::write(&mixed_file, mixed.join("\n") + "\n").unwrap();
    let (ok, text) = run_verify(&mixed_file);
    assert!(!ok, "{text}");
    assert!(
        text.contains("team sales in an export of team support"),
        "{text}"
    );
}

/// Bytes of message text per event of the seeded exports: near the text limit, so that an
/// export is tens of megabytes from a few hundred appends.
const BIG_TEXT_BYTES: usize = 15_000;
/// Messages per seeded append group (the frame limit is 96 KiB).
const BIG_GROUP_MESSAGES: usize = 5;
/// Seeded groups per tenant: about 25 MB of export, far more than loopback socket buffers and
/// the export's channel hold, so a client that reads nothing stalls it.
const BIG_GROUPS: usize = 140;

/// Writes big sessions for `tenants` into the data dir, as the runtime would.
fn seed_big(data: &Path, tenants: &[&str]) {
    let log = EventLog::open(&data.join("log"), &LogOptions::default()).unwrap();
    let text = "x".repeat(BIG_TEXT_BYTES);
    for tenant in tenants {
        let ctx = TenantCtx::new(
            tenant.parse().unwrap(),
            "prod".parse().unwrap(),
            Some("support".parse().unwrap()),
        );
        for n in 0..BIG_GROUPS {
            let mut kinds = vec![EventKind::SessionStarted {
                user: "u".into(),
                flow: "f".into(),
                flow_version: "1".into(),
            }];
            kinds.extend((0..BIG_GROUP_MESSAGES).map(|m| EventKind::MessageReceived {
                message_id: format!("m-{n}-{m}"),
                user: "u".into(),
                text: text.clone(),
            }));
            let group = AppendGroup {
                ctx: ctx.clone(),
                channel: "webchat".parse().unwrap(),
                session: format!("big-{n}").parse().unwrap(),
                expected_seq: 0,
                at_ms: 1_795_428_000_000,
                kinds,
                idempotency: None,
            };
            assert!(matches!(
                log.append_blocking(group),
                Ok(AppendOutcome::Appended(_))
            ));
        }
    }
}

/// Sends an export request on a raw connection and reads nothing.
fn stalled_export(server: &ServeProcess, tenant: &str) -> TcpStream {
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    let request = format!(
        "GET /api/v1/audit/export HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\n\
         X-Tenant-ID: {tenant}\r\n\r\n",
        server.addr,
        bearer(tenant, None)
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
}

#[test]
fn exports_past_the_limits_get_429_and_a_stalled_export_frees_its_slot() {
    let timeout = Duration::from_secs(3);
    let server = start(
        "exports_max = 2\nexports_per_tenant_max = 1\nexport_write_timeout = \"3s\"",
        |data| seed_big(data, &["acme", "bigcorp"]),
    );
    let started = Instant::now();
    let mut acme_stalled = stalled_export(&server, "acme");
    let _bigcorp_stalled = stalled_export(&server, "bigcorp");
    std::thread::sleep(Duration::from_millis(300));

    // acme holds its one slot; acme and bigcorp hold the server's two.
    let second = get(&server, EXPORT, &as_tenant("acme", None, None));
    assert_eq!(second.error(429), "exports_busy");
    assert!(second.body.contains("tenant's limit"), "{}", second.body);
    assert_eq!(second.retry_after.as_deref(), Some("10"));
    let cedar = get(&server, EXPORT, &as_tenant("cedar", None, None));
    assert_eq!(cedar.error(429), "exports_busy");
    assert!(cedar.body.contains("server's limit"), "{}", cedar.body);
    assert!(cedar.retry_after.is_some());
    // Other reads are served meanwhile.
    let sessions = get(
        &server,
        "/api/v1/sessions?limit=5",
        &as_tenant("cedar", None, None),
    );
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    assert!(
        started.elapsed() < timeout,
        "too slow to see the slots held"
    );

    // The stalled exports are ended after the write timeout, and their slots come back.
    let whole = loop {
        let reply = get(&server, EXPORT, &as_tenant("acme", None, None));
        if reply.status == 200 {
            break reply;
        }
        assert_eq!(reply.error(429), "exports_busy");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    let lines = jsonl(&whole);
    assert_eq!(lines.last().unwrap()["type"], "manifest");
    assert_eq!(
        lines.len(),
        BIG_GROUPS * (1 + BIG_GROUP_MESSAGES) + 1,
        "the whole export"
    );
    // The stalled one was cut: what it got ends without a manifest.
    acme_stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut received = Vec::new();
    let _ = acme_stalled.read_to_end(&mut received);
    assert!(received.starts_with(b"HTTP/1.1 200"));
    assert!(received.len() < whole.body.len());
    assert!(!String::from_utf8_lossy(&received).contains("\"type\":\"manifest\""));
    // Exports their clients ended are not warnings (a client could otherwise flood the log).
    let lines: Vec<String> = server.lines.try_iter().collect();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("WARN") && l.contains("audit export")),
        "{lines:#?}"
    );
    let metrics = metrics(&server);
    assert!(
        metrics.contains(r#"tenantry_errors_total{tenant="cedar",code="exports_busy"} 1"#),
        "{metrics}"
    );
}

#[test]
fn refused_requests_with_long_paths_write_a_bounded_log() {
    const REQUESTS: usize = 600;
    const PATH_BYTES: usize = 30_000;
    let server = start("", |_| {});
    while server.lines.try_recv().is_ok() {}
    let started = Instant::now();
    let path = format!("/api/v1/sessions/{}", "p".repeat(PATH_BYTES));
    for _ in 0..REQUESTS {
        // No token: refused before anything is read.
        let reply = get(&server, &path, &[]);
        assert_eq!(reply.error(401), "missing_token");
    }
    std::thread::sleep(Duration::from_millis(500));
    let lines: Vec<String> = server.lines.try_iter().collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    // Unbounded, this is REQUESTS lines of more than PATH_BYTES each (18 MB); bounded, at most
    // the budget's lines per second (plus one second's worth), each under 1 KiB.
    let seconds = started.elapsed().as_secs() as usize + 2;
    let budget = seconds * REFUSED_LOG_LINES_PER_S as usize * 1024;
    assert!(
        bytes < budget,
        "{bytes} bytes of log for {REQUESTS} refusals"
    );
    assert!(
        lines.iter().all(|l| l.len() < 1024),
        "a long line: {lines:?}"
    );
    let failed = lines
        .iter()
        .filter(|l| l.contains("request failed"))
        .count();
    assert!(failed >= 1, "{lines:#?}");
    assert!(failed < REQUESTS, "{failed} lines: not sampled");
    // Every refusal is still counted.
    let metrics = metrics(&server);
    let counted =
        format!(r#"tenantry_errors_total{{tenant="unknown",code="missing_token"}} {REQUESTS}"#);
    assert!(metrics.contains(&counted), "{metrics}");
    assert!(
        metrics.contains("tenantry_log_lines_left_out_total"),
        "{metrics}"
    );
}
