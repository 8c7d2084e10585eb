//! The settings that bound exposure: `[auth]` (what tokens must say and how long they may live)
//! and `server.metrics_listen` (where `/metrics`, which names every tenant, is served).
//!
//! Invariant: a loaded [`AuthConfig`] has a lifetime bound within
//! `1s..=`[`TOKEN_LIFETIME_MAX_LIMIT`]; a metrics address is either a socket address or off.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::raw::AuthSection;
use super::validate::{check_name, invalid, parse_duration};
use super::{AuthConfig, DEFAULT_AUDIENCE, DEFAULT_ISSUER};

/// `server.metrics_listen` when absent: loopback only, Prometheus' conventional exporter port.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9464));
/// The `server.metrics_listen` value that disables the metrics listener.
pub const METRICS_OFF: &str = "off";
/// `auth.token_lifetime_max` when absent: 30 days.
pub const DEFAULT_TOKEN_LIFETIME_MAX: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Largest `auth.token_lifetime_max`: a token cannot be revoked short of rotating the signing
/// key, so a year is the most we let an operator choose.
pub const TOKEN_LIFETIME_MAX_LIMIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `[auth]`, with defaults applied and bounds checked.
pub(super) fn auth_config(path: &Path, auth: AuthSection) -> Result<AuthConfig, ConfigError> {
    let issuer = auth.issuer.unwrap_or_else(|| DEFAULT_ISSUER.into());
    let audience = auth.audience.unwrap_or_else(|| DEFAULT_AUDIENCE.into());
    let token_lifetime_max = match auth.token_lifetime_max.as_deref() {
        None => DEFAULT_TOKEN_LIFETIME_MAX,
        Some(raw) => token_lifetime_max(path, raw)?,
    };
    let jwks = match auth.jwks.as_deref() {
        None => None,
        Some(raw) => Some(jwks_file(path, raw)?),
    };
    Ok(AuthConfig {
        issuer: check_name(path, "auth.issuer", issuer)?,
        audience: check_name(path, "auth.audience", audience)?,
        token_lifetime_max,
        jwks,
    })
}

/// `auth.jwks`: resolved against the config file and loaded once, so that a bad file stops the
/// load with the message of [`crate::edge::auth::JwksError`] (file, key index and kid, fix).
fn jwks_file(path: &Path, raw: &str) -> Result<std::path::PathBuf, ConfigError> {
    const FIELD: &str = "auth.jwks";
    if raw.trim().is_empty() {
        return Err(invalid(
            path,
            FIELD,
            "is empty: give the path of a JWK Set file, or leave auth.jwks out".to_owned(),
        ));
    }
    let file = super::files::resolve(path, Path::new(raw));
    crate::edge::auth::jwks::load(&file).map_err(|e| invalid(path, FIELD, e.to_string()))?;
    Ok(file)
}

fn token_lifetime_max(path: &Path, raw: &str) -> Result<Duration, ConfigError> {
    const FIELD: &str = "auth.token_lifetime_max";
    let lifetime = parse_duration(path, FIELD, raw, "\"30d\" or \"12h\"")?;
    if lifetime < Duration::from_secs(1) || lifetime > TOKEN_LIFETIME_MAX_LIMIT {
        return Err(invalid(
            path,
            FIELD,
            format!(
                "{raw:?} is out of range: give 1s..={}, or leave it out for {}",
                humantime::format_duration(TOKEN_LIFETIME_MAX_LIMIT),
                humantime::format_duration(DEFAULT_TOKEN_LIFETIME_MAX)
            ),
        ));
    }
    Ok(lifetime)
}

/// `server.metrics_listen`: an address (port 0 picks a free port), `"off"`, or absent for
/// [`DEFAULT_METRICS_LISTEN`]. `None` means no metrics listener.
pub(super) fn metrics_listen(
    path: &Path,
    raw: Option<&str>,
) -> Result<Option<SocketAddr>, ConfigError> {
    match raw {
        None => Ok(Some(DEFAULT_METRICS_LISTEN)),
        Some(METRICS_OFF) => Ok(None),
        Some(raw) => raw.parse().map(Some).map_err(|_| {
            invalid(
                path,
                "server.metrics_listen",
                format!(
                    "{raw:?} is not an address: write e.g. \"127.0.0.1:9464\" (a port of its own, \
                     never the API's), or \"{METRICS_OFF}\" to disable /metrics"
                ),
            )
        }),
    }
}
