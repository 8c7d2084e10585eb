//! The on-disk shapes of `config.toml` and the YAML seed files (bundle, tenant file, team file),
//! exactly as users write them.
//!
//! Invariants: every struct denies unknown fields, so a typo is an error rather than a silently
//! ignored setting; tenant, env, team and channel ids are validated by their newtypes while
//! parsing, so the parser's error carries the location of a bad id. Nothing here checks rules
//! across fields or files: that is `merge` and `Config::load`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::tenancy::{ChannelId, EnvId, TeamId, TenantId};

/// `config.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub nats: Option<NatsSection>,
    #[serde(default)]
    pub auth: AuthSection,
    #[serde(default)]
    pub runtime: RuntimeSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub cluster: Option<ClusterSection>,
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, TenantSection>,
    #[serde(default)]
    pub audit: super::audit::AuditSection,
    #[serde(default)]
    pub connectors: super::connectors::ConnectorsSection,
}

/// `[server]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSection {
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// An address or `"off"`; parsed in `Config::load` to name the field on error.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub tenant: Option<TenantId>,
    #[serde(default)]
    pub exclude_tenants: Vec<TenantId>,
    #[serde(default)]
    pub bundle: Option<PathBuf>,
    #[serde(default)]
    pub tenant_files: Vec<PathBuf>,
    #[serde(default)]
    pub team_files: Vec<PathBuf>,
    /// Requests per second each tenant may make over HTTP and NATS (burst the same); checked > 0
    /// in `Config::load`.
    #[serde(default)]
    pub rate_limit_per_s: Option<u32>,
    /// Requests each tenant may make at once above its rate (the quota's bucket); its
    /// `rate_limit_per_s` when absent; checked > 0 in `Config::load`.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// Largest HTTP request body, in bytes; checked against its bounds in `Config::load`.
    #[serde(default)]
    pub http_body_bytes_max: Option<u64>,
    /// HTTP worker threads; checked against its bounds in `Config::load`.
    #[serde(default)]
    pub http_workers: Option<i64>,
    /// Audit exports at once over all tenants; checked in `config::exports`.
    #[serde(default)]
    pub exports_max: Option<usize>,
    /// Audit exports at once per tenant; checked in `config::exports`.
    #[serde(default)]
    pub exports_per_tenant_max: Option<usize>,
    /// A humantime duration such as `30s`; checked in `config::exports`.
    #[serde(default)]
    pub export_write_timeout: Option<String>,
}

/// `[nats]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NatsSection {
    pub url: String,
    #[serde(default)]
    pub subject_prefix: Option<String>,
    /// With `password`: user and password authentication.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<RawSecret>,
    #[serde(default)]
    pub token: Option<RawSecret>,
    /// An NKey seed (`SU...`); the server knows the public key.
    #[serde(default)]
    pub nkey_seed: Option<RawSecret>,
    /// A `.creds` file (JWT and NKey seed), resolved against the config file's directory.
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
}

/// A secret value in the config: inline text, or where to read it when connecting. Which of
/// `env` / `secret` is set (exactly one) is checked in `Config::load`.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "a string, { env = \"VARIABLE\" } or { secret = \"name in the global secret store\" }"
)]
pub(super) enum RawSecret {
    Inline(String),
    From(RawSecretFrom),
}

/// `{ env = "VARIABLE" }` or `{ secret = "name" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecretFrom {
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

/// `[auth]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthSection {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    /// A humantime duration such as `30d`; parsed in `Config::load` to name the field on error.
    #[serde(default)]
    pub token_lifetime_max: Option<String>,
    /// Path of a JWK Set file, relative to the config file.
    #[serde(default)]
    pub jwks: Option<String>,
}

/// `[runtime]`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuntimeSection {
    /// A humantime duration such as `10m`; parsed in `Config::load` to name the field on error.
    #[serde(default)]
    pub session_idle_timeout: Option<String>,
    #[serde(default)]
    pub snapshot_every: Option<u64>,
    #[serde(default)]
    pub inflight_max: Option<usize>,
    /// Checked `1..=inflight_max` in `Config::load`.
    #[serde(default)]
    pub inflight_per_tenant_max: Option<usize>,
    /// Checked `1..=inflight_max` in `Config::load`.
    #[serde(default)]
    pub running_max: Option<usize>,
    #[serde(default)]
    pub sessions_max: Option<usize>,
    #[serde(default)]
    pub tenant_sessions_max: Option<usize>,
    /// A humantime duration such as `7days`.
    #[serde(default)]
    pub idempotency_window: Option<String>,
}

/// `[log]`: which event log backend, and the JetStream stream's shape. Values are checked in
/// `config::cluster`, so that each error names its field.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogSection {
    /// `"sled"` or `"jetstream"`.
    #[serde(default)]
    pub backend: Option<String>,
    #[serde(default)]
    pub stream: Option<String>,
    /// Any TOML integer, so that a negative or huge value gets our error naming the field.
    #[serde(default)]
    pub replicas: Option<i64>,
    /// Seal new events' personal fields (crypto-shredding); sled backend only.
    #[serde(default)]
    pub seal: Option<bool>,
}

/// `[cluster]`: this node's identity among the nodes sharing one JetStream log.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterSection {
    /// Required; optional here so that its absence is our error naming `cluster.node`.
    #[serde(default)]
    pub node: Option<String>,
    /// A humantime duration such as `5s`.
    #[serde(default)]
    pub lease_ttl: Option<String>,
}

/// `[tenants.<id>]` in `config.toml`, and `tenants: <id>:` in the bundle.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantSection {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub environments: Option<Vec<EnvId>>,
    #[serde(default)]
    pub flow: Option<PathBuf>,
    /// Overrides `server.rate_limit_per_s` for this tenant; checked > 0 in `merge`.
    #[serde(default)]
    pub rate_limit_per_s: Option<u32>,
    /// Overrides `server.rate_limit_burst` for this tenant; checked > 0 in `merge`.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// A humantime duration such as `90d`; checked in `config::retention`.
    #[serde(default)]
    pub retention: Option<String>,
    #[serde(default)]
    pub teams: BTreeMap<TeamId, TeamSection>,
}

/// `[tenants.<id>.teams.<id>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamSection {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub flow: Option<PathBuf>,
    #[serde(default)]
    pub channels: BTreeMap<ChannelId, ChannelSection>,
}

/// `[tenants.<id>.teams.<id>.channels.<id>]`, and `channels: <id>:` in a team file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChannelSection {
    pub provider: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// The seed bundle: `tenants: {<id>: ...}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BundleFile {
    #[serde(default)]
    pub tenants: BTreeMap<TenantId, TenantSection>,
}

/// A seed tenant file: `tenant: {id, name, settings}` and `environments: [{id, name}]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantFile {
    pub tenant: TenantHeader,
    #[serde(default)]
    pub environments: Option<Vec<EnvEntry>>,
}

/// `tenant:` of a tenant file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantHeader {
    pub id: TenantId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub flow: Option<PathBuf>,
}

/// One entry of `environments:` in a tenant file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnvEntry {
    pub id: EnvId,
    #[serde(default)]
    pub name: Option<String>,
}

/// A seed team file: `team: {id, name, tenant_id}` and `channels: {<id>: ...}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamFile {
    pub team: TeamHeader,
    #[serde(default)]
    pub channels: BTreeMap<ChannelId, ChannelSection>,
}

/// `team:` of a team file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TeamHeader {
    pub id: TeamId,
    #[serde(default)]
    pub name: Option<String>,
    pub tenant_id: TenantId,
    #[serde(default)]
    pub flow: Option<PathBuf>,
}
