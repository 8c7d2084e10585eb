//! The connector registry's routes (docs/connectors.md#connectors): `POST /api/v1/connectors`
//! (register; a token with the `connectors` or `admin` scope), `GET /api/v1/connectors` (the
//! env's connectors with their state; same scopes), `POST /api/v1/connectors/{id}/heartbeat`
//! (the connector's own token), and the check that holds a connector token's messages to its
//! connector's team and channel.
//!
//! Invariants:
//! - Everything is in the caller's tenant and env: a body naming another env is 403
//!   `env_mismatch`; a team-scoped caller registers and lists its team only.
//! - A registration's team and channel are the tenant's configured ones (400 naming the field),
//!   and its token is minted like `tenantry token --scope connector` (claims `tenant`, `env`,
//!   `team`, `connector`, `scope: "connector"`), signed with the server's default HS256 key,
//!   living `auth.token_lifetime_max`.

use std::time::SystemTime;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::body::read_body;
use super::error::ApiError;
use super::state::{read_team, EdgeState};
use crate::connectors::webhook::WEBHOOK_CONNECTOR_PREFIX;
use crate::connectors::{Connector, ConnectorError, Registration};
use crate::edge::auth::{Caller, Scope};
use crate::events::codec::{CAPABILITIES_MAX, NAME_BYTES_MAX};
use crate::secrets::token::{connector_claims, mint, TokenRequest};
use crate::tenancy::{ChannelId, ConnectorId, EnvId, TeamId, DEFAULT_SCOPE};

/// `POST /api/v1/connectors`'s body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    id: String,
    #[serde(default)]
    env: Option<String>,
    team: String,
    channel: String,
    provider: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
}

/// `POST /api/v1/connectors/{id}/heartbeat`'s body: `env` always; the rest is what a
/// connector the registry lost is registered again with (`channel` and `provider` then needed).
/// Other fields are ignored (a connector may report more than the registry keeps).
#[derive(Deserialize)]
struct HeartbeatBody {
    env: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    capabilities: Option<Vec<String>>,
}

/// A connector as listed and answered.
#[derive(Serialize)]
struct ConnectorItem {
    id: String,
    env: String,
    team: String,
    channel: String,
    provider: String,
    version: String,
    capabilities: Vec<String>,
    state: &'static str,
}

impl ConnectorItem {
    fn new(c: &Connector, state: &EdgeState) -> ConnectorItem {
        ConnectorItem {
            id: c.id.to_string(),
            env: c.env.to_string(),
            team: c.team.to_string(),
            channel: c.channel.to_string(),
            provider: c.provider.clone(),
            version: c.version.clone(),
            capabilities: c.capabilities.clone(),
            state: c.state(state.connectors().interval()).as_str(),
        }
    }
}

/// Refuses a caller without an explicit `connectors` or `admin` scope (a token without a
/// `scope` claim keeps only the rights tokens had before connectors existed).
pub(super) fn require_connectors_scope(caller: &Caller) -> Result<(), ApiError> {
    if caller.scope.claim().is_some() && caller.scope.allows(Scope::Connectors) {
        Ok(())
    } else {
        Err(ApiError::ScopeRequired(Scope::Connectors))
    }
}

/// The caller's env, when `body_env` (default `"default"`) names it; else 403 `env_mismatch`.
fn same_env(caller: &Caller, body_env: Option<&str>) -> Result<EnvId, ApiError> {
    let raw = body_env.unwrap_or(DEFAULT_SCOPE);
    let env = EnvId::parse(raw).map_err(|e| ApiError::field("env", e))?;
    if env != caller.env {
        let token = caller.env.clone();
        return Err(ConnectorError::EnvMismatch { got: env, token }.into());
    }
    Ok(env)
}

/// `provider`, `version` and `capabilities` within their limits (400 naming the field).
fn check_labels(provider: &str, version: &str, capabilities: &[String]) -> Result<(), ApiError> {
    let label = |field: &'static str, value: &str, empty_ok: bool| {
        if (!empty_ok && value.is_empty())
            || value.len() > NAME_BYTES_MAX
            || value.chars().any(char::is_control)
        {
            let least = if empty_ok { 0 } else { 1 };
            return Err(ApiError::field(
                field,
                format!("must be {least}..={NAME_BYTES_MAX} bytes without control characters"),
            ));
        }
        Ok(())
    };
    label("provider", provider, false)?;
    label("version", version, true)?;
    if capabilities.len() > CAPABILITIES_MAX {
        return Err(ApiError::field(
            "capabilities",
            format!("at most {CAPABILITIES_MAX} entries"),
        ));
    }
    capabilities
        .iter()
        .try_for_each(|c| label("capabilities", c, false))
}

/// `channel`, one of `team`'s configured channels in the caller's tenant (400 naming the field).
fn configured_channel(
    state: &EdgeState,
    caller: &Caller,
    team: &TeamId,
    raw: &str,
) -> Result<ChannelId, ApiError> {
    let channel = ChannelId::parse(raw).map_err(|e| ApiError::field("channel", e))?;
    let tenant = state
        .config()
        .tenant(&caller.tenant)
        .ok_or_else(|| ApiError::UnknownTeam(team.to_string()))?;
    let Some(team_config) = tenant.teams.get(team) else {
        return Err(ApiError::field(
            "team",
            format!("tenant {} has no team {team}", caller.tenant),
        ));
    };
    if !team_config.channels.contains_key(&channel) {
        return Err(ApiError::field(
            "channel",
            format!("team {team} has no channel {channel}"),
        ));
    }
    Ok(channel)
}

/// `POST /api/v1/connectors`: registers a connector; 201 when new, 200 when it was registered
/// with the same team and channel already (idempotent; a new token either way).
pub(super) async fn register(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    require_connectors_scope(&caller)?;
    let body = read_body(&req, payload, state.body_bytes_max()).await?;
    let body: RegisterBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let id = ConnectorId::parse(&body.id).map_err(|e| ApiError::field("id", e))?;
    if id.as_str().starts_with(WEBHOOK_CONNECTOR_PREFIX) {
        return Err(ApiError::field(
            "id",
            format!(
                "ids starting with {WEBHOOK_CONNECTOR_PREFIX:?} are the built-in webhook \
                 channels'; choose another id"
            ),
        ));
    }
    let env = same_env(&caller, body.env.as_deref())?;
    let team = TeamId::parse(&body.team).map_err(|e| ApiError::field("team", e))?;
    if caller.team().is_some_and(|own| *own != team) {
        return Err(ApiError::TeamMismatch(team.to_string()));
    }
    let channel = configured_channel(&state, &caller, &team, &body.channel)?;
    let version = body.version.unwrap_or_default();
    let capabilities = body.capabilities.unwrap_or_default();
    check_labels(&body.provider, &version, &capabilities)?;
    let registration = Registration {
        tenant: caller.tenant.clone(),
        env,
        team,
        channel,
        id,
        provider: body.provider,
        version,
        capabilities,
    };
    let (connector, created) = state.connectors().register(registration).await?;
    let token = connector_token(&state, &caller, &connector)?;
    let interval_s = state.connectors().interval().as_secs();
    let answer = serde_json::json!({
        "id": connector.id.as_str(),
        "env": connector.env.as_str(),
        "team": connector.team.as_str(),
        "channel": connector.channel.as_str(),
        "token": token,
        "heartbeat_interval_s": interval_s,
        "created": created,
    });
    Ok(if created {
        HttpResponse::Created().json(answer)
    } else {
        HttpResponse::Ok().json(answer)
    })
}

/// A connector token for `connector`, as `tenantry token --scope connector` mints it.
fn connector_token(
    state: &EdgeState,
    caller: &Caller,
    connector: &Connector,
) -> Result<String, ApiError> {
    let config = state.config();
    let request = TokenRequest {
        tenant: caller.tenant.clone(),
        env: connector.env.clone(),
        team: Some(connector.team.clone()),
        ttl: config.auth().token_lifetime_max,
        subject: format!("connector/{}", connector.id),
    };
    let claims = connector_claims(config, &request, &connector.id, SystemTime::now())
        .map_err(|e| ApiError::Internal(format!("minting a connector token: {e}")))?;
    mint(&state.signing_key(), &claims, None)
        .map_err(|e| ApiError::Internal(format!("minting a connector token: {e}")))
}

/// `POST /api/v1/connectors/{id}/heartbeat`: the connector (its own token) is live from now;
/// one the registry does not know is registered again from the token and the body.
pub(super) async fn heartbeat(
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let id = ConnectorId::parse(&path).map_err(|e| ApiError::field("id", e))?;
    // The extractor let a connector token through for its own id only.
    let (Some(own), Some(team)) = (&caller.connector, caller.claim_team.clone()) else {
        return Err(ApiError::ScopeRequired(Scope::Connector));
    };
    if *own != id {
        return Err(ApiError::ConnectorTokenRestricted(format!(
            "{} {}",
            req.method(),
            req.path()
        )));
    }
    let body = read_body(&req, payload, state.body_bytes_max()).await?;
    let body: HeartbeatBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let env = same_env(&caller, Some(&body.env))?;
    let heal = || {
        heal_registration(&state, &caller, (env, team.clone(), id.clone()), body).map_err(|e| {
            match e {
                ApiError::InvalidField { field, message } => {
                    ConnectorError::Invalid { field, message }
                }
                other => ConnectorError::Invalid {
                    field: "body",
                    message: other.to_string(),
                },
            }
        })
    };
    let key = (&caller.tenant, &caller.env, &id);
    let (connector, healed) = state.connectors().heartbeat(key, &team, heal).await?;
    state
        .metrics()
        .heartbeat(&caller.tenant, &connector.env, &connector.id);
    let interval = state.connectors().interval();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": connector.id.as_str(),
        "env": connector.env.as_str(),
        "state": connector.state(interval).as_str(),
        "healed": healed,
        "heartbeat_interval_s": interval.as_secs(),
    })))
}

/// The registration a heartbeat of a connector the registry does not know stands for: the
/// token's tenant, env, team and connector id, the body's channel, provider, version and
/// capabilities (`channel` and `provider` required: 400 naming the missing one).
fn heal_registration(
    state: &EdgeState,
    caller: &Caller,
    (env, team, id): (EnvId, TeamId, ConnectorId),
    body: HeartbeatBody,
) -> Result<Registration, ApiError> {
    let need = |field: &'static str, value: Option<String>| {
        value.ok_or_else(|| {
            ApiError::field(
                field,
                format!(
                    "connector {id} is not registered here: the heartbeat must carry {field} \
                     (and channel, provider) to register it again"
                ),
            )
        })
    };
    let channel = need("channel", body.channel)?;
    let provider = need("provider", body.provider)?;
    let channel = configured_channel(state, caller, &team, &channel)?;
    let version = body.version.unwrap_or_default();
    let capabilities = body.capabilities.unwrap_or_default();
    check_labels(&provider, &version, &capabilities)?;
    Ok(Registration {
        tenant: caller.tenant.clone(),
        env,
        team,
        channel,
        id,
        provider,
        version,
        capabilities,
    })
}

/// `GET /api/v1/connectors`: the connectors of the caller's env (its team's only, for a
/// team-scoped caller), by id, with their state now.
pub(super) async fn list(
    caller: Caller,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    require_connectors_scope(&caller)?;
    let team = read_team(&state, &caller)?;
    let items: Vec<ConnectorItem> = state
        .connectors()
        .list(&caller.tenant, &caller.env, team.as_ref())
        .iter()
        .map(|c| ConnectorItem::new(c, &state))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "connectors": items,
        "heartbeat_interval_s": state.connectors().interval().as_secs(),
    })))
}

/// Holds a connector token's message to its connector's team and channel: the connector must
/// be registered in the token's env (403 `connector_not_registered`), in the token's team, and
/// `channel` must be its channel (403 `connector_channel_mismatch`).
pub(super) fn check_post(
    state: &EdgeState,
    caller: &Caller,
    channel: &ChannelId,
) -> Result<(), ApiError> {
    let Some(id) = &caller.connector else {
        return Ok(());
    };
    let connector = state
        .connectors()
        .get(&caller.tenant, &caller.env, id)
        .ok_or_else(|| ConnectorError::NotRegistered(id.clone()))?;
    if let Some(team) = caller.claim_team.as_ref().filter(|t| **t != connector.team) {
        return Err(ConnectorError::TeamMismatch {
            connector: id.clone(),
            registered: connector.team,
            token: team.clone(),
        }
        .into());
    }
    if connector.channel != *channel {
        return Err(ConnectorError::ChannelMismatch {
            connector: id.clone(),
            registered: connector.channel,
            got: channel.clone(),
        }
        .into());
    }
    Ok(())
}
