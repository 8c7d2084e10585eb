//! The stager's per-group step: check a group against the log and the batch staged so far,
//! encode its events into one frame and stage its keys. Each step is its own function, in the
//! order `Stager::stage` calls them; nothing of a group is staged before every check passed.

use super::{unix_ms, AppendResult, SessionHead, SessionKey, Staged, Stager};
use crate::events::codec::{
    self, chain_hash, EventRef, Hash, CAPABILITIES_MAX, FRAME_BYTES_MAX, GROUP_EVENTS_MAX,
    NAME_BYTES_MAX, TEXT_BYTES_MAX,
};
use crate::events::keyring::NewKey;
use crate::events::keys;
use crate::events::log::read::{encode_index_value, last_seq};
use crate::events::log::{idempotency, meta};
use crate::events::log::{
    AppendError, AppendGroup, AppendOutcome, Appended, Head, IdempotencyRecord, ReadError,
    Rejection, SessionMeta, ACK_BYTES_MAX, IDEMPOTENCY_RECORD_VERSION,
};
use crate::events::schema::{decode_limited, EventKind};
use crate::events::seal::{DataKey, SealScope};
use crate::tenancy::{EnvId, SessionId, TeamId, TenantId};

/// How a group moves its session: whether it starts or ends it, and the session's user when the
/// open-session index needs it (at start and end only): after [`Stager::start_meta`], the name
/// the index keys it by (its pseudonym when sealing).
struct Shape {
    starts: bool,
    ends: bool,
    user: Option<String>,
    /// At start, the stored session meta ([`Stager::start_meta`]).
    meta: Option<Vec<u8>>,
}

/// A group's events encoded and chained, not yet staged.
struct Encoded {
    /// The chain hash before the group's first event.
    prev_hash: Hash,
    bodies: Vec<Vec<u8>>,
    appended: Appended,
    /// The session's data key when the events were sealed (the stored reply is sealed too).
    data_key: Option<DataKey>,
    /// A data key made for this group's session ([`crate::events::keyring::Keyring::new_key`]):
    /// its log entry, staged with the group's keys.
    new_key: Option<NewKey>,
}

impl Stager {
    /// Validates a group and stages its keys. On `Err` nothing of the group is staged.
    pub(super) fn stage(
        &mut self,
        tree: &sled::Tree,
        mut group: AppendGroup,
        staged: &mut Staged,
    ) -> AppendResult {
        self.check_writable(&group.ctx.tenant)?;
        validate(&group)?;
        // The ops revision only travels in the stream's records: the sled backend needs no lookup.
        let rev = if staged.replicate {
            self.ops_rev(tree, &group.ctx.tenant)?
        } else {
            0
        };
        staged.unit_ops.clear();
        let team = group.ctx.team_or_default();
        let idem_key = match self.new_idempotency_key(tree, &group, &team, staged)? {
            Ok(key) => key,
            Err(duplicate) => return Ok(AppendOutcome::Duplicate(duplicate)),
        };
        let (tenant, env) = (&group.ctx.tenant, &group.ctx.env);
        let session_key: SessionKey =
            keys::session_index_prefix(tenant, env, &team, &group.session);
        self.load_session_head(tree, &session_key, tenant, env, &team, &group.session)?;
        let mut shape = self.check_session(&group, &session_key)?;
        if shape.ends && shape.user.is_none() {
            let ids = (tenant, env, &team, &group.session);
            shape.user = Some(ending_user(tree, staged, &session_key, ids)?);
        }
        let mut encoded = self.encode(tree, &group, &team, staged)?;
        let data_key = encoded.data_key.take();
        self.start_meta(&group, &team, &mut shape, data_key.as_ref())?;
        let appended = stage_keys(tree, &group, &team, &session_key, &shape, encoded, staged)?;
        if let (Some(key), Some(idem)) = (idem_key, group.idempotency.take()) {
            let rec = IdempotencyRecord {
                v: IDEMPOTENCY_RECORD_VERSION,
                session: group.session.clone(),
                first_seq: appended.first_seq,
                last_seq: appended.last_seq,
                ack: idem.ack,
                at_ms: group.at_ms,
                sealed: false,
            };
            let scope = SealScope {
                tenant: tenant.as_str(),
                env: env.as_str(),
                team: team.as_str(),
                session: group.session.as_str(),
            };
            let value = idempotency::encode(&rec, data_key.as_ref(), &scope, &key);
            self.seen.insert(&group.ctx.tenant, &key);
            staged.put(key.clone(), value);
            staged.undo.created.push(key.clone());
            staged.idempotency.insert(key, rec);
        }
        let started_as = shape.user.filter(|_| shape.starts);
        self.advance(&group, &session_key, started_as, &appended, staged);
        let head = Head {
            tenant_seq: appended.last_tenant_seq,
            hash: appended.hash,
        };
        staged.end_unit(&group.ctx.tenant, head, rev);
        Ok(AppendOutcome::Appended(appended))
    }

    /// Refuses every append while the log has failed, and a damaged tenant's appends.
    pub(super) fn check_writable(&self, tenant: &TenantId) -> Result<(), AppendError> {
        if let Some(e) = self.shared.failure() {
            return Err(AppendError::Failed(e));
        }
        if !self.shared.owns(tenant) {
            return Err(AppendError::NotOwner(tenant.clone()));
        }
        if let Some(d) = self.damaged.get(tenant) {
            return Err(AppendError::TenantDamaged {
                tenant: tenant.clone(),
                position: d.position.clone(),
                detail: d.detail.clone(),
            });
        }
        Ok(())
    }

    /// Checks the group against its session's cached head: the expected seq, a start only
    /// first in a new session, the session's channel.
    fn check_session(
        &self,
        group: &AppendGroup,
        session_key: &SessionKey,
    ) -> Result<Shape, AppendError> {
        let existing = self.sessions.get(session_key.as_slice());
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
        // The user is only needed to maintain the open-session index at start and end (at the
        // end it comes from the session's meta: `ending_user`).
        let user = match group.kinds.first() {
            Some(EventKind::SessionStarted { user, .. }) => Some(user.clone()),
            _ => None,
        };
        Ok(Shape {
            starts,
            ends,
            user,
            meta: None,
        })
    }

    /// At a session's start: its stored meta (the user sealed under `data_key` when there is
    /// one) into `shape.meta`, and the user's pseudonym, which then keys the open-session
    /// index, in place of `shape.user`.
    fn start_meta(
        &self,
        group: &AppendGroup,
        team: &TeamId,
        shape: &mut Shape,
        data_key: Option<&DataKey>,
    ) -> Result<(), AppendError> {
        let (true, Some(user)) = (shape.starts, &shape.user) else {
            return Ok(());
        };
        let tenant = group.ctx.tenant.as_str();
        let scope = SealScope {
            tenant,
            env: group.ctx.env.as_str(),
            team: team.as_str(),
            session: group.session.as_str(),
        };
        let open_as = match (&self.shared.opts.keyring, data_key) {
            (Some(ring), Some(_)) => ring
                .user_pseudonym(tenant, user, true)
                .map_err(|e| AppendError::Failed(e.to_string()))?,
            _ => None,
        };
        let sealing = data_key.map(|k| (k, &scope));
        let meta = meta::encode(&group.channel, user, group.at_ms, sealing, open_as.clone());
        shape.meta = Some(meta);
        if let Some(p) = open_as {
            shape.user = Some(p);
        }
        Ok(())
    }

    /// Assigns ids, seqs and tenant seqs, encodes each event (its personal fields sealed under
    /// the session's data key when the log has a key ring) and chains it onto the tenant's
    /// head; checks every body and the frame against their limits.
    fn encode(
        &mut self,
        tree: &sled::Tree,
        group: &AppendGroup,
        team: &TeamId,
        staged: &Staged,
    ) -> Result<Encoded, AppendError> {
        let tenant = &group.ctx.tenant;
        let (data_key, new_key) = self.sealing_key(tree, group, team, staged)?;
        let head = self.heads.get(tenant).copied().unwrap_or(Head::EMPTY);
        let count = group.kinds.len() as u64;
        let first_seq = group.expected_seq + 1;
        let first_tenant_seq = head.tenant_seq + 1;
        let now_ms = unix_ms();
        let mut bodies = Vec::with_capacity(group.kinds.len());
        let mut hash = head.hash;
        for (i, kind) in group.kinds.iter().enumerate() {
            let event = EventRef {
                id: self.ids.next(now_ms),
                tenant,
                env: &group.ctx.env,
                team,
                channel: &group.channel,
                session: &group.session,
                seq: first_seq + i as u64,
                tenant_seq: first_tenant_seq + i as u64,
                at_ms: group.at_ms,
                kind,
            };
            let body = match &data_key {
                Some(key) => codec::encode_body_sealed(&event, key),
                None => codec::encode_body_ref(&event),
            };
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
        let frame_len = codec::frame_len(&bodies);
        if frame_len > FRAME_BYTES_MAX {
            return Err(Rejection::GroupTooLarge(frame_len).into());
        }
        Ok(Encoded {
            prev_hash: head.hash,
            bodies,
            appended: Appended {
                first_seq,
                last_seq: first_seq + count - 1,
                first_tenant_seq,
                last_tenant_seq: first_tenant_seq + count - 1,
                hash,
            },
            data_key,
            new_key,
        })
    }

    /// The data key to seal the group's events under (`None` when the log does not seal): the
    /// one made earlier in this batch, else the stored one, else a fresh one whose entry the
    /// caller stages (returned beside it).
    fn sealing_key(
        &self,
        tree: &sled::Tree,
        group: &AppendGroup,
        team: &TeamId,
        staged: &Staged,
    ) -> Result<(Option<DataKey>, Option<NewKey>), AppendError> {
        let Some(ring) = self
            .shared
            .opts
            .keyring
            .as_ref()
            .filter(|_| self.shared.opts.seal)
        else {
            return Ok((None, None));
        };
        let scope = SealScope {
            tenant: group.ctx.tenant.as_str(),
            env: group.ctx.env.as_str(),
            team: team.as_str(),
            session: group.session.as_str(),
        };
        let failed = |e: crate::events::keyring::KeyringError| AppendError::Failed(e.to_string());
        let entry = keys::data_key_key(scope.tenant, scope.env, scope.team, scope.session);
        if let Some(key) = staged.data_keys.get(&entry) {
            return Ok((Some(key.clone()), None));
        }
        if let Some(key) = ring.read_key(tree, &scope).map_err(failed)? {
            return Ok((Some(key), None));
        }
        let made = ring.new_key(&scope).map_err(failed)?;
        Ok((Some(made.data_key.clone()), Some(made)))
    }

    /// After the group is staged: moves the batch's tenant top, the tenant's head and the
    /// session's cached head past it; a session it started is remembered for the batch with
    /// the name the open-session index keys it by (`started_as`).
    fn advance(
        &mut self,
        group: &AppendGroup,
        session_key: &SessionKey,
        started_as: Option<String>,
        appended: &Appended,
        staged: &mut Staged,
    ) {
        let tenant = &group.ctx.tenant;
        let last_tenant_seq = appended.last_tenant_seq;
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
                hash: appended.hash,
            },
        );
        if let Some(user) = started_as {
            staged.started.insert(session_key.clone(), user);
        }
        match self.sessions.get_mut(session_key.as_slice()) {
            Some(h) => h.last_seq = appended.last_seq,
            None => {
                let channel = group.channel.clone();
                self.sessions.insert(
                    session_key.as_slice().into(),
                    SessionHead {
                        last_seq: appended.last_seq,
                        channel,
                    },
                );
            }
        }
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
        if self.sessions.contains_key(key.as_slice()) {
            return Ok(());
        }
        let last = last_seq(tree, tenant, env, team, session).map_err(damaged_error)?;
        if last == 0 {
            return Ok(());
        }
        let meta = read_meta(tree, (tenant, env, team, session))?;
        let head = SessionHead {
            last_seq: last,
            channel: meta.channel,
        };
        self.sessions.insert(key.as_slice().into(), head);
        Ok(())
    }

    /// The group's idempotency key when it has a message id not seen before (`Ok(None)`
    /// without one), or the first append's record (`Err`) when the id is in this batch or the
    /// log already. The tenant's filter (`seen`) answers most new ids without reading sled.
    fn new_idempotency_key(
        &mut self,
        tree: &sled::Tree,
        group: &AppendGroup,
        team: &TeamId,
        staged: &Staged,
    ) -> Result<Result<Option<Vec<u8>>, IdempotencyRecord>, AppendError> {
        let Some(idem) = &group.idempotency else {
            return Ok(Ok(None));
        };
        let tenant = &group.ctx.tenant;
        let key = keys::idempotency_key(
            tenant,
            &group.ctx.env,
            team,
            &group.channel,
            &idem.message_id,
        );
        if let Some(rec) = staged.idempotency.get(&key) {
            return Ok(Err(rec.clone()));
        }
        if self.seen.may_contain(tenant, &key) {
            let ring = self.shared.opts.keyring.as_deref();
            let ids = (tenant, &group.ctx.env, team);
            let found = idempotency::read(tree, ring, ids, &key).map_err(damaged_error)?;
            if let Some(rec) = found {
                return Ok(Err(rec));
            }
        }
        Ok(Ok(Some(key)))
    }
}

/// Stages the group's events (into a frame: `Staged::stage_frame`), its session index entry
/// and, at a session's start or end, its meta and open-session keys, recording in
/// `staged.undo` how to take each back. Every read comes before the first write, so an `Err`
/// leaves nothing of the group staged.
fn stage_keys(
    tree: &sled::Tree,
    group: &AppendGroup,
    team: &TeamId,
    session_key: &SessionKey,
    shape: &Shape,
    encoded: Encoded,
    staged: &mut Staged,
) -> Result<Appended, AppendError> {
    let (tenant, env) = (&group.ctx.tenant, &group.ctx.env);
    let open_key = shape
        .user
        .as_ref()
        .map(|user| keys::open_session_key(tenant, env, team, &group.channel, user));
    let open_before = match &open_key {
        // The first change of this key in the batch: keep its value for an undo.
        Some(key) if !staged.open.contains_key(key) => {
            let before = tree.get(key).map_err(|e| AppendError::TenantDamaged {
                tenant: tenant.clone(),
                position: "open-session index".into(),
                detail: e.to_string(),
            })?;
            Some(before)
        }
        _ => None,
    };
    let Encoded {
        prev_hash,
        bodies,
        appended,
        new_key,
        ..
    } = encoded;
    if let Some(made) = new_key {
        // The session's wrapped data key goes with its first sealed events (to the stream too).
        staged.undo.created.push(made.key.clone());
        staged.data_keys.insert(made.key.clone(), made.data_key);
        staged.put(made.key, made.wrapped);
    }
    let count = appended.last_seq - appended.first_seq + 1;
    let at = (appended.first_tenant_seq, &prev_hash);
    let frame_start = staged.stage_frame(tenant, at, bodies, session_key);
    let count_u16 = u16::try_from(count).expect("group size is checked against GROUP_EVENTS_MAX");
    // The group's place in its frame (under FRAME_RECORDS_MAX), so that a session read finds
    // the frame with one lookup.
    let offset = appended
        .first_tenant_seq
        .checked_sub(frame_start)
        .and_then(|offset| u16::try_from(offset).ok());
    let index_value = encode_index_value(appended.first_tenant_seq, count_u16, offset);
    let index_key = keys::session_index_key(session_key, appended.first_seq);
    staged.undo.created.push(index_key.clone());
    staged.put(index_key, index_value);
    let Some(open_key) = open_key else {
        return Ok(appended);
    };
    if let Some(before) = open_before {
        staged.undo.open.push((open_key.clone(), before));
    }
    if let (true, Some(meta)) = (shape.starts, &shape.meta) {
        let meta = meta.clone();
        let meta_key = keys::session_meta_key(tenant, env, team, &group.session);
        staged.undo.created.push(meta_key.clone());
        staged.put(meta_key, meta);
        staged.put(open_key.clone(), group.session.as_str().as_bytes().to_vec());
        staged
            .open
            .insert(open_key.clone(), Some(group.session.clone()));
    }
    if shape.ends {
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
            staged.remove(open_key.clone());
            staged.open.insert(open_key, None);
        }
    }
    Ok(appended)
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
            EventKind::ConnectorRegistered {
                connector,
                provider,
                version,
                capabilities,
                healed: _,
            } => {
                check_len("connector", connector, NAME_BYTES_MAX)?;
                check_len("provider", provider, NAME_BYTES_MAX)?;
                check_len("version", version, NAME_BYTES_MAX)?;
                if capabilities.len() > CAPABILITIES_MAX {
                    return Err(Rejection::TooLong {
                        field: "capabilities",
                        len: capabilities.len(),
                        max: CAPABILITIES_MAX,
                    });
                }
                for capability in capabilities {
                    check_len("capabilities", capability, NAME_BYTES_MAX)?;
                }
            }
            EventKind::ConnectorStateChanged {
                connector,
                from,
                to,
            } => {
                check_len("connector", connector, NAME_BYTES_MAX)?;
                check_len("from", from, NAME_BYTES_MAX)?;
                check_len("to", to, NAME_BYTES_MAX)?;
            }
            EventKind::OutboxAcked { connector, .. }
            | EventKind::OutboxDeadLettered { connector, .. } => {
                check_len("connector", connector, NAME_BYTES_MAX)?;
            }
        }
    }
    Ok(())
}

/// The name the open-session index keys an ending session by: its user's pseudonym, or the
/// plain user id of a session started before pseudonyms. From [`Staged::started`] when the
/// session started in this batch, else from its meta in the tree.
fn ending_user(
    tree: &sled::Tree,
    staged: &Staged,
    session_key: &SessionKey,
    ids: (&TenantId, &EnvId, &TeamId, &SessionId),
) -> Result<String, AppendError> {
    if let Some(user) = staged.started.get(session_key) {
        return Ok(user.clone());
    }
    let meta = read_meta(tree, ids)?;
    Ok(meta.open_as.unwrap_or(meta.user))
}

/// A session's meta from the tree; a missing or unreadable one is damage of its tenant.
fn read_meta(
    tree: &sled::Tree,
    (tenant, env, team, session): (&TenantId, &EnvId, &TeamId, &SessionId),
) -> Result<SessionMeta, AppendError> {
    let err = |detail: String| AppendError::TenantDamaged {
        tenant: tenant.clone(),
        position: format!("session {session} meta"),
        detail,
    };
    let value = tree
        .get(keys::session_meta_key(tenant, env, team, session))
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("missing".into()))?;
    decode_limited(&value).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::fixtures::id;

    /// The ending user comes from the batch when the session started in it (its meta is not
    /// in the tree yet), else from the meta in the tree (the pseudonym when it has one); a
    /// session with neither is damaged, not ended silently.
    #[test]
    fn an_ending_sessions_user_is_read_from_the_batch_then_from_its_meta() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("log").unwrap();
        let (tenant, env, team) = (id("acme"), id("prod"), id("support"));
        let ids = |s: &str| keys::session_index_prefix(&tenant, &env, &team, &id(s));
        let mut staged = Staged::default();
        staged.started.insert(ids("s1"), "pseudonym-1".into());
        let s1 = id("s1");
        let user = ending_user(&tree, &staged, &ids("s1"), (&tenant, &env, &team, &s1));
        assert_eq!(user.unwrap(), "pseudonym-1");

        let s2 = id("s2");
        let plain = meta::encode(&id("slack"), "ada", 1, None, None);
        tree.insert(keys::session_meta_key(&tenant, &env, &team, &s2), plain)
            .unwrap();
        let user = ending_user(&tree, &staged, &ids("s2"), (&tenant, &env, &team, &s2));
        assert_eq!(user.unwrap(), "ada");
        let sealed_as = meta::encode(&id("slack"), "ada", 1, None, Some("pseudonym-2".into()));
        tree.insert(keys::session_meta_key(&tenant, &env, &team, &s2), sealed_as)
            .unwrap();
        let user = ending_user(&tree, &staged, &ids("s2"), (&tenant, &env, &team, &s2));
        assert_eq!(user.unwrap(), "pseudonym-2");

        let s3 = id("s3");
        let missing = ending_user(&tree, &staged, &ids("s3"), (&tenant, &env, &team, &s3));
        assert!(matches!(missing, Err(AppendError::TenantDamaged { .. })));
    }
}
