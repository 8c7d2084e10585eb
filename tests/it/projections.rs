//! `tenantry usage` and `tenantry rebuild` on a data dir written through the library.

use std::process::Command;

use tenantry::events::log::{AppendGroup, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::projections::session::SessionState;
use tenantry::projections::snapshot::{SnapshotKey, SnapshotStore};
use tenantry::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

fn setup() -> tempfile::TempDir {
    let dir = crate::support::dir_with_flows();
    let root = env!("CARGO_MANIFEST_DIR");
    std::fs::copy(
        format!("{root}/config.toml"),
        dir.path().join("config.toml"),
    )
    .unwrap();
    let log = EventLog::open(&dir.path().join("data/log"), &LogOptions::default()).unwrap();
    for (tenant, texts) in [("acme", vec!["hello", "again"]), ("bigcorp", vec!["x"])] {
        let ctx = TenantCtx::new(
            TenantId::parse(tenant).unwrap(),
            EnvId::parse("prod").unwrap(),
            Some(TeamId::parse("support").unwrap()),
        );
        let mut kinds = vec![EventKind::SessionStarted {
            user: "u".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        }];
        for t in texts {
            kinds.push(EventKind::MessageReceived {
                message_id: t.into(),
                user: "u".into(),
                text: t.into(),
            });
            kinds.push(EventKind::ReplySent {
                node: "greet".into(),
                text: "hi".into(),
            });
        }
        log.append_blocking(AppendGroup {
            ctx,
            channel: "slack".parse().unwrap(),
            session: SessionId::parse("s1").unwrap(),
            expected_seq: 0,
            at_ms: 1_763_900_000_000,
            kinds,
            idempotency: None,
        })
        .unwrap();
    }
    dir
}

fn tenantry(dir: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .current_dir(dir.path())
        .args(args)
        .env_remove("TENANTRY_TENANT_ID")
        .output()
        .unwrap()
}

#[test]
fn usage_reports_only_the_tenants_own_counts() {
    let dir = setup();
    let out = tenantry(
        &dir,
        &[
            "usage", "--tenant", "acme", "--by", "channel", "--format", "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json["usage"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["channel"], "slack");
    assert_eq!(rows[0]["messages_in"], 2);
    assert_eq!(rows[0]["replies_out"], 2);
    assert_eq!(rows[0]["bytes_in"], 10);
    assert_eq!(rows[0]["events"], 5);
    let table = tenantry(&dir, &["usage", "--tenant", "bigcorp"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("msgs_in") && text.contains("support"),
        "{text}"
    );
}

#[test]
fn rebuild_refolds_and_rewrites_snapshots() {
    let dir = setup();
    let out = tenantry(&dir, &["rebuild", "--snapshots", "--jobs", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("rebuild acme: read models done")
            && stderr.contains("rebuild bigcorp: read models done")
            && stderr.contains("rebuild: 2 tenants,")
            && stderr.contains("(2 jobs)"),
        "{stderr}"
    );
    let store = SnapshotStore::new(dir.path().join("data/sessions"));
    let (t, e, m, s) = (
        TenantId::parse("acme").unwrap(),
        EnvId::parse("prod").unwrap(),
        TeamId::parse("support").unwrap(),
        SessionId::parse("s1").unwrap(),
    );
    let snap = store
        .read::<SessionState>(&SnapshotKey {
            tenant: &t,
            env: &e,
            team: &m,
            session: &s,
        })
        .unwrap()
        .unwrap();
    assert_eq!(snap.seq, 5);
    assert_eq!(snap.state.messages_in, 2);
}

#[test]
fn rebuild_refuses_zero_jobs_naming_the_flag() {
    let dir = setup();
    let out = tenantry(&dir, &["rebuild", "--jobs", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--jobs"), "{stderr}");
}

#[test]
fn offline_commands_refuse_a_data_dir_held_by_a_server() {
    let dir = setup();
    let _held = EventLog::open(&dir.path().join("data/log"), &LogOptions::default()).unwrap();
    let out = tenantry(&dir, &["usage", "--tenant", "acme"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
