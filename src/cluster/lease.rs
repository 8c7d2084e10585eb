//! Leases: which node owns which tenant, kept in a JetStream key-value bucket beside the log.
//!
//! Bucket `{stream}_LEASES` (the log's replicas, history 1, `max_age` = `[cluster] lease_ttl`):
//! key `tenant.{tenant}` holds the owner's node name, `node.{node}` a node's heartbeat. A key
//! lives `lease_ttl` after its last write, so a dead node's leases and heartbeat vanish by
//! themselves. Every tick ([`tick_interval`]) each node writes its heartbeat, renews its leases
//! (`update` at the revision it holds; one another node took meanwhile fails, and the node
//! releases the tenant), and takes the free leases it is first for by rendezvous hashing over
//! the live nodes (`create`, which fails if another node was faster), adopting each tenant in
//! the log before routing it here.
//!
//! Invariant: a lease alone never lets a node append; the log's adoption does (its takeover
//! record fences every earlier writer in the stream itself), so a node that wakes from a pause
//! believing it still owns its tenants is refused by the stream, not trusted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};

use super::placement::{Placement, Route};
use crate::events::log::{EventLog, Replica};
use crate::tenancy::TenantId;

/// Ticks a free lease waits for the node rendezvous hashing prefers before any node takes it
/// (the preferred node may be alive but unable to adopt).
const FREE_TICKS_MAX: u32 = 3;

/// Why the leases could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("leases need the JetStream log backend with [cluster]")]
    NotClustered,
    #[error("the lease bucket {bucket}: {detail}")]
    Bucket { bucket: String, detail: String },
}

/// The lease bucket of a stream.
pub fn bucket_name(stream: &str) -> String {
    format!("{stream}_LEASES")
}

/// How often a node renews: a quarter of the lease, at most a second (a failover takes the
/// lease's time plus about one tick).
pub fn tick_interval(lease_ttl: Duration) -> Duration {
    (lease_ttl / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

#[derive(Default)]
struct View {
    /// Tenants this node holds a lease for (and adopted), with the lease's revision.
    mine: HashMap<TenantId, u64>,
    /// The owner of each tenant held by another node.
    owners: HashMap<TenantId, String>,
    /// Ticks each tenant has been seen free.
    free_for: HashMap<TenantId, u32>,
}

/// This node's leases; the runtime asks it where a tenant's messages go.
pub struct Leases {
    node: String,
    view: RwLock<View>,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    kv: kv::Store,
    log: EventLog,
    replica: Arc<Replica>,
}

impl Placement for Leases {
    fn route(&self, tenant: &TenantId) -> Route {
        let view = self.view.read().unwrap_or_else(PoisonError::into_inner);
        if view.mine.contains_key(tenant) {
            // The stream may have refused this node's records since the last renewal (another
            // node took the tenant): then wait for the next tick to learn the new owner.
            if self.log.owns(tenant) {
                Route::Local
            } else {
                Route::Unowned
            }
        } else if let Some(owner) = view.owners.get(tenant) {
            Route::Remote(owner.clone())
        } else {
            Route::Unowned
        }
    }

    fn node(&self) -> &str {
        &self.node
    }
}

/// Opens (or creates) the stream's lease bucket.
pub fn bucket(log: &EventLog, lease_ttl: Duration) -> Result<kv::Store, LeaseError> {
    let replica = log.replica().ok_or(LeaseError::NotClustered)?;
    let name = bucket_name(replica.stream_name());
    let config = kv::Config {
        bucket: name.clone(),
        history: 1,
        max_age: lease_ttl,
        storage: async_nats::jetstream::stream::StorageType::File,
        num_replicas: replica.replicas(),
        ..Default::default()
    };
    let js = replica.jetstream();
    replica
        .block_on(js.create_or_update_key_value(config))
        .map_err(|e| LeaseError::Bucket {
            bucket: name,
            detail: e.to_string(),
        })
}

/// The node holding `tenant`'s lease in the lease bucket of `log`'s stream, if any: a lease
/// lives `[cluster] lease_ttl` after its last renewal, so a holder is a live node (or one dead
/// for less than that). `None` when nobody holds it, or when the stream has no lease bucket (no
/// cluster node ever ran on it). Does not create the bucket; for the offline commands.
pub fn holder(log: &EventLog, tenant: &TenantId) -> Result<Option<String>, LeaseError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    let replica = log.replica().ok_or(LeaseError::NotClustered)?;
    let name = bucket_name(replica.stream_name());
    let error = |detail: String| LeaseError::Bucket {
        bucket: name.clone(),
        detail,
    };
    let js = replica.jetstream();
    replica.block_on(async {
        // A missing bucket is asked for as a stream, whose error says "not found" for sure.
        match js.get_stream(format!("KV_{name}")).await {
            Ok(_) => {}
            Err(e) => match e.kind() {
                GetStreamErrorKind::JetStream(je)
                    if je.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    return Ok(None)
                }
                _ => return Err(error(e.to_string())),
            },
        }
        let kv = js
            .get_key_value(name.as_str())
            .await
            .map_err(|e| error(e.to_string()))?;
        let entry = kv
            .entry(tenant_key(tenant))
            .await
            .map_err(|e| error(e.to_string()))?;
        Ok(entry
            .filter(|e| e.operation == kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    })
}

impl Leases {
    /// Starts renewing and taking leases for `tenants` (the tenants of the config) every
    /// [`tick_interval`]; the first round runs before this returns.
    pub fn start(
        log: EventLog,
        tenants: Vec<TenantId>,
        lease_ttl: Duration,
    ) -> Result<Arc<Leases>, LeaseError> {
        let replica = log.replica().ok_or(LeaseError::NotClustered)?.clone();
        let node = replica.node().to_owned();
        let kv = bucket(&log, lease_ttl)?;
        let leases = Arc::new(Leases {
            node,
            view: RwLock::default(),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
            kv,
            log,
            replica,
        });
        leases.tick(&tenants);
        let worker = leases.clone();
        let interval = tick_interval(lease_ttl);
        let thread = std::thread::Builder::new()
            .name("tenantry-leases".into())
            .spawn(move || {
                while !worker.stop.load(Ordering::Acquire) {
                    std::thread::sleep(interval);
                    worker.tick(&tenants);
                }
            })
            .map_err(|e| LeaseError::Bucket {
                bucket: "(thread)".into(),
                detail: e.to_string(),
            })?;
        *leases.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(leases)
    }

    /// Stops renewing and gives this node's leases back (so other nodes take them at once,
    /// not a lease later). Call after the runtime drained.
    pub fn stop(&self) {
        self.stop_renewing();
        let mine: Vec<(TenantId, u64)> = {
            let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
            view.mine.drain().collect()
        };
        for (tenant, revision) in mine {
            self.log.release(&tenant);
            let key = tenant_key(&tenant);
            let given = self.block_on(self.kv.delete_expect_revision(&key, Some(revision)));
            if let Err(e) = given {
                tracing::warn!(tenant = %tenant, error = %e, "giving a lease back failed; it expires by itself");
            }
        }
        let _ = self.block_on(self.kv.delete(node_key(&self.node)));
    }

    /// Stops renewing without giving anything back: what a crashed node leaves (tests).
    #[cfg(test)]
    fn abandon(&self) {
        self.stop_renewing();
    }

    /// Ends the renewing thread (after its current tick).
    fn stop_renewing(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = thread.join();
        }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.replica.block_on(future)
    }

    /// One round: heartbeat, renewals, free leases.
    fn tick(&self, tenants: &[TenantId]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        if let Err(e) = self.block_on(self.kv.put(node_key(&self.node), now.into())) {
            tracing::warn!(node = %self.node, error = %e, "lease heartbeat failed");
        }
        let nodes = match self.live_nodes() {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::warn!(error = %e, "listing the live nodes failed");
                HashSet::from([self.node.clone()])
            }
        };
        for tenant in tenants {
            self.tick_tenant(tenant, &nodes);
        }
    }

    fn live_nodes(&self) -> Result<HashSet<String>, String> {
        let keys: Vec<String> = self.block_on(async {
            let keys = self.kv.keys().await.map_err(|e| e.to_string())?;
            keys.try_collect().await.map_err(|e| e.to_string())
        })?;
        let mut nodes: HashSet<String> = keys
            .iter()
            .filter_map(|k| k.strip_prefix("node."))
            .map(str::to_owned)
            .collect();
        nodes.insert(self.node.clone());
        Ok(nodes)
    }

    fn tick_tenant(&self, tenant: &TenantId, nodes: &HashSet<String>) {
        let key = tenant_key(tenant);
        let held = self
            .view
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .mine
            .get(tenant)
            .copied();
        if let Some(revision) = held {
            return self.renew(tenant, &key, revision);
        }
        let entry = match self.block_on(self.kv.entry(key.as_str())) {
            Ok(entry) => entry.filter(|e| e.operation == kv::Operation::Put),
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "reading a lease failed");
                return;
            }
        };
        match entry {
            // Ours from before a restart: renew it, then adopt.
            Some(e) if e.value.as_ref() == self.node.as_bytes() => {
                if let Ok(revision) =
                    self.block_on(self.kv.update(&key, self.node.clone().into(), e.revision))
                {
                    self.take(tenant, &key, revision);
                }
            }
            Some(e) => {
                let owner = String::from_utf8_lossy(&e.value).into_owned();
                let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
                view.free_for.remove(tenant);
                view.owners.insert(tenant.clone(), owner);
            }
            None => {
                let waited = {
                    let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
                    view.owners.remove(tenant);
                    let n = view.free_for.entry(tenant.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                if preferred(tenant, nodes) == Some(self.node.as_str()) || waited > FREE_TICKS_MAX {
                    if let Ok(revision) =
                        self.block_on(self.kv.create(&key, self.node.clone().into()))
                    {
                        self.take(tenant, &key, revision);
                    }
                }
            }
        }
    }

    /// With the lease at `revision`: adopts the tenant in the log, then routes it here; gives
    /// the lease back if the adoption fails.
    fn take(&self, tenant: &TenantId, key: &str, revision: u64) {
        match self.log.adopt_blocking(tenant) {
            Ok(()) => {
                let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
                view.owners.remove(tenant);
                view.free_for.remove(tenant);
                view.mine.insert(tenant.clone(), revision);
                tracing::info!(tenant = %tenant, node = %self.node, "lease taken");
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "adopting the tenant failed; giving its lease back");
                let _ = self.block_on(self.kv.delete_expect_revision(key, Some(revision)));
            }
        }
    }

    fn renew(&self, tenant: &TenantId, key: &str, revision: u64) {
        let renewed = self.block_on(self.kv.update(key, self.node.clone().into(), revision));
        let renewed = match renewed {
            Ok(revision) => Some(revision),
            // A wrong-sequence error can come back on a replicated bucket even at the right
            // revision (nats-server #7281): read again, and renew if the lease is still ours.
            Err(_) => match self.block_on(self.kv.entry(key)) {
                Ok(Some(e))
                    if e.operation == kv::Operation::Put
                        && e.value.as_ref() == self.node.as_bytes() =>
                {
                    self.block_on(self.kv.update(key, self.node.clone().into(), e.revision))
                        .ok()
                }
                _ => None,
            },
        };
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        match renewed {
            Some(revision) if !self.log.owns(tenant) => {
                // Still our lease, but the stream refused our records (a writer that should
                // not have written did): fence it again by adopting anew.
                view.mine.remove(tenant);
                drop(view);
                self.take(tenant, key, revision);
            }
            Some(revision) => {
                view.mine.insert(tenant.clone(), revision);
            }
            None => {
                view.mine.remove(tenant);
                drop(view);
                self.log.release(tenant);
                tracing::warn!(tenant = %tenant, node = %self.node, "lease lost: no more appends for the tenant here");
            }
        }
    }
}

fn tenant_key(tenant: &TenantId) -> String {
    format!("tenant.{tenant}")
}

fn node_key(node: &str) -> String {
    format!("node.{node}")
}

/// The live node rendezvous hashing picks for a tenant: the highest SHA-256 of
/// `tenant \0 node`. Every node computes the same from the same live set.
fn preferred<'a>(tenant: &TenantId, nodes: &'a HashSet<String>) -> Option<&'a str> {
    nodes
        .iter()
        .max_by_key(|node| {
            let mut hash = Sha256::new();
            hash.update(tenant.as_str().as_bytes());
            hash.update([0]);
            hash.update(node.as_bytes());
            hash.finalize()
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests;
