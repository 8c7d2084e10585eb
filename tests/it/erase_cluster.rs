//! Crypto-shredding in a `[cluster]` of the JetStream backend (issue #15), with real nats-server
//! 2.15 and two `tenantry serve` nodes given the same cluster key: the nodes seal (no canary in
//! any stream message), the other node reads the owner's sessions through the shared KEK, only
//! the owner erases (the other names it), the other node then drops the erased session from
//! its exports and every file of its data dir, the owner reads the kept sessions under the
//! rotated KEK, seals its own appends, and signs chain
//! heads with the key the nodes agreed on, which verifies the whole export. A node that held a
//! snapshot of the erased session drops it. Offline, `tenantry erase` waits for the tenant's
//! lease to be free. Without a cluster key a node is refused, saying why
//! (`erase::a_jetstream_cluster_node_refuses_erasure_and_says_why`); with another one it does
//! not start.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::erase::files_containing;
use crate::offboard::{bearer, delete, tenantry, text};
use crate::offboard_jetstream::stream_holds;
use crate::support::{JetStream, Reply, Serve, ServeProcess};

/// The cluster key every node is given (64 hex characters).
const CLUSTER_KEY: &str = "6b1f0c9e2d4a5b7c8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f";
const STREAM: &str = "ERASECL";
const ADA: &str = "ada-cluster-user-41";
const ADA_TEXT: &str = "ada-cluster-canary-3307";
const BOB_TEXT: &str = "bob-cluster-canary-8125";
const CAROL_TEXT: &str = "carol-cluster-canary-6649";
/// How long a node may take to notice another node's records (it polls every 200 ms and
/// folds its read models every second or so) or to take a stopped node's tenants.
const WAIT: Duration = Duration::from_secs(20);

fn node_serve(url: &str, node: &str, key: &str) -> Serve {
    Serve::shipped()
        .section(
            "nats",
            &format!("url = \"{url}\"\nsubject_prefix = \"greentic.messaging\""),
        )
        .section(
            "log",
            &format!("backend = \"jetstream\"\nstream = \"{STREAM}\"\nreplicas = 1"),
        )
        .section(
            "audit",
            "head_sign_every_events = 1\nhead_sign_interval = \"1s\"",
        )
        .section("cluster", &format!("node = \"{node}\""))
        .env("TENANTRY_CLUSTER_KEY", key)
}

fn post(server: &ServeProcess, body: Value) -> Reply {
    let auth = bearer("acme", "prod", &[]);
    server.post(
        "/api/v1/messages",
        &[("Authorization", &auth), ("X-Tenant-ID", "acme")],
        &body.to_string(),
    )
}

/// Posts `text` from `user` to a new session of acme on `server`; the session's id.
fn start_session(server: &ServeProcess, user: &str, text: &str) -> String {
    let body = json!({"team": "support", "channel": "slack", "user": user, "text": text});
    post(server, body).ok()["session"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Asserts that no file under `dirs` holds ada's id or text.
fn assert_ada_gone(dirs: &[&Path]) {
    for dir in dirs {
        for canary in [ADA, ADA_TEXT] {
            let hits = files_containing(dir, canary);
            assert!(hits.is_empty(), "{canary} in {hits:?}");
        }
    }
}

fn erase(server: &ServeProcess, session: &str) -> Reply {
    let auth = bearer("acme", "prod", &[("scope", "admin")]);
    let path = format!("/api/v1/sessions/{session}");
    delete(
        server,
        &path,
        &[("Authorization", &auth), ("X-Tenant-ID", "acme")],
    )
}

fn export(server: &ServeProcess) -> String {
    let reply = server.get_as("acme", "/api/v1/audit/export");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// Polls `check` until it holds, for at most [`WAIT`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The tenant_seq of an export's last event (the line before the manifest).
fn last_seq(export: &str) -> u64 {
    let lines: Vec<&str> = export.lines().collect();
    let event: Value = serde_json::from_str(lines[lines.len() - 2]).unwrap();
    event["tenant_seq"].as_u64().unwrap()
}

/// The tenant_seqs of the heads in `server`'s export of acme: the stored ones (an API export
/// signs none of its own).
fn stored_heads(server: &ServeProcess) -> Vec<u64> {
    let e = export(server);
    let manifest: Value = serde_json::from_str(e.lines().last().unwrap()).unwrap();
    let heads = manifest["heads"].as_array().cloned().unwrap_or_default();
    heads
        .iter()
        .map(|h| h["tenant_seq"].as_u64().unwrap())
        .collect()
}

fn pubkey(dir: &Path) -> String {
    let out = tenantry(dir, &["keys", "export-pubkey"], b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn in_a_cluster_the_owner_erases_every_node_forgets_and_a_new_owner_reads_the_rest() {
    let js = JetStream::single();
    let url = js.url(0);
    // The first node takes every tenant's lease before it serves; the second follows them.
    let mut a = node_serve(&url, "a", CLUSTER_KEY).start();
    let b = node_serve(&url, "b", CLUSTER_KEY).start();
    let ada = start_session(&a, ADA, ADA_TEXT);
    let bob = start_session(&a, "bob", BOB_TEXT);
    wait_until("a signs and stores acme's head", || {
        !stored_heads(&a).is_empty()
    });
    for canary in [ADA, ADA_TEXT, BOB_TEXT] {
        assert!(
            !stream_holds(&url, STREAM, canary),
            "{canary} is in the stream unsealed"
        );
    }
    wait_until("b reads both sessions through the shared key", || {
        let e = export(&b);
        e.contains(ADA_TEXT) && e.contains(BOB_TEXT)
    });
    let refused = erase(&b, &ada);
    assert_eq!(refused.error(409), "not_owner", "{}", refused.body);
    assert!(refused.body.contains("node a"), "{}", refused.body);
    assert!(export(&a).contains(ADA_TEXT), "the refusal erased nothing");

    // a stops (its leases given back, its sessions' snapshots written): b takes acme, and
    // a, started again, follows it.
    let a_dir = a.take_dir();
    assert!(a.stop().success());
    let snapshots = files_containing(a_dir.path(), ADA);
    assert!(
        !snapshots.is_empty(),
        "a's snapshot of ada's session names her"
    );
    wait_until("b appends for acme", || {
        let reply = post(
            &b,
            json!({"team": "support", "channel": "slack", "user": "bob", "text": CAROL_TEXT,
                   "session": bob}),
        );
        reply.status == 200
    });
    let a = node_serve(&url, "a", CLUSTER_KEY)
        .in_dir(a_dir.path())
        .start();
    let refused = erase(&a, &ada);
    assert_eq!(refused.error(409), "not_owner", "{}", refused.body);
    assert!(refused.body.contains("node b"), "{}", refused.body);

    // b erases: its export keeps bob's session (read under the rotated KEK) and its own
    // sealed append; a drops ada's session from its export and her snapshot from its disk.
    let erased = erase(&b, &ada).ok();
    assert_eq!(erased["keys_destroyed"], 1, "{erased}");
    let on_b = export(&b);
    assert!(!on_b.contains(ADA_TEXT), "{on_b}");
    assert!(
        on_b.contains(BOB_TEXT) && on_b.contains(CAROL_TEXT),
        "{on_b}"
    );
    assert!(on_b.contains("\"erased\":true"), "{on_b}");
    assert!(!stream_holds(&url, STREAM, CAROL_TEXT));
    wait_until("a drops the erased session and keeps the others", || {
        let e = export(&a);
        !e.contains(ADA_TEXT) && e.contains(BOB_TEXT) && e.contains(CAROL_TEXT)
    });
    wait_until("a removes its snapshots made before the erasure", || {
        files_containing(a_dir.path(), ADA).is_empty()
    });

    // One chain head key for the cluster: b signs and stores heads after it took acme (its
    // API export adds no head of its own) with the key a stored, so the export carries heads
    // of both nodes and verifies against that one public key.
    let before = last_seq(&export(&b));
    post(
        &b,
        json!({"team": "support", "channel": "slack", "user": "bob", "text": "one more",
               "session": bob}),
    )
    .ok();
    wait_until("b signs and stores an acme head", || {
        let seqs = stored_heads(&b);
        seqs.iter().any(|&s| s < before) && seqs.iter().any(|&s| s >= before)
    });
    assert_eq!(pubkey(a_dir.path()), pubkey(&b.dir));
    std::fs::write(b.dir.join("key.pub"), pubkey(&b.dir)).unwrap();
    std::fs::write(b.dir.join("acme.jsonl"), export(&b)).unwrap();
    let out = tenantry(
        &b.dir,
        &["verify", "acme.jsonl", "--pubkey", "key.pub"],
        b"",
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    assert_ada_gone(&[a_dir.path(), b.dir.as_path(), js.dir()]);
}

/// Offline, beside a cluster: `tenantry erase` from a data dir given the cluster key in
/// `{data_dir}/cluster.key` is refused while a live node holds the tenant's lease, and goes
/// ahead once none does; the node, started again, reads the erasure from the stream.
#[test]
fn offline_erase_in_a_cluster_waits_for_the_lease_and_reaches_every_node() {
    use std::os::unix::fs::PermissionsExt;
    let js = JetStream::single();
    let url = js.url(0);
    let mut a = node_serve(&url, "a", CLUSTER_KEY).start();
    let ada = start_session(&a, ADA, ADA_TEXT);
    start_session(&a, "bob", BOB_TEXT);

    let c = crate::support::dir_with_flows();
    node_serve(&url, "c", CLUSTER_KEY)
        .in_dir(c.path())
        .write_config();
    let key_file = c.path().join("data/cluster.key");
    std::fs::create_dir_all(key_file.parent().unwrap()).unwrap();
    std::fs::write(&key_file, format!("{CLUSTER_KEY}\n")).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let args = [
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
    ];
    let held = tenantry(c.path(), &args, b"");
    assert!(!held.status.success());
    let stderr = text(&held.stderr);
    assert!(
        stderr.contains("node a") && stderr.contains("DELETE /api/v1/sessions"),
        "{stderr}"
    );
    assert!(export(&a).contains(ADA_TEXT), "the refusal erased nothing");

    let a_dir = a.take_dir();
    assert!(a.stop().success());
    let out = tenantry(c.path(), &args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let erased: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(erased["keys_destroyed"], 1, "{erased}");

    let a = node_serve(&url, "a", CLUSTER_KEY)
        .in_dir(a_dir.path())
        .start();
    wait_until("a reads the erasure and removes its snapshots", || {
        let e = export(&a);
        !e.contains(ADA_TEXT)
            && e.contains(BOB_TEXT)
            && files_containing(a_dir.path(), ADA).is_empty()
    });
    assert_ada_gone(&[a_dir.path(), c.path(), js.dir()]);
}

#[test]
fn a_node_with_another_cluster_key_does_not_start_and_says_which() {
    let js = JetStream::single();
    let url = js.url(0);
    let _a = node_serve(&url, "a", CLUSTER_KEY).start();
    let other = "11".repeat(32);
    let (_dir, out) = node_serve(&url, "b", &other).output();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cluster key") && stderr.contains("TENANTRY_CLUSTER_KEY"),
        "{stderr}"
    );
}
