//! `[tenants.<id>] retention`: how long a tenant's events are kept in the log (docs/config.md).
//!
//! A humantime duration of at least [`RETENTION_MIN`]; absent means the events are kept for
//! ever. Only the sled backend trims (a JetStream stream keeps every record of a tenant's
//! subject, and its records are the tenant's history), so `retention` with
//! `log.backend = "jetstream"` is refused at load.

use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::validate::{invalid, parse_duration};

/// Shortest `retention`: a trim runs hourly, so a shorter retention would not be kept anyway.
pub const RETENTION_MIN: Duration = Duration::from_secs(3600);
/// Longest `retention` (100 years): far beyond any policy, and safe to subtract from a clock.
pub const RETENTION_MAX: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `field` (`tenants.<id>.retention`): a humantime duration within
/// [`RETENTION_MIN`]..=[`RETENTION_MAX`].
pub(super) fn retention(path: &Path, field: &str, raw: &str) -> Result<Duration, ConfigError> {
    let keep = parse_duration(path, field, raw, "\"90d\" or \"720h\"")?;
    if !(RETENTION_MIN..=RETENTION_MAX).contains(&keep) {
        return Err(invalid(
            path,
            field,
            format!(
                "{raw:?} is out of range: keep events between {} and {}, e.g. \"90d\"; remove \
                 the key to keep them for ever",
                humantime::format_duration(RETENTION_MIN),
                humantime::format_duration(RETENTION_MAX)
            ),
        ));
    }
    Ok(keep)
}

/// With the JetStream backend no tenant may have a retention: the stream would keep what the
/// cache trims, and the next reconcile would bring it back.
pub(super) fn check_backend(
    path: &Path,
    backend: super::LogBackend,
    tenants: &std::collections::BTreeMap<crate::tenancy::TenantId, super::TenantConfig>,
) -> Result<(), ConfigError> {
    if backend != super::LogBackend::JetStream {
        return Ok(());
    }
    match tenants.values().find(|t| t.retention.is_some()) {
        None => Ok(()),
        Some(t) => Err(invalid(
            path,
            &format!("tenants.{}.retention", t.id),
            "retention is supported with log.backend = \"sled\" only (a JetStream stream keeps \
             every record); remove the key, or limit the stream's age in NATS"
                .to_owned(),
        )),
    }
}

#[cfg(test)]
mod tests;
