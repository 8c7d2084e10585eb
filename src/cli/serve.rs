//! `tenantry serve`: start the runtime, the read models' background fold, NATS and HTTP, and
//! stop them in reverse on SIGINT/SIGTERM: HTTP, NATS ingress and the cluster forwarding
//! listener, runtime drain, egress.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::load_config;
use crate::actors::runtime::{Runtime, RuntimeOptions};
use crate::audit::anchor::schedule::HeadSigning;
use crate::audit::anchor::{public_key_hex, HeadSigner};
use crate::cluster::forward::{self, StaticPlacement};
use crate::cluster::lease::Leases;
use crate::cluster::placement::Placement;
use crate::cluster::Opener;
use crate::config::Config;
use crate::edge::auth::{Authenticator, HsKeys, JwksFile, SigningKey};
use crate::edge::http::ApiServer;
use crate::edge::nats::connect;
use crate::events::log::EventLog;
use crate::projections::projector::{Background, Projector};
use crate::projections::snapshot::SnapshotStore;
use crate::tenancy::TenantId;

/// The read models' background fold of the served tenants; it drops a deleted tenant's read
/// models with its snapshots.
fn fold_read_models(
    log: &EventLog,
    projector: &Arc<Projector>,
    snapshots: &SnapshotStore,
    served: &[TenantId],
) -> std::io::Result<Background> {
    Background::start(
        log.clone(),
        projector.clone(),
        snapshots.clone(),
        served.to_vec(),
        READ_MODEL_INTERVAL,
    )
}

pub(super) fn serve(config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let data_dir = config.server().data_dir.clone();
    // Before anything is created: a server without a usable key leaves no trace on disk.
    let authenticator = authenticator(&config, &data_dir)?;
    crate::private_fs::create_private_dir(&data_dir)
        .with_context(|| format!("creating data dir {} (mode 0700)", data_dir.display()))?;
    // The head signing is dropped last, after the drain: its final heads cover every answer.
    let (log, leases, _head_signing) = open_log(&config)?;
    let leases_for_runtime = leases.clone();
    let snapshots = SnapshotStore::new(data_dir.join("sessions"));
    let projector = Arc::new(Projector::new(&log)?);
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut opts = RuntimeOptions::from_config(&config);
        let nats_metrics = Arc::new(crate::edge::nats::NatsMetrics::default());
        let egress = config.nats().map(|_| crate::edge::nats::egress_channel());
        if let Some((sink, _)) = &egress {
            opts.egress = Some(sink.clone());
        }
        let client = match config.nats() {
            Some(nats) => Some(connect(nats, &data_dir, nats_metrics.clone()).await?),
            None => None,
        };
        let placement =
            cluster_forwarding(&config, client.as_ref(), &mut opts, leases_for_runtime).await?;
        let runtime = Runtime::start(&config, log.clone(), snapshots.clone(), opts);
        // One quota per tenant, charged by HTTP requests and NATS messages alike.
        let quotas = Arc::new(crate::edge::quota::Quotas::for_config(&config));
        let served: Vec<TenantId> = runtime.tenants().cloned().collect();
        let _read_models = fold_read_models(&log, &projector, &snapshots, &served)?;
        // NATS: ingress stops right after HTTP at shutdown; egress last, so that it publishes
        // the replies of the drained messages.
        let (stop_nats, stop) = tokio::sync::watch::channel(false);
        let mut ingress_task = None;
        let mut egress_task = None;
        let forward_task = client
            .clone()
            .and_then(|c| forward::start(&config, c, runtime.clone(), placement, stop.clone()));
        if let (Some(nats), Some((_, replies)), Some(client)) = (config.nats(), egress, client) {
            let ingress = crate::edge::nats::Ingress {
                client: client.clone(),
                prefix: nats.subject_prefix.clone(),
                runtime: runtime.clone(),
                served: served.iter().cloned().collect(),
                dedicated: config.dedicated().cloned(),
                quotas: quotas.clone(),
                metrics: nats_metrics.clone(),
            };
            ingress_task = Some(actix_rt::spawn(ingress.run(stop.clone())));
            let prefix = nats.subject_prefix.clone();
            let publish = crate::edge::nats::publish_egress(
                client,
                prefix,
                replies,
                stop,
                nats_metrics.clone(),
            );
            egress_task = Some(actix_rt::spawn(publish));
        }
        let mut http = match ApiServer::start(
            &config,
            runtime.clone(),
            projector.clone(),
            authenticator,
            quotas,
            config.nats().map(|_| nats_metrics.as_ref()),
        ) {
            Ok(http) => http,
            Err(e) => {
                runtime.shutdown().await;
                return Err(anyhow::Error::new(e));
            }
        };
        let tenants: Vec<String> = runtime.tenants().map(ToString::to_string).collect();
        tracing::info!(tenants = ?tenants, data_dir = %data_dir.display(), mode = %mode(&config),
            "tenantry runtime started");
        let mut failed = None;
        tokio::select! {
            _ = shutdown_signal() => {}
            result = http.wait() => {
                failed = Some(anyhow::anyhow!("the HTTP server stopped unexpectedly: {result:?}"));
            }
        }
        // HTTP first: stop accepting, let in-flight requests finish (bounded), so that no
        // request reaches a runtime that is draining; then drain the runtime.
        tracing::info!("shutting down: stopping HTTP, finishing in-flight requests");
        http.stop().await;
        let _ = stop_nats.send(true);
        join_stopped(ingress_task, "NATS ingress").await;
        join_stopped(forward_task, "cluster forwarding listener").await;
        tracing::info!("shutting down: draining queued messages and snapshotting sessions");
        runtime.shutdown().await;
        if let Some(task) = egress_task {
            let _ = task.await;
        }
        tracing::info!("stopped");
        failed.map_or(Ok(()), Err)
    })?;
    if let Some(leases) = &leases {
        // After the drain: the other nodes take the tenants now, not a lease later.
        leases.stop();
    }
    Ok(ExitCode::SUCCESS)
}

/// The chain head signing key, the secret `global/chain_head_key`; made (and logged) at the
/// first start, so every deployment anchors its chains without a setup step.
fn chain_head_signer(data_dir: &std::path::Path) -> anyhow::Result<HeadSigner> {
    let (signer, generated) = HeadSigner::load_or_generate(data_dir)
        .context("loading the chain head signing key (secret global/chain_head_key)")?;
    if generated {
        tracing::info!(
            public_key = %public_key_hex(&signer.public_key()),
            "generated the chain head signing key global/chain_head_key; give its public key \
             (tenantry keys export-pubkey) to whoever verifies exports"
        );
    }
    Ok(signer)
}

/// Loads (or makes) the chain head key, then signs the served tenants' chain heads every
/// `audit.head_sign_every_events` events or `audit.head_sign_interval`: on the sled log, and on
/// the JetStream backend (the heads go into the stream as tenant ops): a single writer, and the
/// owners of a `[cluster]` with a cluster key, with the key the nodes agree on.
fn start_head_signing(
    config: &Config,
    log: &EventLog,
    served: &[TenantId],
) -> anyhow::Result<Option<HeadSigning>> {
    let data_dir = &config.server().data_dir;
    let mut signer = chain_head_signer(data_dir)?;
    // The nodes of a cluster sign with one key, agreed through the key stream, so one public
    // key verifies a tenant's heads whichever node owned it. A single JetStream writer signs
    // as sled does.
    if log.replica().is_some_and(|r| r.cluster()) {
        let Some(keys) = log.shared_keys() else {
            tracing::info!("chain heads are not signed on a cluster node without a cluster key");
            return Ok(None);
        };
        let (agreed, replaced) = signer
            .agree_in_cluster(data_dir, keys)
            .context("agreeing on the cluster's chain head key")?;
        if replaced {
            tracing::warn!(
                public_key = %public_key_hex(&agreed.public_key()),
                "this node's chain head key global/chain_head_key was replaced by the cluster's \
                 (the key stream's); heads it signed before verify only with its old public key"
            );
        }
        signer = agreed;
    }
    let signing = HeadSigning::start(
        log.clone(),
        Arc::new(signer),
        served.to_vec(),
        *config.audit(),
    )
    .context("starting the chain head signing thread")?;
    Ok(Some(signing))
}

/// What [`open_log`] started: the log, a cluster node's leases, the chain head signing.
type Opened = (EventLog, Option<Arc<Leases>>, Option<HeadSigning>);

/// Opens the log `[log]` names and, on a cluster node, takes its tenant leases: it appends only
/// for the tenants whose leases it holds (taken here, before the edges open, and renewed in the
/// background). Then starts signing the served tenants' chain heads.
fn open_log(config: &Config) -> anyhow::Result<Opened> {
    let log = crate::cluster::open_log(config, Opener::Server)?;
    for tenant in crate::offboard::interrupted(&config.server().data_dir) {
        tracing::warn!(tenant = %tenant, "an interrupted deletion of this tenant's data is \
            unfinished; finish it with DELETE /api/v1/tenants/{tenant} or `tenantry tenant delete`");
    }
    let leases = crate::cluster::start_leases(config, &log)?;
    let served: Vec<TenantId> = config.tenants().keys().cloned().collect();
    let signing = start_head_signing(config, &log, &served)?;
    Ok((log, leases, signing))
}

/// Who handles each tenant in a cluster, and (with `[cluster]` and `[nats]`) the runtime's
/// forwarding of a tenant's messages to its owner's listener.
///
/// The placement is the node's leases (a `[cluster]` node on the JetStream log); otherwise a
/// static one: every tenant handled here (a debug build's tests may set
/// `TENANTRY_STATIC_PLACEMENT` to run nodes without leases).
async fn cluster_forwarding(
    config: &Config,
    client: Option<&async_nats::Client>,
    opts: &mut RuntimeOptions,
    leases: Option<Arc<Leases>>,
) -> anyhow::Result<Arc<dyn Placement>> {
    let node = config
        .cluster()
        .map_or_else(|| "local".to_owned(), |c| c.node.clone());
    let placement: Arc<dyn Placement> = match leases {
        Some(leases) => leases,
        None => Arc::new(StaticPlacement::for_node(&node)?),
    };
    if let Some(client) = client {
        opts.forwarding = forward::forwarding(config, client, placement.clone()).await?;
    } else if config.cluster().is_some() {
        tracing::warn!("[cluster] without [nats]: messages are not forwarded between nodes");
    }
    Ok(placement)
}

/// Waits for a stopped task of `what` and logs how it failed, if it did.
async fn join_stopped<E: std::fmt::Display>(
    task: Option<tokio::task::JoinHandle<Result<(), E>>>,
    what: &str,
) {
    let Some(task) = task else { return };
    match task.await {
        Ok(Err(e)) => tracing::error!(error = %e, "{what} failed"),
        Err(e) => tracing::error!(error = %e, "{what} task failed"),
        Ok(Ok(())) => {}
    }
}

/// How often `serve` folds new events into the read models (usage, session index).
const READ_MODEL_INTERVAL: Duration = Duration::from_millis(250);

/// The token checker: the default HS256 key (the UTF-8 bytes of env `TENANTRY_SIGNING_KEY`,
/// else the secret `global/signing_key`), the HS256 keys named by kid (secrets
/// `global/signing_key.{kid}`), each at least `SIGNING_KEY_BYTES_MIN` bytes, and the `[auth]
/// jwks` file. Creates nothing when there is no key.
fn authenticator(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<Authenticator> {
    use crate::secrets::{key::KeySources, kids::named_signing_keys, store::SecretStore};
    let key = SecretStore::resolve_signing_key(data_dir, KeySources::from_env()?)?;
    let mut keys = HsKeys::single(SigningKey::new(key.expose().to_vec())?);
    for (kid, key) in named_signing_keys(data_dir, KeySources::from_env()?)? {
        keys.by_kid
            .insert(kid, SigningKey::new(key.expose().to_vec())?);
    }
    let jwks = match &config.auth().jwks {
        None => None,
        Some(path) => Some(JwksFile::open(path)?),
    };
    if let Some(jwks) = &jwks {
        if let Some(kid) = keys
            .by_kid
            .keys()
            .find(|kid| jwks.keys().contains_key(*kid))
        {
            anyhow::bail!(
                "kid {kid:?} names both an HS256 key (secret global/signing_key.{kid}) and a key \
                 of the JWKS file {}; rename one of them",
                config
                    .auth()
                    .jwks
                    .as_deref()
                    .map_or_else(String::new, |p| p.display().to_string())
            );
        }
    }
    Ok(Authenticator::new(keys, jwks, config.auth()))
}

fn mode(config: &Config) -> String {
    match config.dedicated() {
        Some(t) => format!("dedicated to {t}"),
        None => "shared".to_owned(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
