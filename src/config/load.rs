//! Loading: `config.toml` read (bounded) and parsed, the seed files it names merged in
//! (`merge`), dedicated mode and `exclude_tenants` applied, then every flow file loaded once and
//! each team resolved to its flow. The sections' values are checked in `validate`.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::cluster::{log_and_cluster, ClusterConfig, LogConfig};
use super::error::ConfigError;
use super::files::{read_bounded, resolve, CONFIG_FILE_BYTES_MAX};
use super::flow::Flow;
use super::merge::{known_list, FlowRef, Tree};
use super::nats::nats_config;
use super::raw::{BundleFile, ConfigFile, ServerSection, TeamFile, TenantFile};
use super::security;
use super::validate::{check_path, invalid, runtime_config, server_config};
use super::{
    AuthConfig, Config, Environment, LoadOptions, NatsConfig, RuntimeConfig, ServerConfig,
    TeamConfig, TenantConfig, SEED_FILES_MAX,
};
use crate::tenancy::{EnvId, TenantId};

impl Config {
    /// Loads and validates the config file at `path` and every file it names.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigError> {
        let text = read_bounded(path, CONFIG_FILE_BYTES_MAX)?;
        let sections = parse_sections(path, &text, opts)?;
        let (server, dedicated) = (&sections.server, sections.dedicated);
        let mut tree = sections.tree;
        add_seed_files(&mut tree, path, server)?;
        let excluded =
            select_tenants(&mut tree, path, dedicated.as_ref(), &server.exclude_tenants)?;
        let server_config = &sections.server_config;
        let quota = (
            server_config.rate_limit_per_s,
            server_config.rate_limit_burst,
        );
        let tenants = load_flows(tree, quota)?;

        Ok(Config {
            source: path.to_owned(),
            server: sections.server_config,
            nats: sections.nats,
            auth: sections.auth,
            runtime: sections.runtime,
            log: sections.log,
            cluster: sections.cluster,
            audit: sections.audit,
            connectors: sections.connectors,
            dedicated: dedicated.map(|(tenant, _)| tenant),
            excluded,
            tenants,
        })
    }
}

/// `config.toml`'s own sections, parsed and checked, before any file it names is read.
struct Sections {
    server: ServerSection,
    server_config: ServerConfig,
    nats: Option<NatsConfig>,
    auth: AuthConfig,
    runtime: RuntimeConfig,
    log: LogConfig,
    cluster: Option<ClusterConfig>,
    audit: super::audit::AuditConfig,
    connectors: super::connectors::ConnectorsConfig,
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
        log,
        cluster,
        tenants,
        audit,
        connectors,
    } = file;
    let server_config = server_config(path, &server)?;
    let nats = nats.map(|nats| nats_config(path, nats)).transpose()?;
    let auth = security::auth_config(path, auth)?;
    let runtime = runtime_config(path, runtime)?;
    let (log, cluster) = log_and_cluster(path, log, cluster, nats.as_ref())?;
    let audit = super::audit::audit_config(path, audit)?;
    let connectors = super::connectors::connectors_config(path, connectors)?;
    let dedicated = dedicated_tenant(opts, &server)?;
    let mut tree = Tree::default();
    tree.add_config_tenants(path, tenants)?;
    Ok(Sections {
        server,
        server_config,
        nats,
        auth,
        runtime,
        log,
        cluster,
        audit,
        connectors,
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
/// tenant's); `quota` is the server's rate and burst, for the tenants without their own.
fn load_flows(
    tree: Tree,
    quota: (NonZeroU32, Option<NonZeroU32>),
) -> Result<BTreeMap<TenantId, TenantConfig>, ConfigError> {
    let (default_rate, default_burst) = quota;
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
        let rate = draft.rate_limit_per_s.unwrap_or(default_rate);
        let tenant = TenantConfig {
            id: id.clone(),
            name: draft.name.unwrap_or_else(|| id.to_string()),
            settings: draft.settings.unwrap_or_default(),
            environments,
            flow: tenant_flow,
            rate_limit_per_s: rate,
            rate_limit_burst: draft.rate_limit_burst.or(default_burst).unwrap_or(rate),
            retention: draft.retention,
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
