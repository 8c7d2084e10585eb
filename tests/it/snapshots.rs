//! A session snapshot newer than the log (an older `log/` restored beside newer `sessions/`),
//! through the real binary: `verify --tenant` reports it, and `serve` rebuilds the session from
//! the log instead of trusting it, so posts to the session succeed.

use serde_json::{json, Value};
use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::projections::load::load_session;
use tenantry::projections::snapshot::{SnapshotKey, SnapshotStore};
use tenantry::tenancy::{SessionId, TenantCtx};

use crate::support::{acme_config, copy_dir, verify_tenant, Serve};

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

    let serve = Serve::config(&acme_config(&data)).in_dir(dir.path());
    let verify = verify_tenant(&serve.write_config(), "acme");
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("snapshot not in the log")
            && stdout.contains("s1.cbor")
            && stdout.contains("only up to seq 10"),
        "{stdout}"
    );

    // The server rebuilds the session from the log: a post continues at seq 11.
    let server = serve.start();
    let body = json!({"team": "support", "channel": "slack", "user": "ada", "session": "s1",
        "text": "after the restore"});
    let reply = server.post_as("acme", &body);
    let (status, text) = (reply.status, reply.body);
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reply["seq"], 11, "{reply}");
}
