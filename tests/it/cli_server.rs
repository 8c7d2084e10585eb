//! `tenantry usage | replay | export | verify --server URL` against a real running `serve`: each
//! prints what the same command prints offline (run after the server stopped, with `--env` set
//! to the token's env, the only one the server shows; `verify`: less the details the server does
//! not tell), says on stderr that it went through the server, and a bad token or a data dir held
//! by the server get clear errors.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::support::{claims, free_port, sign, token, Serve, ServeProcess};

/// The `tenantry` binary in `dir` with `args`, without the test's own tenancy variables.
fn tenantry(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .current_dir(dir)
        .args(args)
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG")
        .env_remove("TENANTRY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Succeeded; its stdout.
#[track_caller]
/// `text` without the signed chain heads of its manifest (`,"heads":[…]`): the server signs
/// its head again when it stops, so the offline export taken after the stop carries a head the
/// export through the running server could not have had.
fn without_heads(text: &str) -> String {
    let Some(start) = text.find(",\"heads\":[") else {
        return text.to_owned();
    };
    let end = text[start..]
        .find(']')
        .map_or(text.len(), |i| start + i + 1);
    format!("{}{}", &text[..start], &text[end..])
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn post(server: &ServeProcess, tenant: &str, env: &str, body: serde_json::Value) -> String {
    let mut claims = crate::support::claims(tenant);
    claims["env"] = json!(env);
    let bearer = format!("Bearer {}", crate::support::sign(&claims));
    let reply = server.post(
        "/api/v1/messages",
        &[("Authorization", &bearer), ("X-Tenant-ID", tenant)],
        &body.to_string(),
    );
    reply.ok()["session"].as_str().unwrap().to_owned()
}

#[test]
fn usage_replay_and_export_through_the_server_print_what_they_print_offline() {
    let mut server = Serve::shipped().start();
    let dir = server.dir.clone();
    let session = post(
        &server,
        "acme",
        "prod",
        json!({"team": "support", "channel": "slack", "user": "ada", "text": "hello"}),
    );
    post(
        &server,
        "acme",
        "prod",
        json!({"team": "support", "channel": "slack", "session": session, "user": "ada", "text": "again"}),
    );
    post(
        &server,
        "acme",
        "prod",
        json!({"team": "sales", "channel": "teams", "user": "bob", "text": "quote?"}),
    );
    // Another env and another tenant: never in the token's view.
    post(
        &server,
        "acme",
        "staging",
        json!({"team": "support", "channel": "slack", "user": "cy", "text": "staging"}),
    );
    post(
        &server,
        "bigcorp",
        "prod",
        json!({"team": "helpdesk", "channel": "webchat", "user": "dee", "text": "BIGCORP"}),
    );

    let url = server.base();
    let acme = token("acme");
    let through = |args: &[&str]| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--server", &url, "--token", &acme]);
        tenantry(&dir, &all, &[])
    };
    let out_file = dir.join("through.jsonl");
    let out_file_arg = out_file.to_str().unwrap().to_owned();
    let commands: Vec<Vec<&str>> = vec![
        vec!["usage", "--tenant", "acme"],
        vec![
            "usage", "--tenant", "acme", "--by", "day", "--format", "json",
        ],
        vec!["replay", "--tenant", "acme"],
        vec![
            "replay", "--tenant", "acme", "--team", "support", "--format", "json",
        ],
        vec![
            "replay",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--team",
            "support",
            "--session",
            &session,
            "--from-seq",
            "2",
        ],
        vec!["export", "--tenant", "acme"],
        vec![
            "export", "--tenant", "acme", "--team", "sales", "--format", "csv",
        ],
    ];
    let mut remote = Vec::new();
    for args in &commands {
        let out = through(args);
        let stdout = ok(&out);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("note: reading through the server at {url}")),
            "{args:?}: {stderr}"
        );
        assert!(
            !stdout.contains("bigcorp")
                && !stdout.contains("BIGCORP")
                && !stdout.contains("staging"),
            "{args:?}: {stdout}"
        );
        remote.push(stdout);
    }
    assert!(remote[2].contains("\"again\""), "{}", remote[2]);
    assert!(
        remote[0].contains("support") && remote[0].contains("sales"),
        "{}",
        remote[0]
    );
    assert!(
        remote[5].lines().count() > 5 && remote[5].contains("\"manifest\""),
        "{}",
        remote[5]
    );
    assert!(
        remote[6].contains("quote?") && !remote[6].contains("hello"),
        "{}",
        remote[6]
    );
    assert_eq!(
        remote[4].lines().count(),
        6,
        "seqs 2..=7 of a session of two messages: {}",
        remote[4]
    );
    // --out writes the file and its manifest sidecar, as offline.
    let to_file = through(&["export", "--tenant", "acme", "--out", &out_file_arg]);
    ok(&to_file);
    assert!(
        text(&to_file.stderr).contains("exported"),
        "{}",
        text(&to_file.stderr)
    );
    let through_file = std::fs::read_to_string(&out_file).unwrap();
    let through_sidecar = std::fs::read_to_string(dir.join("through.jsonl.manifest.json")).unwrap();
    // The token may come from TENANTRY_TOKEN.
    let by_env = tenantry(
        &dir,
        &["usage", "--tenant", "acme", "--server", &url],
        &[("TENANTRY_TOKEN", &acme)],
    );
    assert_eq!(ok(&by_env), remote[0]);

    // Bad tokens and wrong envs are clear errors.
    let bad = tenantry(
        &dir,
        &[
            "usage",
            "--tenant",
            "acme",
            "--server",
            &url,
            "--token",
            "not-a-token",
        ],
        &[],
    );
    assert!(!bad.status.success());
    let stderr = text(&bad.stderr);
    assert!(
        stderr.contains("401 invalid_token") && stderr.contains("--token"),
        "{stderr}"
    );
    let other = tenantry(
        &dir,
        &[
            "usage", "--tenant", "bigcorp", "--server", &url, "--token", &acme,
        ],
        &[],
    );
    assert!(
        text(&other.stderr).contains("tenant_mismatch"),
        "{}",
        text(&other.stderr)
    );
    let staging = through(&["replay", "--tenant", "acme", "--env", "staging"]);
    assert!(!staging.status.success());
    assert!(
        text(&staging.stderr).contains("token's env only, which is prod"),
        "{}",
        text(&staging.stderr)
    );
    let no_token = tenantry(&dir, &["export", "--tenant", "acme", "--server", &url], &[]);
    assert!(
        text(&no_token.stderr).contains("TENANTRY_TOKEN"),
        "{}",
        text(&no_token.stderr)
    );
    // Offline while the server holds the data dir: it says how to go through the server.
    let held = tenantry(&dir, &["usage", "--tenant", "acme"], &[]);
    assert!(!held.status.success());
    let stderr = text(&held.stderr);
    assert!(
        stderr.contains("in use") && stderr.contains("tenantry usage --server"),
        "{stderr}"
    );
    let held = tenantry(&dir, &["verify", "--tenant", "acme"], &[]);
    let stderr = text(&held.stderr);
    assert!(
        stderr.contains("tenantry verify --tenant acme --server http://")
            && stderr.contains("TENANTRY_TOKEN"),
        "{stderr}"
    );

    let status = server.stop();
    assert!(status.success(), "{status:?}");
    // The same commands offline, in the token's env.
    let offline: Vec<Vec<&str>> = vec![
        vec!["usage", "--tenant", "acme", "--env", "prod"],
        vec![
            "usage", "--tenant", "acme", "--env", "prod", "--by", "day", "--format", "json",
        ],
        vec!["replay", "--tenant", "acme", "--env", "prod"],
        vec![
            "replay", "--tenant", "acme", "--env", "prod", "--team", "support", "--format", "json",
        ],
        vec![
            "replay",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--team",
            "support",
            "--session",
            &session,
            "--from-seq",
            "2",
        ],
        vec!["export", "--tenant", "acme", "--env", "prod"],
        vec![
            "export", "--tenant", "acme", "--env", "prod", "--team", "sales", "--format", "csv",
        ],
    ];
    for (args, through) in offline.iter().zip(&remote) {
        let out = tenantry(&dir, args, &[]);
        assert!(!text(&out.stderr).contains("reading through the server"));
        assert_eq!(without_heads(&ok(&out)), without_heads(through), "{args:?}");
    }
    let offline_file = dir.join("offline.jsonl");
    ok(&tenantry(
        &dir,
        &[
            "export",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--out",
            offline_file.to_str().unwrap(),
        ],
        &[],
    ));
    let offline_export = std::fs::read_to_string(&offline_file).unwrap();
    // The head the server signed when it stopped is in the offline export only.
    assert!(offline_export.contains("\"heads\":["), "{offline_export}");
    assert_eq!(without_heads(&offline_export), without_heads(&through_file));
    assert_eq!(
        without_heads(&std::fs::read_to_string(dir.join("offline.jsonl.manifest.json")).unwrap()),
        without_heads(&through_sidecar)
    );
}

/// `verify --tenant acme --server URL` with `token`.
fn verify_through(dir: &Path, url: &str, tenant: &str, token: &str) -> Output {
    tenantry(
        dir,
        &[
            "verify", "--tenant", tenant, "--server", url, "--token", token,
        ],
        &[],
    )
}

/// The offline verdict of a log without what the server does not tell: its source (the log's
/// path) becomes the server's, and the session count goes.
fn as_through_the_server(offline: &str, url: &str) -> String {
    let (_, rest) = offline
        .split_once(": tenant ")
        .unwrap_or_else(|| panic!("{offline}"));
    let rest = match rest.split_once(" sessions, ") {
        Some((before, after)) => {
            let (before, _count) = before.rsplit_once(", ").unwrap();
            format!("{before}, {after}")
        }
        None => rest.to_owned(),
    };
    format!("OK: log through the server at {url}: tenant {rest}")
}

#[test]
fn verify_through_the_server_gives_the_offline_verdict_and_names_the_first_bad_position() {
    let mut server = Serve::shipped().start();
    let dir = server.dir.clone();
    let session = post(
        &server,
        "acme",
        "prod",
        json!({"team": "support", "channel": "slack", "user": "ada", "text": "one"}),
    );
    for text in ["two", "three"] {
        post(
            &server,
            "acme",
            "prod",
            json!({"team": "support", "channel": "slack", "session": session, "user": "ada", "text": text}),
        );
    }
    post(
        &server,
        "acme",
        "staging",
        json!({"team": "sales", "channel": "teams", "user": "cy", "text": "STAGING-CANARY"}),
    );
    post(
        &server,
        "bigcorp",
        "prod",
        json!({"team": "helpdesk", "channel": "webchat", "user": "dee", "text": "BIGCORP"}),
    );
    let url = server.base();
    let acme = token("acme");

    let out = verify_through(&dir, &url, "acme", &acme);
    let through = ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("note: reading through the server at {url}"))
            && stderr.contains("verify acme: ")
            && stderr.contains("events good, up to tenant_seq")
            && stderr.contains("no session count, session snapshots not checked"),
        "{stderr}"
    );
    assert!(through.starts_with("OK: "), "{through}");
    assert!(
        !through.contains("STAGING") && !through.contains("BIGCORP"),
        "{through}"
    );

    // Refusals: clear errors, exit 2 (cannot verify), as offline.
    let support = sign(&{
        let mut c = claims("acme");
        c["team"] = json!("support");
        c
    });
    let refusals = [
        (
            verify_through(&dir, &url, "acme", &support),
            vec!["403 team_scoped", "without a team"],
        ),
        (
            verify_through(&dir, &url, "acme", "not-a-token"),
            vec!["401 invalid_token", "--token"],
        ),
        (
            verify_through(&dir, &url, "bigcorp", &acme),
            vec!["403 tenant_mismatch", "not for tenant bigcorp"],
        ),
        (
            verify_through(
                &dir,
                &format!("http://127.0.0.1:{}", free_port()),
                "acme",
                &acme,
            ),
            vec!["cannot reach the server"],
        ),
        (
            tenantry(&dir, &["verify", "--tenant", "acme", "--server", &url], &[]),
            vec!["TENANTRY_TOKEN"],
        ),
    ];
    for (out, needles) in &refusals {
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        for needle in needles {
            assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
        }
    }

    // After the server stops: the same verdict offline, with what the server does not tell.
    assert!(server.stop().success());
    let offline = ok(&tenantry(&dir, &["verify", "--tenant", "acme"], &[]));
    assert!(offline.contains(" sessions, "), "{offline}");
    assert_eq!(through, as_through_the_server(&offline, &url));

    // A damaged frame, below the log API as a disk would: the second message's (tenant_seq 5..).
    let data = server.take_dir();
    {
        let db = sled::open(dir.join("data").join("log")).unwrap();
        let tree = db.open_tree("log").unwrap();
        let mut key = b"acme\0L".to_vec();
        key.extend_from_slice(&5u64.to_be_bytes());
        assert!(tree.insert(key, &b"not a frame"[..]).unwrap().is_some());
        db.flush().unwrap();
    }
    let mut server = Serve::shipped().in_dir(data.path()).start();
    let url = server.base();
    let out = verify_through(&dir, &url, "acme", &acme);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let through = text(&out.stdout);
    assert!(
        through.starts_with("FAILED: tenant_seq 5: unreadable: (the server tells the kind only"),
        "{through}"
    );
    // bigcorp's chain is intact, and says nothing of acme's.
    let theirs = ok(&verify_through(&dir, &url, "bigcorp", &token("bigcorp")));
    assert!(
        theirs.contains("tenant bigcorp") && !theirs.contains("acme"),
        "{theirs}"
    );
    assert!(server.stop().success());
    let out = tenantry(&dir, &["verify", "--tenant", "acme"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let offline = text(&out.stdout);
    assert!(
        offline.starts_with("FAILED: tenant_seq 5: unreadable: "),
        "{offline}"
    );
}
