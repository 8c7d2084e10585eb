//! A session snapshot newer than the log (an older `log/` restored beside newer `sessions/`),
//! through the real binary: `verify --tenant` reports it, and `serve` rebuilds the session from
//! the log instead of trusting it, so posts to the session succeed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::projections::load::load_session;
use tenantry::projections::snapshot::{SnapshotKey, SnapshotStore};
use tenantry::tenancy::{SessionId, TenantCtx};

const KEY: &str = "it-snapshots-signing-key-0123456789ab";

fn ctx() -> TenantCtx {
    TenantCtx::new(
        "acme".parse().unwrap(),
        "prod".parse().unwrap(),
        Some("support".parse().unwrap()),
    )
}

fn append(log: &EventLog, expected_seq: u64) {
    let kinds = if expected_seq == 0 {
        vec![EventKind::SessionStarted {
            user: "ada".into(),
            flow: "acme_support".into(),
            flow_version: "1".into(),
        }]
    } else {
        vec![EventKind::MessageReceived {
            message_id: format!("m{expected_seq}"),
            user: "ada".into(),
            text: format!("text {expected_seq}"),
        }]
    };
    let group = AppendGroup {
        ctx: ctx(),
        channel: "slack".parse().unwrap(),
        session: SessionId::parse("s1").unwrap(),
        expected_seq,
        at_ms: 1_763_900_000_000 + expected_seq,
        kinds,
        idempotency: None,
    };
    assert!(matches!(
        log.append_blocking(group),
        Ok(AppendOutcome::Appended(_))
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_snapshot_ahead_of_a_restored_log_is_reported_and_not_trusted() {
    let dir = crate::support::dir_with_flows();
    let data = dir.path().join("data");
    let log_dir = data.join("log");
    // The log at seq 10, saved (the "backup"); then 9 more events and a snapshot at seq 19.
    let log = EventLog::open(&log_dir, &LogOptions::default()).unwrap();
    for seq in 0..10 {
        append(&log, seq);
    }
    drop(log);
    copy_dir(&log_dir, &dir.path().join("backup"));
    let log = EventLog::open(&log_dir, &LogOptions::default()).unwrap();
    for seq in 10..19 {
        append(&log, seq);
    }
    let store = SnapshotStore::new(data.join("sessions"));
    let sid = SessionId::parse("s1").unwrap();
    let state = load_session(&log, &store, &ctx(), &sid).unwrap().state;
    assert_eq!(state.last_seq, 19);
    let key = SnapshotKey {
        tenant: &state.tenant,
        env: &state.env,
        team: &state.team,
        session: &state.session,
    };
    store.write(&key, state.last_seq, &state).unwrap();
    drop(log);
    // Restore the older log beside the newer snapshot.
    std::fs::remove_dir_all(&log_dir).unwrap();
    copy_dir(&dir.path().join("backup"), &log_dir);

    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [tenants.acme]\nname = \"ACME\"\nenvironments = [\"prod\"]\n\
         [tenants.acme.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
         [tenants.acme.teams.support.channels.slack]\nprovider = \"messaging-slack\"\n",
        data.display()
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();

    let verify = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["verify", "--tenant", "acme", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("snapshot not in the log")
            && stdout.contains("s1.cbor")
            && stdout.contains("only up to seq 10"),
        "{stdout}"
    );

    // The server rebuilds the session from the log: a post continues at seq 11.
    let (child, lines) = crate::support::spawn_with_lines(
        Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("TENANTRY_SIGNING_KEY", KEY)
            .env_remove("TENANTRY_TENANT_ID"),
    );
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(child);
    let (addr, _) = crate::support::wait_until_serving(&lines, false, Duration::from_secs(20));
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
    let claims = json!({"tenant": "acme", "env": "prod", "iss": "tenantry",
        "aud": "tenantry-api", "sub": "it", "iat": now, "exp": now + 600});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let body = json!({"team": "support", "channel": "slack", "user": "ada", "session": "s1",
        "text": "after the restore"});
    let mut response = agent
        .post(format!("http://{addr}/api/v1/messages"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("X-Tenant-ID", "acme")
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["seq"], 11, "{reply}");
}
