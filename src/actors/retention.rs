//! The background trim of tenants with a `retention` (docs/storage.md#retention): once at start
//! and every [`RETENTION_TRIM_INTERVAL`], on the blocking pool, each such tenant's frames older
//! than now − retention (by the runtime's clock) are trimmed in bounded batches
//! ([`crate::events::log::TRIM_BATCH_FRAMES`] frames each), each batch written through the
//! writer between batches of appends. With the JetStream backend the trim reaches every node's
//! cache and the stream; in a cluster only the node that owns a tenant trims it (the others skip
//! it quietly).
//!
//! Invariant: a tenant without `retention` is never trimmed; one tenant's failed trim is logged
//! and the others are trimmed all the same.

use std::sync::Arc;
use std::time::Duration;

use super::shared::Shared;
use crate::events::log::{EventLog, TrimError, TrimReport};
use crate::tenancy::TenantId;

/// How often the runtime trims (the first trim runs at start).
pub const RETENTION_TRIM_INTERVAL: Duration = Duration::from_secs(3600);

/// A tenant and how long its events are kept.
pub type Policy = (TenantId, Duration);

/// The time before which `retention` trims, at `now_ms`.
pub fn cutoff_ms(now_ms: u64, retention: Duration) -> u64 {
    now_ms.saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX))
}

/// Trims every tenant of `policies` as of `now_ms`, logging what each trim did; returns each
/// tenant's result.
pub fn trim_all(
    log: &EventLog,
    policies: &[Policy],
    now_ms: u64,
) -> Vec<(TenantId, Result<TrimReport, TrimError>)> {
    let mut out = Vec::with_capacity(policies.len());
    for (tenant, keep) in policies {
        let result = log.trim(tenant, cutoff_ms(now_ms, *keep), now_ms);
        match &result {
            Ok(r) if r.events > 0 => tracing::info!(
                tenant = %tenant,
                events = r.events,
                batches = r.batches,
                first_kept_tenant_seq = r.anchor.map_or(0, |a| a.first_tenant_seq),
                "retention: trim done"
            ),
            Ok(_) => {}
            Err(TrimError::NotOwner(_)) => {
                tracing::debug!(tenant = %tenant, "retention: another node owns the tenant and trims it")
            }
            Err(e) => tracing::error!(tenant = %tenant, error = %e, "retention: trim failed"),
        }
        out.push((tenant.clone(), result));
    }
    out
}

/// Trims at once and then every [`RETENTION_TRIM_INTERVAL`] until the runtime's arbiters stop;
/// nothing when no tenant has a retention.
pub(super) fn start(shared: &Arc<Shared>, policies: Vec<Policy>) {
    if policies.is_empty() {
        return;
    }
    let Some(arbiter) = shared.arbiters.first() else {
        return;
    };
    let shared = Arc::downgrade(shared);
    let policies = Arc::new(policies);
    arbiter.spawn(async move {
        loop {
            let Some(strong) = shared.upgrade() else {
                return;
            };
            let policies = Arc::clone(&policies);
            let _ = actix_rt::task::spawn_blocking(move || {
                let now = strong.opts.clock.now_ms();
                trim_all(&strong.log, &policies, now);
            })
            .await;
            actix_rt::time::sleep(RETENTION_TRIM_INTERVAL).await;
        }
    });
}
