//! `POST /api/v1/webhooks/{tenant}/{env}/{team}/{channel}`: a message from an outside system,
//! authenticated by an HMAC signature instead of a token (docs/connectors.md#inbound-webhooks).
//!
//! The channel must have `provider = "webhook"`. The sender signs the bytes
//! `{X-Tenantry-Timestamp}.{body}` with HMAC-SHA256 under the secret `webhook_secret` found by
//! the TenantCtx lookup (the team's namespace, then the tenant's) and sends
//! `X-Tenantry-Signature: sha256=<hex>`. The timestamp (unix seconds) must be within
//! [`WEBHOOK_TOLERANCE_S`] of the server's clock, so a captured request cannot be replayed later.
//!
//! Invariants:
//! - an unknown tenant, env, team or channel and a channel that is not a webhook channel get the
//!   same 404, so the path reveals nothing more than that no webhook is there;
//! - nothing is appended, and the tenant's quota is not charged, before the signature checks
//!   out (as a bad token on `POST /api/v1/messages`); the comparison is the `hmac` crate's
//!   constant-time `verify_slice`;
//! - a missing `webhook_secret` is answered like a bad signature (and logged), never accepted.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use super::body::read_body;
use super::error::ApiError;
use super::state::{blocking, EdgeState};
use crate::actors::messages::{Inbound, RuntimeError};
use crate::secrets::key::KeySources;
use crate::secrets::name::SecretName;
use crate::secrets::store::SecretStore;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

// One signing rule in both directions: the names are the outbound connector's.
pub use crate::connectors::webhook::{
    SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_PROVIDER, WEBHOOK_SECRET_NAME,
};
/// How far a webhook's timestamp may lie from the server's clock, either way, in seconds.
pub const WEBHOOK_TOLERANCE_S: u64 = 300;
/// Longest timestamp header accepted, in bytes (a unix time in seconds has 10 digits).
const TIMESTAMP_BYTES_MAX: usize = 20;

/// A webhook's body: the channel and team come from the path.
#[derive(Debug, Deserialize)]
struct WebhookMessage {
    /// The session to continue; none: the user's open session on the channel, or a new one.
    #[serde(default)]
    session: Option<String>,
    user: String,
    text: String,
    /// The sender's id for the message; a retry with the same id gets the first answer.
    #[serde(default)]
    message_id: Option<String>,
}

/// Why a webhook's signature was refused (the 401's message).
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A header is missing or malformed, or the HMAC does not match.
    Signature(&'static str),
    /// Signed, but at a time outside the tolerance.
    Stale,
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::Signature(why) => ApiError::WebhookSignature(why),
            Refusal::Stale => ApiError::WebhookStale,
        }
    }
}

/// Checks `signature` (the header's value) against the HMAC-SHA256 under `secret` of
/// `{timestamp}.{body}`, then `timestamp` against `now_s`.
pub fn check_signature(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now_s: u64,
) -> Result<(), Refusal> {
    let timestamp = timestamp.ok_or(Refusal::Signature(
        "the X-Tenantry-Timestamp header is missing: send the signing time in unix seconds",
    ))?;
    let at_s: u64 = (timestamp.len() <= TIMESTAMP_BYTES_MAX)
        .then(|| timestamp.parse().ok())
        .flatten()
        .ok_or(Refusal::Signature(
            "X-Tenantry-Timestamp must be the signing time in unix seconds (digits only)",
        ))?;
    let hex_mac = signature
        .ok_or(Refusal::Signature(
            "the X-Tenantry-Signature header is missing: send sha256=<hex HMAC-SHA256>",
        ))?
        .strip_prefix("sha256=")
        .ok_or(Refusal::Signature(
            "X-Tenantry-Signature must be sha256=<hex HMAC-SHA256>",
        ))?;
    let mac_bytes = hex::decode(hex_mac)
        .map_err(|_| Refusal::Signature("X-Tenantry-Signature must be sha256=<hex HMAC-SHA256>"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|_| Refusal::Signature("the signature does not match"))?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&mac_bytes)
        .map_err(|_| Refusal::Signature("the signature does not match"))?;
    if at_s.abs_diff(now_s) > WEBHOOK_TOLERANCE_S {
        return Err(Refusal::Stale);
    }
    Ok(())
}

/// The tenant context and channel of a webhook path, when it names a webhook channel of a
/// served tenant's env and team.
fn resolve(
    state: &EdgeState,
    path: &(String, String, String, String),
) -> Option<(TenantCtx, ChannelId)> {
    let tenant = TenantId::parse(&path.0).ok()?;
    let env = EnvId::parse(&path.1).ok()?;
    let team = TeamId::parse(&path.2).ok()?;
    let channel = ChannelId::parse(&path.3).ok()?;
    if !state.serves(&tenant) {
        return None;
    }
    let config = state.runtime().tenant_config(&tenant)?;
    if !config.environments.iter().any(|e| e.id == env) {
        return None;
    }
    let provider = &config.teams.get(&team)?.channels.get(&channel)?.provider;
    (provider == WEBHOOK_PROVIDER).then(|| (TenantCtx::new(tenant, env, Some(team)), channel))
}

/// `POST /api/v1/webhooks/{tenant}/{env}/{team}/{channel}`.
pub(super) async fn post(
    req: HttpRequest,
    path: web::Path<(String, String, String, String)>,
    payload: web::Payload,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let (ctx, channel) = resolve(&state, &path).ok_or(ApiError::WebhookNotFound)?;
    let span = tracing::Span::current();
    span.record("tenant", ctx.tenant.as_str());
    span.record("env", ctx.env.as_str());
    span.record("team", ctx.team_or_default().as_str());
    let body = read_body(&req, payload, state.body_bytes_max()).await?;
    let lookup_ctx = ctx.clone();
    let secret = blocking(state.clone(), move |state| {
        let name = SecretName::parse(WEBHOOK_SECRET_NAME)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let sources = KeySources::from_env().map_err(|e| ApiError::Internal(e.to_string()))?;
        SecretStore::stored_lookup(state.data_dir(), &lookup_ctx, &name, sources)
            .map_err(|e| ApiError::Internal(format!("webhook secret: {e}")))
    })
    .await?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let Some(secret) = secret else {
        tracing::warn!(
            channel = %channel,
            "webhook refused: no {WEBHOOK_SECRET_NAME} for the team or the tenant (tenantry secrets set)"
        );
        return Err(ApiError::WebhookSignature("the signature does not match"));
    };
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    check_signature(
        secret.expose(),
        header(TIMESTAMP_HEADER),
        header(SIGNATURE_HEADER),
        &body,
        now_s,
    )?;
    state.charge_quota(&ctx.tenant)?;
    if state.runtime().saturated(&ctx.tenant) {
        return Err(ApiError::Runtime(RuntimeError::Overloaded));
    }
    let message: WebhookMessage =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let session = message
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| ApiError::field("session", e))?;
    let inbound = Inbound {
        session,
        user: message.user,
        text: message.text,
        message_id: message.message_id,
    };
    super::routes::submit(&state, &ctx, &channel, inbound).await
}

#[cfg(test)]
mod tests;
