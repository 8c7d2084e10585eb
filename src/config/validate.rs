//! Checks of single values of the config files, each turning a raw section or value into its
//! validated form or a [`ConfigError`] naming the file, the field and the fix. Shared by
//! loading and by the per-section files (`merge`, `nats`, `runtime`, `security`, `exports`).

use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::path::Path;

use super::error::ConfigError;
use super::files::resolve;
use super::raw::{RuntimeSection, ServerSection};
use super::{
    exports, runtime, security, RuntimeConfig, ServerConfig, DEFAULT_DATA_DIR,
    DEFAULT_HTTP_BODY_BYTES_MAX, DEFAULT_INFLIGHT_MAX, DEFAULT_LISTEN, DEFAULT_RATE_LIMIT_PER_S,
    DEFAULT_SESSION_IDLE_TIMEOUT, DEFAULT_SNAPSHOT_EVERY, HTTP_BODY_BYTES_MAX, HTTP_BODY_BYTES_MIN,
    HTTP_WORKERS_MAX, NAME_BYTES_MAX, VALUE_BYTES_MAX,
};

/// `[server]`, checked, with defaults applied and its paths resolved.
pub(super) fn server_config(
    path: &Path,
    server: &ServerSection,
) -> Result<ServerConfig, ConfigError> {
    let data_dir = match &server.data_dir {
        Some(dir) => {
            check_path(path, "server.data_dir", dir)?;
            resolve(path, dir)
        }
        None => resolve(path, Path::new(DEFAULT_DATA_DIR)),
    };
    let rate_limit_per_s = match server.rate_limit_per_s {
        Some(rate) => check_requests(path, "server.rate_limit_per_s", rate, RATE_WHAT)?,
        None => DEFAULT_RATE_LIMIT_PER_S,
    };
    let rate_limit_burst = server
        .rate_limit_burst
        .map(|burst| check_requests(path, "server.rate_limit_burst", burst, BURST_WHAT))
        .transpose()?;
    let http_body_bytes_max = match server.http_body_bytes_max {
        None => DEFAULT_HTTP_BODY_BYTES_MAX,
        Some(raw) => check_count(
            path,
            "server.http_body_bytes_max",
            raw,
            HTTP_BODY_BYTES_MIN..=HTTP_BODY_BYTES_MAX,
            "bytes",
            &DEFAULT_HTTP_BODY_BYTES_MAX.to_string(),
        )?,
    };
    let http_workers = match server.http_workers {
        None => default_http_workers(),
        Some(raw) => check_count(
            path,
            "server.http_workers",
            raw,
            1..=HTTP_WORKERS_MAX,
            "threads",
            &format!("one per core ({})", default_http_workers()),
        )?,
    };
    Ok(ServerConfig {
        listen: server.listen.unwrap_or(DEFAULT_LISTEN),
        metrics_listen: security::metrics_listen(path, server.metrics_listen.as_deref())?,
        data_dir,
        rate_limit_per_s,
        rate_limit_burst,
        http_body_bytes_max,
        http_workers,
        exports: exports::export_limits(path, server)?,
    })
}

/// `server.http_workers` when absent: one per core, as many as the runtime's arbiters.
pub(super) fn default_http_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(HTTP_WORKERS_MAX)
}

/// `[runtime]`, checked, with defaults applied.
pub(super) fn runtime_config(
    path: &Path,
    runtime: RuntimeSection,
) -> Result<RuntimeConfig, ConfigError> {
    let session_idle_timeout = match &runtime.session_idle_timeout {
        Some(raw) => runtime::parse_idle_timeout(path, raw)?,
        None => DEFAULT_SESSION_IDLE_TIMEOUT,
    };
    let snapshot_every = at_least_one(
        path,
        "runtime.snapshot_every",
        runtime.snapshot_every.unwrap_or(DEFAULT_SNAPSHOT_EVERY),
        "events between snapshots",
    )?;
    let inflight_max = at_least_one(
        path,
        "runtime.inflight_max",
        runtime.inflight_max.unwrap_or(DEFAULT_INFLIGHT_MAX),
        "messages in flight before new ones are refused",
    )?;
    let part_of_inflight = |field: &str, value: Option<usize>, default: &str| {
        value
            .map(|n| {
                if (1..=inflight_max).contains(&n) {
                    Ok(n)
                } else {
                    Err(invalid(
                        path,
                        field,
                        format!(
                            "{n} is out of range: give 1..={inflight_max} (runtime.inflight_max), \
                             or leave it out for {default}"
                        ),
                    ))
                }
            })
            .transpose()
    };
    let inflight_per_tenant_max = part_of_inflight(
        "runtime.inflight_per_tenant_max",
        runtime.inflight_per_tenant_max,
        "half of inflight_max",
    )?;
    let running_max = part_of_inflight(
        "runtime.running_max",
        runtime.running_max,
        "a quarter of inflight_max",
    )?;
    let (sessions_max, tenant_sessions_max) = runtime::session_limits(path, &runtime)?;
    let idempotency_window =
        runtime::idempotency_window(path, runtime.idempotency_window.as_deref())?;
    Ok(RuntimeConfig {
        session_idle_timeout,
        snapshot_every,
        inflight_max,
        inflight_per_tenant_max,
        running_max,
        sessions_max,
        tenant_sessions_max,
        idempotency_window,
    })
}

/// Builds a [`ConfigError::Invalid`].
pub(super) fn invalid(path: &Path, field: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        field: field.to_owned(),
        problem,
    }
}

/// A count given as a TOML integer: within `range`, else an error naming `field`, the range in
/// `unit`s and what leaving it out gives (`default`).
pub(super) fn check_count<N: TryInto<usize> + Copy + std::fmt::Display>(
    path: &Path,
    field: &str,
    raw: N,
    range: RangeInclusive<usize>,
    unit: &str,
    default: &str,
) -> Result<usize, ConfigError> {
    raw.try_into()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            invalid(
                path,
                field,
                format!(
                    "{raw} is out of range: give {}..={} {unit}, or leave it out for {default}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// A name-like string (display name, provider, URL, settings key): not blank, at most
/// [`NAME_BYTES_MAX`] bytes.
pub(super) fn check_name(path: &Path, field: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(path, field, "must not be empty".to_owned()));
    }
    if value.len() > NAME_BYTES_MAX {
        return Err(invalid(
            path,
            field,
            format!("must be at most {NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(value)
}

/// A free-form value: at most [`VALUE_BYTES_MAX`] bytes.
pub(super) fn check_value(path: &Path, field: &str, value: String) -> Result<String, ConfigError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(invalid(
            path,
            field,
            format!("must be at most {VALUE_BYTES_MAX} bytes"),
        ));
    }
    Ok(value)
}

/// A quota's rate (requests per second) or burst (requests at once): at least 1; `what` says
/// which, and what leaving it out means.
pub(super) fn check_requests(
    path: &Path,
    field: &str,
    value: u32,
    what: &str,
) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(value)
        .ok_or_else(|| invalid(path, field, format!("must be at least 1 ({what})")))
}

/// [`check_requests`]' `what` for `rate_limit_per_s`.
pub(super) const RATE_WHAT: &str =
    "requests per second; burst the same unless rate_limit_burst is set";
/// [`check_requests`]' `what` for `rate_limit_burst`.
pub(super) const BURST_WHAT: &str =
    "requests a tenant may make at once; leave it out for the tenant's rate_limit_per_s";

/// A count that must be at least 1; `what` says what it counts.
pub(super) fn at_least_one<T: Default + PartialEq>(
    path: &Path,
    field: &str,
    value: T,
    what: &str,
) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(invalid(path, field, format!("must be at least 1 ({what})")));
    }
    Ok(value)
}

/// A humantime duration (`30s`, `7days`); `example` shows the field's kind of value.
pub(super) fn parse_duration(
    path: &Path,
    field: &str,
    raw: &str,
    example: &str,
) -> Result<std::time::Duration, ConfigError> {
    humantime::parse_duration(raw).map_err(|err| {
        invalid(
            path,
            field,
            format!("invalid duration {raw:?} ({err}); write e.g. {example}"),
        )
    })
}

/// A path named in a file: not empty (which would silently mean "the directory of this file").
pub(super) fn check_path(path: &Path, field: &str, named: &Path) -> Result<(), ConfigError> {
    if named.as_os_str().is_empty() {
        return Err(invalid(
            path,
            field,
            "the path is empty; give a path".to_owned(),
        ));
    }
    Ok(())
}
