//! The reporting routes of the HTTP API: `GET /api/v1/usage` and `GET /api/v1/audit/export`.
//!
//! Both are bounded by the caller's tenant, the env of its token and its team (`X-Team-ID` / the
//! team claim), which must be one of the tenant's teams (else 404). The export streams the same
//! `tenantry-audit/1` format as `tenantry export` (with `--team` when a team applies), produced
//! on a blocking thread into a bounded channel, so memory stays flat however large the tenant
//! is, and a client that goes away stops the export.

use std::io::Write;
use std::sync::atomic::AtomicBool;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::auth::Caller;
use super::error::ApiError;
use super::http::{read_team, EdgeState};
use crate::audit::export::{export, ExportFormat, ExportOptions};
use crate::projections::projector::UsageBy;

/// Chunks of an export in flight between the exporting thread and the response.
const EXPORT_CHUNKS_IN_FLIGHT: usize = 16;
/// Bytes per chunk of a streamed export.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
pub(super) struct UsageQuery {
    by: Option<String>,
}

/// `GET /api/v1/usage?by=team|channel|day`: the tenant's usage in the token's env (and team,
/// when one applies: its rows only, by day too).
pub(super) async fn usage(
    caller: Caller,
    query: web::Query<UsageQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let (by, by_name) = match query.by.as_deref().unwrap_or("team") {
        "team" => (UsageBy::Team, "team"),
        "channel" => (UsageBy::Channel, "channel"),
        "day" => (UsageBy::Day, "day"),
        _ => return Err(ApiError::field("by", "must be team, channel or day")),
    };
    let team = read_team(&state, &caller)?;
    let state2 = state.clone();
    let rows = web::block(move || {
        let projector = state2.projector();
        let log = state2.runtime().log();
        projector.catch_up(log, &caller.tenant, &mut |_| {})?;
        let rows = projector.usage(&caller.tenant, Some(&caller.env), team.as_ref(), by)?;
        Ok::<_, crate::projections::projector::ProjectorError>((caller, rows))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("blocking task: {e}")))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (caller, rows) = rows;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "tenant": caller.tenant,
        "env": caller.env,
        "by": by_name,
        "usage": rows,
    })))
}

#[derive(Deserialize)]
pub(super) struct ExportQuery {
    format: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// A `Write` that hands full chunks to the response stream; fails once the client is gone.
struct ChunkWriter {
    tx: mpsc::Sender<web::Bytes>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = web::Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(EXPORT_CHUNK_BYTES),
        ));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
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
    let (format, content_type) = match query.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => (ExportFormat::Jsonl, "application/x-ndjson"),
        "csv" => (ExportFormat::Csv, "text/csv; charset=utf-8"),
        _ => return Err(ApiError::field("format", "must be jsonl or csv")),
    };
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
    let (tx, rx) = mpsc::channel::<web::Bytes>(EXPORT_CHUNKS_IN_FLIGHT);
    let log = state.runtime().log().clone();
    let tenant = caller.tenant.clone();
    std::thread::Builder::new()
        .name("tenantry-export".into())
        .spawn(move || {
            let mut out = ChunkWriter {
                tx,
                buf: Vec::with_capacity(EXPORT_CHUNK_BYTES),
            };
            // A client that goes away makes the next write fail, which ends the export.
            let cancel = AtomicBool::new(false);
            let result = export(&log, &opts, &mut out, &mut |_| {}, &cancel)
                .map(drop)
                .map_err(|e| e.to_string());
            if let Err(e) = result.and_then(|()| out.flush().map_err(|e| e.to_string())) {
                // The response is already streaming: the missing manifest tells the client the
                // export is incomplete.
                tracing::warn!(tenant = %tenant, error = %e, "audit export over HTTP ended early");
            }
        })
        .map_err(|e| ApiError::Internal(format!("export thread: {e}")))?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .streaming(stream))
}
