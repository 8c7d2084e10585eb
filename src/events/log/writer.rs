//! The log's write path: one *stager* thread (here) and one *syncer* thread (`syncer.rs`).
//!
//! The stager drains up to `batch_groups_max` requests from the bounded queue, validates each
//! group, assigns ids, seqs and chain hashes, stages all keys of the batch into one `sled::Batch`
//! and applies it. It hands the batch's replies to the syncer and goes on with the next batch.
//! The syncer takes every applied batch that is waiting, calls `Db::flush`, `fdatasync`s sled's
//! data file, and only then answers those callers. So flushing batch N overlaps staging batch
//! N+1, and one flush covers as many batches as arrived meanwhile (group commit).
//!
//! Invariants:
//! - only the stager assigns seqs; its caches (tenant heads, session heads) always equal what is
//!   applied to sled, because a failed apply stops all further appends until a recovery, which
//!   reloads them from disk;
//! - a complete idempotency filter (`seen`) holds every idempotency key of its tenant in sled
//!   (a filter may hold more, never less), so an id it calls absent was never appended;
//! - a reply is sent only after a flush that started after its batch was applied, and the
//!   durable frontier (what readers see) moves only then;
//! - after any write error the log refuses appends until the stager has reopened the files,
//!   undone every batch not covered by a successful flush (`recover`) and re-checked the tails:
//!   a group whose caller was told it failed is gone afterwards, whatever reached the disk.
//!
//! The one exception is a fault switch for the crash test's negative control
//! (`TENANTRY_FAULT_ACK_BEFORE_FLUSH=1`): it makes the stager answer right after `apply_batch`,
//! which breaks the second invariant on purpose, so the crash test can show that it notices. It
//! also makes the syncer wait [`FAULT_SLOW_DISK`] before each flush, as a slow disk would, so
//! that acked-but-unflushed groups exist at most moments rather than only in a debug build's
//! rare lucky windows.
//! It exists only with `debug_assertions`: release builds neither contain it nor read the
//! variable.

mod adopt;
mod ops;
mod rebase;
mod seen;
mod stage;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;

use tokio::sync::oneshot;

use serde_bytes::ByteBuf;

use super::replica::{op_bytes, Op, Unit, UNIT_BYTES_CLOSE};
use super::store::{Shared, Store};
use super::{AppendError, AppendOutcome, Damage, Head, IdempotencyRecord, Reply, Request};
use crate::events::codec;
use crate::events::keys;
use crate::tenancy::{ChannelId, SessionId, TenantId};

/// Most session heads the stager caches; past it the cache is dropped (between batches) and
/// refilled from disk.
const SESSION_CACHE_MAX: usize = 1 << 20;

/// Applied batches that may wait for the syncer before the stager blocks. Small: while the
/// stager waits, requests pile up in the queue and the next batch is simply larger.
pub(super) const SYNC_QUEUE_BATCHES: usize = 2;

type AppendResult = Result<AppendOutcome, AppendError>;

/// Work handed from the stager to the syncer.
pub(super) enum Applied {
    Appends {
        replies: Vec<(Reply, AppendResult)>,
        failed: bool,
        /// The handles the batch was applied to (`None`: nothing was).
        store: Option<Arc<Store>>,
        /// The batch's number, counted by the stager from 1.
        batch: u64,
        /// Per tenant, the last `tenant_seq` the batch wrote: the frontier after its flush.
        tops: Vec<(TenantId, u64)>,
        /// With the JetStream backend: the batch's groups, for the stream.
        units: Vec<Unit>,
        /// A batch of tenant ops (`ops.rs`, no groups): its caller, answered like a group's.
        ops_reply: Option<ops::OpsReply>,
    },
    /// A base chunk of a stream compaction (`rebase.rs`), published as a record of its own.
    Base {
        tenant: TenantId,
        /// Taken by the syncer when it publishes it.
        unit: Option<Unit>,
        next: Option<Vec<u8>>,
        /// Set by the syncer: the tenant's last stream sequence before the chunk's record.
        before: u64,
        reply: rebase::BaseReply,
        store: Option<Arc<Store>>,
    },
    Delete {
        reply: oneshot::Sender<Result<u64, AppendError>>,
        result: Result<u64, AppendError>,
        store: Option<Arc<Store>>,
        tenant: TenantId,
    },
}

/// How to take back one applied batch that no flush has covered: keys it created (removed) and
/// open-session keys it changed (restored to their value before the batch).
#[derive(Default)]
pub(super) struct Undo {
    pub(super) created: Vec<Vec<u8>>,
    pub(super) open: Vec<(Vec<u8>, Option<sled::IVec>)>,
}

/// What the stager caches about a session it has appended to: what every group checks. The
/// user the open-session index keys it by is needed only when it ends, and read from its meta
/// then ([`Staged::started`] for a session started in the same batch), so a cached session
/// costs no copy of it.
pub(super) struct SessionHead {
    last_seq: u64,
    channel: ChannelId,
}

/// The session's index prefix (`{t}\0S{env}\0{team}\0{session}\0`): unique per session, and
/// built for the index key anyway, so the cache costs no extra allocation per group.
pub(super) type SessionKey = Vec<u8>;

/// Keys staged for the current batch that later groups of the same batch must see.
#[derive(Default)]
struct Staged {
    batch: sled::Batch,
    idempotency: HashMap<Vec<u8>, IdempotencyRecord>,
    /// Open-session keys written by this batch: `Some(session)` set, `None` removed.
    open: HashMap<Vec<u8>, Option<SessionId>>,
    groups: usize,
    /// sled writes staged (puts and removals, frames included), for `LogMetrics::sled_writes`.
    writes: usize,
    undo: Undo,
    tops: HashMap<TenantId, u64>,
    /// Whether the groups' writes go to a stream (the JetStream backend) too.
    replicate: bool,
    /// With `replicate`: the writes of each group staged so far, in order.
    units: Vec<Unit>,
    /// With `replicate`: the writes of the group being staged.
    unit_ops: Vec<Op>,
    /// Data keys made for this batch's sessions (by their entry's sled key): staged, not yet
    /// in the tree, and later groups of the batch must seal under the same key.
    data_keys: HashMap<Vec<u8>, crate::events::seal::DataKey>,
    /// Sessions started in this batch, with the name the open-session index keys them by (their
    /// meta is staged, not yet in the tree): an end later in the batch needs it.
    started: HashMap<SessionKey, String>,
    /// When the stager began the batch (for `LogMetrics::batch_seconds`; set by `new`).
    since: Option<std::time::Instant>,
    /// Without `replicate`: per tenant, the frame its groups of this batch are going into.
    frames: HashMap<TenantId, PendingFrame>,
}

/// A frame of one tenant's groups being built for the batch: one sled key for many groups
/// (`codec`'s version 2 frames).
struct PendingFrame {
    key: Vec<u8>,
    frame: codec::FrameBuilder,
    /// The tenant_seq of its first record.
    start: u64,
    /// The tenant_seq a group must start at to join the frame.
    next_tenant_seq: u64,
    /// Hashes of the sessions it holds a group of. A session's next group starts another
    /// frame, so each session's run of records in a frame is one group (a hash collision only
    /// starts a frame early).
    sessions: Vec<u64>,
    /// With `replicate`: its groups' other writes and the tenant's head and ops revision after
    /// the last of them, the stream's unit once the frame is finished (`finish_frame`).
    unit: Option<Unit>,
    /// With `replicate`: what the other writes add to a record ([`op_bytes`]).
    unit_bytes: usize,
}

impl Staged {
    fn new(replicate: bool) -> Staged {
        Staged {
            replicate,
            since: Some(std::time::Instant::now()),
            ..Staged::default()
        }
    }

    /// Stages a write (and records it for the stream).
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes += 1;
        if self.replicate {
            // sled copies what it is given; the stream's copy keeps the originals.
            self.batch.insert(key.as_slice(), value.as_slice());
            self.unit_ops
                .push((ByteBuf::from(key), Some(ByteBuf::from(value))));
        } else {
            self.batch.insert(key, value);
        }
    }

    /// Stages a removal (and records it for the stream).
    fn remove(&mut self, key: Vec<u8>) {
        self.writes += 1;
        if self.replicate {
            self.batch.remove(key.as_slice());
            self.unit_ops.push((ByteBuf::from(key), None));
        } else {
            self.batch.remove(key);
        }
    }

    /// Stages a group's event bodies, the first at `first_tenant_seq` after `prev_hash`: the
    /// group joins the tenant's pending frame while the frame stays within
    /// [`codec::FRAME_COALESCE_BYTES`] and [`codec::FRAME_RECORDS_MAX`] and holds no group of
    /// the same session. Returns the first tenant_seq of the frame the group went into. For the
    /// stream, a frame and its groups' other writes are one unit (`end_unit`, `finish_frame`).
    fn stage_frame(
        &mut self,
        tenant: &TenantId,
        (first_tenant_seq, prev_hash): (u64, &codec::Hash),
        bodies: Vec<Vec<u8>>,
        session_key: &[u8],
    ) -> u64 {
        let session = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::hash::Hasher::write(&mut h, session_key);
            std::hash::Hasher::finish(&h)
        };
        let adds = codec::frame_len(&bodies) - codec::FRAME_HEADER_BYTES;
        let joins = self.frames.get(tenant).is_some_and(|p| {
            p.next_tenant_seq == first_tenant_seq
                && !p.sessions.contains(&session)
                && p.frame.len() + adds <= codec::FRAME_COALESCE_BYTES
                && p.frame.records() + bodies.len() <= codec::FRAME_RECORDS_MAX
        });
        let pending = match self.frames.get_mut(tenant) {
            Some(p) if joins => {
                p.frame.next_group();
                p
            }
            _ => {
                let key = keys::frame_key(tenant, first_tenant_seq);
                self.undo.created.push(key.clone());
                let fresh = PendingFrame {
                    key,
                    frame: codec::FrameBuilder::with_capacity(
                        prev_hash,
                        codec::FRAME_HEADER_BYTES + adds,
                    ),
                    start: first_tenant_seq,
                    next_tenant_seq: first_tenant_seq,
                    sessions: Vec::new(),
                    unit: None,
                    unit_bytes: 0,
                };
                if let Some(done) = self.frames.insert(tenant.clone(), fresh) {
                    self.finish_frame(done);
                }
                self.frames.get_mut(tenant).expect("inserted above")
            }
        };
        for body in &bodies {
            pending.frame.push(body);
        }
        pending.next_tenant_seq = first_tenant_seq + bodies.len() as u64;
        pending.sessions.push(session);
        pending.start
    }

    /// Puts the pending frames into the batch: before it is applied.
    fn seal_frames(&mut self) {
        for (_, done) in std::mem::take(&mut self.frames) {
            self.finish_frame(done);
        }
    }

    /// Puts a finished frame into the batch; for the stream (a frame has a unit only then), the
    /// frame's write first, then its groups' other writes, as one unit.
    fn finish_frame(&mut self, done: PendingFrame) {
        let frame = done.frame.finish();
        self.writes += 1;
        match done.unit {
            Some(mut unit) => {
                self.batch.insert(done.key.as_slice(), frame.as_slice());
                let write = (ByteBuf::from(done.key), Some(ByteBuf::from(frame)));
                unit.ops.insert(0, write);
                self.units.push(unit);
            }
            _ => self.batch.insert(done.key, frame),
        }
    }

    /// After a group is staged: for the stream, its writes join its frame's unit, which now
    /// ends at the tenant's `head` and ops revision `rev`.
    fn end_unit(&mut self, tenant: &TenantId, head: Head, rev: u64) {
        if !self.replicate {
            return;
        }
        let ops = std::mem::take(&mut self.unit_ops);
        let fresh = |ops| Unit {
            tenant: tenant.clone(),
            head,
            rev,
            ops,
        };
        let Some(pending) = self.frames.get_mut(tenant) else {
            // Every group stages a frame first; without one its writes still travel, alone.
            self.units.push(fresh(ops));
            return;
        };
        pending.unit_bytes += ops.iter().map(op_bytes).sum::<usize>();
        match &mut pending.unit {
            Some(unit) => {
                unit.head = head;
                unit.rev = rev;
                unit.ops.extend(ops);
            }
            None => pending.unit = Some(fresh(ops)),
        }
        // A record holds whole units: a large one takes no more groups.
        if pending.unit_bytes + pending.frame.len() > UNIT_BYTES_CLOSE {
            if let Some(done) = self.frames.remove(tenant) {
                self.finish_frame(done);
            }
        }
    }
}

/// UUID v7 ids without a syscall per event: the millisecond clock plus a counter that starts at
/// a random value, so ids are unique and increase within the process (RFC 9562 §6.2, method 2).
struct IdGen {
    last_ms: u64,
    counter: u64,
    salt: [u8; 2],
}

impl IdGen {
    fn new() -> IdGen {
        // The random bits of one library-made v7 id seed the counter and salt.
        let seed = uuid::Uuid::now_v7().into_bytes();
        let mut counter = [0; 8];
        counter.copy_from_slice(&seed[8..]);
        IdGen {
            last_ms: 0,
            counter: u64::from_be_bytes(counter) >> 1,
            salt: [seed[6], seed[7]],
        }
    }

    fn next(&mut self, now_ms: u64) -> uuid::Uuid {
        // The clock may step back; ids must not.
        self.last_ms = self.last_ms.max(now_ms);
        self.counter = self.counter.wrapping_add(1);
        let mut rand = [0u8; 10];
        rand[..8].copy_from_slice(&self.counter.to_be_bytes());
        rand[8..].copy_from_slice(&self.salt);
        uuid::Builder::from_unix_timestamp_millis(self.last_ms, &rand).into_uuid()
    }
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The stager. Owns the in-memory heads; nothing else assigns seqs.
pub(super) struct Stager {
    pub(super) shared: Arc<Shared>,
    /// The handles appends go to; `None` after a recovery failed to reopen the files.
    pub(super) store: Option<Arc<Store>>,
    pub(super) heads: HashMap<TenantId, Head>,
    pub(super) damaged: HashMap<TenantId, Damage>,
    pub(super) batch_groups_max: usize,
    /// By the session's index prefix, kept in an allocation of its exact length (the prefix is
    /// built with room to spare for the index key): one entry per live session.
    pub(super) sessions: HashMap<Box<[u8]>, SessionHead>,
    /// Per tenant, a filter of its idempotency keys: most new message ids need no sled read.
    pub(super) seen: seen::Seen,
    /// The number of the last batch applied (or attempted).
    pub(super) batch: u64,
    /// Applied batches not yet known to be durable, oldest first, with how to undo them.
    pub(super) unconfirmed: VecDeque<(u64, Undo)>,
    /// When the last recovery was attempted.
    pub(super) last_recovery: Option<std::time::Instant>,
    /// Per tenant, its ops revision (`log::ops`), read from the tree at first need.
    pub(super) revs: HashMap<TenantId, u64>,
    ids: IdGen,
    /// Test-only fault: answer callers before the flush (see the module docs).
    #[cfg(debug_assertions)]
    ack_before_flush: bool,
}

impl Stager {
    pub(super) fn new(
        shared: Arc<Shared>,
        heads: HashMap<TenantId, Head>,
        damaged: HashMap<TenantId, Damage>,
        batch_groups_max: usize,
    ) -> Stager {
        #[cfg(debug_assertions)]
        let ack_before_flush =
            fault_ack_before_flush(std::env::var_os(FAULT_ACK_BEFORE_FLUSH_VAR).as_deref());
        #[cfg(debug_assertions)]
        if ack_before_flush {
            tracing::warn!(
                variable = FAULT_ACK_BEFORE_FLUSH_VAR,
                "FAULT INJECTION ACTIVE: the event log acks appends BEFORE they are flushed; \
                 acked events WILL be lost in a crash. Test builds only; never run this in \
                 production"
            );
        }
        Stager {
            store: shared.store(),
            shared,
            heads,
            damaged,
            batch_groups_max,
            sessions: HashMap::new(),
            seen: seen::Seen::new(),
            batch: 0,
            unconfirmed: VecDeque::new(),
            last_recovery: None,
            revs: HashMap::new(),
            ids: IdGen::new(),
            #[cfg(debug_assertions)]
            ack_before_flush,
        }
    }

    pub(super) fn run(mut self, rx: Receiver<Request>, to_syncer: SyncSender<Applied>) {
        loop {
            // A failed log retries its recovery now and then, with or without requests. The
            // failure is often the syncer's (a flush), set while this thread waits for
            // requests, so it never waits without a time-out: it would sleep through the
            // failure until the next append, which may never come.
            let first = match rx.recv_timeout(super::RECOVERY_RETRY) {
                Ok(first) => Some(first),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if self.shared.has_failure() {
                self.recover_if_due();
            }
            let Some(first) = first else {
                self.step_filters();
                continue;
            };
            let tree = self.store.as_ref().map(|s| s.tree.clone());
            let replicate = self.shared.replica.is_some();
            let mut staged = Staged::new(replicate);
            let mut replies = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append { group, reply } => {
                        reply.taken(&self.shared.metrics);
                        let result = match &tree {
                            Some(tree) => self.stage(tree, group, &mut staged),
                            None => Err(self.failed()),
                        };
                        replies.push((reply, result));
                    }
                    Request::Adopt { tenant, reply } => {
                        let _ = reply.send(self.adopt(&tenant));
                    }
                    Request::BaseChunk {
                        tenant,
                        after,
                        reply,
                    } => {
                        // Read after every earlier batch was applied: apply what is staged.
                        let applied = self.apply(
                            std::mem::replace(&mut staged, Staged::new(replicate)),
                            std::mem::take(&mut replies),
                        );
                        if to_syncer.send(applied).is_err() {
                            return;
                        }
                        if let Some(chunk) = self.base_chunk(tree.as_ref(), &tenant, after, reply) {
                            if to_syncer.send(chunk).is_err() {
                                return;
                            }
                        }
                    }
                    Request::TenantOps { tenant, ops, reply } => {
                        // Not batched with appends either: apply what is staged first.
                        let applied = self.apply(
                            std::mem::replace(&mut staged, Staged::new(replicate)),
                            std::mem::take(&mut replies),
                        );
                        if to_syncer.send(applied).is_err() {
                            return;
                        }
                        if let Some(ops) = self.apply_ops(tree.as_ref(), &tenant, ops, reply) {
                            if to_syncer.send(ops).is_err() {
                                return;
                            }
                        }
                    }
                    Request::DeleteTenant { tenant, reply } => {
                        // Deletion is not batched with appends: apply what is staged first.
                        let applied = self.apply(
                            std::mem::replace(&mut staged, Staged::new(replicate)),
                            std::mem::take(&mut replies),
                        );
                        let result = match &tree {
                            Some(tree) => self.delete_tenant(tree, &tenant),
                            None => Err(self.failed()),
                        };
                        let delete = Applied::Delete {
                            reply,
                            result,
                            store: self.store.clone(),
                            tenant,
                        };
                        if to_syncer.send(applied).is_err() || to_syncer.send(delete).is_err() {
                            return;
                        }
                    }
                }
                if replies.len() < self.batch_groups_max {
                    next = rx.try_recv().ok();
                }
            }
            let applied = self.apply(staged, replies);
            #[cfg(debug_assertions)]
            let applied = if self.ack_before_flush {
                ack_now(applied, &self.shared.metrics)
            } else {
                applied
            };
            if to_syncer.send(applied).is_err() {
                return;
            }
            // While the syncer flushes: the idempotency filters being built take a step.
            self.step_filters();
        }
    }

    /// Scans a bounded number of idempotency keys into the filters being built (`seen`).
    fn step_filters(&mut self) {
        if !self.seen.scanning() || self.shared.has_failure() {
            return;
        }
        if let Some(store) = &self.store {
            self.seen.step(&store.tree);
        }
    }

    /// The error for appends while the log refuses them.
    fn failed(&self) -> AppendError {
        AppendError::Failed(
            self.shared
                .failure()
                .unwrap_or_else(|| "the event log is recovering".into()),
        )
    }

    /// Applies the staged batch to sled (not yet durable) and remembers how to undo it until
    /// the syncer reports it durable.
    fn apply(&mut self, mut staged: Staged, replies: Vec<(Reply, AppendResult)>) -> Applied {
        staged.seal_frames();
        let mut failed = false;
        self.batch += 1;
        let durable = self.shared.durable_batch.load(Ordering::SeqCst);
        while self.unconfirmed.front().is_some_and(|(b, _)| *b <= durable) {
            self.unconfirmed.pop_front();
        }
        if staged.groups > 0 {
            if let Some(store) = &self.store {
                // Recorded before applying: a failed apply may still have reached sled's buffers.
                self.unconfirmed.push_back((self.batch, staged.undo));
                let writes = u64::try_from(staged.writes).unwrap_or(u64::MAX);
                self.shared.metrics.sled_writes.inc_by(writes);
                if let Err(e) = store.tree.apply_batch(staged.batch) {
                    tracing::error!(error = %e, "event log apply failed; refusing appends until recovered");
                    self.shared.fail(e.to_string());
                    failed = true;
                }
            }
        }
        if let Some(since) = staged.since {
            let spent = since.elapsed().as_secs_f64();
            self.shared.metrics.batch_seconds.observe(spent);
        }
        // Only here, between batches, is no staged group relying on a cached head.
        if self.sessions.len() >= SESSION_CACHE_MAX {
            self.sessions.clear();
        }
        Applied::Appends {
            replies,
            failed,
            store: self.store.clone(),
            batch: self.batch,
            tops: staged.tops.into_iter().collect(),
            units: staged.units,
            ops_reply: None,
        }
    }

    /// Removes every key of the tenant in bounded batches (durable once the syncer flushed).
    fn delete_tenant(&mut self, tree: &sled::Tree, tenant: &TenantId) -> Result<u64, AppendError> {
        if let Some(e) = self.shared.failure() {
            return Err(AppendError::Failed(e));
        }
        const DELETE_BATCH_KEYS: usize = 4096;
        let prefix = keys::tenant_prefix(tenant);
        let mut removed = 0u64;
        let result = loop {
            let mut batch = sled::Batch::default();
            let mut n = 0u64;
            let mut scan_error = None;
            for key in tree.scan_prefix(&prefix).keys().take(DELETE_BATCH_KEYS) {
                match key {
                    Ok(key) => {
                        batch.remove(key);
                        n += 1;
                    }
                    Err(e) => scan_error = Some(e),
                }
            }
            if let Some(e) = scan_error {
                break Err(e);
            }
            if n == 0 {
                break Ok(());
            }
            if let Err(e) = tree.apply_batch(batch) {
                break Err(e);
            }
            removed += n;
        };
        self.heads.remove(tenant);
        self.damaged.remove(tenant);
        self.revs.remove(tenant);
        self.sessions.retain(|k, _| !k.starts_with(&prefix));
        self.seen.forget(tenant);
        result.map(|()| removed).map_err(|e| {
            self.shared.fail(e.to_string());
            AppendError::Failed(e.to_string())
        })
    }
}

/// The environment variable that turns on the ack-before-flush fault in debug builds.
#[cfg(any(debug_assertions, test))]
pub(super) const FAULT_ACK_BEFORE_FLUSH_VAR: &str = "TENANTRY_FAULT_ACK_BEFORE_FLUSH";

/// With the fault on, how long the syncer waits before each flush (a slow disk).
#[cfg(debug_assertions)]
pub(super) const FAULT_SLOW_DISK: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the fault variable's value (`1`) turns the fault on.
#[cfg(debug_assertions)]
pub(super) fn fault_ack_before_flush(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| v == "1")
}

/// Without debug assertions the fault does not exist, whatever the environment says. Only the
/// unit test calls this (under `cargo test --release`); the server has no code to call.
#[cfg(all(test, not(debug_assertions)))]
pub(super) fn fault_ack_before_flush(_value: Option<&std::ffi::OsStr>) -> bool {
    false
}

/// The fault itself: answers the batch's callers now, as if the flush had succeeded, and hands
/// the syncer an empty batch so it still flushes (later) what was applied.
#[cfg(debug_assertions)]
fn ack_now(applied: Applied, metrics: &super::LogMetrics) -> Applied {
    match applied {
        Applied::Appends {
            replies,
            failed,
            store,
            batch,
            tops,
            units,
            ops_reply,
        } => {
            let answered = Applied::Appends {
                replies,
                failed,
                store: None,
                batch,
                tops: Vec::new(),
                units: Vec::new(),
                ops_reply: None,
            };
            super::syncer::answer(answered, &Ok(()), metrics);
            Applied::Appends {
                replies: Vec::new(),
                failed,
                store,
                batch,
                tops,
                units,
                ops_reply,
            }
        }
        other @ (Applied::Delete { .. } | Applied::Base { .. }) => other,
    }
}

#[cfg(test)]
mod frames_tests;
