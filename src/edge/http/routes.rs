//! The HTTP route table ([`routes`], listed in [`ROUTES`]) and its handlers: health, readiness,
//! messages and sessions; the sessions list is in `sessions`, the reports (`/usage`,
//! `/audit/export`) in `reports`, the debugging routes (state at a seq, what-if, close, reset,
//! `/audit/verify`) in `debug`, the live event streams in `stream`, the console and the OpenAPI
//! document in `console`, the connector registry in `connectors`, a connector's outbox in
//! `outbox`, the inbound webhooks in `webhook`.
//!
//! Invariants:
//! - `/api/v1` handlers take a [`Caller`]: the token, the tenancy headers and the tenant's quota
//!   are checked, in that order, before anything else (the body included) is read. The one
//!   exception is `POST /webhooks/...`, authenticated by the HMAC signature over its body
//!   (`webhook`): its body is read (bounded) first, and the quota charged once it checks out.
//! - Bodies are read through `body::read_body`, which counts bytes on the stream and stops at
//!   the limit, so a chunked body cannot bypass it; bodies are parsed only after that.
//! - Reads of the log run on the blocking pool, never on an HTTP worker's event loop.
//! - Errors leave handlers as [`ApiError`]; statuses are decided in `error` only.
//! - `/metrics` is not in this table: it is served only on the metrics listener.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

use super::admin;
use super::body::{read_body, refuse};
use super::connectors;
use super::console;
use super::debug;
use super::dto::{AckBody, EventItem, EventsBody, EventsQuery, MessageBody, SessionStateBody};
use super::error::ApiError;
use super::reports;
use super::state::{blocking, read_team, EdgeState};
use super::{outbox, sessions, stream, webhook};
use crate::actors::messages::{Inbound, RuntimeError};
use crate::edge::auth::{Caller, Scope, Scopes};
use crate::tenancy::{ChannelId, SessionId, TeamId, TenantCtx};

/// Sessions per `GET /api/v1/sessions` response when `limit` is not given.
pub const SESSIONS_PAGE_DEFAULT: u32 = 100;
/// Most sessions per `GET /api/v1/sessions` response.
pub const SESSIONS_PAGE_MAX: u32 = 1000;
/// Most events per `GET /api/v1/sessions/{id}/events` response.
pub const EVENTS_PAGE_MAX: usize = 1000;

/// Every route registered in [`routes`]: (method, path as an OpenAPI path template). A test
/// holds it equal to the paths and methods of `docs/openapi.json` (served at
/// `/api/v1/openapi.json`), and another that each answers over HTTP; add a line here with each
/// route.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/app.js"),
    ("GET", "/console/reports.js"),
    ("GET", "/console/app.css"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/messages"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/{id}"),
    ("GET", "/api/v1/sessions/{id}/events"),
    ("GET", "/api/v1/sessions/{id}/state"),
    ("POST", "/api/v1/sessions/{id}/what-if"),
    ("POST", "/api/v1/sessions/{id}/close"),
    ("POST", "/api/v1/sessions/{id}/reset"),
    ("GET", "/api/v1/usage"),
    ("GET", "/api/v1/audit/export"),
    ("GET", "/api/v1/audit/verify"),
    ("GET", "/api/v1/events/stream"),
    ("GET", "/api/v1/sessions/{id}/events/stream"),
    ("DELETE", "/api/v1/tenants/{tenant}"),
    ("DELETE", "/api/v1/sessions/{id}"),
    ("GET", "/api/v1/connectors"),
    ("POST", "/api/v1/connectors"),
    ("POST", "/api/v1/connectors/{id}/heartbeat"),
    ("GET", "/api/v1/connectors/{id}/outbox"),
    ("POST", "/api/v1/connectors/{id}/outbox/ack"),
    ("POST", "/api/v1/webhooks/{tenant}/{env}/{team}/{channel}"),
];

/// What a route asks of a token's `scope` claim (docs/http.md#scopes). Checked by the
/// [`Caller`] extractor, before the body is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeRule {
    /// No token: health, readiness, the console, `openapi.json`, the inbound webhooks (HMAC).
    Public,
    /// The word: a token with a `scope` claim needs it (or `admin`); a token without one has
    /// `messages`, `read` and `audit`, never `admin` ([`Scopes::allows`]).
    Word(Scope),
    /// An operator action (close, reset): `admin` for a token with a `scope` claim; a token
    /// without one keeps it, as before scopes were enforced.
    Operator,
    /// The connector registry and outboxes: a connector token for its own connector, else the
    /// `connectors` (or `admin`) word, checked by their handlers (`connectors`, `outbox`).
    Connectors,
}

/// The [`ScopeRule`] of every route of [`ROUTES`], in the same order; a test holds the two
/// equal, so a new route must name its rule here. A route missing here is refused (500, fail
/// closed).
pub const ROUTE_SCOPES: &[(&str, &str, ScopeRule)] = &[
    ("GET", "/healthz", ScopeRule::Public),
    ("GET", "/readyz", ScopeRule::Public),
    ("GET", "/console", ScopeRule::Public),
    ("GET", "/console/", ScopeRule::Public),
    ("GET", "/console/app.js", ScopeRule::Public),
    ("GET", "/console/reports.js", ScopeRule::Public),
    ("GET", "/console/app.css", ScopeRule::Public),
    ("GET", "/api/v1/openapi.json", ScopeRule::Public),
    ("POST", "/api/v1/messages", ScopeRule::Word(Scope::Messages)),
    ("GET", "/api/v1/sessions", ScopeRule::Word(Scope::Read)),
    ("GET", "/api/v1/sessions/{id}", ScopeRule::Word(Scope::Read)),
    (
        "GET",
        "/api/v1/sessions/{id}/events",
        ScopeRule::Word(Scope::Read),
    ),
    (
        "GET",
        "/api/v1/sessions/{id}/state",
        ScopeRule::Word(Scope::Read),
    ),
    (
        "POST",
        "/api/v1/sessions/{id}/what-if",
        ScopeRule::Word(Scope::Read),
    ),
    ("POST", "/api/v1/sessions/{id}/close", ScopeRule::Operator),
    ("POST", "/api/v1/sessions/{id}/reset", ScopeRule::Operator),
    ("GET", "/api/v1/usage", ScopeRule::Word(Scope::Read)),
    ("GET", "/api/v1/audit/export", ScopeRule::Word(Scope::Audit)),
    ("GET", "/api/v1/audit/verify", ScopeRule::Word(Scope::Audit)),
    ("GET", "/api/v1/events/stream", ScopeRule::Word(Scope::Read)),
    (
        "GET",
        "/api/v1/sessions/{id}/events/stream",
        ScopeRule::Word(Scope::Read),
    ),
    (
        "DELETE",
        "/api/v1/tenants/{tenant}",
        ScopeRule::Word(Scope::Admin),
    ),
    (
        "DELETE",
        "/api/v1/sessions/{id}",
        ScopeRule::Word(Scope::Admin),
    ),
    ("GET", "/api/v1/connectors", ScopeRule::Connectors),
    ("POST", "/api/v1/connectors", ScopeRule::Connectors),
    (
        "POST",
        "/api/v1/connectors/{id}/heartbeat",
        ScopeRule::Connectors,
    ),
    (
        "GET",
        "/api/v1/connectors/{id}/outbox",
        ScopeRule::Connectors,
    ),
    (
        "POST",
        "/api/v1/connectors/{id}/outbox/ack",
        ScopeRule::Connectors,
    ),
    (
        "POST",
        "/api/v1/webhooks/{tenant}/{env}/{team}/{channel}",
        ScopeRule::Public,
    ),
];

/// Whether `scopes` may call `method` `pattern` (a [`ROUTES`] path template); else 403
/// `scope_required` naming the missing word and the route. A route without a rule is refused
/// (500 naming it: a route added to the table without its rule, which a unit test catches).
pub(super) fn check_scope(scopes: &Scopes, method: &str, pattern: &str) -> Result<(), ApiError> {
    let rule = ROUTE_SCOPES
        .iter()
        .find(|(m, p, _)| *m == method && *p == pattern)
        .map(|(_, _, rule)| *rule);
    let missing = match rule {
        Some(ScopeRule::Public | ScopeRule::Connectors) => None,
        Some(ScopeRule::Word(word)) => (!scopes.allows(word)).then_some(word),
        Some(ScopeRule::Operator) => {
            (scopes.claim().is_some() && !scopes.allows(Scope::Admin)).then_some(Scope::Admin)
        }
        None => {
            return Err(ApiError::Internal(format!(
                "{method} {pattern} has no scope rule in ROUTE_SCOPES"
            )))
        }
    };
    match missing {
        None => Ok(()),
        Some(scope) => Err(ApiError::RouteScopeRequired {
            scope,
            route: format!("{method} {pattern}"),
        }),
    }
}

/// The routes. `/api/v1` handlers take a [`Caller`] first; to add one (e.g. `GET /usage`,
/// `GET /audit/export`), write `async fn(Caller, web::Data<EdgeState>, ...) -> Result<HttpResponse,
/// ApiError>` and register it in [`api_v1`].
pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/healthz")
            .get(healthz)
            .to(method_not_allowed),
    )
    .service(web::resource("/readyz").get(readyz).to(method_not_allowed))
    .service(
        web::resource("/console")
            .get(console::redirect)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/console/")
            .get(console::index)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/console/app.js")
            .get(console::script)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/console/reports.js")
            .get(console::reports_script)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/console/app.css")
            .get(console::style)
            .to(method_not_allowed),
    )
    .service(web::scope("/api/v1").configure(api_v1));
}

/// The authenticated API (and its public description, `/openapi.json`).
fn api_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/openapi.json")
            .get(console::openapi)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/messages")
            .post(post_message)
            .to(method_not_allowed),
    )
    // Signed by the sender (HMAC), not by a token: no `Caller`.
    .service(
        web::resource("/webhooks/{tenant}/{env}/{team}/{channel}")
            .post(webhook::post)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions")
            .get(sessions::list)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}")
            .get(get_session)
            .delete(admin::erase_session)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/events")
            .get(session_events)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/state")
            .get(debug::state_at_seq)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/what-if")
            .post(debug::what_if)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/close")
            .post(debug::close)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/reset")
            .post(debug::reset)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/usage")
            .get(reports::usage)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/audit/export")
            .get(reports::audit_export)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/audit/verify")
            .get(debug::audit_verify)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/events/stream")
            .get(stream::tenant_stream)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/sessions/{id}/events/stream")
            .get(stream::session_stream)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/tenants/{tenant}")
            .delete(admin::delete_tenant)
            .to(method_not_allowed),
    )
    .configure(connector_routes);
}

/// The connector registry and outboxes.
fn connector_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/connectors")
            .get(connectors::list)
            .post(connectors::register)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/connectors/{id}/heartbeat")
            .post(connectors::heartbeat)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/connectors/{id}/outbox")
            .get(outbox::read)
            .to(method_not_allowed),
    )
    .service(
        web::resource("/connectors/{id}/outbox/ack")
            .post(outbox::ack)
            .to(method_not_allowed),
    );
}

/// `GET /healthz`: the process is up and serving.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// `GET /readyz`: whether this instance can take traffic now. 503 with the reasons while the
/// log refuses writes (a write failed and it has not recovered yet), a served tenant's log is
/// damaged, or a configured NATS is disconnected; else 200. `/healthz` stays liveness only.
async fn readyz(state: web::Data<EdgeState>) -> HttpResponse {
    let log = state.runtime().log();
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
        .filter(|d| state.serves(&d.tenant))
        .count();
    if damaged > 0 {
        reasons.push(format!(
            "log: {damaged} tenant log(s) damaged; the server log names them and where \
             (or run tenantry verify --tenant T); restore them from a backup"
        ));
    }
    if let Some((name, _)) = state.peer().filter(|(_, link)| !link.is_connected()) {
        reasons.push(format!("{name}: disconnected; the client is reconnecting"));
    }
    if reasons.is_empty() {
        HttpResponse::Ok().json(serde_json::json!({ "status": "ready" }))
    } else {
        HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "not_ready", "reasons": reasons }))
    }
}

pub(super) async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}

pub(super) async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
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
        Err(e) => return Err(refuse(&req, &mut payload, state.body_bytes_max(), e).await),
    };
    // Under overload, refuse before spending anything on parsing the body.
    if state.runtime().saturated(&caller.tenant) {
        let e = ApiError::Runtime(RuntimeError::Overloaded);
        return Err(refuse(&req, &mut payload, state.body_bytes_max(), e).await);
    }
    let body = read_body(&req, payload, state.body_bytes_max()).await?;
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
    connectors::check_post(&state, &caller, &channel)?;
    let ctx = caller.ctx(team);
    tracing::Span::current().record("team", ctx.team_or_default().as_str());
    let inbound = Inbound {
        session,
        user: message.user,
        text: message.text,
        message_id: message.message_id,
    };
    submit(&state, &ctx, &channel, inbound).await
}

/// Sends one checked message to the runtime and answers its ack (`POST /messages` and the
/// inbound webhooks); counts it unless it was a duplicate.
pub(super) async fn submit(
    state: &EdgeState,
    ctx: &TenantCtx,
    channel: &ChannelId,
    inbound: Inbound,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let ack = state.runtime().send(ctx, channel, inbound).await?;
    if !ack.duplicate {
        state
            .metrics()
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

/// `GET /api/v1/sessions/{id}`: the session's state projection.
async fn get_session(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = session_of(&path)?;
    let team = read_team(&state, &caller)?;
    let body = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let projection = state
            .runtime()
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
    let session = session_of(&path)?;
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
            .runtime()
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

/// The session id of a request path, parsed (400 naming `session` when it is not one).
pub(super) fn session_of(path: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(path).map_err(|e| ApiError::field("session", e))
}

/// The context (with its team) holding `session` in the caller's tenant and env: in `team`, or
/// in the only team of the tenant that has it. Blocking (reads the log).
pub(super) fn find_session(
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
        if state
            .runtime()
            .log()
            .scope(&ctx)
            .session_last_seq(session)?
            > 0
        {
            if found.is_some() {
                return Err(ApiError::AmbiguousSession(session.to_string()));
            }
            found = Some(ctx);
        }
    }
    found.ok_or_else(|| ApiError::SessionNotFound(session.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_names_its_scope_rule() {
        let routes: Vec<(&str, &str)> = ROUTES.to_vec();
        let ruled: Vec<(&str, &str)> = ROUTE_SCOPES.iter().map(|(m, p, _)| (*m, *p)).collect();
        assert_eq!(
            routes, ruled,
            "ROUTE_SCOPES must list ROUTES, in order, with a rule each"
        );
    }

    /// Each word grants its routes and nothing of another word's; `admin` grants every word.
    #[test]
    fn a_scoped_token_has_exactly_its_words_rights() {
        let rule_of = |method: &str, path: &str| {
            ROUTE_SCOPES
                .iter()
                .find(|(m, p, _)| *m == method && *p == path)
                .map(|(_, _, r)| *r)
        };
        assert_eq!(
            rule_of("POST", "/api/v1/messages"),
            Some(ScopeRule::Word(Scope::Messages))
        );
        let read = Scopes::parse("read").unwrap();
        assert!(check_scope(&read, "GET", "/api/v1/sessions/{id}/events").is_ok());
        assert!(check_scope(&read, "POST", "/api/v1/sessions/{id}/what-if").is_ok());
        let refused = check_scope(&read, "POST", "/api/v1/messages").unwrap_err();
        assert!(matches!(
            &refused,
            ApiError::RouteScopeRequired { scope: Scope::Messages, route }
                if route == "POST /api/v1/messages"
        ));
        assert!(refused.to_string().contains("messages"), "{refused}");
        assert!(check_scope(&read, "GET", "/api/v1/audit/export").is_err());
        assert!(check_scope(&read, "POST", "/api/v1/sessions/{id}/close").is_err());
        let messages = Scopes::parse("messages").unwrap();
        assert!(check_scope(&messages, "POST", "/api/v1/messages").is_ok());
        assert!(check_scope(&messages, "GET", "/api/v1/usage").is_err());
        let audit = Scopes::parse("audit").unwrap();
        assert!(check_scope(&audit, "GET", "/api/v1/audit/verify").is_ok());
        assert!(check_scope(&audit, "GET", "/api/v1/events/stream").is_err());
        let admin = Scopes::parse("admin").unwrap();
        for (method, path, _) in ROUTE_SCOPES {
            assert!(check_scope(&admin, method, path).is_ok(), "{method} {path}");
        }
        assert!(
            matches!(
                check_scope(&admin, "GET", "/api/v1/not-a-route"),
                Err(ApiError::Internal(_))
            ),
            "a route without a rule fails closed"
        );
    }

    /// A token without a `scope` claim keeps today's rights: messages, reads, audit, close and
    /// reset; not the admin routes.
    #[test]
    fn a_token_without_scope_keeps_todays_rights() {
        let plain = Scopes::DEFAULT;
        for (method, path, rule) in ROUTE_SCOPES {
            let allowed = check_scope(&plain, method, path).is_ok();
            assert_eq!(
                allowed,
                *rule != ScopeRule::Word(Scope::Admin),
                "{method} {path}"
            );
        }
        let connector = Scopes::parse("connector").unwrap();
        assert!(check_scope(&connector, "GET", "/api/v1/usage").is_err());
    }
}
