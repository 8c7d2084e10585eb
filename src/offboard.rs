//! Tenant offboarding: [`offboard_tenant`] removes everything a tenant left in a data dir
//! (its log key range with its idempotency records and signed heads, its read models, its
//! snapshot files, its secrets) and reports what it freed ([`Freed`]). Other tenants' keys,
//! files, chains and usage are untouched: every part is removed by its tenant prefix or
//! directory. `tenantry tenant delete` (offline) and `DELETE /api/v1/tenants/{tenant}` (the
//! running server, which also stops the tenant's sessions first and drops its metrics series)
//! both call it.
//!
//! **Order and crashes.** A marker file `{data_dir}/offboarding/{tenant}` is written (and
//! fsynced) first and removed last, so an interrupted deletion is visible (`serve` warns about
//! it at start) and running the deletion again finishes it; a run after a completed one frees
//! nothing and succeeds. Between the marker's two ends: (1) the log range, durably (the point of
//! no return: the tenant's history is gone; a snapshot left behind no longer matches the log and
//! is never used); (2) the read models, after the log so that no fold can bring them back, under the
//! tenant's fold lock held since before the log's deletion, so that the background fold
//! (which drops the read models and snapshots of a log emptied elsewhere) never takes them
//! from this deletion's report; (3) the snapshot files; (4) the secrets.
//!
//! **JetStream.** The log range goes by the writer, as on sled, and the syncer then purges the
//! tenant's subject from the stream (the point of no return there). Only the tenant's writer
//! deletes: a cluster node that does not own the tenant is refused ([`OffboardError::NotOwner`];
//! the admin route names the owner first, the offline command checks the lease bucket). The
//! other nodes notice the purge: their follower removes the tenant's cache, and their
//! read-model fold then drops its read models and snapshots (`Background`), as every node does
//! at its next start for a tenant whose records went while it was down.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::events::log::{AppendError, EventLog, ReadError};
use crate::projections::projector::{Projector, ProjectorError};
use crate::projections::snapshot::{SnapshotError, SnapshotStore};
use crate::secrets::error::SecretError;
use crate::tenancy::TenantId;

/// Directory of the data dir holding one marker file per tenant being deleted.
pub const OFFBOARDING_DIR: &str = "offboarding";
/// Directory of the data dir holding the session snapshots.
const SESSIONS_DIR: &str = "sessions";

/// What deleting a tenant removed. All zero (see [`Freed::is_empty`]) when there was nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Freed {
    /// The tenant.
    pub tenant: String,
    /// Events of its log (its last `tenant_seq`).
    pub events: u64,
    /// Sessions (one meta key each).
    pub sessions: u64,
    /// Idempotency records.
    pub idempotency_records: u64,
    /// Signed chain heads.
    pub signed_heads: u64,
    /// Every key of its log range (frames, session index and meta, idempotency, open
    /// sessions, signed heads).
    pub log_keys: u64,
    /// Bytes of those keys and values.
    pub log_bytes: u64,
    /// Read-model entries (usage rows, session states, last messages, the checkpoint).
    pub read_model_rows: u64,
    /// Snapshot files (`sessions/{tenant}/…/*.cbor`).
    pub snapshot_files: u64,
    /// Their bytes.
    pub snapshot_bytes: u64,
    /// Secret files (the tenant's namespace and its teams').
    pub secrets: u64,
    /// Their bytes (encrypted).
    pub secret_bytes: u64,
    /// Metrics series dropped (the running server's; 0 offline).
    pub metrics_series: u64,
    /// True when an earlier, interrupted deletion of this tenant was finished by this one.
    pub resumed: bool,
}

impl Freed {
    /// True when nothing was freed (a tenant already deleted, or that never had data).
    pub fn is_empty(&self) -> bool {
        self.log_keys
            + self.read_model_rows
            + self.snapshot_files
            + self.secrets
            + self.metrics_series
            == 0
    }

    /// The report as a two-column table (what, how many).
    pub fn table(&self) -> String {
        let rows = [
            ("events", self.events),
            ("sessions", self.sessions),
            ("idempotency records", self.idempotency_records),
            ("signed chain heads", self.signed_heads),
            ("log keys", self.log_keys),
            ("log bytes", self.log_bytes),
            ("read-model rows", self.read_model_rows),
            ("snapshot files", self.snapshot_files),
            ("snapshot bytes", self.snapshot_bytes),
            ("secrets", self.secrets),
            ("secret bytes", self.secret_bytes),
            ("metrics series", self.metrics_series),
        ];
        let mut out = format!("tenant {}\n", self.tenant);
        for (what, n) in rows {
            out.push_str(&format!("{what:<20} {n:>12}\n"));
        }
        out
    }
}

/// Why a tenant could not be (wholly) deleted. Whatever was removed before the error stays
/// removed; the marker stays, and running the deletion again finishes it.
#[derive(Debug, thiserror::Error)]
pub enum OffboardError {
    /// A cluster node that does not own the tenant (JetStream): only its writer may delete it.
    /// Delete on the owner (`tenantry cluster status` names it); nothing was changed.
    #[error(
        "tenant {0} is owned by another node of the cluster: delete it there (DELETE \
         /api/v1/tenants/{0}; `tenantry cluster status` names the owner); nothing was changed"
    )]
    NotOwner(TenantId),
    /// The marker file could not be written or removed.
    #[error("offboarding marker {path}: {source}")]
    Marker {
        /// The marker's path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Counting the tenant's log range failed.
    #[error("reading the tenant's log: {0}")]
    Read(#[from] ReadError),
    /// Removing the tenant's log range failed.
    #[error("deleting the tenant's log range: {0}")]
    Log(#[from] AppendError),
    /// Removing the read models failed.
    #[error("deleting the tenant's read models: {0}")]
    ReadModels(#[from] ProjectorError),
    /// Removing the snapshot files failed.
    #[error("deleting the tenant's snapshots: {0}")]
    Snapshots(#[from] SnapshotError),
    /// Removing the secrets failed.
    #[error("deleting the tenant's secrets: {0}")]
    Secrets(#[from] SecretError),
    /// Destroying the tenant's keys in the cluster's key stream failed.
    #[error("destroying the tenant's keys: {0}")]
    Keys(#[from] crate::events::keyring::KeyringError),
}

/// The marker of `tenant`'s deletion in `data_dir`.
fn marker(data_dir: &Path, tenant: &TenantId) -> PathBuf {
    data_dir.join(OFFBOARDING_DIR).join(tenant.as_str())
}

/// The tenants whose deletion was started in `data_dir` and not finished (a crash or an
/// error part-way). Names that are not tenant ids are skipped.
pub fn interrupted(data_dir: &Path) -> Vec<TenantId> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(OFFBOARDING_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<TenantId> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| TenantId::parse(e.file_name().to_str()?).ok())
        .collect();
    out.sort();
    out
}

/// Deletes `tenant`'s data from `log` (sled, or the JetStream stream and this node's cache),
/// `projector`'s read models and `data_dir`'s snapshots and secrets, in the order the module
/// doc gives. The caller makes sure nothing writes for `tenant` meanwhile (offline: the data
/// dir's lock, and with JetStream no live lease; `serve`: the runtime's
/// [`pause_tenant`](crate::actors::runtime::Runtime::pause_tenant)).
pub fn offboard_tenant(
    log: &EventLog,
    projector: &Projector,
    data_dir: &Path,
    tenant: &TenantId,
) -> Result<Freed, OffboardError> {
    if !log.owns(tenant) {
        return Err(OffboardError::NotOwner(tenant.clone()));
    }
    let marker = marker(data_dir, tenant);
    let marker_err = |source| OffboardError::Marker {
        path: marker.clone(),
        source,
    };
    let resumed = marker.exists();
    if !resumed {
        crate::private_fs::create_private_dir(&data_dir.join(OFFBOARDING_DIR))
            .map_err(marker_err)?;
        crate::private_fs::write_private(&marker, b"").map_err(marker_err)?;
    }
    let census = log.census(tenant)?;
    // Under the tenant's fold lock: the background fold must not take the read models (and
    // the snapshots) of the emptied log away from this deletion's count.
    let (_, read_model_rows) = projector.forget_tenant_after(tenant, || {
        log.delete_tenant_blocking(tenant)
            .map_err(OffboardError::from)
    })?;
    let snapshots = SnapshotStore::new(data_dir.join(SESSIONS_DIR));
    let (snapshot_files, snapshot_bytes) = snapshots.remove_tenant_counted(tenant)?;
    let (secrets, secret_bytes) = crate::secrets::store::remove_tenant_secrets(data_dir, tenant)?;
    // A served tenant may be written again: its keys must be made afresh, not taken from cache.
    // On a `[cluster]` its KEKs live in the key stream, erased here.
    let shared_secrets = log.destroy_tenant_keys(tenant)?;
    let secrets = secrets + shared_secrets;
    std::fs::remove_file(&marker).map_err(marker_err)?;
    if let Some(dir) = marker.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(marker_err)?;
    }
    Ok(Freed {
        tenant: tenant.to_string(),
        events: census.events,
        sessions: census.sessions,
        idempotency_records: census.idempotency_records,
        signed_heads: census.signed_heads,
        log_keys: census.keys,
        log_bytes: census.bytes,
        read_model_rows,
        snapshot_files,
        snapshot_bytes,
        secrets,
        secret_bytes,
        metrics_series: 0,
        resumed,
    })
}

#[cfg(test)]
mod tests;
