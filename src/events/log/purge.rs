//! Expiry of idempotency records: a record older than the window is removed, after which a
//! message with its id is a new message.
//!
//! The purge runs beside the writer, not through it: it removes a record only if it still holds
//! the bytes the purge read (`compare_and_swap`), so a record the stager has just rewritten is
//! never lost. A removal need not be durable: one lost in a crash is purged again next time.
//!
//! Invariant: a record younger than the window is never removed; an unreadable record is kept
//! and reported, never guessed about.

use super::{EventLog, IdempotencyRecord, ReadError, IDEMPOTENCY_RECORD_VERSION};
use crate::events::keys;
use crate::events::schema::decode_limited;
use crate::tenancy::TenantId;

/// Why a purge could not run at all. (A tenant whose records cannot be scanned is logged and
/// counted in [`PurgeReport::failed_tenants`]; the others are purged.)
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// The tenants could not be listed (sled failed); try again at the next purge.
    #[error("cannot list the log's tenants: {0}")]
    Tenants(String),
}

/// What one purge did, over all tenants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Records past the window, removed.
    pub removed: u64,
    /// v1 records (written before records carried a time), stamped with the purge's time so
    /// that they expire one window later.
    pub stamped: u64,
    /// Records inside the window, kept.
    pub kept: u64,
    /// Records that do not decode: kept, and logged with their tenant.
    pub unreadable: u64,
    /// Tenants whose records could not be scanned (logged with the error); the others were
    /// purged all the same.
    pub failed_tenants: u64,
}

impl EventLog {
    /// Removes every idempotency record whose append is `window_ms` or more before `now_ms`.
    /// Reads every record once (a range scan per tenant); run it off the actors' threads.
    pub fn purge_idempotency(
        &self,
        now_ms: u64,
        window_ms: u64,
    ) -> Result<PurgeReport, PurgeError> {
        let mut report = PurgeReport::default();
        let tenants = self
            .tenants()
            .map_err(|e| PurgeError::Tenants(e.to_string()))?;
        // Holding the handles makes a recovery wait for the purge instead of closing the files
        // under it.
        let store = self
            .inner
            .shared
            .store()
            .ok_or_else(|| PurgeError::Tenants(super::store::CLOSED.into()))?;
        for tenant in tenants {
            // One tenant's storage error must not keep the others' records for ever.
            if let Err(e) = purge_tenant(&store.tree, &tenant, now_ms, window_ms, &mut report) {
                tracing::error!(tenant = %tenant, error = %e, "idempotency purge failed for tenant");
                report.failed_tenants += 1;
            }
        }
        Ok(report)
    }
}

fn purge_tenant(
    tree: &sled::Tree,
    tenant: &TenantId,
    now_ms: u64,
    window_ms: u64,
    report: &mut PurgeReport,
) -> Result<(), ReadError> {
    let err = |detail: String| ReadError {
        tenant: tenant.clone(),
        position: "idempotency records".into(),
        detail,
    };
    let (start, end) = keys::idempotency_range(tenant);
    for entry in tree.range(start..end) {
        let (key, value) = entry.map_err(|e| err(e.to_string()))?;
        let mut rec: IdempotencyRecord = match decode_limited(&value) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "unreadable idempotency record kept");
                report.unreadable += 1;
                continue;
            }
        };
        let replacement = if rec.at_ms == 0 {
            rec.at_ms = now_ms;
            rec.v = IDEMPOTENCY_RECORD_VERSION;
            report.stamped += 1;
            Some(
                rmp_serde::to_vec_named(&rec)
                    .expect("MessagePack encoding of plain fields is infallible"),
            )
        } else if now_ms.saturating_sub(rec.at_ms) >= window_ms {
            report.removed += 1;
            None
        } else {
            report.kept += 1;
            continue;
        };
        // Err(CompareAndSwapError): the stager changed the record meanwhile; it is current.
        let _ = tree
            .compare_and_swap(&key, Some(&value), replacement)
            .map_err(|e| err(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
