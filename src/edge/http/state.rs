//! What every HTTP handler shares ([`EdgeState`]) and the [`Caller`] extractor built from it:
//! the token, the tenancy headers and the tenant's quota, checked in that order, before a
//! handler runs. The routes and the reports both read it; it imports neither. A connector token
//! gets past the extractor on `POST /api/v1/messages` and its own heartbeat and outbox routes
//! only (403 `connector_token_restricted`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::error::ApiError;
use super::export_slots::ExportSlots;
use super::metrics::HttpMetrics;
use super::observe::{LogBudget, TenantLabel};
use super::stream::StreamSlots;
use crate::actors::runtime::Runtime;
use crate::config::Config;
use crate::connectors::Registry;
use crate::edge::auth::{bearer_token, check_headers, Authenticator, Caller};
use crate::edge::metrics::MetricsRegistry;
use crate::edge::peer::{ForgetTenant, Link};
use crate::edge::quota::Quotas;
use crate::projections::projector::Projector;
use crate::tenancy::{TeamId, TenantId};

/// What every handler shares: the runtime, the checkers, the metrics and the tenants' teams.
pub struct EdgeState {
    runtime: Runtime,
    /// The read models (usage, session index), folded on demand before a report.
    projector: Arc<Projector>,
    auth: Authenticator,
    /// Shared with the NATS edge: both charge a tenant's one quota.
    quotas: Arc<Quotas>,
    /// Every edge's families, rendered on the metrics listener.
    registry: MetricsRegistry,
    metrics: HttpMetrics,
    /// The served tenants and their teams (from the config).
    teams: HashMap<TenantId, BTreeSet<TeamId>>,
    body_bytes_max: usize,
    /// Log lines about refused requests left to write this second.
    refused_log: LogBudget,
    /// Running audit exports, bounded.
    export_slots: ExportSlots,
    /// Open event streams, bounded per tenant.
    streams: StreamSlots,
    /// Set once the server stops: every event stream ends.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The name and connection state of the edge served beside HTTP (NATS), when one is
    /// configured (for `/readyz`).
    peer: Option<(&'static str, Link)>,
    /// `server.data_dir` (snapshots and secrets, for deleting a tenant).
    data_dir: std::path::PathBuf,
    /// Removes a tenant's series from the peer edge's families.
    forget_peer: Option<ForgetTenant>,
    /// The connector registry.
    connectors: Arc<Registry>,
    /// The config (tenants' teams and channels, `[auth]`) for the tokens the server mints.
    config: Arc<Config>,
}

/// The parts of an [`EdgeState`] that are built from more than the config.
pub(super) struct Parts {
    pub(super) runtime: Runtime,
    pub(super) projector: Arc<Projector>,
    pub(super) auth: Authenticator,
    pub(super) quotas: Arc<Quotas>,
    pub(super) registry: MetricsRegistry,
    pub(super) peer: Option<(&'static str, Link)>,
    /// Removes a tenant's series from the peer edge's families.
    pub(super) forget_peer: Option<ForgetTenant>,
    pub(super) connectors: Arc<Registry>,
}

impl EdgeState {
    /// State for `config`'s tenants; the HTTP families join `parts.registry`.
    pub(super) fn new(config: &Config, parts: Parts) -> EdgeState {
        let Parts {
            runtime,
            projector,
            auth,
            quotas,
            mut registry,
            peer,
            forget_peer,
            connectors,
        } = parts;
        let metrics = HttpMetrics::new(&mut registry);
        EdgeState {
            runtime,
            projector,
            auth,
            quotas,
            registry,
            metrics,
            teams: config
                .tenants()
                .iter()
                .map(|(id, t)| (id.clone(), t.teams.keys().cloned().collect()))
                .collect(),
            body_bytes_max: config.server().http_body_bytes_max,
            refused_log: LogBudget::default(),
            export_slots: ExportSlots::new(config.server().exports),
            streams: StreamSlots::default(),
            shutdown: tokio::sync::watch::channel(false).0,
            peer,
            data_dir: config.server().data_dir.clone(),
            forget_peer,
            connectors,
            config: Arc::new(config.clone()),
        }
    }

    pub(super) fn connectors(&self) -> &Registry {
        &self.connectors
    }

    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    /// The key the server signs the tokens it mints with (the default HS256 key).
    pub(super) fn signing_key(&self) -> crate::secrets::value::SecretValue {
        self.auth.default_key()
    }

    pub(super) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(super) fn projector(&self) -> &Projector {
        &self.projector
    }

    pub(super) fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Removes `tenant`'s series from the peer edge's families; how many.
    pub(super) fn forget_peer_series(&self, tenant: &TenantId) -> u64 {
        self.forget_peer.as_ref().map_or(0, |forget| forget(tenant))
    }

    pub(super) fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    pub(super) fn metrics_registry(&self) -> &MetricsRegistry {
        &self.registry
    }

    pub(super) fn refused_log(&self) -> &LogBudget {
        &self.refused_log
    }

    pub(super) fn export_slots(&self) -> &ExportSlots {
        &self.export_slots
    }

    pub(super) fn streams(&self) -> &StreamSlots {
        &self.streams
    }

    /// Becomes `true` when the server stops.
    pub(super) fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every event stream to end (the server is stopping).
    pub(super) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(super) fn body_bytes_max(&self) -> usize {
        self.body_bytes_max
    }

    /// The peer edge's name and connection state, when one is configured.
    pub(super) fn peer(&self) -> Option<&(&'static str, Link)> {
        self.peer.as_ref()
    }

    pub(super) fn serves(&self, tenant: &TenantId) -> bool {
        self.teams.contains_key(tenant)
    }

    /// Charges one request to `tenant`'s quota (the one a [`Caller`] is charged at admission).
    pub(super) fn charge_quota(&self, tenant: &TenantId) -> Result<(), ApiError> {
        self.quotas
            .check(tenant)
            .map_err(|over| ApiError::QuotaExceeded {
                retry_after_s: over.retry_after_s,
            })
    }

    pub(super) fn teams_of(&self, tenant: &TenantId) -> impl Iterator<Item = &TeamId> {
        self.teams.get(tenant).into_iter().flatten()
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(admit(req))
    }
}

/// Authenticates `req`, holds it to its route's scope rule (`routes::ROUTE_SCOPES`) and
/// charges its tenant's quota.
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
    match &caller.connector {
        Some(id) if !connector_route(req, id) => {
            return Err(ApiError::ConnectorTokenRestricted(format!(
                "{} {}",
                req.method(),
                req.path()
            )));
        }
        Some(_) => {}
        // The route's scope rule (`routes::ROUTE_SCOPES`); an unmatched route has none and is
        // refused, fail closed.
        None => super::routes::check_scope(
            &caller.scope,
            req.method().as_str(),
            req.match_pattern().as_deref().unwrap_or_default(),
        )?,
    }
    if let Some(team) = caller.team() {
        span.record("team", team.as_str());
    }
    state.charge_quota(&caller.tenant)?;
    Ok(caller)
}

/// The routes a connector token may call: `POST /api/v1/messages` (its team and channel are
/// then held to its connector's by the handler), and of its own connector `id`: `POST
/// /api/v1/connectors/{id}/heartbeat`, `GET /api/v1/connectors/{id}/outbox` and `POST
/// /api/v1/connectors/{id}/outbox/ack`. Fail closed: any other method or path is refused.
fn connector_route(req: &HttpRequest, id: &crate::tenancy::ConnectorId) -> bool {
    let path = req.path();
    let own = |suffix: &str| {
        path.strip_prefix(CONNECTOR_ROUTE_PREFIX)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|own| own == id.as_str())
    };
    if req.method() == actix_web::http::Method::GET {
        return own(CONNECTOR_OUTBOX_SUFFIX);
    }
    if req.method() != actix_web::http::Method::POST {
        return false;
    }
    path == CONNECTOR_MESSAGES_ROUTE || own(CONNECTOR_HEARTBEAT_SUFFIX) || own(CONNECTOR_ACK_SUFFIX)
}

/// The messages route, open to a connector token.
const CONNECTOR_MESSAGES_ROUTE: &str = "/api/v1/messages";
/// `/api/v1/connectors/{id}` + one of the suffixes: routes open to the connector token of `id`.
const CONNECTOR_ROUTE_PREFIX: &str = "/api/v1/connectors/";
const CONNECTOR_HEARTBEAT_SUFFIX: &str = "/heartbeat";
const CONNECTOR_OUTBOX_SUFFIX: &str = "/outbox";
const CONNECTOR_ACK_SUFFIX: &str = "/outbox/ack";

fn edge_state(req: &HttpRequest) -> Result<&web::Data<EdgeState>, ApiError> {
    req.app_data::<web::Data<EdgeState>>()
        .ok_or_else(|| ApiError::Internal("edge state not registered".to_owned()))
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

/// Runs `work` on the blocking pool.
pub(super) async fn blocking<T, F>(state: web::Data<EdgeState>, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&EdgeState) -> Result<T, ApiError> + Send + 'static,
{
    web::block(move || work(&state))
        .await
        .map_err(|e| ApiError::Internal(format!("blocking task: {e}")))?
}
