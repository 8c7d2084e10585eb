//! The key ring of sealed events: per-session data keys, wrapped by a per-tenant key encryption
//! key (KEK) kept in the secret store, and the erasure that destroys them.
//!
//! - A tenant's KEK is the secret `{tenant}/data_kek` (32 random bytes, made at the tenant's
//!   first sealed event).
//! - A session's data key is 32 random bytes, made at the session's first sealed event and
//!   stored wrapped by the KEK ([`seal::wrap_key`], associated data = the session's ids) in the
//!   log tree at `{t}\0K{env}\0{team}\0{session}` (`keys::data_key_key`).
//! - Unwrapped keys are cached in memory, at most [`DATA_KEYS_CACHED_MAX`] (the cache is
//!   emptied when full); [`Keyring::evict`] drops one. The tenants' KEKs are cached too; only
//!   this ring's erasure replaces one (a server and an offline erasure never share a data dir),
//!   and [`Keyring::forget_cached`] (the log's recovery after a write error) drops them all.
//!
//! **Erasure** ([`Keyring::erase_sessions`]) removes the session's wrapped key and *rotates the
//! KEK*: every other session's key is re-wrapped under a fresh KEK and the old KEK is deleted.
//! sled is log-structured and keeps old values in its files until it rewrites a segment, so a
//! removed wrapped key may linger on disk; without the old KEK it never unwraps again. The
//! rotation is crash-safe: the new KEK is first stored as `{tenant}/data_kek.next`, then the
//! re-wrapped keys are written and flushed (on the JetStream backend: published as a record of
//! the tenant and acked; the stream keeps the old records, whose wrapped keys need the old
//! KEK), then `data_kek` is replaced (temp file, fsync,
//! rename) and `data_kek.next` removed. A reader tries `data_kek`, then `data_kek.next`, so a
//! rotation cut short anywhere still reads every kept key; the next erasure finishes it.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::events::codec::KeySource;
use crate::events::keys;
use crate::events::log::replica::keys::{Created, SharedKeyError, SharedKeys};
use crate::events::seal::{self, DataKey, SealError, SealScope};
use crate::secrets::error::SecretError;
use crate::secrets::store::SecretStore;
use crate::tenancy::TenantId;

mod home;
pub use home::KeyHome;

/// Most unwrapped data keys held in memory (32 bytes each plus the map's overhead).
pub const DATA_KEYS_CACHED_MAX: usize = 65_536;
/// Name of a tenant's key encryption key in its secret namespace.
pub const KEK_SECRET: &str = "data_kek";
/// Name of the KEK a rotation is moving to, until it completes.
pub const KEK_NEXT_SECRET: &str = "data_kek.next";
/// Name of a tenant's user pseudonym key ([`Keyring::user_pseudonym`]) in its namespace.
pub const USER_MAC_SECRET: &str = "user_mac_key";
/// First char of a user pseudonym: never in a plain user id written before pseudonyms (a
/// control char), so a pseudonym key never equals an old plain one.
pub const PSEUDONYM_MARK: char = '\u{1}';

/// Why a data key could not be made, read or destroyed.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("tenant {tenant}: key encryption key: {source}")]
    Secret {
        tenant: String,
        #[source]
        source: SecretError,
    },
    #[error("tenant {tenant}: the secret {name} is not a 32-byte key; restore it from a backup")]
    BadKek { tenant: String, name: &'static str },
    #[error("tenant {tenant}: the wrapped data key of session {session} does not unwrap under the tenant's key encryption key: {source}")]
    Unwrap {
        tenant: String,
        session: String,
        #[source]
        source: SealError,
    },
    #[error("tenant {tenant}: the cluster's key stream: {source}")]
    Shared {
        tenant: String,
        #[source]
        source: SharedKeyError,
    },
    #[error("reading or writing data keys in the log: {0}")]
    Storage(#[from] sled::Error),
    #[error("invalid tenant id {0:?}")]
    Tenant(String),
}

/// The key ring of one data dir's log (see the module doc).
pub struct Keyring {
    home: KeyHome,
    cache: Mutex<HashMap<Vec<u8>, DataKey>>,
    /// Per tenant, its KEKs ([`Keyring::keks`]); replaced only by this ring's erasure (the
    /// server and an offline erasure never hold one data dir at once).
    keks: Mutex<HashMap<String, Vec<DataKey>>>,
    /// Per tenant, its user pseudonym key (never rotated: it names open sessions).
    macs: Mutex<HashMap<String, DataKey>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

impl Keyring {
    /// The key ring of `data_dir`'s secret store, with the master key from env
    /// `TENANTRY_MASTER_KEY` or `{data_dir}/master.key`. `create`: make that file when neither
    /// exists (the server); otherwise no master key is `None` (an offline reader then reads
    /// sealed fields as erased: without the master key no KEK opens either).
    pub fn for_data_dir(
        data_dir: &std::path::Path,
        create: bool,
    ) -> Result<Option<std::sync::Arc<Keyring>>, SecretError> {
        use crate::secrets::key::{KeySources, MASTER_KEY_FILE};
        let sources = KeySources::from_env()?;
        let have_key = sources.master_key_hex.is_some() || data_dir.join(MASTER_KEY_FILE).is_file();
        if !create && !have_key {
            return Ok(None);
        }
        let store = SecretStore::open_with(data_dir, sources)?;
        Ok(Some(std::sync::Arc::new(Keyring::new(store))))
    }

    /// A key ring whose KEKs live in `secrets`.
    pub fn new(secrets: SecretStore) -> Keyring {
        Keyring::with_home(KeyHome::Local(secrets))
    }

    /// A key ring whose KEKs live in a cluster's key stream, shared by its nodes.
    pub fn shared(keys: SharedKeys) -> Keyring {
        Keyring::with_home(KeyHome::Shared(Box::new(keys)))
    }

    /// The cluster's key stream, when this ring keeps its KEKs there.
    pub fn shared_keys(&self) -> Option<&SharedKeys> {
        match &self.home {
            KeyHome::Shared(keys) => Some(keys),
            KeyHome::Local(_) => None,
        }
    }

    fn with_home(home: KeyHome) -> Keyring {
        Keyring {
            home,
            cache: Mutex::new(HashMap::new()),
            keks: Mutex::new(HashMap::new()),
            macs: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's KEK stored as `name`, if any.
    fn kek(&self, tenant: &str, name: &'static str) -> Result<Option<DataKey>, KeyringError> {
        match self.home.get(tenant, name)? {
            None => Ok(None),
            Some(v) => DataKey::from_slice(&v)
                .map(Some)
                .ok_or_else(|| KeyringError::BadKek {
                    tenant: tenant.to_owned(),
                    name,
                }),
        }
    }

    fn store_kek(
        &self,
        tenant: &str,
        name: &'static str,
        kek: &DataKey,
    ) -> Result<(), KeyringError> {
        self.home.set(tenant, name, kek.expose())
    }

    /// Stores `kek` as the tenant's `name` unless one is stored; the one kept.
    fn create_kek(
        &self,
        tenant: &str,
        name: &'static str,
        kek: DataKey,
    ) -> Result<DataKey, KeyringError> {
        match self.home.create(tenant, name, kek.expose())? {
            None => Ok(kek),
            Some(found) => DataKey::from_slice(&found).ok_or_else(|| KeyringError::BadKek {
                tenant: tenant.to_owned(),
                name,
            }),
        }
    }

    fn delete_kek(&self, tenant: &str, name: &'static str) -> Result<bool, KeyringError> {
        self.home.delete(tenant, name)
    }

    /// The KEKs a wrapped key may be under: the current one, then a rotation's next one.
    /// Cached once found (a tenant without any is asked again next time).
    fn keks(&self, tenant: &str) -> Result<Vec<DataKey>, KeyringError> {
        {
            let keks = self.keks.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = keks.get(tenant) {
                return Ok(found.clone());
            }
        }
        let current = self.kek(tenant, KEK_SECRET)?;
        let next = self.kek(tenant, KEK_NEXT_SECRET)?;
        let found: Vec<DataKey> = current.into_iter().chain(next).collect();
        if !found.is_empty() {
            let mut keks = self.keks.lock().unwrap_or_else(PoisonError::into_inner);
            keks.insert(tenant.to_owned(), found.clone());
        }
        Ok(found)
    }

    /// The pseudonym of `user` in `tenant`: [`PSEUDONYM_MARK`] and the hex HMAC-SHA-256 of the
    /// user id under the tenant's user pseudonym key (the secret [`USER_MAC_SECRET`]), which
    /// the log keys the open-session index by, so no user id is plain in a key. `create`: make
    /// the key when the tenant has none (a write); otherwise `None` then (no user was
    /// pseudonymised yet).
    pub fn user_pseudonym(
        &self,
        tenant: &str,
        user: &str,
        create: bool,
    ) -> Result<Option<String>, KeyringError> {
        use hmac::{Hmac, Mac};
        let cached = {
            let macs = self.macs.lock().unwrap_or_else(PoisonError::into_inner);
            macs.get(tenant).cloned()
        };
        let key = match cached {
            Some(key) => key,
            None => {
                let key = match self.kek(tenant, USER_MAC_SECRET)? {
                    Some(key) => key,
                    None if create => {
                        self.create_kek(tenant, USER_MAC_SECRET, DataKey::generate())?
                    }
                    None => return Ok(None),
                };
                let mut macs = self.macs.lock().unwrap_or_else(PoisonError::into_inner);
                macs.insert(tenant.to_owned(), key.clone());
                key
            }
        };
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose())
            .expect("HMAC takes a key of any length");
        mac.update(user.as_bytes());
        let digest = mac.finalize().into_bytes();
        Ok(Some(format!("{PSEUDONYM_MARK}{}", hex::encode(digest))))
    }

    /// Forgets every cached key of `tenant` (its data keys, KEKs and pseudonym key), whose
    /// secrets and wrapped keys were deleted (offboarding): its next key is made afresh and
    /// stored, never taken from the cache of the deleted ones.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let (start, end) = keys::data_key_range(tenant);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|k, _| !(start.as_slice()..end.as_slice()).contains(&k.as_slice()));
        self.keks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant.as_str());
        self.macs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant.as_str());
    }

    /// Destroys the tenant's KEKs and pseudonym key when they live in a cluster's key stream
    /// (the data dir's secret store is emptied by offboarding itself), then forgets its cached
    /// keys ([`Keyring::forget_tenant`]). Returns how many secrets were destroyed.
    pub fn destroy_tenant(&self, tenant: &TenantId) -> Result<u64, KeyringError> {
        let mut destroyed = 0;
        if let KeyHome::Shared(_) = &self.home {
            for name in [KEK_SECRET, KEK_NEXT_SECRET, USER_MAC_SECRET] {
                destroyed += u64::from(self.home.delete(tenant.as_str(), name)?);
            }
        }
        self.forget_tenant(tenant);
        Ok(destroyed)
    }

    /// Stores the tenant's KEKs and pseudonym key from this ring's home (a data dir's secret
    /// store) in the cluster's key stream `keys`, for `migrate` into a cluster; a key already
    /// there is kept when it is the same, and refused when it differs (another data dir's
    /// tenant of that id). Returns how many secrets it stored.
    pub fn copy_to_shared(
        &self,
        tenant: &TenantId,
        keys: &SharedKeys,
    ) -> Result<u64, KeyringError> {
        let t = tenant.as_str();
        let mut stored = 0;
        for name in [KEK_SECRET, KEK_NEXT_SECRET, USER_MAC_SECRET] {
            let Some(value) = self.home.get(t, name)? else {
                continue;
            };
            let subject = keys.tenant_subject(t, name);
            let shared = |source| KeyringError::Shared {
                tenant: t.to_owned(),
                source,
            };
            match keys.create(&subject, &value).map_err(shared)? {
                Created::Made => stored += 1,
                Created::Found(found) if found.as_slice() == value.as_slice() => {}
                Created::Found(_) => return Err(shared(SharedKeyError::Taken { subject })),
            }
        }
        Ok(stored)
    }

    /// Forgets every cached key (data keys and KEKs): the next read goes to disk.
    pub fn forget_cached(&self) {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.keks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.macs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn cached(&self, key: &[u8]) -> Option<DataKey> {
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.get(key).cloned()
    }

    fn remember(&self, key: Vec<u8>, data_key: DataKey) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= DATA_KEYS_CACHED_MAX {
            cache.clear();
        }
        cache.insert(key, data_key);
    }

    /// Drops a session's key from the memory cache.
    pub fn evict(&self, scope: &SealScope<'_>) {
        let key = keys::data_key_key(scope.tenant, scope.env, scope.team, scope.session);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.remove(&key);
    }

    /// Unwraps `wrapped` under the first of `keks` that opens it.
    fn unwrap(
        keks: &[DataKey],
        scope: &SealScope<'_>,
        wrapped: &[u8],
    ) -> Result<Option<DataKey>, KeyringError> {
        let mut last = None;
        for kek in keks {
            match seal::unwrap_key(kek, scope, wrapped) {
                Ok(key) => return Ok(Some(key)),
                Err(e) => last = Some(e),
            }
        }
        match last {
            // No KEK at all: the tenant's keys were destroyed.
            None => Ok(None),
            Some(source) => Err(KeyringError::Unwrap {
                tenant: scope.tenant.to_owned(),
                session: scope.session.to_owned(),
                source,
            }),
        }
    }

    /// The session's data key, `None` when it was erased (or the session has no sealed event).
    pub fn read_key(
        &self,
        tree: &sled::Tree,
        scope: &SealScope<'_>,
    ) -> Result<Option<DataKey>, KeyringError> {
        let key = keys::data_key_key(scope.tenant, scope.env, scope.team, scope.session);
        if let Some(k) = self.cached(&key) {
            return Ok(Some(k));
        }
        let Some(wrapped) = tree.get(&key)? else {
            return Ok(None);
        };
        let found = Keyring::unwrap(&self.keks(scope.tenant)?, scope, &wrapped)?;
        if let Some(k) = &found {
            self.remember(key, k.clone());
        }
        Ok(found)
    }

    /// A fresh data key for the session `scope`, which has none: the key, and the log entry
    /// that stores it wrapped by the tenant's KEK (made first when the tenant has none) as
    /// `(sled key, wrapped key)`. Neither inserted nor cached: the writer stages the entry with
    /// the session's events (so it reaches the stream on the JetStream backend and is undone
    /// with them), and a later read finds it in the log.
    pub fn new_key(&self, scope: &SealScope<'_>) -> Result<NewKey, KeyringError> {
        let kek = match self.keks(scope.tenant)?.into_iter().next() {
            Some(kek) => kek,
            None => self.create_kek(scope.tenant, KEK_SECRET, DataKey::generate())?,
        };
        let data_key = DataKey::generate();
        let key = keys::data_key_key(scope.tenant, scope.env, scope.team, scope.session);
        let wrapped = seal::wrap_key(&kek, scope, &data_key);
        Ok(NewKey {
            key,
            wrapped,
            data_key,
        })
    }

    /// The session's data key for a new event: the stored one, else a fresh one ([`Keyring::new_key`])
    /// inserted into `tree` at once.
    #[cfg(test)]
    pub fn write_key(
        &self,
        tree: &sled::Tree,
        scope: &SealScope<'_>,
    ) -> Result<DataKey, KeyringError> {
        if let Some(k) = self.read_key(tree, scope)? {
            return Ok(k);
        }
        let made = self.new_key(scope)?;
        tree.insert(made.key.clone(), made.wrapped)?;
        self.remember(made.key, made.data_key.clone());
        Ok(made.data_key)
    }

    /// Destroys the data keys of the sessions `erased` (all of `tenant`) in `tree` at once:
    /// [`Keyring::start_erasure`], its writes applied and flushed, [`Keyring::finish_erasure`].
    #[cfg(test)]
    pub fn erase_sessions(
        &self,
        tree: &sled::Tree,
        tenant: &TenantId,
        erased: &[SealScope<'_>],
    ) -> Result<u64, KeyringError> {
        let rotation = self.start_erasure(tree, tenant, erased)?;
        let mut batch = sled::Batch::default();
        for (key, value) in &rotation.writes {
            match value {
                Some(v) => batch.insert(key.as_slice(), v.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        tree.apply_batch(batch)?;
        tree.flush()?;
        self.finish_erasure(rotation)
    }

    /// The first half of destroying the data keys of the sessions `erased` (all of `tenant`;
    /// see the module doc): stores a fresh KEK as `data_kek.next` and returns the log writes
    /// (read from `tree`) that remove the erased sessions' wrapped keys and re-wrap the
    /// tenant's other keys under it. The caller makes those writes durable (on the JetStream
    /// backend: a record of the stream), then calls [`Keyring::finish_erasure`]. The KEK is
    /// rotated even when no session had a key, which also finishes a rotation cut short.
    pub fn start_erasure(
        &self,
        tree: &sled::Tree,
        tenant: &TenantId,
        erased: &[SealScope<'_>],
    ) -> Result<Rotation, KeyringError> {
        let t = tenant.as_str();
        let keks = self.keks(t)?;
        let doomed: Vec<Vec<u8>> = erased
            .iter()
            .map(|s| keys::data_key_key(s.tenant, s.env, s.team, s.session))
            .collect();
        // A rotation cut short (its writes partly made, `data_kek` not yet replaced) left its
        // next KEK, under which some kept keys may already be wrapped: finish under that one.
        // A fresh one would overwrite it and lose those keys at the next cut.
        let next = match self.kek(t, KEK_NEXT_SECRET)? {
            Some(pending) => pending,
            None => {
                let next = DataKey::generate();
                self.store_kek(t, KEK_NEXT_SECRET, &next)?;
                next
            }
        };
        // Readers must try the next KEK from now on: re-wrapped keys become durable before
        // `finish_erasure`, and an erasure's writes may go out in several parts.
        self.keks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(t);
        let mut writes = Vec::new();
        let (start, end) = keys::data_key_range(tenant);
        for item in tree.range(start..end) {
            let (key, wrapped) = item?;
            if doomed.iter().any(|d| d.as_slice() == key.as_ref()) {
                writes.push((key.to_vec(), None));
                continue;
            }
            let Some(scope_parts) = scope_of(t, &key) else {
                continue;
            };
            let scope = scope_parts.scope();
            if let Some(data_key) = Keyring::unwrap(&keks, &scope, &wrapped)? {
                writes.push((key.to_vec(), Some(seal::wrap_key(&next, &scope, &data_key))));
            }
        }
        let destroyed = writes.iter().filter(|(_, v)| v.is_none()).count() as u64;
        Ok(Rotation {
            tenant: tenant.clone(),
            next,
            writes,
            doomed,
            destroyed,
        })
    }

    /// The second half ([`Keyring::start_erasure`]), once its writes are durable: the fresh
    /// KEK replaces the tenant's KEK (the old one is gone, so a stale copy of an erased
    /// wrapped key never unwraps again), the erased keys leave the cache. Returns how many
    /// wrapped keys the erasure removed. On `Err` the old KEK may still be stored: every kept
    /// key reads under `data_kek.next`, and erasing again finishes the rotation.
    pub fn finish_erasure(&self, rotation: Rotation) -> Result<u64, KeyringError> {
        let t = rotation.tenant.as_str();
        self.store_kek(t, KEK_SECRET, &rotation.next)?;
        self.delete_kek(t, KEK_NEXT_SECRET)?;
        self.keks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(t);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        for key in &rotation.doomed {
            cache.remove(key);
        }
        Ok(rotation.destroyed)
    }
}

/// One log write of an erasure: a key and its new value (`None`: removed).
pub type LogWrite = (Vec<u8>, Option<Vec<u8>>);

/// A KEK rotation under way ([`Keyring::start_erasure`]).
pub struct Rotation {
    tenant: TenantId,
    next: DataKey,
    /// The log writes: removed wrapped keys, and the kept ones re-wrapped under `next`.
    pub writes: Vec<LogWrite>,
    doomed: Vec<Vec<u8>>,
    destroyed: u64,
}

/// A fresh data key and the log entry that stores it ([`Keyring::new_key`]).
pub struct NewKey {
    /// The entry's sled key, `{t}\0K{env}\0{team}\0{session}`.
    pub key: Vec<u8>,
    /// The data key wrapped by the tenant's KEK.
    pub wrapped: Vec<u8>,
    pub data_key: DataKey,
}

/// The ids of a wrapped key's sled key, owned.
struct ScopeParts {
    tenant: String,
    env: String,
    team: String,
    session: String,
}

impl ScopeParts {
    fn scope(&self) -> SealScope<'_> {
        SealScope {
            tenant: &self.tenant,
            env: &self.env,
            team: &self.team,
            session: &self.session,
        }
    }
}

/// Parses `{t}\0K{env}\0{team}\0{session}`.
fn scope_of(tenant: &str, key: &[u8]) -> Option<ScopeParts> {
    let rest = key.get(tenant.len() + 2..)?;
    let mut parts = rest.splitn(3, |&b| b == 0);
    let env = std::str::from_utf8(parts.next()?).ok()?;
    let team = std::str::from_utf8(parts.next()?).ok()?;
    let session = std::str::from_utf8(parts.next()?).ok()?;
    Some(ScopeParts {
        tenant: tenant.to_owned(),
        env: env.to_owned(),
        team: team.to_owned(),
        session: session.to_owned(),
    })
}

/// A [`KeySource`] reading a key ring's keys from one log tree.
#[derive(Clone)]
pub(crate) struct OpenKeys {
    pub ring: std::sync::Arc<Keyring>,
    pub tree: sled::Tree,
}

impl KeySource for OpenKeys {
    fn data_key(&self, scope: &SealScope<'_>) -> Result<Option<DataKey>, String> {
        self.ring
            .read_key(&self.tree, scope)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
