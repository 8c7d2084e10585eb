//! HS256 keys named by a `kid`, for rotation (docs/secrets.md#signing-key): the global secret
//! `signing_key.{kid}` is the key of tokens whose header has `kid: {kid}`.
//!
//! Invariants:
//! - A kid is what makes `signing_key.{kid}` a valid secret name (`a-z 0-9 _ . -`), never empty.
//! - Every named key has at least [`crate::edge::auth::SIGNING_KEY_BYTES_MIN`] bytes, as the default key.
//! - Looking for named keys opens the store (creating nothing) only when a file of one exists.

use std::path::Path;

use super::error::SecretError;
use super::key::KeySources;
use super::name::{Namespace, SecretName};
use super::store::{check_signing_key, SecretStore, SECRETS_DIR};
use super::value::SecretValue;

/// The secret name of a kid's key is this prefix and the kid.
pub const KID_SECRET_PREFIX: &str = "signing_key.";

/// The secret that holds the HS256 key of `kid`.
pub fn kid_secret_name(kid: &str) -> Result<SecretName, SecretError> {
    let invalid = || SecretError::InvalidKid {
        kid: kid.chars().take(64).collect(),
    };
    if kid.is_empty() {
        return Err(invalid());
    }
    SecretName::parse(&format!("{KID_SECRET_PREFIX}{kid}")).map_err(|_| invalid())
}

/// The kid of a secret name of the form `signing_key.{kid}`.
pub fn kid_of(name: &SecretName) -> Option<&str> {
    name.as_str()
        .strip_prefix(KID_SECRET_PREFIX)
        .filter(|kid| !kid.is_empty())
}

/// The HS256 key of `kid`, checked for length; [`SecretError::NoKidKey`] when not stored.
pub fn kid_key(
    data_dir: &Path,
    kid: &str,
    sources: KeySources,
) -> Result<SecretValue, SecretError> {
    let name = kid_secret_name(kid)?;
    let key = SecretStore::stored_global(data_dir, &name, sources)?.ok_or_else(|| {
        SecretError::NoKidKey {
            kid: kid.to_owned(),
        }
    })?;
    check_signing_key(&key, format!("secret global/{name}"))?;
    Ok(key)
}

/// Every stored `global/signing_key.{kid}` as (kid, key), each checked for length. Empty, with
/// nothing opened, when no such file exists.
pub fn named_signing_keys(
    data_dir: &Path,
    sources: KeySources,
) -> Result<Vec<(String, SecretValue)>, SecretError> {
    let dir = Namespace::Global.dir(&data_dir.join(SECRETS_DIR));
    let any = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|f| f.starts_with(KID_SECRET_PREFIX))
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
        Err(err) => return Err(SecretError::io("list", &dir)(err)),
    };
    if !any {
        return Ok(Vec::new());
    }
    let store = SecretStore::open_with(data_dir, sources)?;
    let mut keys = Vec::new();
    for name in store.list(&Namespace::Global)? {
        let Some(kid) = kid_of(&name) else { continue };
        let Some(key) = store.get(&Namespace::Global, &name)? else {
            continue;
        };
        check_signing_key(&key, format!("secret global/{name}"))?;
        keys.push((kid.to_owned(), key));
    }
    Ok(keys)
}
