//! `[server]` keys that bound `GET /api/v1/audit/export`: how many run at once (over all
//! tenants and per tenant), and how long one may wait for a client that stopped reading.
//!
//! Invariant: a loaded [`ExportLimits`] has `1 <= per_tenant_max <= max <= EXPORTS_MAX_MAX` and a
//! write timeout within [`EXPORT_WRITE_TIMEOUT_MIN`]`..=`[`EXPORT_WRITE_TIMEOUT_MAX`].

use std::path::Path;
use std::time::Duration;

use super::raw::ServerSection;
use super::validate::{invalid, parse_duration};
use super::ConfigError;

/// `server.exports_max` when absent: exports running at once over all tenants. Each holds one
/// thread and up to a megabyte of chunks in flight.
pub const DEFAULT_EXPORTS_MAX: usize = 8;
/// Largest `server.exports_max`.
pub const EXPORTS_MAX_MAX: usize = 256;
/// `server.exports_per_tenant_max` when absent: exports one tenant may run at once.
pub const DEFAULT_EXPORTS_PER_TENANT_MAX: usize = 2;
/// `server.export_write_timeout` when absent: how long an export waits for its client to take
/// the next chunk before it is ended.
pub const DEFAULT_EXPORT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest `server.export_write_timeout`.
pub const EXPORT_WRITE_TIMEOUT_MIN: Duration = Duration::from_millis(100);
/// Longest `server.export_write_timeout`.
pub const EXPORT_WRITE_TIMEOUT_MAX: Duration = Duration::from_secs(3600);

/// Bounds on concurrent audit exports over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportLimits {
    /// Exports at once over all tenants; past it, 429.
    pub max: usize,
    /// Exports at once per tenant; past it, 429.
    pub per_tenant_max: usize,
    /// An export whose client takes no chunk for this long is ended and frees its slot.
    pub write_timeout: Duration,
}

impl Default for ExportLimits {
    fn default() -> ExportLimits {
        ExportLimits {
            max: DEFAULT_EXPORTS_MAX,
            per_tenant_max: DEFAULT_EXPORTS_PER_TENANT_MAX,
            write_timeout: DEFAULT_EXPORT_WRITE_TIMEOUT,
        }
    }
}

/// Reads and checks the export keys of `[server]`.
pub(super) fn export_limits(
    path: &Path,
    server: &ServerSection,
) -> Result<ExportLimits, ConfigError> {
    let max = server.exports_max.unwrap_or(DEFAULT_EXPORTS_MAX);
    if !(1..=EXPORTS_MAX_MAX).contains(&max) {
        return Err(invalid(
            path,
            "server.exports_max",
            format!("{max} is out of range: give 1..={EXPORTS_MAX_MAX} exports at once"),
        ));
    }
    let per_tenant_max = server
        .exports_per_tenant_max
        .unwrap_or(DEFAULT_EXPORTS_PER_TENANT_MAX.min(max));
    if !(1..=max).contains(&per_tenant_max) {
        return Err(invalid(
            path,
            "server.exports_per_tenant_max",
            format!(
                "{per_tenant_max} is out of range: give 1..={max} (at most server.exports_max)"
            ),
        ));
    }
    let write_timeout = match &server.export_write_timeout {
        None => DEFAULT_EXPORT_WRITE_TIMEOUT,
        Some(raw) => {
            const FIELD: &str = "server.export_write_timeout";
            let timeout = parse_duration(path, FIELD, raw, "\"30s\"")?;
            if !(EXPORT_WRITE_TIMEOUT_MIN..=EXPORT_WRITE_TIMEOUT_MAX).contains(&timeout) {
                return Err(invalid(
                    path,
                    FIELD,
                    format!(
                        "{raw:?} is out of range: give {}..={}",
                        humantime::format_duration(EXPORT_WRITE_TIMEOUT_MIN),
                        humantime::format_duration(EXPORT_WRITE_TIMEOUT_MAX)
                    ),
                ));
            }
            timeout
        }
    };
    Ok(ExportLimits {
        max,
        per_tenant_max,
        write_timeout,
    })
}

#[cfg(test)]
mod tests;
