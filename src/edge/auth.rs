//! Who is calling: the bearer token (a JWT: HS256, or RS256/ES256/EdDSA with a key of the
//! `[auth] jwks` file) and the `X-Tenant-ID` / `X-Team-ID` headers, checked against each other
//! into a [`Caller`] (docs/http.md). The NATS edge verifies no JWT.
//!
//! Invariants:
//! - The token header's `kid` picks the key and the key picks the one algorithm accepted: no
//!   kid → HS256 with the default key; a kid of [`HsKeys::by_kid`] → HS256 with that key; a kid
//!   of the `[auth] jwks` file → RS256, ES256 or EdDSA by the key's type (`jwks.rs`); any other
//!   kid is refused, naming it. HS256 keys have at least [`SIGNING_KEY_BYTES_MIN`] bytes. An
//!   asymmetric key is never used as an HMAC secret. `exp`, `iss` and `aud` are required and
//!   checked (issuer and audience from `[auth]`), `nbf` is checked when present, leeway is
//!   [`LEEWAY_S`]. Every check below applies to every key. A string `exp`/`nbf`/`iat` is refused (jsonwebtoken
//!   >= 10.3).
//! - A token may live at most `[auth] token_lifetime_max`, counted from its `iat` (or from now
//!   without one); an `iat` more than [`LEEWAY_S`] in the future and any `crit` header (we
//!   understand no extension) are refused.
//! - The tenant and env come from the token only; a header may narrow, never widen: a header
//!   that disagrees with a claim is a rejection, and a repeated header is ambiguous (400), never
//!   resolved by picking one value.
//! - Every id is parsed into its newtype here; a claim that is not a valid id makes the token
//!   invalid (401).
//! - Neither the token nor the signing key is ever logged or put in an error message.
//! - The optional `scope` claim is parsed into [`Scopes`] (`scope.rs`); an unknown word makes
//!   the token invalid (401, naming the word); a token without one has no admin rights.
//! - A token that passed every check is answered from a bounded cache of verified tokens the
//!   next time it comes, its time-dependent checks made again (`verified.rs`).
//! - A connector token (`scope: "connector"`) carries a `team` and a `connector` claim (the
//!   connector's id); without either it is invalid (401), and a `connector` claim on any other
//!   token is invalid too. The edge restricts such a caller ([`Caller::connector`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use actix_web::http::header::{HeaderMap, HeaderName, AUTHORIZATION};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::AuthConfig;
use crate::tenancy::{ConnectorId, EnvId, TeamId, TenantCtx, TenantId};

pub mod jwks;
pub mod scope;
mod verified;
pub use jwks::{JwksError, JwksFile};
pub use scope::{Scope, ScopeError, Scopes};

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_S: u64 = 5;
/// Shortest HS256 key, in bytes: RFC 7518 §3.2 requires a key at least as long as the hash
/// output (256 bits); a shorter one is brute-forced offline from a single token.
pub const SIGNING_KEY_BYTES_MIN: usize = 32;
/// Longest `Authorization` header accepted, in bytes; a JWT with our claims is far shorter.
pub const AUTHORIZATION_BYTES_MAX: usize = 8 * 1024;

/// The tenant header every `/api/v1` call must send.
pub const TENANT_HEADER: &str = "x-tenant-id";
/// The optional team header.
pub const TEAM_HEADER: &str = "x-team-id";

/// The HS256 key shared with token issuers. Its bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

/// The HS256 keys: the default one (tokens without `kid`) and named ones (tokens whose `kid`
/// names them; secrets `global/signing_key.{kid}`), so keys rotate with old and new valid.
#[derive(Clone, Debug)]
pub struct HsKeys {
    /// The key of tokens without `kid`.
    pub default: SigningKey,
    /// The keys of tokens with a `kid`, by kid.
    pub by_kid: std::collections::BTreeMap<String, SigningKey>,
}

impl HsKeys {
    /// Only the default key.
    pub fn single(key: SigningKey) -> HsKeys {
        HsKeys {
            default: key,
            by_kid: std::collections::BTreeMap::new(),
        }
    }
}

/// Longest `kid` quoted back in an error message, in characters.
pub const KID_QUOTED_CHARS_MAX: usize = 64;

/// Why a signing key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key is shorter than [`SIGNING_KEY_BYTES_MIN`]: tokens signed with it can be forged
    /// after an offline brute force. Generate one with `tenantry keygen`.
    #[error(
        "the signing key is {bytes} bytes; HS256 needs at least {SIGNING_KEY_BYTES_MIN} bytes \
         (RFC 7518 §3.2); generate one with `tenantry keygen`"
    )]
    TooShort {
        /// The key's length.
        bytes: usize,
    },
}

impl SigningKey {
    /// Wraps the key's bytes (e.g. the UTF-8 bytes of `TENANTRY_SIGNING_KEY`); refuses a key
    /// shorter than [`SIGNING_KEY_BYTES_MIN`].
    pub fn new(bytes: Vec<u8>) -> Result<SigningKey, KeyError> {
        if bytes.len() < SIGNING_KEY_BYTES_MIN {
            return Err(KeyError::TooShort { bytes: bytes.len() });
        }
        Ok(SigningKey(bytes))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Why a request's credentials or tenancy headers were refused. Statuses are assigned in
/// `edge::http::error`; each variant's doc gives it.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header. 401.
    #[error("missing bearer token")]
    MissingToken,
    /// The token is malformed, badly signed, expired, not yet valid, for another issuer or
    /// audience, or lacks a valid `tenant`/`env` claim. 401. The reason is for the client; it
    /// never contains the token.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The `scope` claim names an unknown word, is empty or too long. 401 `invalid_token`;
    /// the message names the word.
    #[error("invalid token: {0}")]
    InvalidScope(ScopeError),
    /// The token's `kid` names no HS256 key and no key of the JWKS file. 401 `invalid_token`;
    /// the message quotes the kid (at most [`KID_QUOTED_CHARS_MAX`] characters).
    #[error("invalid token: unknown key id (kid) {0:?}")]
    UnknownKid(String),
    /// No `X-Tenant-ID` header. 400.
    #[error("missing X-Tenant-ID header")]
    MissingTenantHeader,
    /// A header that must appear at most once appears several times. 400.
    #[error("header {0} is repeated")]
    AmbiguousHeader(&'static str),
    /// A header is not a valid id. 400.
    #[error("header {header} is invalid: {message}")]
    InvalidHeader {
        /// The header's name.
        header: &'static str,
        /// Which rule the value broke.
        message: String,
    },
    /// `X-Tenant-ID` differs from the token's tenant. 403.
    #[error("X-Tenant-ID does not match the token")]
    TenantMismatch,
    /// `X-Team-ID` differs from the token's team. 403.
    #[error("X-Team-ID does not match the token")]
    TeamMismatch,
    /// The token is valid but its tenant is not served by this instance. 404.
    #[error("tenant {0} is not served here")]
    UnknownTenant(TenantId),
}

/// The claims we read; the spec claims (`exp`, `iss`, `aud`, `nbf`) are checked by
/// jsonwebtoken's [`Validation`], `exp` and `iat` again here against the lifetime bound.
/// Unknown claims (`sub`, ...) are ignored.
#[derive(Deserialize)]
struct RawClaims {
    tenant: String,
    env: String,
    #[serde(default)]
    team: Option<String>,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    /// Checked by jsonwebtoken when present; kept for the cache's re-check (a token whose `nbf`
    /// is not a whole number of seconds is not cached: its answer stays jsonwebtoken's).
    #[serde(default)]
    nbf: Option<serde_json::Value>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    connector: Option<String>,
}

/// The validated claims of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// The tenant the token is for.
    pub tenant: TenantId,
    /// The environment every call of this token acts in.
    pub env: EnvId,
    /// When set, the token may only act in this team.
    pub team: Option<TeamId>,
    /// The `scope` claim ([`Scopes::DEFAULT`] without one).
    pub scope: Scopes,
    /// The `connector` claim: set exactly when `scope` is `connector` (a connector token).
    pub connector: Option<ConnectorId>,
}

/// Checks tokens: HS256 with the default or the `kid`-named key, or RS256/ES256/EdDSA with the
/// JWKS key named by `kid`; `[auth]` issuer, audience and lifetime bound.
pub struct Authenticator {
    hs: HsKeys,
    jwks: Option<JwksFile>,
    validation: Validation,
    lifetime_max: Duration,
    verified: verified::VerifiedTokens,
}

impl Authenticator {
    /// A checker for tokens signed with `keys` or a key of `jwks` (the caller opens
    /// `auth.jwks`), naming `auth.issuer` / `auth.audience`.
    pub fn new(keys: HsKeys, jwks: Option<JwksFile>, auth: &AuthConfig) -> Authenticator {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[auth.issuer.as_str()]);
        validation.set_audience(&[auth.audience.as_str()]);
        validation.leeway = LEEWAY_S;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Authenticator {
            hs: keys,
            jwks,
            validation,
            lifetime_max: auth.token_lifetime_max,
            verified: verified::VerifiedTokens::default(),
        }
    }

    /// The default HS256 key (tokens without `kid`), for the tokens the server mints itself
    /// (connector tokens, `POST /api/v1/connectors`).
    pub fn default_key(&self) -> crate::secrets::value::SecretValue {
        crate::secrets::value::SecretValue::new(self.hs.default.0.clone())
    }

    /// The key for the token's `kid` and the one algorithm it allows: no kid → the default
    /// HS256 key; a kid of an HS256 key → that key, HS256; else the JWKS key of that kid, with
    /// the algorithm its type implies.
    /// With a JWKS key, also the key set it came from.
    fn key_for(&self, kid: Option<&str>) -> Result<KeyFor, AuthError> {
        let Some(kid) = kid else {
            return Ok((
                Algorithm::HS256,
                DecodingKey::from_secret(&self.hs.default.0),
                None,
            ));
        };
        if let Some(key) = self.hs.by_kid.get(kid) {
            return Ok((Algorithm::HS256, DecodingKey::from_secret(&key.0), None));
        }
        if let Some(jwks) = &self.jwks {
            let keys = jwks.keys();
            if let Some(key) = keys.get(kid) {
                let (algorithm, key) = (key.algorithm, key.key.clone());
                return Ok((algorithm, key, Some(keys)));
            }
        }
        Err(AuthError::UnknownKid(
            kid.chars().take(KID_QUOTED_CHARS_MAX).collect(),
        ))
    }

    /// Validates `token` and parses its tenancy claims; a token verified lately is answered
    /// from the cache once its time-dependent checks pass again (`verified.rs`).
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = SystemTime::now();
        if let Some(hit) = self.verified.get(token) {
            if self.keys_current(&hit) && self.times_valid(&hit, now) {
                return Ok(hit.claims.clone());
            }
            self.verified.remove(token);
        }
        let verified = self.verify_fully(token, now)?;
        let claims = verified.claims.clone();
        // Its key set is the current one: it was just looked up.
        if verified.cacheable && self.times_valid(&verified, now) {
            self.verified.insert(token, verified);
        }
        Ok(claims)
    }

    /// Whether a verified token's JWKS key set (if any) is still the file's current one.
    fn keys_current(&self, v: &verified::Verified) -> bool {
        match (&v.jwks_keys, &self.jwks) {
            (None, _) => true,
            (Some(keys), Some(file)) => std::sync::Arc::ptr_eq(keys, &file.keys()),
            (Some(_), None) => false,
        }
    }

    /// Whether a verified token's times still hold at `now`, more strictly than the full check:
    /// `exp` ahead and `nbf` passed without leeway, and within the lifetime bound.
    fn times_valid(&self, v: &verified::Verified, now: SystemTime) -> bool {
        let now_s = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        v.exp > now_s
            && v.nbf.is_none_or(|nbf| nbf <= now_s)
            && check_times(v.iat, v.exp, self.lifetime_max, now).is_ok()
    }

    /// Every check of a token, signature included.
    fn verify_fully(&self, token: &str, now: SystemTime) -> Result<verified::Verified, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::InvalidToken("malformed token"))?;
        let (algorithm, key, jwks_keys) = self.key_for(header.kid.as_deref())?;
        if header.alg != algorithm {
            return Err(AuthError::InvalidToken(
                "algorithm not allowed (the key named by kid, or HS256 without kid, decides it)",
            ));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![algorithm];
        let data = jsonwebtoken::decode::<RawClaims>(token, &key, &validation).map_err(|e| {
            AuthError::InvalidToken(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature",
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not valid yet (nbf)",
                ErrorKind::InvalidIssuer => "wrong issuer",
                ErrorKind::InvalidAudience => "wrong audience",
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    "algorithm not allowed (the key named by kid, or HS256 without kid, decides it)"
                }
                ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
                ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong type",
                ErrorKind::Json(_) => "claims are not the expected JSON (tenant, env)",
                _ => "malformed token",
            })
        })?;
        if data.header.crit.is_some() {
            return Err(AuthError::InvalidToken(
                "critical header extensions (crit) are not supported",
            ));
        }
        let raw = data.claims;
        check_times(raw.iat, raw.exp, self.lifetime_max, now)?;
        let tenant =
            TenantId::parse(&raw.tenant).map_err(|_| AuthError::InvalidToken("invalid tenant"))?;
        let env = EnvId::parse(&raw.env).map_err(|_| AuthError::InvalidToken("invalid env"))?;
        let team = raw
            .team
            .map(|t| TeamId::parse(&t))
            .transpose()
            .map_err(|_| AuthError::InvalidToken("invalid team"))?;
        let scope = match raw.scope {
            None => Scopes::DEFAULT,
            Some(claim) => Scopes::parse(&claim).map_err(AuthError::InvalidScope)?,
        };
        let connector = connector_claim(&scope, raw.connector, team.as_ref())?;
        Ok(verified::Verified {
            claims: Claims {
                tenant,
                env,
                team,
                scope,
                connector,
            },
            exp: raw.exp,
            nbf: raw.nbf.as_ref().and_then(serde_json::Value::as_u64),
            cacheable: raw.nbf.is_none_or(|nbf| nbf.as_u64().is_some()),
            iat: raw.iat,
            jwks_keys,
        })
    }
}

/// A token's key, the one algorithm it allows, and with a JWKS key the set it came from.
type KeyFor = (
    Algorithm,
    DecodingKey,
    Option<std::sync::Arc<jwks::KeysByKid>>,
);

/// The `connector` claim, parsed: required (with a `team` claim) on a connector token, refused
/// on any other.
fn connector_claim(
    scope: &Scopes,
    raw: Option<String>,
    team: Option<&TeamId>,
) -> Result<Option<ConnectorId>, AuthError> {
    match (scope.is_connector(), raw) {
        (true, Some(raw)) if team.is_some() => ConnectorId::parse(&raw)
            .map(Some)
            .map_err(|_| AuthError::InvalidToken("invalid connector")),
        (true, _) => Err(AuthError::InvalidToken(
            "a connector token (scope connector) needs the connector and team claims",
        )),
        (false, Some(_)) => Err(AuthError::InvalidToken(
            "the connector claim is only valid with scope connector",
        )),
        (false, None) => Ok(None),
    }
}

/// Refuses an `iat` beyond the leeway in the future, and an `exp` more than `lifetime_max` after
/// the `iat` (or after `now` when the token has none). `exp` itself was checked by jsonwebtoken.
fn check_times(
    iat: Option<u64>,
    exp: u64,
    lifetime_max: Duration,
    now: SystemTime,
) -> Result<(), AuthError> {
    let now_s = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if iat.is_some_and(|iat| iat > now_s.saturating_add(LEEWAY_S)) {
        return Err(AuthError::InvalidToken("issued in the future (iat)"));
    }
    let start = iat.unwrap_or(now_s);
    if exp.saturating_sub(start) > lifetime_max.as_secs() {
        return Err(AuthError::InvalidToken(
            "lives longer than the server allows (exp - iat > auth.token_lifetime_max)",
        ));
    }
    Ok(())
}

/// An authenticated caller: its token's claims and the team it narrowed to with `X-Team-ID`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The tenant (token claim, equal to `X-Tenant-ID`).
    pub tenant: TenantId,
    /// The env (token claim).
    pub env: EnvId,
    /// The token's `team` claim, if any.
    pub claim_team: Option<TeamId>,
    /// `X-Team-ID`, if sent (equal to `claim_team` when both are set).
    pub header_team: Option<TeamId>,
    /// The token's scopes.
    pub scope: Scopes,
    /// A connector token's connector (its `team` claim is then set): such a caller may only post
    /// messages of that team (docs/http.md#connector-tokens).
    pub connector: Option<ConnectorId>,
}

impl Caller {
    /// The team the caller restricted itself to: `X-Team-ID`, else the token's team; `None`
    /// means every team of the tenant.
    pub fn team(&self) -> Option<&TeamId> {
        self.header_team.as_ref().or(self.claim_team.as_ref())
    }

    /// The context of an operation in `team` (`None`: the runtime's default team).
    pub fn ctx(&self, team: Option<TeamId>) -> TenantCtx {
        TenantCtx::new(self.tenant.clone(), self.env.clone(), team)
    }
}

/// Checks the token, then `X-Tenant-ID` and `X-Team-ID` against it. `served` says whether this
/// instance serves a tenant; it is checked last, so that headers are judged first.
pub fn authenticate(
    headers: &HeaderMap,
    auth: &Authenticator,
    served: impl Fn(&TenantId) -> bool,
) -> Result<Caller, AuthError> {
    let claims = auth.verify(bearer_token(headers)?)?;
    check_headers(headers, claims, served)
}

/// The second half of [`authenticate`], for callers that need the claims in between.
pub fn check_headers(
    headers: &HeaderMap,
    claims: Claims,
    served: impl Fn(&TenantId) -> bool,
) -> Result<Caller, AuthError> {
    // Any value other than the claim disagrees with the token (403), valid id or not; an
    // equal value is valid because the claim is.
    let tenant =
        single(headers, TENANT_HEADER, "X-Tenant-ID")?.ok_or(AuthError::MissingTenantHeader)?;
    if tenant != claims.tenant.as_str() {
        return Err(AuthError::TenantMismatch);
    }
    let header_team = match (single(headers, TEAM_HEADER, "X-Team-ID")?, &claims.team) {
        (None, _) => None,
        (Some(raw), Some(claim)) if raw != claim.as_str() => return Err(AuthError::TeamMismatch),
        (Some(raw), _) => Some(TeamId::parse(raw).map_err(|e| AuthError::InvalidHeader {
            header: "X-Team-ID",
            message: e.to_string(),
        })?),
    };
    if !served(&claims.tenant) {
        return Err(AuthError::UnknownTenant(claims.tenant));
    }
    Ok(Caller {
        tenant: claims.tenant,
        env: claims.env,
        claim_team: claims.team,
        header_team,
        scope: claims.scope,
        connector: claims.connector,
    })
}

/// The token of the single `Authorization: Bearer <token>` header.
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION);
    let value = values.next().ok_or(AuthError::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthError::InvalidToken("several Authorization headers"));
    }
    if value.len() > AUTHORIZATION_BYTES_MAX {
        return Err(AuthError::InvalidToken("token too long"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::InvalidToken("not a bearer token"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::InvalidToken("not a bearer token"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::InvalidToken("not a bearer token"));
    }
    Ok(token)
}

/// The value of a header that may appear at most once, as text.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &'static str,
    display: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(HeaderName::from_static(name));
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::AmbiguousHeader(display));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| AuthError::InvalidHeader {
            header: display,
            message: "not visible ASCII".to_owned(),
        })
}

#[cfg(test)]
mod tests;
