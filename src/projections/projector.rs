//! The projector: folds each tenant's log into two read models kept in one projection tree with
//! one checkpoint per tenant:
//!
//! - **usage**: counters per env × team × channel × UTC day (`U{env}\0{team}\0{channel}\0{day}`);
//! - **sessions**: every session's [`SessionState`] (`S{env}\0{team}\0{session}`), which is both
//!   the session-state read model (keyed by the state key's parts) and the session index;
//!   beside it the text of each session's last `MessageReceived`, cut at
//!   [`LAST_MESSAGE_CHARS_MAX`] chars (`M{env}\0{team}\0{session}`, MessagePack string), for the
//!   sessions list's `q` filter and `last_message`.
//!
//! `catch_up` folds from the checkpoint to the tenant's head in batches of `FOLD_BATCH_EVENTS`,
//! committing data and checkpoint together; `rebuild` folds from 1 in place of a tenant's read
//! models (its first commit replaces them in one batch), holding what it folded in memory up to
//! `REBUILD_ENTRIES_MAX` entries per commit. Both run the same
//! fold (`fold.rs`) over the log's borrowed event views, only their batches differ. Values are
//! MessagePack of plain structs and ordered maps, so an incremental projection and a rebuild are
//! byte-identical, except that a session's state and last message are stored sealed under its
//! data key when it has one (`sealed.rs`: fresh nonces, so equal only once opened).
//!
//! Invariant: one fold per tenant at a time (a mutex per tenant): two concurrent catch-ups would count the
//! same events twice.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::events::log::contain::panic_message;
use crate::events::log::{EventLog, ReadError};
use crate::events::projection::{ProjectionError, ProjectionTree};
use crate::events::schema::decode_limited;
use crate::events::schema::KindView;
use crate::events::seal::DataKey;
use crate::projections::session::SessionState;
use crate::projections::snapshot::SnapshotStore;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};
use fold::{CommitWhen, Start};

mod fold;
mod parallel;
mod sealed;

pub use parallel::{longest_logs_first, rebuild_jobs, RebuildProgress};

/// Name of the projection tree.
pub const READ_MODELS: &str = "read_models";
/// Events a catch-up folds between two commits (bounds memory and work lost to a crash).
pub const FOLD_BATCH_EVENTS: usize = 4096;
/// Entries (session states and usage counters) a rebuild holds in memory before it commits them.
/// A session state is a few hundred bytes plus its vars, so this is tens of MiB; a rebuild of a
/// tenant with fewer sessions writes each entry exactly once.
pub const REBUILD_ENTRIES_MAX: usize = 65_536;
const MS_PER_DAY: u64 = 86_400_000;
const TAG_USAGE: u8 = b'U';
const TAG_SESSION: u8 = b'S';
const TAG_LAST_MESSAGE: u8 = b'M';
/// Chars of a session's last message kept in the read models (and shown by the sessions list).
pub const LAST_MESSAGE_CHARS_MAX: usize = 200;

/// Why a projection could not be read or updated.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// The log could not be read (names tenant and position).
    #[error(transparent)]
    Log(#[from] ReadError),
    /// The projection tree failed; rebuilding the projection may help.
    #[error(transparent)]
    Store(#[from] ProjectionError),
    /// A deleted tenant's snapshots could not be removed (names the file); its read models
    /// stay until the next try.
    #[error(transparent)]
    Snapshots(#[from] crate::projections::snapshot::SnapshotError),
    /// A stored value does not decode; rebuild the tenant's projection.
    #[error("tenant {tenant}: corrupt read model entry: {detail}")]
    Corrupt { tenant: TenantId, detail: String },
    /// A tenant's rebuild among several stopped on a panic (a bug: report it); the tenant keeps
    /// its old read models or a prefix of new ones with their checkpoint, which a rebuild
    /// replaces.
    #[error("tenant {tenant}: the rebuild stopped on a panic: {detail}")]
    Panicked { tenant: TenantId, detail: String },
}

/// Usage of one env × team × channel × day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageCounters {
    pub messages_in: u64,
    pub replies_out: u64,
    pub sessions_started: u64,
    pub sessions_ended: u64,
    pub flow_errors: u64,
    /// Bytes of inbound message text.
    pub bytes_in: u64,
    /// Bytes of reply text.
    pub bytes_out: u64,
    /// Events of any kind.
    pub events: u64,
}

impl UsageCounters {
    fn count(&mut self, kind: &KindView<'_>) {
        self.events += 1;
        match *kind {
            KindView::MessageReceived { text } => {
                self.messages_in += 1;
                self.bytes_in += text.len() as u64;
            }
            KindView::ReplySent { text_bytes } => {
                self.replies_out += 1;
                self.bytes_out += text_bytes as u64;
            }
            KindView::SessionStarted { .. } => self.sessions_started += 1,
            KindView::SessionEnded { .. } => self.sessions_ended += 1,
            KindView::FlowFailed => self.flow_errors += 1,
            KindView::NodeEntered { .. }
            | KindView::StateSet { .. }
            | KindView::AwaitingInput { .. }
            | KindView::Connector => {}
        }
    }

    fn add(&mut self, other: &UsageCounters) {
        self.messages_in += other.messages_in;
        self.replies_out += other.replies_out;
        self.sessions_started += other.sessions_started;
        self.sessions_ended += other.sessions_ended;
        self.flow_errors += other.flow_errors;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.events += other.events;
    }
}

/// How usage is grouped in a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageBy {
    Team,
    Channel,
    Day,
}

/// One row of a usage query. Fields that are not part of the grouping are `None`. Read back
/// (`Deserialize`) by `tenantry usage --server`, from the server's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    pub env: EnvId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<ChannelId>,
    /// UTC date, `YYYY-MM-DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(flatten)]
    pub counters: UsageCounters,
}

fn push_part(k: &mut Vec<u8>, part: &str) {
    k.extend_from_slice(part.as_bytes());
    k.push(0);
}

fn session_key(env: &EnvId, team: &TeamId, session: &SessionId) -> Vec<u8> {
    let mut k = Vec::new();
    session_key_into(&mut k, env.as_str(), team.as_str(), session.as_str());
    k
}

/// The session key `S{env}\0{team}\0{session}`, into `k`.
fn session_key_into(k: &mut Vec<u8>, env: &str, team: &str, session: &str) {
    k.clear();
    k.push(TAG_SESSION);
    push_part(k, env);
    push_part(k, team);
    k.extend_from_slice(session.as_bytes());
}

fn session_scope(env: &EnvId, team: Option<&TeamId>) -> Vec<u8> {
    let mut k = vec![TAG_SESSION];
    push_part(&mut k, env.as_str());
    if let Some(team) = team {
        push_part(&mut k, team.as_str());
    }
    k
}

/// The day number since the Unix epoch of a UTC date `YYYY-MM-DD` (exactly that shape), as the
/// usage counters key their days; `Err` says what is wrong.
pub fn day_number(date: &str) -> Result<u32, String> {
    let shape = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return Err("expected a UTC date YYYY-MM-DD (e.g. 2026-11-30)".to_owned());
    }
    let at = humantime::parse_rfc3339(&format!("{date}T00:00:00Z"))
        .map_err(|e| format!("not a date: {e}"))?;
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970-01-01".to_owned())?
        .as_secs();
    u32::try_from(secs / 86_400).map_err(|e| e.to_string())
}

/// `YYYY-MM-DD` of a day number since the Unix epoch.
fn day_string(day: u32) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(day) * 86_400);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .take(10)
        .collect()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("MessagePack encoding of plain structs is infallible")
}

/// Folds and queries the read models. One per data dir (it holds the per-tenant fold locks).
pub struct Projector {
    tree: ProjectionTree,
    /// One lock per tenant: a tenant folds once at a time, and one tenant's long fold (a
    /// rebuild of a big log) never makes another tenant's wait.
    folds: Mutex<HashMap<TenantId, Arc<Mutex<()>>>>,
}

/// Holds a tenant's fold lock. A poisoned lock only means another fold panicked; the tree
/// itself is consistent (a fold commits its events and checkpoint in one batch).
fn one_fold(lock: &Mutex<()>) -> std::sync::MutexGuard<'_, ()> {
    lock.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Projector {
    pub fn new(log: &EventLog) -> Result<Projector, ProjectorError> {
        Ok(Projector {
            tree: log.projection(READ_MODELS)?,
            folds: Mutex::new(HashMap::new()),
        })
    }

    /// The fold lock of `tenant` (created on first use; one entry per tenant ever folded, a
    /// bounded set: the tenants of the config).
    fn fold_lock(&self, tenant: &TenantId) -> Arc<Mutex<()>> {
        // A poisoned lock only means another fold panicked; the map itself is consistent.
        let mut folds = self
            .folds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        folds.entry(tenant.clone()).or_default().clone()
    }

    /// The last tenant_seq folded for `tenant`.
    pub fn checkpoint(&self, tenant: &TenantId) -> Result<u64, ProjectorError> {
        Ok(self.tree.checkpoint(tenant)?)
    }

    /// Folds the tenant's events after the checkpoint; returns how many were folded.
    /// `progress` gets the running count after each commit (every [`FOLD_BATCH_EVENTS`]).
    pub fn catch_up(
        &self,
        log: &EventLog,
        tenant: &TenantId,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectorError> {
        let lock = self.fold_lock(tenant);
        let _one_fold = one_fold(&lock);
        #[cfg(test)]
        if tenant.as_str() == FOLD_PANIC_PROBE {
            panic!("injected read model fold panic");
        }
        self.fold(
            log,
            tenant,
            (Start::AtCheckpoint, CommitWhen::CATCH_UP),
            progress,
        )
    }

    /// Removes every read-model entry of `tenant` (usage rows, session states, last messages,
    /// checkpoint), for offboarding; returns how many. Holds the tenant's fold lock, so a fold
    /// running meanwhile commits before the removal, never after it: call it once the
    /// tenant's log range is gone, and the next fold finds nothing to fold.
    pub fn forget_tenant(&self, tenant: &TenantId) -> Result<u64, ProjectorError> {
        self.forget_tenant_after(tenant, || Ok::<(), ProjectorError>(()))
            .map(|((), rows)| rows)
    }

    /// Runs `first` (the deletion of the tenant's log), then removes its read models, holding
    /// the tenant's fold lock across both: no fold runs in between, so neither a catch-up nor
    /// [`Projector::forget_if_deleted`] (which would drop the read models and snapshots of the
    /// log just emptied on its own) sees the tenant half-deleted. Returns what `first` returned
    /// and the read-model entries removed.
    pub fn forget_tenant_after<T, E: From<ProjectorError>>(
        &self,
        tenant: &TenantId,
        first: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, u64), E> {
        let lock = self.fold_lock(tenant);
        let _one_fold = one_fold(&lock);
        let done = first()?;
        let rows = self
            .tree
            .clear_tenant(tenant)
            .map_err(|e| E::from(e.into()))?;
        Ok((done, rows))
    }

    /// Removes `tenant`'s read models when they hold events its log no longer has (their
    /// checkpoint is past the log's head): the tenant was deleted, by this node or (JetStream)
    /// by another one whose purge this node's log followed, or while this node was down. Its
    /// snapshots in `snapshots` go first, so a crash in between leaves read models that the
    /// next call finds again. Returns how many read-model entries went (0: they match the log).
    /// Holds the tenant's fold lock. A cache caught mid-rebuild looks the same and only costs a
    /// fold from scratch.
    pub fn forget_if_deleted(
        &self,
        log: &EventLog,
        snapshots: &SnapshotStore,
        tenant: &TenantId,
    ) -> Result<u64, ProjectorError> {
        let lock = self.fold_lock(tenant);
        let _one_fold = one_fold(&lock);
        let checkpoint = self.tree.checkpoint(tenant)?;
        if checkpoint == 0 {
            return Ok(0);
        }
        let head = log.tenant(tenant).head()?.map_or(0, |h| h.tenant_seq);
        if head >= checkpoint {
            return Ok(0);
        }
        snapshots.remove_tenant(tenant)?;
        Ok(self.tree.clear_tenant(tenant)?)
    }

    /// Folds `tenant`'s log again when it had an erasure these read models have not taken in
    /// (by another node, whose records this node's log followed, or while this node was down):
    /// its read models and session snapshots here were made from the erased sessions'
    /// personal data. The snapshots go (sessions replay the log at their next start), the read
    /// models are rebuilt from the log, whose erased events now fold without that data. Returns
    /// whether it did. The erasing node does this itself ([`crate::erase`]) and records it
    /// ([`Projector::erasures_taken_in`]).
    pub fn refold_if_erased(
        &self,
        log: &EventLog,
        snapshots: &SnapshotStore,
        tenant: &TenantId,
    ) -> Result<bool, ProjectorError> {
        let erasures = log_erasures(log, tenant)?;
        if self.tree.erasures_folded(tenant)? == erasures {
            return Ok(false);
        }
        snapshots.remove_tenant(tenant)?;
        if self.checkpoint(tenant)? > 0 {
            self.rebuild(log, tenant, &mut |_| {})?;
        }
        self.tree.set_erasures_folded(tenant, erasures)?;
        Ok(true)
    }

    /// Records that the read models of `tenant` were rebuilt after every erasure its log has
    /// had (the erasing node, [`crate::erase`]).
    pub fn erasures_taken_in(
        &self,
        log: &EventLog,
        tenant: &TenantId,
    ) -> Result<(), ProjectorError> {
        let erasures = log_erasures(log, tenant)?;
        Ok(self.tree.set_erasures_folded(tenant, erasures)?)
    }

    /// Folds the tenant's whole log again, in place of its read models, holding what it folds
    /// in memory until [`REBUILD_ENTRIES_MAX`] entries (or the end): the first commit replaces
    /// the old read models in one batch, so until then readers see the old ones, and a rebuild
    /// that fits in memory switches from old to new at once. `progress` gets the running count
    /// at least every [`FOLD_BATCH_EVENTS`]. A crash part-way leaves either the old read models
    /// or a prefix of the new ones, each with its own checkpoint, which the next catch-up (or
    /// rebuild) continues from.
    pub fn rebuild(
        &self,
        log: &EventLog,
        tenant: &TenantId,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, ProjectorError> {
        let lock = self.fold_lock(tenant);
        let _one_fold = one_fold(&lock);
        self.fold(
            log,
            tenant,
            (Start::FromScratch, CommitWhen::REBUILD),
            progress,
        )
    }

    fn load<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        key: &[u8],
    ) -> Result<Option<T>, ProjectorError> {
        Ok(self.load_keyed(tenant, key)?.map(|(value, _)| value))
    }

    /// The entry at `key`, with the data key that opened it when it was sealed.
    fn load_keyed<T: serde::de::DeserializeOwned>(
        &self,
        tenant: &TenantId,
        key: &[u8],
    ) -> Result<Option<(T, Option<DataKey>)>, ProjectorError> {
        let Some(v) = self.tree.get(tenant, key)? else {
            return Ok(None);
        };
        let (plain, data_key) = self.open_entry_keyed(tenant, key, &v)?;
        let value = decode_limited(&plain).map_err(|e| ProjectorError::Corrupt {
            tenant: tenant.clone(),
            detail: e.to_string(),
        })?;
        Ok(Some((value, data_key)))
    }

    /// Usage of the tenant (in `env`, or all envs; in `team`, or all teams), grouped `by`.
    /// Rows restricted to a team name it whatever the grouping (a day row of one team is that
    /// team's day): the counters are kept per env × team × channel × day, so every grouping of
    /// one team is exact.
    pub fn usage(
        &self,
        tenant: &TenantId,
        env: Option<&EnvId>,
        team: Option<&TeamId>,
        by: UsageBy,
    ) -> Result<Vec<UsageRow>, ProjectorError> {
        self.usage_days(tenant, env, team, by, &(0..=u32::MAX))
    }

    /// [`usage`](Self::usage) of the UTC days in `days` only (day numbers since the Unix epoch,
    /// both ends inclusive; see [`day_number`]).
    pub fn usage_days(
        &self,
        tenant: &TenantId,
        env: Option<&EnvId>,
        team: Option<&TeamId>,
        by: UsageBy,
        days: &RangeInclusive<u32>,
    ) -> Result<Vec<UsageRow>, ProjectorError> {
        let mut prefix = vec![TAG_USAGE];
        if let Some(env) = env {
            push_part(&mut prefix, env.as_str());
            if let Some(team) = team {
                push_part(&mut prefix, team.as_str());
            }
        }
        let corrupt = |detail: &str| ProjectorError::Corrupt {
            tenant: tenant.clone(),
            detail: detail.to_owned(),
        };
        let mut rows: BTreeMap<(String, String, String, u32), UsageCounters> = BTreeMap::new();
        for entry in self.tree.scan(tenant, &prefix) {
            let (key, value) = entry?;
            let (parts, day) = key
                .get(1..)
                .and_then(|k| k.split_last_chunk::<4>())
                .ok_or_else(|| corrupt("usage key"))?;
            let mut parts = parts
                .split(|&b| b == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned());
            let (Some(e), Some(t), Some(c)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt("usage key"));
            };
            if team.is_some_and(|team| team.as_str() != t) {
                continue;
            }
            let day = u32::from_be_bytes(*day);
            if !days.contains(&day) {
                continue;
            }
            let counters: UsageCounters =
                decode_limited(&value).map_err(|e| corrupt(&e.to_string()))?;
            let group = match by {
                UsageBy::Team => (e, t, String::new(), 0),
                UsageBy::Channel => (e, t, c, 0),
                UsageBy::Day if team.is_some() => (e, t, String::new(), day),
                UsageBy::Day => (e, String::new(), String::new(), day),
            };
            rows.entry(group).or_default().add(&counters);
        }
        rows.into_iter()
            .map(|((e, t, c, day), counters)| {
                let env = EnvId::parse(&e).map_err(|err| corrupt(&err.to_string()))?;
                let team = (!t.is_empty())
                    .then(|| TeamId::parse(&t))
                    .transpose()
                    .map_err(|err| corrupt(&err.to_string()))?;
                let channel = (!c.is_empty())
                    .then(|| ChannelId::parse(&c))
                    .transpose()
                    .map_err(|err| corrupt(&err.to_string()))?;
                let day = (by == UsageBy::Day).then(|| day_string(day));
                Ok(UsageRow {
                    env,
                    team,
                    channel,
                    day,
                    counters,
                })
            })
            .collect()
    }

    /// The states of the tenant's sessions in `env` (and `team`, when given), by (team, id).
    pub fn sessions(
        &self,
        tenant: &TenantId,
        env: &EnvId,
        team: Option<&TeamId>,
    ) -> impl Iterator<Item = Result<SessionState, ProjectorError>> + '_ {
        self.session_states(tenant, &session_scope(env, team))
    }

    /// The states of all the tenant's sessions, in every env.
    pub fn all_sessions(
        &self,
        tenant: &TenantId,
    ) -> impl Iterator<Item = Result<SessionState, ProjectorError>> + '_ {
        self.session_states(tenant, &[TAG_SESSION])
    }

    /// The session states stored under `prefix` of the tenant's read models, in key order.
    fn session_states(
        &self,
        tenant: &TenantId,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<SessionState, ProjectorError>> + '_ {
        let tenant = tenant.clone();
        self.tree.scan(&tenant, prefix).map(move |entry| {
            let (key, value) = entry?;
            let value = self.open_entry(&tenant, &key, &value)?;
            decode_limited(&value).map_err(|e| ProjectorError::Corrupt {
                tenant: tenant.clone(),
                detail: e.to_string(),
            })
        })
    }

    /// The states of the tenant's sessions in `env` (and `team`, when given), by (team, id),
    /// each with the text of its last `MessageReceived` (cut at [`LAST_MESSAGE_CHARS_MAX`]
    /// chars), if any. The two key families are walked side by side (same order), so memory
    /// stays flat.
    pub fn sessions_with_last_message(
        &self,
        tenant: &TenantId,
        env: &EnvId,
        team: Option<&TeamId>,
    ) -> impl Iterator<Item = Result<(SessionState, Option<String>), ProjectorError>> + '_ {
        let states_prefix = session_scope(env, team);
        let mut messages_prefix = states_prefix.clone();
        if let Some(tag) = messages_prefix.first_mut() {
            *tag = TAG_LAST_MESSAGE;
        }
        let owner = tenant.clone();
        let corrupt = move |detail: String| ProjectorError::Corrupt {
            tenant: owner.clone(),
            detail,
        };
        let mut messages = self.tree.scan(tenant, &messages_prefix).peekable();
        let of = tenant.clone();
        self.tree.scan(tenant, &states_prefix).map(move |entry| {
            let (key, value) = entry?;
            let value = self.open_entry(&of, &key, &value)?;
            let state: SessionState = decode_limited(&value).map_err(|e| corrupt(e.to_string()))?;
            let id = key.get(1..).unwrap_or_default();
            // Both families are sorted by the same key after their tag: messages of sessions
            // before this one (none, unless the tree is damaged) are skipped.
            while messages
                .next_if(|m| {
                    m.as_ref()
                        .is_ok_and(|(k, _)| k.get(1..).unwrap_or_default() < id)
                })
                .is_some()
            {}
            let text = match messages.next_if(|m| {
                m.as_ref()
                    .map_or(true, |(k, _)| k.get(1..).unwrap_or_default() == id)
            }) {
                Some(m) => {
                    let (k, v) = m?;
                    let v = self.open_entry(&of, &k, &v)?;
                    Some(decode_limited::<String>(&v).map_err(|e| corrupt(e.to_string()))?)
                }
                None => None,
            };
            Ok((state, text))
        })
    }

    /// One session's state from the read model (as of the checkpoint).
    pub fn session(
        &self,
        tenant: &TenantId,
        env: &EnvId,
        team: &TeamId,
        session: &SessionId,
    ) -> Result<Option<SessionState>, ProjectorError> {
        self.load(tenant, &session_key(env, team, session))
    }

    /// Every raw entry of the tenant's read models, for comparing fold results.
    pub fn dump(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::events::projection::Entry>, ProjectorError> {
        Ok(self.tree.dump(tenant)?)
    }
}

/// Test only: a catch-up of the tenant of this name panics.
#[cfg(test)]
pub(crate) const FOLD_PANIC_PROBE: &str = "fold-panic-probe";

/// Keeps the read models of a set of tenants caught up in a background thread while a server
/// runs; stops (after the fold in progress) when dropped. A tenant whose log lost the events
/// its read models hold (deleted: [`Projector::forget_if_deleted`]) loses its read models and
/// its session snapshots on this node first, so a node stops serving a tenant another node
/// deleted, or that was deleted while it was down, within a round. Likewise a tenant whose log
/// had an erasure these read models did not take in ([`Projector::refold_if_erased`]).
pub struct Background {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Every `every`, folds whatever each tenant appended since the last round (`snapshots`:
    /// the node's session snapshots, removed with a deleted tenant's read models).
    pub fn start(
        log: EventLog,
        projector: std::sync::Arc<Projector>,
        snapshots: SnapshotStore,
        tenants: Vec<TenantId>,
        every: std::time::Duration,
    ) -> std::io::Result<Background> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tenantry-projector".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    for tenant in &tenants {
                        // A panic (a bug, or a dependency's on a damaged file) stops this
                        // tenant's round only: the thread goes on with the others, and this
                        // tenant is tried again next round.
                        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            forget_if_deleted(&log, &projector, &snapshots, tenant);
                            refold_if_erased(&log, &projector, &snapshots, tenant);
                            projector.catch_up(&log, tenant, &mut |_| {})
                        }));
                        match round {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => {
                                tracing::error!(tenant = %tenant, error = %e, "read model fold failed");
                            }
                            Err(panic) => {
                                let why = panic_message(&*panic).unwrap_or_default();
                                tracing::error!(tenant = %tenant, panic = %why, "read model fold panicked");
                            }
                        }
                    }
                    std::thread::sleep(every);
                }
            })?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }
}

/// How many erasures `tenant`'s log has had.
fn log_erasures(log: &EventLog, tenant: &TenantId) -> Result<u64, ProjectorError> {
    log.erasures(tenant).map_err(|detail| {
        ProjectorError::Store(ProjectionError {
            name: "erasures",
            detail,
        })
    })
}

/// [`Projector::refold_if_erased`], logged.
fn refold_if_erased(
    log: &EventLog,
    projector: &Projector,
    snapshots: &SnapshotStore,
    tenant: &TenantId,
) {
    match projector.refold_if_erased(log, snapshots, tenant) {
        Ok(false) => {}
        Ok(true) => {
            tracing::warn!(tenant = %tenant,
                "the tenant's log had an erasure: its read models on this node were rebuilt and its snapshots removed");
        }
        Err(e) => {
            tracing::error!(tenant = %tenant, error = %e, "taking in a tenant's erasure failed");
        }
    }
}

/// [`Projector::forget_if_deleted`], logged.
fn forget_if_deleted(
    log: &EventLog,
    projector: &Projector,
    snapshots: &SnapshotStore,
    tenant: &TenantId,
) {
    match projector.forget_if_deleted(log, snapshots, tenant) {
        Ok(0) => {}
        Ok(rows) => {
            tracing::warn!(tenant = %tenant, rows,
                "the tenant's log was deleted: its read models and snapshots on this node were removed");
        }
        Err(e) => {
            tracing::error!(tenant = %tenant, error = %e, "checking a tenant's read models against its log failed");
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Renders usage rows as an aligned text table.
pub fn usage_table(rows: &[UsageRow]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<16} {:<16} {:<10} {:>10} {:>10} {:>8} {:>8} {:>7} {:>12} {:>12} {:>10}",
        "env",
        "team",
        "channel",
        "day",
        "msgs_in",
        "replies",
        "started",
        "ended",
        "errors",
        "bytes_in",
        "bytes_out",
        "events"
    );
    for r in rows {
        let c = &r.counters;
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:<16} {:<10} {:>10} {:>10} {:>8} {:>8} {:>7} {:>12} {:>12} {:>10}",
            r.env.as_str(),
            r.team.as_ref().map_or("*", TeamId::as_str),
            r.channel.as_ref().map_or("*", ChannelId::as_str),
            r.day.as_deref().unwrap_or("*"),
            c.messages_in,
            c.replies_out,
            c.sessions_started,
            c.sessions_ended,
            c.flow_errors,
            c.bytes_in,
            c.bytes_out,
            c.events
        );
    }
    out
}

#[cfg(test)]
mod tests;
