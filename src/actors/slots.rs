//! The bound on live session actors: `runtime.sessions_max` over all tenants and
//! `runtime.tenant_sessions_max` per tenant. A session actor holds a [`SessionSlot`] from the
//! moment its env actor spawns it until it stops; the slot counts it in both.
//!
//! Invariant: the counts never pass their limits (a slot is taken with a compare-and-swap
//! against the limit, tenant first, and given back if the global count is full).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::shared::RuntimeMetrics;

/// One live session actor's place in the counts; given back when dropped.
pub(super) struct SessionSlot {
    metrics: Arc<RuntimeMetrics>,
    tenant: Arc<AtomicUsize>,
}

/// Which limit refused a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Full {
    /// The tenant holds `tenant_sessions_max` live sessions.
    Tenant,
    /// All tenants together hold `sessions_max`.
    Global,
}

impl SessionSlot {
    pub(super) fn try_acquire(
        metrics: &Arc<RuntimeMetrics>,
        tenant: &Arc<AtomicUsize>,
        sessions_max: usize,
        tenant_sessions_max: usize,
    ) -> Result<SessionSlot, Full> {
        tenant
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < tenant_sessions_max).then_some(n + 1)
            })
            .map_err(|_| Full::Tenant)?;
        let max = u64::try_from(sessions_max).unwrap_or(u64::MAX);
        let global =
            metrics
                .active_sessions
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                });
        if global.is_err() {
            tenant.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::Global);
        }
        Ok(SessionSlot {
            metrics: metrics.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        self.tenant.fetch_sub(1, Ordering::AcqRel);
        self.metrics.active_sessions.fetch_sub(1, Ordering::AcqRel);
    }
}
