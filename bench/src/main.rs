//! `tenantry-bench`: measures performance; prints a table with progress and optionally writes
//! JSON and the table of BENCHMARKS.md. Parses arguments, finds the `tenantry` binary, calls
//! [`tenantry_bench::suite`]. No logic.
//!
//! The http, nats, overload and history scenarios start `tenantry serve` as a child. Unless
//! `--tenantry PATH` names one, the bench builds it first with
//! `cargo build -p tenantry -p tenantry-bench --bin tenantry` in its own profile (`--release`
//! when the bench is a release build) into its own target directory, so that the child is the
//! `tenantry` beside this executable and as new as the sources. Naming both packages gives the
//! dependencies the features they were just built with for the bench, so cargo compiles nothing
//! twice (at most it links `tenantry`), and does nothing when it is up to date.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Parser;

use tenantry_bench::suite::{self, Scenario, Size};

/// Measure performance; prints a table with progress and optionally writes JSON.
#[derive(Parser)]
#[command(name = "tenantry-bench", version, about)]
struct BenchArgs {
    /// Scenarios to run, comma-separated; all of them when none is given.
    #[arg(value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
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
    /// Scratch directory for the benchmark's databases: each scenario works in a fresh
    /// DIR/<scenario>, removed once it has measured (kept when it fails); the history log is
    /// kept in DIR/history and reused by the next run of the same size.
    #[arg(long, default_value = "bench-out")]
    dir: PathBuf,
    /// Keep every scenario's directory under --dir after it has measured (its databases and
    /// the servers' logs, e.g. the nats-servers' of the failover trials).
    #[arg(long)]
    keep_data: bool,
    /// Concurrent appenders for the log and cluster scenarios, comma-separated (default
    /// 1,8,64,512).
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
    /// Failover trials of the cluster scenario (default 2 with --quick, 3, 5 with --full; 0
    /// skips them).
    #[arg(long)]
    failover_trials: Option<usize>,
    /// The cluster scenario runs only its failover trials (no throughput passes).
    #[arg(long)]
    failover_only: bool,
    /// Events in the history scenario's log (default 200k with --quick, 2M, 10M with --full).
    #[arg(long)]
    events: Option<u64>,
    /// The `tenantry` binary the http, nats, overload and history scenarios start; by default
    /// the bench builds it (`cargo build -p tenantry -p tenantry-bench --bin tenantry`, in the
    /// bench's profile) and uses the one beside its own executable.
    #[arg(long, value_name = "PATH")]
    tenantry: Option<PathBuf>,
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Only on request: the bench's own output is its progress lines and the table.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    match run(BenchArgs::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut scenarios = Vec::new();
    // In the suite's order, whatever order they were named in.
    for s in Scenario::ALL {
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
    let needs_serve = scenarios.iter().any(|s| {
        matches!(
            s,
            Scenario::Http | Scenario::Nats | Scenario::History | Scenario::Overload
        )
    });
    let serve_exe = match (args.tenantry, needs_serve) {
        (Some(path), _) if path.is_file() => Some(path),
        (Some(path), _) => anyhow::bail!("--tenantry {}: no such file", path.display()),
        (None, true) => Some(build_tenantry()?),
        (None, false) => None,
    };
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
        failover_trials: args.failover_trials,
        failover_only: args.failover_only,
        keep_data: args.keep_data,
        serve_exe,
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
    Ok(())
}

/// Builds the `tenantry` binary in this executable's profile and target directory (a no-op for
/// cargo when it is up to date) and returns its path, beside this executable.
fn build_tenantry() -> anyhow::Result<PathBuf> {
    let own = std::env::current_exe().context("locating this executable")?;
    let profile_dir = own
        .parent()
        .context("this executable has no directory")?
        .to_path_buf();
    let exe = profile_dir.join("tenantry");
    let manual = format!(
        "build it with `cargo build{} -p tenantry --bin tenantry` or pass --tenantry PATH",
        profile_flag(&profile_dir).map_or(String::new(), |f| format!(" {f}"))
    );
    // The workspace this bench was built from (bench/ is one of its members).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("Cargo.toml"))
        .filter(|m| m.is_file());
    let (Some(manifest), Some(target_dir)) = (manifest, profile_dir.parent()) else {
        if exe.is_file() {
            return Ok(exe);
        }
        anyhow::bail!(
            "no tenantry binary at {} and no source tree to build it from: {manual}",
            exe.display()
        );
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args([
            "build",
            "-p",
            "tenantry",
            "-p",
            "tenantry-bench",
            "--bin",
            "tenantry",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target_dir);
    // `cargo run` gives this process its package's variables; build scripts that watch one
    // (ring watches CARGO_MANIFEST_DIR) would otherwise rebuild for the nested cargo.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_cargo_run_var) {
            build.env_remove(&name);
        }
    }
    if let Some(flag) = profile_flag(&profile_dir) {
        build.arg(flag);
    }
    eprintln!(
        "bench: building the tenantry binary for the child servers ({})",
        exe.display()
    );
    let status = build
        .status()
        .with_context(|| format!("running {}: {manual}", Path::new(&cargo).display()))?;
    if !status.success() || !exe.is_file() {
        anyhow::bail!("building tenantry failed ({status}): {manual}");
    }
    Ok(exe)
}

/// The variables `cargo run` sets for the program it runs (about the bench's package).
fn is_cargo_run_var(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || matches!(
            name,
            "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
        )
}

/// The cargo flag that builds into `profile_dir` (`target/release`, `target/debug`, or
/// `target/NAME` of a custom profile).
fn profile_flag(profile_dir: &Path) -> Option<String> {
    match profile_dir.file_name()?.to_str()? {
        "debug" => None,
        "release" => Some("--release".to_owned()),
        name => Some(format!("--profile={name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_comes_from_the_executables_directory() {
        assert_eq!(profile_flag(Path::new("/w/target/debug")), None);
        assert_eq!(
            profile_flag(Path::new("/w/target/release")).as_deref(),
            Some("--release")
        );
        assert_eq!(
            profile_flag(Path::new("/w/target/x86_64-unknown-linux-gnu/bench")).as_deref(),
            Some("--profile=bench")
        );
    }

    #[test]
    fn only_the_variables_cargo_run_sets_are_dropped() {
        assert!(is_cargo_run_var("CARGO_MANIFEST_DIR"));
        assert!(is_cargo_run_var("CARGO_PKG_VERSION"));
        assert!(is_cargo_run_var("CARGO_PRIMARY_PACKAGE"));
        // The user's settings for cargo itself stay.
        assert!(!is_cargo_run_var("CARGO_HOME"));
        assert!(!is_cargo_run_var("CARGO_TARGET_DIR"));
        assert!(!is_cargo_run_var("CARGO_PROFILE_RELEASE_DEBUG"));
    }
}
