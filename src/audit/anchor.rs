//! Anchored chain heads: a tenant's chain head `(tenant_seq, hash)` signed with an Ed25519 key
//! that only the platform holds, so that an export whose chain was rewritten as a whole (every
//! hash and the manifest recomputed) or whose tail was cut off no longer verifies against the
//! public key (docs/audit.md, "Anchored chain heads").
//!
//! - The key is the global secret `global/chain_head_key` ([`CHAIN_HEAD_KEY_SECRET`]): the
//!   32-byte Ed25519 seed as 64 lowercase hex digits. `serve` makes one when there is none and
//!   logs that it did ([`HeadSigner::load_or_generate`]); offline commands only read it
//!   ([`HeadSigner::load`]).
//! - What is signed ([`signed_message`]): `"tenantry-head/1\0" || tenant || "\0" ||
//!   tenant_seq (be64) || hash (32 bytes) || at_ms (be64)`, where `at_ms` is when it was signed.
//! - The public key is exchanged as 64 lowercase hex digits and a newline
//!   (`tenantry keys export-pubkey`); [`parse_public_key`] reads exactly that (surrounding
//!   whitespace ignored).
//! - `serve` stores heads in the log beside the frames ([`EventLog::put_signed_head`]) every
//!   `audit.head_sign_every_events` events or `audit.head_sign_interval` (`schedule`); an export
//!   carries the newest [`MANIFEST_HEADS_MAX`] stored heads of its range in its manifest, plus
//!   one signed for its last event when it has the key.
//!
//! Invariant: nothing here is hand-made crypto: signatures are ed25519-dalek's, verified with
//! `verify_strict`.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::record::{hash_hex, parse_hash};
use crate::events::codec::Hash;
use crate::events::log::replica::keys::{Created, SharedKeys};
use crate::events::log::{EventLog, Head, HeadStored, ReadError};
use crate::secrets::error::SecretError;
use crate::secrets::key::KeySources;
use crate::secrets::name::{Namespace, SecretName};
use crate::secrets::store::SecretStore;
use crate::tenancy::TenantId;

pub mod schedule;

/// The global secret holding the chain head signing key.
pub const CHAIN_HEAD_KEY_SECRET: &str = "chain_head_key";
/// The domain-separation prefix of every signed head message (the `/1` is its version).
pub const HEAD_DOMAIN: &[u8] = b"tenantry-head/1\0";
/// Most signed heads an export's manifest carries (the newest of its range); about 250 bytes
/// each, well inside the manifest's 64 KiB.
pub const MANIFEST_HEADS_MAX: usize = 100;
/// Version byte of a stored head's value.
const STORED_HEAD_VERSION: u8 = 1;
/// A stored head's value: version, hash, signing time, signature.
const STORED_HEAD_BYTES: usize = 1 + 32 + 8 + 64;
/// Hex digits of an Ed25519 seed or public key.
const KEY_HEX_DIGITS: usize = 64;

/// Why a head could not be signed, stored or read, or a key used.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The stored chain head key is not 64 hex digits.
    #[error(
        "the secret global/{CHAIN_HEAD_KEY_SECRET} is not an Ed25519 seed (64 hex digits); \
         delete it (tenantry secrets delete --global {CHAIN_HEAD_KEY_SECRET}) and let serve make \
         a new one"
    )]
    BadSecret,
    /// No chain head key is stored.
    #[error(
        "no chain head key: tenantry serve makes global/{CHAIN_HEAD_KEY_SECRET} at its first \
         start (with the same master key)"
    )]
    NoKey,
    /// A public key file or text is not one `keys export-pubkey` writes.
    #[error(
        "public key {origin}: {problem}; expected 64 hex digits as written by tenantry keys \
         export-pubkey"
    )]
    BadPublicKey {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        problem: String,
    },
    /// The cluster's key stream failed.
    #[error("the chain head key in the cluster's key stream: {0}")]
    Shared(crate::events::log::replica::keys::SharedKeyError),
    /// The secret store failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The log could not store or read a head.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A stored head does not decode.
    #[error("tenant {tenant}: the signed head at tenant_seq {tenant_seq} is malformed")]
    Malformed {
        /// The tenant.
        tenant: TenantId,
        /// The head's key.
        tenant_seq: u64,
    },
    /// Reading a file failed.
    #[error("{what}: {error}")]
    Io {
        /// What was read.
        what: String,
        /// The underlying error.
        error: std::io::Error,
    },
}

/// A chain head and its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedHead {
    /// The head's position in the tenant's log.
    pub tenant_seq: u64,
    /// The chain hash after that event.
    pub hash: Hash,
    /// When it was signed, unix ms.
    pub at_ms: u64,
    /// Ed25519 signature over [`signed_message`].
    pub sig: [u8; 64],
}

/// The bytes a head's signature covers (see the module docs).
pub fn signed_message(tenant: &str, tenant_seq: u64, hash: &Hash, at_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_DOMAIN.len() + tenant.len() + 1 + 8 + 32 + 8);
    m.extend_from_slice(HEAD_DOMAIN);
    m.extend_from_slice(tenant.as_bytes());
    m.push(0);
    m.extend_from_slice(&tenant_seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&at_ms.to_be_bytes());
    m
}

impl SignedHead {
    /// Whether the signature is `key`'s over this head of `tenant`.
    pub fn verify(&self, tenant: &str, key: &VerifyingKey) -> bool {
        let message = signed_message(tenant, self.tenant_seq, &self.hash, self.at_ms);
        key.verify_strict(&message, &Signature::from_bytes(&self.sig))
            .is_ok()
    }

    /// The value stored in the log (the key holds `tenant_seq`).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(STORED_HEAD_BYTES);
        v.push(STORED_HEAD_VERSION);
        v.extend_from_slice(&self.hash);
        v.extend_from_slice(&self.at_ms.to_be_bytes());
        v.extend_from_slice(&self.sig);
        v
    }

    /// Reads [`SignedHead::encode`]'s bytes.
    pub fn decode(tenant_seq: u64, value: &[u8]) -> Option<SignedHead> {
        if value.len() != STORED_HEAD_BYTES || value.first() != Some(&STORED_HEAD_VERSION) {
            return None;
        }
        Some(SignedHead {
            tenant_seq,
            hash: value.get(1..33)?.try_into().ok()?,
            at_ms: u64::from_be_bytes(value.get(33..41)?.try_into().ok()?),
            sig: value.get(41..105)?.try_into().ok()?,
        })
    }

    /// The head as a manifest carries it.
    pub fn to_manifest(&self) -> ManifestHead {
        ManifestHead {
            tenant_seq: self.tenant_seq,
            hash: hash_hex(&self.hash),
            at: self.at_ms,
            sig: hex::encode(self.sig),
        }
    }
}

/// A signed head in an export's manifest (`heads`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestHead {
    /// The head's `tenant_seq`.
    pub tenant_seq: u64,
    /// The chain hash after that event, 64 lowercase hex digits.
    pub hash: String,
    /// When it was signed, unix ms.
    pub at: u64,
    /// The Ed25519 signature, 128 lowercase hex digits.
    pub sig: String,
}

impl ManifestHead {
    /// The head, if its hash and signature are well-formed hex.
    pub fn parse(&self) -> Result<SignedHead, String> {
        let hash = parse_hash(&self.hash)
            .ok_or_else(|| "its hash is not 64 lowercase hex digits".to_owned())?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.sig, &mut sig)
            .map_err(|_| "its sig is not 128 hex digits".to_owned())?;
        Ok(SignedHead {
            tenant_seq: self.tenant_seq,
            hash,
            at_ms: self.at,
            sig,
        })
    }
}

/// The platform's chain head signing key.
pub struct HeadSigner {
    key: SigningKey,
}

impl std::fmt::Debug for HeadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HeadSigner(public {})",
            public_key_hex(&self.public_key())
        )
    }
}

impl HeadSigner {
    /// The key of a stored seed (64 hex digits, surrounding whitespace ignored).
    pub fn from_seed_hex(text: &[u8]) -> Result<HeadSigner, AnchorError> {
        let text = std::str::from_utf8(text).map_err(|_| AnchorError::BadSecret)?;
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), seed.as_mut()).map_err(|_| AnchorError::BadSecret)?;
        Ok(HeadSigner {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// A fresh key and its seed as stored.
    fn generate() -> Result<(HeadSigner, Zeroizing<String>), AnchorError> {
        use chacha20poly1305::aead::rand_core::RngCore;
        let mut seed = Zeroizing::new([0u8; 32]);
        chacha20poly1305::aead::OsRng
            .try_fill_bytes(seed.as_mut())
            .map_err(|e| AnchorError::Io {
                what: "random bytes for the chain head key".into(),
                error: std::io::Error::other(e.to_string()),
            })?;
        let text = Zeroizing::new(hex::encode(seed.as_ref()));
        Ok((
            HeadSigner {
                key: SigningKey::from_bytes(&seed),
            },
            text,
        ))
    }

    /// The stored key of `data_dir`, if any. Creates nothing when there is none.
    pub fn load(data_dir: &Path) -> Result<Option<HeadSigner>, AnchorError> {
        let name = secret_name()?;
        let stored = SecretStore::stored_global(data_dir, &name, KeySources::from_env()?)?;
        stored
            .map(|value| HeadSigner::from_seed_hex(value.expose()))
            .transpose()
    }

    /// The stored key of `data_dir`, or a new one stored now (`true`: generated).
    pub fn load_or_generate(data_dir: &Path) -> Result<(HeadSigner, bool), AnchorError> {
        if let Some(signer) = HeadSigner::load(data_dir)? {
            return Ok((signer, false));
        }
        let (signer, seed) = HeadSigner::generate()?;
        let store = SecretStore::open(data_dir)?;
        store.set(&Namespace::Global, &secret_name()?, seed.as_bytes())?;
        Ok((signer, true))
    }

    /// On a `[cluster]`: the key every node signs with, agreed through the cluster's key
    /// stream. The first node to start stores its own key there (`self`); the others take that
    /// one and store it in `data_dir`'s secret store too, in place of theirs, so that their
    /// exports and `tenantry keys export-pubkey` name the same key (`true`: replaced).
    pub fn agree_in_cluster(
        self,
        data_dir: &Path,
        keys: &SharedKeys,
    ) -> Result<(HeadSigner, bool), AnchorError> {
        let seed = Zeroizing::new(hex::encode(self.key.to_bytes()));
        let subject = keys.global_subject(CHAIN_HEAD_KEY_SECRET);
        let found = match keys.create(&subject, seed.as_bytes()) {
            Ok(Created::Made) => return Ok((self, false)),
            Ok(Created::Found(found)) => found,
            Err(e) => return Err(AnchorError::Shared(e)),
        };
        let agreed = HeadSigner::from_seed_hex(&found)?;
        if agreed.public_key() == self.public_key() {
            return Ok((self, false));
        }
        let store = SecretStore::open(data_dir)?;
        store.set(&Namespace::Global, &secret_name()?, &found)?;
        Ok((agreed, true))
    }

    /// The public half.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `head` of `tenant` at `at_ms`.
    pub fn sign(&self, tenant: &TenantId, head: &Head, at_ms: u64) -> SignedHead {
        let message = signed_message(tenant.as_str(), head.tenant_seq, &head.hash, at_ms);
        SignedHead {
            tenant_seq: head.tenant_seq,
            hash: head.hash,
            at_ms,
            sig: self.key.sign(&message).to_bytes(),
        }
    }
}

/// The secret's name (a constant that passes the name rules; a unit test checks it).
fn secret_name() -> Result<SecretName, AnchorError> {
    SecretName::parse(CHAIN_HEAD_KEY_SECRET).map_err(|_| AnchorError::BadSecret)
}

/// The public key as `keys export-pubkey` writes it (without the newline).
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// Reads a public key written by `keys export-pubkey`: 64 hex digits, whitespace around ignored.
pub fn parse_public_key(text: &str, origin: &str) -> Result<VerifyingKey, AnchorError> {
    let bad = |problem: String| AnchorError::BadPublicKey {
        origin: origin.to_owned(),
        problem,
    };
    let text = text.trim();
    if text.len() != KEY_HEX_DIGITS {
        return Err(bad(format!("{} characters", text.len())));
    }
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|e| bad(e.to_string()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 public key".into()))
}

/// Reads [`parse_public_key`]'s text from `path` (at most a few hundred bytes are looked at).
pub fn read_public_key(path: &Path) -> Result<VerifyingKey, AnchorError> {
    use std::io::Read;
    const PUBLIC_KEY_FILE_BYTES_MAX: u64 = 1024;
    let origin = path.display().to_string();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(PUBLIC_KEY_FILE_BYTES_MAX).read_to_string(&mut text))
        .map_err(|error| AnchorError::Io {
            what: format!("reading {origin}"),
            error,
        })?;
    parse_public_key(&text, &origin)
}

/// The newest `max` stored heads of `tenant` at or below `upto`, ascending.
pub fn stored_heads(
    log: &EventLog,
    tenant: &TenantId,
    upto: u64,
    max: usize,
) -> Result<Vec<SignedHead>, AnchorError> {
    log.signed_heads(tenant, upto, max)?
        .into_iter()
        .map(|(seq, value)| {
            SignedHead::decode(seq, &value).ok_or_else(|| AnchorError::Malformed {
                tenant: tenant.clone(),
                tenant_seq: seq,
            })
        })
        .collect()
}

/// Signs the durable head of `tenant` and stores it, unless it has no events or its newest
/// stored head is already there. Returns the head stored.
pub fn sign_and_store(
    log: &EventLog,
    signer: &HeadSigner,
    tenant: &TenantId,
    now_ms: u64,
) -> Result<Option<SignedHead>, AnchorError> {
    // In a cluster only the tenant's writer signs (and publishes) its heads.
    if !log.owns(tenant) {
        return Ok(None);
    }
    let Some(head) = log.tenant(tenant).head()? else {
        return Ok(None);
    };
    let newest = stored_heads(log, tenant, u64::MAX, 1)?;
    if newest
        .last()
        .is_some_and(|h| h.tenant_seq >= head.tenant_seq)
    {
        return Ok(None);
    }
    let signed = signer.sign(tenant, &head, now_ms);
    match log.put_signed_head(tenant, signed.tenant_seq, &signed.encode())? {
        HeadStored::Stored => Ok(Some(signed)),
        HeadStored::NotOwner => Ok(None),
    }
}

#[cfg(test)]
mod tests;
