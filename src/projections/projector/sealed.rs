//! Sealed read-model entries: a session's state (`S…`: its user and state values) and its last
//! message (`M…`) are stored sealed under the session's data key when the session has one (its
//! events are sealed), so no personal field is plain in the read models on disk and destroying
//! the key erases them with the events. Usage counters hold nothing personal and stay plain.
//!
//! A sealed value is [`SEALED_MARK`] (0xC1: a byte MessagePack never uses, so no plain value
//! starts with it), then `nonce || ciphertext || tag` of the plain value (XChaCha20-Poly1305,
//! associated data: [`AAD_LABEL`], the tenant, `\0` and the entry's key). The nonce is
//! synthetic (`seal::seal_deterministic`), so a rebuild stays byte-identical to the
//! incremental fold. Plain values (of
//! sessions without a data key, and every value written before) still read.

use std::borrow::Cow;

use super::{Projector, ProjectorError, TAG_LAST_MESSAGE, TAG_SESSION};
use crate::events::seal::{self, DataKey, SealScope};
use crate::tenancy::TenantId;

/// First byte of a sealed read-model value.
pub(super) const SEALED_MARK: u8 = 0xC1;
/// Domain label at the start of a sealed read-model value's associated data.
const AAD_LABEL: &[u8] = b"tenantry read model v1\0";

fn aad(tenant: &TenantId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_LABEL.len() + tenant.as_str().len() + 1 + key.len());
    out.extend_from_slice(AAD_LABEL);
    out.extend_from_slice(tenant.as_str().as_bytes());
    out.push(0);
    out.extend_from_slice(key);
    out
}

impl Projector {
    /// The data key of the session whose entry is at `key` (`S` or `M` and
    /// `{env}\0{team}\0{session}`), `None` for other entries and sessions without one.
    fn entry_key(&self, tenant: &TenantId, key: &[u8]) -> Result<Option<DataKey>, ProjectorError> {
        let Some((&tag, rest)) = key.split_first() else {
            return Ok(None);
        };
        if tag != TAG_SESSION && tag != TAG_LAST_MESSAGE {
            return Ok(None);
        }
        let corrupt = |detail: String| ProjectorError::Corrupt {
            tenant: tenant.clone(),
            detail,
        };
        let mut parts = rest.splitn(3, |&b| b == 0).map(std::str::from_utf8);
        let (Some(Ok(env)), Some(Ok(team)), Some(Ok(session))) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(corrupt("malformed session entry key".into()));
        };
        let scope = SealScope {
            tenant: tenant.as_str(),
            env,
            team,
            session,
        };
        self.tree.log().session_data_key(&scope).map_err(corrupt)
    }

    /// `plain`, the encoded value of the entry at `key`, as stored: sealed when its session has
    /// a data key.
    ///
    /// `known` is the key the entry's plain fields were opened with (by the fold's read, or by
    /// [`Projector::open_entry_keyed`]): it seals the entry even when an erasure destroyed it
    /// meanwhile, so a field opened before the erasure never reaches the disk plain. Only an
    /// entry with no known key looks the session's key up now.
    pub(super) fn seal_entry(
        &self,
        tenant: &TenantId,
        key: &[u8],
        plain: Vec<u8>,
        known: Option<&DataKey>,
    ) -> Result<Vec<u8>, ProjectorError> {
        let looked_up;
        let data_key = match known {
            Some(k) => k,
            None => match self.entry_key(tenant, key)? {
                Some(k) => {
                    looked_up = k;
                    &looked_up
                }
                None => return Ok(plain),
            },
        };
        let sealed = seal::seal_deterministic(data_key, &aad(tenant, key), &plain);
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(SEALED_MARK);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// The plain encoded value of the entry at `key` stored as `value`. A sealed one whose data
    /// key was destroyed is an error until the tenant's read models are rebuilt (erasure does).
    pub(super) fn open_entry<'a>(
        &self,
        tenant: &TenantId,
        key: &[u8],
        value: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, ProjectorError> {
        Ok(self.open_entry_keyed(tenant, key, value)?.0)
    }

    /// [`Projector::open_entry`], with the data key that opened a sealed entry.
    pub(super) fn open_entry_keyed<'a>(
        &self,
        tenant: &TenantId,
        key: &[u8],
        value: &'a [u8],
    ) -> Result<(Cow<'a, [u8]>, Option<DataKey>), ProjectorError> {
        let Some((&SEALED_MARK, sealed)) = value.split_first() else {
            return Ok((Cow::Borrowed(value), None));
        };
        let corrupt = |detail: String| ProjectorError::Corrupt {
            tenant: tenant.clone(),
            detail,
        };
        let Some(data_key) = self.entry_key(tenant, key)? else {
            return Err(corrupt(
                "a sealed entry's session was erased; rebuild the read models \
                 (`tenantry rebuild`)"
                    .into(),
            ));
        };
        let opened = seal::open(&data_key, &aad(tenant, key), sealed)
            .map_err(|e| corrupt(format!("sealed entry: {e}")))?;
        Ok((Cow::Owned(opened.to_vec()), Some(data_key)))
    }
}
