//! The `tenantry` command line: parse arguments, load config, call into the library. No logic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use tenantry::actors::runtime::{Runtime, RuntimeOptions};
use tenantry::config::{Config, LoadOptions};
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::projections::snapshot::SnapshotStore;

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
    /// Measure performance; prints a table with progress and optionally writes JSON.
    Bench(BenchArgs),
    /// Test driver for the crash test: append from many threads, print a line per durable ack.
    #[command(hide = true)]
    CrashWriter {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 6)]
        threads: usize,
        /// Stop after this many seconds even if nobody kills the process.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Makes message ids unique per run.
        #[arg(long)]
        run_tag: String,
    },
}

#[derive(Args)]
struct BenchArgs {
    /// Which scenario to run.
    #[arg(value_enum, default_value_t = Scenario::Log)]
    scenario: Scenario,
    /// Short runs (seconds per step) for CI and a first look.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Long runs for figures worth quoting.
    #[arg(long)]
    full: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Scratch directory for the benchmark's databases (removed and recreated per step).
    #[arg(long, default_value = "bench-out")]
    dir: PathBuf,
    /// Concurrent appenders to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 64, 512])]
    appenders: Vec<usize>,
    /// Concurrent clients for the runtime scenario, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64, 512, 4096])]
    clients: Vec<usize>,
    /// Live idle sessions for the runtime scenario's memory figure (0 skips it).
    #[arg(long)]
    idle_sessions: Option<usize>,
    /// Most append groups per commit batch (the log's `batch_groups_max`).
    #[arg(long)]
    batch_groups: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Scenario {
    /// Durable log append throughput and ack latency vs raw sled.
    Log,
    /// In-process end to end: clients → actors → flow → durable log → ack; memory per session.
    Runtime,
}

fn main() -> ExitCode {
    init_tracing();
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
        Command::Bench(args) => bench(args),
        Command::CrashWriter {
            data_dir,
            threads,
            seconds,
            run_tag,
        } => {
            tenantry::bench::crash_writer::run(&data_dir, threads, seconds, &run_tag)
                .map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(config_path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let data_dir = config.server().data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let log = EventLog::open(&data_dir.join("log"), &LogOptions::default())?;
    let snapshots = SnapshotStore::new(data_dir.join("sessions"));
    let system = actix_rt::System::new();
    system.block_on(async move {
        let opts = RuntimeOptions::from_config(&config);
        let runtime = Runtime::start(&config, log, snapshots, opts);
        let tenants: Vec<String> = runtime.tenants().map(ToString::to_string).collect();
        tracing::info!(tenants = ?tenants, data_dir = %data_dir.display(), mode = %mode(&config),
            "tenantry runtime started");
        shutdown_signal().await;
        tracing::info!("shutting down: draining queued messages and snapshotting sessions");
        runtime.shutdown().await;
        tracing::info!("stopped");
    });
    Ok(ExitCode::SUCCESS)
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

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let seconds = if args.full {
        10
    } else if args.quick {
        1
    } else {
        3
    };
    match args.scenario {
        Scenario::Log => {
            let mut log = tenantry::events::log::LogOptions::default();
            if let Some(n) = args.batch_groups {
                log.batch_groups_max = n;
            }
            let opts = tenantry::bench::log::LogBenchOptions {
                appenders: args.appenders,
                log,
                duration: Duration::from_secs(seconds),
                paced_fraction: 0.5,
            };
            std::fs::create_dir_all(&args.dir)
                .with_context(|| format!("creating {}", args.dir.display()))?;
            let mut progress = |line: &str| eprintln!("bench: {line}");
            let report = tenantry::bench::log::run(&args.dir, &opts, &mut progress)
                .map_err(anyhow::Error::msg)?;
            emit(&report, args.json.as_deref())
        }
        Scenario::Runtime => {
            let idle_default = if args.full {
                100_000
            } else if args.quick {
                5_000
            } else {
                20_000
            };
            let opts = tenantry::bench::runtime::RuntimeBenchOptions {
                clients: args.clients,
                duration: Duration::from_secs(seconds),
                paced_fraction: 0.5,
                idle_sessions: args.idle_sessions.unwrap_or(idle_default),
            };
            std::fs::create_dir_all(&args.dir)
                .with_context(|| format!("creating {}", args.dir.display()))?;
            let mut progress = |line: &str| eprintln!("bench: {line}");
            let report = tenantry::bench::runtime::run(&args.dir, &opts, &mut progress)
                .map_err(anyhow::Error::msg)?;
            emit(&report, args.json.as_deref())
        }
    }
}

/// Prints a report as JSON and writes it to `path` when given.
fn emit<T: serde::Serialize>(
    report: &T,
    path: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(report)?);
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
