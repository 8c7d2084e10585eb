//! Idempotency records as stored: the acknowledgement (the replies a retry gets back) is sealed
//! under the session's data key when the log seals events, so that it is never plain on disk
//! and destroying the key erases it with the session's events. Records written before (v1, v2)
//! hold it in plain and still read.

use super::{IdempotencyRecord, ReadError};
use crate::events::keyring::Keyring;
use crate::events::schema::decode_limited;
use crate::events::seal::{self, DataKey, SealScope};
use crate::tenancy::{EnvId, TeamId, TenantId};

/// The stored bytes of `rec` (whose `ack` is plain) at `record_key`: `ack` sealed under
/// `data_key` when there is one.
pub(super) fn encode(
    rec: &IdempotencyRecord,
    data_key: Option<&DataKey>,
    scope: &SealScope<'_>,
    record_key: &[u8],
) -> Vec<u8> {
    let sealed;
    let stored = match data_key {
        Some(key) => {
            sealed = IdempotencyRecord {
                ack: seal::seal(key, &seal::reply_aad(scope, record_key), &rec.ack),
                sealed: true,
                ..rec.clone()
            };
            &sealed
        }
        None => rec,
    };
    rmp_serde::to_vec_named(stored).expect("MessagePack encoding of plain fields is infallible")
}

/// The record at `record_key` (of `tenant`, `env`, `team`), its `ack` opened when sealed. A
/// sealed `ack` whose data key is gone (erased) or that has no key ring to open it stays
/// sealed (`sealed` set); one that does not open under its key is an error.
pub(super) fn read(
    tree: &sled::Tree,
    keyring: Option<&Keyring>,
    (tenant, env, team): (&TenantId, &EnvId, &TeamId),
    record_key: &[u8],
) -> Result<Option<IdempotencyRecord>, ReadError> {
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: "idempotency record".into(),
        detail,
    };
    let Some(value) = tree.get(record_key).map_err(|e| err(e.to_string()))? else {
        return Ok(None);
    };
    let mut rec: IdempotencyRecord = decode_limited(&value).map_err(|e| err(e.to_string()))?;
    let Some(ring) = keyring.filter(|_| rec.sealed) else {
        return Ok(Some(rec));
    };
    let scope = SealScope {
        tenant: tenant.as_str(),
        env: env.as_str(),
        team: team.as_str(),
        session: rec.session.as_str(),
    };
    let Some(key) = ring
        .read_key(tree, &scope)
        .map_err(|e| err(e.to_string()))?
    else {
        return Ok(Some(rec));
    };
    let opened = seal::open(&key, &seal::reply_aad(&scope, record_key), &rec.ack)
        .map_err(|e| err(format!("stored reply of session {}: {e}", rec.session)))?;
    rec.ack = opened.to_vec();
    rec.sealed = false;
    Ok(Some(rec))
}
