//! The `tenantry` command line: parse arguments, load config, call into the library. No logic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use tenantry::actors::runtime::{Runtime, RuntimeOptions};
use tenantry::config::{Config, LoadOptions};
use tenantry::edge::auth::SigningKey;
use tenantry::edge::http::ApiServer;
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::projections::projector::{Background, Projector};
use tenantry::projections::snapshot::SnapshotStore;
use tenantry::tenancy::TenantId;

/// Multi-tenant, event-sourced conversation runtime.
#[derive(Parser)]
#[command(name = "tenantry", version, about, propagate_version = true)]
struct Cli {
    /// Path of config.toml.
    #[arg(
        long,
        global = true,
        env = "TENANTRY_CONFIG",
        default_value = "config.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the runtime: tenant, env and session actors over the durable log in the data dir.
    /// Stops gracefully on SIGINT/SIGTERM (drains queued messages, snapshots every session).
    Serve,
    /// Validate the configuration and print a summary (tenants, envs, teams, channels, flows).
    CheckConfig,
    /// Print a tenant's usage (messages, replies, sessions, errors, bytes, events) from the read
    /// models, folding the log up to date first. Offline: needs the data dir (no running server).
    Usage {
        #[arg(long)]
        tenant: tenantry::tenancy::TenantId,
        /// Only this environment (default: all).
        #[arg(long)]
        env: Option<tenantry::tenancy::EnvId>,
        /// Group rows by team, channel (within team) or UTC day.
        #[arg(long, value_enum, default_value_t = UsageGroup::Team)]
        by: UsageGroup,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
    },
    /// Drop and re-fold the read models (usage, sessions) from the log, with progress; with
    /// --snapshots also rewrite every session's CBOR snapshot from the log. Offline.
    Rebuild {
        /// Only this tenant (default: every tenant in the log).
        #[arg(long)]
        tenant: Option<tenantry::tenancy::TenantId>,
        /// Also rebuild the CBOR session snapshots.
        #[arg(long)]
        snapshots: bool,
    },
    /// Manage secrets (encrypted at rest under the data dir): set (value on stdin), get, list,
    /// delete, in `--global`, `--tenant T` or `--tenant T --team M`.
    Secrets(tenantry::secrets::cli::SecretsArgs),
    /// Mint an HS256 JWT for the HTTP API, signed with env TENANTRY_SIGNING_KEY else the secret
    /// global/signing_key; prints only the token.
    Token(tenantry::secrets::cli::TokenArgs),
    /// Print a fresh random JWT signing key (256 bits, base64url, 43 characters), e.g.
    /// `export TENANTRY_SIGNING_KEY=$(tenantry keygen)` or
    /// `tenantry keygen | tenantry secrets set --global signing_key`.
    Keygen,
    /// Print a tenant's or a session's events as a timeline (or JSON), a session's state at a
    /// seq (--at), or a what-if re-run of a session with another flow file (--with-flow; exits 1
    /// when it diverges). Offline: needs the data dir (no running server).
    Replay(tenantry::audit::cli::ReplayArgs),
    /// Stream a tenant's audit trail as JSONL or CSV with a manifest (chain hashes and stored
    /// bodies included, for `verify`). Offline. Ctrl-C stops it and prints how to resume.
    Export(tenantry::audit::cli::ExportArgs),
    /// Check an export file, or a tenant's log (--tenant), against the hash chain. Exit 0
    /// intact, 1 a problem (the first one is named: line, tenant_seq, what), 2 cannot verify.
    Verify(tenantry::audit::cli::VerifyArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum UsageGroup {
    Team,
    Channel,
    Day,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TableOrJson {
    Table,
    Json,
}

fn main() -> ExitCode {
    init_tracing();
    // sled may panic on damaged files in its own threads: exit clearly rather than hang.
    tenantry::events::log::contain::install_panic_hook();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let opts = LoadOptions {
        tenant_override: std::env::var("TENANTRY_TENANT_ID").ok(),
    };
    Ok(Config::load(path, &opts)?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => serve(&cli.config),
        Command::CheckConfig => {
            let config = load_config(&cli.config)?;
            print!("{}", config.summary());
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets(args) => {
            let config = load_config(&cli.config)?;
            let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
            let data_dir = &config.server().data_dir;
            tenantry::secrets::cli::secrets(&args, data_dir, &mut stdin, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            let config = load_config(&cli.config)?;
            Ok(tenantry::audit::cli::replay(&args, &config)?)
        }
        Command::Export(args) => {
            let config = load_config(&cli.config)?;
            Ok(tenantry::audit::cli::export(&args, &config)?)
        }
        Command::Verify(args) => {
            // `verify FILE` needs no config; an unusable config is "cannot verify" (exit 2).
            let config = if args.needs_config() {
                match load_config(&cli.config) {
                    Ok(config) => Some(config),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return Ok(ExitCode::from(tenantry::audit::cli::EXIT_UNUSABLE));
                    }
                }
            } else {
                None
            };
            Ok(tenantry::audit::cli::verify(&args, config.as_ref()))
        }
        Command::Token(args) => {
            let config = load_config(&cli.config)?;
            let now = std::time::SystemTime::now();
            tenantry::secrets::cli::token(&args, &config, now, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keygen => {
            tenantry::secrets::cli::keygen(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Usage {
            tenant,
            env,
            by,
            format,
        } => usage(&cli.config, &tenant, env.as_ref(), by, format),
        Command::Rebuild { tenant, snapshots } => rebuild(&cli.config, tenant, snapshots),
    }
}

fn serve(config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let data_dir = config.server().data_dir.clone();
    // Before anything is created: a server without a usable key leaves no trace on disk.
    let signing_key = signing_key(&data_dir)?;
    tenantry::private_fs::create_private_dir(&data_dir)
        .with_context(|| format!("creating data dir {} (mode 0700)", data_dir.display()))?;
    let log = EventLog::open(&data_dir.join("log"), &LogOptions::default())?;
    let snapshots = SnapshotStore::new(data_dir.join("sessions"));
    let projector = Arc::new(Projector::new(&log)?);
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut opts = RuntimeOptions::from_config(&config);
        let nats_metrics = Arc::new(tenantry::edge::nats::NatsMetrics::default());
        let egress = config
            .nats()
            .map(|_| tenantry::edge::nats::egress_channel());
        if let Some((sink, _)) = &egress {
            opts.egress = Some(sink.clone());
        }
        let runtime = Runtime::start(&config, log.clone(), snapshots, opts);
        // One quota per tenant, charged by HTTP requests and NATS messages alike.
        let quotas = Arc::new(tenantry::edge::quota::Quotas::for_config(&config));
        let served: Vec<TenantId> = runtime.tenants().cloned().collect();
        let _read_models = Background::start(
            log.clone(),
            projector.clone(),
            served.clone(),
            READ_MODEL_INTERVAL,
        )?;
        // NATS: ingress stops right after HTTP at shutdown; egress last, so that it publishes
        // the replies of the drained messages.
        let (stop_nats, stop) = tokio::sync::watch::channel(false);
        let mut ingress_task = None;
        let mut egress_task = None;
        if let (Some(nats), Some((_, replies))) = (config.nats(), egress) {
            let client =
                tenantry::edge::nats::connect(nats, &data_dir, nats_metrics.clone()).await?;
            let ingress = tenantry::edge::nats::Ingress {
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
            let publish = tenantry::edge::nats::publish_egress(
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
            &signing_key,
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
        if let Some(task) = ingress_task {
            match task.await {
                Ok(Err(e)) => tracing::error!(error = %e, "NATS ingress failed"),
                Err(e) => tracing::error!(error = %e, "NATS ingress task failed"),
                Ok(Ok(())) => {}
            }
        }
        tracing::info!("shutting down: draining queued messages and snapshotting sessions");
        runtime.shutdown().await;
        if let Some(task) = egress_task {
            let _ = task.await;
        }
        tracing::info!("stopped");
        failed.map_or(Ok(()), Err)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How often `serve` folds new events into the read models (usage, session index).
const READ_MODEL_INTERVAL: Duration = Duration::from_millis(250);

/// The HS256 key for API tokens: the UTF-8 bytes of env `TENANTRY_SIGNING_KEY`, else the
/// secret `global/signing_key` from the data dir's encrypted secret store; at least
/// `SIGNING_KEY_BYTES_MIN` bytes. Creates nothing when there is none.
fn signing_key(data_dir: &std::path::Path) -> anyhow::Result<SigningKey> {
    use tenantry::secrets::{key::KeySources, store::SecretStore};
    let key = SecretStore::resolve_signing_key(data_dir, KeySources::from_env()?)?;
    Ok(SigningKey::new(key.expose().to_vec())?)
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

/// Opens the data dir's log for an offline command.
fn open_offline(config: &Config) -> anyhow::Result<EventLog> {
    let dir = config.server().data_dir.join("log");
    if !dir.exists() {
        anyhow::bail!(
            "no event log at {} (nothing has been written yet?)",
            dir.display()
        );
    }
    Ok(EventLog::open(&dir, &LogOptions::default())?)
}

fn usage(
    config_path: &std::path::Path,
    tenant: &tenantry::tenancy::TenantId,
    env: Option<&tenantry::tenancy::EnvId>,
    by: UsageGroup,
    format: TableOrJson,
) -> anyhow::Result<ExitCode> {
    use tenantry::projections::projector::{usage_table, Projector, UsageBy};
    let config = load_config(config_path)?;
    let log = open_offline(&config)?;
    let projector = Projector::new(&log)?;
    projector.catch_up(&log, tenant, &mut |_| {})?;
    let by = match by {
        UsageGroup::Team => UsageBy::Team,
        UsageGroup::Channel => UsageBy::Channel,
        UsageGroup::Day => UsageBy::Day,
    };
    let rows = projector.usage(tenant, env, None, by)?;
    match format {
        TableOrJson::Table => print!("{}", usage_table(&rows)),
        TableOrJson::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "tenant": tenant, "usage": rows }))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn rebuild(
    config_path: &std::path::Path,
    tenant: Option<tenantry::tenancy::TenantId>,
    snapshots: bool,
) -> anyhow::Result<ExitCode> {
    use tenantry::projections::projector::Projector;
    let config = load_config(config_path)?;
    let log = open_offline(&config)?;
    let projector = Projector::new(&log)?;
    let tenants = match tenant {
        Some(t) => vec![t],
        None => log.tenants()?,
    };
    let store = SnapshotStore::new(config.server().data_dir.join("sessions"));
    for tenant in tenants {
        let started = std::time::Instant::now();
        let mut progress = |n: u64| eprintln!("rebuild {tenant}: {n} events folded");
        let folded = projector.rebuild(&log, &tenant, &mut progress)?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!("rebuild {tenant}: read models done, {folded} events in {secs:.2} s");
        if snapshots {
            let written =
                tenantry::projections::load::rewrite_snapshots(&log, &projector, &store, &tenant)?;
            eprintln!("rebuild {tenant}: {written} snapshots rewritten from the log");
        }
    }
    Ok(ExitCode::SUCCESS)
}
