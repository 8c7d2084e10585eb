//! The `tenantry secrets`, `tenantry token` and `tenantry keygen` subcommands: their arguments (clap) and what they
//! do, so that `cli` only dispatches.
//!
//! Invariants:
//! - Ids and names are validated by clap through their `parse` before anything runs.
//! - Only `secrets get`, `token` and `keygen` write a secret or secret-derived value, and only
//!   to stdout; every error names the namespace and the secret, never the value.
//! - `secrets set --global signing_key` (or `signing_key.{kid}`) and `token` refuse a signing key shorter than
//!   `edge::auth::SIGNING_KEY_BYTES_MIN`, as `serve` does.

use std::io::{Read, Write};
use std::path::Path;
use std::time::SystemTime;

use clap::{ArgGroup, Args, Subcommand};

use crate::config::Config;
use crate::secrets::consts::SECRET_VALUE_BYTES_MAX;
use crate::secrets::error::SecretError;
use crate::secrets::key::{generate_signing_key, KeySources};
use crate::secrets::name::{Namespace, SecretName};
use crate::secrets::store::{check_signing_key, SecretStore};
use crate::secrets::token::{claims_for, mint, TokenRequest, DEFAULT_SUBJECT};
use crate::secrets::value::SecretValue;
use crate::tenancy::{EnvId, TeamId, TenantId};

/// `tenantry secrets`.
#[derive(Args, Debug)]
pub struct SecretsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SecretsAction,
}

/// The `tenantry secrets` actions.
#[derive(Subcommand, Debug)]
pub enum SecretsAction {
    /// Store a secret; the value is read from stdin (one trailing newline is stripped).
    Set(NameArgs),
    /// Print a secret's value to stdout.
    Get(NameArgs),
    /// Print the names of a namespace's secrets, one per line (never values).
    List(NamespaceArgs),
    /// Remove a secret; fails when it is not set.
    Delete(NameArgs),
}

/// Which namespace: exactly one of `--global` and `--tenant` (optionally with `--team`).
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("namespace").required(true).args(["tenant", "global"])))]
pub struct NamespaceArgs {
    /// The tenant's namespace `{tenant}/`.
    #[arg(long)]
    pub tenant: Option<TenantId>,
    /// With --tenant: the team's namespace `{tenant}/teams/{team}/`.
    #[arg(long, requires = "tenant", conflicts_with = "global")]
    pub team: Option<TeamId>,
    /// The platform namespace `global/` (e.g. the JWT signing key `signing_key`).
    #[arg(long)]
    pub global: bool,
}

impl NamespaceArgs {
    /// The namespace named. clap guarantees exactly one of `--tenant`, `--global`; without
    /// either, `global/` would be a silent default, so it is only chosen when asked for.
    pub fn namespace(&self) -> Namespace {
        match (&self.tenant, &self.team) {
            (Some(tenant), Some(team)) => Namespace::Team(tenant.clone(), team.clone()),
            (Some(tenant), None) => Namespace::Tenant(tenant.clone()),
            (None, _) => Namespace::Global,
        }
    }
}

/// A namespace and a secret name.
#[derive(Args, Debug)]
pub struct NameArgs {
    #[command(flatten)]
    /// The namespace.
    pub namespace: NamespaceArgs,
    /// The secret's name: 1-128 chars of [a-z0-9_.-], starting with a letter or digit.
    pub name: SecretName,
}

/// `tenantry token`.
#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Tenant the token is for; must be configured.
    #[arg(long)]
    pub tenant: TenantId,
    /// Environment; must be one of the tenant's.
    #[arg(long)]
    pub env: EnvId,
    /// Team; must be one of the tenant's. Without it the token covers the whole tenant.
    #[arg(long)]
    pub team: Option<TeamId>,
    /// Lifetime, e.g. 90s, 15m, 1h, 7d; at most `[auth] token_lifetime_max` (default 30 days).
    #[arg(long, default_value = "1h")]
    pub ttl: humantime::Duration,
    /// The `sub` claim.
    #[arg(long, default_value = DEFAULT_SUBJECT)]
    pub sub: String,
    /// The `scope` claim: space-separated words of messages, read, audit, connectors, admin,
    /// or connector alone (with --connector and --team) (e.g. `--scope admin` for DELETE /api/v1/tenants/{tenant}). Without it the token has
    /// the default rights, which exclude the admin routes.
    #[arg(long)]
    pub scope: Option<String>,
    /// The `connector` claim of a connector token (with `--scope connector` and `--team`): the
    /// token may then only post messages of that team and its registered connector's channel, and
    /// heartbeat (docs/http.md#connector-tokens); `POST /api/v1/connectors` mints the same.
    #[arg(long, value_parser = crate::tenancy::ConnectorId::parse)]
    pub connector: Option<crate::tenancy::ConnectorId>,
    /// Sign with the HS256 key of this kid (the secret global/signing_key.KID) and put the kid
    /// in the token's header; without it the default key signs and the header has no kid.
    #[arg(long)]
    pub kid: Option<String>,
}

/// Runs `tenantry secrets` on the store in `data_dir`, with keys from the environment.
pub fn secrets(
    args: &SecretsArgs,
    data_dir: &Path,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<(), SecretError> {
    let store = SecretStore::open(data_dir)?;
    run_secrets(args, &store, stdin, stdout)
}

/// Runs `tenantry secrets` on `store`.
pub fn run_secrets(
    args: &SecretsArgs,
    store: &SecretStore,
    stdin: &mut dyn Read,
    stdout: &mut dyn Write,
) -> Result<(), SecretError> {
    match &args.action {
        SecretsAction::Set(args) => {
            let ns = args.namespace.namespace();
            let value = read_value(stdin, &ns, &args.name)?;
            if ns == Namespace::Global
                && (args.name == SecretName::signing_key()
                    || crate::secrets::kids::kid_of(&args.name).is_some())
            {
                check_signing_key(&value, format!("secret global/{}", args.name))?;
            }
            store.set(&ns, &args.name, value.expose())
        }
        SecretsAction::Get(args) => {
            let ns = args.namespace.namespace();
            let value = store
                .get(&ns, &args.name)?
                .ok_or_else(|| SecretError::NotFound {
                    namespace: ns.clone(),
                    name: args.name.clone(),
                })?;
            write_out(stdout, value.expose())?;
            write_out(stdout, b"\n")
        }
        SecretsAction::List(args) => {
            for name in store.list(&args.namespace())? {
                writeln!(stdout, "{name}").map_err(stdout_error)?;
            }
            stdout.flush().map_err(stdout_error)
        }
        SecretsAction::Delete(args) => {
            let ns = args.namespace.namespace();
            if store.delete(&ns, &args.name)? {
                Ok(())
            } else {
                Err(SecretError::NotFound {
                    namespace: ns,
                    name: args.name.clone(),
                })
            }
        }
    }
}

/// Runs `tenantry token`: checks the request against `config`, signs with the key from env
/// `TENANTRY_SIGNING_KEY` else `global/signing_key` (with `--kid K`: `global/signing_key.K`, and
/// `kid: K` in the header), and prints only the token.
pub fn token(
    args: &TokenArgs,
    config: &Config,
    now: SystemTime,
    stdout: &mut dyn Write,
) -> Result<(), SecretError> {
    let request = TokenRequest {
        tenant: args.tenant.clone(),
        env: args.env.clone(),
        team: args.team.clone(),
        ttl: args.ttl.into(),
        subject: args.sub.clone(),
    };
    // Checked before the key is read, so a bad request never opens (or creates) the store.
    let mut claims = claims_for(config, &request, now)?;
    let mut connector_scope = false;
    if let Some(scope) = &args.scope {
        let scopes = crate::edge::auth::Scopes::parse(scope).map_err(SecretError::InvalidScope)?;
        connector_scope = scopes.is_connector();
        claims.scope = scopes.claim();
    }
    match (connector_scope, &args.connector) {
        (true, None) => return Err(SecretError::ConnectorToken("--connector is missing")),
        (false, Some(_)) => {
            return Err(SecretError::ConnectorToken(
                "--connector is only for --scope connector",
            ))
        }
        (true, Some(_)) if args.team.is_none() => {
            return Err(SecretError::ConnectorToken("--team is missing"))
        }
        _ => claims.connector = args.connector.as_ref().map(ToString::to_string),
    }
    // The env key needs no store, and a missing key creates none: no master key file is
    // created just to be ignored.
    let data_dir = &config.server().data_dir;
    let jwt = match &args.kid {
        None => mint(
            &SecretStore::resolve_signing_key(data_dir, KeySources::from_env()?)?,
            &claims,
            None,
        )?,
        Some(kid) => {
            // kid_key checks the kid before the store is opened.
            let key = crate::secrets::kids::kid_key(data_dir, kid, KeySources::from_env()?)?;
            mint(&key, &claims, Some(kid))?
        }
    };
    write_out(stdout, jwt.as_bytes())?;
    write_out(stdout, b"\n")
}

/// Runs `tenantry keygen`: prints a fresh signing key ([`generate_signing_key`]) and a newline,
/// so that `TENANTRY_SIGNING_KEY=$(tenantry keygen)` works as it is.
pub fn keygen(stdout: &mut dyn Write) -> Result<(), SecretError> {
    let key = generate_signing_key()?;
    write_out(stdout, key.expose())?;
    write_out(stdout, b"\n")
}

/// Reads a value from `stdin`, at most [`SECRET_VALUE_BYTES_MAX`] bytes after stripping one
/// trailing newline (`\n` or `\r\n`).
fn read_value(
    stdin: &mut dyn Read,
    ns: &Namespace,
    name: &SecretName,
) -> Result<SecretValue, SecretError> {
    // Room for the value, a CRLF and one byte to detect overflow; sized once so the buffer never
    // reallocates and leaves unwiped copies behind.
    const READ_BYTES_MAX: usize = SECRET_VALUE_BYTES_MAX + 3;
    let mut buf = SecretValue::new(Vec::with_capacity(READ_BYTES_MAX));
    let bytes = buf.bytes_mut();
    stdin
        .take(READ_BYTES_MAX as u64)
        .read_to_end(bytes)
        .map_err(|source| SecretError::Stdio {
            action: "read the value from stdin",
            source,
        })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() || bytes.len() > SECRET_VALUE_BYTES_MAX {
        return Err(SecretError::ValueSize {
            namespace: ns.clone(),
            name: name.clone(),
            bytes: bytes.len(),
        });
    }
    Ok(buf)
}

fn write_out(stdout: &mut dyn Write, bytes: &[u8]) -> Result<(), SecretError> {
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(stdout_error)
}

fn stdout_error(source: std::io::Error) -> SecretError {
    SecretError::Stdio {
        action: "write to stdout",
        source,
    }
}
