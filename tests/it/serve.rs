//! `tenantry serve` as an operator runs it: starts, refuses a second server on the same data
//! dir, and stops cleanly on SIGTERM.

use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::Duration;

/// The API signing key of every server here (at least 32 bytes).
const KEY: &str = "serve-test-key-0123456789abcdef0123";

fn start(config: &std::path::Path) -> (Child, mpsc::Receiver<String>) {
    crate::support::spawn_with_lines(
        Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("TENANTRY_SIGNING_KEY", KEY)
            .env_remove("TENANTRY_TENANT_ID"),
    )
}

fn wait_for(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let found = line.contains(needle);
        seen.push(line);
        if found {
            return seen;
        }
    }
    panic!("no line with {needle:?} in {seen:#?}");
}

#[test]
fn serve_starts_refuses_a_second_server_and_stops_on_sigterm() {
    let dir = crate::support::dir_with_flows();
    std::fs::write(
        dir.path().join("config.toml"),
        crate::support::shipped_config_on_port_0(),
    )
    .unwrap();
    let config = dir.path().join("config.toml");

    let (mut server, rx) = start(&config);
    let started = wait_for(&rx, "runtime started");
    assert!(
        started
            .iter()
            .any(|l| l.contains("acme") && l.contains("bigcorp")),
        "{started:#?}"
    );
    assert!(
        !started.iter().any(|l| l.contains("\u{1b}[")),
        "colour codes in a non-terminal log"
    );

    let second = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("TENANTRY_SIGNING_KEY", KEY)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "{stderr}");

    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    wait_for(&rx, "stopped");
    let status = server.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("data/log").is_dir());
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error() {
    // Another instance on this host holds the port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = crate::support::dir_with_flows();
    let config = crate::support::shipped_config_on_port_0().replacen(
        "metrics_listen = \"127.0.0.1:0\"",
        &format!("metrics_listen = \"127.0.0.1:{port}\""),
        1,
    );
    assert!(config.contains(&port.to_string()));
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["serve", "--config"])
        .arg(dir.path().join("config.toml"))
        .env("TENANTRY_SIGNING_KEY", KEY)
        .env_remove("TENANTRY_TENANT_ID")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} (server.metrics_listen)")),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
    drop(taken);
}
