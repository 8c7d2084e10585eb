//! The built-in webhook connector against the real server and an outside receiver
//! (`support/webhook_receiver.py`, which checks every signature with Python's hmac module):
//! signed deliveries with the team's `webhook_secret` (before the tenant's), retries through a
//! receiver that fails the first attempts, undelivered replies delivered after a restart, and
//! replies dead-lettered after `outbox_ttl` while the receiver is down.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{claims, dir_with_flows, free_port, sign, Serve, ServeProcess};

fn config(port: u16, ttl: &str) -> String {
    format!(
        r#"[server]
data_dir = "./data"
[auth]
issuer = "tenantry"
audience = "tenantry-api"
[connectors]
heartbeat_interval = "1s"
outbox_ttl = "{ttl}"
[tenants.acme]
name = "ACME"
environments = ["prod"]
[tenants.acme.teams.support]
flow = "flows/acme_support.yaml"
[tenants.acme.teams.support.channels.hook]
provider = "webhook"
config = {{ url = "http://127.0.0.1:{port}/replies" }}
[tenants.acme.teams.support.channels.slack]
provider = "messaging-slack"
"#
    )
}

/// The receiver process; killed when dropped.
struct Receiver(Child);

impl Receiver {
    fn start(port: u16, log: &Path, secret: &str, fail_first: u32) -> Receiver {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/webhook_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(log)
            .arg(secret)
            .arg(fail_first.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "listening");
        Receiver(child)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The receiver's log lines so far.
fn received(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits until `check` holds on the receiver's log (at most 20 s); returns the log.
#[track_caller]
fn wait_for(log: &Path, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let lines = received(log);
        if check(&lines) {
            return lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_secret(config: &Path, ns: &[&str], value: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("--config")
        .arg(config)
        .args(["secrets", "set"])
        .args(ns)
        .arg("webhook_secret")
        .env_remove("TENANTRY_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Posts a message on `channel`; the replies' texts.
fn message(server: &ServeProcess, channel: &str, id: &str) -> Vec<String> {
    let bearer = format!("Bearer {}", sign(&claims("acme")));
    let body = json!({"team": "support", "channel": channel, "user": "ada", "text": "hi",
                      "message_id": id});
    let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", "acme")];
    let ack = server
        .post("/api/v1/messages", &headers, &body.to_string())
        .ok();
    ack["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

fn ok_texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["status"] == 200)
        .map(|l| l["body"]["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The webhook events of acme's export, as (kind, data).
fn outbox_events(server: &ServeProcess) -> Vec<(String, Value)> {
    let mut c = claims("acme");
    c["scope"] = json!("audit");
    let bearer = format!("Bearer {}", sign(&c));
    let export = server.get(
        "/api/v1/audit/export?format=jsonl",
        &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
    );
    assert_eq!(export.status, 200, "{}", export.body);
    export
        .body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"].as_str().is_some_and(|k| k.starts_with("Outbox")))
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["data"].clone()))
        .collect()
}

/// Waits until the worker registered the webhook channel's internal connector: replies from
/// before it are not the channel's to deliver.
fn wait_registered(server: &ServeProcess) {
    let mut c = claims("acme");
    c["scope"] = json!("connectors");
    let bearer = format!("Bearer {}", sign(&c));
    let start = Instant::now();
    loop {
        let list = server.get(
            "/api/v1/connectors",
            &[("Authorization", &bearer), ("X-Tenant-ID", "acme")],
        );
        let listed =
            list.ok()["connectors"].as_array().unwrap().iter().any(|c| {
                c["provider"] == "webhook" && c["channel"] == "hook" && c["state"] == "live"
            });
        if listed {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "not registered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn setup(ttl: &str) -> (tempfile::TempDir, u16, PathBuf) {
    let dir = dir_with_flows();
    let port = free_port();
    let config_path = Serve::config(&config(port, ttl))
        .in_dir(dir.path())
        .write_config();
    // The team's secret is found first; the tenant's would not verify.
    set_secret(
        &config_path,
        &["--tenant", "acme"],
        "tenant-secret-not-used",
    );
    set_secret(
        &config_path,
        &["--tenant", "acme", "--team", "support"],
        "team-secret",
    );
    (dir, port, config_path)
}

#[test]
fn replies_are_posted_signed_retried_and_delivered_after_a_restart() {
    let (dir, port, _) = setup("1h");
    let serve = || {
        Serve::config(&config(port, "1h"))
            .in_dir(dir.path())
            .start()
    };
    let log = dir.path().join("received.jsonl");
    let receiver = Receiver::start(port, &log, "team-secret", 2);
    let mut server = serve();
    wait_registered(&server);
    let first = message(&server, "hook", "m1");
    // Another channel's replies are not posted.
    message(&server, "slack", "s1");
    let lines = wait_for(&log, "the first replies delivered", |l| {
        ok_texts(l).len() >= first.len()
    });
    assert_eq!(ok_texts(&lines), first, "{lines:?}");
    // The first two attempts got 500 and were retried; every request was signed right.
    assert_eq!(lines[0]["status"], 500);
    assert_eq!(lines[1]["status"], 500);
    assert!(lines.iter().all(|l| l["signature_ok"] == true), "{lines:?}");
    let body = &lines.last().unwrap()["body"];
    assert_eq!(
        (
            &body["tenant"],
            &body["env"],
            &body["team"],
            &body["channel"]
        ),
        (
            &json!("acme"),
            &json!("prod"),
            &json!("support"),
            &json!("hook")
        )
    );
    assert!(body["tenant_seq"].as_u64().is_some() && body["session"].is_string());
    assert_eq!(lines[2]["body"]["reply_to"], "m1");
    // The receiver logs a request before it answers, so the worker counts the delivery a moment
    // after the line appears.
    let start = std::time::Instant::now();
    let metrics = loop {
        let metrics = server.get_metrics().body;
        if metrics.contains("tenantry_webhook_deliveries_total{")
            || start.elapsed() > Duration::from_secs(10)
        {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metrics.contains("tenantry_webhook_deliveries_total{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tenantry_webhook_failures_total{"),
        "{metrics}"
    );

    // The receiver goes away; a reply stays undelivered across a restart of the server.
    drop(receiver);
    let second = message(&server, "hook", "m2");
    std::thread::sleep(Duration::from_millis(500));
    server.stop();
    std::fs::remove_file(&log).unwrap();
    let _receiver = Receiver::start(port, &log, "team-secret", 0);
    let server = serve();
    let lines = wait_for(&log, "the undelivered replies delivered", |l| {
        ok_texts(l).len() >= second.len()
    });
    assert_eq!(
        ok_texts(&lines),
        second,
        "only the undelivered ones: {lines:?}"
    );
    assert_eq!(lines[0]["body"]["reply_to"], "m2");
    assert!(outbox_events(&server).iter().any(
        |(k, d)| k == "OutboxAcked" && d["connector"].as_str().unwrap().starts_with("webhook-")
    ));
    // Nothing is posted twice once acknowledged.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ok_texts(&received(&log)), second);
}

#[test]
fn replies_the_receiver_never_took_are_dead_lettered_after_the_outbox_ttl() {
    let (dir, port, _) = setup("2s");
    let server = Serve::config(&config(port, "2s"))
        .in_dir(dir.path())
        .start();
    // Replies from before the worker registered the channel are not its to deliver (nor to
    // dead-letter): under load that registration can come after a message sent at once.
    wait_registered(&server);
    // No receiver: every attempt fails.
    let replies = message(&server, "hook", "m1");
    let start = Instant::now();
    let dead = loop {
        let events = outbox_events(&server);
        if let Some((_, d)) = events.iter().find(|(k, _)| k == "OutboxDeadLettered") {
            break d.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{events:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        dead["connector"].as_str().unwrap().starts_with("webhook-"),
        "{dead}"
    );
    assert_eq!(dead["count"], replies.len() as u64);
    // A receiver that comes back gets nothing of them.
    let log = dir.path().join("received.jsonl");
    let _receiver = Receiver::start(port, &log, "team-secret", 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ok_texts(&received(&log)), Vec::<String>::new());
}

/// After a tenant's data is deleted its log starts again at `tenant_seq` 1: the webhook channel
/// is registered again and its new replies are delivered, not skipped as already read.
#[test]
fn a_webhook_channel_delivers_again_after_its_tenant_was_deleted() {
    let (dir, port, config_path) = setup("1h");
    let server = Serve::config(&config(port, "1h"))
        .in_dir(dir.path())
        .start();
    wait_registered(&server);
    let log = dir.path().join("received.jsonl");
    let _receiver = Receiver::start(port, &log, "team-secret", 0);
    // A longer log before the deletion than after it.
    let mut before = Vec::new();
    for i in 0..4 {
        message(&server, "slack", &format!("s{i}"));
        before.extend(message(&server, "hook", &format!("m{i}")));
    }
    wait_for(&log, "delivered before the deletion", |l| {
        ok_texts(l).len() >= before.len()
    });
    let mut c = claims("acme");
    c["scope"] = json!("admin");
    let bearer = format!("Bearer {}", sign(&c));
    let deleted = crate::support::read(
        server
            .agent()
            .delete(&server.url("/api/v1/tenants/acme"))
            .header("Authorization", &bearer)
            .header("X-Tenant-ID", "acme")
            .call(),
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    // The deletion took the secrets and the registration too.
    set_secret(
        &config_path,
        &["--tenant", "acme", "--team", "support"],
        "team-secret",
    );
    std::fs::remove_file(&log).unwrap();
    wait_registered(&server);
    let after = message(&server, "hook", "n1");
    let lines = wait_for(&log, "delivered after the deletion", |l| {
        ok_texts(l).len() >= after.len()
    });
    assert_eq!(ok_texts(&lines), after, "{lines:?}");
}
