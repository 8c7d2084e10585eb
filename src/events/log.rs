//! The event log: tenant-prefixed keys in one sled tree, group commit, tenant-scoped reads.
//!
//! Writes go through one writer thread. It drains up to `batch_groups_max` append requests from
//! a bounded queue, assigns `seq`, `tenant_seq`, ids and chain hashes, stages every key of every
//! group into one `sled::Batch`, applies it, calls `Db::flush` and then `fdatasync` on sled's data
//! file, and only then answers the callers. So an `Ok` from [`EventLog::append`] means the group is
//! on stable media, and a group is either wholly in the log or not at all.
//!
//! Reads do not pass through the writer: they read sled directly, through a [`TenantReader`] or
//! [`ScopedReader`] obtained from a validated [`TenantId`] / [`TenantCtx`]; every read is a range
//! scan inside that tenant's prefix.
//!
//! Invariants:
//! - only this module (with `keys` and `codec`) touches sled;
//! - per tenant, `tenant_seq` is gapless from 1 and the chain links every event to the previous;
//! - per session, `seq` is gapless from 1 and seq 1 is `SessionStarted`;
//! - a message id is appended at most once per (tenant, env, team, channel).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::events::codec::{
    self, chain_hash, decode_body, decode_frame, decode_limited, Hash, FRAME_BYTES_MAX,
    GENESIS_HASH, GROUP_EVENTS_MAX, NAME_BYTES_MAX, TEXT_BYTES_MAX,
};
use crate::events::keys;
use crate::events::schema::{Event, EventKind};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// Tuning of the log. The defaults suit a small server; `config.toml` may override them.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// sled's page cache, in bytes. sled's RSS grows past this; set it explicitly.
    pub cache_capacity_bytes: u64,
    /// Append requests that may wait for the writer. Past this, `try_append` is `Overloaded`.
    pub queue_capacity: usize,
    /// Most append groups committed by one flush.
    pub batch_groups_max: usize,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            cache_capacity_bytes: 64 * 1024 * 1024,
            queue_capacity: 8192,
            batch_groups_max: 1024,
        }
    }
}

/// Most session heads the writer caches; past it the cache is dropped (between batches) and
/// refilled from disk.
const SESSION_CACHE_MAX: usize = 1 << 20;
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

/// What an earlier append with the same message id recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub session: SessionId,
    pub first_seq: u64,
    pub last_seq: u64,
    #[serde(with = "serde_bytes")]
    pub ack: Vec<u8>,
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
    /// Writing failed. The log stops accepting appends (what reached disk is unknown until it is
    /// reopened and recovered). Map to 5xx; restart the process.
    #[error("event log write failed: {0}")]
    Failed(String),
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
    #[error("cannot start the log writer: {0}")]
    Thread(std::io::Error),
}

/// A stored record that cannot be read. Names the tenant and position so the operator can act.
#[derive(Debug, thiserror::Error)]
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
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// The tenant's last position and chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub tenant_seq: u64,
    pub hash: Hash,
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
}

/// Stored under the session meta key when a session starts.
#[derive(Serialize, Deserialize)]
struct SessionMeta {
    channel: ChannelId,
    user: String,
    started_at: u64,
}

type Reply = oneshot::Sender<Result<AppendOutcome, AppendError>>;

enum Request {
    Append {
        group: AppendGroup,
        reply: Reply,
    },
    DeleteTenant {
        tenant: TenantId,
        reply: oneshot::Sender<Result<u64, AppendError>>,
    },
}

/// Handle to the log. Cheap to clone; the writer stops when the last handle is dropped.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    // Field order matters: dropping `tx` closes the queue, then `_writer` joins the thread.
    tx: SyncSender<Request>,
    _writer: WriterThread,
    tree: sled::Tree,
    dir: PathBuf,
    damaged: Vec<Damage>,
}

struct WriterThread(Option<JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            // The writer only ends after answering every queued request.
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
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(opts.cache_capacity_bytes)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|e| open_error(dir, e))?;
        let tree = db.open_tree(TREE_NAME).map_err(|e| open_error(dir, e))?;
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

        let (heads, damaged) = recover_heads(&tree);
        let (tx, rx) = mpsc::sync_channel(opts.queue_capacity.max(1));
        let writer = Writer {
            db,
            tree: tree.clone(),
            data_file,
            heads,
            sessions: HashMap::new(),
            damaged: damaged
                .iter()
                .map(|d| (d.tenant.clone(), d.clone()))
                .collect(),
            failed: None,
            batch_groups_max: opts.batch_groups_max.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("tenantry-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(OpenError::Thread)?;
        for d in &damaged {
            tracing::error!(tenant = %d.tenant, position = %d.position, detail = %d.detail, "tenant log damaged");
        }
        Ok(EventLog {
            inner: Arc::new(Inner {
                tx,
                _writer: WriterThread(Some(handle)),
                tree,
                dir: dir.to_owned(),
                damaged,
            }),
        })
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Tenants whose stored log failed its checks at open.
    pub fn damaged(&self) -> &[Damage] {
        &self.inner.damaged
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
        let (reply, rx) = oneshot::channel();
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
        let (reply, rx) = oneshot::channel();
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

    /// Read access to one tenant's whole log.
    pub fn tenant(&self, tenant: &TenantId) -> TenantReader {
        TenantReader {
            tree: self.inner.tree.clone(),
            tenant: tenant.clone(),
        }
    }

    /// Read access bounded by a context: its tenant, env and (when set) team.
    pub fn scope(&self, ctx: &TenantCtx) -> ScopedReader {
        ScopedReader {
            tree: self.inner.tree.clone(),
            ctx: ctx.clone(),
        }
    }

    /// Ids of the tenants that have records. For platform tools (rebuild, admin); it returns
    /// names only, never data.
    pub fn tenants(&self) -> Result<Vec<TenantId>, sled::Error> {
        let mut out = Vec::new();
        let mut cursor: Vec<u8> = Vec::new();
        while let Some(entry) = self.inner.tree.range(cursor.clone()..).next() {
            let (key, _) = entry?;
            match keys::key_tenant(&key) {
                Some(t) => {
                    cursor = keys::tenant_end(&t);
                    out.push(t);
                }
                None => cursor = next_key(&key),
            }
        }
        Ok(out)
    }
}

fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn open_error(dir: &Path, e: sled::Error) -> OpenError {
    let text = e.to_string();
    let locked = match &e {
        sled::Error::Io(io) => io.kind() == std::io::ErrorKind::WouldBlock || text.contains("lock"),
        _ => false,
    };
    if locked {
        OpenError::InUse(dir.to_owned())
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

/// Finds every tenant's head from its last frame. A frame that fails its checks marks the
/// tenant damaged; the scan goes on with the next tenant.
fn recover_heads(tree: &sled::Tree) -> (HashMap<TenantId, Head>, Vec<Damage>) {
    let mut heads = HashMap::new();
    let mut damaged = Vec::new();
    let mut cursor: Vec<u8> = Vec::new();
    loop {
        let key = match tree.range(cursor.clone()..).next() {
            None => break,
            Some(Ok((key, _))) => key,
            Some(Err(e)) => {
                tracing::error!(error = %e, "event log scan failed at open");
                break;
            }
        };
        let Some(tenant) = keys::key_tenant(&key) else {
            tracing::error!(key = ?&key[..key.len().min(80)], "event log key with no valid tenant prefix; skipped");
            cursor = next_key(&key);
            continue;
        };
        cursor = keys::tenant_end(&tenant);
        let (start, end) = keys::frame_range(&tenant);
        match tree.range(start..end).next_back() {
            None => {}
            Some(Err(e)) => damaged.push(Damage {
                tenant: tenant.clone(),
                position: "last frame".into(),
                detail: e.to_string(),
            }),
            Some(Ok((k, v))) => match check_frame(&tenant, &k, &v) {
                Ok(head) => {
                    heads.insert(tenant, head);
                }
                Err(e) => damaged.push(Damage {
                    tenant: e.tenant,
                    position: e.position,
                    detail: e.detail,
                }),
            },
        }
    }
    (heads, damaged)
}

/// Decodes and cross-checks a frame; returns the head after it.
fn check_frame(tenant: &TenantId, key: &[u8], value: &[u8]) -> Result<Head, ReadError> {
    let events = decode_frame_events(tenant, key, value)?;
    let last = events
        .last()
        .ok_or_else(|| read_error(tenant, key, "empty frame"))?;
    Ok(Head {
        tenant_seq: last.event.tenant_seq,
        hash: last.hash,
    })
}

fn read_error(tenant: &TenantId, key: &[u8], detail: impl ToString) -> ReadError {
    let position = match keys::frame_key_seq(key, tenant) {
        Some(seq) => format!("frame at tenant_seq {seq}"),
        None => format!("key {:?}", String::from_utf8_lossy(key)),
    };
    ReadError {
        tenant: tenant.clone(),
        position,
        detail: detail.to_string(),
    }
}

/// Decodes a frame into its events and checks that they belong where the key says: this tenant,
/// consecutive tenant_seqs from the key's, one session with consecutive seqs.
fn decode_frame_events(
    tenant: &TenantId,
    key: &[u8],
    value: &[u8],
) -> Result<Vec<StoredEvent>, ReadError> {
    let first_seq = keys::frame_key_seq(key, tenant)
        .ok_or_else(|| read_error(tenant, key, "malformed frame key"))?;
    let frame = decode_frame(value).map_err(|e| read_error(tenant, key, e))?;
    let mut prev = frame.prev_hash;
    let mut out = Vec::with_capacity(frame.bodies.len());
    for (i, body) in frame.bodies.iter().enumerate() {
        let event =
            decode_body(body).map_err(|e| read_error(tenant, key, format!("record {i}: {e}")))?;
        let expected_tenant_seq = first_seq + i as u64;
        if &event.tenant != tenant || event.tenant_seq != expected_tenant_seq {
            return Err(read_error(
                tenant,
                key,
                format!(
                    "record {i} claims tenant {} tenant_seq {}, expected {tenant} {expected_tenant_seq}",
                    event.tenant, event.tenant_seq
                ),
            ));
        }
        if let Some(first) = out.first() {
            let first: &StoredEvent = first;
            let same_session = first.event.session == event.session
                && first.event.env == event.env
                && first.event.team == event.team
                && event.seq == first.event.seq + i as u64;
            if !same_session {
                return Err(read_error(
                    tenant,
                    key,
                    format!("record {i} breaks the group's session or seq"),
                ));
            }
        }
        let hash = chain_hash(&prev, body);
        out.push(StoredEvent {
            event,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    Ok(out)
}

/// Read access to one tenant's log.
#[derive(Clone)]
pub struct TenantReader {
    tree: sled::Tree,
    tenant: TenantId,
}

impl TenantReader {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The last event's position and hash, or `None` for an empty tenant.
    pub fn head(&self) -> Result<Option<Head>, ReadError> {
        let (start, end) = keys::frame_range(&self.tenant);
        match self.tree.range(start..end).next_back() {
            None => Ok(None),
            Some(Err(e)) => Err(ReadError {
                tenant: self.tenant.clone(),
                position: "last frame".into(),
                detail: e.to_string(),
            }),
            Some(Ok((k, v))) => check_frame(&self.tenant, &k, &v).map(Some),
        }
    }

    /// The tenant's events with `tenant_seq` in `range`, in order, one frame in memory at a time.
    /// The iterator ends after the first error.
    pub fn events(&self, range: RangeInclusive<u64>) -> TenantEvents {
        let (start, end) = keys::frame_range(&self.tenant);
        let from = keys::frame_key(&self.tenant, *range.start());
        // The frame holding `range.start()` may begin before it.
        let first = match self.tree.range(start.clone()..=from.clone()).next_back() {
            Some(Ok((k, _))) => k.to_vec(),
            _ => from,
        };
        TenantEvents {
            frames: self.tree.range(first..end),
            tenant: self.tenant.clone(),
            range,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

/// Iterator over a tenant's events; see [`TenantReader::events`].
pub struct TenantEvents {
    frames: sled::Iter,
    tenant: TenantId,
    range: RangeInclusive<u64>,
    pending: VecDeque<StoredEvent>,
    done: bool,
}

impl Iterator for TenantEvents {
    type Item = Result<StoredEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            let (key, value) = match self.frames.next()? {
                Ok(kv) => kv,
                Err(e) => {
                    self.done = true;
                    let position = "frame scan".to_owned();
                    return Some(Err(ReadError {
                        tenant: self.tenant.clone(),
                        position,
                        detail: e.to_string(),
                    }));
                }
            };
            if keys::frame_key_seq(&key, &self.tenant).is_some_and(|s| s > *self.range.end()) {
                self.done = true;
                return None;
            }
            match decode_frame_events(&self.tenant, &key, &value) {
                Ok(events) => self.pending.extend(
                    events
                        .into_iter()
                        .filter(|e| self.range.contains(&e.event.tenant_seq)),
                ),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Read access bounded by a [`TenantCtx`]: sessions of its env (and team, when set).
#[derive(Clone)]
pub struct ScopedReader {
    tree: sled::Tree,
    ctx: TenantCtx,
}

impl ScopedReader {
    pub fn ctx(&self) -> &TenantCtx {
        &self.ctx
    }

    /// Events of one session of this scope's team (or `default`), with `seq` in `range`.
    /// A session of another tenant, env or team is simply empty here.
    pub fn session_events(&self, session: &SessionId, range: RangeInclusive<u64>) -> SessionEvents {
        let team = self.ctx.team_or_default();
        let prefix = keys::session_index_prefix(&self.ctx.tenant, &self.ctx.env, &team, session);
        let from = keys::session_index_key(&prefix, *range.start());
        let first = match self.tree.range(prefix.clone()..=from.clone()).next_back() {
            Some(Ok((k, _))) => k.to_vec(),
            _ => from,
        };
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        SessionEvents {
            index: self.tree.range(first..end),
            tree: self.tree.clone(),
            tenant: self.ctx.tenant.clone(),
            range,
            pending: VecDeque::new(),
            done: false,
        }
    }

    /// The last seq of a session in this scope (0 when it does not exist).
    pub fn session_last_seq(&self, session: &SessionId) -> Result<u64, ReadError> {
        let team = self.ctx.team_or_default();
        last_seq(&self.tree, &self.ctx.tenant, &self.ctx.env, &team, session)
    }

    /// Sessions of this scope, ordered by (team, session id).
    pub fn sessions(&self) -> impl Iterator<Item = Result<SessionInfo, ReadError>> {
        let prefix =
            keys::session_meta_scope(&self.ctx.tenant, &self.ctx.env, self.ctx.team.as_ref());
        let env_prefix_len = keys::session_meta_scope(&self.ctx.tenant, &self.ctx.env, None).len();
        let tenant = self.ctx.tenant.clone();
        let env = self.ctx.env.clone();
        self.tree.scan_prefix(prefix).map(move |entry| {
            let err = |detail: String| ReadError {
                tenant: tenant.clone(),
                position: "session index".into(),
                detail,
            };
            let (key, value) = entry.map_err(|e| err(e.to_string()))?;
            let rest = &key[env_prefix_len..];
            let split = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| err("malformed session key".into()))?;
            let team = std::str::from_utf8(&rest[..split])
                .ok()
                .and_then(|t| TeamId::parse(t).ok());
            let session = std::str::from_utf8(&rest[split + 1..])
                .ok()
                .and_then(|s| SessionId::parse(s).ok());
            let (Some(team), Some(session)) = (team, session) else {
                return Err(err("malformed session key".into()));
            };
            let meta: SessionMeta =
                decode_limited(&value).map_err(|e| err(format!("session {session}: {e}")))?;
            Ok(SessionInfo {
                env: env.clone(),
                team,
                session,
                channel: meta.channel,
                user: meta.user,
                started_at_ms: meta.started_at,
            })
        })
    }

    /// The record of an earlier append of `message_id` on `channel` in this scope's team.
    pub fn idempotency(
        &self,
        channel: &ChannelId,
        message_id: &str,
    ) -> Result<Option<IdempotencyRecord>, ReadError> {
        let team = self.ctx.team_or_default();
        let key =
            keys::idempotency_key(&self.ctx.tenant, &self.ctx.env, &team, channel, message_id);
        read_idempotency(&self.tree, &self.ctx.tenant, &key)
    }

    /// The user's open (started, not ended) session on `channel` in this scope's team.
    pub fn open_session(
        &self,
        channel: &ChannelId,
        user: &str,
    ) -> Result<Option<SessionId>, ReadError> {
        let team = self.ctx.team_or_default();
        let key = keys::open_session_key(&self.ctx.tenant, &self.ctx.env, &team, channel, user);
        let err = |detail: String| ReadError {
            tenant: self.ctx.tenant.clone(),
            position: "open-session index".into(),
            detail,
        };
        match self.tree.get(key).map_err(|e| err(e.to_string()))? {
            None => Ok(None),
            Some(v) => {
                let raw = std::str::from_utf8(&v).map_err(|e| err(e.to_string()))?;
                SessionId::parse(raw)
                    .map(Some)
                    .map_err(|e| err(e.to_string()))
            }
        }
    }
}

fn read_idempotency(
    tree: &sled::Tree,
    tenant: &TenantId,
    key: &[u8],
) -> Result<Option<IdempotencyRecord>, ReadError> {
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: "idempotency record".into(),
        detail,
    };
    match tree.get(key).map_err(|e| err(e.to_string()))? {
        None => Ok(None),
        Some(v) => decode_limited(&v).map(Some).map_err(|e| err(e.to_string())),
    }
}

/// Index entry of one frame in a session: where the frame is and how many events it holds.
fn decode_index_value(v: &[u8]) -> Option<(u64, u16)> {
    let (seq, count) = v.split_first_chunk::<8>()?;
    let count: [u8; 2] = count.try_into().ok()?;
    Some((u64::from_be_bytes(*seq), u16::from_be_bytes(count)))
}

fn last_seq(
    tree: &sled::Tree,
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    session: &SessionId,
) -> Result<u64, ReadError> {
    let prefix = keys::session_index_prefix(tenant, env, team, session);
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: format!("session {session} index"),
        detail,
    };
    let Some(entry) = tree.scan_prefix(&prefix).next_back() else {
        return Ok(0);
    };
    let (k, v) = entry.map_err(|e| err(e.to_string()))?;
    let first_seq = k
        .get(prefix.len()..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| err("malformed index key".into()))?;
    let (_, count) = decode_index_value(&v).ok_or_else(|| err("malformed index value".into()))?;
    Ok(first_seq + u64::from(count) - 1)
}

/// Iterator over one session's events; see [`ScopedReader::session_events`].
pub struct SessionEvents {
    index: sled::Iter,
    tree: sled::Tree,
    tenant: TenantId,
    range: RangeInclusive<u64>,
    pending: VecDeque<StoredEvent>,
    done: bool,
}

impl SessionEvents {
    fn next_frame(&mut self) -> Option<Result<Vec<StoredEvent>, ReadError>> {
        let err = |tenant: &TenantId, detail: String| ReadError {
            tenant: tenant.clone(),
            position: "session index".into(),
            detail,
        };
        let (_, v) = match self.index.next()? {
            Ok(kv) => kv,
            Err(e) => return Some(Err(err(&self.tenant, e.to_string()))),
        };
        let Some((tenant_seq, _)) = decode_index_value(&v) else {
            return Some(Err(err(&self.tenant, "malformed index value".into())));
        };
        let key = keys::frame_key(&self.tenant, tenant_seq);
        match self.tree.get(&key) {
            Ok(Some(frame)) => Some(decode_frame_events(&self.tenant, &key, &frame)),
            Ok(None) => Some(Err(read_error(
                &self.tenant,
                &key,
                "indexed frame is missing",
            ))),
            Err(e) => Some(Err(read_error(&self.tenant, &key, e))),
        }
    }
}

impl Iterator for SessionEvents {
    type Item = Result<StoredEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.done {
                return None;
            }
            match self.next_frame() {
                None => return None,
                Some(Ok(events)) => {
                    if events
                        .first()
                        .is_some_and(|e| e.event.seq > *self.range.end())
                    {
                        self.done = true;
                    }
                    self.pending.extend(
                        events
                            .into_iter()
                            .filter(|e| self.range.contains(&e.event.seq)),
                    );
                }
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// What the writer caches about a session it has appended to.
#[derive(Clone)]
struct SessionHead {
    last_seq: u64,
    channel: ChannelId,
    user: String,
}

type SessionKey = (TenantId, EnvId, TeamId, SessionId);

/// The single writer. Owns the in-memory heads; nothing else assigns seqs.
struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    data_file: File,
    heads: HashMap<TenantId, Head>,
    sessions: HashMap<SessionKey, SessionHead>,
    damaged: HashMap<TenantId, Damage>,
    /// Set when a write failed; every later append is refused with it.
    failed: Option<String>,
    batch_groups_max: usize,
}

/// Keys staged for the current batch that later groups of the same batch must see.
#[derive(Default)]
struct Staged {
    batch: sled::Batch,
    idempotency: HashMap<Vec<u8>, IdempotencyRecord>,
    /// Open-session keys written by this batch: `Some(session)` set, `None` removed.
    open: HashMap<Vec<u8>, Option<SessionId>>,
    groups: usize,
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        let mut replies: Vec<(Reply, Result<AppendOutcome, AppendError>)> = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut staged = Staged::default();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append { group, reply } => {
                        let result = self.stage(group, &mut staged);
                        replies.push((reply, result));
                    }
                    Request::DeleteTenant { tenant, reply } => {
                        // Deletion is not batched with appends: commit what is staged first.
                        self.commit(std::mem::take(&mut staged), &mut replies);
                        let _ = reply.send(self.delete_tenant(&tenant));
                    }
                }
                if replies.len() < self.batch_groups_max {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(staged, &mut replies);
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "final event log flush failed");
        }
    }

    /// Writes the staged batch durably, then answers every caller of it.
    fn commit(
        &mut self,
        staged: Staged,
        replies: &mut Vec<(Reply, Result<AppendOutcome, AppendError>)>,
    ) {
        if staged.groups > 0 {
            let result = self
                .tree
                .apply_batch(staged.batch)
                .and_then(|()| self.db.flush().map(drop))
                .map_err(|e| e.to_string())
                .and_then(|()| self.data_file.sync_data().map_err(|e| e.to_string()));
            if let Err(e) = result {
                tracing::error!(error = %e, "event log write failed; refusing further appends");
                self.failed = Some(e);
            }
        }
        // Only here, between batches, is no staged group relying on a cached head.
        if self.sessions.len() >= SESSION_CACHE_MAX {
            self.sessions.clear();
        }
        for (reply, result) in replies.drain(..) {
            let result = match (&self.failed, result) {
                (Some(e), Ok(_)) => Err(AppendError::Failed(e.clone())),
                (_, r) => r,
            };
            // A caller that gave up waiting is not an error: its group is durable anyway.
            let _ = reply.send(result);
        }
    }

    /// Validates a group and stages its keys. On `Err` nothing of the group is staged.
    fn stage(
        &mut self,
        group: AppendGroup,
        staged: &mut Staged,
    ) -> Result<AppendOutcome, AppendError> {
        if let Some(e) = &self.failed {
            return Err(AppendError::Failed(e.clone()));
        }
        let tenant = group.ctx.tenant.clone();
        if let Some(d) = self.damaged.get(&tenant) {
            return Err(AppendError::TenantDamaged {
                tenant,
                position: d.position.clone(),
                detail: d.detail.clone(),
            });
        }
        validate(&group)?;
        let env = group.ctx.env.clone();
        let team = group.ctx.team_or_default();

        let idem_key = match &group.idempotency {
            None => None,
            Some(idem) => {
                let key =
                    keys::idempotency_key(&tenant, &env, &team, &group.channel, &idem.message_id);
                if let Some(rec) = staged.idempotency.get(&key) {
                    return Ok(AppendOutcome::Duplicate(rec.clone()));
                }
                if let Some(rec) =
                    read_idempotency(&self.tree, &tenant, &key).map_err(damaged_error)?
                {
                    return Ok(AppendOutcome::Duplicate(rec));
                }
                Some(key)
            }
        };

        let session_key: SessionKey = (
            tenant.clone(),
            env.clone(),
            team.clone(),
            group.session.clone(),
        );
        let existing = self.session_head(&session_key)?;
        let actual = existing.as_ref().map_or(0, |h| h.last_seq);
        if actual != group.expected_seq {
            return Err(Rejection::SeqConflict {
                session: group.session,
                expected: group.expected_seq,
                actual,
            }
            .into());
        }
        let starts = matches!(group.kinds.first(), Some(EventKind::SessionStarted { .. }));
        let starts_elsewhere = group
            .kinds
            .iter()
            .skip(1)
            .any(|k| matches!(k, EventKind::SessionStarted { .. }));
        if starts != (group.expected_seq == 0) || starts_elsewhere {
            return Err(Rejection::SessionStartMisplaced.into());
        }
        let session_head = match (existing, group.kinds.first()) {
            (Some(head), _) => {
                if head.channel != group.channel {
                    return Err(Rejection::ChannelMismatch {
                        session: group.session,
                        owner: head.channel,
                        got: group.channel,
                    }
                    .into());
                }
                head
            }
            (None, Some(EventKind::SessionStarted { user, .. })) => SessionHead {
                last_seq: 0,
                channel: group.channel.clone(),
                user: user.clone(),
            },
            (None, _) => return Err(Rejection::SessionStartMisplaced.into()),
        };

        let head = self.heads.get(&tenant).copied().unwrap_or(Head {
            tenant_seq: 0,
            hash: GENESIS_HASH,
        });
        let count = group.kinds.len() as u64;
        let first_seq = group.expected_seq + 1;
        let first_tenant_seq = head.tenant_seq + 1;
        let mut bodies = Vec::with_capacity(group.kinds.len());
        let mut hash = head.hash;
        let mut ends = false;
        for (i, kind) in group.kinds.into_iter().enumerate() {
            ends |= matches!(kind, EventKind::SessionEnded { .. });
            let event = Event {
                id: uuid::Uuid::now_v7(),
                tenant: tenant.clone(),
                env: env.clone(),
                team: team.clone(),
                channel: group.channel.clone(),
                session: group.session.clone(),
                seq: first_seq + i as u64,
                tenant_seq: first_tenant_seq + i as u64,
                at_ms: group.at_ms,
                kind,
            };
            let body = codec::encode_body(&event);
            if body.len() > codec::EVENT_BYTES_MAX {
                return Err(Rejection::TooLong {
                    field: "event",
                    len: body.len(),
                    max: codec::EVENT_BYTES_MAX,
                }
                .into());
            }
            hash = chain_hash(&hash, &body);
            bodies.push(body);
        }
        let frame = codec::encode_frame(&head.hash, &bodies);
        if frame.len() > FRAME_BYTES_MAX {
            return Err(Rejection::GroupTooLarge(frame.len()).into());
        }
        let last_seq = first_seq + count - 1;
        let last_tenant_seq = first_tenant_seq + count - 1;

        // Everything is valid: stage the keys.
        let b = &mut staged.batch;
        b.insert(keys::frame_key(&tenant, first_tenant_seq), frame);
        let index_prefix = keys::session_index_prefix(&tenant, &env, &team, &group.session);
        let mut index_value = first_tenant_seq.to_be_bytes().to_vec();
        let count_u16 =
            u16::try_from(count).expect("group size is checked against GROUP_EVENTS_MAX");
        index_value.extend_from_slice(&count_u16.to_be_bytes());
        b.insert(
            keys::session_index_key(&index_prefix, first_seq),
            index_value,
        );
        let open_key =
            keys::open_session_key(&tenant, &env, &team, &group.channel, &session_head.user);
        if starts {
            let meta = SessionMeta {
                channel: group.channel.clone(),
                user: session_head.user.clone(),
                started_at: group.at_ms,
            };
            let meta = rmp_serde::to_vec_named(&meta)
                .expect("MessagePack encoding of plain fields is infallible");
            b.insert(
                keys::session_meta_key(&tenant, &env, &team, &group.session),
                meta,
            );
            b.insert(open_key.clone(), group.session.as_str().as_bytes());
            staged
                .open
                .insert(open_key.clone(), Some(group.session.clone()));
        }
        if ends {
            // Only clear the user's open session if it is this one.
            let current = match staged.open.get(&open_key) {
                Some(staged) => staged.clone(),
                None => self.tree.get(&open_key).ok().flatten().and_then(|v| {
                    std::str::from_utf8(&v)
                        .ok()
                        .and_then(|s| SessionId::parse(s).ok())
                }),
            };
            if current.as_ref() == Some(&group.session) {
                b.remove(open_key.clone());
                staged.open.insert(open_key, None);
            }
        }
        if let (Some(key), Some(idem)) = (idem_key, group.idempotency) {
            let rec = IdempotencyRecord {
                session: group.session.clone(),
                first_seq,
                last_seq,
                ack: idem.ack,
            };
            let value = rmp_serde::to_vec_named(&rec)
                .expect("MessagePack encoding of plain fields is infallible");
            b.insert(key.clone(), value);
            staged.idempotency.insert(key, rec);
        }
        staged.groups += 1;

        self.heads.insert(
            tenant,
            Head {
                tenant_seq: last_tenant_seq,
                hash,
            },
        );
        self.sessions.insert(
            session_key,
            SessionHead {
                last_seq,
                ..session_head
            },
        );
        Ok(AppendOutcome::Appended(Appended {
            first_seq,
            last_seq,
            first_tenant_seq,
            last_tenant_seq,
            hash,
        }))
    }

    /// The cached head of a session, loaded from the index and meta on a miss.
    fn session_head(&mut self, key: &SessionKey) -> Result<Option<SessionHead>, AppendError> {
        if let Some(h) = self.sessions.get(key) {
            return Ok(Some(h.clone()));
        }
        let (tenant, env, team, session) = key;
        let last = last_seq(&self.tree, tenant, env, team, session).map_err(damaged_error)?;
        if last == 0 {
            return Ok(None);
        }
        let meta_key = keys::session_meta_key(tenant, env, team, session);
        let err = |detail: String| AppendError::TenantDamaged {
            tenant: tenant.clone(),
            position: format!("session {session} meta"),
            detail,
        };
        let value = self
            .tree
            .get(meta_key)
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("missing".into()))?;
        let meta: SessionMeta = decode_limited(&value).map_err(|e| err(e.to_string()))?;
        Ok(Some(SessionHead {
            last_seq: last,
            channel: meta.channel,
            user: meta.user,
        }))
    }

    fn delete_tenant(&mut self, tenant: &TenantId) -> Result<u64, AppendError> {
        if let Some(e) = &self.failed {
            return Err(AppendError::Failed(e.clone()));
        }
        const DELETE_BATCH_KEYS: usize = 4096;
        let prefix = keys::tenant_prefix(tenant);
        let mut removed = 0u64;
        let result = (|| -> Result<(), sled::Error> {
            loop {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for entry in self
                    .tree
                    .scan_prefix(&prefix)
                    .keys()
                    .take(DELETE_BATCH_KEYS)
                {
                    batch.remove(entry?);
                    n += 1;
                }
                if n == 0 {
                    return Ok(());
                }
                self.tree.apply_batch(batch)?;
                removed += n as u64;
            }
        })()
        .and_then(|()| self.db.flush().map(drop))
        .map_err(|e| e.to_string())
        .and_then(|()| self.data_file.sync_data().map_err(|e| e.to_string()));
        self.heads.remove(tenant);
        self.damaged.remove(tenant);
        self.sessions.retain(|(t, ..), _| t != tenant);
        match result {
            Ok(()) => Ok(removed),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(AppendError::Failed(e))
            }
        }
    }
}

fn damaged_error(e: ReadError) -> AppendError {
    AppendError::TenantDamaged {
        tenant: e.tenant,
        position: e.position,
        detail: e.detail,
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.len() > max {
        return Err(Rejection::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Checks the caller-supplied sizes before anything is encoded.
fn validate(group: &AppendGroup) -> Result<(), Rejection> {
    if !(1..=GROUP_EVENTS_MAX).contains(&group.kinds.len()) {
        return Err(Rejection::GroupSize(group.kinds.len()));
    }
    if let Some(idem) = &group.idempotency {
        if idem.message_id.is_empty() {
            return Err(Rejection::EmptyMessageId);
        }
        check_len("message_id", &idem.message_id, NAME_BYTES_MAX)?;
        if idem.ack.len() > ACK_BYTES_MAX {
            return Err(Rejection::TooLong {
                field: "ack",
                len: idem.ack.len(),
                max: ACK_BYTES_MAX,
            });
        }
    }
    for kind in &group.kinds {
        match kind {
            EventKind::SessionStarted {
                user,
                flow,
                flow_version,
            } => {
                check_len("user", user, NAME_BYTES_MAX)?;
                check_len("flow", flow, NAME_BYTES_MAX)?;
                check_len("flow_version", flow_version, NAME_BYTES_MAX)?;
            }
            EventKind::MessageReceived {
                message_id,
                user,
                text,
            } => {
                check_len("message_id", message_id, NAME_BYTES_MAX)?;
                check_len("user", user, NAME_BYTES_MAX)?;
                check_len("text", text, TEXT_BYTES_MAX)?;
            }
            EventKind::NodeEntered { node } => check_len("node", node, NAME_BYTES_MAX)?,
            EventKind::ReplySent { node, text } => {
                check_len("node", node, NAME_BYTES_MAX)?;
                check_len("text", text, TEXT_BYTES_MAX)?;
            }
            EventKind::StateSet { key, value } => {
                check_len("key", key, NAME_BYTES_MAX)?;
                check_len("value", value, TEXT_BYTES_MAX)?;
            }
            EventKind::FlowFailed { node, error } => {
                check_len("node", node, NAME_BYTES_MAX)?;
                check_len("error", error, TEXT_BYTES_MAX)?;
            }
            EventKind::SessionEnded { reason } => check_len("reason", reason, NAME_BYTES_MAX)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
