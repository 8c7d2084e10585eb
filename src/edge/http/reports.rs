//! The reporting routes of the HTTP API: `GET /api/v1/usage` and `GET /api/v1/audit/export`.
//!
//! Both are bounded by the caller's tenant, the env of its token and its team (`X-Team-ID` / the
//! team claim), which must be one of the tenant's teams (else 404). The export streams the same
//! `tenantry-audit/1` format as `tenantry export` (with `--team` when a team applies), produced
//! on a thread of its own into a bounded channel, so memory stays flat however large the tenant
//! is.
//!
//! Invariants (nothing a client does pins a thread):
//! - At most `server.exports_max` exports run at once, and `server.exports_per_tenant_max` per
//!   tenant; past either, 429 with `Retry-After` (counted as `exports_busy` in the metrics).
//! - An export whose client takes no chunk for `server.export_write_timeout` is ended: its
//!   thread stops, its slot is freed and its buffered chunks are dropped; so is one whose client
//!   went away. A response that ends early is aborted, never closed as if complete.
//! - A client ending its own export (gone, stalled) is logged at debug only, so that opening and
//!   dropping exports cannot flood the log; a failure of ours is a warning.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::error::ApiError;
use super::export_slots::ExportSlot;
use super::state::{blocking, read_team, EdgeState};
use crate::audit::export::{export, ExportFormat, ExportOptions};
use crate::edge::auth::Caller;
use crate::projections::projector::{day_number, UsageBy};

/// Chunks of an export in flight between the exporting thread and the response.
const EXPORT_CHUNKS_IN_FLIGHT: usize = 16;
/// Bytes per chunk of a streamed export.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
/// Longest pause of an exporting thread waiting for room in the channel (it polls, doubling
/// from 1 ms), so a client that reads again is served within this.
const EXPORT_SEND_POLL_MAX: Duration = Duration::from_millis(10);

/// The values of `?by=` (the first is the default) and what each groups usage by.
const USAGE_BY: &[(&str, UsageBy)] = &[
    ("team", UsageBy::Team),
    ("channel", UsageBy::Channel),
    ("day", UsageBy::Day),
];

/// The values of `?format=` (the first is the default), each with its content type.
const EXPORT_FORMATS: &[(&str, (ExportFormat, &str))] = &[
    ("jsonl", (ExportFormat::Jsonl, "application/x-ndjson")),
    ("csv", (ExportFormat::Csv, "text/csv; charset=utf-8")),
];

/// The entry of `table` named by query parameter `field` (`raw`), or the first when it is
/// absent; any other value is refused with `allowed`.
fn choice<T: Copy>(
    field: &'static str,
    raw: Option<&str>,
    table: &[(&'static str, T)],
    allowed: &'static str,
) -> Result<(&'static str, T), ApiError> {
    let wanted = raw.or_else(|| table.first().map(|(name, _)| *name));
    table
        .iter()
        .find(|(name, _)| Some(*name) == wanted)
        .copied()
        .ok_or_else(|| ApiError::field(field, allowed))
}

#[derive(Deserialize)]
pub(super) struct UsageQuery {
    by: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// The days of `?since=&until=` (UTC dates, both inclusive; an absent end does not limit).
fn usage_days(query: &UsageQuery) -> Result<std::ops::RangeInclusive<u32>, ApiError> {
    let day = |field: &'static str, raw: &Option<String>| {
        raw.as_deref()
            .map(day_number)
            .transpose()
            .map_err(|e| ApiError::field(field, e))
    };
    let since = day("since", &query.since)?.unwrap_or(0);
    let until = day("until", &query.until)?.unwrap_or(u32::MAX);
    if since > until {
        return Err(ApiError::field("since", "must not be after until"));
    }
    Ok(since..=until)
}

/// `GET /api/v1/usage?by=team|channel|day&since=YYYY-MM-DD&until=YYYY-MM-DD`: the tenant's
/// usage in the token's env (and team, when one applies: its rows only, by day too), on the UTC
/// days from `since` to `until` (both inclusive) when given.
pub(super) async fn usage(
    caller: Caller,
    query: web::Query<UsageQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let (by_name, by) = choice(
        "by",
        query.by.as_deref(),
        USAGE_BY,
        "must be team, channel or day",
    )?;
    let days = usage_days(&query)?;
    let team = read_team(&state, &caller)?;
    let (caller, rows) = blocking(state.clone(), move |state| {
        let projector = state.projector();
        let (tenant, env) = (&caller.tenant, Some(&caller.env));
        let rows = projector
            .catch_up(state.runtime().log(), tenant, &mut |_| {})
            .and_then(|_| projector.usage_days(tenant, env, team.as_ref(), by, &days))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok((caller, rows))
    })
    .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "tenant": caller.tenant,
        "env": caller.env,
        "by": by_name,
        "since": query.since,
        "until": query.until,
        "usage": rows,
    })))
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    format: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// The channel's receiving end, shared so that an export that gives up can drop what its
/// client never took.
struct Outbox {
    rx: Mutex<mpsc::Receiver<web::Bytes>>,
    /// Set when the export ended without its last chunk: the response must be aborted.
    failed: AtomicBool,
}

impl Outbox {
    fn receiver(&self) -> std::sync::MutexGuard<'_, mpsc::Receiver<web::Bytes>> {
        // A poisoned lock only means a panic elsewhere; the receiver itself is consistent.
        self.rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Ends the response early: nothing more is accepted, what was buffered is dropped.
    fn abort(&self) {
        self.failed.store(true, Ordering::Relaxed);
        let mut rx = self.receiver();
        rx.close();
        while rx.try_recv().is_ok() {}
    }
}

/// The response's hold on the outbox. Dropped when the response ends or its client goes away:
/// then the exporter's next write fails at once, and what it buffered is dropped.
struct Response(Arc<Outbox>);

impl Drop for Response {
    fn drop(&mut self) {
        let mut rx = self.0.receiver();
        rx.close();
        while rx.try_recv().is_ok() {}
    }
}

/// A `Write` that hands full chunks to the response stream; fails once the client is gone or
/// has taken nothing for `timeout`.
struct ChunkWriter {
    tx: mpsc::Sender<web::Bytes>,
    buf: Vec<u8>,
    timeout: Duration,
    /// Set when the client ended the export: it went away or stopped reading.
    ended_by_client: Option<&'static str>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut chunk = web::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(EXPORT_CHUNK_BYTES),
        ));
        // Polls rather than blocks: tokio's blocking send has no timeout, and a thread parked on
        // a client that never reads is exactly what must not happen.
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            match self.tx.try_send(chunk) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => {
                    self.ended_by_client = Some("the client went away");
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::BrokenPipe,
                        "client went away",
                    ));
                }
                Err(TrySendError::Full(back)) => chunk = back,
            }
            let now = Instant::now();
            if now >= deadline {
                self.ended_by_client = Some("the client stopped reading");
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "client took no data for {}",
                        humantime::format_duration(self.timeout)
                    ),
                ));
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(EXPORT_SEND_POLL_MAX);
        }
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= EXPORT_CHUNK_BYTES {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// `GET /api/v1/audit/export?format=jsonl|csv&since=&until=`: the tenant's audit trail for the
/// token's env (and team, when one applies), streamed (chunked).
pub(super) async fn audit_export(
    caller: Caller,
    query: web::Query<ExportQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let (_, (format, content_type)) = choice(
        "format",
        query.format.as_deref(),
        EXPORT_FORMATS,
        "must be jsonl or csv",
    )?;
    let time = |field: &'static str, raw: &Option<String>| {
        raw.as_deref()
            .map(crate::audit::parse_time)
            .transpose()
            .map_err(|e| ApiError::field(field, e))
    };
    let mut opts = ExportOptions::new(caller.tenant.clone(), format);
    opts.env = Some(caller.env.clone());
    opts.team = read_team(&state, &caller)?;
    opts.since_ms = time("since", &query.since)?;
    opts.until_ms = time("until", &query.until)?;
    let slot = state.export_slots().acquire(&caller.tenant)?;
    let (tx, rx) = mpsc::channel::<web::Bytes>(EXPORT_CHUNKS_IN_FLIGHT);
    let outbox = Arc::new(Outbox {
        rx: Mutex::new(rx),
        failed: AtomicBool::new(false),
    });
    let writer = ChunkWriter {
        tx,
        buf: Vec::with_capacity(EXPORT_CHUNK_BYTES),
        timeout: state.export_slots().write_timeout(),
        ended_by_client: None,
    };
    let log = state.runtime().log().clone();
    let exporter = Arc::clone(&outbox);
    std::thread::Builder::new()
        .name("tenantry-export".into())
        .spawn(move || run_export(&log, &opts, writer, &exporter, slot))
        .map_err(|e| ApiError::Internal(format!("export thread: {e}")))?;
    let stream = futures_util::stream::unfold(Response(outbox), |outbox| async move {
        let next = std::future::poll_fn(|cx| outbox.0.receiver().poll_recv(cx)).await;
        match next {
            Some(chunk) => Some((Ok(chunk), outbox)),
            // Ending cleanly would pass a truncated export (CSV has no manifest over HTTP) off
            // as whole: an error makes actix abort the response instead.
            None if outbox.0.failed.swap(false, Ordering::Relaxed) => Some((
                Err(std::io::Error::other("audit export ended early")),
                outbox,
            )),
            None => None,
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .streaming(stream))
}

/// The exporting thread: writes the export into `out`; on any early end (client gone or stalled,
/// a read error) aborts the response. The slot is freed when this returns.
fn run_export(
    log: &crate::events::log::EventLog,
    opts: &ExportOptions,
    mut out: ChunkWriter,
    outbox: &Outbox,
    slot: ExportSlot,
) {
    // A client that goes away or stops reading makes the next write fail, which ends the export.
    let cancel = AtomicBool::new(false);
    let result = export(log, opts, &mut out, &mut |_| {}, &cancel)
        .map(drop)
        .map_err(|e| e.to_string());
    if let Err(e) = result.and_then(|()| out.flush().map_err(|e| e.to_string())) {
        outbox.abort();
        match out.ended_by_client {
            Some(reason) => tracing::debug!(tenant = %opts.tenant, reason, "audit export ended"),
            None => {
                tracing::warn!(tenant = %opts.tenant, error = %e, "audit export over HTTP failed");
            }
        }
    }
    drop(slot);
}
