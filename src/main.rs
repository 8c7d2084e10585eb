//! The `tenantry` command line: parse arguments, load config, call into the library. No logic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use tenantry::config::{Config, LoadOptions};

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
    /// Most append groups per commit batch (the log's `batch_groups_max`).
    #[arg(long)]
    batch_groups: Option<usize>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Scenario {
    /// Durable log append throughput and ack latency vs raw sled.
    Log,
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
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
            println!("{}", serde_json::to_string_pretty(&report)?);
            if let Some(path) = args.json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
