//! `[tenants.<id>] retention`: how long a tenant's events are kept in the log (docs/config.md).
//!
//! A humantime duration of at least [`RETENTION_MIN`]; absent means the events are kept for
//! ever. Both backends trim (with JetStream, the trim reaches the stream and every node's cache:
//! docs/storage.md#retention).

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

#[cfg(test)]
mod tests;
