//! Erasure by crypto-shredding (issue #15 item 1): `tenantry erase --session` and `--user`
//! destroy the sessions' data keys; afterwards no file under the data dir and no export holds
//! their personal data, replay and exports and the API show their events with the non-personal
//! fields and `"erased": true`, `verify` passes, and other sessions' and tenants' data still
//! reads. Bad input changes nothing. Each runs on both log backends ([`Backend`]): on JetStream
//! (a single node, no `[cluster]`) the canaries are looked for in the nats-server's store too,
//! and a `[cluster]` node refuses erasure, saying why.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::{claims, sign, JetStream, Serve, ServeProcess};

/// The log backend a test's servers and offline commands run on.
enum Backend {
    Sled,
    /// A single node (no `[cluster]`) on a stream of this nats-server.
    JetStream(JetStream),
}

impl Backend {
    fn jetstream() -> Backend {
        Backend::JetStream(JetStream::single())
    }

    /// The shipped config on this backend.
    fn serve(&self) -> Serve {
        match self {
            Backend::Sled => Serve::shipped(),
            Backend::JetStream(js) => Serve::shipped()
                .section("nats", &format!("url = \"{}\"", js.url(0)))
                .section("log", "backend = \"jetstream\"\nstream = \"ERASE\""),
        }
    }

    /// Every directory whose files must not hold erased data: the data dir, and the
    /// nats-server's (its store).
    fn dirs(&self, data: &Path) -> Vec<PathBuf> {
        match self {
            Backend::Sled => vec![data.to_owned()],
            Backend::JetStream(js) => vec![data.to_owned(), js.dir().to_owned()],
        }
    }

    /// The files under [`Backend::dirs`] holding `needle`.
    fn files_containing(&self, data: &Path, needle: &str) -> Vec<String> {
        let dirs = self.dirs(data);
        dirs.iter()
            .flat_map(|d| files_containing(d, needle))
            .collect()
    }

    /// The log directory an offline erase compacts, and what its backend file says.
    fn offline_log(&self) -> (&'static str, &'static str) {
        match self {
            Backend::Sled => ("log", "sled"),
            Backend::JetStream(_) => ("log-offline", "jetstream ERASE"),
        }
    }
}

const ADA: &str = "ada-canary-user-71";
const ADA_TEXT: &str = "ada-canary-text-8812";
const BOB: &str = "bob-canary-user-33";
const BOB_TEXT: &str = "bob-canary-text-5524";
const CAROL_TEXT: &str = "carol-canary-text-9090";

fn tenantry(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .current_dir(dir)
        .env("TENANTRY_SIGNING_KEY", crate::support::SIGNING_KEY)
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG")
        .env_remove("TENANTRY_MASTER_KEY")
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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

fn post(server: &ServeProcess, tenant: &str, body: Value) -> Value {
    let mut c = claims(tenant);
    c["env"] = json!("prod");
    let auth = format!("Bearer {}", sign(&c));
    server
        .post(
            "/api/v1/messages",
            &[("Authorization", &auth), ("X-Tenant-ID", tenant)],
            &body.to_string(),
        )
        .ok()
}

/// The paths of files under `dir` whose bytes contain `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    hits.push(path.display().to_string());
                }
            }
        }
    }
    hits
}

/// Every file's bytes under `dir`, sorted by path; without the offline commands' cache of the
/// stream (`log-offline`), which any offline command brings to the stream.
fn snapshot_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.ends_with("log-offline") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// acme: ada (two messages, one with a message id) and bob; bigcorp: carol. Stopped, so the
/// snapshots are written. Returns the dir and ada's and bob's sessions.
fn seeded(backend: &Backend) -> (tempfile::TempDir, String, String) {
    let mut server = backend.serve().start();
    let a = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA, "text": ADA_TEXT,
               "message_id": "ada-1"}),
    );
    post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA,
               "text": format!("again {ADA_TEXT}")}),
    );
    let b = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": BOB, "text": BOB_TEXT}),
    );
    post(
        &server,
        "bigcorp",
        json!({"team": "helpdesk", "channel": "webchat", "user": "carol", "text": CAROL_TEXT}),
    );
    assert!(server.stop().success());
    let ada = a["session"].as_str().unwrap().to_owned();
    let bob = b["session"].as_str().unwrap().to_owned();
    (server.take_dir(), ada, bob)
}

fn export(dir: &Path, tenant: &str, format: &str) -> String {
    ok(&tenantry(
        dir,
        &["export", "--tenant", tenant, "--format", format],
    ))
}

fn verify_export(dir: &Path, tenant: &str) {
    let file = dir.join(format!("{tenant}.jsonl"));
    std::fs::write(&file, export(dir, tenant, "jsonl")).unwrap();
    let out = tenantry(dir, &["verify", file.to_str().unwrap()]);
    ok(&out);
    ok(&tenantry(dir, &["verify", "--tenant", tenant]));
}

#[test]
fn erasing_a_session_removes_its_personal_data_from_every_file_and_export() {
    erasing_a_session_offline(&Backend::Sled);
}

#[test]
fn erasing_a_session_on_jetstream_removes_its_personal_data_from_every_file_and_the_stream() {
    erasing_a_session_offline(&Backend::jetstream());
}

fn erasing_a_session_offline(backend: &Backend) {
    let (dir, ada, bob) = seeded(backend);
    let data = dir.path().join("data");
    // Before the erasure ada's user id is in plain in her snapshot; her texts and id are
    // sealed in the log (and the stream) already.
    assert!(!files_containing(&data, ADA).is_empty());
    assert!(export(dir.path(), "acme", "jsonl").contains(ADA_TEXT));

    // Bad input: another env, an unknown session, no --yes: refused, nothing changes.
    let before = snapshot_of(&data);
    for (args, says) in [
        (
            vec!["--env", "staging", "--session", ada.as_str(), "--yes"],
            "has no session",
        ),
        (
            vec!["--env", "prod", "--session", "no-such-session", "--yes"],
            "has no session",
        ),
        (
            vec!["--env", "prod", "--user", "nobody-here", "--yes"],
            "has no session",
        ),
        (vec!["--env", "prod", "--session", ada.as_str()], "--yes"),
    ] {
        let mut all = vec!["erase", "--tenant", "acme"];
        all.extend(args.iter().copied());
        let out = tenantry(dir.path(), &all);
        assert!(!out.status.success(), "{all:?} succeeded");
        assert!(
            text(&out.stderr).contains(says),
            "{all:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(
        snapshot_of(&data) == before,
        "a refused erase changed the data dir"
    );

    let out = ok(&tenantry(
        dir.path(),
        &[
            "erase",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--session",
            &ada,
            "--yes",
            "--format",
            "json",
        ],
    ));
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["keys_destroyed"], 1, "{report}");
    assert_eq!(report["idempotency_records"], 1, "{report}");
    assert_eq!(
        report["sessions"],
        json!([format!("support/{ada}")]),
        "{report}"
    );
    assert!(report["events"].as_u64().unwrap() >= 5, "{report}");

    // The compacted log kept its backend file.
    let (log, says) = backend.offline_log();
    assert_eq!(
        std::fs::read_to_string(data.join(log).join("backend"))
            .unwrap()
            .trim(),
        says
    );
    // No file under the data dir (or the nats-server's) holds ada's text or user id any more.
    for canary in [ADA, ADA_TEXT] {
        let hits = backend.files_containing(&data, canary);
        assert!(hits.is_empty(), "{canary} still in {hits:?}");
    }
    // Exports: ada's events stay, erased; bob's and carol's personal data still read.
    for format in ["jsonl", "csv"] {
        let acme = export(dir.path(), "acme", format);
        assert!(
            !acme.contains(ADA) && !acme.contains(ADA_TEXT),
            "{format}: {acme}"
        );
        assert!(acme.contains(BOB) && acme.contains(BOB_TEXT), "{format}");
        assert!(acme.contains(&ada), "ada's events are kept");
    }
    let jsonl = export(dir.path(), "acme", "jsonl");
    let ada_lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["session"] == ada.as_str())
        .collect();
    let received = ada_lines
        .iter()
        .find(|l| l["kind"] == "MessageReceived")
        .unwrap();
    assert_eq!(
        received["data"],
        json!({"message_id": "ada-1", "erased": true}),
        "{received}"
    );
    let node = ada_lines
        .iter()
        .find(|l| l["kind"] == "NodeEntered")
        .unwrap();
    assert!(
        node["data"].get("erased").is_none(),
        "no personal fields: {node}"
    );
    assert!(export(dir.path(), "bigcorp", "jsonl").contains(CAROL_TEXT));
    verify_export(dir.path(), "acme");
    verify_export(dir.path(), "bigcorp");

    // Replay shows the erased events.
    let replay = ok(&tenantry(
        dir.path(),
        &[
            "replay",
            "--tenant",
            "acme",
            "--session",
            &ada,
            "--format",
            "json",
        ],
    ));
    assert!(
        replay.contains("\"erased\":true") && !replay.contains(ADA_TEXT),
        "{replay}"
    );

    // The server reads the erased session; a new message of ada opens a new session.
    let server = backend.serve().in_dir(dir.path()).start();
    let events = server.get_as("acme", &format!("/api/v1/sessions/{ada}/events"));
    assert_eq!(events.status, 200, "{}", events.body);
    assert!(events.body.contains("\"erased\":true") && !events.body.contains(ADA_TEXT));
    // The session's state and a what-if re-run read it too, never an error.
    let state = server.get_as("acme", &format!("/api/v1/sessions/{ada}"));
    assert_eq!(state.status, 200, "{}", state.body);
    assert!(!state.body.contains(ADA) && !state.body.contains(ADA_TEXT));
    let flow = std::fs::read_to_string(dir.path().join("flows/acme_support.yaml")).unwrap();
    let auth = crate::support::bearer("acme");
    let what_if = server.post(
        &format!("/api/v1/sessions/{ada}/what-if"),
        &[("Authorization", &auth), ("X-Tenant-ID", "acme")],
        &flow,
    );
    assert_eq!(what_if.status, 200, "{}", what_if.body);
    assert!(!what_if.body.contains(ADA_TEXT), "{}", what_if.body);
    let again = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA, "text": "hello again"}),
    );
    assert_ne!(again["session"], ada.as_str(), "{again}");
    let bob_events = server.get_as("acme", &format!("/api/v1/sessions/{bob}/events"));
    assert!(bob_events.body.contains(BOB_TEXT), "{}", bob_events.body);
}

#[test]
fn erasing_a_user_erases_all_their_sessions_and_leaves_others() {
    erasing_a_user(&Backend::Sled);
}

#[test]
fn erasing_a_user_on_jetstream_erases_all_their_sessions_and_leaves_others() {
    erasing_a_user(&Backend::jetstream());
}

fn erasing_a_user(backend: &Backend) {
    let (dir, _ada, bob) = seeded(backend);
    let data = dir.path().join("data");
    let out = ok(&tenantry(
        dir.path(),
        &[
            "erase", "--tenant", "acme", "--env", "prod", "--user", BOB, "--yes",
        ],
    ));
    assert!(out.contains(&bob), "{out}");
    for canary in [BOB, BOB_TEXT] {
        let hits = backend.files_containing(&data, canary);
        assert!(hits.is_empty(), "{canary} still in {hits:?}");
    }
    let acme = export(dir.path(), "acme", "jsonl");
    assert!(!acme.contains(BOB_TEXT) && acme.contains(ADA_TEXT));
    verify_export(dir.path(), "acme");
    // Erasing again finds the user no more (the session meta forgot the user id).
    let out = tenantry(
        dir.path(),
        &[
            "erase", "--tenant", "acme", "--env", "prod", "--user", BOB, "--yes",
        ],
    );
    assert!(!out.status.success() && text(&out.stderr).contains("has no session"));
}

#[test]
fn erasing_a_session_written_unsealed_warns_that_its_events_keep_their_texts() {
    let mut server = Serve::shipped().section("log", "seal = false").start();
    let reply = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA, "text": ADA_TEXT}),
    );
    assert!(server.stop().success());
    let dir = server.take_dir();
    let session = reply["session"].as_str().unwrap();
    let out = tenantry(
        dir.path(),
        &[
            "erase",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--session",
            session,
            "--yes",
        ],
    );
    ok(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("1 of the sessions had no data key"),
        "{stderr}"
    );
    // The text is inside the hashed v2 bodies: still there, and the chain still verifies.
    assert!(export(dir.path(), "acme", "jsonl").contains(ADA_TEXT));
    verify_export(dir.path(), "acme");
}

/// A bearer token of `tenant` in `env` with these extra claims (`scope`, `team`).
fn bearer(tenant: &str, env: &str, extra: &[(&str, &str)]) -> String {
    let mut c = claims(tenant);
    c["env"] = json!(env);
    for (k, v) in extra {
        c[*k] = json!(v);
    }
    format!("Bearer {}", sign(&c))
}

fn delete(
    server: &ServeProcess,
    tenant: &str,
    path: &str,
    headers: &[(&str, String)],
) -> crate::support::Reply {
    crate::support::read(
        headers
            .iter()
            .fold(server.agent().delete(&server.url(path)), |r, (k, v)| {
                r.header(*k, v.as_str())
            })
            .header("X-Tenant-ID", tenant)
            .call(),
    )
}

#[test]
fn erasing_a_session_online_removes_its_personal_data_from_every_file_while_served() {
    erasing_a_session_online(&Backend::Sled);
}

#[test]
fn erasing_a_session_online_on_jetstream_removes_its_personal_data_from_every_file_and_the_stream()
{
    erasing_a_session_online(&Backend::jetstream());
}

fn erasing_a_session_online(backend: &Backend) {
    let mut server = backend.serve().start();
    let a = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA, "text": ADA_TEXT,
               "message_id": "ada-1"}),
    );
    post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA,
               "text": format!("again {ADA_TEXT}")}),
    );
    post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": BOB, "text": BOB_TEXT}),
    );
    post(
        &server,
        "bigcorp",
        json!({"team": "helpdesk", "channel": "webchat", "user": "carol", "text": CAROL_TEXT}),
    );
    let ada = a["session"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/sessions/{ada}");
    let dir = server.take_dir();
    let data = dir.path().join("data");
    let export = |server: &ServeProcess| {
        let reply = server.get_as("acme", "/api/v1/audit/export");
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    };
    assert!(export(&server).contains(ADA_TEXT));

    // Refusals change nothing: no admin scope, another tenant, another env, unknown session.
    let admin = |tenant: &str, env: &str| bearer(tenant, env, &[("scope", "admin")]);
    let refused: Vec<(&str, String, &str, u16, &str)> = vec![
        (
            "acme",
            bearer("acme", "prod", &[]),
            path.as_str(),
            403,
            "scope_required",
        ),
        (
            "bigcorp",
            admin("bigcorp", "prod"),
            path.as_str(),
            404,
            "session_not_found",
        ),
        (
            "acme",
            admin("acme", "staging"),
            path.as_str(),
            404,
            "session_not_found",
        ),
        (
            "acme",
            admin("acme", "prod"),
            "/api/v1/sessions/no-such-session",
            404,
            "session_not_found",
        ),
        (
            "acme",
            bearer("acme", "prod", &[("scope", "admin"), ("team", "sales")]),
            path.as_str(),
            404,
            "session_not_found",
        ),
    ];
    for (tenant, auth, at, status, code) in refused {
        let headers = [("Authorization", auth)];
        let reply = delete(&server, tenant, at, &headers);
        assert_eq!(reply.status, status, "{headers:?}: {}", reply.body);
        assert!(reply.body.contains(code), "{headers:?}: {}", reply.body);
    }
    // The offline command refuses while the server runs: it would keep the erased keys.
    let offline = tenantry(
        dir.path(),
        &[
            "erase",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--session",
            &ada,
            "--yes",
        ],
    );
    assert!(!offline.status.success());
    assert!(
        text(&offline.stderr).contains("in use by a running server"),
        "{}",
        text(&offline.stderr)
    );
    assert!(export(&server).contains(ADA_TEXT), "a refusal erased");
    // On JetStream the offline commands read beside the server, through their own cache.
    let offline_export = || {
        let args = ["export", "--tenant", "acme", "--format", "jsonl"];
        ok(&tenantry(dir.path(), &args))
    };
    let jetstream = matches!(backend, Backend::JetStream(_));
    if jetstream {
        assert!(offline_export().contains(ADA_TEXT));
    }

    let reply = delete(
        &server,
        "acme",
        &path,
        &[("Authorization", admin("acme", "prod"))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let report = reply.json();
    assert_eq!(report["keys_destroyed"], 1, "{report}");
    assert_eq!(report["idempotency_records"], 1, "{report}");
    assert_eq!(report["sessions"], json!([format!("support/{ada}")]));

    // While still served: no file holds ada's id or texts; the export shows her events erased
    // and still verifies; bob's and carol's data still read.
    let check = |server: &ServeProcess| {
        for canary in [ADA, ADA_TEXT] {
            let hits = backend.files_containing(&data, canary);
            assert!(hits.is_empty(), "{canary} still in {hits:?}");
        }
        let acme = export(server);
        assert!(!acme.contains(ADA) && !acme.contains(ADA_TEXT), "{acme}");
        assert!(acme.contains("\"erased\":true"), "{acme}");
        assert!(acme.contains(BOB) && acme.contains(BOB_TEXT));
        let verify = server.get_as("acme", "/api/v1/audit/verify");
        assert_eq!(verify.status, 200, "{}", verify.body);
        let last: Value = serde_json::from_str(verify.body.lines().last().unwrap()).unwrap();
        assert_eq!(last["result"]["ok"], true, "{}", verify.body);
        let carol = server.get_as("bigcorp", "/api/v1/audit/export").body;
        assert!(carol.contains(CAROL_TEXT));
    };
    check(&server);
    if jetstream {
        // The offline cache made before the erasure reads it too (erased, not an error).
        let acme = offline_export();
        assert!(
            acme.contains("\"erased\":true") && !acme.contains(ADA_TEXT),
            "{acme}"
        );
        assert!(acme.contains(BOB_TEXT), "{acme}");
    }
    // The session is gone for a second erase too: it has no personal data left to find.
    let sessions = server.get_as("acme", "/api/v1/sessions").ok();
    assert!(!sessions.to_string().contains(ADA), "{sessions}");
    // After a stop (snapshots written, files flushed) and a restart: still nothing.
    assert!(server.stop().success());
    for canary in [ADA, ADA_TEXT] {
        let hits = backend.files_containing(&data, canary);
        assert!(hits.is_empty(), "{canary} still in {hits:?} after the stop");
    }
    let server = backend.serve().in_dir(dir.path()).start();
    check(&server);
}

#[test]
fn erasing_online_a_session_written_unsealed_is_refused_and_changes_nothing() {
    let server = Serve::shipped().section("log", "seal = false").start();
    let reply = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA, "text": ADA_TEXT}),
    );
    let session = reply["session"].as_str().unwrap();
    let auth = bearer("acme", "prod", &[("scope", "admin")]);
    let path = format!("/api/v1/sessions/{session}");
    let refused = delete(&server, "acme", &path, &[("Authorization", auth)]);
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body.contains("erase_offline"), "{}", refused.body);
    assert!(refused.body.contains("tenantry erase"), "{}", refused.body);
    let export = server.get_as("acme", "/api/v1/audit/export");
    assert!(export.body.contains(ADA_TEXT), "nothing was erased");
}

#[test]
fn a_jetstream_cluster_node_refuses_erasure_and_says_why() {
    let backend = Backend::jetstream();
    let mut server = backend.serve().section("cluster", "node = \"n1\"").start();
    let reply = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": ADA, "text": ADA_TEXT}),
    );
    let session = reply["session"].as_str().unwrap().to_owned();
    let auth = bearer("acme", "prod", &[("scope", "admin")]);
    let path = format!("/api/v1/sessions/{session}");
    let refused = delete(&server, "acme", &path, &[("Authorization", auth)]);
    assert_eq!(refused.status, 501, "{}", refused.body);
    assert!(
        refused.body.contains("not_supported") && refused.body.contains("[cluster]"),
        "{}",
        refused.body
    );
    assert!(server.stop().success());
    let dir = server.take_dir();
    let out = tenantry(
        dir.path(),
        &[
            "erase",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--session",
            &session,
            "--yes",
        ],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("[cluster]") && stderr.contains("no cluster key"),
        "{stderr}"
    );
    assert!(export(dir.path(), "acme", "jsonl").contains(ADA_TEXT));
}
