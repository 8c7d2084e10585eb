//! `tenantry bench` and the crash test's hidden `crash-writer`, apart from the other
//! subcommands: the bench moves to its own crate, and these go with it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

/// The bench's subcommands, flattened into `tenantry`'s.
#[derive(Subcommand)]
pub(super) enum BenchCommand {
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
pub(super) struct BenchArgs {
    /// Scenarios to run, comma-separated; all of them when none is given.
    #[arg(value_enum, value_delimiter = ',')]
    scenarios: Vec<crate::bench::suite::Scenario>,
    /// Short runs (a second or two per step, 200k-event history): CI and a first look.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Long runs for figures worth quoting (10 s steps, 100k idle sessions, 10M-event history).
    #[arg(long)]
    full: bool,
    /// Write the whole report (every scenario's figures and the table) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Rewrite the table between the bench-table markers of this Markdown file (BENCHMARKS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Scratch directory for the benchmark's databases (recreated per step; the history log is
    /// kept and reused by the next run of the same size).
    #[arg(long, default_value = "bench-out")]
    dir: PathBuf,
    /// Concurrent appenders for the log scenario, comma-separated (default 1,8,64,512).
    #[arg(long, value_delimiter = ',')]
    appenders: Option<Vec<usize>>,
    /// Concurrent clients for the runtime (default 64,512), http and nats (default 64)
    /// scenarios, comma-separated.
    #[arg(long, value_delimiter = ',')]
    clients: Option<Vec<usize>>,
    /// Live idle sessions for the runtime scenario's memory figure (0 skips it).
    #[arg(long)]
    idle_sessions: Option<usize>,
    /// Most append groups per commit batch (the log's `batch_groups_max`).
    #[arg(long)]
    batch_groups: Option<usize>,
    /// Events in the history scenario's log (default 200k with --quick, 2M, 10M with --full).
    #[arg(long)]
    events: Option<u64>,
}

/// Runs a bench subcommand.
pub(super) fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Bench(args) => bench(args),
        BenchCommand::CrashWriter {
            data_dir,
            threads,
            seconds,
            run_tag,
        } => {
            crate::bench::crash_writer::run(&data_dir, threads, seconds, &run_tag)
                .map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use crate::bench::suite::{self, Size};
    let mut scenarios = Vec::new();
    // In the suite's order, whatever order they were named in.
    for s in suite::Scenario::ALL {
        if args.scenarios.is_empty() || args.scenarios.contains(&s) {
            scenarios.push(s);
        }
    }
    // The table must be rewritable before spending minutes measuring.
    if let Some(path) = &args.markdown {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        suite::replace_section(&text, "")
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let opts = suite::SuiteOptions {
        size: if args.full {
            Size::Full
        } else if args.quick {
            Size::Quick
        } else {
            Size::Default
        },
        scenarios,
        dir: args.dir,
        appenders: args.appenders,
        clients: args.clients,
        idle_sessions: args.idle_sessions,
        batch_groups: args.batch_groups,
        events: args.events,
        serve_exe: Some(std::env::current_exe().context("locating this binary")?),
    };
    let mut progress = |line: &str| eprintln!("bench: {line}");
    let mut header_printed = false;
    let mut row = |r: &suite::Row| {
        if !header_printed {
            println!(
                "{:<9} {:<58} {:<44} {:<22} verdict",
                "scenario", "figure", "measured", "target"
            );
            header_printed = true;
        }
        let verdict = match r.verdict {
            suite::Verdict::Hit => "hit",
            suite::Verdict::Missed => "MISSED",
            suite::Verdict::Info => "",
        };
        println!(
            "{:<9} {:<58} {:<44} {:<22} {verdict}",
            r.scenario, r.figure, r.measured, r.target
        );
    };
    let report = suite::run(&opts, &mut progress, &mut row).map_err(anyhow::Error::msg)?;
    println!("\n{}", suite::markdown_section(&report));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    if let Some(path) = &args.markdown {
        suite::update_markdown(path, &report).map_err(anyhow::Error::msg)?;
        eprintln!("bench: rewrote the table in {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
