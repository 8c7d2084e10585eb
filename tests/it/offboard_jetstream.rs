//! Offboarding on the JetStream log backend (issue #15 item 2), against real nats-server 2.15
//! and `tenantry serve` processes: on a single node the admin route purges the tenant's subject
//! (its canary is in no stream message afterwards) and frees its data while the other tenant's
//! chain, events and usage stay as they were; in a two-node cluster only the owner deletes (the
//! other node names it), the other node then serves nothing of the tenant within a bounded wait,
//! and `tenantry tenant delete` is refused while a live node holds the tenant's lease, goes
//! ahead once none does, and a node that was down meanwhile drops the tenant at its next start.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::offboard::{bearer, chain_events, delete, post, tenantry, text, traffic, views, CANARY};
use crate::support::{JetStream, Serve, ServeProcess};

/// How long the other node may take to stop serving a deleted tenant (it polls the stream
/// every 200 ms and folds its read models every second or so).
const FORGET_WAIT: Duration = Duration::from_secs(15);

/// Node `node` with the shipped config on the JetStream log `stream` (in `dir`, or a fresh one).
fn jetstream_node(url: &str, stream: &str, node: &str, dir: Option<&Path>) -> ServeProcess {
    let mut serve = Serve::shipped()
        .section(
            "nats",
            &format!("url = \"{url}\"\nsubject_prefix = \"greentic.messaging\""),
        )
        .section(
            "log",
            &format!("backend = \"jetstream\"\nstream = \"{stream}\"\nreplicas = 1"),
        )
        .section("audit", "head_sign_interval = \"24h\"")
        .section("cluster", &format!("node = \"{node}\""));
    if let Some(dir) = dir {
        serve = serve.in_dir(dir);
    }
    serve.start()
}

/// Whether any message of `stream` holds `needle` (every message read raw by its sequence).
pub(crate) fn stream_holds(url: &str, stream: &str, needle: &str) -> bool {
    crate::support::tokio_runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(stream).await.unwrap();
        let state = stream.info().await.unwrap().state.clone();
        assert!(state.last_sequence > 0, "an empty stream proves nothing");
        for seq in state.first_sequence..=state.last_sequence {
            // A purged sequence is no message any more.
            let Ok(message) = stream.get_raw_message(seq).await else {
                continue;
            };
            let payload = &message.payload;
            if payload
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                return true;
            }
        }
        false
    })
}

/// The admin headers of `tenant` (a whole-tenant token with the `admin` scope).
fn admin(tenant: &str) -> (String, String) {
    (
        bearer(tenant, "prod", &[("scope", "admin")]),
        tenant.to_owned(),
    )
}

fn delete_as_admin(server: &ServeProcess, tenant: &str) -> crate::support::Reply {
    let (auth, id) = admin(tenant);
    let path = format!("/api/v1/tenants/{tenant}");
    delete(
        server,
        &path,
        &[("Authorization", &auth), ("X-Tenant-ID", &id)],
    )
}

/// What a node serves of `tenant`: its usage rows, its sessions and its chain's event count.
fn served(server: &ServeProcess, tenant: &str) -> (Value, Value, u64) {
    let usage = server.get_as(tenant, "/api/v1/usage").ok()["usage"].clone();
    let sessions = server.get_as(tenant, "/api/v1/sessions").ok()["sessions"].clone();
    let verify = server.get_as(tenant, "/api/v1/audit/verify");
    assert_eq!(verify.status, 200, "{}", verify.body);
    let last: Value = serde_json::from_str(verify.body.lines().last().unwrap()).unwrap();
    (usage, sessions, last["result"]["events"].as_u64().unwrap())
}

/// Polls `served` on `server` until `done` holds, for at most [`FORGET_WAIT`].
fn wait_for(server: &ServeProcess, tenant: &str, done: impl Fn(&(Value, Value, u64)) -> bool) {
    let deadline = Instant::now() + FORGET_WAIT;
    loop {
        let now = served(server, tenant);
        if done(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{tenant} on {}: still {now:?} after {FORGET_WAIT:?}",
            server.addr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn empty(now: &(Value, Value, u64)) -> bool {
    now.0 == json!([]) && now.1 == json!([]) && now.2 == 0
}

#[test]
fn offboarding_on_a_jetstream_node_purges_the_tenant_and_keeps_the_other() {
    let js = JetStream::single();
    let mut server = jetstream_node(&js.url(0), "OFFBOARD", "solo", None);
    traffic(&server, "one");
    assert!(stream_holds(&js.url(0), "OFFBOARD", CANARY));
    let bigcorp_before = views(&server, "bigcorp");
    let acme_before = views(&server, "acme");

    let freed = delete_as_admin(&server, "acme").ok();
    assert_eq!(freed["tenant"], "acme", "{freed}");
    assert_eq!(freed["events"], chain_events(&acme_before.0), "{freed}");
    for field in [
        "sessions",
        "idempotency_records",
        "log_keys",
        "read_model_rows",
    ] {
        assert!(freed[field].as_u64().unwrap() > 0, "{field}: {freed}");
    }
    assert!(
        !stream_holds(&js.url(0), "OFFBOARD", CANARY),
        "acme's canary is still in the stream"
    );
    assert!(stream_holds(&js.url(0), "OFFBOARD", "bigcorp one"));
    assert!(empty(&served(&server, "acme")));
    let (verify, export, _) = views(&server, "acme");
    assert!(!verify.contains(CANARY) && !export.contains(CANARY));
    assert!(
        views(&server, "bigcorp") == bigcorp_before,
        "bigcorp's chain, events or usage changed"
    );

    // Again: nothing to free. acme is still in the config: served again, from genesis.
    let again = delete_as_admin(&server, "acme").ok();
    assert_eq!(
        (again["events"].as_u64(), again["log_keys"].as_u64()),
        (Some(0), Some(0))
    );
    let ack = post(
        &server,
        "acme",
        json!({"team": "support", "channel": "slack", "user": "ada", "text": "fresh",
               "message_id": "a-one-0"}),
    );
    assert!(ack["duplicate"] != json!(true), "{ack}");
    chain_events(&views(&server, "acme").0);
    assert!(server.stop().success());
}

#[test]
fn in_a_cluster_the_owner_deletes_and_the_other_node_then_serves_nothing_of_the_tenant() {
    let js = JetStream::single();
    // The first node takes every tenant's lease before it serves; the second follows them.
    let mut a = jetstream_node(&js.url(0), "OFFCLUSTER", "a", None);
    let mut b = jetstream_node(&js.url(0), "OFFCLUSTER", "b", None);
    traffic(&a, "one");
    wait_for(&b, "acme", |now| {
        now.0 != json!([]) && now.1.as_array().is_some_and(|s| s.len() == 2) && now.2 > 0
    });
    wait_for(&b, "bigcorp", |now| now.2 > 0 && now.0 != json!([]));
    let bigcorp_on_b = served(&b, "bigcorp");
    let acme_on_a = served(&a, "acme");

    // b does not own acme: it names the owner and deletes nothing.
    let refused = delete_as_admin(&b, "acme");
    assert_eq!(refused.error(409), "not_owner", "{}", refused.body);
    assert!(refused.body.contains("node a"), "{}", refused.body);
    assert_eq!(served(&a, "acme"), acme_on_a);

    let freed = delete_as_admin(&a, "acme").ok();
    assert_eq!(freed["events"].as_u64(), Some(acme_on_a.2), "{freed}");
    assert!(empty(&served(&a, "acme")));
    // b drops acme's cache and read models: nothing of acme is served there any more.
    wait_for(&b, "acme", empty);
    let (_, export, _) = views(&b, "acme");
    assert!(!export.contains(CANARY), "{export}");
    assert_eq!(served(&b, "bigcorp"), bigcorp_on_b);

    // Offline, beside the cluster: refused while node a holds bigcorp's lease.
    let held = tenantry(&b.dir, &["tenant", "delete", "bigcorp", "--yes"], b"");
    assert!(!held.status.success());
    let stderr = text(&held.stderr);
    assert!(
        stderr.contains("node a") && stderr.contains("DELETE /api/v1/tenants/bigcorp"),
        "{stderr}"
    );
    assert_eq!(served(&b, "bigcorp"), bigcorp_on_b);
    assert!(served(&a, "bigcorp").2 > 0);

    // With both nodes stopped (their leases given back), it goes ahead from b's dir; a, down
    // meanwhile, drops bigcorp's cache, read models and snapshots (written at its stop) at its
    // next start.
    assert!(a.stop().success());
    assert!(b.stop().success());
    let a_snapshots = a.dir.join("data/sessions/bigcorp");
    assert!(a_snapshots.is_dir());
    let args = ["tenant", "delete", "bigcorp", "--yes", "--format", "json"];
    let out = tenantry(&b.dir, &args, b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let freed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(freed["events"].as_u64(), Some(bigcorp_on_b.2), "{freed}");
    assert!(!stream_holds(&js.url(0), "OFFCLUSTER", "bigcorp one"));
    let dir = a.take_dir();
    let a = jetstream_node(&js.url(0), "OFFCLUSTER", "a", Some(dir.path()));
    wait_for(&a, "bigcorp", empty);
    assert!(!a_snapshots.exists(), "a kept bigcorp's snapshots");
    assert_eq!(served(&a, "acme").2, 0);
}
