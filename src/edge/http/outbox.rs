//! A connector's outbox routes (docs/connectors.md#outbox): `GET /api/v1/connectors/{id}/outbox`
//! (its pending replies and a cursor; `?wait=S` long-polls up to [`OUTBOX_WAIT_MAX_S`] seconds)
//! and `POST /api/v1/connectors/{id}/outbox/ack` (`{"up_to": cursor}`).
//!
//! Who may call them: the connector's own token (the extractor lets a connector token through
//! for its own id only), and a tenant token with the `connectors` or `admin` scope, for any
//! connector of its env (a team-scoped one: of its team). A connector of another tenant, env or
//! team is not found (404 `connector_not_found`).
//!
//! Invariants: a long poll waits on the tenant's frontier watch (no polling) and ends early when
//! the server stops; log reads run on the blocking pool; an ack is answered after its
//! `OutboxAcked` event is durable.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::body::read_body;
use super::connectors::require_connectors_scope;
use super::error::ApiError;
use super::state::{blocking, read_team, EdgeState};
use crate::connectors::outbox::{OutboxItem, OUTBOX_PAGE_MAX};
use crate::connectors::{Connector, ConnectorError};
use crate::edge::auth::Caller;
use crate::tenancy::ConnectorId;

/// Longest `wait` of `GET /api/v1/connectors/{id}/outbox`, in seconds.
pub const OUTBOX_WAIT_MAX_S: u64 = 60;

/// `GET /api/v1/connectors/{id}/outbox`'s query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutboxQuery {
    /// Seconds to wait for a reply when none is pending (0, the default: answer at once).
    #[serde(default)]
    wait: Option<u64>,
    /// Most replies in the answer (1..=[`OUTBOX_PAGE_MAX`], the default).
    #[serde(default)]
    limit: Option<usize>,
}

/// `POST /api/v1/connectors/{id}/outbox/ack`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    up_to: u64,
}

/// A reply as listed.
#[derive(Serialize)]
struct ItemJson {
    tenant_seq: u64,
    session: String,
    seq: u64,
    at: u64,
    node: String,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
}

impl From<OutboxItem> for ItemJson {
    fn from(i: OutboxItem) -> ItemJson {
        ItemJson {
            tenant_seq: i.tenant_seq,
            session: i.session,
            seq: i.seq,
            at: i.at_ms,
            node: i.node,
            text: i.text,
            reply_to: i.reply_to,
        }
    }
}

/// The connector `raw` names, if the caller may use its outbox (see the module doc).
fn outbox_connector(state: &EdgeState, caller: &Caller, raw: &str) -> Result<Connector, ApiError> {
    let id = ConnectorId::parse(raw).map_err(|e| ApiError::field("id", e))?;
    let team = match &caller.connector {
        // The extractor let it through for its own id only.
        Some(_) => caller.claim_team.clone(),
        None => {
            require_connectors_scope(caller)?;
            read_team(state, caller)?
        }
    };
    let connector = state
        .connectors()
        .get(&caller.tenant, &caller.env, &id)
        .ok_or_else(|| ConnectorError::NotFound(id.clone()))?;
    match team {
        Some(team) if team != connector.team => {
            if caller.connector.is_some() {
                Err(ConnectorError::TeamMismatch {
                    connector: id,
                    registered: connector.team,
                    token: team,
                }
                .into())
            } else {
                Err(ConnectorError::NotFound(id).into())
            }
        }
        _ => Ok(connector),
    }
}

/// `GET /api/v1/connectors/{id}/outbox`: the pending replies (oldest first) and `cursor`, the
/// position to ack to acknowledge them all. With `wait`, an answer without replies waits until
/// one is appended or `wait` seconds passed.
pub(super) async fn read(
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<OutboxQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let connector = outbox_connector(&state, &caller, &path)?;
    let wait = query.wait.unwrap_or(0);
    if wait > OUTBOX_WAIT_MAX_S {
        return Err(ApiError::field(
            "wait",
            format!("{wait} is too long: at most {OUTBOX_WAIT_MAX_S} seconds"),
        ));
    }
    let limit = query.limit.unwrap_or(OUTBOX_PAGE_MAX);
    if !(1..=OUTBOX_PAGE_MAX).contains(&limit) {
        return Err(ApiError::field(
            "limit",
            format!("{limit} is out of range: give 1..={OUTBOX_PAGE_MAX}"),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let tenant = caller.tenant.clone();
    let log = state.runtime().log().clone();
    // Subscribed before the first read: an append in between still wakes the wait.
    let mut frontier = log.watch_frontier(&tenant);
    let mut shutdown = state.shutdown_signal();
    let mut after = 0;
    loop {
        frontier.borrow_and_update();
        let (t, c) = (tenant.clone(), connector.clone());
        let page = blocking(state.clone(), move |state| {
            Ok(state.connectors().outbox_read(&t, &c, after, limit)?)
        })
        .await?;
        state.metrics().outbox_served(
            &tenant,
            &connector.env,
            &connector.id,
            page.items.len() as u64,
        );
        let drained = page.cursor >= log.durable_frontier(&tenant);
        // Past the deadline an answer goes out even before the scan reached the frontier
        // (its cursor then skips the events it read, none of them the connector's).
        if !page.items.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(answer(&tenant, &connector, &state, page));
        }
        after = page.cursor;
        if drained {
            tokio::select! {
                changed = frontier.changed() => if changed.is_err() {
                    return Ok(answer(&tenant, &connector, &state, page));
                },
                () = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => return Ok(answer(&tenant, &connector, &state, page)),
            }
        }
    }
}

fn answer(
    tenant: &crate::tenancy::TenantId,
    connector: &Connector,
    state: &EdgeState,
    page: crate::connectors::outbox::Page,
) -> HttpResponse {
    let acked = state
        .connectors()
        .get(tenant, &connector.env, &connector.id)
        .map_or(connector.acked(), |c| c.acked());
    let items: Vec<ItemJson> = page.items.into_iter().map(ItemJson::from).collect();
    HttpResponse::Ok().json(serde_json::json!({
        "connector": connector.id.as_str(),
        "items": items,
        "cursor": page.cursor,
        "acked": acked,
    }))
}

/// `POST /api/v1/connectors/{id}/outbox/ack`: acknowledges the replies up to `up_to` (a
/// `cursor` or an item's `tenant_seq` of an earlier read). 409 `outbox_ack_behind` behind the
/// current cursor, 409 `outbox_ack_ahead` past the last cursor handed out; equal to the current
/// cursor is a no-op (a retried ack).
pub(super) async fn ack(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let connector = outbox_connector(&state, &caller, &path)?;
    let body = read_body(&req, payload, state.body_bytes_max()).await?;
    let body: AckBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let key = (&caller.tenant, &connector.env, &connector.id);
    let before = connector.acked();
    let acked = state.connectors().ack(key, body.up_to).await?;
    if acked != before {
        state
            .metrics()
            .outbox_acked(&caller.tenant, &connector.env, &connector.id);
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "connector": connector.id.as_str(),
        "acked": acked,
    })))
}
