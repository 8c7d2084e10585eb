//! In a cluster, the tenants another node owns are *followed*: a thread polls the stream and
//! applies their new records to this node's cache, so reads answer the same on every node. A
//! followed tenant whose subject became empty (its owner deleted it: offboarding purges the
//! subject) is removed from the cache and forgotten here too; the read-model fold then drops
//! its read models and snapshots (`projections::projector::Background`). A followed tenant whose
//! ops revision moved (another node's erasure, say) has its cached keys dropped from the key
//! ring, so a destroyed data key is not kept in this node's memory.
//!
//! Invariant: a tenant this node owns is never touched here (its cache is the stager's), and
//! one tenant's cache is brought to the stream by one thread at a time (`Shared::sync`).

use std::sync::{PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use super::read::tenant_head;
use super::store::Shared;

/// How often the follower looks for new records.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(200);

/// Starts the follower; it ends once the log is dropped.
pub(super) fn start(shared: Weak<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tenantry-log-follow".into())
        .spawn(move || {
            let mut seen = (0, 0);
            let mut failing = false;
            loop {
                std::thread::sleep(FOLLOW_INTERVAL);
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                match follow_once(&shared, seen) {
                    Ok(at) => {
                        seen = at;
                        failing = false;
                    }
                    // Once per outage, not every poll.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "following the stream failed; retrying");
                    }
                    Err(_) => {}
                }
            }
        })
}

/// What the follower compares between polls: the stream's last sequence (moves with every
/// record) and its message count (drops when a subject is purged, which leaves the last
/// sequence as it was).
type StreamMark = (u64, u64);

/// One poll: when the stream changed since `seen`, brings every tenant this node does not own
/// to its last record: the tenants with records, and the cached ones that have none any more
/// (removed). Returns the stream's mark it covered.
fn follow_once(shared: &Shared, seen: StreamMark) -> Result<StreamMark, String> {
    let Some(replica) = &shared.replica else {
        return Ok(seen);
    };
    let mark = replica.stream_mark().map_err(|e| e.to_string())?;
    if mark == seen {
        return Ok(seen);
    }
    let Some(store) = shared.store() else {
        return Ok(seen);
    };
    let mut tenants = replica.stream_tenants().map_err(|e| e.to_string())?;
    for cached in shared.frontier_tenants() {
        if !tenants.contains(&cached) {
            tenants.push(cached);
        }
    }
    for tenant in tenants {
        if shared.owns(&tenant) {
            continue;
        }
        let _sync = shared.sync.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.owns(&tenant) {
            continue;
        }
        let local = tenant_head(&store.tree, &tenant).map_err(|e| e.to_string())?;
        let rev = super::ops::revision(&store.tree, &tenant).map_err(|e| e.to_string())?;
        let caught = replica.catch_up(&store.tree, &tenant, local);
        // Another node's tenant ops (an erasure's removed and re-wrapped data keys, a KEK
        // rotation) raise the revision: the keys this node cached for the tenant may be
        // destroyed ones, so they are read again when next needed.
        if !super::ops::revision(&store.tree, &tenant).is_ok_and(|now| now == rev) {
            if let Some(ring) = &shared.opts.keyring {
                ring.forget_tenant(&tenant);
            }
        }
        match caught {
            Ok(Some((_, head))) => shared.set_frontier(&tenant, head.tenant_seq),
            Ok(None) => {
                if local.is_some() {
                    tracing::warn!(tenant = %tenant, "the stream has no records of this tenant any more (deleted): its cache was removed");
                }
                shared.forget(&tenant);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(mark)
}
