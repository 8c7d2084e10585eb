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

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::read::{last_seq, read_idempotency};
use super::store::{Shared, Store};
use super::{
    AppendError, AppendGroup, AppendOutcome, Appended, Damage, Head, IdempotencyRecord, ReadError,
    Rejection, Reply, Request, SessionMeta, ACK_BYTES_MAX,
};
use crate::events::codec::{
    self, chain_hash, decode_limited, EventRef, FRAME_BYTES_MAX, GENESIS_HASH, GROUP_EVENTS_MAX,
    NAME_BYTES_MAX, TEXT_BYTES_MAX,
};
use crate::events::keys;
use crate::events::schema::EventKind;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

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

/// What the stager caches about a session it has appended to.
pub(super) struct SessionHead {
    last_seq: u64,
    channel: ChannelId,
    user: String,
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
    undo: Undo,
    tops: HashMap<TenantId, u64>,
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
    pub(super) sessions: HashMap<SessionKey, SessionHead>,
    /// The number of the last batch applied (or attempted).
    pub(super) batch: u64,
    /// Applied batches not yet known to be durable, oldest first, with how to undo them.
    pub(super) unconfirmed: VecDeque<(u64, Undo)>,
    /// When the last recovery was attempted.
    pub(super) last_recovery: Option<std::time::Instant>,
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
            batch: 0,
            unconfirmed: VecDeque::new(),
            last_recovery: None,
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
            if self.shared.failure().is_some() {
                self.recover_if_due();
            }
            let Some(first) = first else { continue };
            let tree = self.store.as_ref().map(|s| s.tree.clone());
            let mut staged = Staged::default();
            let mut replies = Vec::new();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append { group, reply } => {
                        let result = match &tree {
                            Some(tree) => self.stage(tree, group, &mut staged),
                            None => Err(self.failed()),
                        };
                        replies.push((reply, result));
                    }
                    Request::DeleteTenant { tenant, reply } => {
                        // Deletion is not batched with appends: apply what is staged first.
                        let applied =
                            self.apply(std::mem::take(&mut staged), std::mem::take(&mut replies));
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
                ack_now(applied)
            } else {
                applied
            };
            if to_syncer.send(applied).is_err() {
                return;
            }
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
    fn apply(&mut self, staged: Staged, replies: Vec<(Reply, AppendResult)>) -> Applied {
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
                if let Err(e) = store.tree.apply_batch(staged.batch) {
                    tracing::error!(error = %e, "event log apply failed; refusing appends until recovered");
                    self.shared.fail(e.to_string());
                    failed = true;
                }
            }
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
        }
    }

    /// Validates a group and stages its keys. On `Err` nothing of the group is staged.
    fn stage(
        &mut self,
        tree: &sled::Tree,
        group: AppendGroup,
        staged: &mut Staged,
    ) -> AppendResult {
        if let Some(e) = self.shared.failure() {
            return Err(AppendError::Failed(e));
        }
        let tenant = &group.ctx.tenant;
        if let Some(d) = self.damaged.get(tenant) {
            return Err(AppendError::TenantDamaged {
                tenant: tenant.clone(),
                position: d.position.clone(),
                detail: d.detail.clone(),
            });
        }
        validate(&group)?;
        let env = &group.ctx.env;
        let team = group.ctx.team_or_default();

        let idem_key = match &group.idempotency {
            None => None,
            Some(idem) => {
                let key =
                    keys::idempotency_key(tenant, env, &team, &group.channel, &idem.message_id);
                if let Some(rec) = staged.idempotency.get(&key) {
                    return Ok(AppendOutcome::Duplicate(rec.clone()));
                }
                if let Some(rec) = read_idempotency(tree, tenant, &key).map_err(damaged_error)? {
                    return Ok(AppendOutcome::Duplicate(rec));
                }
                Some(key)
            }
        };

        let session_key: SessionKey =
            keys::session_index_prefix(tenant, env, &team, &group.session);
        self.load_session_head(tree, &session_key, tenant, env, &team, &group.session)?;
        let existing = self.sessions.get(&session_key);
        let actual = existing.map_or(0, |h| h.last_seq);
        if actual != group.expected_seq {
            let session = group.session.clone();
            return Err(Rejection::SeqConflict {
                session,
                expected: group.expected_seq,
                actual,
            }
            .into());
        }
        let starts = matches!(group.kinds.first(), Some(EventKind::SessionStarted { .. }));
        let starts_later = group
            .kinds
            .iter()
            .skip(1)
            .any(|k| matches!(k, EventKind::SessionStarted { .. }));
        if starts != (group.expected_seq == 0) || starts_later {
            return Err(Rejection::SessionStartMisplaced.into());
        }
        if let Some(head) = existing.filter(|h| h.channel != group.channel) {
            return Err(Rejection::ChannelMismatch {
                session: group.session.clone(),
                owner: head.channel.clone(),
                got: group.channel.clone(),
            }
            .into());
        }
        let ends = group
            .kinds
            .iter()
            .any(|k| matches!(k, EventKind::SessionEnded { .. }));
        // The user is only needed to maintain the open-session index at start and end.
        let user = match (existing, group.kinds.first()) {
            (_, Some(EventKind::SessionStarted { user, .. })) => Some(user.clone()),
            (Some(head), _) if ends => Some(head.user.clone()),
            _ => None,
        };

        let head = self.heads.get(tenant).copied().unwrap_or(Head {
            tenant_seq: 0,
            hash: GENESIS_HASH,
        });
        let count = group.kinds.len() as u64;
        let first_seq = group.expected_seq + 1;
        let first_tenant_seq = head.tenant_seq + 1;
        let now_ms = unix_ms();
        let mut bodies = Vec::with_capacity(group.kinds.len());
        let mut hash = head.hash;
        for (i, kind) in group.kinds.iter().enumerate() {
            let body = codec::encode_body_ref(&EventRef {
                id: self.ids.next(now_ms),
                tenant,
                env,
                team: &team,
                channel: &group.channel,
                session: &group.session,
                seq: first_seq + i as u64,
                tenant_seq: first_tenant_seq + i as u64,
                at_ms: group.at_ms,
                kind,
            });
            if body.len() > codec::EVENT_BYTES_MAX {
                let len = body.len();
                return Err(Rejection::TooLong {
                    field: "event",
                    len,
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
        let frame_key = keys::frame_key(tenant, first_tenant_seq);
        staged.undo.created.push(frame_key.clone());
        b.insert(frame_key, frame);
        let count_u16 =
            u16::try_from(count).expect("group size is checked against GROUP_EVENTS_MAX");
        let mut index_value = [0u8; 10];
        index_value[..8].copy_from_slice(&first_tenant_seq.to_be_bytes());
        index_value[8..].copy_from_slice(&count_u16.to_be_bytes());
        let index_key = keys::session_index_key(&session_key, first_seq);
        staged.undo.created.push(index_key.clone());
        b.insert(index_key, &index_value[..]);
        if let Some(user) = &user {
            let open_key = keys::open_session_key(tenant, env, &team, &group.channel, user);
            if !staged.open.contains_key(&open_key) {
                // The first change of this key in the batch: keep its value for an undo.
                let before = tree
                    .get(&open_key)
                    .map_err(|e| AppendError::TenantDamaged {
                        tenant: tenant.clone(),
                        position: "open-session index".into(),
                        detail: e.to_string(),
                    })?;
                staged.undo.open.push((open_key.clone(), before));
            }
            if starts {
                let meta = SessionMeta {
                    channel: group.channel.clone(),
                    user: user.clone(),
                    started_at: group.at_ms,
                };
                let meta = rmp_serde::to_vec_named(&meta)
                    .expect("MessagePack encoding of plain fields is infallible");
                let meta_key = keys::session_meta_key(tenant, env, &team, &group.session);
                staged.undo.created.push(meta_key.clone());
                b.insert(meta_key, meta);
                b.insert(open_key.clone(), group.session.as_str().as_bytes());
                staged
                    .open
                    .insert(open_key.clone(), Some(group.session.clone()));
            }
            if ends {
                // Only clear the user's open session if it is this one.
                let current = match staged.open.get(&open_key) {
                    Some(staged) => staged.clone(),
                    None => tree.get(&open_key).ok().flatten().and_then(|v| {
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
        }
        if let (Some(key), Some(idem)) = (idem_key, group.idempotency) {
            let rec = IdempotencyRecord {
                v: super::IDEMPOTENCY_RECORD_VERSION,
                session: group.session.clone(),
                first_seq,
                last_seq,
                ack: idem.ack,
                at_ms: group.at_ms,
            };
            let value = rmp_serde::to_vec_named(&rec)
                .expect("MessagePack encoding of plain fields is infallible");
            b.insert(key.clone(), value);
            staged.undo.created.push(key.clone());
            staged.idempotency.insert(key, rec);
        }
        staged.groups += 1;
        match staged.tops.get_mut(tenant) {
            Some(top) => *top = last_tenant_seq,
            None => {
                staged.tops.insert(tenant.clone(), last_tenant_seq);
            }
        }

        self.heads.insert(
            tenant.clone(),
            Head {
                tenant_seq: last_tenant_seq,
                hash,
            },
        );
        match self.sessions.get_mut(&session_key) {
            Some(h) => h.last_seq = last_seq,
            None => {
                let user = user.unwrap_or_default();
                let channel = group.channel.clone();
                self.sessions.insert(
                    session_key,
                    SessionHead {
                        last_seq,
                        channel,
                        user,
                    },
                );
            }
        }
        Ok(AppendOutcome::Appended(Appended {
            first_seq,
            last_seq,
            first_tenant_seq,
            last_tenant_seq,
            hash,
        }))
    }

    /// Puts the session's head into the cache (from the index and meta) unless it is there or
    /// the session does not exist yet.
    fn load_session_head(
        &mut self,
        tree: &sled::Tree,
        key: &SessionKey,
        tenant: &TenantId,
        env: &EnvId,
        team: &TeamId,
        session: &SessionId,
    ) -> Result<(), AppendError> {
        if self.sessions.contains_key(key) {
            return Ok(());
        }
        let last = last_seq(tree, tenant, env, team, session).map_err(damaged_error)?;
        if last == 0 {
            return Ok(());
        }
        let meta_key = keys::session_meta_key(tenant, env, team, session);
        let err = |detail: String| AppendError::TenantDamaged {
            tenant: tenant.clone(),
            position: format!("session {session} meta"),
            detail,
        };
        let value = tree
            .get(meta_key)
            .map_err(|e| err(e.to_string()))?
            .ok_or_else(|| err("missing".into()))?;
        let meta: SessionMeta = decode_limited(&value).map_err(|e| err(e.to_string()))?;
        let head = SessionHead {
            last_seq: last,
            channel: meta.channel,
            user: meta.user,
        };
        self.sessions.insert(key.clone(), head);
        Ok(())
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
        self.sessions.retain(|k, _| !k.starts_with(&prefix));
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
fn ack_now(applied: Applied) -> Applied {
    match applied {
        Applied::Appends {
            replies,
            failed,
            store,
            batch,
            tops,
        } => {
            let answered = Applied::Appends {
                replies,
                failed,
                store: None,
                batch,
                tops: Vec::new(),
            };
            super::syncer::answer(answered, &Ok(()));
            Applied::Appends {
                replies: Vec::new(),
                failed,
                store,
                batch,
                tops,
            }
        }
        delete @ Applied::Delete { .. } => delete,
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
            EventKind::AwaitingInput { node, key } => {
                check_len("node", node, NAME_BYTES_MAX)?;
                check_len("key", key, NAME_BYTES_MAX)?;
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
