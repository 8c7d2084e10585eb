//! Audit tools over the event log (docs/audit.md, docs/events.md): export a tenant's audit trail, verify an
//! export or the log itself against the hash chain, and replay history (a timeline, a session's
//! state at a seq, a what-if re-run of a session against another flow file).
//!
//! The chain is `hash_i = SHA-256(hash_{i-1} || body_i)` per tenant, from 32 zero bytes, over
//! each event's MessagePack body *as stored*. An export line carries that body (base64) beside
//! the readable fields, so a verifier checks the chain on the bytes themselves, decodes the body
//! and then checks that every readable field says what the hashed body says. It never needs to
//! re-encode an event, which keeps exports verifiable once payloads are encrypted per session
//! (crypto-shredding, a planned data-lifecycle feature).
//!
//! Invariants:
//! - Every read goes through [`EventLog::tenant`] or [`EventLog::scope`]: an export or replay of
//!   one tenant never sees another tenant's records, whatever their ids.
//! - Memory is bounded by one log frame or one export line (an export: the few batches of frames
//!   its reading thread is ahead, `export::EXPORT_BATCHES_IN_FLIGHT`; a log verification: one
//!   counter per session), never by the size of a tenant.
//! - Nothing is exported without a check: the body written for an event is re-encoded from the
//!   decoded event and must be the bytes the log stored and hashed (so it chains); otherwise
//!   the export stops with an error naming the `tenant_seq`, rather than write a line that would
//!   not verify.
//! - Audit commands never write to the log (an export signs its tail into its manifest only;
//!   the signed heads stored in the log are `serve`'s, through [`anchor::sign_and_store`]).

pub mod anchor;
pub mod export;
pub mod record;
pub mod replay;
pub mod verify;
pub mod verify_snapshots;
pub mod what_if;

#[cfg(test)]
mod fixture;

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::config::flow::FlowError;
use crate::config::Config;
use crate::events::log::{EventLog, OpenError, ReadError};

/// Why an audit command could not do its work. Problems found *in* the audited data (tampering,
/// gaps) are not errors: they are a [`verify::Verdict`].
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A running server holds the data dir. Stop it, or use the HTTP API instead.
    #[error(
        "the data dir {} is in use by a running server; stop it or use the HTTP API",
        .0.display()
    )]
    InUse(PathBuf),
    /// The config's data dir holds no event log. Check `server.data_dir` (and `--config`).
    #[error("no event log at {}: check server.data_dir in the config", .0.display())]
    NoLog(PathBuf),
    /// The log's files could not be opened (corrupt, or another sled version).
    #[error(transparent)]
    Open(OpenError),
    /// A stored record could not be read: the log is damaged at the named position.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The event's stored body cannot be reproduced from its decoded form (written by an older
    /// schema version), so the export would carry bytes that do not verify. Nothing past this
    /// event was exported; this needs a log read that returns stored bytes.
    #[error(
        "tenant_seq {tenant_seq}: the stored body cannot be reproduced from the decoded event \
         (older schema version?); refusing to export bytes that would not verify"
    )]
    Reencode {
        /// The event that could not be reproduced.
        tenant_seq: u64,
    },
    /// Reading or writing a file or stream failed.
    // The underlying errors are shown in the message and deliberately not exposed as `source`,
    // so that `{:#}` chains (anyhow in `main`) do not print them twice.
    #[error("{what}: {error}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Writing CSV failed (in practice: the output stream failed).
    #[error("writing CSV: {0}")]
    Csv(csv::Error),
    /// The export was stopped (SIGINT, or the consumer went away) before it completed. The
    /// output has no manifest, so it verifies as incomplete.
    #[error(
        "export interrupted; the output is incomplete (no manifest); resume with \
         --from-seq {next_tenant_seq} (and the same filters)"
    )]
    Interrupted {
        /// The first `tenant_seq` not exported.
        next_tenant_seq: u64,
    },
    /// The export failed part-way. The output has no manifest, so it verifies as incomplete.
    #[error(
        "{cause}; the output is incomplete (no manifest); resume with --from-seq \
         {next_tenant_seq} (and the same filters)"
    )]
    Partial {
        /// The first `tenant_seq` not fully handed to the output.
        next_tenant_seq: u64,
        /// What went wrong.
        cause: Box<AuditError>,
    },
    /// The request names something that does not exist or does not fit (an unknown session, a
    /// seq past a session's end). The caller's to fix.
    #[error("{0}")]
    Usage(String),
    /// A signed chain head could not be read, or the chain head key used.
    #[error(transparent)]
    Anchor(#[from] anchor::AnchorError),
    /// The what-if flow file cannot be used.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl AuditError {
    /// The `--from-seq` that resumes an export stopped by this error, if it stopped one.
    pub fn resume_from_seq(&self) -> Option<u64> {
        match self {
            AuditError::Interrupted { next_tenant_seq }
            | AuditError::Partial {
                next_tenant_seq, ..
            } => Some(*next_tenant_seq),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, error: std::io::Error) -> AuditError {
        AuditError::Io {
            what: what.into(),
            error,
        }
    }
}

impl From<csv::Error> for AuditError {
    fn from(e: csv::Error) -> AuditError {
        AuditError::Csv(e)
    }
}

/// Opens `{data_dir}/log` of `config` for an offline command.
///
/// A missing log is [`AuditError::NoLog`] rather than a new empty log: a typo in `data_dir` must
/// not look like a tenant with no events. A log held by a server is [`AuditError::InUse`] (after
/// the log's own short wait for the lock).
///
/// With the JetStream backend the log is the stream: its cache `{data_dir}/log-offline` is made
/// when missing (see [`crate::cluster`]).
pub fn open_log(config: &Config) -> Result<EventLog, AuditError> {
    let data_dir = &config.server().data_dir;
    let path = crate::cluster::log_dir(config, crate::cluster::Opener::Offline);
    let replicated = config.log().backend == crate::config::LogBackend::JetStream;
    if !replicated && !path.is_dir() {
        return Err(AuditError::NoLog(path));
    }
    let opened = crate::cluster::open_log(config, crate::cluster::Opener::Offline);
    opened.map_err(|e| offline_open_error(data_dir, e))
}

/// Opens a sled log at `path` of `data_dir` for an offline command.
#[cfg(test)]
fn open_log_at(data_dir: &Path, path: &Path) -> Result<EventLog, AuditError> {
    let opened = EventLog::open(path, &crate::events::log::LogOptions::default());
    opened.map_err(|e| offline_open_error(data_dir, e))
}

/// A log held by a server is [`AuditError::InUse`], naming the data dir.
fn offline_open_error(data_dir: &Path, e: OpenError) -> AuditError {
    match e {
        OpenError::InUse(_) => AuditError::InUse(data_dir.to_owned()),
        other => AuditError::Open(other),
    }
}

/// A `--since`/`--until` value that is neither RFC 3339 nor unix milliseconds.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid time {value:?}: expected RFC 3339 in UTC (e.g. 2026-11-23T10:00:00Z, \
     fractional seconds allowed) or unix milliseconds (e.g. 1795428000000): {reason}"
)]
pub struct TimeError {
    /// The rejected input, shortened.
    pub value: String,
    /// What the parser said.
    pub reason: String,
}

/// First unix ms that RFC 3339 (four-digit years) cannot show: 10000-01-01T00:00:00Z.
pub const ISO_TIME_MS_END: u64 = 253_402_300_800_000;

/// Parses a command-line time: unix milliseconds (digits only) or RFC 3339 in UTC.
pub fn parse_time(raw: &str) -> Result<u64, TimeError> {
    const SHOWN_CHARS_MAX: usize = 64;
    let error = |reason: String| TimeError {
        value: raw.chars().take(SHOWN_CHARS_MAX).collect(),
        reason,
    };
    let raw = raw.trim();
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.parse::<u64>().map_err(|e| error(e.to_string()));
    }
    let at = humantime::parse_rfc3339(raw).map_err(|e| error(e.to_string()))?;
    let since_epoch = at
        .duration_since(UNIX_EPOCH)
        .map_err(|_| error("before 1970".to_owned()))?;
    u64::try_from(since_epoch.as_millis()).map_err(|e| error(e.to_string()))
}

/// Formats unix ms as RFC 3339 UTC with milliseconds (`2026-11-23T10:00:00.123Z`).
///
/// Times past year 9999 (which RFC 3339 cannot show, and no honest clock produced) are shown
/// as `unix-ms:{ms}` instead.
pub fn format_time(at_ms: u64) -> String {
    if at_ms >= ISO_TIME_MS_END {
        return format!("unix-ms:{at_ms}");
    }
    let at = UNIX_EPOCH + Duration::from_millis(at_ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Whether `at_ms` lies in `[since, until)`; an absent bound does not limit.
fn in_window(at_ms: u64, since_ms: Option<u64>, until_ms: Option<u64>) -> bool {
    since_ms.is_none_or(|since| at_ms >= since) && until_ms.is_none_or(|until| at_ms < until)
}

#[cfg(test)]
mod tests;
