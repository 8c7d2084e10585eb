//! The reporting routes and the request log under abuse, against the real `tenantry serve` over
//! real HTTP: team scope of `/audit/export` and `/usage`, bounded exports (429 past the limits,
//! a stalled export ended after `server.export_write_timeout`), and a bounded log under a flood
//! of refused requests with long paths.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tenantry::edge::http::observe::REFUSED_LOG_LINES_PER_S;
use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::TenantCtx;

const KEY: &str = "it-reports-signing-key-0123456789abcdef";

/// Three tenants; acme has two teams.
fn config(server_extra: &str) -> String {
    let team = |tenant: &str, team: &str, flow: &str| {
        format!(
            "[tenants.{tenant}.teams.{team}]\nflow = \"flows/{flow}\"\n\
             [tenants.{tenant}.teams.{team}.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         data_dir = \"./data\"\n{server_extra}\n\
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

/// A running `tenantry serve`; killed when dropped.
struct Server {
    child: Child,
    addr: String,
    /// The metrics listener's address (`metrics on` line).
    metrics: String,
    lines: mpsc::Receiver<String>,
    agent: ureq::Agent,
    dir: tempfile::TempDir,
}

impl Server {
    /// Writes the config into a fresh dir, lets `seed` write its data dir, then serves it.
    fn start(server_extra: &str, seed: impl FnOnce(&Path)) -> Server {
        let dir = crate::support::dir_with_flows();
        std::fs::write(dir.path().join("config.toml"), config(server_extra)).unwrap();
        seed(&dir.path().join("data"));
        let (child, lines) = crate::support::spawn_with_lines(
            Command::new(env!("CARGO_BIN_EXE_tenantry"))
                .args(["serve", "--config"])
                .arg(dir.path().join("config.toml"))
                .env("RUST_LOG", "info")
                .env("TENANTRY_SIGNING_KEY", KEY)
                .env_remove("TENANTRY_TENANT_ID"),
        );
        let (addr, seen) =
            crate::support::wait_until_serving(&lines, false, Duration::from_secs(20));
        let metrics = crate::support::metrics_addr(&seen);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Server {
            child,
            addr,
            metrics,
            lines,
            agent,
            dir,
        }
    }

    fn get(&self, path: &str, headers: &[(&str, String)]) -> Reply {
        let mut request = self.agent.get(format!("http://{}{path}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut response = request.call().unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response
            .body_mut()
            .with_config()
            .limit(u64::MAX)
            .read_to_string()
            .unwrap();
        Reply {
            status,
            retry_after,
            body,
        }
    }

    /// The metrics page, from the metrics listener.
    fn get_metrics(&self) -> String {
        let mut response = self
            .agent
            .get(format!("http://{}/metrics", self.metrics))
            .call()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.body_mut().read_to_string().unwrap()
    }

    fn post_message(&self, tenant: &str, team: &str, user: &str, text: &str) {
        let body = json!({"team": team, "channel": "webchat", "user": user, "text": text});
        let response = self
            .agent
            .post(format!("http://{}/api/v1/messages", self.addr))
            .header("Authorization", &bearer(tenant, None))
            .header("X-Tenant-ID", tenant)
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: String,
}

impl Reply {
    /// Asserts the status and returns the error code of the JSON body.
    #[track_caller]
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let body: Value = serde_json::from_str(&self.body).unwrap();
        body["error"]["code"].as_str().unwrap().to_owned()
    }

    /// The JSONL lines.
    #[track_caller]
    fn lines(&self) -> Vec<Value> {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// `Bearer <token>` for `tenant` (with a `team` claim when given).
fn bearer(tenant: &str, team: Option<&str>) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({"tenant": tenant, "env": "prod", "iss": "tenantry",
        "aud": "tenantry-api", "sub": "it", "iat": now, "exp": now + 600});
    if let Some(team) = team {
        claims["team"] = json!(team);
    }
    let token = jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    format!("Bearer {token}")
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
    let server = Server::start("", |_| {});
    server.post_message("acme", "support", "alice", "support-one");
    server.post_message("acme", "support", "alice", "support-two");
    server.post_message("acme", "sales", "bob", "SALES-SECRET");
    server.post_message("bigcorp", "support", "carol", "BIGCORP-SECRET");

    // A team named by X-Team-ID or by the token's claim: that team's events only.
    for (claim, header) in [(None, Some("support")), (Some("support"), None)] {
        let export = server.get("/api/v1/audit/export", &as_tenant("acme", claim, header));
        let lines = export.lines();
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
    let csv = server.get(
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
    for path in ["/api/v1/audit/export", "/api/v1/usage?by=team"] {
        let reply = server.get(path, &as_tenant("acme", None, Some("nope")));
        assert_eq!(reply.error(404), "unknown_team", "{path}");
    }

    // Usage by day for one team: that team's counts only.
    let usage = server.get(
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
    let export = server.get(
        "/api/v1/audit/export",
        &as_tenant("acme", None, Some("support")),
    );
    let scoped = server.dir.path().join("support.jsonl");
    std::fs::write(&scoped, &export.body).unwrap();
    let (ok, text) = run_verify(&scoped);
    assert!(ok, "{text}");
    assert!(text.contains("team support"), "{text}");
    // A sales line slipped into it (each line's own hash is intact) is caught.
    let everything = server.get("/api/v1/audit/export", &as_tenant("acme", None, None));
    let all_lines = everything.lines();
    let (_, all_events) = all_lines.split_last().unwrap();
    let manifest = export.lines().pop().unwrap();
    let mut mixed: Vec<String> = all_events.iter().map(Value::to_string).collect();
    mixed.push(manifest.to_string());
    let mixed_file = server.dir.path().join("mixed.jsonl");
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
fn stalled_export(server: &Server, tenant: &str) -> TcpStream {
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
    let server = Server::start(
        "exports_max = 2\nexports_per_tenant_max = 1\nexport_write_timeout = \"3s\"",
        |data| seed_big(data, &["acme", "bigcorp"]),
    );
    let started = Instant::now();
    let mut acme_stalled = stalled_export(&server, "acme");
    let _bigcorp_stalled = stalled_export(&server, "bigcorp");
    std::thread::sleep(Duration::from_millis(300));

    // acme holds its one slot; acme and bigcorp hold the server's two.
    let second = server.get("/api/v1/audit/export", &as_tenant("acme", None, None));
    assert_eq!(second.error(429), "exports_busy");
    assert!(second.body.contains("tenant's limit"), "{}", second.body);
    assert_eq!(second.retry_after.as_deref(), Some("10"));
    let cedar = server.get("/api/v1/audit/export", &as_tenant("cedar", None, None));
    assert_eq!(cedar.error(429), "exports_busy");
    assert!(cedar.body.contains("server's limit"), "{}", cedar.body);
    assert!(cedar.retry_after.is_some());
    // Other reads are served meanwhile.
    let sessions = server.get("/api/v1/sessions?limit=5", &as_tenant("cedar", None, None));
    assert_eq!(sessions.status, 200, "{}", sessions.body);
    assert!(
        started.elapsed() < timeout,
        "too slow to see the slots held"
    );

    // The stalled exports are ended after the write timeout, and their slots come back.
    let whole = loop {
        let reply = server.get("/api/v1/audit/export", &as_tenant("acme", None, None));
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
    let lines = whole.lines();
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
    let metrics = server.get_metrics();
    assert!(
        metrics.contains(r#"tenantry_errors_total{tenant="cedar",code="exports_busy"} 1"#),
        "{metrics}"
    );
}

#[test]
fn refused_requests_with_long_paths_write_a_bounded_log() {
    const REQUESTS: usize = 600;
    const PATH_BYTES: usize = 30_000;
    let server = Server::start("", |_| {});
    while server.lines.try_recv().is_ok() {}
    let started = Instant::now();
    let path = format!("/api/v1/sessions/{}", "p".repeat(PATH_BYTES));
    for _ in 0..REQUESTS {
        // No token: refused before anything is read.
        let reply = server.get(&path, &[]);
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
    let metrics = server.get_metrics();
    let counted =
        format!(r#"tenantry_errors_total{{tenant="unknown",code="missing_token"}} {REQUESTS}"#);
    assert!(metrics.contains(&counted), "{metrics}");
    assert!(
        metrics.contains("tenantry_log_lines_left_out_total"),
        "{metrics}"
    );
}
