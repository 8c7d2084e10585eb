//! Signed heads on the JetStream backend: they travel in the stream, and only the tenant's
//! writer publishes them.

use super::HeadStored;
use crate::events::log::replica::tests::{group, JetStreamServer};
use crate::tenancy::fixtures::id;

#[test]
fn a_signed_head_reaches_a_fresh_cache_through_the_stream() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let writer = server.open(a.path(), "LOG", "n1").unwrap();
    writer
        .append_blocking(group("acme", "s1", 0, "m1"))
        .unwrap();
    let stored = writer
        .put_signed_head(&id("acme"), 2, b"head-at-2")
        .unwrap();
    assert_eq!(stored, HeadStored::Stored);
    assert_eq!(
        writer.signed_heads(&id("acme"), u64::MAX, 8).unwrap(),
        vec![(2, b"head-at-2".to_vec())]
    );
    drop(writer);
    // Another node's cache, built from the stream alone, has it too (it used to stay in the
    // writer's local files, and a rebuild of the cache lost it).
    let fresh = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(
        fresh.signed_heads(&id("acme"), u64::MAX, 8).unwrap(),
        vec![(2, b"head-at-2".to_vec())]
    );
    assert!(fresh
        .signed_heads(&id("globex"), u64::MAX, 8)
        .unwrap()
        .is_empty());
}

#[test]
fn a_cluster_node_that_does_not_own_the_tenant_publishes_no_head() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let owner = server.open_node(a.path(), "n1");
    owner.adopt_blocking(&id("acme")).unwrap();
    owner.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    let other = server.open_node(b.path(), "n2");
    let replica = other.replica().unwrap().clone();
    let before = replica.stream_mark().unwrap();
    let stored = other.put_signed_head(&id("acme"), 2, b"head-at-2").unwrap();
    assert_eq!(stored, HeadStored::NotOwner);
    assert_eq!(
        replica.stream_mark().unwrap(),
        before,
        "nothing was published"
    );
    assert!(other
        .signed_heads(&id("acme"), u64::MAX, 8)
        .unwrap()
        .is_empty());
    // The owner's own head is published and stays appendable afterwards: no fencing fallout.
    assert_eq!(
        owner.put_signed_head(&id("acme"), 2, b"head-at-2").unwrap(),
        HeadStored::Stored
    );
    owner.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
}
