//! [`SecretStore`]: secrets encrypted at rest, one file per secret, under `{data_dir}/secrets/`.
//!
//! Layout (every component is a validated id or secret name):
//! ```text
//! {data_dir}/master.key                                      master key (unless env is set), 0600
//! {data_dir}/secrets/global/{name}.sec                       global/
//! {data_dir}/secrets/tenants/{tenant}/{name}.sec             {tenant}/
//! {data_dir}/secrets/tenants/{tenant}/teams/{team}/{name}.sec  {tenant}/teams/{team}/
//! ```
//! Directories are created 0700 and files 0600. The `.sec` suffix keeps secret files apart from
//! the `teams/` directory, and temporary files start with `.`, which no secret name does.
//!
//! File format, version 1:
//! ```text
//! "TSEC" | version (1 byte) | master key id (8) | nonce (24) | ciphertext | tag (16)
//! ```
//! XChaCha20-Poly1305 with a fresh random nonce per write. The associated data is a fixed label,
//! the header before the nonce, the namespace and the name, so a file only decrypts at the path
//! it was written to and under the key whose id it names.
//!
//! Invariants:
//! - A write is atomic and durable: temp file, fsync, rename, fsync of the directory. A reader
//!   sees the old value or the new one, never a mix.
//! - Reads go to disk every time (no cache), so a value set by the CLI is seen by a running
//!   server at its next lookup, and no process holds a lock on the store.
//! - [`SecretStore::lookup`] reads only the context's team and tenant namespaces.

use std::fmt;
use std::fs::{DirBuilder, File};
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

use super::consts::{SECRET_VALUE_BYTES_MAX, SIGNING_KEY_ENV};
use super::error::SecretError;
use super::key::{
    random_suffix, sync_dir, write_private_file, KeySources, MasterKey, KEY_ID_BYTES,
};
use super::name::{Namespace, SecretName};
use super::value::SecretValue;
use crate::edge::auth::SIGNING_KEY_BYTES_MIN;
use crate::tenancy::TenantCtx;

/// Most secrets one [`SecretStore::list`] returns.
pub const SECRETS_PER_LIST_MAX: usize = 10_000;
/// The store's directory in the data dir.
pub const SECRETS_DIR: &str = "secrets";
/// Suffix of secret files.
const FILE_SUFFIX: &str = ".sec";
/// First bytes of every secret file.
const MAGIC: [u8; 4] = *b"TSEC";
/// Format version written.
const FORMAT_VERSION: u8 = 1;
/// XChaCha20 nonce length.
const NONCE_BYTES: usize = 24;
/// Poly1305 tag length.
const TAG_BYTES: usize = 16;
/// Header bytes that are authenticated as associated data: magic, version, key id.
const PREFIX_BYTES: usize = MAGIC.len() + 1 + KEY_ID_BYTES;
/// Bytes before the ciphertext.
const HEADER_BYTES: usize = PREFIX_BYTES + NONCE_BYTES;
/// Largest secret file.
const FILE_BYTES_MAX: usize = HEADER_BYTES + SECRET_VALUE_BYTES_MAX + TAG_BYTES;
/// Directory mode: owner only.
const DIR_MODE: u32 = 0o700;
/// Domain separation for the associated data.
const AD_LABEL: &[u8] = b"tenantry secret\0";

/// Removes every secret of `tenant` (its namespace and its teams': the directory
/// `secrets/tenants/{tenant}/`), for offboarding, durably; returns how many secret files and
/// bytes were removed. Needs no master key: nothing is decrypted. A tenant without secrets is
/// (0, 0); `global/` and other tenants are untouched.
pub fn remove_tenant_secrets(
    data_dir: &Path,
    tenant: &crate::tenancy::TenantId,
) -> Result<(u64, u64), SecretError> {
    let dir = Namespace::Tenant(tenant.clone()).dir(&data_dir.join(SECRETS_DIR));
    let usage =
        crate::private_fs::tree_usage(&dir, FILE_SUFFIX).map_err(SecretError::io("list", &dir))?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(err) => return Err(SecretError::io("delete", &dir)(err)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent)?;
    }
    Ok(usage)
}

/// The secret store of one data dir. Cheap to share by reference; every method reads or writes
/// disk directly.
pub struct SecretStore {
    data_dir: PathBuf,
    root: PathBuf,
    cipher: XChaCha20Poly1305,
    key_id: [u8; KEY_ID_BYTES],
    key_source: String,
    signing_key_env: Option<SecretValue>,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("root", &self.root)
            .field("key_source", &self.key_source)
            .finish_non_exhaustive()
    }
}

impl SecretStore {
    /// Opens the store of `data_dir` with keys from the environment ([`KeySources::from_env`]),
    /// creating `{data_dir}/master.key` when env `TENANTRY_MASTER_KEY` is unset and no key file
    /// exists yet.
    pub fn open(data_dir: &Path) -> Result<SecretStore, SecretError> {
        SecretStore::open_with(data_dir, KeySources::from_env()?)
    }

    /// Opens the store of `data_dir` with explicit key sources (tests, embedding).
    pub fn open_with(data_dir: &Path, sources: KeySources) -> Result<SecretStore, SecretError> {
        let master = MasterKey::load(data_dir, &sources)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(master.bytes()));
        Ok(SecretStore {
            data_dir: data_dir.to_owned(),
            root: data_dir.join(SECRETS_DIR),
            cipher,
            key_id: master.id(),
            key_source: master.source().to_owned(),
            signing_key_env: sources.signing_key,
        })
    }

    /// Stores `value` as `name` in `ns`, replacing any previous value. `value` must be 1 to
    /// [`SECRET_VALUE_BYTES_MAX`] bytes.
    pub fn set(&self, ns: &Namespace, name: &SecretName, value: &[u8]) -> Result<(), SecretError> {
        if value.is_empty() || value.len() > SECRET_VALUE_BYTES_MAX {
            return Err(SecretError::ValueSize {
                namespace: ns.clone(),
                name: name.clone(),
                bytes: value.len(),
            });
        }
        let sealed = self.seal(ns, name, value)?;
        let dir = ns.dir(&self.root);
        self.create_dirs(&dir)?;
        let path = dir.join(file_name(name));
        let tmp = dir.join(format!(".{}.tmp-{}", file_name(name), random_suffix()?));
        let renamed = write_private_file(&tmp, &sealed).and_then(|()| {
            std::fs::rename(&tmp, &path).map_err(SecretError::io("rename into", &path))
        });
        if renamed.is_err() {
            // Best effort: the write already failed and that error is the one to report.
            let _ = std::fs::remove_file(&tmp);
        }
        renamed?;
        sync_dir(&dir)
    }

    /// The value of `name` in `ns`, if set.
    pub fn get(
        &self,
        ns: &Namespace,
        name: &SecretName,
    ) -> Result<Option<SecretValue>, SecretError> {
        let path = ns.dir(&self.root).join(file_name(name));
        let Some(sealed) = read_sealed(&path)? else {
            return Ok(None);
        };
        self.open_sealed(ns, name, &path, &sealed).map(Some)
    }

    /// The names set in `ns`, sorted; never values. At most [`SECRETS_PER_LIST_MAX`].
    pub fn list(&self, ns: &Namespace) -> Result<Vec<SecretName>, SecretError> {
        let dir = ns.dir(&self.root);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(SecretError::io("list", &dir)(err)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(SecretError::io("list", &dir))?;
            let file_type = entry.file_type().map_err(SecretError::io("list", &dir))?;
            // Anything else here (the `teams/` directory, temp files, stray files) is not a secret.
            let name = entry
                .file_name()
                .to_str()
                .and_then(|file| file.strip_suffix(FILE_SUFFIX))
                .and_then(|stem| SecretName::parse(stem).ok());
            if let (true, Some(name)) = (file_type.is_file(), name) {
                if names.len() == SECRETS_PER_LIST_MAX {
                    return Err(SecretError::TooManySecrets {
                        namespace: ns.clone(),
                        max: SECRETS_PER_LIST_MAX,
                    });
                }
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Removes `name` from `ns`; `false` when it was not set.
    pub fn delete(&self, ns: &Namespace, name: &SecretName) -> Result<bool, SecretError> {
        let dir = ns.dir(&self.root);
        let path = dir.join(file_name(name));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(SecretError::io("delete", &path)(err)),
        }
        sync_dir(&dir)?;
        Ok(true)
    }

    /// Tenant-scoped lookup: the team's namespace first (when `ctx.team` is set), then the
    /// tenant's. Never `global/`, never another tenant's: the namespaces are built from `ctx`
    /// alone.
    pub fn lookup(
        &self,
        ctx: &TenantCtx,
        name: &SecretName,
    ) -> Result<Option<SecretValue>, SecretError> {
        if let Some(team) = &ctx.team {
            let team_ns = Namespace::Team(ctx.tenant.clone(), team.clone());
            if let Some(value) = self.get(&team_ns, name)? {
                return Ok(Some(value));
            }
        }
        self.get(&Namespace::Tenant(ctx.tenant.clone()), name)
    }

    /// Platform only: the JWT signing key, env `TENANTRY_SIGNING_KEY` (as given to
    /// [`SecretStore::open_with`]) else `global/signing_key`.
    pub fn signing_key(&self) -> Result<Option<SecretValue>, SecretError> {
        if let Some(key) = &self.signing_key_env {
            return Ok(Some(SecretValue::new(key.expose().to_vec())));
        }
        self.get(&Namespace::Global, &SecretName::signing_key())
    }

    /// The JWT signing key of `serve` and `token`: env `TENANTRY_SIGNING_KEY` (in `sources`),
    /// else `global/signing_key` from the store of `data_dir`. When neither exists this is
    /// [`SecretError::NoSigningKey`] before anything (a master key file) is created; a key
    /// shorter than [`SIGNING_KEY_BYTES_MIN`] is [`SecretError::WeakSigningKey`].
    pub fn resolve_signing_key(
        data_dir: &Path,
        mut sources: KeySources,
    ) -> Result<SecretValue, SecretError> {
        let (key, source_name) = match sources.signing_key.take() {
            Some(key) => (key, format!("env {SIGNING_KEY_ENV}")),
            None => {
                let name = SecretName::signing_key();
                let key = SecretStore::stored_global(data_dir, &name, sources)?
                    .ok_or(SecretError::NoSigningKey)?;
                (key, format!("secret global/{name}"))
            }
        };
        check_signing_key(&key, source_name)?;
        Ok(key)
    }

    /// The global secret `name`, or `None` when it is not stored. The store (and so the master
    /// key, which it would create) is opened only when the secret's file exists: looking up a
    /// missing secret leaves the data dir as it was.
    pub fn stored_global(
        data_dir: &Path,
        name: &SecretName,
        sources: KeySources,
    ) -> Result<Option<SecretValue>, SecretError> {
        let path = Namespace::Global
            .dir(&data_dir.join(SECRETS_DIR))
            .join(file_name(name));
        if !path
            .try_exists()
            .map_err(SecretError::io("inspect", &path))?
        {
            return Ok(None);
        }
        SecretStore::open_with(data_dir, sources)?.get(&Namespace::Global, name)
    }

    /// [`SecretStore::lookup`] of `name` for `ctx` (team, then tenant) in the store of
    /// `data_dir`, or `None` when neither namespace stores it. Like [`Self::stored_global`], the
    /// store (and its master key) is opened only when one of the files exists.
    pub fn stored_lookup(
        data_dir: &Path,
        ctx: &TenantCtx,
        name: &SecretName,
        sources: KeySources,
    ) -> Result<Option<SecretValue>, SecretError> {
        let root = data_dir.join(SECRETS_DIR);
        let mut namespaces = vec![Namespace::Tenant(ctx.tenant.clone())];
        if let Some(team) = &ctx.team {
            namespaces.push(Namespace::Team(ctx.tenant.clone(), team.clone()));
        }
        let mut stored = false;
        for ns in &namespaces {
            let path = ns.dir(&root).join(file_name(name));
            stored |= path
                .try_exists()
                .map_err(SecretError::io("inspect", &path))?;
        }
        if !stored {
            return Ok(None);
        }
        SecretStore::open_with(data_dir, sources)?.lookup(ctx, name)
    }

    /// The data dir this store belongs to.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn seal(
        &self,
        ns: &Namespace,
        name: &SecretName,
        value: &[u8],
    ) -> Result<Vec<u8>, SecretError> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng
            .try_fill_bytes(&mut nonce)
            .map_err(SecretError::Random)?;
        let mut sealed = Vec::with_capacity(HEADER_BYTES + value.len() + TAG_BYTES);
        sealed.extend_from_slice(&MAGIC);
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&self.key_id);
        let aad = associated_data(&sealed, ns, name);
        sealed.extend_from_slice(&nonce);
        // Encrypted in place in a buffer sized for the tag, so it never reallocates and no
        // plaintext copy is left behind in freed memory.
        sealed.extend_from_slice(value);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                XNonce::from_slice(&nonce),
                &aad,
                &mut sealed[HEADER_BYTES..],
            )
            .map_err(|_| SecretError::Encrypt {
                namespace: ns.clone(),
                name: name.clone(),
            })?;
        sealed.extend_from_slice(&tag);
        Ok(sealed)
    }

    fn open_sealed(
        &self,
        ns: &Namespace,
        name: &SecretName,
        path: &Path,
        sealed: &[u8],
    ) -> Result<SecretValue, SecretError> {
        let corrupt = |problem| SecretError::Corrupt {
            path: path.to_owned(),
            problem,
        };
        if sealed.len() < HEADER_BYTES + TAG_BYTES {
            return Err(corrupt("it is shorter than a secret file's header"));
        }
        let (prefix, rest) = sealed.split_at(PREFIX_BYTES);
        let (nonce, ciphertext) = rest.split_at(NONCE_BYTES);
        if prefix[..MAGIC.len()] != MAGIC {
            return Err(corrupt("it is not a tenantry secret file"));
        }
        if prefix[MAGIC.len()] != FORMAT_VERSION {
            return Err(corrupt(
                "it has an unknown format version (written by a newer tenantry?)",
            ));
        }
        if prefix[MAGIC.len() + 1..] != self.key_id {
            return Err(SecretError::WrongMasterKey {
                namespace: ns.clone(),
                name: name.clone(),
                key_source: self.key_source.clone(),
            });
        }
        let aad = associated_data(prefix, ns, name);
        let plaintext = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Undecryptable {
                namespace: ns.clone(),
                name: name.clone(),
                path: path.to_owned(),
            })?;
        Ok(SecretValue::new(plaintext))
    }

    /// Creates `dir` and its missing ancestors (mode 0700), fsyncing each new entry's parent so
    /// the directory survives a crash along with the file written into it.
    fn create_dirs(&self, dir: &Path) -> Result<(), SecretError> {
        let mut missing = Vec::new();
        let mut current = dir;
        // Stops at the data dir, which exists once the master key has been loaded.
        while current != self.data_dir && !current.is_dir() {
            missing.push(current);
            match current.parent() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        for new_dir in missing.into_iter().rev() {
            match DirBuilder::new().mode(DIR_MODE).create(new_dir) {
                Ok(()) => {}
                // A concurrent writer created it first: fine, it is the same directory.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(SecretError::io("create directory", new_dir)(err)),
            }
            if let Some(parent) = new_dir.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }
}

/// Refuses a JWT signing key shorter than [`SIGNING_KEY_BYTES_MIN`]; `source_name` says where it
/// came from, for the error.
pub(crate) fn check_signing_key(key: &SecretValue, source_name: String) -> Result<(), SecretError> {
    if key.len() < SIGNING_KEY_BYTES_MIN {
        return Err(SecretError::WeakSigningKey {
            source_name,
            bytes: key.len(),
        });
    }
    Ok(())
}

/// `{name}.sec`.
fn file_name(name: &SecretName) -> String {
    format!("{name}{FILE_SUFFIX}")
}

/// Label, authenticated header prefix, namespace and name, NUL-separated (none of them can
/// contain NUL except the fixed-length prefix, which comes first).
fn associated_data(prefix: &[u8], ns: &Namespace, name: &SecretName) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(AD_LABEL.len() + PREFIX_BYTES + 2 * 64 + SecretName::LEN_MAX + 8);
    aad.extend_from_slice(AD_LABEL);
    aad.extend_from_slice(prefix);
    ns.associated_data(&mut aad);
    aad.push(0);
    aad.extend_from_slice(name.as_str().as_bytes());
    aad
}

/// Reads a secret file, bounded by [`FILE_BYTES_MAX`]; `None` when it does not exist.
fn read_sealed(path: &Path) -> Result<Option<Vec<u8>>, SecretError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(SecretError::io("open", path)(err)),
    };
    let len = file
        .metadata()
        .map_err(SecretError::io("inspect", path))?
        .len();
    if len > FILE_BYTES_MAX as u64 {
        return Err(SecretError::Corrupt {
            path: path.to_owned(),
            problem: "it is larger than any secret file",
        });
    }
    let mut sealed =
        Vec::with_capacity(FILE_BYTES_MAX.min(usize::try_from(len).unwrap_or(FILE_BYTES_MAX)));
    file.take(FILE_BYTES_MAX as u64 + 1)
        .read_to_end(&mut sealed)
        .map_err(SecretError::io("read", path))?;
    if sealed.len() > FILE_BYTES_MAX {
        return Err(SecretError::Corrupt {
            path: path.to_owned(),
            problem: "it is larger than any secret file",
        });
    }
    Ok(Some(sealed))
}
