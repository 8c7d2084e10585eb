//! Opening the event log that `[log]` names: sled in a directory of this machine, or this node's
//! cache of the JetStream stream on the servers of `[nats]`.
//!
//! Both `serve` and the offline commands (export, verify, replay, usage, rebuild) open the log
//! here, so they agree on the backend. With JetStream, `serve` keeps its cache in
//! `{data_dir}/log`; an offline command keeps its own in `{data_dir}/log-offline`, so it runs
//! while the server holds `{data_dir}/log`, and reads what the stream holds when it starts
//! (the cache is brought to the stream at open; a second run reuses what still matches).

pub mod forward;
pub mod key;
pub mod lease;
pub mod placement;
pub mod status;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, LogBackend};
use crate::edge::nats::NatsMetrics;
use crate::events::keyring::Keyring;
use crate::events::log::{EventLog, LogOptions, OpenError, Replica, ReplicaError, ReplicaOptions};

/// Who opens the log: the server, or an offline command beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    Server,
    Offline,
}

/// The directory of the log (sled) or of the cache (JetStream) that `opener` uses.
pub fn log_dir(config: &Config, opener: Opener) -> PathBuf {
    let data_dir = &config.server().data_dir;
    match (config.log().backend, opener) {
        (LogBackend::JetStream, Opener::Offline) => data_dir.join("log-offline"),
        _ => data_dir.join("log"),
    }
}

/// The replica options of a JetStream config (`None` for sled). The server of a `[cluster]`
/// node appends only for the tenants it adopts; without `[cluster]` the server (node
/// `single`) appends for every tenant; an offline command appends only what it is told to
/// (an erasure's records).
pub fn replica_options(config: &Config, opener: Opener) -> Option<ReplicaOptions> {
    match config.log().backend {
        LogBackend::Sled => None,
        LogBackend::JetStream => Some(ReplicaOptions {
            stream: config.log().stream.clone(),
            replicas: config.log().replicas,
            node: config.cluster().map_or_else(
                || match opener {
                    Opener::Server => "single".to_owned(),
                    Opener::Offline => "offline".to_owned(),
                },
                |c| c.node.clone(),
            ),
            cluster: opener == Opener::Server && config.cluster().is_some(),
        }),
    }
}

/// Connects to the stream of a JetStream config with the credentials of `[nats]`.
pub fn connect_replica(config: &Config, opts: &ReplicaOptions) -> Result<Replica, ReplicaError> {
    let data_dir = &config.server().data_dir;
    let Some(nats) = config.nats() else {
        return Err(ReplicaError::Stream {
            stream: opts.stream.clone(),
            detail: "log.backend = \"jetstream\" needs a [nats] section with url".into(),
        });
    };
    let metrics = Arc::new(NatsMetrics::default());
    Replica::connect(opts, || async move {
        crate::edge::nats::connect(nats, data_dir, metrics)
            .await
            .map_err(|e| e.to_string())
    })
}

/// The key ring of the data dir's secret store (see [`crate::events::keyring`]). The server
/// opens the store (creating `master.key` when env `TENANTRY_MASTER_KEY` is unset, as for the
/// chain head key); an offline command opens it only when a master key exists, and without one
/// reads sealed fields as erased (there is then no KEK to open them with either).
fn keyring(config: &Config, opener: Opener) -> Result<Option<Arc<Keyring>>, OpenError> {
    let data_dir = &config.server().data_dir;
    Keyring::for_data_dir(data_dir, opener == Opener::Server).map_err(|e| OpenError::Storage {
        path: data_dir.clone(),
        detail: format!("opening the secret store for the data keys: {e}"),
    })
}

/// Starts taking and renewing tenant leases when `config` has `[cluster]` with the JetStream
/// backend (`None` otherwise: the node appends for every tenant).
pub fn start_leases(
    config: &Config,
    log: &EventLog,
) -> Result<Option<Arc<lease::Leases>>, lease::LeaseError> {
    let (Some(cluster), LogBackend::JetStream) = (config.cluster(), config.log().backend) else {
        return Ok(None);
    };
    let tenants = config.tenants().keys().cloned().collect();
    lease::Leases::start(log.clone(), tenants, cluster.lease_ttl).map(Some)
}

/// Whether the nodes of `config` share their keys in the cluster's key stream: a `[cluster]`
/// of the JetStream backend. Such a node seals only with a cluster key ([`key`]); the sled
/// backend and a single JetStream writer seal with the data dir's key ring.
pub fn shares_keys(config: &Config) -> bool {
    config.log().backend == LogBackend::JetStream && config.cluster().is_some()
}

/// Opens the log of `config` for `opener`, in [`log_dir`], sealing personal fields: with the
/// data dir's key ring (`keyring`), or on a `[cluster]` with the key stream under the
/// cluster key ([`key::load`]; without one the node writes unsealed events, as it says).
pub fn open_log(config: &Config, opener: Opener) -> Result<EventLog, OpenError> {
    let mut opts = LogOptions::default();
    let dir = &log_dir(config, opener);
    opts.seal = config.log().seal;
    let Some(replica) = replica_options(config, opener) else {
        opts.keyring = keyring(config, opener)?;
        return EventLog::open(dir, &opts);
    };
    let replica = connect_replica(config, &replica)?;
    if !shares_keys(config) {
        opts.keyring = keyring(config, opener)?;
    } else if let Some(key) = cluster_key(config)? {
        let keys = replica.shared_keys(key)?;
        opts.keyring = Some(Arc::new(Keyring::shared(keys)));
    } else {
        tracing::warn!(
            "no cluster key (env {} or {{data_dir}}/{}): this [cluster] node writes unsealed \
             events and cannot erase; give every node the same key to seal",
            key::CLUSTER_KEY_ENV,
            key::CLUSTER_KEY_FILE
        );
    }
    EventLog::open_replicated(dir, &opts, replica)
}

/// The cluster key of `config`'s node, if it has one.
fn cluster_key(config: &Config) -> Result<Option<crate::events::seal::DataKey>, OpenError> {
    let data_dir = &config.server().data_dir;
    key::load(data_dir).map_err(|e| OpenError::Storage {
        path: data_dir.clone(),
        detail: e.to_string(),
    })
}
