//! `[nats]`: the server, the subject prefix and how tenantry authenticates to NATS.
//!
//! Invariants: at most one way to authenticate is configured; a secret (password, token, NKey
//! seed) is either inline or named by where to read it (an environment variable or the global
//! secret store) when connecting, so `config.toml` need not hold it; no secret value is ever
//! printed (`Debug` of [`SecretSource`] redacts it, and a URL's user info is hidden by
//! [`NatsConfig::url_for_display`] and in errors); `url` is one server or a comma-separated list
//! of at most [`NATS_URLS_MAX`], each a `nats://` or `tls://` URL with a host and a port.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use async_nats::ServerAddr;

use super::error::ConfigError;
use super::files::resolve;
use super::raw::{NatsSection, RawSecret, RawSecretFrom};
use super::validate::{check_name, invalid};
use super::NAME_BYTES_MAX;
use crate::secrets::name::SecretName;

/// `nats.subject_prefix` when absent.
pub const DEFAULT_SUBJECT_PREFIX: &str = "greentic.messaging";
/// Most servers `nats.url` may list (the client finds the rest of a cluster by itself).
pub const NATS_URLS_MAX: usize = 16;

/// `[nats]`; without it there is no NATS ingress.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// `nats.url` as written: one server URL, e.g. `nats://127.0.0.1:4222`, or a
    /// comma-separated list of them; [`NatsConfig::urls`] splits it.
    pub url: String,
    /// First tokens of every subject: dot-separated, each token non-empty, no `*`, `>` or
    /// whitespace.
    pub subject_prefix: String,
    /// How tenantry authenticates to the server.
    pub auth: NatsAuth,
}

/// How tenantry authenticates to NATS (`async_nats::ConnectOptions` has one method for each).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credentials (or only those in the URL).
    None,
    /// `user` and `password`.
    UserPassword {
        /// The NATS user.
        user: String,
        /// Its password.
        password: SecretSource,
    },
    /// `token`.
    Token(SecretSource),
    /// `nkey_seed`: the seed signs the server's nonce.
    NkeySeed(SecretSource),
    /// `creds_file`: a `.creds` file (user JWT and NKey seed), resolved against the config
    /// file's directory.
    CredsFile(PathBuf),
}

/// Where a secret comes from. `Debug` never shows an inline value.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in `config.toml` itself (fine for tests; prefer the others).
    Inline(String),
    /// The environment variable of this name, read when connecting.
    Env(String),
    /// This secret of the global namespace of the secret store, read when connecting.
    Store(SecretName),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("Inline(<redacted>)"),
            SecretSource::Env(var) => f.debug_tuple("Env").field(var).finish(),
            SecretSource::Store(name) => f.debug_tuple("Store").field(&name.as_str()).finish(),
        }
    }
}

impl fmt::Display for SecretSource {
    /// Where the secret comes from, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(_) => f.write_str("inline in the config"),
            SecretSource::Env(var) => write!(f, "env {var}"),
            SecretSource::Store(name) => write!(f, "secret global/{}", name.as_str()),
        }
    }
}

impl NatsConfig {
    /// The servers of `nats.url`, in the order written, each trimmed; each is a `nats://` or
    /// `tls://` URL with a host and a port (checked at load), at least one.
    pub fn urls(&self) -> Vec<String> {
        split_urls(&self.url).map(str::to_owned).collect()
    }

    /// The servers with any user info (`user:password@`) replaced by `***@`, comma-separated,
    /// for logs and errors.
    pub fn url_for_display(&self) -> String {
        split_urls(&self.url)
            .map(redact_url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The entries of a `nats.url` value, trimmed (empty ones included, for the check to name).
fn split_urls(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',').map(str::trim)
}

impl fmt::Display for NatsAuth {
    /// The kind of authentication and where its secret comes from, never the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NatsAuth::None => f.write_str("no credentials"),
            NatsAuth::UserPassword { user, password } => {
                write!(f, "user {user}, password from {password}")
            }
            NatsAuth::Token(token) => write!(f, "token from {token}"),
            NatsAuth::NkeySeed(seed) => write!(f, "nkey seed from {seed}"),
            NatsAuth::CredsFile(path) => write!(f, "creds file {}", path.display()),
        }
    }
}

/// `url` with the user info between `://` and `@` hidden.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

pub(super) fn nats_config(path: &Path, nats: NatsSection) -> Result<NatsConfig, ConfigError> {
    let url = check_urls(path, nats.url)?;
    let prefix = nats
        .subject_prefix
        .unwrap_or_else(|| DEFAULT_SUBJECT_PREFIX.into());
    let subject_prefix = check_subject_prefix(path, prefix)?;
    let secret = |field: &str, raw: Option<RawSecret>| {
        raw.map(|raw| secret_source(path, field, raw)).transpose()
    };
    let password = secret("nats.password", nats.password)?;
    let token = secret("nats.token", nats.token)?;
    let nkey_seed = secret("nats.nkey_seed", nats.nkey_seed)?;
    let creds_file = nats.creds_file.map(|file| resolve(path, &file));
    let given = [
        nats.user.is_some() || password.is_some(),
        token.is_some(),
        nkey_seed.is_some(),
        creds_file.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(invalid(
            path,
            "nats",
            "more than one way to authenticate: give only one of user + password, token, \
             nkey_seed or creds_file"
                .to_owned(),
        ));
    }
    let auth = match (nats.user, password) {
        (Some(user), Some(password)) => NatsAuth::UserPassword {
            user: check_name(path, "nats.user", user)?,
            password,
        },
        (Some(_), None) => return Err(missing(path, "nats.password", "nats.user")),
        (None, Some(_)) => return Err(missing(path, "nats.user", "nats.password")),
        (None, None) => match (token, nkey_seed, creds_file) {
            (Some(token), _, _) => NatsAuth::Token(token),
            (_, Some(seed), _) => NatsAuth::NkeySeed(seed),
            (_, _, Some(file)) => NatsAuth::CredsFile(file),
            (None, None, None) => NatsAuth::None,
        },
    };
    Ok(NatsConfig {
        url,
        subject_prefix,
        auth,
    })
}

/// `nats.url`: one server or a comma-separated list of at most [`NATS_URLS_MAX`], each a
/// `nats://` or `tls://` URL with a host and a port, parsed as the NATS client parses it.
fn check_urls(path: &Path, raw: String) -> Result<String, ConfigError> {
    const FIELD: &str = "nats.url";
    if raw.trim().is_empty() {
        return Err(invalid(
            path,
            FIELD,
            "must not be empty: give a server such as \"nats://127.0.0.1:4222\", or a \
             comma-separated list"
                .to_owned(),
        ));
    }
    let count = split_urls(&raw).count();
    if count > NATS_URLS_MAX {
        return Err(invalid(
            path,
            FIELD,
            format!(
                "lists {count} servers, more than {NATS_URLS_MAX}: list a few of the cluster's \
                 servers (the client learns the others from them)"
            ),
        ));
    }
    for (index, entry) in split_urls(&raw).enumerate() {
        check_url(entry).map_err(|problem| {
            invalid(
                path,
                FIELD,
                format!(
                    "entry {} {:?} {problem}; write each server as nats://host:port or \
                     tls://host:port, separated by commas",
                    index + 1,
                    redact_url(entry)
                ),
            )
        })?;
    }
    Ok(raw)
}

/// Why one server entry of `nats.url` is unusable, if it is.
fn check_url(entry: &str) -> Result<(), String> {
    if entry.is_empty() {
        return Err("is empty (a stray comma?)".to_owned());
    }
    if entry.len() > NAME_BYTES_MAX {
        return Err(format!("is longer than {NAME_BYTES_MAX} bytes"));
    }
    let Some((scheme, _)) = entry.split_once("://") else {
        return Err("has no scheme".to_owned());
    };
    if !matches!(scheme, "nats" | "tls") {
        return Err(format!("has the scheme {scheme:?}, not nats or tls"));
    }
    // The client's own parser: what passes here is what `connect` will use.
    let url = ServerAddr::from_str(entry)
        .map_err(|e| format!("is not a URL ({e})"))?
        .into_inner();
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    match url.port() {
        Some(port) if port > 0 => Ok(()),
        Some(_) => Err("has port 0".to_owned()),
        None => Err("has no port".to_owned()),
    }
}

fn missing(path: &Path, field: &str, because: &str) -> ConfigError {
    invalid(
        path,
        field,
        format!("is required with {because}: give both, or neither"),
    )
}

fn secret_source(path: &Path, field: &str, raw: RawSecret) -> Result<SecretSource, ConfigError> {
    match raw {
        RawSecret::Inline(value) if value.is_empty() => {
            Err(invalid(path, field, "must not be empty".to_owned()))
        }
        RawSecret::Inline(value) => Ok(SecretSource::Inline(value)),
        RawSecret::From(RawSecretFrom {
            env: Some(var),
            secret: None,
        }) => {
            let var_ok = !var.is_empty()
                && var.len() <= super::NAME_BYTES_MAX
                && !var.contains(['=', '\0'])
                && !var.starts_with(|c: char| c.is_ascii_digit());
            if !var_ok {
                return Err(invalid(
                    path,
                    field,
                    format!("env {var:?} is not a usable variable name, e.g. \"TENANTRY_NATS_PASSWORD\""),
                ));
            }
            Ok(SecretSource::Env(var))
        }
        RawSecret::From(RawSecretFrom {
            env: None,
            secret: Some(name),
        }) => SecretName::parse(&name)
            .map(SecretSource::Store)
            .map_err(|e| invalid(path, field, e.to_string())),
        RawSecret::From(_) => Err(invalid(
            path,
            field,
            "give exactly one of { env = \"VARIABLE\" } or { secret = \"name\" }".to_owned(),
        )),
    }
}

/// NATS subject prefix: dot-separated tokens, each non-empty and free of wildcards and
/// whitespace, so that subjects built from it have exactly the tokens docs/nats.md says.
fn check_subject_prefix(path: &Path, prefix: String) -> Result<String, ConfigError> {
    let prefix = check_name(path, "nats.subject_prefix", prefix)?;
    let tokens_ok = prefix.split('.').all(|token| {
        !token.is_empty()
            && !token
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    });
    if !tokens_ok {
        return Err(invalid(
            path,
            "nats.subject_prefix",
            format!(
                "invalid subject prefix {prefix:?}: use dot-separated tokens without empty \
                 tokens, `*`, `>` or whitespace, e.g. \"greentic.messaging\""
            ),
        ));
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests;
