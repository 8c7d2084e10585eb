//! The HTTP server: lifecycle ([`ApiServer`]), routes, handlers, the [`Caller`] extractor and the
//! per-request middleware (a span, then `edge::observe`'s metrics and log line).
//!
//! Invariants:
//! - `/api/v1` handlers take a [`Caller`]: the token, the tenancy headers and the tenant's quota
//!   are checked, in that order, before anything else (the body included) is read.
//! - Bodies are read through `read_body`, which counts bytes on the stream and stops at the
//!   limit, so a chunked body cannot bypass it; bodies are parsed only after that.
//! - Reads of the log run on the blocking pool, never on an HTTP worker's event loop.
//! - Errors leave handlers as [`ApiError`]; statuses are decided in `edge::error` only. Extractor
//!   errors (path, query, JSON) and unknown routes are mapped to the same JSON shape.
//! - Every request runs in a span tagged with tenant, env and team once they are known; message
//!   text and tokens are never logged.
//! - `/metrics` (which names every tenant) is served only on its own listener,
//!   `server.metrics_listen`, never on the API's: there it is an unknown route (404).

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Payload, ServerHandle, Service};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{App, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use tracing::field::Empty;
use tracing::Instrument;

use self::metrics_listener::MetricsServer;
use super::auth::{bearer_token, check_headers, Authenticator, Caller, SigningKey};
use super::dto::{
    AckBody, EventItem, EventsBody, EventsQuery, MessageBody, SessionItem, SessionStateBody,
    SessionsBody, SessionsQuery,
};
use super::error::ApiError;
use super::export_slots::ExportSlots;
use super::metrics::EdgeMetrics;
use super::observe::{logged_path, observe, LogBudget};
use super::quota::Quotas;
use crate::actors::messages::{Inbound, RuntimeError};
use crate::actors::runtime::Runtime;
use crate::config::Config;
use crate::projections::projector::Projector;
use crate::tenancy::{ChannelId, SessionId, TeamId, TenantCtx, TenantId};

mod metrics_listener;

/// HTTP worker threads. The machine has 2 cores that the runtime's arbiters share.
pub const HTTP_WORKERS: usize = 2;
/// Blocking-pool threads per worker, for log reads.
pub const BLOCKING_THREADS_PER_WORKER: usize = 8;
/// Time a client has to send a request's head after connecting (or between keep-alive
/// requests, once the keep-alive period has passed).
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle time after which a keep-alive connection is closed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Time to finish closing a connection.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Time a client has to send a whole body once the head has arrived.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// After refusing an oversized body, read and discard at most this much of the rest, so that a
/// client still writing gets the 413 instead of a connection reset.
pub const DRAIN_BYTES_MAX: usize = 1024 * 1024;
/// Time spent discarding the rest of an oversized body, at most.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Graceful stop: in-flight requests get this long to finish.
pub const SHUTDOWN_TIMEOUT_S: u64 = 10;
/// Sessions per `GET /api/v1/sessions` response when `limit` is not given.
pub const SESSIONS_PAGE_DEFAULT: u32 = 100;
/// Most sessions per `GET /api/v1/sessions` response.
pub const SESSIONS_PAGE_MAX: u32 = 1000;
/// Most events per `GET /api/v1/sessions/{id}/events` response.
pub const EVENTS_PAGE_MAX: usize = 1000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listen address is taken, not local, or not permitted. Fix `server.listen`.
    #[error("cannot listen on {addr} (server.listen)")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS's reason.
        source: io::Error,
    },
    /// The metrics address is taken (another instance on this host?), not local, or not
    /// permitted. Give each instance its own `server.metrics_listen`, or `"off"`.
    #[error(
        "cannot serve /metrics on {addr} (server.metrics_listen): give this instance a port of \
         its own, port 0 for any free one, or \"off\""
    )]
    MetricsBind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS's reason.
        source: io::Error,
    },
}

/// What every handler shares: the runtime, the checkers, the metrics and the tenants' teams.
pub struct EdgeState {
    runtime: Runtime,
    /// The read models (usage, session index), folded on demand before a report.
    projector: Arc<Projector>,
    auth: Authenticator,
    /// Shared with the NATS edge: both charge a tenant's one quota.
    quotas: Arc<Quotas>,
    metrics: EdgeMetrics,
    /// The served tenants and their teams (from the config).
    teams: HashMap<TenantId, BTreeSet<TeamId>>,
    body_bytes_max: usize,
    /// Log lines about refused requests left to write this second.
    refused_log: LogBudget,
    /// Running audit exports, bounded.
    export_slots: ExportSlots,
    /// The NATS client's connection state, when NATS is configured (for `/readyz`).
    nats: Option<crate::nats::NatsConnection>,
}

impl EdgeState {
    /// State for `config`'s tenants, with tokens checked against `key` and requests charged to
    /// `quotas`.
    pub fn new(
        config: &Config,
        runtime: Runtime,
        projector: Arc<Projector>,
        key: &SigningKey,
        quotas: Arc<Quotas>,
        nats: Option<&crate::nats::NatsMetrics>,
    ) -> EdgeState {
        let tenants = config.tenants();
        let mut metrics = EdgeMetrics::new();
        if let Some(nats) = nats {
            metrics.register_nats(nats);
        }
        EdgeState {
            runtime,
            projector,
            auth: Authenticator::new(key, config.auth()),
            quotas,
            metrics,
            teams: tenants
                .iter()
                .map(|(id, t)| (id.clone(), t.teams.keys().cloned().collect()))
                .collect(),
            body_bytes_max: config.server().http_body_bytes_max,
            refused_log: LogBudget::default(),
            export_slots: ExportSlots::new(config.server().exports),
            nats: nats.map(crate::nats::NatsMetrics::connection),
        }
    }

    pub(super) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(super) fn projector(&self) -> &Projector {
        &self.projector
    }

    pub(super) fn metrics(&self) -> &EdgeMetrics {
        &self.metrics
    }

    pub(super) fn refused_log(&self) -> &LogBudget {
        &self.refused_log
    }

    pub(super) fn export_slots(&self) -> &ExportSlots {
        &self.export_slots
    }

    fn serves(&self, tenant: &TenantId) -> bool {
        self.teams.contains_key(tenant)
    }

    fn teams_of(&self, tenant: &TenantId) -> impl Iterator<Item = &TeamId> {
        self.teams.get(tenant).into_iter().flatten()
    }
}

/// The running HTTP server.
pub struct ApiServer {
    handle: ServerHandle,
    task: actix_rt::task::JoinHandle<io::Result<()>>,
    /// Set once `task` has been awaited to completion (a finished handle must not be polled).
    finished: bool,
    addrs: Vec<SocketAddr>,
    /// The metrics listener, unless `server.metrics_listen` is off.
    metrics: Option<MetricsServer>,
}

impl ApiServer {
    /// Binds `server.listen` (port 0 picks a free port), logs `listening on ADDR` for each bound
    /// address, starts the metrics listener on `server.metrics_listen` (unless off; logs
    /// `metrics on http://ADDR/metrics`) and serves until [`ApiServer::stop`]. Must be called inside an actix `System`.
    /// The server does not handle signals itself: the caller decides when to stop.
    pub fn start(
        config: &Config,
        runtime: Runtime,
        projector: Arc<Projector>,
        key: &SigningKey,
        quotas: Arc<Quotas>,
        nats: Option<&crate::nats::NatsMetrics>,
    ) -> Result<ApiServer, HttpError> {
        let state = web::Data::new(EdgeState::new(
            config, runtime, projector, key, quotas, nats,
        ));
        let metrics_state = state.clone();
        let listen = config.server().listen;
        let body_bytes_max = config.server().http_body_bytes_max;
        let server = actix_web::HttpServer::new(move || {
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
                .wrap_fn(|req, srv| {
                    let span = tracing::info_span!("http", method = %req.method(),
                        path = ?logged_path(req.path()), tenant = Empty, env = Empty,
                        team = Empty);
                    let started = Instant::now();
                    let response = span.in_scope(|| srv.call(req));
                    async move {
                        let response = response.await?;
                        observe(&response, started);
                        Ok(response)
                    }
                    .instrument(span)
                })
        })
        .workers(HTTP_WORKERS)
        .worker_max_blocking_threads(BLOCKING_THREADS_PER_WORKER)
        .keep_alive(KEEP_ALIVE)
        .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
        .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_S)
        .disable_signals()
        .bind(listen)
        .map_err(|source| HttpError::Bind {
            addr: listen,
            source,
        })?;
        // Started before the API runs, so a bad metrics address stops the start-up cleanly.
        let metrics = match config.server().metrics_listen {
            Some(addr) => Some(MetricsServer::start(metrics_state, addr)?),
            None => None,
        };
        let addrs = server.addrs();
        let server = server.run();
        let handle = server.handle();
        let task = actix_rt::spawn(server);
        for addr in &addrs {
            tracing::info!("listening on {addr}");
        }
        Ok(ApiServer {
            handle,
            task,
            finished: false,
            addrs,
            metrics,
        })
    }

    /// The bound addresses (with the real port when `listen` had port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The metrics listener's bound addresses; empty when `server.metrics_listen` is off.
    pub fn metrics_addrs(&self) -> &[SocketAddr] {
        self.metrics.as_ref().map_or(&[], |m| &m.addrs)
    }

    /// Resolves if the server stops by itself (it should not): with its error, if any.
    pub async fn wait(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        let result = (&mut self.task).await;
        self.finished = true;
        result.unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Graceful stop: stop accepting connections, let in-flight requests finish (at most
    /// [`SHUTDOWN_TIMEOUT_S`]), then return.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        if self.finished {
            return;
        }
        if let Ok(Err(e)) = self.task.await {
            tracing::warn!(error = %e, "HTTP server stopped with an error");
        }
    }
}

/// The routes. `/api/v1` handlers take a [`Caller`] first; to add one (e.g. `GET /usage`,
/// `GET /audit/export`), write `async fn(Caller, web::Data<EdgeState>, ...) -> Result<HttpResponse,
/// ApiError>` and register it in [`api_v1`].
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .get(healthz)
            .to(method_not_allowed),
    )
    .service(web::resource("/readyz").get(readyz).to(method_not_allowed))
    .service(web::scope("/api/v1").configure(api_v1));
}

/// The authenticated API.
fn api_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/messages")
            .post(post_message)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions")
            .get(list_sessions)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}")
            .get(get_session)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/events")
            .get(session_events)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/usage")
            .get(super::reports::usage)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/audit/export")
            .get(super::reports::audit_export)
            .to(method_not_allowed),
    );
}

/// The tenant label of a request, set once its token is valid and names a served tenant.
#[derive(Clone)]
pub(super) struct TenantLabel(pub(super) TenantId);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(admit(req))
    }
}

/// Authenticates `req` and charges its tenant's quota.
fn admit(req: &HttpRequest) -> Result<Caller, ApiError> {
    let state = edge_state(req)?;
    let claims = state.auth.verify(bearer_token(req.headers())?)?;
    let span = tracing::Span::current();
    if state.serves(&claims.tenant) {
        span.record("tenant", claims.tenant.as_str());
        span.record("env", claims.env.as_str());
        req.extensions_mut()
            .insert(TenantLabel(claims.tenant.clone()));
    }
    let caller = check_headers(req.headers(), claims, |t| state.serves(t))?;
    if let Some(team) = caller.team() {
        span.record("team", team.as_str());
    }
    state
        .quotas
        .check(&caller.tenant)
        .map_err(|over| ApiError::QuotaExceeded {
            retry_after_s: over.retry_after_s,
        })?;
    Ok(caller)
}

fn edge_state(req: &HttpRequest) -> Result<&web::Data<EdgeState>, ApiError> {
    req.app_data::<web::Data<EdgeState>>()
        .ok_or_else(|| ApiError::Internal("edge state not registered".to_owned()))
}

/// `GET /healthz`: the process is up and serving.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: whether this instance can take traffic now. 503 with the reasons while the
/// log refuses writes (a write failed and it has not recovered yet), a served tenant's log is
/// damaged, or a configured NATS is disconnected; else 200. `/healthz` stays liveness only.
async fn readyz(state: web::Data<EdgeState>) -> HttpResponse {
    let log = state.runtime.log();
    let mut reasons = Vec::new();
    if let Some(e) = log.write_failure() {
        reasons.push(format!(
            "log: refusing writes since a write failed ({e}); it reopens its files and recovers \
             by itself once the cause (e.g. a full disk) is gone"
        ));
    }
    // Unauthenticated: say how many served tenants are damaged, not which (the server log and
    // `tenantry verify --tenant` name them and the position).
    let damaged = log
        .damaged()
        .iter()
        .filter(|d| state.teams.contains_key(&d.tenant))
        .count();
    if damaged > 0 {
        reasons.push(format!(
            "log: {damaged} tenant log(s) damaged; the server log names them and where              (or run tenantry verify --tenant T); restore them from a backup"
        ));
    }
    if state.nats.as_ref().is_some_and(|n| !n.is_connected()) {
        reasons.push("nats: disconnected; the client is reconnecting".to_owned());
    }
    if reasons.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "not_ready", "reasons": reasons }))
    }
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// `POST /api/v1/messages`: hands the message to the runtime; answers after the durable append.
async fn post_message(
    caller: Result<Caller, ApiError>,
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let caller = match caller {
        Ok(caller) => caller,
        Err(e) => return Err(refuse(&req, &mut payload, state.body_bytes_max, e).await),
    };
    // Under overload, refuse before spending anything on parsing the body.
    if state.runtime.saturated(&caller.tenant) {
        let e = ApiError::Runtime(RuntimeError::Overloaded);
        return Err(refuse(&req, &mut payload, state.body_bytes_max, e).await);
    }
    let body = read_body(&req, payload, state.body_bytes_max).await?;
    let message: MessageBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let team = message_team(&caller, message.team.as_deref())?;
    let channel = ChannelId::parse(&message.channel).map_err(|e| ApiError::field("channel", e))?;
    let session = message
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| ApiError::field("session", e))?;
    let ctx = caller.ctx(team);
    tracing::Span::current().record("team", ctx.team_or_default().as_str());
    let inbound = Inbound {
        session,
        user: message.user,
        text: message.text,
        message_id: message.message_id,
    };
    let started = Instant::now();
    let ack = state.runtime.send(&ctx, &channel, inbound).await?;
    if !ack.duplicate {
        state
            .metrics
            .message_acked(&ctx.tenant, &ctx.env, ack.replies.len(), started.elapsed());
    }
    Ok(HttpResponse::Ok().json(AckBody::new(&ack)))
}

/// The team of a posted message: the body's, which must agree with `X-Team-ID` and the token's
/// team; else theirs; else `None` (the default team).
fn message_team(caller: &Caller, body_team: Option<&str>) -> Result<Option<TeamId>, ApiError> {
    let Some(raw) = body_team else {
        return Ok(caller.team().cloned());
    };
    let team = TeamId::parse(raw).map_err(|e| ApiError::field("team", e))?;
    if caller.team().is_some_and(|narrowed| narrowed != &team) {
        return Err(ApiError::TeamMismatch(team.to_string()));
    }
    Ok(Some(team))
}

/// `GET /api/v1/sessions`: the caller's env's sessions, in its team or all teams, paged.
async fn list_sessions(
    caller: Caller,
    query: web::Query<SessionsQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(SESSIONS_PAGE_DEFAULT);
    if !(1..=SESSIONS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("must be 1..={SESSIONS_PAGE_MAX}"),
        ));
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let after = query.after.as_deref().map(parse_cursor).transpose()?;
    let team = read_team(&state, &caller)?;
    let body = blocking(state.clone(), move |state| {
        let ctx = caller.ctx(team);
        let mut sessions = Vec::new();
        let mut last: Option<(TeamId, SessionId)> = None;
        let mut next_after = None;
        let cursor = after.as_ref().map(|(team, session)| (team, session));
        // Seeks to the cursor: a deep page costs what a first page costs.
        for info in state.runtime.log().scope(&ctx).sessions_after(cursor) {
            let info = info?;
            if sessions.len() == limit {
                // There is at least one more: point the next page past the last one shown.
                next_after = last.map(|(team, session)| format!("{team}/{session}"));
                break;
            }
            sessions.push(SessionItem::new(ctx.tenant.as_str(), &info));
            last = Some((info.team, info.session));
        }
        Ok(SessionsBody {
            sessions,
            next_after,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// Parses a `team/session` cursor.
fn parse_cursor(raw: &str) -> Result<(TeamId, SessionId), ApiError> {
    let bad = |detail: String| ApiError::field("after", detail);
    let (team, session) = raw
        .split_once('/')
        .ok_or_else(|| bad("expected the next_after value of a previous page".to_owned()))?;
    let team = TeamId::parse(team).map_err(|e| bad(e.to_string()))?;
    let session = SessionId::parse(session).map_err(|e| bad(e.to_string()))?;
    Ok((team, session))
}

/// `GET /api/v1/sessions/{id}`: the session's state projection.
async fn get_session(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = SessionId::parse(&path).map_err(|e| ApiError::field("session", e))?;
    let team = read_team(&state, &caller)?;
    let body = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let projection = state
            .runtime
            .session_state(&ctx, &session)?
            .ok_or_else(|| ApiError::SessionNotFound(session.to_string()))?;
        Ok(SessionStateBody::new(&projection))
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /api/v1/sessions/{id}/events`: the session's events in seq order, at most
/// [`EVENTS_PAGE_MAX`] per response.
async fn session_events(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = SessionId::parse(&path).map_err(|e| ApiError::field("session", e))?;
    let from = query.from_seq.unwrap_or(1).max(1);
    let to = query.to_seq.unwrap_or(u64::MAX);
    if to < from {
        return Err(ApiError::field("to_seq", "must not be below from_seq"));
    }
    let team = read_team(&state, &caller)?;
    let body = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let mut events = Vec::new();
        let mut next_from_seq = None;
        for stored in state
            .runtime
            .log()
            .scope(&ctx)
            .session_events(&session, from..=to)
        {
            let stored = stored?;
            if events.len() == EVENTS_PAGE_MAX {
                next_from_seq = Some(stored.event.seq);
                break;
            }
            events.push(EventItem::new(&stored));
        }
        Ok(EventsBody {
            events,
            next_from_seq,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// The team a read is restricted to (`X-Team-ID`, else the token's team), which must be one of
/// the tenant's teams; `None` means all of them.
pub(super) fn read_team(state: &EdgeState, caller: &Caller) -> Result<Option<TeamId>, ApiError> {
    match caller.team() {
        None => Ok(None),
        Some(team) if state.teams_of(&caller.tenant).any(|t| t == team) => Ok(Some(team.clone())),
        Some(team) => Err(ApiError::UnknownTeam(team.to_string())),
    }
}

/// The context (with its team) holding `session` in the caller's tenant and env: in `team`, or
/// in the only team of the tenant that has it. Blocking (reads the log).
fn find_session(
    state: &EdgeState,
    caller: &Caller,
    team: Option<TeamId>,
    session: &SessionId,
) -> Result<TenantCtx, ApiError> {
    let candidates: Vec<TeamId> = match team {
        Some(team) => vec![team],
        None => state.teams_of(&caller.tenant).cloned().collect(),
    };
    let mut found = None;
    for team in candidates {
        let ctx = caller.ctx(Some(team));
        if state.runtime.log().scope(&ctx).session_last_seq(session)? > 0 {
            if found.is_some() {
                return Err(ApiError::AmbiguousSession(session.to_string()));
            }
            found = Some(ctx);
        }
    }
    found.ok_or_else(|| ApiError::SessionNotFound(session.to_string()))
}

/// Runs `work` on the blocking pool.
async fn blocking<T, F>(state: web::Data<EdgeState>, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&EdgeState) -> Result<T, ApiError> + Send + 'static,
{
    web::block(move || work(&state))
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task: {e}")))?
}

/// Reads a whole body of at most `limit` bytes, counting on the stream (so chunked bodies
/// without `Content-Length` are bounded too), within [`BODY_READ_TIMEOUT`].
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(declared) = declared {
        if declared > u64::try_from(limit).unwrap_or(u64::MAX) {
            if declared <= u64::try_from(limit + DRAIN_BYTES_MAX).unwrap_or(u64::MAX) {
                drain(&mut payload).await;
            }
            return Err(ApiError::PayloadTooLarge { limit });
        }
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::field("body", e))?;
            if body.len() + chunk.len() > limit {
                drain(&mut payload).await;
                return Err(ApiError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read)
        .await
        .map_err(|_| ApiError::BodyTimeout)?
}

/// Answers a refused request (auth, quota, overload) after reading its body when that is small,
/// so that the connection stays usable: actix closes a keep-alive connection whose request body
/// was left unread, and a client refused under load would then pay a reconnect for every retry,
/// which costs the server more than the refusal itself.
async fn refuse(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
    error: ApiError,
) -> ApiError {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n <= u64::try_from(limit).unwrap_or(u64::MAX)) {
        drain(payload).await;
    }
    error
}

/// Reads and discards the rest of a refused body, within [`DRAIN_BYTES_MAX`] and
/// [`DRAIN_TIMEOUT`].
async fn drain(payload: &mut web::Payload) {
    let discard = async {
        let mut discarded = 0usize;
        while let Some(Ok(chunk)) = payload.next().await {
            discarded += chunk.len();
            if discarded > DRAIN_BYTES_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, discard).await;
}
