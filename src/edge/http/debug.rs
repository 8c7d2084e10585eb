//! The online debugging routes of the HTTP API (docs/http.md): a session's state at a seq
//! (`GET /sessions/{id}/state?at_seq=N`), an operator's close and reset of a session
//! (`POST /sessions/{id}/close`, `POST /sessions/{id}/reset`), and a what-if re-run of a
//! session's recorded messages against a flow sent in the body (`POST /sessions/{id}/what-if`).
//!
//! Like every `/api/v1` route they act in the caller's tenant and the env of its token, within
//! its team when one applies (`read_team`, `find_session`): another tenant's, env's or team's
//! session answers exactly like a missing one (404 `session_not_found`).
//!
//! Invariants: log reads run on the blocking pool; only a close appends, and only through the
//! runtime (the session's actor, one durable group, answered after the ack).

use std::path::Path;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_body;
use super::dto::SessionStateBody;
use super::error::ApiError;
use super::routes::find_session;
use super::state::{blocking, read_team, EdgeState};
use crate::actors::messages::RuntimeError;
use crate::audit::replay::state_at;
use crate::audit::what_if::{what_if_each, MessageResult, Side};
use crate::audit::AuditError;
use crate::config::flow::Flow;
use crate::edge::auth::Caller;
use crate::flow::engine::TenantInfo;
use crate::tenancy::SessionId;

/// Largest what-if flow (the request body), in bytes.
pub const WHAT_IF_FLOW_BYTES_MAX: usize = 256 * 1024;
/// Most per-message results in a what-if answer; past it the totals still count every message
/// and `results_truncated` is `true`.
pub const WHAT_IF_RESULTS_MAX: usize = 10_000;
/// How a what-if flow is named in the loader's messages.
const WHAT_IF_FLOW_NAME: &str = "the request body";

/// `?at_seq=` of `GET /api/v1/sessions/{id}/state`, as text so that an error names the field.
#[derive(Deserialize)]
pub(super) struct StateQuery {
    at_seq: Option<String>,
}

/// The session id of a path, parsed.
fn session_of(path: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(path).map_err(|e| ApiError::field("session", e))
}

/// An audit error met while reading for a request: a damaged record is a read error (500,
/// logged); the rest cannot happen after `find_session` and are internal.
fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::Read(e) => ApiError::Read(e),
        other => ApiError::Internal(other.to_string()),
    }
}

/// `GET /api/v1/sessions/{id}/state?at_seq=N`: the session's state folded from its events
/// `1..=N` (default: all of them), with `at_seq` and `session_last_seq`.
pub(super) async fn state_at_seq(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<StateQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = session_of(&path)?;
    let at_seq = query
        .at_seq
        .as_deref()
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|e| ApiError::field("at_seq", format!("must be a seq number: {e}")))?;
    let team = read_team(&state, &caller)?;
    let body = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let last = state
            .runtime()
            .log()
            .scope(&ctx)
            .session_last_seq(&session)?;
        let at = at_seq.unwrap_or(last);
        if at == 0 || at > last {
            return Err(ApiError::field(
                "at_seq",
                format!("must be in 1..={last}, the session's seqs"),
            ));
        }
        let folded = state_at(state.runtime().log(), &ctx, &session, at).map_err(audit_error)?;
        let mut body = serde_json::to_value(SessionStateBody::new(&folded))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        body["at_seq"] = at.into();
        body["session_last_seq"] = last.into();
        Ok(body)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /api/v1/sessions/{id}/close`: ends an open session through its actor (which appends
/// `SessionEnded { reason: "closed by operator" }` durably); answers after the ack. Already
/// ended: 409 `session_ended`.
pub(super) async fn close(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = session_of(&path)?;
    let team = read_team(&state, &caller)?;
    let (ctx, channel, session) = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let current = state
            .runtime()
            .session_state(&ctx, &session)?
            .ok_or_else(|| ApiError::SessionNotFound(session.to_string()))?;
        if !current.is_open() {
            return Err(RuntimeError::SessionEnded(session).into());
        }
        let channel = current
            .channel
            .ok_or_else(|| ApiError::Internal(format!("session {session} has no channel")))?;
        Ok((ctx, channel, session))
    })
    .await?;
    let ack = state
        .runtime()
        .close_session(&ctx, &channel, &session)
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "session": ack.session,
        "seq": ack.seq,
        "status": "ended",
    })))
}

/// `POST /api/v1/sessions/{id}/reset`: lifts the session's quarantine (a session that is not
/// quarantined gets the same answer); answers once its actor has.
pub(super) async fn reset(
    caller: Caller,
    path: web::Path<String>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = session_of(&path)?;
    let team = read_team(&state, &caller)?;
    let (ctx, session) = blocking(state.clone(), move |state| {
        Ok((find_session(state, &caller, team, &session)?, session))
    })
    .await?;
    state.runtime().reset_session(&ctx, &session).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "session": session,
        "quarantined": false,
    })))
}

/// `POST /api/v1/sessions/{id}/what-if` (body: a flow file, YAML, at most
/// [`WHAT_IF_FLOW_BYTES_MAX`]): the session's recorded messages re-run against it, each with
/// the recorded and the what-if replies, vars, end and failure. Nothing is appended. A flow
/// that does not load: 400 `invalid_flow` with the loader's message (line, field).
pub(super) async fn what_if(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = session_of(&path)?;
    let team = read_team(&state, &caller)?;
    let body = read_body(&req, payload, WHAT_IF_FLOW_BYTES_MAX).await?;
    let yaml = std::str::from_utf8(&body)
        .map_err(|e| ApiError::InvalidFlow(format!("{WHAT_IF_FLOW_NAME}: not UTF-8 text: {e}")))?;
    let flow = Flow::parse(Path::new(WHAT_IF_FLOW_NAME), yaml)
        .map_err(|e| ApiError::InvalidFlow(e.to_string()))?;
    let body = blocking(state.clone(), move |state| {
        let ctx = find_session(state, &caller, team, &session)?;
        let tenant = state
            .runtime()
            .tenant_config(&ctx.tenant)
            .ok_or_else(|| RuntimeError::UnknownTenant(ctx.tenant.clone()))?;
        let info = TenantInfo {
            name: &tenant.name,
            settings: &tenant.settings,
        };
        let mut results = Vec::new();
        let mut truncated = false;
        let log = state.runtime().log();
        let totals = what_if_each(log, &ctx, &session, &flow, &info, &mut |message| {
            if results.len() < WHAT_IF_RESULTS_MAX {
                results.push(message_json(&message));
            } else {
                truncated = true;
            }
            Ok(())
        })
        .map_err(audit_error)?;
        let mut body = json!({
            "session": session,
            "flow": flow.name(),
            "flow_version": flow.version(),
            "messages": totals.messages,
            "diverged": totals.diverged,
            "identical": totals.identical(),
            "results": results,
        });
        if truncated {
            body["results_truncated"] = true.into();
        }
        Ok(body)
    })
    .await?;
    Ok(HttpResponse::Ok().json(body))
}

/// One message of a what-if answer.
fn message_json(message: &MessageResult) -> Value {
    let side = |side: &Side| {
        json!({
            "replies": side.replies,
            "vars": side.vars,
            "ended": side.ended,
            "failed": side.failed,
        })
    };
    json!({
        "seq": message.seq,
        "text": message.text,
        "diverged": message.diverged(),
        "recorded": side(&message.recorded),
        "what_if": side(&message.what_if),
        "differences": message.differences,
    })
}
