//! `[runtime]` values that take more than a default: durations and the live-session bounds.
//! Every error names its field and what to write instead.

use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::raw::RuntimeSection;
use super::validate::{at_least_one, invalid, parse_duration};

/// `runtime.idempotency_window` when absent: how long a message id is remembered, so that a
/// retry within it gets the first answer.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Longest `runtime.idempotency_window`: records are kept (and scanned by the purge) this long.
pub const IDEMPOTENCY_WINDOW_MAX: Duration = Duration::from_secs(366 * 24 * 60 * 60);
/// Shortest `runtime.idempotency_window`: a client's retries come within minutes; a shorter
/// window would let a slow retry append its message twice.
pub const IDEMPOTENCY_WINDOW_MIN: Duration = Duration::from_secs(60 * 60);
/// `runtime.sessions_max` when absent: live session actors over all tenants. About 5.5 kB
/// each with a small state (measured: 60,000 idle sessions held 330 MB), so ~275 MB.
pub const DEFAULT_SESSIONS_MAX: usize = 50_000;
/// `runtime.tenant_sessions_max` when absent: half of `sessions_max`, so one tenant opening
/// sessions without end leaves the other half to everyone else.
pub const DEFAULT_TENANT_SESSIONS_SHARE_PERCENT: usize = 50;

/// The live-session bounds: `(sessions_max, tenant_sessions_max)`, `1 <= tenant <= total`.
pub(super) fn session_limits(
    path: &Path,
    runtime: &RuntimeSection,
) -> Result<(usize, usize), ConfigError> {
    let total = at_least_one(
        path,
        "runtime.sessions_max",
        runtime.sessions_max.unwrap_or(DEFAULT_SESSIONS_MAX),
        "live session actors over all tenants",
    )?;
    let share = runtime
        .tenant_sessions_max
        .unwrap_or((total * DEFAULT_TENANT_SESSIONS_SHARE_PERCENT / 100).max(1));
    if share == 0 || share > total {
        return Err(invalid(
            path,
            "runtime.tenant_sessions_max",
            format!("must be 1..={total} (runtime.sessions_max), got {share}"),
        ));
    }
    Ok((total, share))
}

/// `runtime.idempotency_window`: a humantime duration within
/// [`IDEMPOTENCY_WINDOW_MIN`]..=[`IDEMPOTENCY_WINDOW_MAX`].
pub(super) fn idempotency_window(path: &Path, raw: Option<&str>) -> Result<Duration, ConfigError> {
    const FIELD: &str = "runtime.idempotency_window";
    let Some(raw) = raw else {
        return Ok(DEFAULT_IDEMPOTENCY_WINDOW);
    };
    let window = parse_duration(path, FIELD, raw, "\"7days\" or \"48h\"")?;
    if !(IDEMPOTENCY_WINDOW_MIN..=IDEMPOTENCY_WINDOW_MAX).contains(&window) {
        return Err(invalid(
            path,
            FIELD,
            format!(
                "must be between {} and {}, e.g. \"7days\"",
                humantime::format_duration(IDEMPOTENCY_WINDOW_MIN),
                humantime::format_duration(IDEMPOTENCY_WINDOW_MAX)
            ),
        ));
    }
    Ok(window)
}

/// `runtime.session_idle_timeout`: a humantime duration in `(0, SESSION_IDLE_TIMEOUT_MAX]`.
pub(super) fn parse_idle_timeout(path: &Path, raw: &str) -> Result<Duration, ConfigError> {
    const FIELD: &str = "runtime.session_idle_timeout";
    let timeout = parse_duration(path, FIELD, raw, "\"10m\" or \"90s\"")?;
    if timeout.is_zero() {
        return Err(invalid(
            path,
            FIELD,
            "must be greater than zero, e.g. \"10m\"".to_owned(),
        ));
    }
    if timeout > super::SESSION_IDLE_TIMEOUT_MAX {
        return Err(invalid(
            path,
            FIELD,
            format!(
                "must be at most {}",
                humantime::format_duration(super::SESSION_IDLE_TIMEOUT_MAX)
            ),
        ));
    }
    Ok(timeout)
}
