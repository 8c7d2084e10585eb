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

/// Runs the binary under `umask 022` (the common default), so that modes are tested against
/// the umask that would leave files world-readable, whatever the test runner's umask is.
fn under_umask_022(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .current_dir(dir)
        .env("TENANTRY_SIGNING_KEY", KEY)
        .env_remove("TENANTRY_MASTER_KEY")
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG");
    cmd
}

/// Every directory under `root` (and `root`) and every file, with its permission bits.
fn modes(root: &std::path::Path) -> Vec<(std::path::PathBuf, bool, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
        out.push((path, meta.is_dir(), meta.permissions().mode() & 0o777));
    }
    out
}

#[test]
fn what_serve_and_secrets_store_is_owner_only() {
    let dir = crate::support::dir_with_flows();
    std::fs::write(
        dir.path().join("config.toml"),
        crate::support::shipped_config_on_port_0(),
    )
    .unwrap();
    let (mut server, rx) = crate::support::spawn_with_lines(
        under_umask_022(dir.path(), &["serve"]).env("RUST_LOG", "info"),
    );
    let (addr, _) = crate::support::wait_until_serving(&rx, false, Duration::from_secs(20));
    let now = jsonwebtoken::get_current_timestamp();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"tenant": "acme", "env": "prod", "iss": "tenantry",
                            "aud": "tenantry-api", "iat": now, "exp": now + 300}),
        &jsonwebtoken::EncodingKey::from_secret(KEY.as_bytes()),
    )
    .unwrap();
    let reply = ureq::post(format!("http://{addr}/api/v1/messages"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("X-Tenant-ID", "acme")
        .header("Content-Type", "application/json")
        .send(r#"{"team":"support","channel":"slack","user":"ada","text":"hello"}"#)
        .unwrap();
    assert_eq!(reply.status().as_u16(), 200);
    // SIGTERM snapshots every session, so `sessions/` holds a file too.
    let kill = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(server.wait().unwrap().success());

    let mut set = under_umask_022(
        dir.path(),
        &["secrets", "set", "--tenant", "acme", "api_token"],
    );
    let set = set
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"value\n")?;
            child.wait()
        })
        .unwrap();
    assert!(set.success());

    let data = dir.path().join("data");
    let all = modes(&data);
    for must in ["log", "log/db", "sessions", "secrets", "master.key"] {
        assert!(
            all.iter().any(|(p, _, _)| p == &data.join(must)),
            "no {must} in {all:#?}"
        );
    }
    assert!(
        all.iter()
            .any(|(p, dir, _)| !dir && p.extension().is_some_and(|e| e == "cbor")),
        "no snapshot in {all:#?}"
    );
    for (path, is_dir, mode) in &all {
        let want = if *is_dir { 0o700 } else { 0o600 };
        // sled may create a file after open (a new snapshot of its page table) with its own
        // mode: the 0700 log directory keeps it private; its data file `db` and `conf` exist
        // at open and are set 0600 then.
        let sled_later = path.parent() == Some(&data.join("log"))
            && !is_dir
            && !path.ends_with("db")
            && !path.ends_with("conf");
        assert!(
            *mode == want || sled_later,
            "{} is {mode:o}, want {want:o}",
            path.display()
        );
    }
}
