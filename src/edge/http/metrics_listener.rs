//! The metrics listener: `/metrics` (Prometheus text naming every tenant) on
//! `server.metrics_listen`, apart from the API, so that reaching the API never lists tenants.
//! It shares the API's [`EdgeState`], so its counters are the ones the API updates.

use std::io;
use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::web;
use actix_web::{App, HttpResponse};

use super::{
    method_not_allowed, not_found, EdgeState, HttpError, CLIENT_DISCONNECT_TIMEOUT,
    CLIENT_REQUEST_TIMEOUT, KEEP_ALIVE, SHUTDOWN_TIMEOUT_S,
};
use crate::edge::error::ApiError;
use crate::edge::metrics::CONTENT_TYPE;

/// Worker threads of the metrics listener: one scrape at a time is plenty.
pub const METRICS_WORKERS: usize = 1;

/// The listener that serves only `/metrics`.
pub(super) struct MetricsServer {
    handle: ServerHandle,
    task: actix_rt::task::JoinHandle<io::Result<()>>,
    pub(super) addrs: Vec<SocketAddr>,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from `state`'s counters (every other path is 404).
    pub(super) fn start(
        state: web::Data<EdgeState>,
        addr: SocketAddr,
    ) -> Result<MetricsServer, HttpError> {
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
        .workers(METRICS_WORKERS)
        .keep_alive(KEEP_ALIVE)
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
        .disable_signals()
        .bind(addr)
        .map_err(|source| HttpError::MetricsBind { addr, source })?;
        let addrs = server.addrs();
        let server = server.run();
        let handle = server.handle();
        let task = actix_rt::spawn(server);
        // Not "listening on": that line names the API address, which launchers look for.
        for addr in &addrs {
            tracing::info!("metrics on http://{addr}/metrics");
        }
        Ok(MetricsServer {
            handle,
            task,
            addrs,
        })
    }

    pub(super) async fn stop(self) {
        self.handle.stop(true).await;
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "metrics listener stopped with an error");
        }
    }
}

/// `GET /metrics` (on the metrics listener only): Prometheus/OpenMetrics text.
async fn metrics(state: web::Data<EdgeState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .render(state.runtime.metrics())
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}
