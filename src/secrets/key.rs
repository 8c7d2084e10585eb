//! The master key that encrypts every secret at rest, and where keys come from.
//!
//! The master key is env `TENANTRY_MASTER_KEY` (64 hex chars) when set, else the key file
//! `{data_dir}/master.key` (64 hex chars and a newline), created on first use.
//!
//! Invariants:
//! - A key file is created complete or not at all: it is written (mode 0600) and fsynced under a
//!   temporary name, then hard-linked into place, so a concurrent opener sees either no file or
//!   the whole key, and two racing creators agree on one key.
//! - A key file that group or others can access is refused, never used.
//! - Key bytes live in wiped-on-drop buffers and appear in no error.
//! - Each key has a public `MasterKey::id` (a truncated SHA-256 of the key), written beside each
//!   ciphertext, so decrypting under the wrong key is reported as such.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::OsRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::consts::{MASTER_KEY_ENV, SIGNING_KEY_ENV};
use super::error::SecretError;
use super::value::SecretValue;

/// The key file's name in the data dir.
pub const MASTER_KEY_FILE: &str = "master.key";
/// Master key length: XChaCha20-Poly1305 keys are 256 bits.
pub const MASTER_KEY_BYTES: usize = 32;
/// Bytes of `MasterKey::id` stored with each ciphertext: enough to tell keys apart, too few to
/// matter to an attacker of a 256-bit key.
pub const KEY_ID_BYTES: usize = 8;
/// Random bytes in a key from [`generate_signing_key`]: 256 bits, the HS256 hash size.
pub const GENERATED_SIGNING_KEY_RANDOM_BYTES: usize = 32;
/// Largest key file read: the hex key, a newline and some slack for stray whitespace.
const KEY_FILE_BYTES_MAX: usize = 256;
/// Permission bits of the key file and of every secret file: owner read/write only.
pub(crate) const PRIVATE_FILE_MODE: u32 = 0o600;
/// Permission bits that must be clear on an existing key file (any group or other access).
const KEY_FILE_FORBIDDEN_MODE: u32 = 0o077;

/// Where the keys come from: the environment in the binary, explicit values in tests.
#[derive(Debug, Default)]
pub struct KeySources {
    /// The master key as hex (env `TENANTRY_MASTER_KEY`); the key file is used when `None`.
    pub master_key_hex: Option<SecretValue>,
    /// The JWT signing key (env `TENANTRY_SIGNING_KEY`); `global/signing_key` is used when `None`.
    pub signing_key: Option<SecretValue>,
}

impl KeySources {
    /// Reads [`MASTER_KEY_ENV`] and [`SIGNING_KEY_ENV`]. A variable that is set must be
    /// non-empty UTF-8; an empty one is an error rather than "unset", because it is most likely a
    /// deployment mistake that would otherwise silently fall back to another key.
    pub fn from_env() -> Result<KeySources, SecretError> {
        let master_key_hex =
            env_value(MASTER_KEY_ENV).map_err(|problem| SecretError::MasterKeyEnv { problem })?;
        let signing_key =
            env_value(SIGNING_KEY_ENV).map_err(|problem| SecretError::SigningKeyEnv { problem })?;
        Ok(KeySources {
            master_key_hex,
            signing_key,
        })
    }
}

fn env_value(var: &str) -> Result<Option<SecretValue>, &'static str> {
    let Some(raw) = std::env::var_os(var) else {
        return Ok(None);
    };
    let text = raw.into_string().map_err(|_| "it is not valid UTF-8")?;
    if text.is_empty() {
        return Err("it is set but empty; unset it or give a value");
    }
    Ok(Some(SecretValue::new(text.into_bytes())))
}

/// A loaded master key.
pub(crate) struct MasterKey {
    bytes: Zeroizing<[u8; MASTER_KEY_BYTES]>,
    /// Where it came from, for error messages.
    source: String,
}

impl MasterKey {
    /// Loads the key from `sources`, else from `{data_dir}/master.key`, creating that file (and
    /// `data_dir`) when it does not exist.
    pub(crate) fn load(data_dir: &Path, sources: &KeySources) -> Result<MasterKey, SecretError> {
        if let Some(hex) = &sources.master_key_hex {
            let bytes = decode_hex_key(hex.expose())
                .map_err(|problem| SecretError::MasterKeyEnv { problem })?;
            return Ok(MasterKey {
                bytes,
                source: format!("env {MASTER_KEY_ENV}"),
            });
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        let bytes = match read_key_file(&path)? {
            Some(bytes) => bytes,
            None => create_key_file(data_dir, &path)?,
        };
        Ok(MasterKey {
            bytes,
            source: format!("key file {}", path.display()),
        })
    }

    /// The key bytes.
    pub(crate) fn bytes(&self) -> &[u8; MASTER_KEY_BYTES] {
        &self.bytes
    }

    /// Public fingerprint of the key: the first [`KEY_ID_BYTES`] of a domain-separated SHA-256.
    pub(crate) fn id(&self) -> [u8; KEY_ID_BYTES] {
        let digest = Sha256::new()
            .chain_update(b"tenantry master key id v1\0")
            .chain_update(self.bytes.as_slice())
            .finalize();
        let mut id = [0; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        id
    }

    /// Where the key came from: `env TENANTRY_MASTER_KEY` or `key file {path}`.
    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

/// Decodes exactly 64 hex digits (surrounding ASCII whitespace ignored). The error never echoes
/// the input.
pub(crate) fn decode_hex_key(
    raw: &[u8],
) -> Result<Zeroizing<[u8; MASTER_KEY_BYTES]>, &'static str> {
    let text = raw.trim_ascii();
    if text.len() != MASTER_KEY_BYTES * 2 {
        return Err("it does not have 64 characters");
    }
    let mut key = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
    for (byte, pair) in key.iter_mut().zip(text.chunks_exact(2)) {
        let (Some(high), Some(low)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
            return Err("it contains a character that is not a hex digit");
        };
        *byte = (high << 4) | low;
    }
    Ok(key)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Lowercase hex of `bytes`, in a wiped-on-drop buffer.
pub(crate) fn encode_hex(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len() * 2));
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    out
}

/// Reads the key file; `None` when it does not exist.
fn read_key_file(path: &Path) -> Result<Option<Zeroizing<[u8; MASTER_KEY_BYTES]>>, SecretError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(SecretError::io("open", path)(err)),
    };
    // Metadata of the opened file, not of the path, so the checks hold for what is read.
    let meta = file.metadata().map_err(SecretError::io("inspect", path))?;
    if !meta.is_file() {
        return Err(SecretError::MasterKeyFile {
            path: path.to_owned(),
            problem: "it is not a regular file",
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & KEY_FILE_FORBIDDEN_MODE != 0 {
        return Err(SecretError::MasterKeyFilePermissions {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > KEY_FILE_BYTES_MAX as u64 {
        return Err(SecretError::MasterKeyFile {
            path: path.to_owned(),
            problem: "it is too large",
        });
    }
    // Sized up front so the buffer never reallocates, which would leave unwiped copies.
    let mut text = Zeroizing::new(Vec::with_capacity(KEY_FILE_BYTES_MAX + 1));
    file.take(KEY_FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut text)
        .map_err(SecretError::io("read", path))?;
    let key = decode_hex_key(&text).map_err(|problem| SecretError::MasterKeyFile {
        path: path.to_owned(),
        problem,
    })?;
    Ok(Some(key))
}

/// Creates the key file with a fresh random key. When another process wins the race, its key
/// is read and used instead.
fn create_key_file(
    data_dir: &Path,
    path: &Path,
) -> Result<Zeroizing<[u8; MASTER_KEY_BYTES]>, SecretError> {
    crate::private_fs::create_private_dir(data_dir).map_err(SecretError::io("create", data_dir))?;
    let mut key = Zeroizing::new([0u8; MASTER_KEY_BYTES]);
    OsRng
        .try_fill_bytes(key.as_mut_slice())
        .map_err(SecretError::Random)?;
    let mut text = encode_hex(key.as_slice());
    text.push(b'\n');

    let tmp = data_dir.join(format!(".{MASTER_KEY_FILE}.tmp-{}", random_suffix()?));
    let written = write_private_file(&tmp, &text);
    let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(err) => Err(SecretError::io("create", path)(err)),
    });
    // The temporary name is only a staging area; leaving it would leave a second copy of the key.
    let removed = std::fs::remove_file(&tmp);
    let linked = linked?;
    removed.map_err(SecretError::io("remove", &tmp))?;
    sync_dir(data_dir)?;
    if linked {
        return Ok(key);
    }
    // Another process created the file between our read and our link: use its key.
    read_key_file(path)?.ok_or_else(|| SecretError::MasterKeyFile {
        path: path.to_owned(),
        problem: "it vanished while being created",
    })
}

/// Writes `bytes` to a new file at `path` with mode 0600, set before any byte is written, and
/// fsyncs it.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), SecretError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
        .map_err(SecretError::io("create", path))?;
    // The mode above is filtered by the umask; set it explicitly so it is exactly 0600.
    file.set_permissions(Permissions::from_mode(PRIVATE_FILE_MODE))
        .map_err(SecretError::io("set permissions of", path))?;
    file.write_all(bytes)
        .map_err(SecretError::io("write", path))?;
    file.sync_all().map_err(SecretError::io("fsync", path))?;
    Ok(())
}

/// Fsyncs a directory so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), SecretError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SecretError::io("fsync directory", dir))
}

/// A fresh JWT signing key for `tenantry keygen`: [`GENERATED_SIGNING_KEY_RANDOM_BYTES`] from the
/// OS RNG as unpadded base64url (43 characters of `[A-Za-z0-9_-]`), so it can be put in an env
/// variable, a shell argument or a file as it is. Its text is the key.
pub fn generate_signing_key() -> Result<SecretValue, SecretError> {
    use base64::Engine;
    let mut bytes = Zeroizing::new([0u8; GENERATED_SIGNING_KEY_RANDOM_BYTES]);
    OsRng
        .try_fill_bytes(bytes.as_mut_slice())
        .map_err(SecretError::Random)?;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_slice());
    Ok(SecretValue::new(text.into_bytes()))
}

/// 16 random hex characters for temporary file names, so concurrent writers never collide.
pub(crate) fn random_suffix() -> Result<String, SecretError> {
    let mut bytes = [0u8; 8];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(SecretError::Random)?;
    Ok(String::from_utf8_lossy(&encode_hex(&bytes)).into_owned())
}
