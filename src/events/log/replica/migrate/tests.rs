//! The migration against a real nats-server 2.15 (`sync_interval: always`), one per test.

use std::path::Path;

use super::super::tests::JetStreamServer;
use super::*;
use crate::events::log::replica::apply::decode_record;
use crate::events::log::{AppendGroup, AppendOutcome, ReplicaOptions, StoredEvent, TREE_NAME};
use crate::tenancy::fixtures::id;

const STREAM: &str = "LOG";

fn replica(server: &JetStreamServer) -> Replica {
    let opts = ReplicaOptions {
        stream: STREAM.into(),
        replicas: 1,
        node: "migrate".into(),
        cluster: false,
    };
    let url = server.url.clone();
    Replica::connect(&opts, || async move {
        async_nats::connect(url).await.map_err(|e| e.to_string())
    })
    .unwrap()
}

/// Ada's group in session `s1` of `tenant`: her start at 0, then her message `message_id`.
fn group(tenant: &str, expected_seq: u64, message_id: &str) -> AppendGroup {
    super::super::tests::group(tenant, "s1", expected_seq, message_id)
}

fn events(log: &EventLog, tenant: &str) -> Vec<StoredEvent> {
    log.tenant(&id(tenant))
        .events(1..=u64::MAX)
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A sled log with acme (3 events) and globex (3 events), the same session and message ids.
fn sled_log(dir: &Path) -> EventLog {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    for tenant in ["acme", "globex"] {
        log.append_blocking(group(tenant, 0, "m1")).unwrap();
        log.append_blocking(group(tenant, 2, "m2")).unwrap();
    }
    log
}

/// A run of the migration and the steps it reported, as `tenant: step` lines.
struct Run {
    report: MigrateReport,
    steps: Vec<String>,
}

impl Run {
    fn saw(&self, line: &str) -> bool {
        self.steps.iter().any(|s| s.starts_with(line))
    }
}

fn run(server: &JetStreamServer, log: &EventLog, scratch: &Path) -> Run {
    let mut steps = Vec::new();
    let report = migrate(
        log,
        replica(server),
        scratch,
        &SealedTenants::Refuse,
        &mut |tenant, step| {
            steps.push(format!("{tenant}: {step:?}"));
        },
    )
    .unwrap();
    assert!(!scratch.exists(), "the read-back's cache is removed");
    Run { report, steps }
}

fn names(tenants: &[TenantId]) -> Vec<&str> {
    tenants.iter().map(TenantId::as_str).collect()
}

/// The stream sequence and head of the tenant's last record.
fn last_record(server: &JetStreamServer, tenant: &str) -> Option<(u64, Head)> {
    let replica = replica(server);
    replica
        .rt
        .block_on(replica.last_record_if_any(&id(tenant)))
        .unwrap()
}

#[test]
fn tenants_sharing_ids_are_copied_and_a_fresh_cache_reads_the_same_events_and_message_ids() {
    let server = JetStreamServer::start();
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = sled_log(&data.path().join("log"));
    let scratch = data.path().join("migrate-check");
    let done = run(&server, &log, &scratch);
    assert_eq!(names(&done.report.copied), ["acme", "globex"]);
    assert!(done.report.skipped.is_empty() && done.report.refused.is_empty());
    assert_eq!(done.report.events, 6);
    assert!(done.report.records >= 2 && done.report.bytes > 0);
    assert!(done.saw("acme: Checked { events: 3 }"), "{:?}", done.steps);
    assert!(
        done.saw("globex: Checked { events: 3 }"),
        "{:?}",
        done.steps
    );

    let node = server.open(cache.path(), STREAM, "n1").unwrap();
    for tenant in ["acme", "globex"] {
        assert_eq!(events(&node, tenant), events(&log, tenant), "{tenant}");
        let head = |l: &EventLog| l.tenant(&id(tenant)).head().unwrap();
        assert_eq!(head(&node), head(&log), "{tenant}");
        // The message ids came along: a retry appends nothing, in either tenant.
        let retry = node.append_blocking(group(tenant, 3, "m2")).unwrap();
        assert!(
            matches!(&retry, AppendOutcome::Duplicate(rec) if rec.ack == b"m2"),
            "{tenant}: {retry:?}"
        );
    }
    // And the chain goes on from the sled head.
    let next = node.append_blocking(group("acme", 3, "m3")).unwrap();
    assert!(
        matches!(&next, AppendOutcome::Appended(a) if a.first_tenant_seq == 4),
        "{next:?}"
    );
    assert_eq!(
        events(&node, "acme")[3].prev_hash,
        events(&log, "acme")[2].hash
    );
    // Once the node's idempotency filter of acme is built (after that append), the copied ids
    // are still known: the filter was built from the copied records, not only from new ones.
    for message_id in ["m1", "m2"] {
        let retry = node.append_blocking(group("acme", 4, message_id)).unwrap();
        assert!(
            matches!(&retry, AppendOutcome::Duplicate(rec) if rec.ack == message_id.as_bytes()),
            "{message_id}: {retry:?}"
        );
    }
}

#[test]
fn a_second_run_copies_nothing() {
    let server = JetStreamServer::start();
    let data = tempfile::tempdir().unwrap();
    let log = sled_log(&data.path().join("log"));
    let scratch = data.path().join("migrate-check");
    run(&server, &log, &scratch);
    let before = (last_record(&server, "acme"), last_record(&server, "globex"));

    let again = run(&server, &log, &scratch);
    assert!(again.report.copied.is_empty(), "{:?}", again.report);
    assert_eq!(names(&again.report.skipped), ["acme", "globex"]);
    assert_eq!((again.report.events, again.report.records), (0, 0));
    assert!(again.saw("acme: AlreadyCopied") && again.saw("globex: AlreadyCopied"));
    assert!(!again.saw("acme: Published") && !again.saw("acme: Purged"));
    assert!(
        again.saw("acme: Checked { events: 3 }"),
        "{:?}",
        again.steps
    );
    let after = (last_record(&server, "acme"), last_record(&server, "globex"));
    assert_eq!(after, before, "nothing was published");
}

/// What a copy stopped after its first record leaves: a record of acme with head (0, zero
/// hash), here holding a message id the sled log does not have, so that its survival would
/// show. Returns its stream sequence.
fn publish_partial(server: &JetStreamServer) -> u64 {
    let ghost = keys::idempotency_key(&id("acme"), &id("prod"), &id("support"), &id("web"), "m9");
    let mut builder = RecordBuilder::new("migrate");
    assert!(builder
        .push((ByteBuf::from(ghost), Some(ByteBuf::from(vec![1, 2, 3]))))
        .is_none());
    let partial = encode(&builder.record);
    let replica = replica(server);
    let chain = publish_chain(
        &replica.js,
        id("acme"),
        replica.subject(&id("acme")),
        0,
        vec![partial],
    );
    replica.rt.block_on(chain).1.unwrap()
}

/// A node must not take a tenant whose copy did not finish: its appends would follow a partial
/// history.
#[test]
fn a_node_refuses_to_adopt_a_tenant_whose_migration_did_not_finish() {
    let server = JetStreamServer::start();
    let cache = tempfile::tempdir().unwrap();
    publish_partial(&server);
    let node = server.open_node_on(cache.path(), STREAM, "n1");
    let refused = node.adopt_blocking(&id("acme")).unwrap_err();
    assert!(refused.contains("unfinished migration"), "{refused}");
    assert!(!node.owns(&id("acme")));
}

#[test]
fn an_interrupted_copy_is_purged_and_done_again() {
    let server = JetStreamServer::start();
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = sled_log(&data.path().join("log"));
    let partial_seq = publish_partial(&server);
    assert_eq!(
        last_record(&server, "acme"),
        Some((partial_seq, PARTIAL_HEAD))
    );

    let done = run(&server, &log, &data.path().join("migrate-check"));
    assert!(done.saw("acme: Purged"), "{:?}", done.steps);
    assert!(!done.saw("globex: Purged"), "{:?}", done.steps);
    assert_eq!(names(&done.report.copied), ["acme", "globex"]);
    let (seq, head) = last_record(&server, "acme").unwrap();
    assert!(seq > partial_seq);
    assert_eq!(Some(head), log.tenant(&id("acme")).head().unwrap());

    let node = server.open(cache.path(), STREAM, "n1").unwrap();
    assert_eq!(events(&node, "acme"), events(&log, "acme"));
    // The partial record's message id is gone with it: m9 is new.
    let m9 = node.append_blocking(group("acme", 3, "m9")).unwrap();
    assert!(matches!(m9, AppendOutcome::Appended(_)), "{m9:?}");
}

#[test]
fn an_older_copy_is_replaced_once_the_sled_log_moved_on() {
    let server = JetStreamServer::start();
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = EventLog::open(&data.path().join("log"), &LogOptions::default()).unwrap();
    log.append_blocking(group("acme", 0, "m1")).unwrap();
    log.append_blocking(group("globex", 0, "m1")).unwrap();
    let scratch = data.path().join("migrate-check");
    run(&server, &log, &scratch);
    // The stream's acme head is tenant_seq 2, the end of a frame that starts at 1.
    assert_eq!(last_record(&server, "acme").unwrap().1.tenant_seq, 2);
    log.append_blocking(group("acme", 2, "m2")).unwrap();

    let again = run(&server, &log, &scratch);
    assert!(again.saw("acme: Purged"), "{:?}", again.steps);
    assert_eq!(names(&again.report.copied), ["acme"]);
    assert_eq!(names(&again.report.skipped), ["globex"]);
    assert_eq!(again.report.events, 3);
    let node = server.open(cache.path(), STREAM, "n1").unwrap();
    assert_eq!(events(&node, "acme"), events(&log, "acme"));
    assert_eq!(events(&node, "acme").len(), 3);
}

#[test]
fn records_a_node_appended_to_the_stream_are_never_purged() {
    let server = JetStreamServer::start();
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = sled_log(&data.path().join("log"));
    let scratch = data.path().join("migrate-check");
    run(&server, &log, &scratch);
    let node = server.open(cache.path(), STREAM, "n1").unwrap();
    node.append_blocking(group("acme", 3, "m3")).unwrap();
    let written = events(&node, "acme");
    drop(node);

    let again = run(&server, &log, &scratch);
    assert!(again.report.copied.is_empty(), "{:?}", again.report);
    assert_eq!(names(&again.report.skipped), ["globex"]);
    let [refused] = again.report.refused.as_slice() else {
        panic!("{:?}", again.report.refused)
    };
    assert!(matches!(
        refused,
        MigrateError::StreamAhead {
            stream_seq: 4,
            sled_seq: 3,
            ..
        }
    ));
    let text = refused.to_string();
    assert!(
        text.contains("tenant acme") && text.contains("purge subject LOG.acme"),
        "{text}"
    );
    assert!(again.saw("acme: Refused"), "{:?}", again.steps);

    let node = server.open(cache.path(), STREAM, "n1").unwrap();
    assert_eq!(events(&node, "acme"), written);
}

#[test]
fn a_tenant_whose_chain_is_broken_is_refused_and_nothing_of_it_is_published() {
    let server = JetStreamServer::start();
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dir = data.path().join("log");
    let log = sled_log(&dir);
    log.append_blocking(group("acme", 3, "m3")).unwrap();
    drop(log);
    {
        // A frame in the middle of acme's log is lost: its tail still reads, its chain breaks.
        let db = crate::events::log::fixtures::open_sled_when_free(&dir);
        let tree = db.open_tree(TREE_NAME).unwrap();
        tree.remove(keys::frame_key(&id("acme"), 3)).unwrap();
        db.flush().unwrap();
    }
    let log = EventLog::open(&dir, &LogOptions::default()).unwrap();

    let done = run(&server, &log, &data.path().join("migrate-check"));
    assert_eq!(names(&done.report.copied), ["globex"]);
    let [refused] = done.report.refused.as_slice() else {
        panic!("{:?}", done.report.refused)
    };
    let text = refused.to_string();
    assert!(
        matches!(refused, MigrateError::ChainBroken { .. }),
        "{text}"
    );
    assert!(
        text.contains("tenant acme") && text.contains("tenant_seq 4"),
        "{text}"
    );
    assert!(!done.saw("acme: Published"), "{:?}", done.steps);
    assert_eq!(last_record(&server, "acme"), None);

    let node = server.open(cache.path(), STREAM, "n1").unwrap();
    assert_eq!(names(&node.tenants().unwrap()), ["globex"]);
}

#[test]
fn records_stay_under_the_limit_and_only_the_last_carries_the_head() {
    let mut builder = RecordBuilder::new("migrate");
    let acme = id("acme");
    let value_bytes = RECORD_BYTES_MAX / 5;
    let ops: Vec<Op> = (1..=12u64)
        .map(|seq| {
            let key = ByteBuf::from(keys::frame_key(&acme, seq));
            let value = vec![u8::try_from(seq).unwrap(); value_bytes];
            (key, Some(ByteBuf::from(value)))
        })
        .collect();
    let mut payloads: Vec<Vec<u8>> = ops
        .iter()
        .filter_map(|op| builder.push(op.clone()))
        .collect();
    let head = Head {
        tenant_seq: 12,
        hash: [7; 32],
    };
    payloads.extend(builder.finish(head, 0));
    assert_eq!(
        payloads.len(),
        3,
        "four ops of a fifth of the limit per record"
    );
    let records: Vec<Record> = payloads
        .iter()
        .map(|p| {
            assert!(p.len() <= RECORD_BYTES_MAX, "{} bytes", p.len());
            decode_record(&acme, 1, p).unwrap()
        })
        .collect();
    let heads: Vec<Option<Head>> = records.iter().map(Record::head).collect();
    assert_eq!(heads, [Some(PARTIAL_HEAD), Some(PARTIAL_HEAD), Some(head)]);
    let copied: Vec<Op> = records.into_iter().flat_map(|r| r.ops).collect();
    assert_eq!(copied, ops, "every op, in order");
}

#[test]
fn a_stream_holding_another_history_of_a_tenant_is_refused_untouched() {
    let server = JetStreamServer::start();
    let (data, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Another sled log of acme, as long but with another second message, was copied first.
    let first = EventLog::open(&other.path().join("log"), &LogOptions::default()).unwrap();
    first.append_blocking(group("acme", 0, "m1")).unwrap();
    first.append_blocking(group("acme", 2, "x2")).unwrap();
    run(&server, &first, &other.path().join("migrate-check"));
    let before = last_record(&server, "acme");

    let log = sled_log(&data.path().join("log"));
    let done = run(&server, &log, &data.path().join("migrate-check"));
    let [refused] = done.report.refused.as_slice() else {
        panic!("{:?}", done.report.refused)
    };
    let text = refused.to_string();
    assert!(
        matches!(refused, MigrateError::Diverged { stream_seq: 3, .. }),
        "{text}"
    );
    assert!(
        text.contains("tenant acme") && text.contains("another history"),
        "{text}"
    );
    assert_eq!(names(&done.report.copied), ["globex"]);
    assert_eq!(
        last_record(&server, "acme"),
        before,
        "acme's records are untouched"
    );
}

/// A sled tenant that had tenant ops (ops revision 1) is copied with that revision in its last
/// record, so a cache of the copy is at the stream's last record (before, the record said 0 and
/// every reconcile and follow rebuilt the tenant).
#[test]
fn a_copied_tenant_carries_its_ops_revision_in_its_last_record() {
    let server = JetStreamServer::start();
    let data = tempfile::tempdir().unwrap();
    let log = sled_log(&data.path().join("log"));
    let mut key = keys::tenant_prefix(&id("acme"));
    key.extend_from_slice(b"Zop");
    log.apply_tenant_ops_blocking(&id("acme"), vec![(key.into(), Some(b"v".to_vec().into()))])
        .unwrap();
    run(&server, &log, &data.path().join("migrate-check"));
    let replica = replica(&server);
    let last = |tenant: &str| {
        let found = replica.rt.block_on(replica.last_record(&id(tenant)));
        found.unwrap().unwrap().1.rev
    };
    assert_eq!((last("acme"), last("globex")), (1, 0));
}
