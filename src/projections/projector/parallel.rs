//! Rebuilds of many tenants at once: one tenant per worker thread, the longest logs first.
//!
//! A rebuild of one tenant keeps two threads busy unevenly (the fold's read-ahead thread scans
//! sled while the calling thread decodes and folds, which is the slower half), so a whole log's
//! rebuild one tenant after another leaves a core partly idle. Tenants are independent (each its
//! own fold lock, checkpoint and entries), so several fold at once; taking the longest logs
//! first keeps the workers' shares even (the last tenants to start are the short ones).
//!
//! Invariants: each tenant is rebuilt by exactly one worker ([`Projector::rebuild`], under its
//! fold lock), and its `done` hook runs on that worker right after; after the first failure no
//! tenant starts, those under way finish, and the first failure is returned. A panic in a
//! tenant's rebuild or hook is that tenant's error, never the caller's panic.

use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{Projector, ProjectorError};
use crate::events::log::contain::panic_message;
use crate::events::log::{EventLog, ReadError};
use crate::tenancy::TenantId;

/// The workers a rebuild of `tenants` tenants uses by default: one per core, at most one per
/// tenant.
pub fn rebuild_jobs(tenants: usize) -> NonZeroUsize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    NonZeroUsize::new(cores.min(tenants)).unwrap_or(NonZeroUsize::MIN)
}

/// `tenants` ordered for a parallel rebuild: the longest logs (highest `tenant_seq`) first, ties
/// in name order.
pub fn longest_logs_first(
    log: &EventLog,
    tenants: Vec<TenantId>,
) -> Result<Vec<TenantId>, ReadError> {
    let mut sized = Vec::with_capacity(tenants.len());
    for tenant in tenants {
        let head = log.tenant(&tenant).head()?.map_or(0, |h| h.tenant_seq);
        sized.push((head, tenant));
    }
    sized.sort_by(|(a, ta), (b, tb)| b.cmp(a).then_with(|| ta.cmp(tb)));
    Ok(sized.into_iter().map(|(_, t)| t).collect())
}

/// Called with each tenant and its running count of events folded (from its worker thread).
pub type RebuildProgress<'a> = &'a (dyn Fn(&TenantId, u64) + Sync);

impl Projector {
    /// Rebuilds the read models of each of `tenants` ([`Projector::rebuild`]) on up to `jobs`
    /// threads, taking them in the order given (see [`longest_logs_first`]), and calls `done`
    /// with the tenant and its events folded right after each tenant's rebuild, on the same
    /// worker. Returns the events folded in all.
    ///
    /// On the first failure (a rebuild's or `done`'s) no further tenant starts, those under way
    /// finish, and that failure is returned: the tenants not started keep their old read models,
    /// which a later rebuild replaces.
    pub fn rebuild_tenants<E>(
        &self,
        log: &EventLog,
        tenants: &[TenantId],
        jobs: NonZeroUsize,
        progress: RebuildProgress<'_>,
        done: &(dyn Fn(&TenantId, u64) -> Result<(), E> + Sync),
    ) -> Result<u64, E>
    where
        E: From<ProjectorError> + Send,
    {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<E>> = Mutex::new(None);
        let folded = AtomicU64::new(0);
        let work = || loop {
            if failed.load(Ordering::Acquire) {
                return;
            }
            let Some(tenant) = tenants.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return;
            };
            let one = || -> Result<u64, E> {
                let n = self.rebuild(log, tenant, &mut |n| progress(tenant, n))?;
                done(tenant, n)?;
                Ok(n)
            };
            let result = catch_unwind(AssertUnwindSafe(one)).unwrap_or_else(|payload| {
                Err(E::from(ProjectorError::Panicked {
                    tenant: tenant.clone(),
                    detail: panic_message(payload.as_ref())
                        .unwrap_or_else(|| "a panic without a message".into()),
                }))
            });
            match result {
                Ok(n) => {
                    folded.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    failed.store(true, Ordering::Release);
                    let mut slot = first_error
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    slot.get_or_insert(e);
                    return;
                }
            }
        };
        let workers = jobs.get().min(tenants.len());
        std::thread::scope(|scope| {
            // The calling thread is one of the workers.
            for n in 1..workers {
                let spawned = std::thread::Builder::new()
                    .name(format!("tenantry-rebuild-{n}"))
                    .spawn_scoped(scope, work);
                if spawned.is_err() {
                    // Fewer workers than asked: the others (at least this thread) do it all.
                    break;
                }
            }
            work();
        });
        let error = first_error
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            Some(e) => Err(e),
            None => Ok(folded.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests;
