//! The metrics listener: `/metrics` (Prometheus text naming every tenant) on
//! `server.metrics_listen`, apart from the API, so that reaching the API never lists tenants.
//! It shares the API's [`EdgeState`], so its counters are the ones the API updates.

use std::net::SocketAddr;

use actix_web::web;
use actix_web::{App, HttpResponse};

use super::error::ApiError;
use super::listener::{with_connection_limits, HttpError, Running};
use super::routes::{method_not_allowed, not_found};
use super::state::EdgeState;
use crate::edge::metrics::CONTENT_TYPE;

/// Worker threads of the metrics listener: one scrape at a time is plenty.
pub const METRICS_WORKERS: usize = 1;

/// Binds `addr` and serves `/metrics` from `state`'s counters (every other path is 404).
pub(super) fn start(state: web::Data<EdgeState>, addr: SocketAddr) -> Result<Running, HttpError> {
    let server = actix_web::HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .service(
                web::resource("/metrics")
                    .get(metrics)
                    .to(method_not_allowed),
            )
            .default_service(web::to(not_found))
    })
    .workers(METRICS_WORKERS);
    let server = with_connection_limits!(server)
        .bind(addr)
        .map_err(|source| HttpError::MetricsBind { addr, source })?;
    let addrs = server.addrs();
    let running = Running::spawn(server.run(), addrs);
    // Not "listening on": that line names the API address, which launchers look for.
    for addr in &running.addrs {
        tracing::info!("metrics on http://{addr}/metrics");
    }
    Ok(running)
}

/// `GET /metrics` (on the metrics listener only): Prometheus/OpenMetrics text.
async fn metrics(state: web::Data<EdgeState>) -> Result<HttpResponse, ApiError> {
    state.metrics().refresh_connectors(state.connectors());
    let text = state
        .metrics_registry()
        .render(state.runtime().metrics())
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
