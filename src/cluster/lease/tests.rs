//! Leases on a real nats-server 2.15: one owner per tenant, failover after a node dies.

use std::time::{Duration, Instant};

use super::*;
use crate::events::log::replica::tests::{events, group, wait_until, JetStreamServer};
use crate::events::log::{AppendError, AppendOutcome};
use crate::tenancy::fixtures::id;

const TTL: Duration = Duration::from_secs(1);

fn tenants() -> Vec<TenantId> {
    ["acme", "globex", "initech", "umbrella"]
        .iter()
        .map(|t| id(t))
        .collect()
}

#[test]
fn every_tenant_has_one_owner_and_a_dead_nodes_tenants_move_to_the_survivor() {
    let server = JetStreamServer::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Leases::start(server.open_node(a_dir.path(), "a"), tenants(), TTL).unwrap();
    let b = Leases::start(server.open_node(b_dir.path(), "b"), tenants(), TTL).unwrap();
    // Each tenant: Local on exactly one node, Remote(that node) on the other.
    wait_until("every tenant is owned and both nodes agree", || {
        tenants().iter().all(|t| match (a.route(t), b.route(t)) {
            (Route::Local, Route::Remote(owner)) => owner == "a",
            (Route::Remote(owner), Route::Local) => owner == "b",
            _ => false,
        })
    });
    let on_a: Vec<TenantId> = tenants()
        .into_iter()
        .filter(|t| a.route(t) == Route::Local)
        .collect();
    for t in tenants() {
        assert_eq!(a.log.owns(&t), a.route(&t) == Route::Local, "{t}");
        assert_eq!(b.log.owns(&t), b.route(&t) == Route::Local, "{t}");
    }
    // a crashes (no lease given back): within the lease and a tick or two, b owns everything.
    a.abandon();
    let started = Instant::now();
    wait_until("b owns every tenant", || {
        tenants().iter().all(|t| b.route(t) == Route::Local)
    });
    assert!(
        started.elapsed() < TTL * 4,
        "failover took {:?}",
        started.elapsed()
    );
    // b appends for a's former tenants; a, whose log still believes it owns them, is fenced.
    if let Some(t) = on_a.first() {
        let name = t.as_str();
        b.log.append_blocking(group(name, "s1", 0, "m1")).unwrap();
        let fenced = a.log.append_blocking(group(name, "s2", 0, "m2"));
        assert!(matches!(fenced, Err(AppendError::Failed(_))), "{fenced:?}");
        assert_eq!(events(&b.log, name).len(), 2);
    }
    b.stop();
}

#[test]
fn a_stopped_node_gives_its_leases_back_at_once() {
    let server = JetStreamServer::start();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ttl = Duration::from_secs(30);
    let a = Leases::start(server.open_node(a_dir.path(), "a"), tenants(), ttl).unwrap();
    wait_until("a owns everything", || {
        tenants().iter().all(|t| a.route(t) == Route::Local)
    });
    let b = Leases::start(server.open_node(b_dir.path(), "b"), tenants(), ttl).unwrap();
    wait_until("b routes to a", || {
        tenants()
            .iter()
            .all(|t| b.route(t) == Route::Remote("a".into()))
    });
    a.stop();
    assert!(tenants().iter().all(|t| !a.log.owns(t)));
    // Far sooner than the 30 s lease: the keys were deleted.
    let started = Instant::now();
    wait_until("b owns everything", || {
        tenants().iter().all(|t| b.route(t) == Route::Local)
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    let appended = b.log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    assert!(matches!(appended, AppendOutcome::Appended(_)));
    b.stop();
}

#[test]
fn rendezvous_hashing_is_the_same_on_every_node_and_spreads_tenants() {
    let nodes: HashSet<String> = ["n1", "n2", "n3"].iter().map(|n| n.to_string()).collect();
    let mut count: HashMap<&str, usize> = HashMap::new();
    for i in 0..60 {
        let t = id(&format!("t{i}"));
        let first = preferred(&t, &nodes).unwrap();
        assert_eq!(preferred(&t, &nodes.clone()), Some(first));
        *count.entry(first).or_default() += 1;
    }
    assert_eq!(count.len(), 3, "{count:?}");
    // Removing a node moves only its tenants.
    let two: HashSet<String> = ["n1", "n2"].iter().map(|n| n.to_string()).collect();
    for i in 0..60 {
        let t = id(&format!("t{i}"));
        let before = preferred(&t, &nodes).unwrap();
        if before != "n3" {
            assert_eq!(preferred(&t, &two), Some(before));
        }
    }
}

/// What the offline `tenant delete` asks: no bucket (no cluster node ever ran) and a given-back
/// lease are no holder; a live lease names its node. Asking creates no bucket.
#[test]
fn the_holder_of_a_lease_is_the_live_node_that_took_it() {
    let server = JetStreamServer::start();
    let (a_dir, offline_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let offline = server.open(offline_dir.path(), "LOG", "offline").unwrap();
    assert_eq!(holder(&offline, &id("acme")).unwrap(), None);
    let replica = offline.replica().unwrap();
    let js = replica.jetstream();
    let bucket = replica.block_on(js.get_stream(format!("KV_{}", bucket_name("LOG"))));
    assert!(bucket.is_err(), "asking made a bucket");
    let a = Leases::start(server.open_node(a_dir.path(), "a"), vec![id("acme")], TTL).unwrap();
    assert_eq!(holder(&offline, &id("acme")).unwrap().as_deref(), Some("a"));
    assert_eq!(holder(&offline, &id("globex")).unwrap(), None);
    a.stop();
    assert_eq!(holder(&offline, &id("acme")).unwrap(), None);
}
