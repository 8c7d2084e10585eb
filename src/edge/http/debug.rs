//! The online debugging routes of the HTTP API (docs/http.md): a session's state at a seq
//! (`GET /sessions/{id}/state?at_seq=N`), an operator's close and reset of a session
//! (`POST /sessions/{id}/close`, `POST /sessions/{id}/reset`).
//!
//! Like every `/api/v1` route they act in the caller's tenant and the env of its token, within
//! its team when one applies (`read_team`, `find_session`): another tenant's, env's or team's
//! session answers exactly like a missing one (404 `session_not_found`).
//!
//! Invariants: log reads run on the blocking pool; only a close appends, and only through the
//! runtime (the session's actor, one durable group, answered after the ack).

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::dto::SessionStateBody;
use super::error::ApiError;
use super::routes::find_session;
use super::state::{blocking, read_team, EdgeState};
use crate::actors::messages::RuntimeError;
use crate::audit::replay::state_at;
use crate::audit::AuditError;
use crate::edge::auth::Caller;
use crate::tenancy::SessionId;

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
