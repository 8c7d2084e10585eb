//! `tenantry check-config` as a user runs it.

use std::process::Command;

fn tenantry() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
}

#[test]
fn the_shipped_config_checks_and_names_the_seed_tenants() {
    let out = tenantry()
        .args(["check-config", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .env_remove("TENANTRY_TENANT_ID")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for word in [
        "acme",
        "bigcorp",
        "support",
        "helpdesk",
        "acme_support_flow",
        "bigcorp_helpdesk_flow",
        "slack",
    ] {
        assert!(stdout.contains(word), "summary lacks {word}:\n{stdout}");
    }
}

#[test]
fn dedicated_mode_from_the_environment_keeps_one_tenant() {
    let out = tenantry()
        .args(["check-config", "--config"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .env("TENANTRY_TENANT_ID", "bigcorp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("bigcorp"));
    assert!(!stdout.contains("acme_support_flow"), "{stdout}");
}

#[test]
fn a_broken_config_exits_non_zero_naming_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:8080\"\n[tenants.\"Bad.Tenant\"]\nname = \"x\"\n",
    )
    .unwrap();
    let out = tenantry()
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("config.toml"), "{stderr}");
    assert!(stderr.contains("tenant"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_named() {
    let out = tenantry()
        .args(["check-config", "--config", "/nonexistent/tenantry.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tenantry.toml"));
}
