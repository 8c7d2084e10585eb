//! Reads of the log: tenant ranges, one session's events, session lists, idempotency and
//! open-session lookups, and the tail check at open.
//!
//! Invariants: every scan stays inside one tenant's prefix, and every frame read is checked
//! (checksum, tenant, consecutive seqs) before its events are returned; a reader sees nothing
//! past its tenant's durable frontier as it was when the reader was made (`store`): no event
//! whose flush has not completed, so none that a failed write may yet take back.

use std::collections::{HashMap, VecDeque};
use std::ops::RangeInclusive;
use std::sync::Arc;

use super::contain::contained;
use super::store::{ReaderParts, Store};
use super::{Damage, Head, IdempotencyRecord, ReadError, SessionInfo, SessionMeta, StoredEvent};
use crate::events::codec::{
    chain_hash, decode_body_with, decode_frame, KeySource, Sealing, FRAME_VERSION_GROUPS,
    GROUP_EVENTS_MAX,
};
use crate::events::keyring::OpenKeys;
use crate::events::keys;
use crate::events::schema::decode_limited;
use crate::events::seal::SealScope;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

mod envs;
mod fold;
mod frames;
mod session;

pub use frames::{StoredFrame, StoredFrames};
pub use session::SessionEvents;

/// A sled panic caught while reading (see `contain`): the files are damaged.
fn sled_panicked(tenant: &TenantId, position: &str, panic: &str) -> ReadError {
    ReadError {
        tenant: tenant.clone(),
        position: position.to_owned(),
        detail: format!(
            "sled panicked reading its files ({panic}): they are damaged; restore the data dir \
             from a backup"
        ),
    }
}

pub(super) fn next_key(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

pub(super) fn recover_heads(tree: &sled::Tree) -> (HashMap<TenantId, Head>, Vec<Damage>) {
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

/// The tenant's head from its last frame in `tree` (`None`: no frames).
pub(super) fn tenant_head(tree: &sled::Tree, tenant: &TenantId) -> Result<Option<Head>, ReadError> {
    let (start, end) = keys::frame_range(tenant);
    let last = contained(|| tree.range(start..end).next_back())
        .map_err(|e| sled_panicked(tenant, "last frame", &e))?;
    match last {
        None => Ok(None),
        Some(Err(e)) => Err(ReadError {
            tenant: tenant.clone(),
            position: "last frame".into(),
            detail: e.to_string(),
        }),
        Some(Ok((k, v))) => check_frame(tenant, &k, &v).map(Some),
    }
}

/// Decodes and cross-checks a frame; returns the head after it.
pub(super) fn check_frame(tenant: &TenantId, key: &[u8], value: &[u8]) -> Result<Head, ReadError> {
    let events = decode_frame_events(tenant, key, value, None)?;
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
/// consecutive tenant_seqs from the key's, whole groups (each one session with consecutive
/// seqs; a frame of version 1 holds one).
/// Sealed personal fields are opened with `keys` (without: read as erased).
pub(super) fn decode_frame_events(
    tenant: &TenantId,
    key: &[u8],
    value: &[u8],
    keys: Option<&OpenKeys>,
) -> Result<Vec<StoredEvent>, ReadError> {
    decode_frame_part(tenant, key, value, keys, None)
}

/// [`decode_frame_events`], or with `group` (its tenant_seqs) only that group's records, which
/// must be one session's with consecutive seqs: the records before it are hashed for the chain,
/// not decoded (a session's group in a frame of many).
fn decode_frame_part(
    tenant: &TenantId,
    key: &[u8],
    value: &[u8],
    keys: Option<&OpenKeys>,
    group: Option<std::ops::Range<u64>>,
) -> Result<Vec<StoredEvent>, ReadError> {
    let first_seq = keys::frame_key_seq(key, tenant)
        .ok_or_else(|| read_error(tenant, key, "malformed frame key"))?;
    let frame = decode_frame(value).map_err(|e| read_error(tenant, key, e))?;
    let groups = frame.version == FRAME_VERSION_GROUPS && group.is_none();
    let part = group.unwrap_or(0..u64::MAX);
    let mut prev = frame.prev_hash;
    let mut out: Vec<StoredEvent> = Vec::with_capacity(frame.bodies.len().min(GROUP_EVENTS_MAX));
    for (i, body) in frame.bodies.iter().enumerate() {
        let expected_tenant_seq = first_seq + i as u64;
        if expected_tenant_seq >= part.end {
            break;
        }
        if expected_tenant_seq < part.start {
            prev = chain_hash(&prev, body);
            continue;
        }
        let decoded = decode_body_with(body, keys.map(|k| k as &dyn KeySource))
            .map_err(|e| read_error(tenant, key, format!("record {i}: {e}")))?;
        let (event, erased) = (decoded.event, decoded.sealing == Sealing::Erased);
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
        if let Some(before) = out.last() {
            let same_session = before.event.session == event.session
                && before.event.env == event.env
                && before.event.team == event.team;
            let continues = same_session && event.seq == before.event.seq + 1;
            let next_group = groups && !same_session;
            if !(continues || next_group) {
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
            erased,
            prev_hash: prev,
            hash,
        });
        prev = hash;
    }
    Ok(out)
}

/// Read access to one tenant's log, up to its durable frontier.
#[derive(Clone)]
pub struct TenantReader {
    pub(super) parts: ReaderParts,
    pub(super) tenant: TenantId,
}

impl TenantReader {
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The last durable event's position and hash, or `None` for an empty tenant.
    pub fn head(&self) -> Result<Option<Head>, ReadError> {
        let tree = self.parts.tree.as_ref().map_err(Clone::clone)?;
        if self.parts.limit == 0 {
            return Ok(None);
        }
        let (start, _) = keys::frame_range(&self.tenant);
        // Frames hold whole groups and the frontier moves by whole groups, so the last frame
        // that starts at or before the frontier also ends there.
        let upto = keys::frame_key(&self.tenant, self.parts.limit);
        let last = contained(|| tree.range(start..=upto).next_back())
            .map_err(|e| sled_panicked(&self.tenant, "last frame", &e))?;
        match last {
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
    /// Events past the durable frontier are not returned.
    pub fn events(&self, range: RangeInclusive<u64>) -> TenantEvents {
        let range = *range.start()..=(*range.end()).min(self.parts.limit);
        let tree = match &self.parts.tree {
            Ok(tree) => tree,
            Err(e) => {
                return TenantEvents {
                    _store: None,
                    keys: None,
                    frames: None,
                    error: Some(e.clone()),
                    tenant: self.tenant.clone(),
                    range,
                    pending: VecDeque::new(),
                    done: false,
                }
            }
        };
        let (start, end) = keys::frame_range(&self.tenant);
        let from = keys::frame_key(&self.tenant, *range.start());
        // The frame holding `range.start()` may begin before it.
        let first = match tree.range(start.clone()..=from.clone()).next_back() {
            Some(Ok((k, _))) => k.to_vec(),
            _ => from,
        };
        TenantEvents {
            _store: self.parts.store.clone(),
            keys: self.parts.open_keys(),
            frames: Some(tree.range(first..end)),
            error: None,
            tenant: self.tenant.clone(),
            range,
            pending: VecDeque::new(),
            done: false,
        }
    }
}

/// Iterator over a tenant's events; see [`TenantReader::events`].
pub struct TenantEvents {
    _store: Option<Arc<Store>>,
    keys: Option<OpenKeys>,
    frames: Option<sled::Iter>,
    /// Returned first (the files were closed when the reader was made).
    error: Option<ReadError>,
    tenant: TenantId,
    range: RangeInclusive<u64>,
    pending: VecDeque<StoredEvent>,
    done: bool,
}

/// What an event iterator hands out before it reads on: a buffered event, else the error that
/// ended it (once, marking it done).
fn ready(
    pending: &mut VecDeque<StoredEvent>,
    error: &mut Option<ReadError>,
    done: &mut bool,
) -> Option<Result<StoredEvent, ReadError>> {
    if let Some(e) = pending.pop_front() {
        return Some(Ok(e));
    }
    let e = error.take()?;
    *done = true;
    Some(Err(e))
}

impl Iterator for TenantEvents {
    type Item = Result<StoredEvent, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = ready(&mut self.pending, &mut self.error, &mut self.done) {
                return Some(item);
            }
            if self.done || self.range.is_empty() {
                return None;
            }
            let frames = self.frames.as_mut()?;
            let next = match contained(|| frames.next()) {
                Ok(next) => next?,
                Err(e) => {
                    self.done = true;
                    return Some(Err(sled_panicked(&self.tenant, "frame scan", &e)));
                }
            };
            let (key, value) = match next {
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
            match decode_frame_events(&self.tenant, &key, &value, self.keys.as_ref()) {
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

/// Read access bounded by a [`TenantCtx`]: sessions of its env (and team, when set), up to the
/// tenant's durable frontier.
#[derive(Clone)]
pub struct ScopedReader {
    pub(super) parts: ReaderParts,
    pub(super) ctx: TenantCtx,
}

impl ScopedReader {
    pub fn ctx(&self) -> &TenantCtx {
        &self.ctx
    }

    /// Events of one session of this scope's team (or `default`), with `seq` in `range`.
    /// A session of another tenant, env or team is simply empty here.
    pub fn session_events(&self, session: &SessionId, range: RangeInclusive<u64>) -> SessionEvents {
        let tree = match &self.parts.tree {
            Ok(tree) => tree.clone(),
            Err(e) => {
                return SessionEvents {
                    _store: None,
                    keys: None,
                    index: None,
                    error: Some(e.clone()),
                    tree: None,
                    tenant: self.ctx.tenant.clone(),
                    range,
                    limit: self.parts.limit,
                    pending: VecDeque::new(),
                    done: false,
                    any: false,
                }
            }
        };
        let team = self.ctx.team_or_default();
        let prefix = keys::session_index_prefix(&self.ctx.tenant, &self.ctx.env, &team, session);
        let from = keys::session_index_key(&prefix, *range.start());
        let first = match tree.range(prefix.clone()..=from.clone()).next_back() {
            Some(Ok((k, _))) => k.to_vec(),
            _ => from,
        };
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        SessionEvents {
            _store: self.parts.store.clone(),
            keys: self.parts.open_keys(),
            index: Some(tree.range(first..end)),
            error: None,
            tree: Some(tree),
            tenant: self.ctx.tenant.clone(),
            range,
            limit: self.parts.limit,
            pending: VecDeque::new(),
            done: false,
            any: false,
        }
    }

    /// The last durable seq of a session in this scope (0 when it does not exist).
    pub fn session_last_seq(&self, session: &SessionId) -> Result<u64, ReadError> {
        let tree = self.parts.tree.as_ref().map_err(Clone::clone)?;
        let team = self.ctx.team_or_default();
        last_seq_upto(
            tree,
            &self.ctx.tenant,
            &self.ctx.env,
            &team,
            session,
            self.parts.limit,
        )
    }

    /// Sessions of this scope whose start is durable, ordered by (team, session id).
    pub fn sessions(&self) -> impl Iterator<Item = Result<SessionInfo, ReadError>> {
        self.sessions_after(None)
    }

    /// Sessions of this scope that come after `after` (a `(team, session)` cursor, which need
    /// not exist or be in this scope's team), ordered by (team, session id). The scan seeks to
    /// the first key past the cursor, so a page costs its own length however deep it is: every
    /// entry the iterator visits is one it yields.
    pub fn sessions_after(
        &self,
        after: Option<(&TeamId, &SessionId)>,
    ) -> impl Iterator<Item = Result<SessionInfo, ReadError>> {
        let prefix =
            keys::session_meta_scope(&self.ctx.tenant, &self.ctx.env, self.ctx.team.as_ref());
        let env_prefix_len = keys::session_meta_scope(&self.ctx.tenant, &self.ctx.env, None).len();
        // The scope prefix ends in a `\0` terminator; the same prefix ending in 1 is the first
        // key past every key in it.
        let mut end = prefix.clone();
        if let Some(last) = end.last_mut() {
            *last = 1;
        }
        // Meta keys are `{scope}{team}\0{session}`, and ids never hold `\0`, so byte order is
        // (team, session) order and the cursor's key plus a 0 byte is the first key after it.
        let start = match after {
            Some((team, session)) => {
                let cursor = keys::session_meta_key(&self.ctx.tenant, &self.ctx.env, team, session);
                next_key(&cursor).max(prefix)
            }
            None => prefix,
        };
        let (tree, error) = match &self.parts.tree {
            Ok(tree) => (Some(tree.clone()), None),
            Err(e) => (None, Some(Err(e.clone()))),
        };
        let scan = tree
            .as_ref()
            .filter(|_| start < end)
            .map(|t| t.range(start..end));
        let (tenant, env, limit) = (
            self.ctx.tenant.clone(),
            self.ctx.env.clone(),
            self.parts.limit,
        );
        let store = self.parts.store.clone();
        let keyring = self.parts.keyring.clone();
        let listed = scan.into_iter().flatten().filter_map(move |entry| {
            let _keep_open = &store;
            let opener = (tree.as_ref(), keyring.as_deref());
            let info = session_info(&tenant, &env, env_prefix_len, entry, opener);
            // A session whose first group may yet be taken back is not listed.
            match (&info, &tree) {
                (Ok(i), Some(tree)) => {
                    let prefix = keys::session_index_prefix(&tenant, &env, &i.team, &i.session);
                    match durable_at(tree, &prefix, 1, limit) {
                        Ok(true) => Some(info),
                        Ok(false) => None,
                        Err(detail) => Some(Err(ReadError {
                            tenant: tenant.clone(),
                            position: format!("session {} index", i.session),
                            detail,
                        })),
                    }
                }
                _ => Some(info),
            }
        });
        error.into_iter().chain(listed)
    }

    /// The record of an earlier append of `message_id` on `channel` in this scope's team.
    pub fn idempotency(
        &self,
        channel: &ChannelId,
        message_id: &str,
    ) -> Result<Option<IdempotencyRecord>, ReadError> {
        let tree = self.parts.tree.as_ref().map_err(Clone::clone)?;
        let team = self.ctx.team_or_default();
        let key =
            keys::idempotency_key(&self.ctx.tenant, &self.ctx.env, &team, channel, message_id);
        let ids = (&self.ctx.tenant, &self.ctx.env, &team);
        let keyring = self.parts.keyring.as_deref();
        let Some(rec) = super::idempotency::read(tree, keyring, ids, &key)? else {
            return Ok(None);
        };
        // A record of a group that is not durable yet is not an answer to give.
        let prefix =
            keys::session_index_prefix(&self.ctx.tenant, &self.ctx.env, &team, &rec.session);
        match durable_at(tree, &prefix, rec.first_seq, self.parts.limit) {
            Ok(durable) => Ok(durable.then_some(rec)),
            Err(detail) => Err(ReadError {
                tenant: self.ctx.tenant.clone(),
                position: format!("session {} index", rec.session),
                detail,
            }),
        }
    }

    /// The user's open (started, not ended) session on `channel` in this scope's team. Not
    /// bounded by the frontier: it only names a session, whose events are.
    pub fn open_session(
        &self,
        channel: &ChannelId,
        user: &str,
    ) -> Result<Option<SessionId>, ReadError> {
        let tree = self.parts.tree.as_ref().map_err(Clone::clone)?;
        let team = self.ctx.team_or_default();
        let err = |detail: String| ReadError {
            tenant: self.ctx.tenant.clone(),
            position: "open-session index".into(),
            detail,
        };
        let scope = (&self.ctx.tenant, &self.ctx.env, &team, channel);
        for key in super::meta::open_keys(self.parts.keyring.as_deref(), scope, user)? {
            if let Some(v) = tree.get(key).map_err(|e| err(e.to_string()))? {
                let raw = std::str::from_utf8(&v).map_err(|e| err(e.to_string()))?;
                return SessionId::parse(raw)
                    .map(Some)
                    .map_err(|e| err(e.to_string()));
            }
        }
        Ok(None)
    }
}

/// Decodes one session meta entry (key under the env's meta prefix, value [`SessionMeta`]).
fn session_info(
    tenant: &TenantId,
    env: &EnvId,
    env_prefix_len: usize,
    entry: sled::Result<(sled::IVec, sled::IVec)>,
    (tree, keyring): (
        Option<&sled::Tree>,
        Option<&crate::events::keyring::Keyring>,
    ),
) -> Result<SessionInfo, ReadError> {
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: "session index".into(),
        detail,
    };
    let (key, value) = entry.map_err(|e| err(e.to_string()))?;
    let rest = key.get(env_prefix_len..).unwrap_or_default();
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
    let scope = SealScope {
        tenant: tenant.as_str(),
        env: env.as_str(),
        team: team.as_str(),
        session: session.as_str(),
    };
    let user = super::meta::user(&meta, tree, keyring, &scope).map_err(err)?;
    let user_sealed = meta.user_sealed.is_some();
    Ok(SessionInfo {
        env: env.clone(),
        team,
        session,
        channel: meta.channel,
        user,
        started_at_ms: meta.started_at,
        user_sealed,
    })
}

/// Whether the session (index `prefix`) has a group starting at `seq` whose frame is within
/// `limit`. An entry that cannot be read is an error, never a "yes": while sled keeps a write
/// error (a full disk) its reads may fail, and the group may be one whose caller was told it
/// failed.
fn durable_at(tree: &sled::Tree, prefix: &[u8], seq: u64, limit: u64) -> Result<bool, String> {
    match tree.get(keys::session_index_key(prefix, seq)) {
        Ok(Some(v)) => {
            Ok(decode_index_value(&v).is_some_and(|(tenant_seq, _)| tenant_seq <= limit))
        }
        Err(e) => Err(e.to_string()),
        Ok(None) => Ok(false),
    }
}

/// Index entry of one group in a session: its first event's `tenant_seq` and how many events
/// it holds. Both forms read: `{tenant_seq:be64}{count:be16}`, and the same followed by
/// `{offset:be16}`, the group's place in its frame ([`index_frame_start`]).
pub(super) fn decode_index_value(v: &[u8]) -> Option<(u64, u16)> {
    let (seq, rest) = v.split_first_chunk::<8>()?;
    let (count, rest) = rest.split_first_chunk::<2>()?;
    if !(rest.is_empty() || rest.len() == 2) {
        return None;
    }
    Some((u64::from_be_bytes(*seq), u16::from_be_bytes(*count)))
}

/// The index value of a group at `tenant_seq` with `count` events, `offset` records into the
/// frame that holds it (without one, the older form).
pub(super) fn encode_index_value(tenant_seq: u64, count: u16, offset: Option<u16>) -> Vec<u8> {
    let mut v = Vec::with_capacity(12);
    v.extend_from_slice(&tenant_seq.to_be_bytes());
    v.extend_from_slice(&count.to_be_bytes());
    if let Some(offset) = offset {
        v.extend_from_slice(&offset.to_be_bytes());
    }
    v
}

/// The first `tenant_seq` of the frame holding an index entry's group, when the entry says
/// (entries written before the offset was kept do not: their frame is found by a search).
pub(super) fn index_frame_start(v: &[u8]) -> Option<u64> {
    let (seq, rest) = v.split_first_chunk::<8>()?;
    let offset: [u8; 2] = rest.get(2..)?.try_into().ok()?;
    u64::from_be_bytes(*seq).checked_sub(u64::from(u16::from_be_bytes(offset)))
}

pub(super) fn last_seq(
    tree: &sled::Tree,
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    session: &SessionId,
) -> Result<u64, ReadError> {
    last_seq_upto(tree, tenant, env, team, session, u64::MAX)
}

/// The session's last seq among its groups whose frame is at or before `limit`.
fn last_seq_upto(
    tree: &sled::Tree,
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    session: &SessionId,
    limit: u64,
) -> Result<u64, ReadError> {
    let prefix = keys::session_index_prefix(tenant, env, team, session);
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: format!("session {session} index"),
        detail,
    };
    for entry in tree.scan_prefix(&prefix).rev() {
        let (k, v) = entry.map_err(|e| err(e.to_string()))?;
        let first_seq = k
            .get(prefix.len()..)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| err("malformed index key".into()))?;
        let (tenant_seq, count) =
            decode_index_value(&v).ok_or_else(|| err("malformed index value".into()))?;
        if tenant_seq <= limit {
            return Ok(first_seq + u64::from(count) - 1);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
