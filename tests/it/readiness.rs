//! `/readyz` and the log's recovery from a full disk, through the real `tenantry serve` whose
//! data dir lives on a small tmpfs that a filler file fills up and then frees.
//!
//! While the disk is full: posts fail, `/readyz` answers 503 naming the log, `/healthz` stays
//! 200, and no reader (session events, export) shows an event whose post failed. Once space is
//! freed the server recovers by itself: `/readyz` is 200 again, the session goes on from its
//! last acknowledged seq, and the failed posts' events never appear.
//!
//! With `[nats]`: killing nats-server makes `/readyz` 503 naming NATS (`/healthz` stays 200),
//! and it is ready again once the client has reconnected to a restarted server. A tenant whose
//! stored log is damaged makes it 503 too, naming the tenant and the position.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{Serve, ServeProcess};

/// A tmpfs on a temp dir, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after a loud message) only when mounting is not permitted here.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                why.contains("permission denied") || why.contains("must be superuser"),
                "mount failed for another reason than permissions: {why}"
            );
            eprintln!(
                "\n\n*** SKIPPED: this test mounts a tmpfs to fill a disk, which is not \
                 permitted here ({why}). Run it as root. ***\n\n"
            );
            return None;
        }
        Some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// GET `path` as tenant acme: status and body.
fn get(server: &ServeProcess, path: &str) -> (u16, String) {
    let reply = server.get_as("acme", path);
    (reply.status, reply.body)
}

/// POST a message as tenant acme: status and body.
fn post(server: &ServeProcess, body: &Value) -> (u16, String) {
    let reply = server.post_as("acme", body);
    (reply.status, reply.body)
}

/// A message text marked `n`, about 8 KiB so that a few dozen fill the disk.
fn text(n: u32) -> String {
    format!("marker-{n:05}-{}", "y".repeat(8 * 1024))
}

fn events_of(server: &ServeProcess, session: &str) -> Vec<Value> {
    let (status, body) = get(
        server,
        &format!("/api/v1/sessions/{session}/events?team=support"),
    );
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    body["events"].as_array().cloned().unwrap_or_default()
}

/// Starts `serve` for tenant acme with its data in `data` (and `extra` config, e.g. `[nats]`).
fn serve(data: &Path, extra: &str) -> ServeProcess {
    Serve::config(&(crate::support::acme_config(data) + extra)).start()
}

/// `/readyz`: status and JSON body.
fn ready(server: &ServeProcess) -> (u16, Value) {
    let (status, body) = get(server, "/readyz");
    (status, serde_json::from_str::<Value>(&body).unwrap())
}

/// Polls `/readyz` until it answers `status` (at most 30 s); returns the body. On time-out the
/// failure shows what the server logged (its recovery attempts say why they failed).
fn await_ready(server: &ServeProcess, status: u16) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = ready(server);
        if got == status {
            return body;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let logged: Vec<String> = server.lines.try_iter().collect();
            panic!("/readyz still {got}: {body}\nthe server logged:\n{logged:#?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_full_disk_makes_the_server_not_ready_until_space_is_freed() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let server = serve(&fs.dir.path().join("data"), "");
    assert_eq!(ready(&server), (200, json!({"status": "ready"})));

    let msg = |session: Option<&str>, n: u32| {
        json!({"team": "support", "channel": "slack", "user": "ada", "session": session,
               "text": text(n)})
    };
    let (status, body) = post(&server, &msg(None, 0));
    assert_eq!(status, 200, "{body}");
    let first: Value = serde_json::from_str(&body).unwrap();
    let session = first["session"].as_str().unwrap().to_owned();
    let mut acked = vec![0];

    // Fill the disk, leaving a little, then post until a post fails.
    let filler = fs.dir.path().join("filler");
    let leave = 1024 * 1024;
    let size = free_bytes(fs.dir.path()).saturating_sub(leave);
    std::fs::write(&filler, vec![0x5au8; usize::try_from(size).unwrap()]).unwrap();
    let mut failed = Vec::new();
    for n in 1..400 {
        let (status, body) = post(&server, &msg(Some(&session), n));
        if status == 200 {
            acked.push(n);
        } else {
            assert!(status >= 500, "{status} {body}");
            failed.push(n);
            if failed.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(failed.len(), 3, "the disk never filled up");

    let (status, body) = ready(&server);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not_ready");
    let reasons = body["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("log: ")),
        "{body}"
    );
    let (status, _) = get(&server, "/healthz");
    assert_eq!(status, 200, "liveness is not readiness");

    // No reader shows an event whose post failed. (sled may refuse reads too while its
    // files are in error: then the answer is an error, never the failed events.)
    let (status, body) = get(
        &server,
        &format!("/api/v1/sessions/{session}/events?team=support"),
    );
    for n in &failed {
        assert!(!body.contains(&format!("marker-{n:05}-")), "{status}");
    }
    if status == 200 {
        for n in &acked {
            assert!(
                body.contains(&format!("marker-{n:05}-")),
                "acked {n} is missing"
            );
        }
    }
    let (_, export) = get(&server, "/api/v1/audit/export?format=jsonl");
    for n in &failed {
        assert!(
            !export.contains(&format!("marker-{n:05}-")),
            "a failed post's event was exported"
        );
    }

    // Space comes back: the server recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(await_ready(&server, 200), json!({"status": "ready"}));
    let (status, body) = post(&server, &msg(Some(&session), 999));
    assert_eq!(status, 200, "{body}");
    let events = events_of(&server, &session);
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let all = serde_json::to_string(&events).unwrap();
    for n in &acked {
        assert!(
            all.contains(&format!("marker-{n:05}-")),
            "acked {n} is missing"
        );
    }
    let (status, export) = get(&server, "/api/v1/audit/export?format=jsonl");
    assert_eq!(status, 200);
    for n in &failed {
        let marker = format!("marker-{n:05}-");
        assert!(!all.contains(&marker) && !export.contains(&marker));
    }
    assert!(all.contains("marker-00999-"));
    let logged: Vec<String> = server.lines.try_iter().collect();
    let recovered = logged.iter().any(|l| l.contains("event log recovered"));
    // "Not ready" is the probe's answer, not a failed request: no log line per poll.
    assert!(
        !logged
            .iter()
            .any(|l| l.contains("/readyz") && l.contains("request failed")),
        "{logged:#?}"
    );
    assert!(recovered, "the server says it recovered");
}

#[test]
fn a_disconnected_nats_makes_the_server_not_ready_until_it_is_back() {
    let port = crate::support::free_port();
    let mut nats = crate::support::Nats::start(port);
    let data = tempfile::tempdir().unwrap();
    let extra =
        format!("[nats]\nurl = \"nats://127.0.0.1:{port}\"\nsubject_prefix = \"greentic\"\n");
    let server = serve(&data.path().join("data"), &extra);
    assert_eq!(await_ready(&server, 200), json!({"status": "ready"}));

    nats.kill();
    let body = await_ready(&server, 503);
    assert_eq!(body["status"], "not_ready");
    let reasons = body["reasons"].as_array().unwrap();
    assert!(
        reasons
            .iter()
            .any(|r| r.as_str().unwrap().starts_with("nats: ")),
        "{body}"
    );
    let (status, _) = get(&server, "/healthz");
    assert_eq!(status, 200, "liveness is not readiness");

    let _nats = crate::support::Nats::start(port);
    assert_eq!(await_ready(&server, 200), json!({"status": "ready"}));
}

#[test]
fn a_damaged_tenant_makes_the_server_not_ready_without_naming_it() {
    use tenantry::events::log::{AppendGroup, EventLog, LogOptions};
    use tenantry::events::schema::EventKind;
    let data = tempfile::tempdir().unwrap();
    let log_dir = data.path().join("data").join("log");
    let log = EventLog::open(&log_dir, &LogOptions::default()).unwrap();
    let group = AppendGroup {
        ctx: tenantry::tenancy::TenantCtx::new(
            "acme".parse().unwrap(),
            "prod".parse().unwrap(),
            Some("support".parse().unwrap()),
        ),
        channel: "slack".parse().unwrap(),
        session: tenantry::tenancy::SessionId::parse("s1").unwrap(),
        expected_seq: 0,
        at_ms: 1_763_900_000_000,
        kinds: vec![EventKind::SessionStarted {
            user: "ada".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        }],
        idempotency: None,
    };
    log.append_blocking(group).unwrap();
    drop(log);
    // Below the log API, as a disk would: the tenant's only frame becomes garbage.
    let started = Instant::now();
    let db = loop {
        match sled::open(&log_dir) {
            Ok(db) => break db,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(10), "{e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let tree = db.open_tree("log").unwrap();
    let mut key = b"acme\0L".to_vec();
    key.extend_from_slice(&1u64.to_be_bytes());
    tree.insert(key, &b"not a frame"[..]).unwrap();
    db.flush().unwrap();
    drop(tree);
    drop(db);
    std::thread::sleep(Duration::from_millis(200));

    let server = serve(&data.path().join("data"), "");
    let (status, body) = ready(&server);
    assert_eq!(status, 503, "{body}");
    let reasons = body["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .unwrap()
            .starts_with("log: 1 tenant log(s) damaged")),
        "{body}"
    );
    // The probe is unauthenticated: it names no tenant (the server log does, at open).
    assert!(!body.to_string().contains("acme"), "{body}");
    let (status, _) = get(&server, "/healthz");
    assert_eq!(status, 200);
}
