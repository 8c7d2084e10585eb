//! Session meta as stored (`{t}\0M…`, [`SessionMeta`]): when the log seals events, the user id
//! is sealed under the session's data key (`user_sealed`, `user` then empty) and the
//! open-session index is keyed by the user's pseudonym (`open_as`,
//! [`Keyring::user_pseudonym`]), so no user id is plain on disk and destroying the data key
//! erases it. Metas written before (plain `user`, index keyed by it) still read.

use super::{ReadError, SessionMeta};
use crate::events::keyring::Keyring;
use crate::events::seal::{self, DataKey, SealScope};
use crate::tenancy::ChannelId;

/// The stored meta of a session started by `user` on `channel` at `started_at` (unix ms):
/// sealed under `data_key` when there is one, its open-session index keyed by `open_as`.
pub(super) fn encode(
    channel: &ChannelId,
    user: &str,
    started_at: u64,
    sealing: Option<(&DataKey, &SealScope<'_>)>,
    open_as: Option<String>,
) -> Vec<u8> {
    let meta = match sealing {
        Some((key, scope)) => SessionMeta {
            channel: channel.clone(),
            user: String::new(),
            started_at,
            user_sealed: Some(seal::seal(key, &seal::user_aad(scope), user.as_bytes())),
            open_as,
        },
        None => SessionMeta {
            channel: channel.clone(),
            user: user.to_owned(),
            started_at,
            user_sealed: None,
            open_as,
        },
    };
    rmp_serde::to_vec_named(&meta).expect("MessagePack encoding of plain fields is infallible")
}

/// The user id of `meta` (of the session `scope`): the plain one, or the sealed one opened; empty
/// when it was erased (the data key is gone) or there is no key ring to open it.
pub(super) fn user(
    meta: &SessionMeta,
    tree: Option<&sled::Tree>,
    keyring: Option<&Keyring>,
    scope: &SealScope<'_>,
) -> Result<String, String> {
    let (Some(sealed), Some(tree), Some(ring)) = (&meta.user_sealed, tree, keyring) else {
        return Ok(meta.user.clone());
    };
    let Some(key) = ring.read_key(tree, scope).map_err(|e| e.to_string())? else {
        return Ok(String::new());
    };
    let opened = seal::open(&key, &seal::user_aad(scope), sealed)
        .map_err(|e| format!("session {}: sealed user: {e}", scope.session))?;
    String::from_utf8(opened.to_vec())
        .map_err(|_| format!("session {}: sealed user is not UTF-8", scope.session))
}

/// The keys of the open-session index that may name a session of `user` (plain id): under its
/// pseudonym (when the tenant has a pseudonym key), then under the plain id (older sessions).
pub(super) fn open_keys(
    keyring: Option<&Keyring>,
    (tenant, env, team, channel): OpenScope<'_>,
    user: &str,
) -> Result<Vec<Vec<u8>>, ReadError> {
    use crate::events::keys::open_session_key;
    let mut out = Vec::with_capacity(2);
    if let Some(ring) = keyring {
        let pseudonym = ring
            .user_pseudonym(tenant.as_str(), user, false)
            .map_err(|e| ReadError {
                tenant: tenant.clone(),
                position: "open-session index".into(),
                detail: e.to_string(),
            })?;
        if let Some(p) = pseudonym {
            out.push(open_session_key(tenant, env, team, channel, &p));
        }
    }
    out.push(open_session_key(tenant, env, team, channel, user));
    Ok(out)
}

/// Tenant, env, team and channel of an open-session key.
pub(super) type OpenScope<'a> = (
    &'a crate::tenancy::TenantId,
    &'a crate::tenancy::EnvId,
    &'a crate::tenancy::TeamId,
    &'a ChannelId,
);
