//! Connecting to NATS as tenantry's own user: the credentials of `[nats]` (user and password,
//! token, NKey seed or a `.creds` file), each secret read from where the config says (inline,
//! an environment variable, the global secret store) at connect time.
//!
//! Invariants: a secret is never logged or put in an error (errors name the config key and
//! where the secret was to come from); a URL is shown with its user info hidden. Every server of
//! `nats.url` is given to the client, which connects to any live one and fails over among them.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use async_nats::{ConnectOptions, ServerAddr};

use super::error::NatsError;
use super::metrics::{NatsEvent, NatsMetrics};
use crate::config::{NatsAuth, NatsConfig, SecretSource};
use crate::secrets::key::KeySources;
use crate::secrets::store::SecretStore;

/// Messages the client buffers for our subscription before it reports a slow consumer and drops.
pub const SUBSCRIPTION_CAPACITY: usize = 16 * 1024;

/// Connects (retrying while the server is down at start) with the credentials of `config`,
/// reading secrets kept in the store of `data_dir` when the config names one, and reports
/// connection changes, server errors (a refused login, a permissions violation) and slow
/// consumers in the log and the metrics.
pub async fn connect(
    config: &NatsConfig,
    data_dir: &Path,
    metrics: Arc<NatsMetrics>,
) -> Result<async_nats::Client, NatsError> {
    let options = ConnectOptions::new()
        .name(connection_name())
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .retry_on_initial_connect()
        .event_callback(move |event| {
            let metrics = metrics.clone();
            async move { report(&metrics, event) }
        });
    let options = with_credentials(options, &config.auth, data_dir).await?;
    options
        .connect(server_addrs(config)?)
        .await
        .map_err(|e| NatsError::Connect {
            url: config.url_for_display(),
            detail: e.to_string(),
        })
}

/// The name nats-server lists this process' connections under (`/connz`): `tenantry pid N`.
fn connection_name() -> String {
    format!("tenantry pid {}", std::process::id())
}

/// The servers of `nats.url`, each parsed as the client parses one address: the client takes a
/// list of addresses, and would read a comma-joined string as one (invalid) URL.
pub(super) fn server_addrs(config: &NatsConfig) -> Result<Vec<ServerAddr>, NatsError> {
    config
        .urls()
        .iter()
        .map(|url| ServerAddr::from_str(url))
        .collect::<Result<_, _>>()
        // Checked at load, so this is a config built some other way; say which.
        .map_err(|e| NatsError::Connect {
            url: config.url_for_display(),
            detail: format!("nats.url: {e}"),
        })
}

fn report(metrics: &NatsMetrics, event: async_nats::Event) {
    match event {
        async_nats::Event::SlowConsumer(sid) => {
            metrics.count(NatsEvent::SlowConsumer);
            tracing::warn!(
                subscription = sid,
                "NATS slow consumer: the client dropped messages"
            );
        }
        async_nats::Event::Disconnected => {
            metrics.set_connected(false);
            tracing::warn!("NATS disconnected; reconnecting");
        }
        async_nats::Event::Connected => {
            metrics.set_connected(true);
            tracing::info!("NATS connected");
        }
        // The server refused our login (a client error, retried with backoff) or a subject:
        // say so where an operator looks.
        async_nats::Event::ServerError(e) => tracing::error!(error = %e, "NATS server error"),
        async_nats::Event::ClientError(e) => tracing::error!(error = %e, "NATS client error"),
        other => tracing::debug!(event = %other, "NATS event"),
    }
}

pub(super) async fn with_credentials(
    options: ConnectOptions,
    auth: &NatsAuth,
    data_dir: &Path,
) -> Result<ConnectOptions, NatsError> {
    Ok(match auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => {
            let password = secret("nats.password", password, data_dir)?;
            options.user_and_password(user.clone(), password)
        }
        NatsAuth::Token(token) => options.token(secret("nats.token", token, data_dir)?),
        NatsAuth::NkeySeed(source) => {
            let seed = secret("nats.nkey_seed", source, data_dir)?;
            // Checked here so a bad seed is an error at start, not a refused login later.
            nkeys::KeyPair::from_seed(&seed).map_err(|e| NatsError::Credentials {
                field: "nats.nkey_seed",
                detail: format!("the value from {source} is not a valid NKey seed: {e}"),
            })?;
            options.nkey(seed)
        }
        NatsAuth::CredsFile(path) => {
            options
                .credentials_file(path)
                .await
                .map_err(|e| NatsError::Credentials {
                    field: "nats.creds_file",
                    detail: format!(
                        "cannot use {}: {e}; give the path of a .creds file (nsc generate creds)",
                        path.display()
                    ),
                })?
        }
    })
}

/// The value of a secret, from where `source` says; errors name `field` and the fix.
pub(super) fn secret(
    field: &'static str,
    source: &SecretSource,
    data_dir: &Path,
) -> Result<String, NatsError> {
    let fail = |detail: String| NatsError::Credentials { field, detail };
    let value = match source {
        SecretSource::Inline(value) => value.clone(),
        SecretSource::Env(var) => match std::env::var(var) {
            Ok(value) => value,
            Err(std::env::VarError::NotPresent) => {
                return Err(fail(format!(
                    "environment variable {var} is not set: set it, or name another source"
                )))
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(fail(format!(
                    "environment variable {var} is not valid UTF-8"
                )))
            }
        },
        SecretSource::Store(name) => {
            // Opens the store only if the secret exists: a missing one creates no master key.
            let sources =
                KeySources::from_env().map_err(|e| fail(format!("the master key: {e}")))?;
            let value = SecretStore::stored_global(data_dir, name, sources)
                .map_err(|e| fail(format!("reading secret global/{}: {e}", name.as_str())))?
                .ok_or_else(|| {
                    fail(format!(
                        "secret global/{0} is not set: run `tenantry secrets set --global {0}`",
                        name.as_str()
                    ))
                })?;
            String::from_utf8(value.expose().to_vec()).map_err(|_| {
                fail(format!(
                    "secret global/{} is not valid UTF-8",
                    name.as_str()
                ))
            })?
        }
    };
    if value.is_empty() {
        return Err(fail(format!("the value from {source} is empty")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
