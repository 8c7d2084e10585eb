//! The event log: tenant-prefixed keys in one sled tree, group commit, tenant-scoped reads.
//!
//! Writes go through a bounded queue to the write path in `writer`: a stager thread assigns
//! seqs, ids and chain hashes and applies each batch to sled in one `apply_batch`; a syncer thread
//! flushes and `fdatasync`s, and only then answers the callers. So an `Ok` from
//! [`EventLog::append`] means the group is on stable media, and a group is either wholly in the
//! log or not at all.
//!
//! Reads do not pass through the writer: they read sled directly, through a [`TenantReader`] or
//! [`ScopedReader`] obtained from a validated [`TenantId`] / [`TenantCtx`]; every read is a range
//! scan inside that tenant's prefix, and stops at the tenant's durable frontier (`store`): what
//! a completed flush covered. After a write error the writer recovers by itself (`recover`);
//! sled panics on damaged files become errors (`contain`).
//!
//! A message id is checked against the batch staged so far, then against a per-tenant Bloom
//! filter of the tenant's idempotency keys that the stager keeps (`writer/seen.rs`: 10 bits
//! per key of capacity, about 1 % false positives), and only on its "maybe" against sled, the
//! source of truth. A filter says "absent" only once built from the tree and kept true on every
//! path that writes keys (the stager adds what it stages; adoption, recovery and a tenant's
//! deletion forget it), so a retry is never appended twice.
//!
//! Invariants:
//! - only this module (with `keys` and `codec`) touches sled;
//! - per tenant, `tenant_seq` is gapless from 1 and the chain links every event to the previous;
//! - per session, `seq` is gapless from 1 and seq 1 is `SessionStarted`;
//! - a message id is appended at most once per (tenant, env, team, channel).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

mod backend;
mod census;
pub mod compact;
pub mod contain;
mod erase;
pub mod follow;
mod heads;
mod idempotency;
mod meta;
mod metrics;
pub mod ops;
mod purge;
mod read;
mod rebase;
mod recover;
pub mod replica;
mod retention;
mod sled_files;
mod store;
mod syncer;
mod writer;

pub use census::LogCensus;
pub use erase::{LogEraseError, LogErased, CLUSTER_REFUSAL};
pub use heads::HeadStored;
pub use metrics::LogMetrics;
pub use purge::{PurgeError, PurgeReport};
pub use read::{
    ScopedReader, SessionEvents, StoredFrame, StoredFrames, TenantEvents, TenantReader,
};
pub use rebase::Compacted;
pub use replica::{Replica, ReplicaError, ReplicaOptions};
pub use retention::{RetentionAnchor, TrimError, TrimReport, TRIM_BATCH_FRAMES};
pub use sled_files::hold_lock;

use crate::events::codec::{Hash, FRAME_BYTES_MAX, GROUP_EVENTS_MAX};
use crate::events::keyring::Keyring;
use crate::events::keys;
use crate::events::schema::{Event, EventKind};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};
use metrics::Reply;

/// Tuning of the log. The defaults suit a small server; `config.toml` may override them.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// sled's page cache, in bytes. sled's RSS grows past this; set it explicitly.
    pub cache_capacity_bytes: u64,
    /// Append requests that may wait for the writer. Past this, `try_append` is `Overloaded`.
    pub queue_capacity: usize,
    /// Most append groups committed by one flush.
    pub batch_groups_max: usize,
    /// Seal the personal fields of new events (schema v3) under per-session data keys from
    /// this key ring, and open them on read (`None`: write v2, read sealed fields as erased).
    /// The sled backend only: [`EventLog::open_replicated`] ignores it.
    pub keyring: Option<Arc<Keyring>>,
    /// With a key ring: seal new events (false: write v2, still open sealed ones on read).
    pub seal: bool,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            queue_capacity: 8192,
            batch_groups_max: 1024,
            keyring: None,
            seal: true,
        }
    }
}

/// Largest acknowledgement stored for idempotent retries, in bytes.
pub const ACK_BYTES_MAX: usize = 64 * 1024;

/// An append request: the events of one inbound message, for one session.
#[derive(Clone, Debug)]
pub struct AppendGroup {
    /// Tenant, env and team (`default` when `None`) of the session.
    pub ctx: TenantCtx,
    pub channel: ChannelId,
    pub session: SessionId,
    /// The session's last seq as the caller knows it; 0 for a new session. A mismatch is
    /// rejected as [`Rejection::SeqConflict`], so two writers can never interleave in a session.
    pub expected_seq: u64,
    /// Unix ms of the caller's clock, stamped on every event of the group.
    pub at_ms: u64,
    pub kinds: Vec<EventKind>,
    /// Makes the append idempotent: a second group with the same message id (same tenant, env,
    /// team, channel) appends nothing and gets the first one's record back.
    pub idempotency: Option<Idempotency>,
}

/// The client's message id and the acknowledgement to hand to its retries.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub message_id: String,
    /// Opaque to the log (the runtime stores the replies it sent).
    pub ack: Vec<u8>,
}

/// Where an appended group landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_tenant_seq: u64,
    pub last_tenant_seq: u64,
    /// Chain hash after the group's last event.
    pub hash: Hash,
}

/// Version of [`IdempotencyRecord`] written now. v1 (no `v` field) had no `at_ms`; v2 always
/// stored `ack` in plain; v3 stores it sealed (`sealed`) when the log has a key ring.
pub const IDEMPOTENCY_RECORD_VERSION: u8 = 3;

/// What an earlier append with the same message id recorded. A MessagePack map: fields added
/// later default when absent, so records of older versions still read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    #[serde(default = "idempotency_v1")]
    pub v: u8,
    pub session: SessionId,
    pub first_seq: u64,
    pub last_seq: u64,
    #[serde(with = "serde_bytes")]
    pub ack: Vec<u8>,
    /// The append's `at_ms` (v2); 0 in a v1 record, which the purge stamps with its own time so
    /// that it expires one window after the upgrade.
    #[serde(default)]
    pub at_ms: u64,
    /// On disk (v3): `ack` is sealed under the session's data key ([`crate::events::seal`],
    /// associated data [`crate::events::seal::reply_aad`]), so destroying the key erases the
    /// stored replies too. The log's reads open it; a record read back with `sealed` still set
    /// could not be opened (the session was erased, or no key ring): its `ack` is ciphertext.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

fn idempotency_v1() -> u8 {
    1
}

/// Result of a successful append call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The group is durable.
    Appended(Appended),
    /// The message id was already appended; nothing new was written.
    Duplicate(IdempotencyRecord),
}

/// The caller's group breaks a rule. Nothing was written; retrying the same group will not help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("an append group needs 1..={GROUP_EVENTS_MAX} events, got {0}")]
    GroupSize(usize),
    #[error("{field} is {len} bytes, over the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("the group's encoded size {0} exceeds {FRAME_BYTES_MAX} bytes")]
    GroupTooLarge(usize),
    #[error("session {session}: expected last seq {expected}, but the log is at {actual}")]
    SeqConflict {
        session: SessionId,
        expected: u64,
        actual: u64,
    },
    #[error("a session's first event must be SessionStarted, and only its first")]
    SessionStartMisplaced,
    #[error("session {session} belongs to channel {owner}, not {got}")]
    ChannelMismatch {
        session: SessionId,
        owner: ChannelId,
        got: ChannelId,
    },
    #[error("message id must not be empty")]
    EmptyMessageId,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The caller's fault; see [`Rejection`]. Map to 4xx.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The append queue is full. Shed load (429/503) and let the client retry later.
    #[error("the event log is overloaded")]
    Overloaded,
    /// The log was shut down. Map to 503.
    #[error("the event log is closed")]
    Closed,
    /// The tenant's stored log is damaged; appends are refused until an operator repairs it.
    /// Other tenants are unaffected.
    #[error("tenant {tenant}: log damaged at {position}: {detail}")]
    TenantDamaged {
        tenant: TenantId,
        position: String,
        detail: String,
    },
    /// In a cluster: this node does not own the tenant (any more). Nothing was written; the
    /// owner takes the message (retry it with the same message id).
    #[error("tenant {0} is owned by another node")]
    NotOwner(TenantId),
    /// Writing failed. The log refuses appends until its writer has reopened the files, removed
    /// what the failed batches left and re-checked the tails, which it retries every
    /// [`RECOVERY_RETRY`] (it succeeds once the cause, e.g. a full disk, is gone). Map to 503.
    #[error("event log write failed: {0}")]
    Failed(String),
    /// A tenant op ([`EventLog::apply_tenant_ops_blocking`]) names a key outside the tenant's
    /// range, or the log's own ops revision key. Nothing was written.
    #[error("tenant {tenant}: op key {key} is not a key of the tenant the caller may write (keys start with the tenant's prefix; the ops revision key is the log's own)")]
    ForeignKey { tenant: TenantId, key: String },
    /// Tenant ops over [`ops::TENANT_OPS_BYTES_MAX`] (one record). Nothing was written.
    #[error("tenant {tenant}: tenant ops of {bytes} bytes exceed one record (TENANT_OPS_BYTES_MAX); split them into several calls")]
    OpsTooLarge { tenant: TenantId, bytes: usize },
    /// Tenant ops for a tenant without events: there is no log to write beside. Nothing was
    /// written.
    #[error("tenant {0} has no events: tenant ops apply only beside an existing log")]
    NoLog(TenantId),
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (a running server) holds the data dir.
    #[error("the data dir {0} is in use by another tenantry process (is a server running?)")]
    InUse(PathBuf),
    /// sled refused to open the files: corrupt, or written by another sled version.
    #[error("cannot open the event log at {path}: {detail}")]
    Storage { path: PathBuf, detail: String },
    /// sled panicked reading its files (caught), or reported them corrupt at open: they are
    /// damaged. Restore the data dir from a backup; retrying will fail the same way.
    #[error("the event log at {} is damaged: sled failed reading it ({detail}); {}", .path.display(), contain::advice(.path))]
    Damaged { path: PathBuf, detail: String },
    #[error("cannot start the log writer: {0}")]
    Thread(std::io::Error),
    /// The data dir was written by the other backend (or for another stream).
    #[error("the log at {}: {detail}", .path.display())]
    Backend { path: PathBuf, detail: String },
    /// The JetStream stream could not be reached or read.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// A stored record that cannot be read. Names the tenant and position so the operator can act.
#[derive(Clone, Debug, thiserror::Error)]
#[error("tenant {tenant}: cannot read {position}: {detail}")]
pub struct ReadError {
    pub tenant: TenantId,
    pub position: String,
    pub detail: String,
}

/// A tenant whose last frame failed its checks at open. Reads up to the damage still work;
/// appends for this tenant are refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub tenant: TenantId,
    pub position: String,
    pub detail: String,
}

/// One event as stored, with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub event: Event,
    /// The event's personal fields were sealed and their session's data key is gone (erased):
    /// they read as empty strings.
    pub erased: bool,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl StoredEvent {
    /// The kind's fields as JSON for the API and exports; an erased event shows its
    /// non-personal fields and `"erased": true`.
    pub fn data_json(&self) -> serde_json::Value {
        let data = self.event.kind.data_json();
        if !self.erased {
            return data;
        }
        let mut data = crate::events::seal::public_json(self.event.kind.name(), &data);
        if let Some(map) = data.as_object_mut() {
            map.insert(
                crate::events::seal::ERASED_FIELD.to_owned(),
                serde_json::Value::Bool(true),
            );
        }
        data
    }
}

/// The tenant's last position and chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub tenant_seq: u64,
    pub hash: Hash,
}

impl Head {
    /// The head of a tenant with no events: before `tenant_seq` 1, at the genesis hash.
    pub const EMPTY: Head = Head {
        tenant_seq: 0,
        hash: crate::events::codec::GENESIS_HASH,
    };
}

/// A session as listed by [`ScopedReader::sessions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    pub env: EnvId,
    pub team: TeamId,
    pub session: SessionId,
    pub channel: ChannelId,
    pub user: String,
    pub started_at_ms: u64,
    /// The meta holds the user sealed: the session was started with every copy of its personal
    /// data sealed (so destroying its data key is enough to erase it, without a compaction).
    pub user_sealed: bool,
}

/// Stored under the session meta key when a session starts.
#[derive(Serialize, Deserialize)]
struct SessionMeta {
    channel: ChannelId,
    /// Empty when `user_sealed` holds it (or it was erased).
    user: String,
    started_at: u64,
    /// The user id sealed under the session's data key (`meta.rs`); absent in older metas.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    user_sealed: Option<Vec<u8>>,
    /// The user's pseudonym that keys the open-session index; absent: the plain `user` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_as: Option<String>,
}

enum Request {
    Append {
        group: AppendGroup,
        reply: Reply,
    },
    DeleteTenant {
        tenant: TenantId,
        reply: oneshot::Sender<Result<u64, AppendError>>,
    },
    BaseChunk {
        tenant: TenantId,
        after: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<rebase::BaseChunk, AppendError>>,
    },
    TenantOps {
        tenant: TenantId,
        ops: Vec<replica::Op>,
        reply: oneshot::Sender<Result<(), AppendError>>,
    },
    Adopt {
        tenant: TenantId,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Handle to the log. Cheap to clone; the writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    // Field order matters: dropping `tx` closes the queue, then `_threads` joins the stager
    // (which closes the syncer's queue) and the syncer.
    tx: SyncSender<Request>,
    _threads: WriterThreads,
    /// The sled handles (replaced by a recovery), the durable frontier and the failure state.
    shared: Arc<store::Shared>,
}

struct WriterThreads(Vec<JoinHandle<()>>);

impl Drop for WriterThreads {
    fn drop(&mut self) {
        for handle in self.0.drain(..) {
            // Each thread ends only after answering every request it took.
            let _ = handle.join();
        }
    }
}

const TREE_NAME: &[u8] = b"log";

impl EventLog {
    /// Opens (or creates) the log in `dir`, checks every tenant's last frame and starts the
    /// writer. A damaged tenant is reported in [`EventLog::damaged`], not as an error, so the
    /// other tenants stay available.
    pub fn open(dir: &Path, opts: &LogOptions) -> Result<EventLog, OpenError> {
        EventLog::open_inner(dir, opts, None)
    }

    /// Opens the log with the JetStream backend: `dir` holds this node's cache of the stream,
    /// brought to the stream's records first (`replica::reconcile`); appends are acknowledged
    /// once the stream acked them. With `opts.keyring` it seals as the sled backend does: the
    /// wrapped data keys travel in the stream's records, the KEKs stay in the key ring's secret
    /// store, so only a single writer (no `[cluster]`, `crate::cluster::open_log`) gets one.
    pub fn open_replicated(
        dir: &Path,
        opts: &LogOptions,
        replica: Replica,
    ) -> Result<EventLog, OpenError> {
        EventLog::open_inner(dir, opts, Some(Arc::new(replica)))
    }

    fn open_inner(
        dir: &Path,
        opts: &LogOptions,
        replica: Option<Arc<Replica>>,
    ) -> Result<EventLog, OpenError> {
        set_last_opened_dir(dir);
        let store = open_store(dir, opts)?;
        backend::check(dir, &store.tree, replica.as_deref())?;
        let (mut heads, mut damaged) = contain::contained(|| read::recover_heads(&store.tree))
            .map_err(|detail| OpenError::Damaged {
                path: dir.to_owned(),
                detail,
            })?;
        if let Some(replica) = &replica {
            let broken = damaged.iter().map(|d| d.tenant.clone()).collect();
            let done = replica::reconcile(replica, &store.tree, &heads, &broken)?;
            tracing::info!(
                stream = replica.stream_name(),
                kept = done.kept,
                caught_up = done.caught_up.len(),
                rebuilt = done.rebuilt.len(),
                removed = done.removed.len(),
                "log cache reconciled with the stream"
            );
            (heads, damaged) =
                contain::contained(|| read::recover_heads(&store.tree)).map_err(|detail| {
                    OpenError::Damaged {
                        path: dir.to_owned(),
                        detail,
                    }
                })?;
        }
        let shared = Arc::new(store::Shared::new(dir, opts, store, replica));
        shared.reset(&heads, damaged.clone());
        let stager = writer::Stager::new(
            shared.clone(),
            heads,
            damaged
                .iter()
                .map(|d| (d.tenant.clone(), d.clone()))
                .collect(),
            opts.batch_groups_max.max(1),
        );
        let syncer = syncer::Syncer {
            shared: shared.clone(),
        };
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity.max(1));
        let (to_syncer, syncer_rx) = mpsc::sync_channel(writer::SYNC_QUEUE_BATCHES);
        let syncer = std::thread::Builder::new()
            .name("tenantry-log-sync".into())
            .spawn(move || syncer.run(syncer_rx))
            .map_err(OpenError::Thread)?;
        let stager = std::thread::Builder::new()
            .name("tenantry-log-stage".into())
            .spawn(move || stager.run(rx, to_syncer))
            .map_err(OpenError::Thread)?;
        for d in &damaged {
            tracing::error!(tenant = %d.tenant, position = %d.position, detail = %d.detail, "tenant log damaged");
        }
        if shared.owned.is_some() {
            follow::start(Arc::downgrade(&shared)).map_err(OpenError::Thread)?;
        }
        Ok(EventLog {
            inner: Arc::new(Inner {
                tx,
                _threads: WriterThreads(vec![stager, syncer]),
                shared,
            }),
        })
    }

    /// The database, for opening projection trees beside the log; `None` while a recovery has
    /// the files closed.
    pub(crate) fn db(&self) -> Option<sled::Db> {
        self.inner.shared.store().map(|s| s.db.clone())
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.shared.dir
    }

    /// Tenants whose stored log failed its checks at open (or at the last recovery).
    pub fn damaged(&self) -> Vec<Damage> {
        self.inner.shared.damaged()
    }

    /// Why the log refuses appends right now, if it does: a write failed (a full disk, an I/O
    /// error) and the writer has not yet reopened the files and re-checked the tails. It
    /// retries every [`RECOVERY_RETRY`] until the cause is gone.
    pub fn write_failure(&self) -> Option<String> {
        self.inner.shared.failure()
    }

    /// The last `tenant_seq` of `tenant` that a completed flush covered: readers see no
    /// further.
    pub fn durable_frontier(&self, tenant: &TenantId) -> u64 {
        self.inner.shared.limit(tenant)
    }

    /// Changes whenever `tenant`'s durable frontier does (a flush, a followed record on a
    /// cluster node that does not own the tenant, a recovery, a deletion); the value is a
    /// counter: read [`EventLog::durable_frontier`] after a change. Subscribe before reading the
    /// frontier, so that nothing between the read and the wait is missed.
    pub fn watch_frontier(&self, tenant: &TenantId) -> tokio::sync::watch::Receiver<u64> {
        self.inner.shared.watch_frontier(tenant)
    }

    /// Appends a group; resolves once it is durable. Never waits for queue space: a full queue is
    /// [`AppendError::Overloaded`] at once, so overload turns into refusals, not memory.
    pub async fn append(&self, group: AppendGroup) -> Result<AppendOutcome, AppendError> {
        let rx = self.try_enqueue(group)?;
        rx.await.map_err(|_| AppendError::Closed)?
    }

    /// Blocking variant of [`EventLog::append`] for threads outside an async runtime (CLI,
    /// tools, benchmarks). Waits for queue space instead of failing with `Overloaded`.
    pub fn append_blocking(&self, group: AppendGroup) -> Result<AppendOutcome, AppendError> {
        let (reply, rx) = Reply::new();
        self.inner
            .tx
            .send(Request::Append { group, reply })
            .map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    fn try_enqueue(
        &self,
        group: AppendGroup,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, AppendError>>, AppendError> {
        let (reply, rx) = Reply::new();
        match self.inner.tx.try_send(Request::Append { group, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(AppendError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(AppendError::Closed),
        }
    }

    /// Deletes every record of `tenant` (offboarding), durably. Returns the number of keys removed.
    pub fn delete_tenant_blocking(&self, tenant: &TenantId) -> Result<u64, AppendError> {
        let (reply, rx) = oneshot::channel();
        let req = Request::DeleteTenant {
            tenant: tenant.clone(),
            reply,
        };
        self.inner.tx.send(req).map_err(|_| AppendError::Closed)?;
        rx.blocking_recv().map_err(|_| AppendError::Closed)?
    }

    /// In a cluster: makes this node the tenant's writer. Brings the tenant's cache to the
    /// stream, then publishes a takeover record that fences any earlier writer (a previous
    /// owner that was paused or cut off cannot append after it), and only then accepts appends
    /// for it. Call it once the tenant's lease is this node's.
    pub fn adopt_blocking(&self, tenant: &TenantId) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        let req = Request::Adopt {
            tenant: tenant.clone(),
            reply,
        };
        let closed = || AppendError::Closed.to_string();
        self.inner.tx.send(req).map_err(|_| closed())?;
        rx.blocking_recv().map_err(|_| closed())?
    }

    /// In a cluster: stops appending for the tenant (its lease is lost); its cache goes on
    /// following the stream.
    pub fn release(&self, tenant: &TenantId) {
        self.inner.shared.disown(tenant);
    }

    /// Whether this node may append for the tenant (always, outside a cluster).
    pub fn owns(&self, tenant: &TenantId) -> bool {
        self.inner.shared.owns(tenant)
    }

    /// The stream of the JetStream backend (`None` for sled).
    pub fn replica(&self) -> Option<&Arc<Replica>> {
        self.inner.shared.replica.as_ref()
    }

    /// Whether the log has a key ring: it can open sealed events and erase (it seals new
    /// events too unless `[log] seal = false`).
    pub fn has_keyring(&self) -> bool {
        self.inner.shared.opts.keyring.is_some()
    }

    /// The cluster's key stream, on a `[cluster]` node with a cluster key.
    pub fn shared_keys(&self) -> Option<&replica::keys::SharedKeys> {
        self.inner.shared.opts.keyring.as_deref()?.shared_keys()
    }

    /// Read access to one tenant's whole log.
    pub fn tenant(&self, tenant: &TenantId) -> TenantReader {
        TenantReader {
            parts: self.inner.shared.reader(tenant),
            tenant: tenant.clone(),
        }
    }

    /// Read access bounded by a context: its tenant, env and (when set) team.
    pub fn scope(&self, ctx: &TenantCtx) -> ScopedReader {
        ScopedReader {
            parts: self.inner.shared.reader(&ctx.tenant),
            ctx: ctx.clone(),
        }
    }

    /// Ids of the tenants that have records. For platform tools (rebuild, admin); it returns
    /// names only, never data.
    pub fn tenants(&self) -> Result<Vec<TenantId>, sled::Error> {
        let Some(store) = self.inner.shared.store() else {
            return Err(sled::Error::Io(std::io::Error::other(store::CLOSED)));
        };
        let mut out = Vec::new();
        let mut cursor: Vec<u8> = Vec::new();
        while let Some(entry) = store.tree.range(cursor.clone()..).next() {
            let (key, _) = entry?;
            match keys::key_tenant(&key) {
                Some(t) => {
                    cursor = keys::tenant_end(&t);
                    out.push(t);
                }
                None => cursor = read::next_key(&key),
            }
        }
        Ok(out)
    }
}

/// How long `open` waits for sled's lock. sled releases its file (and so the lock) only when
/// deferred garbage and IO-pool jobs of the previous `Db` in this process are gone, a moment
/// after the last handle drops; a lock held by another process still fails after this.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The directory of the log this process opened last, for the message of a sled panic that
/// [`contain::install_panic_hook`] turns into an exit.
static LAST_OPENED_DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

fn set_last_opened_dir(dir: &Path) {
    let mut last = LAST_OPENED_DIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *last = Some(dir.to_owned());
}

fn last_opened_dir() -> Option<PathBuf> {
    LAST_OPENED_DIR
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// How often a failed log tries to reopen its files and recover.
pub const RECOVERY_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens sled, the log's tree and its data file.
fn open_store(dir: &Path, opts: &LogOptions) -> Result<store::Store, OpenError> {
    // sled may panic on damaged files instead of returning an error (see `contain`).
    let damaged = |detail| OpenError::Damaged {
        path: dir.to_owned(),
        detail,
    };
    // Owner only (the read models live in this database too); sled creates its files inside.
    let private = |e: std::io::Error| OpenError::Storage {
        path: dir.to_owned(),
        detail: format!("making the log directory owner-only (0700): {e}"),
    };
    compact::finish_interrupted(dir)?;
    crate::private_fs::create_private_dir(dir).map_err(private)?;
    let db = contain::contained(|| open_db(dir, opts)).map_err(damaged)??;
    crate::private_fs::restrict_tree(dir).map_err(private)?;
    let tree = contain::contained(|| db.open_tree(TREE_NAME))
        .map_err(damaged)?
        .map_err(|e| open_error(dir, e))?;
    // sled's flush ends in sync_file_range, which does not flush the drive's cache; we
    // fdatasync this file after each flush so that an ack survives a power loss.
    let data_file = File::open(dir.join("db")).map_err(|e| OpenError::Storage {
        path: dir.to_owned(),
        detail: format!("sled data file: {e}"),
    })?;
    sync_dir(dir).map_err(|e| OpenError::Storage {
        path: dir.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(store::Store {
        db,
        tree,
        data_file,
    })
}

fn open_db(dir: &Path, opts: &LogOptions) -> Result<sled::Db, OpenError> {
    let started = std::time::Instant::now();
    loop {
        // A snapshot half written by a killed process would fail the open (see `sled_files`).
        let removed =
            sled_files::remove_unfinished_snapshots(dir).map_err(|e| OpenError::Storage {
                path: dir.to_owned(),
                detail: format!("removing an unfinished sled snapshot: {e}"),
            })?;
        for file in removed {
            tracing::warn!(file = %file.display(), "removed an unfinished sled snapshot left by a killed process");
        }
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| open_error(dir, e));
        match opened {
            Err(OpenError::InUse(_)) if started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn open_error(dir: &Path, e: sled::Error) -> OpenError {
    let text = e.to_string();
    let locked = match &e {
        sled::Error::Io(io) => io.kind() == std::io::ErrorKind::WouldBlock || text.contains("lock"),
        _ => false,
    };
    if locked {
        OpenError::InUse(dir.to_owned())
    } else if let sled::Error::Corruption { .. } = e {
        OpenError::Damaged {
            path: dir.to_owned(),
            detail: sled_files::corruption_detail(dir, &text),
        }
    } else {
        OpenError::Storage {
            path: dir.to_owned(),
            detail: text,
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) mod fixtures;

/// Finds every tenant's head from its last frame. A frame that fails its checks marks the
/// tenant damaged; the scan goes on with the next tenant.
#[cfg(test)]
mod tests;
