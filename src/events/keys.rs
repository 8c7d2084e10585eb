//! Key layout of the log tree. Every key starts with the tenant prefix `{tenant}\0`.
//!
//! Tenant ids never contain `\0`, so `{tenant}\0` is never a prefix of another tenant's keys
//! (`a\0` vs `ab\0`, `a_b\0`): a tenant is one contiguous range, read, exported or deleted alone.
//! Inside a tenant a tag byte separates the record families; inner ids are `\0`-terminated too,
//! and only the last component may be free-form bytes (message ids, user names).
//!
//! ```text
//! {t}\0 L {tenant_seq:be64}                          -> frame (one append group)
//! {t}\0 S {env}\0{team}\0{session}\0 {first_seq:be64} -> {tenant_seq:be64}{count:be16} of the frame
//! {t}\0 M {env}\0{team}\0{session}                    -> session meta (MessagePack)
//! {t}\0 I {env}\0{team}\0{channel}\0 {message_id}     -> idempotency record (MessagePack)
//! {t}\0 O {env}\0{team}\0{channel}\0 {user}           -> open session id of that user
//! {t}\0 H {tenant_seq:be64}                          -> signed chain head (audit::anchor)
//! {t}\0 A                                            -> retention anchor (log::retention)
//! {t}\0 K {env}\0{team}\0{session}                    -> session data key, wrapped (events::keyring)
//! {t}\0 R                                            -> tenant ops revision (be64, log::ops)
//! ```
//!
//! Big-endian numbers make sled's byte order equal numeric order.

use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

pub(crate) const TAG_FRAME: u8 = b'L';
pub(crate) const TAG_SESSION_INDEX: u8 = b'S';
pub(crate) const TAG_SESSION_META: u8 = b'M';
pub(crate) const TAG_IDEMPOTENCY: u8 = b'I';
pub(crate) const TAG_OPEN_SESSION: u8 = b'O';
pub(crate) const TAG_SIGNED_HEAD: u8 = b'H';
pub(crate) const TAG_RETENTION_ANCHOR: u8 = b'A';
pub(crate) const TAG_DATA_KEY: u8 = b'K';
pub(crate) const TAG_OPS_REVISION: u8 = b'R';
pub(crate) const TAG_ERASURES: u8 = b'E';

/// `{t}\0 R`: how many tenant-ops records the tenant's log has had (`log::ops`).
pub(crate) fn ops_revision_key(tenant: &TenantId) -> Vec<u8> {
    family(tenant, TAG_OPS_REVISION, 0)
}

/// `{t}\0 E`: how many erasures the tenant's log has had (big-endian u64), so that every
/// node's read models notice one (`projections::projector::Projector::refold_if_erased`).
pub(crate) fn erasures_key(tenant: &TenantId) -> Vec<u8> {
    family(tenant, TAG_ERASURES, 0)
}

/// `{t}\0 A`: the tenant's one retention anchor (where its trimmed log starts).
pub(crate) fn retention_anchor_key(tenant: &TenantId) -> Vec<u8> {
    family(tenant, TAG_RETENTION_ANCHOR, 0)
}

/// `{tenant}\0`: the prefix of every key of the tenant.
pub(crate) fn tenant_prefix(tenant: &TenantId) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.as_str().len() + 1);
    k.extend_from_slice(tenant.as_str().as_bytes());
    k.push(0);
    k
}

/// The first key past every key of `tenant`: `{tenant}\x01`.
pub(crate) fn tenant_end(tenant: &TenantId) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    if let Some(last) = k.last_mut() {
        *last = 1;
    }
    k
}

fn family(tenant: &TenantId, tag: u8, extra: usize) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.as_str().len() + 2 + extra);
    k.extend_from_slice(tenant.as_str().as_bytes());
    k.push(0);
    k.push(tag);
    k
}

fn push_part(k: &mut Vec<u8>, part: &str) {
    k.extend_from_slice(part.as_bytes());
    k.push(0);
}

pub(crate) fn frame_key(tenant: &TenantId, tenant_seq: u64) -> Vec<u8> {
    let mut k = family(tenant, TAG_FRAME, 8);
    k.extend_from_slice(&tenant_seq.to_be_bytes());
    k
}

/// `[start, end)` of the tenant's frames.
pub(crate) fn frame_range(tenant: &TenantId) -> (Vec<u8>, Vec<u8>) {
    (
        family(tenant, TAG_FRAME, 0),
        family(tenant, TAG_FRAME + 1, 0),
    )
}

/// Decodes the tenant_seq of a frame key of `tenant`.
pub(crate) fn frame_key_seq(key: &[u8], tenant: &TenantId) -> Option<u64> {
    let n = tenant.as_str().len() + 2;
    let tail = key.get(n..)?;
    let bytes: [u8; 8] = tail.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub(crate) fn session_index_prefix(
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    session: &SessionId,
) -> Vec<u8> {
    let mut k = family(tenant, TAG_SESSION_INDEX, 64);
    push_part(&mut k, env.as_str());
    push_part(&mut k, team.as_str());
    push_part(&mut k, session.as_str());
    k
}

pub(crate) fn session_index_key(prefix: &[u8], first_seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&first_seq.to_be_bytes());
    k
}

pub(crate) fn session_meta_key(
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    session: &SessionId,
) -> Vec<u8> {
    let mut k = session_meta_scope(tenant, env, Some(team));
    k.extend_from_slice(session.as_str().as_bytes());
    k
}

/// Prefix of the session metas of an env, or of one team in it.
pub(crate) fn session_meta_scope(tenant: &TenantId, env: &EnvId, team: Option<&TeamId>) -> Vec<u8> {
    let mut k = family(tenant, TAG_SESSION_META, 64);
    push_part(&mut k, env.as_str());
    if let Some(team) = team {
        push_part(&mut k, team.as_str());
    }
    k
}

/// `[start, end)` of the tenant's session metas, all envs.
pub(crate) fn session_meta_range(tenant: &TenantId) -> (Vec<u8>, Vec<u8>) {
    (
        family(tenant, TAG_SESSION_META, 0),
        family(tenant, TAG_SESSION_META + 1, 0),
    )
}

/// Key of a session's wrapped data key. The ids are validated ones (no `\0`).
pub(crate) fn data_key_key(tenant: &str, env: &str, team: &str, session: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(tenant.len() + env.len() + team.len() + session.len() + 5);
    push_part(&mut k, tenant);
    k.push(TAG_DATA_KEY);
    push_part(&mut k, env);
    push_part(&mut k, team);
    k.extend_from_slice(session.as_bytes());
    k
}

/// `[start, end)` of the tenant's wrapped data keys.
pub(crate) fn data_key_range(tenant: &TenantId) -> (Vec<u8>, Vec<u8>) {
    (
        family(tenant, TAG_DATA_KEY, 0),
        family(tenant, TAG_DATA_KEY + 1, 0),
    )
}

pub(crate) fn idempotency_key(
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    channel: &ChannelId,
    message_id: &str,
) -> Vec<u8> {
    let mut k = family(tenant, TAG_IDEMPOTENCY, 64 + message_id.len());
    push_part(&mut k, env.as_str());
    push_part(&mut k, team.as_str());
    push_part(&mut k, channel.as_str());
    k.extend_from_slice(message_id.as_bytes());
    k
}

/// `[start, end)` of the tenant's idempotency records.
pub(crate) fn idempotency_range(tenant: &TenantId) -> (Vec<u8>, Vec<u8>) {
    (
        family(tenant, TAG_IDEMPOTENCY, 0),
        family(tenant, TAG_IDEMPOTENCY + 1, 0),
    )
}

pub(crate) fn open_session_key(
    tenant: &TenantId,
    env: &EnvId,
    team: &TeamId,
    channel: &ChannelId,
    user: &str,
) -> Vec<u8> {
    let mut k = family(tenant, TAG_OPEN_SESSION, 64 + user.len());
    push_part(&mut k, env.as_str());
    push_part(&mut k, team.as_str());
    push_part(&mut k, channel.as_str());
    k.extend_from_slice(user.as_bytes());
    k
}

/// The signed chain head of `tenant` at `tenant_seq`.
pub(crate) fn signed_head_key(tenant: &TenantId, tenant_seq: u64) -> Vec<u8> {
    let mut k = family(tenant, TAG_SIGNED_HEAD, 8);
    k.extend_from_slice(&tenant_seq.to_be_bytes());
    k
}

/// `[start, end)` of the tenant's signed heads.
pub(crate) fn signed_head_range(tenant: &TenantId) -> (Vec<u8>, Vec<u8>) {
    (
        family(tenant, TAG_SIGNED_HEAD, 0),
        family(tenant, TAG_SIGNED_HEAD + 1, 0),
    )
}

/// The tenant id at the start of any log key.
pub(crate) fn key_tenant(key: &[u8]) -> Option<TenantId> {
    let end = key.iter().position(|&b| b == 0)?;
    let raw = std::str::from_utf8(&key[..end]).ok()?;
    TenantId::parse(raw).ok()
}
