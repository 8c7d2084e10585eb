//! Tenant ops on both backends: durable on sled, carried to every cache on JetStream, refused
//! whole for a key that is not the tenant's.

use crate::events::log::fixtures::{own_key, put};
use serde_bytes::ByteBuf;

use crate::events::keys;
use crate::events::log::replica::tests::{events, group, wait_until, JetStreamServer};
use crate::events::log::replica::Op;
use crate::events::log::{AppendError, EventLog, LogOptions};
use crate::tenancy::fixtures::id;
use crate::tenancy::TenantId;

fn remove(key: Vec<u8>) -> Op {
    (ByteBuf::from(key), None)
}

/// The value of `key` in the log's cache (its sled tree).
fn read(log: &EventLog, key: &[u8]) -> Option<Vec<u8>> {
    let store = log.inner.shared.store().unwrap();
    store.tree.get(key).unwrap().map(|v| v.to_vec())
}

/// The stream's last sequence, read through the public JetStream context.
fn stream_last(replica: &crate::events::log::Replica) -> u64 {
    let js = replica.jetstream();
    let name = replica.stream_name().to_owned();
    replica.block_on(async move {
        let stream = js.get_stream(name).await.unwrap();
        stream.get_info().await.unwrap().state.last_sequence
    })
}

/// Every key and value of `tenant` in the log's tree.
fn tenant_keys(log: &EventLog, tenant: &TenantId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = log.inner.shared.store().unwrap();
    store
        .tree
        .scan_prefix(keys::tenant_prefix(tenant))
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

#[test]
fn tenant_ops_on_sled_are_durable_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    let acme = id("acme");
    log.apply_tenant_ops_blocking(&acme, vec![put(own_key("acme", "gone"), "old")])
        .unwrap();
    log.apply_tenant_ops_blocking(
        &acme,
        vec![
            remove(own_key("acme", "gone")),
            put(own_key("acme", "kept"), "new"),
        ],
    )
    .unwrap();
    drop(log);

    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    assert_eq!(read(&log, &own_key("acme", "kept")), Some(b"new".to_vec()));
    assert_eq!(read(&log, &own_key("acme", "gone")), None);
    // Appends go on after the ops.
    log.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
    assert_eq!(events(&log, "acme").len(), 3);
}

#[test]
fn a_key_outside_the_tenant_is_refused_and_nothing_changes() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = server.open(dir.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.append_blocking(group("acme2", "s1", 0, "m1")).unwrap();
    log.append_blocking(group("globex", "s1", 0, "m1")).unwrap();
    let before: Vec<_> = ["acme", "acme2", "globex"]
        .iter()
        .map(|t| tenant_keys(&log, &id(t)))
        .collect();
    let replica = log.replica().unwrap().clone();
    let last = replica.stream_mark().unwrap().0;

    let mut no_prefix = b"acme".to_vec();
    no_prefix.push(b'Z');
    let foreign = [
        own_key("globex", "x"),
        own_key("acme2", "x"),
        no_prefix,
        keys::ops_revision_key(&id("acme")),
    ];
    for key in foreign {
        // The foreign key comes after a valid one: the request is refused whole.
        let refused = log.apply_tenant_ops_blocking(
            &id("acme"),
            vec![put(own_key("acme", "ok"), "v"), put(key.clone(), "v")],
        );
        assert!(
            matches!(&refused, Err(AppendError::ForeignKey { tenant, .. }) if tenant.as_str() == "acme"),
            "{key:?}: {refused:?}"
        );
    }
    let after: Vec<_> = ["acme", "acme2", "globex"]
        .iter()
        .map(|t| tenant_keys(&log, &id(t)))
        .collect();
    assert_eq!(after, before);
    assert_eq!(replica.stream_mark().unwrap().0, last);
    // A tenant without events has no log to write beside.
    let refused =
        log.apply_tenant_ops_blocking(&id("initech"), vec![put(own_key("initech", "x"), "v")]);
    assert!(matches!(refused, Err(AppendError::NoLog(_))), "{refused:?}");
    assert!(tenant_keys(&log, &id("initech")).is_empty());
    // Ops too large for one record are refused whole too.
    let big = "x".repeat(crate::events::log::ops::TENANT_OPS_BYTES_MAX);
    let refused =
        log.apply_tenant_ops_blocking(&id("acme"), vec![put(own_key("acme", "big"), &big)]);
    assert!(
        matches!(&refused, Err(AppendError::OpsTooLarge { bytes, .. }) if *bytes > big.len()),
        "{refused:?}"
    );
    assert_eq!(tenant_keys(&log, &id("acme")), before[0]);
    assert_eq!(stream_last(&replica), last);
}

/// Node B's cache is at acme's head when A writes tenant ops (which keep the head): at its next
/// open B must still apply them, as must a node with an empty cache.
#[test]
fn tenant_ops_reach_a_cache_at_the_same_head_and_a_fresh_cache() {
    let server = JetStreamServer::start();
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.apply_tenant_ops_blocking(&id("acme"), vec![put(own_key("acme", "gone"), "old")])
        .unwrap();
    // Appends after ops are fenced on the ops record and go on.
    log.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
    drop(log);
    // B's cache: acme at its head, with the first ops.
    let b_log = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(
        read(&b_log, &own_key("acme", "gone")),
        Some(b"old".to_vec())
    );
    drop(b_log);

    let log = server.open(a.path(), "LOG", "n1").unwrap();
    log.apply_tenant_ops_blocking(
        &id("acme"),
        vec![
            remove(own_key("acme", "gone")),
            put(own_key("acme", "kept"), "new"),
        ],
    )
    .unwrap();
    log.apply_tenant_ops_blocking(&id("acme"), vec![put(own_key("acme", "last"), "x")])
        .unwrap();
    let expected = tenant_keys(&log, &id("acme"));
    drop(log);

    let b_log = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(read(&b_log, &own_key("acme", "gone")), None);
    assert_eq!(tenant_keys(&b_log, &id("acme")), expected);
    drop(b_log);
    let c_log = server.open(c.path(), "LOG", "n3").unwrap();
    assert_eq!(tenant_keys(&c_log, &id("acme")), expected);
    c_log.append_blocking(group("acme", "s1", 3, "m3")).unwrap();
    assert_eq!(events(&c_log, "acme").len(), 4);
}

#[test]
fn a_following_node_applies_the_owners_tenant_ops() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = server.open_node(a.path(), "a");
    let node_b = server.open_node(b.path(), "b");
    node_a.adopt_blocking(&id("acme")).unwrap();
    node_a
        .append_blocking(group("acme", "s1", 0, "m1"))
        .unwrap();
    node_a
        .apply_tenant_ops_blocking(&id("acme"), vec![put(own_key("acme", "gone"), "old")])
        .unwrap();
    wait_until("B has the first ops", || {
        read(&node_b, &own_key("acme", "gone")).is_some()
    });
    node_a
        .apply_tenant_ops_blocking(
            &id("acme"),
            vec![
                remove(own_key("acme", "gone")),
                put(own_key("acme", "kept"), "new"),
            ],
        )
        .unwrap();
    let expected = tenant_keys(&node_a, &id("acme"));
    wait_until("B's cache equals A's", || {
        tenant_keys(&node_b, &id("acme")) == expected
    });
    // B does not own acme: its ops are refused.
    let refused =
        node_b.apply_tenant_ops_blocking(&id("acme"), vec![put(own_key("acme", "b"), "v")]);
    assert!(
        matches!(refused, Err(AppendError::NotOwner(_))),
        "{refused:?}"
    );
    // And B, taking acme over, goes on from A's ops (its takeover carries the revision).
    node_b.adopt_blocking(&id("acme")).unwrap();
    node_b
        .apply_tenant_ops_blocking(&id("acme"), vec![put(own_key("acme", "b"), "v")])
        .unwrap();
    node_a.release(&id("acme"));
    wait_until("A follows B's ops", || {
        read(&node_a, &own_key("acme", "b")).is_some()
    });
}

#[test]
fn split_ops_keeps_the_order_and_each_part_fits_one_call() {
    use super::{split_ops, TENANT_OPS_BYTES_MAX};
    use serde_bytes::ByteBuf;
    let ops: Vec<_> = (0..3_000u32)
        .map(|i| {
            let key = ByteBuf::from(format!("acme\0Kkey-{i:05}").into_bytes());
            let value = (i % 3 != 0).then(|| ByteBuf::from(vec![7u8; 500]));
            (key, value)
        })
        .collect();
    let parts = split_ops(ops.clone());
    assert!(parts.len() > 1);
    for part in &parts {
        let bytes: usize = part
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 8)
            .sum();
        assert!(!part.is_empty() && bytes <= TENANT_OPS_BYTES_MAX, "{bytes}");
    }
    assert_eq!(parts.concat(), ops);
    assert!(split_ops(Vec::new()).is_empty());
}
