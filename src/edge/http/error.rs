//! [`ApiError`]: every way an HTTP request can fail, and the one place that maps each to an HTTP
//! status, a stable snake_case `code` and the JSON body `{"error":{"code","message"}}` (docs/http.md).
//!
//! Invariants:
//! - Status codes are decided only in [`ApiError::status`]; [`RuntimeError`] and [`AuthError`]
//!   are mapped here and nowhere else. A runtime error's code and client-safe message come from
//!   [`RuntimeError::public`], which the NATS edge uses for its error replies too.
//! - A 5xx body never carries details: the detail is logged once, here, inside the request's
//!   span, and the client sees a generic message.
//! - Messages shown to a client name only the caller's own ids (its tenant, env, team, channel,
//!   session) or the field it sent; never another tenant's data, a token or message text.
//! - Every 429 carries `Retry-After` in whole seconds, at least 1.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::messages::{RuntimeError, INTERNAL_ERROR_MESSAGE};
use crate::connectors::ConnectorError;
use crate::edge::auth::AuthError;
use crate::events::log::ReadError;

/// `Retry-After` for a runtime that is overloaded (its queues drain within a second or so).
pub const OVERLOADED_RETRY_AFTER_S: u64 = 1;
/// `Retry-After` when there is no room for a new session: live sessions become idle (and so
/// passivable early) a second after their last message.
pub const SESSIONS_FULL_RETRY_AFTER_S: u64 = 2;
/// `Retry-After` when every audit export slot is taken: exports take seconds to minutes.
pub const EXPORTS_BUSY_RETRY_AFTER_S: u64 = 10;

/// Why a request failed. Rejections (the caller's doing, 4xx) are logged at debug/info by the
/// request middleware; failures (ours, 5xx) are logged here with their detail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The token or the tenant/team headers are missing, malformed or disagree: 400/401/403/404.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The runtime refused or failed the message; see [`ApiError::status`] for each variant.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The body is not the JSON the route expects (syntax, a missing field, a wrong type). 400.
    #[error("invalid JSON body: {0}")]
    InvalidJson(String),
    /// A field (body, path or query) is present but invalid; `field` names it. 400.
    #[error("invalid {field}: {message}")]
    InvalidField {
        /// The field as the client named it (`channel`, `session`, `limit`, ...).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The body's team disagrees with the token's `team` claim or the `X-Team-ID` header. 403.
    #[error("team {0} disagrees with the token's team or the X-Team-ID header")]
    TeamMismatch(String),
    /// The request names a team the tenant does not have (reads). 404.
    #[error("team {0} does not exist")]
    UnknownTeam(String),
    /// No such session in the caller's tenant, env and team(s); another tenant's session of the
    /// same id is reported exactly like this. 404.
    #[error("session {0} not found")]
    SessionNotFound(String),
    /// The session id exists in several of the tenant's teams; the caller must pick one. 409.
    #[error("session {0} exists in several teams; set X-Team-ID to choose one")]
    AmbiguousSession(String),
    /// The session has copies of its personal data written unsealed (it started before they
    /// were sealed, or with `[log] seal = false`): only the offline erase removes them. 409.
    #[error("session {0} was written before its personal data was sealed everywhere, so erasing it online cannot remove every copy; erase it offline with `tenantry erase --session {0}` (nothing was changed)")]
    EraseOffline(String),
    /// No route has this path. 404.
    #[error("no such route")]
    RouteNotFound,
    /// The route exists but not with this method. 405.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The body is larger than the limit (counted on the stream, chunked bodies too). 413.
    #[error("request body exceeds {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The client sent the body too slowly. 408.
    #[error("request body not received in time")]
    BodyTimeout,
    /// The tenant is over its request quota. 429 with `Retry-After`.
    #[error("tenant request quota exceeded; retry after {retry_after_s} s")]
    QuotaExceeded {
        /// Seconds until a request would be admitted (at least 1).
        retry_after_s: u64,
    },
    /// As many audit exports as allowed are running, for the tenant or the whole server. 429
    /// with `Retry-After`.
    #[error("{limit} of audit exports running at once is reached; retry later")]
    ExportsBusy {
        /// Which limit: `the tenant's limit` or `the server's limit`.
        limit: &'static str,
    },
    /// A what-if flow (the request body) cannot be used; the loader's message names the line or
    /// the field. 400.
    #[error("{0}")]
    InvalidFlow(String),
    /// The route covers the whole tenant (e.g. its hash chain), which a team-scoped caller
    /// (team claim or `X-Team-ID`) may not see. 403.
    #[error(
        "{0} covers the whole tenant, not one team: use a token without a team claim and no \
         X-Team-ID header"
    )]
    TeamScoped(&'static str),
    /// The route needs a scope the token's `scope` claim does not grant (a token without the
    /// claim has no `admin`). 403 `scope_required`.
    #[error("this route needs a token with the {0} scope (claim `scope` naming {0})")]
    ScopeRequired(crate::edge::auth::Scope),
    /// A route's scope rule (`routes::ROUTE_SCOPES`) needs a word the token's `scope` claim
    /// does not grant. 403 `scope_required`, naming the word and the route.
    #[error(
        "{route} needs a token with the {scope} scope (a `scope` claim naming {scope}; admin \
         implies every word; see docs/http.md#scopes)"
    )]
    RouteScopeRequired {
        /// The missing word.
        scope: crate::edge::auth::Scope,
        /// The route, as `METHOD /path/template`.
        route: String,
    },
    /// A connector token (`scope: "connector"`) called a route other than `POST
    /// /api/v1/messages` and its own heartbeat and outbox. 403 `connector_token_restricted`.
    #[error(
        "a connector token may only post messages of its own team and channel (POST \
         /api/v1/messages), its own heartbeat (POST /api/v1/connectors/{{id}}/heartbeat) and \
         outbox (GET /api/v1/connectors/{{id}}/outbox, POST .../outbox/ack); use a tenant \
         token for {0}"
    )]
    ConnectorTokenRestricted(String),
    /// A connector registry refusal; see [`ApiError::status`] for each variant.
    #[error(transparent)]
    Connector(crate::connectors::ConnectorError),
    /// In a cluster, a tenant-wide operation (deleting the tenant) reached a node that does not
    /// own the tenant; it is not forwarded. 409 `not_owner`, naming the owner when one is known.
    #[error("{}", not_owner_message(tenant, owner.as_deref()))]
    NotOwner {
        /// The tenant.
        tenant: String,
        /// The node that owns it (`None`: none right now, a failover in progress).
        owner: Option<String>,
    },
    /// The operation is not available on this deployment (e.g. erasing a session on the
    /// JetStream log backend). 501 `not_supported`.
    #[error("{0}")]
    NotSupported(&'static str),
    /// The tenant has as many event streams open as allowed. 429 with `Retry-After`.
    #[error(
        "{max} event streams of this tenant are open (the most allowed); close one or retry later"
    )]
    StreamsBusy {
        /// The limit per tenant.
        max: usize,
    },
    /// No webhook channel at this path: an unknown tenant, env, team or channel, or a channel
    /// whose provider is not `webhook` (one answer for all). 404 `webhook_not_found`.
    #[error(
        "no webhook channel at this path: /api/v1/webhooks/{{tenant}}/{{env}}/{{team}}/{{channel}} \
         needs a channel with provider = \"webhook\""
    )]
    WebhookNotFound,
    /// A webhook's signature headers are missing or malformed, or its HMAC does not match the
    /// `webhook_secret`. 401 `invalid_signature`.
    #[error("{0}")]
    WebhookSignature(&'static str),
    /// A correctly signed webhook whose `X-Tenantry-Timestamp` is more than 5 minutes from the
    /// server's clock (a replay, or a skewed clock). 401 `stale_timestamp`.
    #[error(
        "X-Tenantry-Timestamp is more than {} s from the server's time: sign with the current \
         time (a replayed request is refused)",
        super::webhook::WEBHOOK_TOLERANCE_S
    )]
    WebhookStale,
    /// Ours: a stored record cannot be read. 500, detail logged.
    #[error("reading the log: {0}")]
    Read(#[from] ReadError),
    /// Ours: a blocking task that died, metrics encoding. 500, detail logged.
    #[error("internal: {0}")]
    Internal(String),
}

/// Status-independent classification used by metrics: did the edge refuse the request before
/// doing the work (auth, quota, size limits)?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    /// The snake_case code of the JSON body.
    pub code: &'static str,
    /// True for auth, quota and size rejections (`tenantry_rejected_requests_total`).
    pub rejection: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    error: BodyError<'a>,
}

#[derive(Serialize)]
struct BodyError<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// A bad field: 400 naming it.
    pub fn field(field: &'static str, message: impl ToString) -> ApiError {
        ApiError::InvalidField {
            field,
            message: message.to_string(),
        }
    }

    /// The snake_case code of the JSON body, and whether it is an edge rejection.
    pub fn code(&self) -> ErrorCode {
        let (code, rejection) = match self {
            ApiError::Auth(e) => (
                match e {
                    AuthError::MissingToken => "missing_token",
                    AuthError::InvalidToken(_)
                    | AuthError::InvalidScope(_)
                    | AuthError::UnknownKid(_) => "invalid_token",
                    AuthError::MissingTenantHeader => "missing_tenant_header",
                    AuthError::AmbiguousHeader(_) => "ambiguous_header",
                    AuthError::InvalidHeader { .. } => "invalid_header",
                    AuthError::TenantMismatch => "tenant_mismatch",
                    AuthError::TeamMismatch => "team_mismatch",
                    AuthError::UnknownTenant(_) => "unknown_tenant",
                },
                true,
            ),
            // One table of codes for HTTP and NATS: the runtime's.
            ApiError::Runtime(e) => (e.code(), false),
            ApiError::InvalidJson(_) => ("invalid_json", false),
            ApiError::InvalidField { field, .. } => (invalid_field_code(field), false),
            ApiError::TeamMismatch(_) => ("team_mismatch", true),
            ApiError::UnknownTeam(_) => ("unknown_team", false),
            ApiError::SessionNotFound(_) => ("session_not_found", false),
            ApiError::AmbiguousSession(_) => ("ambiguous_session", false),
            ApiError::EraseOffline(_) => ("erase_offline", false),
            ApiError::RouteNotFound => ("not_found", false),
            ApiError::MethodNotAllowed => ("method_not_allowed", false),
            ApiError::PayloadTooLarge { .. } => ("payload_too_large", true),
            ApiError::BodyTimeout => ("body_timeout", true),
            ApiError::QuotaExceeded { .. } => ("quota_exceeded", true),
            ApiError::ExportsBusy { .. } => ("exports_busy", true),
            ApiError::InvalidFlow(_) => ("invalid_flow", false),
            ApiError::TeamScoped(_) => ("team_scoped", false),
            ApiError::ScopeRequired(_) => ("scope_required", true),
            ApiError::RouteScopeRequired { .. } => ("scope_required", true),
            ApiError::ConnectorTokenRestricted(_) => ("connector_token_restricted", true),
            ApiError::Connector(e) => (
                match e {
                    ConnectorError::EnvMismatch { .. } => "env_mismatch",
                    ConnectorError::Conflict { .. } => "connector_conflict",
                    ConnectorError::TeamMismatch { .. } => "connector_team_mismatch",
                    ConnectorError::NotRegistered(_) => "connector_not_registered",
                    ConnectorError::ChannelMismatch { .. } => "connector_channel_mismatch",
                    ConnectorError::Runtime(e) => e.code(),
                    ConnectorError::Invalid { field, .. } => invalid_field_code(field),
                    ConnectorError::Read(_) => "internal",
                    ConnectorError::NotFound(_) => "connector_not_found",
                    ConnectorError::AckBehind { .. } => "outbox_ack_behind",
                    ConnectorError::AckAhead { .. } => "outbox_ack_ahead",
                },
                false,
            ),
            ApiError::NotOwner { .. } => ("not_owner", false),
            ApiError::NotSupported(_) => ("not_supported", false),
            ApiError::StreamsBusy { .. } => ("streams_busy", true),
            ApiError::WebhookNotFound => ("webhook_not_found", true),
            ApiError::WebhookSignature(_) => ("invalid_signature", true),
            ApiError::WebhookStale => ("stale_timestamp", true),
            ApiError::Read(_) | ApiError::Internal(_) => ("internal", false),
        };
        ErrorCode { code, rejection }
    }

    /// The HTTP status. The only place that decides one.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Auth(e) => match e {
                AuthError::MissingToken
                | AuthError::InvalidToken(_)
                | AuthError::InvalidScope(_)
                | AuthError::UnknownKid(_) => StatusCode::UNAUTHORIZED,
                AuthError::MissingTenantHeader
                | AuthError::AmbiguousHeader(_)
                | AuthError::InvalidHeader { .. } => StatusCode::BAD_REQUEST,
                AuthError::TenantMismatch | AuthError::TeamMismatch => StatusCode::FORBIDDEN,
                AuthError::UnknownTenant(_) => StatusCode::NOT_FOUND,
            },
            ApiError::Runtime(e) => match e {
                RuntimeError::UnknownTenant(_) => StatusCode::NOT_FOUND,
                RuntimeError::UnknownEnv { .. }
                | RuntimeError::UnknownTeam { .. }
                | RuntimeError::UnknownChannel { .. }
                | RuntimeError::Invalid(_) => StatusCode::BAD_REQUEST,
                RuntimeError::SessionEnded(_) | RuntimeError::SessionChannel { .. } => {
                    StatusCode::CONFLICT
                }
                RuntimeError::Overloaded | RuntimeError::SessionsFull { .. } => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                RuntimeError::Quarantined(_)
                | RuntimeError::TenantDeleting(_)
                | RuntimeError::ShuttingDown
                | RuntimeError::Interrupted => StatusCode::SERVICE_UNAVAILABLE,
                RuntimeError::FlowCrashed(_) | RuntimeError::Storage(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            ApiError::InvalidJson(_) | ApiError::InvalidField { .. } | ApiError::InvalidFlow(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TeamMismatch(_)
            | ApiError::TeamScoped(_)
            | ApiError::ScopeRequired(_)
            | ApiError::RouteScopeRequired { .. }
            | ApiError::ConnectorTokenRestricted(_) => StatusCode::FORBIDDEN,
            ApiError::Connector(e) => match e {
                ConnectorError::EnvMismatch { .. }
                | ConnectorError::TeamMismatch { .. }
                | ConnectorError::NotRegistered(_)
                | ConnectorError::ChannelMismatch { .. } => StatusCode::FORBIDDEN,
                ConnectorError::Conflict { .. }
                | ConnectorError::AckBehind { .. }
                | ConnectorError::AckAhead { .. } => StatusCode::CONFLICT,
                ConnectorError::NotFound(_) => StatusCode::NOT_FOUND,
                ConnectorError::Read(_) => StatusCode::INTERNAL_SERVER_ERROR,
                ConnectorError::Invalid { .. } => StatusCode::BAD_REQUEST,
                // Converted to `ApiError::Runtime` by `From`; never built with this variant.
                ConnectorError::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::NotSupported(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::UnknownTeam(_)
            | ApiError::SessionNotFound(_)
            | ApiError::RouteNotFound
            | ApiError::WebhookNotFound => StatusCode::NOT_FOUND,
            ApiError::WebhookSignature(_) | ApiError::WebhookStale => StatusCode::UNAUTHORIZED,
            ApiError::AmbiguousSession(_)
            | ApiError::EraseOffline(_)
            | ApiError::NotOwner { .. } => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::QuotaExceeded { .. }
            | ApiError::ExportsBusy { .. }
            | ApiError::StreamsBusy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Read(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Seconds for `Retry-After`, for the errors that carry one.
    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::QuotaExceeded { retry_after_s } => Some((*retry_after_s).max(1)),
            ApiError::Runtime(
                RuntimeError::Overloaded
                | RuntimeError::Interrupted
                | RuntimeError::TenantDeleting(_),
            ) => Some(OVERLOADED_RETRY_AFTER_S),
            ApiError::Runtime(RuntimeError::SessionsFull { .. }) => {
                Some(SESSIONS_FULL_RETRY_AFTER_S)
            }
            ApiError::ExportsBusy { .. } => Some(EXPORTS_BUSY_RETRY_AFTER_S),
            ApiError::StreamsBusy { .. } => Some(super::stream::STREAMS_BUSY_RETRY_AFTER_S),
            _ => None,
        }
    }

    /// The message shown to the client: the error's text for 4xx, a generic line for 5xx; a
    /// runtime error's is the one NATS replies with too ([`RuntimeError::public`]).
    fn public_message(&self, status: StatusCode) -> String {
        match self {
            ApiError::Runtime(e) => e.public().1,
            // Not a failure: the deployment lacks the feature, and the client must know why.
            ApiError::NotSupported(why) => (*why).to_owned(),
            _ if status.is_server_error() => INTERNAL_ERROR_MESSAGE.to_owned(),
            other => other.to_string(),
        }
    }
}

/// The text of [`ApiError::NotOwner`].
fn not_owner_message(tenant: &str, owner: Option<&str>) -> String {
    match owner {
        Some(owner) => format!(
            "tenant {tenant} is owned by node {owner} of the cluster; this node only follows \
             it: send DELETE /api/v1/tenants/{tenant} to node {owner} (nothing was changed)"
        ),
        None => format!(
            "no node owns tenant {tenant} right now (a failover in progress); retry shortly \
             (nothing was changed)"
        ),
    }
}

impl From<ConnectorError> for ApiError {
    /// A runtime error keeps its own status and code, as for a message.
    fn from(e: ConnectorError) -> ApiError {
        match e {
            ConnectorError::Runtime(e) => ApiError::Runtime(e),
            ConnectorError::Invalid { field, message } => ApiError::InvalidField { field, message },
            other => ApiError::Connector(other),
        }
    }
}

fn invalid_field_code(field: &str) -> &'static str {
    match field {
        "team" => "invalid_team",
        "channel" => "invalid_channel",
        "session" => "invalid_session",
        "user" => "invalid_user",
        "text" => "invalid_text",
        "message_id" => "invalid_message_id",
        _ => "invalid_parameter",
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let code = self.code();
        if status.is_server_error() {
            // Logged once, here, inside the request's span; the client gets no detail.
            tracing::error!(code = code.code, error = %self, "request failed");
        }
        let message = self.public_message(status);
        let body = serde_json::to_vec(&Body {
            error: BodyError {
                code: code.code,
                message: &message,
            },
        })
        .unwrap_or_else(|_| {
            br#"{"error":{"code":"internal","message":"internal error"}}"#.to_vec()
        });
        let mut response = HttpResponse::build(status);
        response.content_type("application/json");
        if let Some(seconds) = self.retry_after_s() {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        if matches!(
            self,
            ApiError::PayloadTooLarge { .. } | ApiError::BodyTimeout
        ) {
            // The rest of the body may still be on its way: do not reuse the connection.
            response.force_close();
        }
        let mut response = response.body(body);
        response.extensions_mut().insert(code);
        response
    }
}
