//! `[log]` and `[cluster]`: which backend holds the event log (`sled`, embedded in this process,
//! the default; or `jetstream`, a replicated NATS JetStream stream shared by the nodes of a
//! cluster), the stream's name and replica count, and this node's name and lease time.
//!
//! Invariants of a loaded [`LogConfig`] and [`ClusterConfig`]:
//! - `log.stream` is a usable JetStream stream name: 1..=[`LOG_STREAM_CHARS_MAX`] characters of
//!   `[A-Za-z0-9_-]` (no dots, whitespace or wildcards);
//! - `log.replicas` is within 1..=[`LOG_REPLICAS_MAX`];
//! - with `backend = "jetstream"` there is a `[nats]` section (its servers hold the stream);
//!   with a `[cluster]` section the node is one of several sharing the stream (leases decide
//!   who appends for a tenant; they seal with the cluster's key stream given the cluster key),
//!   without one it is the stream's single writer (it appends for every tenant, and seals
//!   personal fields with its data dir's keys: `crate::cluster`);
//! - `cluster.node` is a subject-safe token: 1..=[`CLUSTER_NODE_CHARS_MAX`] characters of
//!   `[A-Za-z0-9_-]`, so it can name a NATS subject token and a KV key as it is;
//! - `cluster.lease_ttl` is within [`LEASE_TTL_MIN`]..=[`LEASE_TTL_MAX`].
//!
//! `[cluster]` with the sled backend is accepted and kept (a node can be switched to JetStream by
//! changing one line); `stream` and `replicas` are checked whatever the backend, for the same
//! reason.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::error::ConfigError;
use super::raw::{ClusterSection, LogSection};
use super::validate::{check_count, invalid, parse_duration};
use super::NatsConfig;

/// `log.stream` when absent.
pub const DEFAULT_LOG_STREAM: &str = "TENANTRY_LOG";
/// Longest `log.stream`, in characters (all ASCII).
pub const LOG_STREAM_CHARS_MAX: usize = 32;
/// `log.replicas` when absent.
pub const DEFAULT_LOG_REPLICAS: usize = 1;
/// Most `log.replicas`: JetStream's own limit on a stream's replicas.
pub const LOG_REPLICAS_MAX: usize = 5;
/// Longest `cluster.node`, in characters (all ASCII).
pub const CLUSTER_NODE_CHARS_MAX: usize = 64;
/// `cluster.lease_ttl` when absent: how long a node owns its tenants without renewing.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Shortest `cluster.lease_ttl`: a node must renew its lease well within it, which a
/// sub-second lease would turn into a race against its own scheduling.
pub const LEASE_TTL_MIN: Duration = Duration::from_secs(1);
/// Longest `cluster.lease_ttl`: a dead node's tenants wait this long for a new owner.
pub const LEASE_TTL_MAX: Duration = Duration::from_secs(5 * 60);

/// Where the event log lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogBackend {
    /// sled in `{data_dir}/log`, on this machine only (`"sled"`, the default).
    #[default]
    Sled,
    /// A NATS JetStream stream on the servers of `[nats]`, shared by the nodes of a cluster
    /// (`"jetstream"`).
    JetStream,
}

impl LogBackend {
    /// The name `log.backend` gives this backend.
    pub fn as_str(self) -> &'static str {
        match self {
            LogBackend::Sled => "sled",
            LogBackend::JetStream => "jetstream",
        }
    }
}

impl fmt::Display for LogBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[log]`, with defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// Where the event log lives.
    pub backend: LogBackend,
    /// The JetStream stream's name (used by the `jetstream` backend).
    pub stream: String,
    /// The JetStream stream's replicas, 1..=[`LOG_REPLICAS_MAX`] (used by the `jetstream`
    /// backend).
    pub replicas: usize,
    /// Seal new events' personal fields under per-session data keys so that `tenantry erase`
    /// can destroy them (`events::keyring`). Default true; a `[cluster]` node writes unsealed
    /// events whatever this says unless it has the cluster key (`crate::cluster::key`).
    pub seal: bool,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            backend: LogBackend::default(),
            stream: DEFAULT_LOG_STREAM.to_owned(),
            replicas: DEFAULT_LOG_REPLICAS,
            seal: true,
        }
    }
}

/// `[cluster]`: this node among the nodes sharing one JetStream log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name, unique among the nodes: a subject-safe token.
    pub node: String,
    /// How long this node owns its tenants without renewing its lease.
    pub lease_ttl: Duration,
}

/// `[log]` and `[cluster]`, checked against each other and against `nats` (the `[nats]`
/// section, when there is one).
pub(super) fn log_and_cluster(
    path: &Path,
    log: LogSection,
    cluster: Option<ClusterSection>,
    nats: Option<&NatsConfig>,
) -> Result<(LogConfig, Option<ClusterConfig>), ConfigError> {
    let log = log_config(path, log)?;
    let cluster = cluster
        .map(|cluster| cluster_config(path, cluster))
        .transpose()?;
    if log.backend == LogBackend::JetStream && nats.is_none() {
        return Err(invalid(
            path,
            "log.backend",
            "log.backend = \"jetstream\" needs a [nats] section with url = \
             \"nats://host:4222\" (one URL or a comma-separated list of the JetStream servers); \
             add it, or use backend = \"sled\""
                .to_owned(),
        ));
    }
    Ok((log, cluster))
}

fn log_config(path: &Path, log: LogSection) -> Result<LogConfig, ConfigError> {
    let backend = match log.backend.as_deref() {
        None | Some("sled") => LogBackend::Sled,
        Some("jetstream") => LogBackend::JetStream,
        Some(raw) => {
            return Err(invalid(
                path,
                "log.backend",
                format!(
                    "unknown backend {}: give \"sled\" (the default) or \"jetstream\"",
                    shown(raw)
                ),
            ))
        }
    };
    let stream = match log.stream {
        None => DEFAULT_LOG_STREAM.to_owned(),
        Some(stream) => check_token(
            path,
            "log.stream",
            stream,
            LOG_STREAM_CHARS_MAX,
            "stream name",
            "\"TENANTRY_LOG\"",
        )?,
    };
    let replicas = match log.replicas {
        None => DEFAULT_LOG_REPLICAS,
        Some(raw) => check_count(
            path,
            "log.replicas",
            raw,
            1..=LOG_REPLICAS_MAX,
            "copies of the stream (at most the number of JetStream servers)",
            &DEFAULT_LOG_REPLICAS.to_string(),
        )?,
    };
    Ok(LogConfig {
        backend,
        stream,
        replicas,
        seal: log.seal.unwrap_or(true),
    })
}

fn cluster_config(path: &Path, cluster: ClusterSection) -> Result<ClusterConfig, ConfigError> {
    let Some(node) = cluster.node else {
        return Err(invalid(
            path,
            "cluster.node",
            "is required in [cluster]: give this node's name, unique per node (e.g. \"n1\")"
                .to_owned(),
        ));
    };
    let node = check_token(
        path,
        "cluster.node",
        node,
        CLUSTER_NODE_CHARS_MAX,
        "node name",
        "\"n1\"",
    )?;
    let lease_ttl = match cluster.lease_ttl {
        None => DEFAULT_LEASE_TTL,
        Some(raw) => {
            const FIELD: &str = "cluster.lease_ttl";
            let ttl = parse_duration(path, FIELD, &raw, "\"5s\"")?;
            if !(LEASE_TTL_MIN..=LEASE_TTL_MAX).contains(&ttl) {
                return Err(invalid(
                    path,
                    FIELD,
                    format!(
                        "{raw:?} is out of range: give {}..={}, e.g. \"5s\"",
                        humantime::format_duration(LEASE_TTL_MIN),
                        humantime::format_duration(LEASE_TTL_MAX)
                    ),
                ));
            }
            ttl
        }
    };
    Ok(ClusterConfig { node, lease_ttl })
}

/// A name that must be one NATS token as it is: 1..=`chars_max` characters of `[A-Za-z0-9_-]`.
/// `what` names the kind of name and `example` a good one, for the error.
fn check_token(
    path: &Path,
    field: &str,
    value: String,
    chars_max: usize,
    what: &str,
    example: &str,
) -> Result<String, ConfigError> {
    let chars_ok = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if (1..=chars_max).contains(&value.len()) && chars_ok {
        return Ok(value);
    }
    Err(invalid(
        path,
        field,
        format!(
            "invalid {what} {}: use 1..={chars_max} characters of A-Z, a-z, 0-9, _ and - (no \
             dots, spaces or wildcards), e.g. {example}",
            shown(&value)
        ),
    ))
}

/// `value` quoted for an error, cut to a readable length (the file may hold any text).
fn shown(value: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 80;
    if value.chars().count() <= SHOWN_CHARS_MAX {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(SHOWN_CHARS_MAX).collect();
        format!("{head:?}... ({} bytes)", value.len())
    }
}

#[cfg(test)]
mod tests;
