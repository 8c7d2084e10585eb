//! Minting the HS256 JWTs the HTTP API accepts (docs/http.md): [`Claims`], [`claims_for`] and
//! [`mint`]. Validation lives with the HTTP edge; both sides share the claim names of [`Claims`].
//!
//! Invariants:
//! - A token is only minted for a configured tenant, one of its environments and (when given)
//!   one of its teams, with `iss`/`aud` from `[auth]`, `nbf == iat` and a lifetime of 1 s to
//!   `[auth] token_lifetime_max`, the bound the HTTP edge enforces.
//! - A token is only signed with a key of at least [`SIGNING_KEY_BYTES_MIN`] bytes.
//! - The signing key is never part of an error or output; only the token is.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::error::SecretError;
use super::value::SecretValue;
use crate::config::Config;
use crate::edge::auth::SIGNING_KEY_BYTES_MIN;
use crate::tenancy::{EnvId, TeamId, TenantId};

/// Lifetime when none is given.
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(60 * 60);
/// `sub` when none is given.
pub const DEFAULT_SUBJECT: &str = "tenantry-cli";
/// Longest `sub`, in bytes.
pub const SUBJECT_BYTES_MAX: usize = 256;

/// The claims of a tenantry token. Field names are the wire contract with the HTTP edge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant id.
    pub tenant: String,
    /// Environment id.
    pub env: String,
    /// Team id; absent for a tenant-wide token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issue time, Unix seconds.
    pub iat: u64,
    /// Not valid before, Unix seconds.
    pub nbf: u64,
    /// Issuer: `[auth] issuer`.
    pub iss: String,
    /// Audience: `[auth] audience`.
    pub aud: String,
    /// Subject: who the token is for.
    pub sub: String,
    /// Scopes, space-separated (`admin`, ...); absent for a token with the default rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// A connector token's connector id (with `scope` `connector` and a `team`); absent on
    /// every other token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

/// What a token is asked for, with ids already validated at the boundary.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// Must be a configured tenant.
    pub tenant: TenantId,
    /// Must be one of the tenant's environments.
    pub env: EnvId,
    /// When set, must be one of the tenant's teams.
    pub team: Option<TeamId>,
    /// Lifetime: 1 s to `[auth] token_lifetime_max`.
    pub ttl: Duration,
    /// `sub`: 1 to [`SUBJECT_BYTES_MAX`] bytes, no control characters.
    pub subject: String,
}

/// The claims for `request`, checked against `config`, issued at `now`.
pub fn claims_for(
    config: &Config,
    request: &TokenRequest,
    now: SystemTime,
) -> Result<Claims, SecretError> {
    let tenant = config
        .tenant(&request.tenant)
        .ok_or_else(|| SecretError::UnknownTenant {
            tenant: request.tenant.clone(),
            configured: joined(config.tenants().keys()),
        })?;
    if !tenant.environments.iter().any(|env| env.id == request.env) {
        return Err(SecretError::UnknownEnv {
            tenant: request.tenant.clone(),
            env: request.env.clone(),
            configured: joined(tenant.environments.iter().map(|env| &env.id)),
        });
    }
    if let Some(team) = &request.team {
        if !tenant.teams.contains_key(team) {
            return Err(SecretError::UnknownTeam {
                tenant: request.tenant.clone(),
                team: team.clone(),
                configured: joined(tenant.teams.keys()),
            });
        }
    }
    let ttl_secs = check_ttl(request.ttl, config.auth().token_lifetime_max)?;
    check_subject(&request.subject)?;
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(|_| SecretError::Clock)?
        .as_secs();
    let auth = config.auth();
    Ok(Claims {
        tenant: request.tenant.to_string(),
        env: request.env.to_string(),
        team: request.team.as_ref().map(ToString::to_string),
        // Cannot overflow for a clock within billions of years; saturate rather than panic.
        exp: iat.saturating_add(ttl_secs),
        iat,
        nbf: iat,
        iss: auth.issuer.clone(),
        aud: auth.audience.clone(),
        sub: request.subject.clone(),
        scope: None,
        connector: None,
    })
}

/// The claims of a connector token for `connector` of `request`'s tenant, env and team (which
/// must be set): `scope: "connector"` and the `connector` claim besides [`claims_for`]'s, the
/// same claims `tenantry token --scope connector --connector ID --team T` mints.
pub fn connector_claims(
    config: &Config,
    request: &TokenRequest,
    connector: &crate::tenancy::ConnectorId,
    now: SystemTime,
) -> Result<Claims, SecretError> {
    if request.team.is_none() {
        return Err(SecretError::ConnectorToken("--team is missing"));
    }
    let mut claims = claims_for(config, request, now)?;
    claims.scope = Some(crate::edge::auth::Scope::Connector.as_str().to_owned());
    claims.connector = Some(connector.to_string());
    Ok(claims)
}

/// Signs `claims` with HS256 under `key`, with `kid` in the header when given; returns the
/// compact JWT. Refuses a key shorter than [`SIGNING_KEY_BYTES_MIN`].
pub fn mint(key: &SecretValue, claims: &Claims, kid: Option<&str>) -> Result<String, SecretError> {
    if key.len() < SIGNING_KEY_BYTES_MIN {
        return Err(SecretError::WeakSigningKey {
            source_name: "the signing key".to_owned(),
            bytes: key.len(),
        });
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key.expose()))
        .map_err(SecretError::Mint)
}

/// Whole seconds of `ttl`, when within 1 s ..= `max` (`[auth] token_lifetime_max`).
fn check_ttl(ttl: Duration, max: Duration) -> Result<u64, SecretError> {
    let secs = ttl.as_secs();
    if secs == 0 || ttl > max {
        return Err(SecretError::TokenTtl {
            ttl: humantime::format_duration(ttl).to_string(),
            problem: format!(
                "it must be at least 1s and at most {} (auth.token_lifetime_max)",
                humantime::format_duration(max)
            ),
        });
    }
    Ok(secs)
}

fn check_subject(subject: &str) -> Result<(), SecretError> {
    let problem = if subject.is_empty() {
        "it is empty".to_owned()
    } else if subject.len() > SUBJECT_BYTES_MAX {
        format!("it is longer than {SUBJECT_BYTES_MAX} bytes")
    } else if subject.chars().any(char::is_control) {
        "it contains control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(SecretError::TokenSubject { problem })
}

fn joined<T: std::fmt::Display>(items: impl Iterator<Item = T>) -> String {
    let list: Vec<String> = items.map(|item| item.to_string()).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}
