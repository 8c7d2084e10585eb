//! The online debugging routes of the HTTP API (docs/http.md): a session's state at a seq
//! (`GET /sessions/{id}/state?at_seq=N`), an operator's close and reset of a session
//! (`POST /sessions/{id}/close`, `POST /sessions/{id}/reset`), a what-if re-run of a session's
//! recorded messages against a flow sent in the body (`POST /sessions/{id}/what-if`), and the
//! tenant's hash chain verified from genesis, streamed (`GET /audit/verify`).
//!
//! The chain is tenant-wide (one chain over every env and team), so `/audit/verify` refuses a
//! team-scoped caller (403 `team_scoped`) and tells any caller of the tenant only counts,
//! positions, the head hash and the kind of the first problem: never an event's content or the
//! ids (env, team, session) a problem's detail may name (`tenantry verify --tenant` shows them).
//! It runs on a thread of its own, like an export, and takes one of the export slots.
//!
//! Like every `/api/v1` route they act in the caller's tenant and the env of its token, within
//! its team when one applies (`read_team`, `find_session`): another tenant's, env's or team's
//! session answers exactly like a missing one (404 `session_not_found`).
//!
//! Invariants: log reads run on the blocking pool; only a close appends, and only through the
//! runtime (the session's actor, one durable group, answered after the ack).

use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::read_body;
use super::dto::SessionStateBody;
use super::error::ApiError;
use super::routes::{find_session, session_of};
use super::state::{blocking, read_team, EdgeState};
use crate::actors::messages::RuntimeError;
use crate::audit::replay::state_at;
use crate::audit::verify::{verify_log_with_progress, Progress, Verdict};
use crate::audit::what_if::{what_if_each, MessageResult, Side};
use crate::audit::AuditError;
use crate::config::flow::Flow;
use crate::edge::auth::Caller;
use crate::flow::engine::TenantInfo;

/// Largest what-if flow (the request body), in bytes.
pub const WHAT_IF_FLOW_BYTES_MAX: usize = 256 * 1024;
/// Most per-message results in a what-if answer; past it the totals still count every message
/// and `results_truncated` is `true`.
pub const WHAT_IF_RESULTS_MAX: usize = 10_000;
/// Lines of a verification in flight between its thread and the response.
const VERIFY_LINES_IN_FLIGHT: usize = 16;
/// A progress line at least every this many events...
const VERIFY_PROGRESS_EVENTS: u64 = 100_000;
/// ...or this often, whichever comes first.
const VERIFY_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Longest pause of a verifying thread waiting for room for its result line (it polls).
const VERIFY_SEND_POLL: Duration = Duration::from_millis(10);
/// How a what-if flow is named in the loader's messages.
const WHAT_IF_FLOW_NAME: &str = "the request body";

/// `?at_seq=` of `GET /api/v1/sessions/{id}/state`, as text so that an error names the field.
#[derive(Deserialize)]
pub(super) struct StateQuery {
    at_seq: Option<String>,
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

/// One line of the verification stream, or the error that aborts the response.
type VerifyLine = Result<web::Bytes, std::io::Error>;

/// `GET /api/v1/audit/verify`: the caller's tenant's log verified from genesis (the hash chain,
/// gapless `tenant_seq`, every session's seqs), streamed as NDJSON: progress lines
/// `{"progress":{"events","tenant_seq"}}` at least every [`VERIFY_PROGRESS_EVENTS`] events or
/// [`VERIFY_PROGRESS_INTERVAL`] and once before the end, then one `{"result":…}` line. A
/// team-scoped caller is refused (403): the chain spans every team.
pub(super) async fn audit_verify(
    caller: Caller,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    if caller.team().is_some() {
        return Err(ApiError::TeamScoped("GET /api/v1/audit/verify"));
    }
    let slot = state.export_slots().acquire(&caller.tenant)?;
    let timeout = state.export_slots().write_timeout();
    let (tx, rx) = tokio::sync::mpsc::channel::<VerifyLine>(VERIFY_LINES_IN_FLIGHT);
    let log = state.runtime().log().clone();
    let tenant = caller.tenant.clone();
    std::thread::Builder::new()
        .name("tenantry-verify".into())
        .spawn(move || {
            run_verify(&log, &tenant, &tx, timeout);
            drop(slot);
        })
        .map_err(|e| ApiError::Internal(format!("verify thread: {e}")))?;
    // Dropped with the response (client gone): the thread's next look at the channel stops it.
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (line, rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .streaming(stream))
}

/// One NDJSON line.
fn ndjson(value: &Value) -> web::Bytes {
    let mut line = value.to_string().into_bytes();
    line.push(b'\n');
    web::Bytes::from(line)
}

fn progress_line(p: Progress) -> web::Bytes {
    ndjson(&json!({"progress": {"events": p.events, "tenant_seq": p.tenant_seq}}))
}

/// The verifying thread: walks the tenant's chain, sends progress without ever waiting for the
/// client (a full channel skips a line), then the result; stops when the client is gone.
fn run_verify(
    log: &crate::events::log::EventLog,
    tenant: &crate::tenancy::TenantId,
    tx: &tokio::sync::mpsc::Sender<VerifyLine>,
    timeout: Duration,
) {
    let mut last = Progress {
        events: 0,
        tenant_seq: 0,
    };
    let mut shown = (Instant::now(), 0u64);
    let verdict = verify_log_with_progress(log, tenant, &mut |p| {
        last = p;
        if p.events - shown.1 >= VERIFY_PROGRESS_EVENTS
            || shown.0.elapsed() >= VERIFY_PROGRESS_INTERVAL
        {
            shown = (Instant::now(), p.events);
            // Progress is advisory: a client that does not read loses lines, not the thread.
            let _ = tx.try_send(Ok(progress_line(p)));
        }
        if tx.is_closed() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    let result = match verdict {
        Ok(Verdict::Intact(summary)) => json!({"result": {
            "ok": true,
            "events": summary.count,
            "head": {
                "tenant_seq": summary.last_tenant_seq.unwrap_or(0),
                // An empty tenant's chain is its genesis: 32 zero bytes.
                "hash": summary.head_hash.unwrap_or_else(|| "0".repeat(64)),
            },
        }}),
        // The kind only: a problem's detail may name another env's or team's ids.
        Ok(Verdict::Broken(problem)) => json!({"result": {
            "ok": false,
            "events": last.events,
            "first_bad": {"tenant_seq": problem.tenant_seq, "reason": problem.kind.name()},
        }}),
        Err(e) => {
            if !tx.is_closed() {
                tracing::warn!(tenant = %tenant, error = %e, "audit verify over HTTP failed");
                let _ = tx.try_send(Err(std::io::Error::other("audit verify failed")));
            }
            return;
        }
    };
    let _ = tx.try_send(Ok(progress_line(last)));
    send_within(tx, Ok(ndjson(&result)), timeout);
}

/// Sends `line`, polling for room for at most `timeout`; gives up when the client is gone.
fn send_within(tx: &tokio::sync::mpsc::Sender<VerifyLine>, line: VerifyLine, timeout: Duration) {
    use tokio::sync::mpsc::error::TrySendError;
    let deadline = Instant::now() + timeout;
    let mut line = line;
    loop {
        match tx.try_send(line) {
            Ok(()) | Err(TrySendError::Closed(_)) => return,
            Err(TrySendError::Full(back)) => line = back,
        }
        if Instant::now() >= deadline {
            tracing::debug!("audit verify ended: the client stopped reading");
            return;
        }
        std::thread::sleep(VERIFY_SEND_POLL);
    }
}
