//! The HTTP server's lifecycle ([`ApiServer`]: start, wait, graceful stop) and the
//! per-request middleware (a span, then `observe`'s metrics and log line). The route table is in
//! `routes`, bodies in `body`, the metrics listener in `metrics_listener`.
//!
//! Invariants:
//! - Extractor errors (path, query, JSON) and unknown routes are mapped to the API's JSON error
//!   shape, through `ApiError`.
//! - Every request runs in a span tagged with tenant, env and team once they are known; message
//!   text and tokens are never logged.
//! - `/metrics` (which names every tenant) is served only on its own listener,
//!   `server.metrics_listen`, never on the API's: there it is an unknown route (404).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Service;
use actix_web::web;
use actix_web::App;
use tracing::field::Empty;
use tracing::Instrument;

use super::error::ApiError;
use super::listener::{with_connection_limits, HttpError, Running};
use super::metrics_listener;
use super::observe::{logged_path, observe};
use super::routes::{not_found, routes};
use super::state::{EdgeState, Parts};
use crate::actors::runtime::Runtime;
use crate::config::Config;
use crate::connectors::Registry;
use crate::edge::auth::Authenticator;
use crate::edge::metrics::MetricsRegistry;
use crate::edge::peer::PeerEdge;
use crate::edge::quota::Quotas;
use crate::projections::projector::Projector;

/// Blocking-pool threads per worker, for log reads.
pub const BLOCKING_THREADS_PER_WORKER: usize = 8;

/// The running HTTP server.
pub struct ApiServer {
    api: Running,
    /// Kept to end the event streams when the server stops.
    state: web::Data<EdgeState>,
    /// The metrics listener, unless `server.metrics_listen` is off.
    metrics: Option<Running>,
}

impl ApiServer {
    /// Binds `server.listen` (port 0 picks a free port), logs `listening on ADDR` for each bound
    /// address, starts the metrics listener on `server.metrics_listen` (unless off; logs
    /// `metrics on http://ADDR/metrics`) and serves until [`ApiServer::stop`]. `peer` is the
    /// edge served beside HTTP (NATS), when configured: its families join `/metrics` and its
    /// connection `/readyz`. Must be called inside an actix `System`.
    /// The server does not handle signals itself: the caller decides when to stop.
    pub fn start<P: PeerEdge>(
        config: &Config,
        runtime: Runtime,
        projector: Arc<Projector>,
        auth: Authenticator,
        quotas: Arc<Quotas>,
        peer: Option<&P>,
    ) -> Result<ApiServer, HttpError> {
        let mut registry = MetricsRegistry::new();
        registry.register_log(runtime.log().metrics());
        if let Some(peer) = peer {
            peer.register(&mut registry);
        }
        let connectors = Arc::new(Registry::new(
            runtime.clone(),
            config.connectors().heartbeat_interval,
        ));
        // Before the first request: the registry is what the log says.
        let found = connectors.rebuild();
        tracing::debug!(
            connectors = found,
            "connector registry rebuilt from the log"
        );
        let parts = Parts {
            connectors: connectors.clone(),
            runtime,
            projector,
            auth,
            quotas,
            registry,
            peer: peer.map(|p| (P::NAME, p.link())),
            forget_peer: peer.map(PeerEdge::forget_tenant),
        };
        let state = web::Data::new(EdgeState::new(config, parts));
        actix_rt::spawn(super::webhook_worker::run(state.clone()));
        actix_rt::spawn(sweep_connectors(
            state.clone(),
            config.connectors().outbox_ttl,
            state.shutdown_signal(),
        ));
        let metrics_state = state.clone();
        let kept_state = state.clone();
        let listen = config.server().listen;
        let body_bytes_max = config.server().http_body_bytes_max;
        let workers = config.server().http_workers;
        let server = actix_web::HttpServer::new(move || {
            let observed = state.clone();
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::PathConfig::default()
                        .error_handler(|e, _| ApiError::field("path", e).into()),
                )
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| ApiError::field("query", e).into()),
                )
                .app_data(
                    web::JsonConfig::default()
                        .limit(body_bytes_max)
                        .error_handler(|e, _| ApiError::InvalidJson(e.to_string()).into()),
                )
                .configure(routes)
                .default_service(web::to(not_found))
                .wrap_fn(move |req, srv| {
                    let span = tracing::info_span!("http", method = %req.method(),
                        path = ?logged_path(req.path()), tenant = Empty, env = Empty,
                        team = Empty);
                    let started = Instant::now();
                    let response = span.in_scope(|| srv.call(req));
                    let state = observed.clone();
                    async move {
                        let response = response.await?;
                        observe(&response, started, state.metrics(), state.refused_log());
                        Ok(response)
                    }
                    .instrument(span)
                })
        })
        .workers(workers)
        .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER);
        let server = with_connection_limits!(server)
            .bind(listen)
            .map_err(|source| HttpError::Bind {
                addr: listen,
                source,
            })?;
        // Started before the API runs, so a bad metrics address stops the start-up cleanly.
        let metrics = match config.server().metrics_listen {
            Some(addr) => Some(metrics_listener::start(metrics_state, addr)?),
            None => None,
        };
        let addrs = server.addrs();
        let api = Running::spawn(server.run(), addrs);
        for addr in &api.addrs {
            tracing::info!("listening on {addr}");
        }
        Ok(ApiServer {
            api,
            state: kept_state,
            metrics,
        })
    }

    /// The bound addresses (with the real port when `listen` had port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.api.addrs
    }

    /// The metrics listener's bound addresses; empty when `server.metrics_listen` is off.
    pub fn metrics_addrs(&self) -> &[SocketAddr] {
        self.metrics.as_ref().map_or(&[], |m| &m.addrs)
    }

    /// Resolves if the server stops by itself (it should not): with its error, if any.
    pub async fn wait(&mut self) -> io::Result<()> {
        self.api.wait().await
    }

    /// Graceful stop: end the event streams, stop accepting connections, let in-flight
    /// requests finish (at most [`SHUTDOWN_TIMEOUT_S`](super::listener::SHUTDOWN_TIMEOUT_S)),
    /// then return. Streams end first: they would otherwise hold the stop for its whole timeout.
    pub async fn stop(self) {
        self.state.begin_shutdown();
        self.api.stop("HTTP server").await;
        if let Some(metrics) = self.metrics {
            metrics.stop("metrics listener").await;
        }
    }
}

/// Records the connectors' decayed states and dead-letters their outboxes' replies older than
/// `outbox_ttl`, every heartbeat interval, until the server stops.
async fn sweep_connectors(
    state: web::Data<EdgeState>,
    outbox_ttl: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let registry = state.connectors();
    let mut every = actix_rt::time::interval(registry.interval());
    loop {
        tokio::select! {
            _ = every.tick() => {
                registry.sweep().await;
                for (tenant, c, count) in registry.dead_letter(outbox_ttl).await {
                    tracing::warn!(tenant = %tenant, env = %c.env, connector = %c.id, count,
                        "outbox replies older than connectors.outbox_ttl dead-lettered");
                    state.metrics().dead_lettered(&tenant, &c.env, &c.id, count);
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}
