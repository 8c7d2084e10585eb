//! The log's sled handles, replaceable after a write error, and the durable frontier.
//!
//! sled 0.34 turns its first I/O error (a full disk, say) into a global error: that `Db` refuses
//! every later operation. So after a write error the writer drops the handles, reopens the files
//! and re-checks every tenant's tail (`writer::Stager::recover`), and [`Shared::store`] hands out
//! the new handles. While the files are closed (between the drop and a successful reopen)
//! readers get an error, never stale or invented data.
//!
//! The durable frontier is, per tenant, the highest `tenant_seq` covered by a completed flush
//! (and `fdatasync`). Readers stop there: a group that sled has applied but not yet made durable,
//! or whose flush failed, is never visible, so nothing a caller was told had failed is ever read.
//!
//! Every change of a tenant's frontier (a flush, a followed record in a cluster, a recovery, a
//! deletion) bumps that tenant's [`FrontierWatch`], so a live reader (the HTTP event streams)
//! waits on it instead of polling the log.
//!
//! Invariants:
//! - the frontier only moves forward, by whole batches, after their flush; it is reset only by
//!   a recovery (to the recovered heads) or a tenant's deletion;
//! - a tenant damaged at open reads up to its damage (its frontier is unbounded; it takes no
//!   appends).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use tokio::sync::watch;

use super::replica::Replica;
use super::{Damage, Head, LogOptions, ReadError};
use crate::events::keyring::{Keyring, OpenKeys};
use crate::tenancy::TenantId;

/// One opening of the log's sled files.
pub(super) struct Store {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
    /// sled's data file, `fdatasync`ed after each flush.
    pub(super) data_file: File,
}

/// State shared by the writer threads, the readers and the handles.
pub(super) struct Shared {
    pub(super) dir: PathBuf,
    pub(super) opts: LogOptions,
    /// `None` only while the files are closed for a recovery that has not reopened them yet.
    store: RwLock<Option<Arc<Store>>>,
    /// Per tenant, the last durable `tenant_seq`. A tenant absent here has nothing durable.
    frontier: RwLock<HashMap<TenantId, u64>>,
    /// Per watched tenant, a counter bumped whenever its frontier changes (after the frontier's
    /// lock is released, so a watcher never waits on it). Never locked before `frontier`.
    watchers: Mutex<HashMap<TenantId, watch::Sender<u64>>>,
    /// Why the log refuses appends (a write failed and recovery has not succeeded yet).
    failure: Mutex<Option<String>>,
    /// Tenants whose tail failed its checks at the last open or recovery.
    damaged: RwLock<Vec<Damage>>,
    /// The last batch number covered by a successful flush.
    pub(super) durable_batch: AtomicU64,
    /// The last batch number whose callers the syncer has answered.
    pub(super) answered_batch: AtomicU64,
    /// The JetStream backend's stream (`None`: the sled backend, durable by flushing).
    pub(super) replica: Option<Arc<Replica>>,
    /// In a cluster: the tenants this node may append for, each adopted from the stream
    /// (`None`: every tenant).
    pub(super) owned: Option<RwLock<HashSet<TenantId>>>,
    /// Held while one tenant's cache is brought to the stream (by the follower, or by an
    /// adoption), so the two never apply the same tenant's records at once.
    pub(super) sync: Mutex<()>,
    /// The log's timings (`metrics.rs`), observed by the syncer.
    pub(super) metrics: super::LogMetrics,
    /// sled's blob files, which the syncer fsyncs before the data file (`sled_files`).
    pub(super) blobs: super::sled_files::BlobFiles,
}

/// What a reader holds (see [`Shared::reader`]).
#[derive(Clone)]
pub(super) struct ReaderParts {
    /// `Err` while a recovery has the files closed.
    pub(super) tree: Result<sled::Tree, ReadError>,
    /// Keeps the files open while this reader (or an iterator from it) lives.
    pub(super) store: Option<Arc<Store>>,
    /// The last `tenant_seq` this reader may return.
    pub(super) limit: u64,
    /// Opens sealed personal fields (`None`: they read as erased).
    pub(super) keyring: Option<Arc<Keyring>>,
}

/// What readers get while the files are closed for a recovery.
pub(super) const CLOSED: &str =
    "the event log is reopening its files after a write error; retry shortly";

impl ReaderParts {
    /// The keys that open sealed fields in this reader's tree, when the log has a key ring.
    pub(super) fn open_keys(&self) -> Option<OpenKeys> {
        Some(OpenKeys {
            ring: self.keyring.clone()?,
            tree: self.tree.as_ref().ok()?.clone(),
        })
    }
}

impl Shared {
    pub(super) fn new(
        dir: &Path,
        opts: &LogOptions,
        store: Store,
        replica: Option<Arc<Replica>>,
    ) -> Shared {
        Shared {
            dir: dir.to_owned(),
            opts: opts.clone(),
            store: RwLock::new(Some(Arc::new(store))),
            frontier: RwLock::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            damaged: RwLock::new(Vec::new()),
            durable_batch: AtomicU64::new(0),
            answered_batch: AtomicU64::new(0),
            owned: replica
                .as_ref()
                .filter(|r| r.cluster())
                .map(|_| RwLock::new(HashSet::new())),
            replica,
            sync: Mutex::new(()),
            metrics: super::LogMetrics::default(),
            blobs: super::sled_files::BlobFiles::new(dir),
        }
    }

    /// The current handles, or `None` while a recovery has the files closed.
    pub(super) fn store(&self) -> Option<Arc<Store>> {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the handles out (the caller drops them to release sled's lock).
    pub(super) fn close(&self) -> Option<Arc<Store>> {
        self.store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    pub(super) fn install(&self, store: Store) -> Arc<Store> {
        let store = Arc::new(store);
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(store.clone());
        store
    }

    /// Puts back handles that [`Shared::close`] took out (a recovery that cannot close yet).
    pub(super) fn put_back(&self, store: Arc<Store>) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(store);
    }

    /// What a reader of `tenant` needs: the tree, the handles it keeps alive (so that a
    /// recovery waits for it instead of pulling the files from under it), and the last
    /// `tenant_seq` it may see.
    pub(super) fn reader(&self, tenant: &TenantId) -> ReaderParts {
        let limit = self.limit(tenant);
        let store = self.store();
        let tree = store
            .as_ref()
            .map(|s| s.tree.clone())
            .ok_or_else(|| ReadError {
                tenant: tenant.clone(),
                position: "log".into(),
                detail: CLOSED.into(),
            });
        ReaderParts {
            tree,
            store,
            limit,
            keyring: self.opts.keyring.clone(),
        }
    }

    /// The last durable `tenant_seq` of `tenant` (unbounded for a damaged tenant).
    pub(super) fn limit(&self, tenant: &TenantId) -> u64 {
        let frontier = self.frontier.read().unwrap_or_else(PoisonError::into_inner);
        match frontier.get(tenant) {
            Some(seq) => *seq,
            None => 0,
        }
    }

    /// The tenants with something durable here (a cache entry, with JetStream).
    pub(super) fn frontier_tenants(&self) -> Vec<TenantId> {
        let frontier = self.frontier.read().unwrap_or_else(PoisonError::into_inner);
        frontier.keys().cloned().collect()
    }

    /// After a flush: `tenant` is durable up to `tenant_seq`.
    pub(super) fn advance(&self, tops: &[(TenantId, u64)]) {
        if tops.is_empty() {
            return;
        }
        let mut frontier = self
            .frontier
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for (tenant, seq) in tops {
            match frontier.get_mut(tenant) {
                Some(at) => *at = (*at).max(*seq),
                None => {
                    frontier.insert(tenant.clone(), *seq);
                }
            }
        }
        drop(frontier);
        self.notify(tops.iter().map(|(tenant, _)| tenant));
    }

    /// A receiver that changes whenever `tenant`'s frontier does (its value is a counter, not
    /// the frontier: read [`Shared::limit`] after a change). Subscribe before reading, so that
    /// no change between the read and the wait is missed.
    pub(super) fn watch_frontier(&self, tenant: &TenantId) -> watch::Receiver<u64> {
        let mut watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        // Tenants nobody watches any more are dropped here, so the map stays as small as the
        // set of watched tenants.
        watchers.retain(|_, tx| tx.receiver_count() > 0);
        watchers
            .entry(tenant.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes the watchers of `tenants`.
    fn notify<'a>(&self, tenants: impl Iterator<Item = &'a TenantId>) {
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        if watchers.is_empty() {
            return;
        }
        for tenant in tenants {
            if let Some(tx) = watchers.get(tenant) {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// Wakes every watcher (after a recovery reset every frontier).
    fn notify_all(&self) {
        let watchers = self.watchers.lock().unwrap_or_else(PoisonError::into_inner);
        for tx in watchers.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether this node may append for `tenant` (always, outside a cluster).
    pub(super) fn owns(&self, tenant: &TenantId) -> bool {
        self.owned.as_ref().is_none_or(|owned| {
            owned
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(tenant)
        })
    }

    /// In a cluster: this node may no longer append for `tenant`.
    pub(super) fn disown(&self, tenant: &TenantId) {
        if let Some(owned) = &self.owned {
            owned
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(tenant);
        }
    }

    /// After a tenant's cache was brought to the stream: readers see up to `tenant_seq`.
    pub(super) fn set_frontier(&self, tenant: &TenantId, tenant_seq: u64) {
        let mut frontier = self
            .frontier
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        frontier.insert(tenant.clone(), tenant_seq);
        drop(frontier);
        self.notify(std::iter::once(tenant));
    }

    /// After a tenant's deletion was flushed: nothing of it is left, its damage included.
    pub(super) fn forget(&self, tenant: &TenantId) {
        let mut frontier = self
            .frontier
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        frontier.remove(tenant);
        drop(frontier);
        self.damaged
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|d| d.tenant != *tenant);
        self.notify(std::iter::once(tenant));
    }

    /// At open and after a recovery: everything on disk is durable; damaged tenants read up to
    /// their damage.
    pub(super) fn reset(&self, heads: &HashMap<TenantId, Head>, damaged: Vec<Damage>) {
        let mut frontier: HashMap<TenantId, u64> = heads
            .iter()
            .map(|(t, h)| (t.clone(), h.tenant_seq))
            .collect();
        for d in &damaged {
            frontier.insert(d.tenant.clone(), u64::MAX);
        }
        *self
            .frontier
            .write()
            .unwrap_or_else(PoisonError::into_inner) = frontier;
        *self.damaged.write().unwrap_or_else(PoisonError::into_inner) = damaged;
        self.notify_all();
    }

    pub(super) fn damaged(&self) -> Vec<Damage> {
        self.damaged
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a write error is recorded (no copy of its text: the writer asks once per batch).
    pub(super) fn has_failure(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Records the first write error; appends are refused until [`Shared::recovered`].
    pub(super) fn fail(&self, error: String) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if failure.is_none() {
            *failure = Some(error);
        }
    }

    pub(super) fn recovered(&self) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(super) fn batch_answered(&self, batch: u64) {
        self.answered_batch.fetch_max(batch, Ordering::SeqCst);
    }
}
