//! `ConfigError`: why a configuration cannot be used.
//!
//! Invariant: every message names the file (as given or resolved), the field (a dotted path such
//! as `tenants.acme.teams.support.flow`, or the parser's own line and column) and what is wrong or
//! how to fix it. All of these are the operator's to fix: the server refuses to start, and
//! retrying without editing the config will not help.

use std::path::PathBuf;

use crate::tenancy::{InvalidId, TeamId, TenantId};

use super::files::ReadError;
use super::flow::FlowError;

/// A configuration that cannot be used. Show the message to the operator and exit non-zero.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A config or seed file is missing, unreadable or too large. Fix the path or the file.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// `config.toml` is not TOML of the expected shape: a syntax error, an unknown field (typo),
    /// a wrong type or an invalid id. The parser's message has the line and column.
    #[error("{}: {source}", path.display())]
    Toml {
        /// The config file as given.
        path: PathBuf,
        /// Boxed because the parser's error is large and errors travel through `Result`s.
        source: Box<toml::de::Error>,
    },
    /// A YAML seed file (bundle, tenant file, team file) is not of the expected shape. The
    /// parser's message has the field, line and column.
    #[error("{}: {source}", path.display())]
    Yaml {
        /// The seed file as resolved.
        path: PathBuf,
        /// The parser's error, with field, line and column.
        source: serde_yaml_ng::Error,
    },
    /// A value parsed but breaks a rule (empty name, zero timeout, unknown tenant, ...).
    #[error("{}: {field}: {problem}", path.display())]
    Invalid {
        /// The file that holds the value.
        path: PathBuf,
        /// Dotted path of the field within that file.
        field: String,
        /// What is wrong and how to fix it.
        problem: String,
    },
    /// The same team is defined in two places. Keep one definition.
    #[error(
        "team `{team}` of tenant `{tenant}` is defined twice: in {first} and in {second}; \
         keep one definition"
    )]
    DuplicateTeam {
        /// The team's tenant.
        tenant: TenantId,
        /// The team defined twice.
        team: TeamId,
        /// First definition: file and field.
        first: String,
        /// Second definition: file and field.
        second: String,
    },
    /// The same tenant is defined by two tenant files. Keep one file per tenant.
    #[error("tenant `{tenant}` is defined by two tenant files: {} and {}; keep one", first.display(), second.display())]
    DuplicateTenantFile {
        /// The tenant defined twice.
        tenant: TenantId,
        /// The first tenant file.
        first: PathBuf,
        /// The second tenant file.
        second: PathBuf,
    },
    /// A team has no flow of its own and its tenant has none either. Set one of them.
    #[error(
        "{}: tenants.{tenant}.teams.{team}.flow: team `{team}` has no flow and tenant `{tenant}` \
         has no default flow; set the team's `flow` or the tenant's `flow` (tenants.{tenant}.flow)",
        path.display()
    )]
    MissingFlow {
        /// The file that defines the team.
        path: PathBuf,
        /// The team's tenant.
        tenant: TenantId,
        /// The team without a flow.
        team: TeamId,
    },
    /// A flow file named by the config cannot be used; the inner error names the flow file, the
    /// node and the fix.
    #[error("{}: {field}: {source}", path.display())]
    Flow {
        /// The file that names the flow.
        path: PathBuf,
        /// The field that names the flow, e.g. `tenants.acme.teams.support.flow`.
        field: String,
        /// Boxed to keep `ConfigError` small.
        source: Box<FlowError>,
    },
    /// The tenant override (env `TENANTRY_TENANT_ID`) is not a valid tenant id.
    #[error("TENANTRY_TENANT_ID (overrides server.tenant): {source}")]
    InvalidTenantOverride {
        /// Which rule the value broke.
        source: InvalidId,
    },
}
