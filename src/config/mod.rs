//! `config.toml` and the seed files it names -> one validated [`Config`] (docs/config.md).
//!
//! Loading reads `config.toml`, merges the tenants of the seed bundle, tenant files and team
//! files into its `[tenants]` (see `merge` for precedence), applies dedicated mode and
//! `exclude_tenants`, then loads each flow file once and resolves every team to its flow.
//!
//! Invariants of a loaded [`Config`]:
//! - Every id is a validated newtype; every relative path has been resolved against the directory
//!   of the file that named it.
//! - In dedicated mode it holds exactly the dedicated tenant; it never holds an excluded tenant;
//!   it holds at least one tenant.
//! - Every team has a flow (its own, else its tenant's), validated per `flow`; a flow file named
//!   several times is loaded once and shared.
//! - Every file read was bounded by a byte limit before parsing.
//! - With `log.backend = "jetstream"` it has `[nats]` and `[cluster]` (so a node name).
//! - Any rule broken is a [`ConfigError`] naming the file, the field and the fix; nothing is
//!   silently ignored (unknown fields are errors).
//!
//! Files: this one (the model: [`Config`] and its parts, defaults and limits), `load` (reading
//! the files and putting a `Config` together), `validate` (checks of single values), `raw` (the
//! files' shapes as parsed), `merge` (the seed files' precedence), one file per section with
//! rules of its own (`nats`, `runtime`, `security`, `exports`, `audit`, `connectors`; `cluster`
//! for `[log]` and `[cluster]`), `flow` (flow files), `summary` (`check-config`'s output).

pub mod audit;
pub mod cluster;
pub mod connectors;
pub mod error;
pub mod exports;
pub mod files;
pub mod flow;
pub(crate) mod load;
mod merge;
mod nats;
mod raw;
pub mod retention;
pub mod runtime;
pub mod security;
mod summary;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::tenancy::{ChannelId, EnvId, TeamId, TenantId};

use self::error::ConfigError;
use self::flow::Flow;
// The `[log]` and `[cluster]` types live in their own file; they are part of this module's API.
pub use self::cluster::{ClusterConfig, LogBackend, LogConfig};
// The `[nats]` types live in their own file; they are part of this module's API.
pub use self::nats::{NatsAuth, NatsConfig, SecretSource, DEFAULT_SUBJECT_PREFIX};

/// `server.listen` when absent.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// `server.data_dir` when absent (resolved against the config file's directory).
pub const DEFAULT_DATA_DIR: &str = "./data";
/// `auth.issuer` when absent.
pub const DEFAULT_ISSUER: &str = "tenantry";
/// `auth.audience` when absent.
pub const DEFAULT_AUDIENCE: &str = "tenantry-api";
/// `runtime.session_idle_timeout` when absent.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Longest `runtime.session_idle_timeout`: a day-scale bound that keeps timer arithmetic far
/// from overflow while allowing any realistic setting.
pub const SESSION_IDLE_TIMEOUT_MAX: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// `runtime.snapshot_every` when absent.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 100;
/// `runtime.inflight_max` when absent: about a tenth of a second of work at this machine's
/// capacity (~10k acks/s), so an accepted message waits ~100–150 ms at worst (measured under 3×
/// overload) and the rest is refused at once; 256 already refused paced neighbours at 30% load.
pub const DEFAULT_INFLIGHT_MAX: usize = 1024;
/// Most seed files (`tenant_files` plus `team_files`) one config may name; with
/// [`files::CONFIG_FILE_BYTES_MAX`] this bounds the bytes one load reads.
pub const SEED_FILES_MAX: usize = 1024;
/// Longest name, provider, settings key or NATS subject prefix, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// Longest settings or channel config value, in bytes.
pub const VALUE_BYTES_MAX: usize = 4096;
/// `server.rate_limit_per_s` when absent: HTTP requests and NATS messages per second per tenant
/// (burst the same unless `rate_limit_burst` says otherwise).
pub const DEFAULT_RATE_LIMIT_PER_S: NonZeroU32 = NonZeroU32::new(1000).expect("1000 > 0");
/// `server.http_body_bytes_max` when absent.
pub const DEFAULT_HTTP_BODY_BYTES_MAX: usize = 64 * 1024;
/// Smallest `server.http_body_bytes_max`: room for a message with its ids.
pub const HTTP_BODY_BYTES_MIN: usize = 1024;
/// Largest `server.http_body_bytes_max`; bodies are buffered whole, so this bounds the memory a
/// request can take.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Largest `server.http_workers`.
pub const HTTP_WORKERS_MAX: usize = 256;

/// How to load, beyond the file itself.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Dedicates the instance to this tenant, overriding `server.tenant`. The binary passes env
    /// `TENANTRY_TENANT_ID` here; it is validated as a tenant id (an empty string is invalid).
    pub tenant_override: Option<String>,
}

/// A validated configuration. See the module docs for its invariants.
#[derive(Clone, Debug)]
pub struct Config {
    source: PathBuf,
    server: ServerConfig,
    nats: Option<NatsConfig>,
    auth: AuthConfig,
    runtime: RuntimeConfig,
    log: LogConfig,
    cluster: Option<ClusterConfig>,
    audit: audit::AuditConfig,
    connectors: connectors::ConnectorsConfig,
    dedicated: Option<TenantId>,
    excluded: Vec<TenantId>,
    tenants: BTreeMap<TenantId, TenantConfig>,
}

/// `[server]`.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Where `/metrics` is served, apart from the API; `None` when `"off"`.
    pub metrics_listen: Option<SocketAddr>,
    /// Data directory, resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// HTTP requests and NATS messages per second a tenant may make together (burst the same),
    /// unless the tenant sets its own [`TenantConfig::rate_limit_per_s`].
    pub rate_limit_per_s: NonZeroU32,
    /// Requests a tenant may make at once above its rate (its quota's bucket), unless the
    /// tenant sets its own [`TenantConfig::rate_limit_burst`]; `None`: each tenant's rate.
    pub rate_limit_burst: Option<NonZeroU32>,
    /// Largest HTTP request body, in bytes, within
    /// [`HTTP_BODY_BYTES_MIN`]`..=`[`HTTP_BODY_BYTES_MAX`].
    pub http_body_bytes_max: usize,
    /// HTTP worker threads, `1..=`[`HTTP_WORKERS_MAX`]; when absent, the machine's cores
    /// (`std::thread::available_parallelism`), as many as the runtime's arbiters.
    pub http_workers: usize,
    /// Bounds on concurrent audit exports over HTTP.
    pub exports: exports::ExportLimits,
}

/// `[auth]`: what tokens must say.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Longest token lifetime accepted (`exp` − `iat`) and minted.
    pub token_lifetime_max: Duration,
    /// `auth.jwks`: the JWK Set file of an outside identity provider, resolved against the
    /// config file's directory; checked at load (`edge::auth::jwks`).
    pub jwks: Option<std::path::PathBuf>,
}

/// `[runtime]`.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Idle time after which a session actor is snapshotted and stopped; `> 0`.
    pub session_idle_timeout: Duration,
    /// Events between snapshots; `>= 1`.
    pub snapshot_every: u64,
    /// Messages in flight over all tenants before new ones are refused (`Overloaded`); `>= 1`.
    pub inflight_max: usize,
    /// `runtime.inflight_per_tenant_max` as given, `1..=inflight_max`; `None` for the default
    /// (see [`Config::inflight_per_tenant_max`]).
    pub inflight_per_tenant_max: Option<usize>,
    /// `runtime.running_max` as given, `1..=inflight_max`; `None` for the default (see
    /// [`Config::running_max`]).
    pub running_max: Option<usize>,
    /// Live session actors over all tenants; past it idle ones are passivated early, else new
    /// sessions are refused (`SessionsFull`); `>= 1`.
    pub sessions_max: usize,
    /// Live session actors of one tenant (its share of `sessions_max`); `1..=sessions_max`.
    pub tenant_sessions_max: usize,
    /// How long a message id's first answer is kept for retries.
    pub idempotency_window: Duration,
}

/// One tenant, merged from all sources.
#[derive(Clone, Debug)]
pub struct TenantConfig {
    /// The tenant's id.
    pub id: TenantId,
    /// Display name; the id when no source names it.
    pub name: String,
    /// Free-form settings seen by templates as `tenant.settings.*`.
    pub settings: BTreeMap<String, String>,
    /// The tenant's environments, in the order given; `[default]` when none are given. Never
    /// empty, no repeats.
    pub environments: Vec<Environment>,
    /// Default flow of the tenant's teams, when set.
    pub flow: Option<Arc<Flow>>,
    /// HTTP requests and NATS messages per second this tenant may make together: its own
    /// `rate_limit_per_s`, else `server.rate_limit_per_s`.
    pub rate_limit_per_s: NonZeroU32,
    /// Of those, how many it may make at once (its quota's bucket): its own
    /// `rate_limit_burst`, else `server.rate_limit_burst`, else its `rate_limit_per_s`.
    pub rate_limit_burst: NonZeroU32,
    /// The tenant's teams.
    pub teams: BTreeMap<TeamId, TeamConfig>,
    /// `retention`: events older than this are trimmed from the log in the background; `None`
    /// keeps them for ever.
    pub retention: Option<std::time::Duration>,
}

/// An environment of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    /// The env's id.
    pub id: EnvId,
    /// Display name, when a tenant file gives one.
    pub name: Option<String>,
}

/// One team of a tenant.
#[derive(Clone, Debug)]
pub struct TeamConfig {
    /// The team's id.
    pub id: TeamId,
    /// Display name; the id when no source names it.
    pub name: String,
    /// The flow that answers the team's messages: its own, else its tenant's.
    pub flow: Arc<Flow>,
    /// The team's channels.
    pub channels: BTreeMap<ChannelId, ChannelConfig>,
}

/// One channel of a team.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// The channel's id.
    pub id: ChannelId,
    /// The messaging provider, e.g. `messaging-slack`.
    pub provider: String,
    /// Provider settings (workspace id, chat id, ...).
    pub config: BTreeMap<String, String>,
}

impl Config {
    /// The config file, as given to [`Config::load`].
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// `[server]`.
    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    /// `[nats]`, when configured.
    pub fn nats(&self) -> Option<&NatsConfig> {
        self.nats.as_ref()
    }

    /// `[auth]`, with defaults applied.
    pub fn auth(&self) -> &AuthConfig {
        &self.auth
    }

    /// `[runtime]`, with defaults applied.
    pub fn runtime(&self) -> &RuntimeConfig {
        &self.runtime
    }

    /// `[log]`, with defaults applied: which backend holds the event log.
    pub fn log(&self) -> &LogConfig {
        &self.log
    }

    /// `[audit]`, with defaults applied: how often `serve` signs chain heads.
    pub fn audit(&self) -> &audit::AuditConfig {
        &self.audit
    }

    /// `[connectors]`, with defaults applied: the connector registry's heartbeat interval.
    pub fn connectors(&self) -> &connectors::ConnectorsConfig {
        &self.connectors
    }

    /// `[cluster]`, when configured; always present with `log.backend = "jetstream"`.
    pub fn cluster(&self) -> Option<&ClusterConfig> {
        self.cluster.as_ref()
    }

    /// Messages one tenant may have in flight: `runtime.inflight_per_tenant_max`, else half of
    /// `runtime.inflight_max` (rounded up), so a tenant that floods leaves the other half to
    /// everyone else; all of it when the instance serves one tenant (nobody to share with).
    pub fn inflight_per_tenant_max(&self) -> usize {
        let max = self.runtime.inflight_max;
        match self.runtime.inflight_per_tenant_max {
            Some(share) => share,
            None if self.tenants.len() <= 1 => max,
            None => max.div_ceil(2),
        }
    }

    /// Admitted messages running at once (in the actors and the log), shared evenly by the
    /// tenants with messages running or waiting: `runtime.running_max`, else a quarter of
    /// `runtime.inflight_max` (rounded up), enough for the log's group commits while a burst
    /// of one tenant waits in its own lane rather than ahead of the others' messages.
    pub fn running_max(&self) -> usize {
        self.runtime
            .running_max
            .unwrap_or(self.runtime.inflight_max.div_ceil(4))
    }

    /// The tenant this instance is dedicated to (`TENANTRY_TENANT_ID`, else `server.tenant`);
    /// `None` for a shared instance.
    pub fn dedicated(&self) -> Option<&TenantId> {
        self.dedicated.as_ref()
    }

    /// Tenants this instance must not serve (`server.exclude_tenants`), in the order given.
    pub fn excluded(&self) -> &[TenantId] {
        &self.excluded
    }

    /// The tenants this instance serves.
    pub fn tenants(&self) -> &BTreeMap<TenantId, TenantConfig> {
        &self.tenants
    }

    /// One tenant this instance serves.
    pub fn tenant(&self, tenant: &TenantId) -> Option<&TenantConfig> {
        self.tenants.get(tenant)
    }

    /// The flow of `team` of `tenant`, when this instance serves that team.
    pub fn flow_for(&self, tenant: &TenantId, team: &TeamId) -> Option<&Arc<Flow>> {
        self.tenants
            .get(tenant)?
            .teams
            .get(team)
            .map(|team| &team.flow)
    }
}

impl TenantConfig {
    /// The environment `env` of this tenant, if it has one.
    pub fn env(&self, env: &EnvId) -> Option<&Environment> {
        self.environments
            .iter()
            .find(|candidate| &candidate.id == env)
    }
}
