//! Slots for audit exports over HTTP: at most so many at once over all tenants and per tenant
//! (`server.exports_max`, `server.exports_per_tenant_max`).
//!
//! Invariant: a slot is taken before an export's thread starts and given back when the
//! [`ExportSlot`] drops (the thread ends, whatever the reason), so the counts never drift.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::error::ApiError;
use crate::config::exports::ExportLimits;
use crate::tenancy::TenantId;

/// The running exports, per tenant.
pub struct ExportSlots {
    limits: ExportLimits,
    running: Arc<Mutex<Running>>,
}

#[derive(Default)]
struct Running {
    total: usize,
    per_tenant: HashMap<TenantId, usize>,
}

fn lock(running: &Mutex<Running>) -> MutexGuard<'_, Running> {
    // A poisoned lock only means a panic elsewhere; the counts are updated under the lock only.
    running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ExportSlots {
    /// No export running yet.
    pub fn new(limits: ExportLimits) -> ExportSlots {
        ExportSlots {
            limits,
            running: Arc::default(),
        }
    }

    /// How long an export waits for its client to take a chunk.
    pub fn write_timeout(&self) -> Duration {
        self.limits.write_timeout
    }

    /// A slot for one export of `tenant`, or [`ApiError::ExportsBusy`] naming the limit.
    pub fn acquire(&self, tenant: &TenantId) -> Result<ExportSlot, ApiError> {
        let mut running = lock(&self.running);
        let mine = running.per_tenant.get(tenant).copied().unwrap_or(0);
        if mine >= self.limits.per_tenant_max {
            return Err(ApiError::ExportsBusy {
                limit: "the tenant's limit (server.exports_per_tenant_max)",
            });
        }
        if running.total >= self.limits.max {
            return Err(ApiError::ExportsBusy {
                limit: "the server's limit (server.exports_max)",
            });
        }
        running.total += 1;
        running.per_tenant.insert(tenant.clone(), mine + 1);
        Ok(ExportSlot {
            running: Arc::clone(&self.running),
            tenant: tenant.clone(),
        })
    }

    /// Exports running now, over all tenants.
    pub fn running(&self) -> usize {
        lock(&self.running).total
    }
}

/// One running export's slot; given back on drop.
pub struct ExportSlot {
    running: Arc<Mutex<Running>>,
    tenant: TenantId,
}

impl Drop for ExportSlot {
    fn drop(&mut self) {
        let mut running = lock(&self.running);
        running.total = running.total.saturating_sub(1);
        if let Some(mine) = running.per_tenant.get_mut(&self.tenant) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                running.per_tenant.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests;
