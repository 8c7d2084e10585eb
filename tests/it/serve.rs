//! `tenantry serve` as an operator runs it: starts, refuses a second server on the same data
//! dir, and stops cleanly on SIGTERM.

use std::process::Command;

use serde_json::json;

use crate::support::{Serve, SIGNING_KEY as KEY};

#[test]
fn serve_starts_refuses_a_second_server_and_stops_on_sigterm() {
    let mut server = Serve::shipped().start();
    let mut started = server.started.clone();
    started.extend(server.wait_for_line("runtime started"));
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
        .arg(server.dir.join("config.toml"))
        .env("TENANTRY_SIGNING_KEY", KEY)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use"), "{stderr}");

    server.sigterm();
    server.wait_for_line("stopped");
    let status = server.child().wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(server.dir.join("data/log").is_dir());
}

#[test]
fn a_metrics_port_in_use_is_a_clear_error() {
    // Another instance on this host holds the port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let serve = Serve::shipped().metrics_listen(&format!("127.0.0.1:{port}"));
    assert!(serve.config_text().contains(&port.to_string()));
    let (_dir, out) = serve.output();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("127.0.0.1:{port} (server.metrics_listen)")),
        "{stderr}"
    );
    assert!(!stderr.contains("listening on"), "{stderr}");
    drop(taken);
}

/// `tenantry` with `args` in `dir` under `umask 022`, with the test key and none of the test
/// runner's tenantry variables.
fn under_umask_022(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = crate::support::tenantry_under_umask_022(dir, args);
    cmd.env("TENANTRY_SIGNING_KEY", KEY)
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
    let mut server = Serve::shipped().umask_022().start();
    let reply = server.post_as(
        "acme",
        &json!({"team":"support","channel":"slack","user":"ada","text":"hello"}),
    );
    assert_eq!(reply.status, 200);
    // SIGTERM snapshots every session, so `sessions/` holds a file too.
    assert!(server.stop().success());
    let dir = server.dir.clone();

    let mut set = under_umask_022(&dir, &["secrets", "set", "--tenant", "acme", "api_token"]);
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

    let data = dir.join("data");
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

/// Threads of process `pid` that run an actix system's arbiter: the runtime's arbiters and the
/// HTTP workers (the kernel keeps 15 bytes of a thread's name: "actix-rt|system").
fn actix_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("actix-rt|system"))
        .count()
}

#[test]
fn serve_runs_as_many_http_workers_as_configured() {
    // One runtime arbiter per core, and one HTTP worker per core unless set; no metrics
    // listener (its worker is an arbiter too). The workers start just after the listening line.
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    for (keys, workers) in [
        ("http_workers = 3\n", 3),
        ("http_workers = 1\n", 1),
        ("", cores),
    ] {
        let mut server = Serve::shipped()
            .metrics_listen("off")
            .section("server", keys)
            .start();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = actix_threads(server.pid());
        while seen < cores + workers && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            seen = actix_threads(server.pid());
        }
        assert_eq!(server.get("/healthz", &[]).ok(), json!({"status": "ok"}));
        assert_eq!(actix_threads(server.pid()), cores + workers, "{keys:?}");
        server.sigterm();
        assert!(server.child().wait().unwrap().success());
    }
}
