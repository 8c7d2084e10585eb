//! Retention with the JetStream backend, against a real nats-server: the trim reaches the stream
//! (its frames leave it) and every node's cache.

use super::*;
use crate::audit::verify::{verify_log, Verdict};
use crate::events::log::fixtures::{acme_support, ada_group};
use crate::events::log::fixtures::{holds, raw_payloads};
use crate::events::log::replica::tests::{events, JetStreamServer};
use crate::tenancy::fixtures::id;

#[test]
fn a_jetstream_trim_leaves_the_stream_and_every_cache_and_what_remains_verifies() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    let tenant = acme_support().tenant;
    // Ada's session: started at 100, messages at 200..=600; the old ones carry a canary.
    log.append_blocking(ada_group(0, String::new(), "", 100))
        .unwrap();
    for i in 1..=5u64 {
        let text = if i <= 3 {
            format!("old-canary-{i}")
        } else {
            format!("kept-{i}")
        };
        log.append_blocking(ada_group(i, format!("m{i}"), &text, 100 + 100 * i))
            .unwrap();
    }
    // Another tenant is untouched.
    log.append_blocking(crate::events::log::replica::tests::group(
        "globex", "s1", 0, "g1",
    ))
    .unwrap();
    let replica = log.replica().unwrap().clone();
    assert!(holds(&raw_payloads(&replica), "old-canary-2"));

    // Events at 100..=400 are older than 450: tenant_seqs 1..=4 go.
    let report = log.trim(&tenant, 450, 9_000).unwrap();
    assert_eq!((report.events, report.frames), (4, 4));
    assert!(report.purged_records >= 6, "{report:?}");
    let payloads = raw_payloads(&replica);
    for i in 1..=3 {
        assert!(
            !holds(&payloads, &format!("old-canary-{i}")),
            "canary {i} left in the stream"
        );
    }
    assert!(holds(&payloads, "kept-5"));
    assert!(holds(&payloads, "hello from globex"));

    let Verdict::Intact(summary) = verify_log(&log, &tenant).unwrap() else {
        panic!("the trimmed log verifies from its anchor")
    };
    assert_eq!(
        (summary.first_tenant_seq, summary.last_tenant_seq),
        (Some(5), Some(6))
    );
    let kept = events(&log, "acme");
    assert_eq!(kept.len(), 2);
    let globex = events(&log, "globex");
    drop(log);

    // A fresh node's cache shows the same remaining events, and verifies the same.
    let fresh = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(events(&fresh, "acme"), kept);
    assert_eq!(events(&fresh, "globex"), globex);
    assert_eq!(
        fresh
            .retention_anchor(&tenant)
            .unwrap()
            .map(|a| a.first_tenant_seq),
        Some(5)
    );
    assert!(matches!(
        verify_log(&fresh, &tenant).unwrap(),
        Verdict::Intact(_)
    ));
}

#[test]
fn in_a_cluster_only_the_owner_trims_and_a_follower_trims_with_it() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = server.open_node(a.path(), "a");
    let node_b = server.open_node(b.path(), "b");
    let tenant = acme_support().tenant;
    node_a.adopt_blocking(&tenant).unwrap();
    node_a
        .append_blocking(ada_group(0, String::new(), "", 100))
        .unwrap();
    for i in 1..=3u64 {
        node_a
            .append_blocking(ada_group(i, format!("m{i}"), "hi", 100 + 100 * i))
            .unwrap();
    }
    let refused = node_b.trim(&tenant, 250, 9_000);
    assert!(
        matches!(&refused, Err(TrimError::NotOwner(t)) if *t == id("acme")),
        "{refused:?}"
    );
    let report = node_a.trim(&tenant, 250, 9_000).unwrap();
    assert_eq!(report.events, 2);
    let kept = events(&node_a, "acme");
    crate::events::log::replica::tests::wait_until("B's cache is trimmed too", || {
        events(&node_b, "acme") == kept
    });
}
