//! Public keys of an outside identity provider: `[auth] jwks`, a JWK Set file (RFC 7517)
//! parsed with jsonwebtoken's own [`JwkSet`] and [`DecodingKey::from_jwk`] (docs/http.md).
//!
//! Invariants:
//! - Every key of a loaded set has a unique `kid` and is RSA of at least
//!   [`RSA_MODULUS_BITS_MIN`] bits (RS256), EC P-256 (ES256) or OKP Ed25519 (EdDSA); its `alg`,
//!   when given, is the one its type implies, its `use`, when given, is `sig`. A key's type alone
//!   decides the one algorithm a token verified with it may use.
//! - The file is looked at at most once every [`JWKS_CHECK_INTERVAL`], on the request path; it
//!   is read again only when its modification time or size changed, and replaces the set only
//!   when its content hash differs and it parses. A file that stops parsing keeps the old set
//!   and is warned about once per content.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

/// How often the JWKS file is checked for a change, at most.
pub const JWKS_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Largest JWKS file read, in bytes; a set of a few dozen keys is far smaller.
pub const JWKS_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// Smallest RSA modulus accepted, in bits (NIST SP 800-131A: 2048 bits and up).
pub const RSA_MODULUS_BITS_MIN: usize = 2048;

/// Why a JWKS file cannot be used. Each message names the file and, for one key, its index and
/// `kid`, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// The file cannot be read or is too large.
    #[error("{}: cannot read the JWKS file: {problem}", path.display())]
    Read {
        /// The JWKS file.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// The file is not a JSON object with a `keys` array.
    #[error("{}: not a JWK Set ({problem}); write {{\"keys\": [{{\"kty\": ..., \"kid\": ...}}]}}", path.display())]
    NotASet {
        /// The JWKS file.
        path: PathBuf,
        /// The parser's message.
        problem: String,
    },
    /// One key cannot be used.
    #[error("{}: keys[{index}] (kid {kid}): {problem}", path.display())]
    Key {
        /// The JWKS file.
        path: PathBuf,
        /// The key's index in `keys`.
        index: usize,
        /// The key's `kid`, quoted, or `none`.
        kid: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

/// One usable public key: the only algorithm its type allows, and the key.
#[derive(Clone)]
pub struct PublicKey {
    /// The algorithm a token checked with this key must name.
    pub algorithm: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({:?})", self.algorithm)
    }
}

/// The keys of a JWKS file by `kid`.
pub type KeysByKid = HashMap<String, PublicKey>;

/// Reads and checks the JWKS file at `path`.
pub fn load(path: &Path) -> Result<(KeysByKid, [u8; 32]), JwksError> {
    let bytes = read(path)?;
    let keys = parse(path, &bytes)?;
    Ok((keys, Sha256::digest(&bytes).into()))
}

fn read(path: &Path) -> Result<Vec<u8>, JwksError> {
    let failed = |problem: String| JwksError::Read {
        path: path.to_owned(),
        problem,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| failed(e.to_string()))?
        .len();
    if len > JWKS_FILE_BYTES_MAX {
        return Err(failed(format!(
            "{len} bytes, over {JWKS_FILE_BYTES_MAX} (JWKS_FILE_BYTES_MAX)"
        )));
    }
    std::fs::read(path).map_err(|e| failed(e.to_string()))
}

#[derive(serde::Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Parses `bytes` (the content of `path`) into keys by `kid`.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<KeysByKid, JwksError> {
    let raw: RawSet = serde_json::from_slice(bytes).map_err(|e| JwksError::NotASet {
        path: path.to_owned(),
        problem: e.to_string(),
    })?;
    let mut set = JwkSet { keys: Vec::new() };
    for (index, value) in raw.keys.into_iter().enumerate() {
        let kid = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map_or_else(|| "none".to_owned(), |k| format!("{k:?}"));
        let failed = |problem: String| JwksError::Key {
            path: path.to_owned(),
            index,
            kid: kid.clone(),
            problem,
        };
        let jwk: Jwk = serde_json::from_value(value).map_err(|e| {
            failed(format!(
                "not a supported JWK ({e}); use kty RSA, EC (crv P-256) or OKP (crv Ed25519)"
            ))
        })?;
        set.keys.push(jwk);
    }
    let mut keys = KeysByKid::new();
    for (index, jwk) in set.keys.iter().enumerate() {
        let (kid, key) = public_key(jwk).map_err(|problem| JwksError::Key {
            path: path.to_owned(),
            index,
            kid: jwk
                .common
                .key_id
                .as_ref()
                .map_or_else(|| "none".to_owned(), |k| format!("{k:?}")),
            problem,
        })?;
        if keys.insert(kid.clone(), key).is_some() {
            return Err(JwksError::Key {
                path: path.to_owned(),
                index,
                kid: format!("{kid:?}"),
                problem: "another key has the same kid; give each key its own".to_owned(),
            });
        }
    }
    Ok(keys)
}

/// The `kid` and usable key of `jwk`, or what is wrong with it.
fn public_key(jwk: &Jwk) -> Result<(String, PublicKey), String> {
    let kid = match jwk.common.key_id.as_deref() {
        Some(kid) if !kid.is_empty() => kid.to_owned(),
        _ => return Err("no kid; give every key a unique \"kid\"".to_owned()),
    };
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Err(
            "\"use\" is not \"sig\": only signature keys verify tokens; drop the key \
                    or set \"use\": \"sig\""
                .to_owned(),
        );
    }
    let (algorithm, implied) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            check_modulus(&p.n)?;
            (Algorithm::RS256, KeyAlgorithm::RS256)
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            (Algorithm::EdDSA, KeyAlgorithm::EdDSA)
        }
        AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => {
            return Err(
                "unsupported curve; use EC crv P-256 (ES256) or OKP crv Ed25519 \
                        (EdDSA)"
                    .to_owned(),
            )
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "symmetric keys (kty oct) are not taken from a JWKS file; store HS256 \
                        keys as secrets global/signing_key.{kid} (docs/secrets.md)"
                    .to_owned(),
            )
        }
    };
    if let Some(alg) = jwk.common.key_algorithm {
        if alg != implied {
            return Err(format!(
                "alg {alg} does not fit the key type, which implies {implied}; fix or drop \"alg\""
            ));
        }
    }
    let key = DecodingKey::from_jwk(jwk)
        .map_err(|e| format!("the key material is invalid ({e}); export the key again"))?;
    Ok((kid, PublicKey { algorithm, key }))
}

/// Refuses an RSA modulus (`n`, unpadded base64url) under [`RSA_MODULUS_BITS_MIN`] bits.
fn check_modulus(n: &str) -> Result<(), String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n.trim_end_matches('='))
        .map_err(|_| "n is not base64url; export the key again".to_owned())?;
    let leading_zeros = bytes.iter().take_while(|b| **b == 0).count();
    let bits = (bytes.len() - leading_zeros) * 8;
    if bits < RSA_MODULUS_BITS_MIN {
        return Err(format!(
            "the RSA modulus has about {bits} bits; at least {RSA_MODULUS_BITS_MIN} are \
             needed (RSA_MODULUS_BITS_MIN); use a larger key"
        ));
    }
    Ok(())
}

/// A JWKS file and its last good set, reloaded when the file changes.
pub struct JwksFile {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    keys: Arc<KeysByKid>,
    checked: Instant,
    stamp: Option<(SystemTime, u64)>,
    hash: [u8; 32],
    /// The hash of the last content that failed to parse, so it is warned about once.
    warned: Option<[u8; 32]>,
}

impl JwksFile {
    /// Loads `path`; fails when it cannot be used (at start, a bad file is an error).
    pub fn open(path: &Path) -> Result<JwksFile, JwksError> {
        let stamp = stamp(path);
        let (keys, hash) = load(path)?;
        Ok(JwksFile {
            path: path.to_owned(),
            state: Mutex::new(State {
                keys: Arc::new(keys),
                checked: Instant::now(),
                stamp,
                hash,
                warned: None,
            }),
        })
    }

    /// The current keys, after looking at the file when [`JWKS_CHECK_INTERVAL`] has passed.
    pub fn keys(&self) -> Arc<KeysByKid> {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        if state.checked.elapsed() >= JWKS_CHECK_INTERVAL {
            state.checked = Instant::now();
            self.refresh(&mut state);
        }
        state.keys.clone()
    }

    fn refresh(&self, state: &mut State) {
        let now = stamp(&self.path);
        if now == state.stamp {
            return;
        }
        state.stamp = now;
        let bytes = match read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS file unreadable; keeping the previous keys");
                return;
            }
        };
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if hash == state.hash {
            return;
        }
        match parse(&self.path, &bytes) {
            Ok(keys) => {
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                state.keys = Arc::new(keys);
                state.hash = hash;
                state.warned = None;
            }
            Err(e) if state.warned != Some(hash) => {
                state.warned = Some(hash);
                tracing::warn!(error = %e, "JWKS file changed but cannot be used; keeping the previous keys");
            }
            Err(_) => {}
        }
    }
}

/// The modification time and size of `path`, `None` when it cannot be read.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
