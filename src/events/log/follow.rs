//! In a cluster, the tenants another node owns are *followed*: a thread polls the stream and
//! applies their new records to this node's cache, so reads answer the same on every node.
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
            let mut seen = 0;
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

/// One poll: when the stream moved past `seen`, brings every tenant this node does not own to
/// its last record. Returns the stream's last sequence it covered.
fn follow_once(shared: &Shared, seen: u64) -> Result<u64, String> {
    let Some(replica) = &shared.replica else {
        return Ok(seen);
    };
    let last = replica.stream_last_seq().map_err(|e| e.to_string())?;
    if last == seen {
        return Ok(seen);
    }
    let Some(store) = shared.store() else {
        return Ok(seen);
    };
    for tenant in replica.stream_tenants().map_err(|e| e.to_string())? {
        if shared.owns(&tenant) {
            continue;
        }
        let _sync = shared.sync.lock().unwrap_or_else(PoisonError::into_inner);
        if shared.owns(&tenant) {
            continue;
        }
        let local = tenant_head(&store.tree, &tenant).map_err(|e| e.to_string())?;
        match replica.catch_up(&store.tree, &tenant, local) {
            Ok(Some((_, head))) => shared.set_frontier(&tenant, head.tenant_seq),
            Ok(None) => shared.forget(&tenant),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(last)
}
