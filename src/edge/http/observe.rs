//! The per-request log line and error metrics: what the request middleware writes after each
//! response, bounded so that no client can flood the log.
//!
//! Invariants:
//! - What is logged of a request's path is at most [`LOGGED_PATH_BYTES_MAX`] bytes (cut on a
//!   char boundary, with the full length noted), whatever the client sends.
//! - Refused requests (4xx, and 5xx that refuse rather than fail) are counted in the metrics
//!   every time, but logged at most [`REFUSED_LOG_LINES_PER_S`] times a second; the next line
//!   logged says how many were left out. Failures (our 5xx) are always logged.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::dev::ServiceResponse;
use actix_web::HttpMessage;

use super::error::ErrorCode;
use super::metrics::HttpMetrics;
use crate::edge::metrics::UNKNOWN_TENANT;
use crate::tenancy::TenantId;

/// Most bytes of a request path written to the log (the request's span carries it).
pub const LOGGED_PATH_BYTES_MAX: usize = 256;
/// Most log lines about refused requests per second; the rest are only counted.
pub const REFUSED_LOG_LINES_PER_S: u32 = 20;
/// Probe routes: their 503 is an answer ("not ready"), not a failed request, so it is neither
/// counted as an error nor logged above debug (a probe polls every few seconds).
const PROBE_PATHS: [&str; 2] = ["/healthz", "/readyz"];
/// The window [`REFUSED_LOG_LINES_PER_S`] counts over.
const REFUSED_LOG_WINDOW: Duration = Duration::from_secs(1);

/// `path` as logged: whole when short, else its first [`LOGGED_PATH_BYTES_MAX`] bytes (less,
/// down to a char boundary) followed by `…(N bytes)`.
pub fn logged_path(path: &str) -> Cow<'_, str> {
    if path.len() <= LOGGED_PATH_BYTES_MAX {
        return Cow::Borrowed(path);
    }
    let mut cut = LOGGED_PATH_BYTES_MAX;
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}…({} bytes)", &path[..cut], path.len()))
}

/// The tenant label of a request, set once its token is valid and names a served tenant.
#[derive(Clone)]
pub(super) struct TenantLabel(pub(super) TenantId);

/// A budget of log lines per window; what it refuses is counted for the next line it allows.
pub struct LogBudget {
    per_window: u32,
    window: Duration,
    state: Mutex<BudgetState>,
}

struct BudgetState {
    window_start: Instant,
    used: u32,
    left_out: u64,
}

impl LogBudget {
    /// At most `per_window` lines per `window`.
    pub fn new(per_window: u32, window: Duration) -> LogBudget {
        LogBudget {
            per_window,
            window,
            state: Mutex::new(BudgetState {
                window_start: Instant::now(),
                used: 0,
                left_out: 0,
            }),
        }
    }

    /// `Some(lines left out since the last allowed one)` if a line may be written now, else
    /// `None` (and the line is counted as left out).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.saturating_duration_since(state.window_start) >= self.window {
            state.window_start = now;
            state.used = 0;
        }
        if state.used < self.per_window {
            state.used += 1;
            Some(std::mem::take(&mut state.left_out))
        } else {
            state.left_out += 1;
            None
        }
    }
}

impl Default for LogBudget {
    fn default() -> LogBudget {
        LogBudget::new(REFUSED_LOG_LINES_PER_S, REFUSED_LOG_WINDOW)
    }
}

/// After a request: count an error response in `metrics` and write the request's log line
/// (within `refused_log`, for refusals).
pub(super) fn observe(
    response: &ServiceResponse,
    started: Instant,
    metrics: &HttpMetrics,
    refused_log: &LogBudget,
) {
    let status = response.status();
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let probe = PROBE_PATHS.contains(&response.request().path());
    if probe || (!status.is_client_error() && !status.is_server_error()) {
        tracing::debug!(status = status.as_u16(), elapsed_ms, "request");
        return;
    }
    let code = response
        .response()
        .extensions()
        .get::<ErrorCode>()
        .copied()
        .unwrap_or(ErrorCode {
            code: "http_error",
            rejection: false,
        });
    let tenant = response
        .request()
        .extensions()
        .get::<TenantLabel>()
        .map(|label| label.0.to_string());
    let tenant = tenant.as_deref().unwrap_or(UNKNOWN_TENANT);
    metrics.error(tenant, code.code, status.as_u16(), code.rejection);
    let failure = status.is_server_error() && !code.rejection;
    if status.as_u16() == 429 {
        tracing::debug!(
            status = status.as_u16(),
            code = code.code,
            elapsed_ms,
            "request refused"
        );
    } else if failure {
        // Our fault: always logged (the error itself was logged in `http::error`).
        tracing::info!(
            status = status.as_u16(),
            code = code.code,
            elapsed_ms,
            "request failed"
        );
    } else if let Some(left_out) = refused_log.allow(Instant::now()) {
        tracing::info!(
            status = status.as_u16(),
            code = code.code,
            elapsed_ms,
            left_out,
            "request failed"
        );
    } else {
        metrics.log_line_left_out();
    }
}

#[cfg(test)]
mod tests;
