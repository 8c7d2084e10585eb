//! `config.toml` and the seed files it names -> one validated [`Config`] (DESIGN §2, §3).
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
//! - Any rule broken is a [`ConfigError`] naming the file, the field and the fix; nothing is
//!   silently ignored (unknown fields are errors).

pub mod error;
pub mod exports;
pub mod files;
pub mod flow;
mod merge;
mod nats;
mod raw;
pub mod runtime;
pub mod security;
mod summary;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::tenancy::{ChannelId, EnvId, TeamId, TenantId};

use self::error::ConfigError;
use self::files::{read_bounded, resolve, CONFIG_FILE_BYTES_MAX};
use self::flow::Flow;
use self::merge::{known_list, FlowRef, Tree};
use self::nats::nats_config;
// The `[nats]` types live in their own file; they are part of this module's API.
pub use self::nats::{NatsAuth, NatsConfig, SecretSource, DEFAULT_SUBJECT_PREFIX};
use self::raw::{BundleFile, ConfigFile, RuntimeSection, ServerSection, TeamFile, TenantFile};

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
/// [`CONFIG_FILE_BYTES_MAX`] this bounds the bytes one load reads.
pub const SEED_FILES_MAX: usize = 1024;
/// Longest name, provider, settings key or NATS subject prefix, in bytes.
pub const NAME_BYTES_MAX: usize = 256;
/// Longest settings or channel config value, in bytes.
pub const VALUE_BYTES_MAX: usize = 4096;
/// `server.rate_limit_per_s` when absent: HTTP requests and NATS messages per second per tenant
/// (burst the same).
pub const DEFAULT_RATE_LIMIT_PER_S: NonZeroU32 = NonZeroU32::new(1000).expect("1000 > 0");
/// `server.http_body_bytes_max` when absent.
pub const DEFAULT_HTTP_BODY_BYTES_MAX: usize = 64 * 1024;
/// Smallest `server.http_body_bytes_max`: room for a message with its ids.
pub const HTTP_BODY_BYTES_MIN: usize = 1024;
/// Largest `server.http_body_bytes_max`; bodies are buffered whole, so this bounds the memory a
/// request can take.
pub const HTTP_BODY_BYTES_MAX: usize = 1024 * 1024;

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
    /// Largest HTTP request body, in bytes, within
    /// [`HTTP_BODY_BYTES_MIN`]`..=`[`HTTP_BODY_BYTES_MAX`].
    pub http_body_bytes_max: usize,
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
    /// HTTP requests and NATS messages per second this tenant may make together (burst the
    /// same): its own `rate_limit_per_s`, else `server.rate_limit_per_s`.
    pub rate_limit_per_s: NonZeroU32,
    /// The tenant's teams.
    pub teams: BTreeMap<TeamId, TeamConfig>,
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
    /// Loads and validates the config file at `path` and every file it names.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
        let text = read_bounded(path, CONFIG_FILE_BYTES_MAX)?;
        let Sections {
            server,
            server_config,
            nats,
            auth,
            runtime,
            dedicated,
            mut tree,
        } = parse_sections(path, &text, opts)?;
        add_seed_files(&mut tree, path, &server)?;
        let excluded =
            select_tenants(&mut tree, path, dedicated.as_ref(), &server.exclude_tenants)?;
        let tenants = load_flows(tree, server_config.rate_limit_per_s)?;

        Ok(Config {
            source: path.to_owned(),
            server: server_config,
            nats,
            auth,
            runtime,
            dedicated: dedicated.map(|(tenant, _)| tenant),
            excluded,
            tenants,
        })
    }

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

/// `config.toml`'s own sections, parsed and checked, before any file it names is read.
struct Sections {
    server: ServerSection,
    server_config: ServerConfig,
    nats: Option<NatsConfig>,
    auth: AuthConfig,
    runtime: RuntimeConfig,
    dedicated: Option<(TenantId, &'static str)>,
    tree: Tree,
}

/// Parses and checks the text of `config.toml` (read from `path`, named in errors). Reads no
/// file, so the fuzz target can feed it any text.
fn parse_sections(path: &Path, text: &str, opts: &LoadOptions) -> Result<Sections, ConfigError> {
    let file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Toml {
        path: path.to_owned(),
        source: Box::new(source),
    })?;
    let ConfigFile {
        server,
        nats,
        auth,
        runtime,
        tenants,
    } = file;
    let server_config = server_config(path, &server)?;
    let nats = nats.map(|nats| nats_config(path, nats)).transpose()?;
    let auth = security::auth_config(path, auth)?;
    let runtime = runtime_config(path, runtime)?;
    let dedicated = dedicated_tenant(opts, &server)?;
    let mut tree = Tree::default();
    tree.add_config_tenants(path, tenants)?;
    Ok(Sections {
        server,
        server_config,
        nats,
        auth,
        runtime,
        dedicated,
        tree,
    })
}

/// Checks `config.toml` text as [`Config::load`] does, up to (not including) reading the seed
/// and flow files it names. For `crate::fuzzing`.
pub(crate) fn check_config_text(path: &Path, text: &str) -> Result<(), ConfigError> {
    parse_sections(path, text, &LoadOptions::default()).map(drop)
}

/// Parses seed YAML text as a bundle, a tenant file and a team file (whichever it is), merging
/// each into an empty tenant tree as loading does. For `crate::fuzzing`; the results say which
/// shapes accepted the text.
pub(crate) fn check_seed_text(path: &Path, text: &str) -> [Result<(), ConfigError>; 3] {
    let yaml = |source| ConfigError::Yaml {
        path: path.to_owned(),
        source,
    };
    [
        serde_yaml_ng::from_str::<BundleFile>(text)
            .map_err(yaml)
            .and_then(|bundle| Tree::default().add_bundle(path, bundle)),
        serde_yaml_ng::from_str::<TenantFile>(text)
            .map_err(yaml)
            .and_then(|file| Tree::default().add_tenant_file(path, file)),
        serde_yaml_ng::from_str::<TeamFile>(text)
            .map_err(yaml)
            .and_then(|file| Tree::default().add_team_file(path, file)),
    ]
}

/// Flow files loaded so far, by resolved path, so each is read and validated once.
#[derive(Default)]
struct FlowCache {
    loaded: HashMap<PathBuf, Arc<Flow>>,
}

impl FlowCache {
    fn load(&mut self, flow: &FlowRef) -> Result<Arc<Flow>, ConfigError> {
        if let Some(loaded) = self.loaded.get(&flow.path) {
            return Ok(Arc::clone(loaded));
        }
        let loaded = Flow::load(&flow.path)
            .map(Arc::new)
            .map_err(|source| ConfigError::Flow {
                path: flow.origin.file.clone(),
                field: flow.origin.field.clone(),
                source: Box::new(source),
            })?;
        self.loaded.insert(flow.path.clone(), Arc::clone(&loaded));
        Ok(loaded)
    }
}

fn server_config(path: &Path, server: &ServerSection) -> Result<ServerConfig, ConfigError> {
    let data_dir = match &server.data_dir {
        Some(dir) => {
            check_path(path, "server.data_dir", dir)?;
            resolve(path, dir)
        }
        None => resolve(path, Path::new(DEFAULT_DATA_DIR)),
    };
    let rate_limit_per_s = match server.rate_limit_per_s {
        Some(rate) => check_rate(path, "server.rate_limit_per_s", rate)?,
        None => DEFAULT_RATE_LIMIT_PER_S,
    };
    let http_body_bytes_max = match server.http_body_bytes_max {
        None => DEFAULT_HTTP_BODY_BYTES_MAX,
        Some(raw) => usize::try_from(raw)
            .ok()
            .filter(|n| (HTTP_BODY_BYTES_MIN..=HTTP_BODY_BYTES_MAX).contains(n))
            .ok_or_else(|| {
                invalid(
                    path,
                    "server.http_body_bytes_max",
                    format!(
                        "{raw} is out of range: give {HTTP_BODY_BYTES_MIN}..={HTTP_BODY_BYTES_MAX} \
                         bytes, or leave it out for {DEFAULT_HTTP_BODY_BYTES_MAX}"
                    ),
                )
            })?,
    };
    Ok(ServerConfig {
        listen: server.listen.unwrap_or(DEFAULT_LISTEN),
        metrics_listen: security::metrics_listen(path, server.metrics_listen.as_deref())?,
        data_dir,
        rate_limit_per_s,
        http_body_bytes_max,
        exports: exports::export_limits(path, server)?,
    })
}

fn runtime_config(path: &Path, runtime: RuntimeSection) -> Result<RuntimeConfig, ConfigError> {
    let session_idle_timeout = match &runtime.session_idle_timeout {
        Some(raw) => runtime::parse_idle_timeout(path, raw)?,
        None => DEFAULT_SESSION_IDLE_TIMEOUT,
    };
    let snapshot_every = runtime.snapshot_every.unwrap_or(DEFAULT_SNAPSHOT_EVERY);
    if snapshot_every == 0 {
        return Err(invalid(
            path,
            "runtime.snapshot_every",
            "must be at least 1 (events between snapshots)".to_owned(),
        ));
    }
    let inflight_max = runtime.inflight_max.unwrap_or(DEFAULT_INFLIGHT_MAX);
    if inflight_max == 0 {
        return Err(invalid(
            path,
            "runtime.inflight_max",
            "must be at least 1 (messages in flight before new ones are refused)".to_owned(),
        ));
    }
    let inflight_per_tenant_max = runtime
        .inflight_per_tenant_max
        .map(|share| {
            if (1..=inflight_max).contains(&share) {
                Ok(share)
            } else {
                Err(invalid(
                    path,
                    "runtime.inflight_per_tenant_max",
                    format!(
                        "{share} is out of range: give 1..={inflight_max} (runtime.inflight_max), \
                         or leave it out for half of inflight_max"
                    ),
                ))
            }
        })
        .transpose()?;
    let (sessions_max, tenant_sessions_max) = runtime::session_limits(path, &runtime)?;
    let idempotency_window =
        runtime::idempotency_window(path, runtime.idempotency_window.as_deref())?;
    Ok(RuntimeConfig {
        session_idle_timeout,
        snapshot_every,
        inflight_max,
        inflight_per_tenant_max,
        sessions_max,
        tenant_sessions_max,
        idempotency_window,
    })
}

/// The tenant this instance is dedicated to, with the field that said so (for errors): the
/// override wins over `server.tenant`.
fn dedicated_tenant(
    opts: &LoadOptions,
    server: &ServerSection,
) -> Result<Option<(TenantId, &'static str)>, ConfigError> {
    match &opts.tenant_override {
        Some(raw) => {
            let tenant = TenantId::parse(raw)
                .map_err(|source| ConfigError::InvalidTenantOverride { source })?;
            Ok(Some((
                tenant,
                "TENANTRY_TENANT_ID (overrides server.tenant)",
            )))
        }
        None => Ok(server
            .tenant
            .clone()
            .map(|tenant| (tenant, "server.tenant"))),
    }
}

/// Merges the seed files named in `[server]` of `config` into `tree`, in precedence order.
fn add_seed_files(
    tree: &mut Tree,
    config: &Path,
    server: &ServerSection,
) -> Result<(), ConfigError> {
    let seed_files = server
        .tenant_files
        .len()
        .saturating_add(server.team_files.len());
    if seed_files > SEED_FILES_MAX {
        return Err(invalid(
            config,
            "server.tenant_files",
            format!(
                "{seed_files} tenant and team files in all, more than the limit of \
                 {SEED_FILES_MAX}; use the bundle"
            ),
        ));
    }
    for (index, named) in server.tenant_files.iter().enumerate() {
        let file = seed_path(config, &format!("server.tenant_files[{index}]"), named)?;
        tree.add_tenant_file(&file, read_yaml::<TenantFile>(&file)?)?;
    }
    if let Some(named) = &server.bundle {
        let file = seed_path(config, "server.bundle", named)?;
        tree.add_bundle(&file, read_yaml::<BundleFile>(&file)?)?;
    }
    // Last, so that a team file can join a tenant from any other source.
    for (index, named) in server.team_files.iter().enumerate() {
        let file = seed_path(config, &format!("server.team_files[{index}]"), named)?;
        tree.add_team_file(&file, read_yaml::<TeamFile>(&file)?)?;
    }
    Ok(())
}

/// Applies dedicated mode and `exclude_tenants` to `tree`; returns the excluded tenants.
fn select_tenants(
    tree: &mut Tree,
    config: &Path,
    dedicated: Option<&(TenantId, &str)>,
    exclude: &[TenantId],
) -> Result<Vec<TenantId>, ConfigError> {
    if tree.tenants.is_empty() {
        return Err(invalid(
            config,
            "tenants",
            "no tenants are configured; add a [tenants.<id>] table, server.bundle or \
             server.tenant_files"
                .to_owned(),
        ));
    }
    if let Some((tenant, field)) = dedicated {
        if !tree.tenants.contains_key(tenant) {
            return Err(invalid(
                config,
                field,
                format!(
                    "dedicated tenant `{tenant}` is not configured (configured: {}); fix the id \
                     or configure the tenant",
                    known_list(&tree.tenants)
                ),
            ));
        }
    }
    let mut excluded: Vec<TenantId> = Vec::with_capacity(exclude.len());
    for (index, tenant) in exclude.iter().enumerate() {
        let field = format!("server.exclude_tenants[{index}]");
        if !tree.tenants.contains_key(tenant) {
            // An excluded tenant that is not configured is most likely a typo, and a typo here
            // would let this instance serve a tenant it must not.
            return Err(invalid(
                config,
                &field,
                format!(
                    "tenant `{tenant}` is not configured (configured: {}); fix the typo or \
                     remove the entry",
                    known_list(&tree.tenants)
                ),
            ));
        }
        if let Some((_, by)) = dedicated.filter(|(only, _)| only == tenant) {
            return Err(invalid(
                config,
                &field,
                format!(
                    "excludes `{tenant}`, the tenant this instance is dedicated to (by {by}); an \
                     instance cannot be dedicated to a tenant it must not serve"
                ),
            ));
        }
        if !excluded.contains(tenant) {
            excluded.push(tenant.clone());
        }
    }
    // Dropped before flows load: an instance needs only the flow files of its own tenants.
    tree.tenants
        .retain(|id, _| dedicated.is_none_or(|(only, _)| only == id) && !excluded.contains(id));
    if tree.tenants.is_empty() {
        return Err(invalid(
            config,
            "server.exclude_tenants",
            "excludes every configured tenant, leaving none to serve".to_owned(),
        ));
    }
    Ok(excluded)
}

/// Loads every flow of `tree` once and resolves each team to its flow (its own, else its
/// tenant's); a tenant without its own rate limit gets `default_rate`.
fn load_flows(
    tree: Tree,
    default_rate: NonZeroU32,
) -> Result<BTreeMap<TenantId, TenantConfig>, ConfigError> {
    let mut flows = FlowCache::default();
    let mut tenants = BTreeMap::new();
    for (id, draft) in tree.tenants {
        let tenant_flow = draft
            .flow
            .as_ref()
            .map(|flow| flows.load(flow))
            .transpose()?;
        let mut teams = BTreeMap::new();
        for (team_id, team) in draft.teams {
            let flow = match (&team.flow, &tenant_flow) {
                (Some(own), _) => flows.load(own)?,
                (None, Some(inherited)) => Arc::clone(inherited),
                (None, None) => {
                    return Err(ConfigError::MissingFlow {
                        path: team.origin.file,
                        tenant: id,
                        team: team_id,
                    })
                }
            };
            let name = team.name.unwrap_or_else(|| team_id.to_string());
            let config = TeamConfig {
                id: team_id.clone(),
                name,
                flow,
                channels: team.channels,
            };
            teams.insert(team_id, config);
        }
        let environments = draft.environments.unwrap_or_else(|| {
            vec![Environment {
                id: EnvId::default_env(),
                name: None,
            }]
        });
        let tenant = TenantConfig {
            id: id.clone(),
            name: draft.name.unwrap_or_else(|| id.to_string()),
            settings: draft.settings.unwrap_or_default(),
            environments,
            flow: tenant_flow,
            rate_limit_per_s: draft.rate_limit_per_s.unwrap_or(default_rate),
            teams,
        };
        tenants.insert(id, tenant);
    }
    Ok(tenants)
}

/// Reads and parses a YAML seed file.
fn read_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = read_bounded(file, CONFIG_FILE_BYTES_MAX)?;
    serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Yaml {
        path: file.to_owned(),
        source,
    })
}

/// Resolves a seed file named by `field` of the config file `config`.
fn seed_path(config: &Path, field: &str, named: &Path) -> Result<PathBuf, ConfigError> {
    check_path(config, field, named)?;
    Ok(resolve(config, named))
}

/// Builds a [`ConfigError::Invalid`].
fn invalid(path: &Path, field: &str, problem: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        field: field.to_owned(),
        problem,
    }
}

/// A name-like string (display name, provider, URL, settings key): not blank, at most
/// [`NAME_BYTES_MAX`] bytes.
fn check_name(path: &Path, field: &str, value: String) -> Result<String, ConfigError> {
    if value.trim().is_empty() {
        return Err(invalid(path, field, "must not be empty".to_owned()));
    }
    if value.len() > NAME_BYTES_MAX {
        return Err(invalid(
            path,
            field,
            format!("must be at most {NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(value)
}

/// A free-form value: at most [`VALUE_BYTES_MAX`] bytes.
fn check_value(path: &Path, field: &str, value: String) -> Result<String, ConfigError> {
    if value.len() > VALUE_BYTES_MAX {
        return Err(invalid(
            path,
            field,
            format!("must be at most {VALUE_BYTES_MAX} bytes"),
        ));
    }
    Ok(value)
}

/// A rate limit (requests per second): at least 1.
fn check_rate(path: &Path, field: &str, rate: u32) -> Result<NonZeroU32, ConfigError> {
    NonZeroU32::new(rate).ok_or_else(|| {
        invalid(
            path,
            field,
            "must be at least 1 (requests per second; burst the same)".to_owned(),
        )
    })
}

/// A path named in a file: not empty (which would silently mean "the directory of this file").
fn check_path(path: &Path, field: &str, named: &Path) -> Result<(), ConfigError> {
    if named.as_os_str().is_empty() {
        return Err(invalid(
            path,
            field,
            "the path is empty; give a path".to_owned(),
        ));
    }
    Ok(())
}
