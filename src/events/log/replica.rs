//! The JetStream backend of the log: the replicated record of every append, with this node's sled
//! files as its cache.
//!
//! Each tenant has one subject in the stream, `{stream}.{tenant}`. A *record* on it holds the
//! sled writes (key, value or removal) of one or more whole append groups of that tenant, in
//! order, and the tenant's head (`tenant_seq`, chain hash) after them, or the writes of one batch
//! of tenant ops (`log::ops`: the head unchanged, the tenant's ops revision raised; every record
//! carries the revision after it). The stager stages groups as with the sled backend (same
//! keys, seqs, chain, and a batch's groups of one tenant in one frame); a frame with its groups'
//! other writes is one *unit*, never split between records. Where the sled backend's syncer
//! flushes and `fdatasync`s, this backend's syncer publishes the waiting batches' records (per
//! tenant one record at a time, every tenant at once) and answers callers only after JetStream
//! acked each one. With `sync_interval: always` on the servers (see
//! `deploy/nats-jetstream.conf`) an ack means the stream's quorum has the record on stable media.
//!
//! Fencing: every record is published with `Nats-Expected-Last-Subject-Sequence` set to the
//! stream sequence of the tenant's last record as this node knows it. A writer that has not seen
//! the tenant's latest record (another node appended since) is refused by the stream itself, so
//! two writers can never both extend a tenant's chain, whatever their leases say.
//!
//! The local files are a cache (`reconcile`): at open and after any failed publish, a tenant
//! whose local head differs from the head in its last record is brought to the stream: from the
//! record of its last fully acked commit or the last record this node knew of, when the cache
//! is at that record (only the records after it are applied), else rebuilt (its local keys removed, all its records applied in order); a
//! tenant with no records is removed.
//!
//! Invariants:
//! - a caller is answered `Ok` only after every record holding its group was acked;
//! - records of a tenant are applied in stream order and hold only keys of that tenant (checked
//!   when applied: a record with another tenant's key is refused as damaged);
//! - idempotency records travel inside the records, so a retry is recognised on any node and for
//!   as long as the record is kept, not only within JetStream's duplicate window.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::Head;
use crate::events::codec::Hash;
use crate::tenancy::TenantId;

mod apply;
pub mod keys;
pub mod migrate;
mod owner;
mod publish;
#[cfg(test)]
pub(crate) mod tests;

pub(super) use apply::reconcile;

/// The stream a node writes to, as `[log]` and `[cluster]` configure it.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// The stream's name (`[log] stream`).
    pub stream: String,
    /// Its replicas (`[log] replicas`): 1, or 3 for a cluster that survives a lost server.
    pub replicas: usize,
    /// This node's name (`[cluster] node`), written into every record it publishes.
    pub node: String,
    /// A cluster node: it appends only for the tenants it adopted
    /// ([`EventLog::adopt_blocking`](super::EventLog::adopt_blocking)) and follows the others
    /// from the stream. Without it (a single writer, the offline commands) it appends for any
    /// tenant.
    pub cluster: bool,
}

/// Longest wait for one JetStream API answer (a record read, the stream's state, a lease). An
/// answer takes milliseconds; none comes while the stream elects a new leader, which is why a
/// recovery first waits for the stream with short probes ([`Replica::wait_available`]).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest wait for the answer to one probe of the stream (its state, answered by its leader).
/// A request sent during a leader election is never answered, even once a leader is elected: a
/// short probe, sent again, notices the new leader within a probe or two.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Pause between two probes of a stream that did not answer.
pub const PROBE_PAUSE: Duration = Duration::from_millis(100);

/// Longest a recovery waits for the stream to answer before it gives up this attempt (and tries
/// again at the next, keeping the files open meanwhile).
pub const STREAM_WAIT: Duration = Duration::from_secs(2);

/// Longest wait for the ack of one record. An ack takes milliseconds (p99 ~70 ms under load on
/// a 2-core machine, R3, `sync_interval: always`); one that does not come died with a stream
/// leader. The batch then fails (its callers retry with the same message id) and the log
/// recovers by reconciling with the stream, where the record may well be.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening waits for the stream to be reachable (servers starting, a leader election).
pub const OPEN_WAIT: Duration = Duration::from_secs(30);

/// Largest record payload: under nats-server's default `max_payload` (1 MiB) with room for
/// headers. A group is at most a frame (96 KiB) plus its stored acknowledgement (64 KiB); a
/// unit of several groups takes no group once it is past [`UNIT_BYTES_CLOSE`].
pub const RECORD_BYTES_MAX: usize = 768 * 1024;

/// A unit of several groups (a frame of the stager's and their other writes) past this size
/// takes no further group, so one more group (at most ~170 KiB) still fits a record.
pub(super) const UNIT_BYTES_CLOSE: usize = RECORD_BYTES_MAX / 2;

/// Version of [`Record`] written now.
pub const RECORD_VERSION: u8 = 1;

/// Why the stream could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("JetStream stream {stream}: {detail}")]
    Stream { stream: String, detail: String },
    #[error(
        "tenant {tenant}: the stream has records this node has not seen (it expected the last at \
         stream sequence {expected}): another node appended, so this node's append is refused"
    )]
    Fenced { tenant: TenantId, expected: u64 },
    #[error("tenant {tenant}: publishing to JetStream failed: {detail}")]
    Publish { tenant: TenantId, detail: String },
    #[error("tenant {tenant}: the record at stream sequence {seq} is invalid: {detail}")]
    Record {
        tenant: TenantId,
        seq: u64,
        detail: String,
    },
    #[error("tenant {tenant}: reading the stream failed: {detail}")]
    Read { tenant: TenantId, detail: String },
    #[error("the local cache: {0}")]
    Cache(String),
    #[error("cannot start the JetStream client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// One sled write: the key and its new value, `None` for a removal.
pub type Op = (ByteBuf, Option<ByteBuf>);

/// What one stream message holds (MessagePack).
#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) v: u8,
    /// The node that published it.
    pub(super) node: String,
    /// The tenant's head after the record.
    pub(super) head_seq: u64,
    #[serde(with = "serde_bytes")]
    pub(super) head_hash: Vec<u8>,
    pub(super) ops: Vec<Op>,
    /// The tenant's ops revision after the record (`log::ops`): a tenant-ops record keeps the
    /// head and raises this, so a cache at the head but before the ops is told apart. Absent
    /// in records written before it: 0.
    #[serde(default)]
    pub(super) rev: u64,
}

impl Record {
    pub(super) fn head(&self) -> Option<Head> {
        let hash: Hash = self.head_hash.as_slice().try_into().ok()?;
        Some(Head {
            tenant_seq: self.head_seq,
            hash,
        })
    }
}

/// The writes of one frame of append groups (with the groups' other writes), or of one base
/// chunk or batch of tenant ops, on their way to the stream.
pub(super) struct Unit {
    pub(super) tenant: TenantId,
    /// The tenant's head after its last group.
    pub(super) head: Head,
    /// The tenant's ops revision after its last group (see [`Record::rev`]).
    pub(super) rev: u64,
    pub(super) ops: Vec<Op>,
}

impl Unit {
    fn bytes(&self) -> usize {
        self.ops.iter().map(op_bytes).sum()
    }
}

/// What a write adds to a record (its key, its value, MessagePack's framing).
pub(super) fn op_bytes((key, value): &Op) -> usize {
    const OP_OVERHEAD_BYTES: usize = 8;
    key.len() + value.as_ref().map_or(0, |v| v.len()) + OP_OVERHEAD_BYTES
}

/// A connection to the stream, with the tenants' last stream sequences as this node knows them.
pub struct Replica {
    /// Shared with the cluster's key stream ([`keys::SharedKeys`]), which may outlive this.
    rt: std::sync::Arc<ClientRuntime>,
    stream: stream::Stream,
    js: jetstream::Context,
    name: String,
    node: String,
    replicas: usize,
    cluster: bool,
    /// Per tenant, the stream sequence of its last record (absent: none).
    last: Mutex<HashMap<TenantId, u64>>,
    /// Per tenant, the stream sequence of its last record in a commit that fully succeeded: a
    /// failed commit's batches are undone in the cache, even the tenants' whose records were
    /// acked, so after a failure the cache is at this record (a reconcile catches up from it).
    confirmed: Mutex<HashMap<TenantId, u64>>,
    /// Tenants whose records the stream refused since the last [`Replica::take_fenced`].
    fenced: Mutex<Vec<TenantId>>,
}

impl Replica {
    /// Connects with `connect` (run on the replica's own runtime, which keeps the connection
    /// alive) and creates the stream unless it exists, waiting up to [`OPEN_WAIT`] for the
    /// servers. An existing stream with other replicas or subjects is an error naming both.
    pub fn connect<F, Fut>(opts: &ReplicaOptions, connect: F) -> Result<Replica, ReplicaError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<async_nats::Client, String>>,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tenantry-log-nats")
            .enable_all()
            .build()
            .map_err(ReplicaError::Runtime)?;
        let (js, stream) = rt.block_on(async {
            let client = connect().await.map_err(|detail| ReplicaError::Stream {
                stream: opts.stream.clone(),
                detail: format!("connecting: {detail}"),
            })?;
            let js = jetstream::ContextBuilder::new()
                .timeout(REQUEST_TIMEOUT)
                .build(client);
            let stream = ensure_stream(&js, opts).await?;
            Ok::<_, ReplicaError>((js, stream))
        })?;
        Ok(Replica {
            rt: std::sync::Arc::new(ClientRuntime(Some(rt))),
            stream,
            js,
            name: opts.stream.clone(),
            node: opts.node.clone(),
            replicas: opts.replicas,
            cluster: opts.cluster,
            last: Mutex::new(HashMap::new()),
            confirmed: Mutex::new(HashMap::new()),
            fenced: Mutex::new(Vec::new()),
        })
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.name
    }

    /// Whether this is a cluster node (see [`ReplicaOptions::cluster`]).
    pub fn cluster(&self) -> bool {
        self.cluster
    }

    /// The stream's replicas.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The JetStream context of the connection (for the cluster's lease bucket).
    pub fn jetstream(&self) -> jetstream::Context {
        self.js.clone()
    }

    /// Runs `future` on the connection's runtime, from a thread outside any async runtime.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// The subject of a tenant's records.
    pub(super) fn subject(&self, tenant: &TenantId) -> String {
        format!("{}.{tenant}", self.name)
    }

    fn last_map(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, u64>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn confirmed_map(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, u64>> {
        self.confirmed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes the units (whole groups, in staging order) and waits for every ack: per
    /// tenant its records one after another, each fenced on the one before; all tenants at
    /// once. The first error is returned; what was acked meanwhile stays in the stream (a
    /// reconcile brings the cache to it).
    pub(super) fn commit(&self, units: Vec<Unit>) -> Result<(), ReplicaError> {
        let per_tenant = self.records(units);
        if per_tenant.is_empty() {
            return Ok(());
        }
        let chains: Vec<_> = {
            let last = self.last_map();
            per_tenant
                .into_iter()
                .map(|(tenant, records)| {
                    let expected = last.get(&tenant).copied().unwrap_or(0);
                    let subject = self.subject(&tenant);
                    publish_chain(&self.js, tenant, subject, expected, records)
                })
                .collect()
        };
        let results = self.rt.block_on(futures_util::future::join_all(chains));
        let mut first_error = None;
        let mut acked = Vec::with_capacity(results.len());
        let mut last = self.last_map();
        for (tenant, result) in results {
            match result {
                Ok(seq) => {
                    last.insert(tenant.clone(), seq);
                    acked.push((tenant, seq));
                }
                Err(e) => {
                    if let ReplicaError::Fenced { tenant, .. } = &e {
                        self.fenced
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(tenant.clone());
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        drop(last);
        match first_error {
            Some(e) => Err(e),
            None => {
                self.confirmed_map().extend(acked);
                Ok(())
            }
        }
    }

    /// The tenants whose records the stream refused (another node took them over) since the
    /// last call.
    pub(super) fn take_fenced(&self) -> Vec<TenantId> {
        std::mem::take(&mut *self.fenced.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Groups the units by tenant (keeping their order) into records of at most
    /// [`RECORD_BYTES_MAX`] (a single larger group still gets a record of its own).
    fn records(&self, units: Vec<Unit>) -> Vec<(TenantId, Vec<Vec<u8>>)> {
        let mut order: Vec<TenantId> = Vec::new();
        let mut pending: HashMap<TenantId, (Vec<Vec<u8>>, Record, usize)> = HashMap::new();
        for unit in units {
            let bytes = unit.bytes();
            let entry = pending.entry(unit.tenant.clone()).or_insert_with(|| {
                order.push(unit.tenant.clone());
                (Vec::new(), self.empty_record(), 0)
            });
            let (done, record, size) = entry;
            if *size > 0 && *size + bytes > RECORD_BYTES_MAX {
                let full = std::mem::replace(record, self.empty_record());
                done.push(encode(&full));
                *size = 0;
            }
            record.head_seq = unit.head.tenant_seq;
            record.head_hash = unit.head.hash.to_vec();
            record.rev = unit.rev;
            record.ops.extend(unit.ops);
            *size += bytes;
        }
        order
            .into_iter()
            .filter_map(|tenant| {
                let (mut done, record, size) = pending.remove(&tenant)?;
                if size > 0 {
                    done.push(encode(&record));
                }
                Some((tenant, done))
            })
            .collect()
    }

    fn empty_record(&self) -> Record {
        Record {
            v: RECORD_VERSION,
            node: self.node.clone(),
            head_seq: 0,
            head_hash: Vec::new(),
            ops: Vec::new(),
            rev: 0,
        }
    }

    /// Waits up to `wait` until the stream answers a probe (it has a leader and this node a
    /// connection to the cluster), probing every [`PROBE_PAUSE`] with requests of at most
    /// [`PROBE_TIMEOUT`]; the error names the last probe's failure.
    pub(super) fn wait_available(&self, wait: Duration) -> Result<(), ReplicaError> {
        self.rt.block_on(async {
            let deadline = Instant::now() + wait;
            loop {
                let detail = match tokio::time::timeout(PROBE_TIMEOUT, self.stream.get_info()).await
                {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no answer within {PROBE_TIMEOUT:?}"),
                };
                if Instant::now() + PROBE_PAUSE >= deadline {
                    return Err(ReplicaError::Stream {
                        stream: self.name.clone(),
                        detail: format!(
                            "unreachable for {wait:?} (no server, or a leader election): {detail}"
                        ),
                    });
                }
                tokio::time::sleep(PROBE_PAUSE).await;
            }
        })
    }

    /// The stream sequence of the tenant's last record as this node knows it (0: none).
    pub(super) fn last_seq(&self, tenant: &TenantId) -> u64 {
        self.last_map().get(tenant).copied().unwrap_or(0)
    }

    /// Removes the tenant's records with stream sequences below `keep_from` (a compaction);
    /// returns how many went.
    pub(super) fn purge_before(
        &self,
        tenant: &TenantId,
        keep_from: u64,
    ) -> Result<u64, ReplicaError> {
        let subject = self.subject(tenant);
        let purged = self.rt.block_on(async {
            self.stream
                .purge()
                .filter(subject)
                .sequence(keep_from)
                .await
        });
        purged.map(|p| p.purged).map_err(|e| ReplicaError::Publish {
            tenant: tenant.clone(),
            detail: format!("purging its records before stream sequence {keep_from}: {e}"),
        })
    }

    /// Removes every record of the tenant from the stream (offboarding).
    pub(super) fn purge(&self, tenant: &TenantId) -> Result<(), ReplicaError> {
        let subject = self.subject(tenant);
        let purged = self
            .rt
            .block_on(async { self.stream.purge().filter(subject).await });
        purged.map_err(|e| ReplicaError::Publish {
            tenant: tenant.clone(),
            detail: format!("purging its records: {e}"),
        })?;
        self.last_map().remove(tenant);
        self.confirmed_map().remove(tenant);
        Ok(())
    }
}

/// The runtime that drives the NATS connection. Dropped without waiting for its tasks
/// (`shutdown_background`): the last log handle may go away inside another async runtime (the
/// server's), where a plain drop of a runtime panics.
pub(super) struct ClientRuntime(Option<tokio::runtime::Runtime>);

impl ClientRuntime {
    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.0
            .as_ref()
            .expect("the runtime is taken only by drop")
            .block_on(future)
    }

    pub(super) fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime is taken only by drop")
            .handle()
            .clone()
    }
}

impl Drop for ClientRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn encode(record: &Record) -> Vec<u8> {
    rmp_serde::to_vec_named(record).expect("MessagePack encoding of plain fields is infallible")
}

/// Publishes a tenant's records in order, each expecting the one before as the subject's last;
/// returns the stream sequence of the last.
async fn publish_chain(
    js: &jetstream::Context,
    tenant: TenantId,
    subject: String,
    mut expected: u64,
    records: Vec<Vec<u8>>,
) -> (TenantId, Result<u64, ReplicaError>) {
    for payload in records {
        match publish::publish_expecting(js, &subject, payload, Some(expected)).await {
            Ok(sequence) => expected = sequence,
            Err(publish::Refused::WrongLast) => {
                return (
                    tenant.clone(),
                    Err(ReplicaError::Fenced { tenant, expected }),
                );
            }
            Err(publish::Refused::Failed(detail)) => {
                return (
                    tenant.clone(),
                    Err(ReplicaError::Publish { tenant, detail }),
                );
            }
        }
    }
    (tenant, Ok(expected))
}

/// The stream's configuration for `opts`: file storage, one subject per tenant, no deletion of
/// single records (the chain needs every one; a tenant's records go together by purge).
fn stream_config(opts: &ReplicaOptions) -> stream::Config {
    stream::Config {
        name: opts.stream.clone(),
        subjects: vec![format!("{}.*", opts.stream)],
        storage: stream::StorageType::File,
        num_replicas: opts.replicas,
        deny_delete: true,
        ..Default::default()
    }
}

async fn ensure_stream(
    js: &jetstream::Context,
    opts: &ReplicaOptions,
) -> Result<stream::Stream, ReplicaError> {
    let config = stream_config(opts);
    let error = |detail: String| ReplicaError::Stream {
        stream: opts.stream.clone(),
        detail,
    };
    let deadline = Instant::now() + OPEN_WAIT;
    let stream = loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(stream = %opts.stream, error = %e, "JetStream not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(error(format!(
                    "cannot create or open it within {OPEN_WAIT:?}: {e} (is JetStream enabled on \
                     the servers of [nats] url?)"
                )))
            }
        }
    };
    let found = &stream.cached_info().config;
    if found.num_replicas != opts.replicas || found.subjects != config.subjects {
        return Err(error(format!(
            "exists with {} replicas and subjects {:?}, but the config wants {} replicas and \
             {:?}; change [log] replicas, or edit the stream (`nats stream edit`)",
            found.num_replicas, found.subjects, opts.replicas, config.subjects
        )));
    }
    Ok(stream)
}
