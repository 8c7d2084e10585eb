//! Stream compaction against a real nats-server: old values leave the stream, every cache still
//! equals the compacting node's, interleaved appends survive, a follower behind the purge
//! rebuilds.

use crate::events::log::fixtures::{holds, own_key, put, raw_payloads};

use crate::events::keys;
use crate::events::log::replica::tests::{connect_replica, events, group, JetStreamServer};
use crate::events::log::{AppendGroup, EventLog, LogOptions};
use crate::events::schema::EventKind;
use crate::tenancy::fixtures::id;
use crate::tenancy::TenantId;

fn tenant_keys(log: &EventLog, tenant: &TenantId) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = log.inner.shared.store().unwrap();
    tree_keys(&store.tree, tenant)
}

fn tree_keys(tree: &sled::Tree, tenant: &TenantId) -> Vec<(Vec<u8>, Vec<u8>)> {
    tree.scan_prefix(keys::tenant_prefix(tenant))
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

/// A message of about `bytes` bytes of text in session `s1` after `expected_seq` events.
fn big(expected_seq: u64, n: u64, bytes: usize) -> AppendGroup {
    let mut g = group("acme", "s1", expected_seq, &format!("m{n}"));
    g.kinds = vec![EventKind::MessageReceived {
        message_id: format!("m{n}"),
        user: "ada".into(),
        text: format!("{n:08}").repeat(bytes / 8),
    }];
    g
}

#[test]
fn compaction_removes_old_values_from_the_stream_and_every_cache_stays_equal() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.append_blocking(group("globex", "s1", 0, "m1")).unwrap();
    let acme = id("acme");
    log.apply_tenant_ops_blocking(&acme, vec![put(own_key("acme", "c"), "canary-old-value")])
        .unwrap();
    log.apply_tenant_ops_blocking(&acme, vec![put(own_key("acme", "c"), "the-new-value")])
        .unwrap();
    log.apply_tenant_ops_blocking(&acme, vec![(own_key("acme", "d").into(), None)])
        .unwrap();
    let replica = log.replica().unwrap().clone();
    assert!(holds(&raw_payloads(&replica), "canary-old-value"));

    let done = log.compact_tenant_records_blocking(&acme).unwrap();
    assert_eq!(done.chunks, 1);
    assert_eq!(
        done.purged, 4,
        "the append and the three ops records of acme"
    );
    let payloads = raw_payloads(&replica);
    assert!(!holds(&payloads, "canary-old-value"));
    assert!(holds(&payloads, "the-new-value"));
    assert!(
        holds(&payloads, "hello from globex"),
        "other tenants keep their records"
    );

    // Appends go on (fenced on the base record), and a fresh cache equals the compacting one.
    log.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
    let expected = (tenant_keys(&log, &acme), tenant_keys(&log, &id("globex")));
    drop(log);
    let fresh = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(tenant_keys(&fresh, &acme), expected.0);
    assert_eq!(tenant_keys(&fresh, &id("globex")), expected.1);
    assert_eq!(events(&fresh, "acme").len(), 3);
    // On sled there are no records: nothing to do.
    let dir = tempfile::tempdir().unwrap();
    let sled_log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    sled_log
        .append_blocking(group("acme", "s1", 0, "m1"))
        .unwrap();
    assert_eq!(
        sled_log.compact_tenant_records_blocking(&acme).unwrap(),
        Default::default()
    );
}

/// Enough events for several base chunks, and appends while the compaction runs: none is lost.
#[test]
fn appends_interleaved_with_a_compaction_are_not_lost() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m0")).unwrap();
    const BEFORE: u64 = 120;
    const DURING: u64 = 60;
    for n in 1..=BEFORE {
        log.append_blocking(big(n + 1, n, 14 * 1024)).unwrap();
    }
    let writer = log.clone();
    let appending = std::thread::spawn(move || {
        for n in BEFORE + 1..=BEFORE + DURING {
            writer.append_blocking(big(n + 1, n, 1024)).unwrap();
        }
    });
    let done = log.compact_tenant_records_blocking(&id("acme")).unwrap();
    appending.join().unwrap();
    assert!(done.chunks >= 2, "{done:?}");
    let expected = events(&log, "acme");
    assert_eq!(expected.len() as u64, 2 + BEFORE + DURING);
    let keys = tenant_keys(&log, &id("acme"));
    drop(log);
    let fresh = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(events(&fresh, "acme"), expected);
    assert_eq!(tenant_keys(&fresh, &id("acme")), keys);
}

/// A follower that knows a record the compaction purged, with a removal in the purged part it
/// never applied: it must rebuild (base records are puts only), not apply what follows.
#[test]
fn a_follower_behind_the_purge_point_rebuilds() {
    let server = JetStreamServer::start();
    let a = tempfile::tempdir().unwrap();
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    let acme = id("acme");
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.apply_tenant_ops_blocking(&acme, vec![put(own_key("acme", "gone"), "v")])
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = crate::events::log::fixtures::open_sled_when_free(dir.path());
    let tree = db.open_tree("log").unwrap();
    let follower = connect_replica(&server, "n2");
    follower.catch_up(&tree, &acme, None).unwrap();
    assert!(tree.get(own_key("acme", "gone")).unwrap().is_some());
    let local = crate::events::log::read::tenant_head(&tree, &acme).unwrap();

    log.apply_tenant_ops_blocking(&acme, vec![(own_key("acme", "gone").into(), None)])
        .unwrap();
    log.compact_tenant_records_blocking(&acme).unwrap();
    log.append_blocking(group("acme", "s1", 2, "m2")).unwrap();

    follower.catch_up(&tree, &acme, local).unwrap();
    assert_eq!(tree_keys(&tree, &acme), tenant_keys(&log, &acme));
    assert!(tree.get(own_key("acme", "gone")).unwrap().is_none());
}
