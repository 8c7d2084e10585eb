use std::time::Duration;

use crate::config::{Config, LoadOptions};

const FLOW: &str = "name: f\nversion: \"1\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      message: hi\n";

/// Loads `config.toml` = `head` + a tenant `acme` with `tenant_lines` and one team.
fn load(head: &str, tenant_lines: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.yaml"), FLOW).unwrap();
    let text = format!(
        "{head}[tenants.acme]\n{tenant_lines}\n[tenants.acme.teams.s]\nflow = \"f.yaml\"\n"
    );
    std::fs::write(dir.path().join("config.toml"), text).unwrap();
    Config::load(&dir.path().join("config.toml"), &LoadOptions::default())
        .map_err(|e| e.to_string())
}

fn retention_of(config: &Config) -> Option<Duration> {
    config.tenants.values().next().unwrap().retention
}

#[test]
fn retention_is_a_duration_and_absent_keeps_for_ever() {
    let config = load("", "retention = \"90d\"").unwrap();
    assert_eq!(
        retention_of(&config),
        Some(Duration::from_secs(90 * 86_400))
    );
    let config = load("", "").unwrap();
    assert_eq!(retention_of(&config), None);
}

#[test]
fn a_bad_retention_names_the_field_and_the_fix() {
    let err = load("", "retention = \"soon\"").unwrap_err();
    assert!(
        err.contains("tenants.acme.retention") && err.contains("\"90d\""),
        "{err}"
    );
    let err = load("", "retention = \"10m\"").unwrap_err();
    assert!(
        err.contains("tenants.acme.retention")
            && err.contains("out of range")
            && err.contains("1h"),
        "{err}"
    );
}

#[test]
fn retention_with_the_jetstream_backend_is_accepted() {
    let head = "[nats]\nurl = \"nats://127.0.0.1:4222\"\n[log]\nbackend = \"jetstream\"\n\
                [cluster]\nnode = \"n1\"\n";
    let config = load(head, "retention = \"90d\"").unwrap();
    assert_eq!(
        retention_of(&config),
        Some(Duration::from_secs(90 * 86_400))
    );
}
