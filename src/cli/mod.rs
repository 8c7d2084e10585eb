//! The `tenantry` command line (clap): parse arguments, load config, call into the library. No
//! logic. `main.rs` only calls [`main`].
//!
//! Files: this one (the command tree and its dispatch), `serve` (start and stop the server),
//! `read_models` (`usage`, `rebuild`), `audit` (`replay`, `export`, `verify`), `remote`
//! (`--server URL`: those commands through a running server's HTTP API), `secrets`
//! (`secrets`, `token`, `keygen`), `keys` (`keys export-pubkey`), `tenant` (`tenant delete`),
//! `retention` (`trim`), `erase` (`erase`). The benchmarks are their own crate (`bench/`,
//! `tenantry-bench`).

pub mod audit;
mod cluster;
mod erase;
pub mod keys;
pub mod migrate;
mod read_models;
pub mod remote;
mod retention;
pub mod secrets;
mod serve;
pub mod tenant;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, LoadOptions};

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
    /// models, folding the log up to date first. Reads the data dir (no running server), or
    /// goes through a running server with --server URL.
    Usage {
        #[arg(long)]
        tenant: crate::tenancy::TenantId,
        /// Only this environment (default: all).
        #[arg(long)]
        env: Option<crate::tenancy::EnvId>,
        /// Group rows by team, channel (within team) or UTC day.
        #[arg(long, value_enum, default_value_t = UsageGroup::Team)]
        by: UsageGroup,
        #[arg(long, value_enum, default_value_t = TableOrJson::Table)]
        format: TableOrJson,
        #[command(flatten)]
        through: remote::ServerArgs,
    },
    /// Drop and re-fold the read models (usage, sessions) from the log, with progress; with
    /// --snapshots also rewrite every session's CBOR snapshot from the log. Offline.
    Rebuild {
        /// Only this tenant (default: every tenant in the log).
        #[arg(long)]
        tenant: Option<crate::tenancy::TenantId>,
        /// Also rebuild the CBOR session snapshots.
        #[arg(long)]
        snapshots: bool,
        /// Tenants rebuilt at once, each on a thread of its own (default: one per core, at
        /// most one per tenant); the longest logs start first.
        #[arg(long, value_name = "N")]
        jobs: Option<std::num::NonZeroUsize>,
    },
    /// Manage secrets (encrypted at rest under the data dir): set (value on stdin), get, list,
    /// delete, in `--global`, `--tenant T` or `--tenant T --team M`.
    Secrets(secrets::SecretsArgs),
    /// Mint an HS256 JWT for the HTTP API, signed with env TENANTRY_SIGNING_KEY else the secret
    /// global/signing_key (with --kid K: the secret global/signing_key.K); prints only the token.
    Token(secrets::TokenArgs),
    /// Print a fresh random JWT signing key (256 bits, base64url, 43 characters), e.g.
    /// `export TENANTRY_SIGNING_KEY=$(tenantry keygen)` or
    /// `tenantry keygen | tenantry secrets set --global signing_key`.
    Keygen,
    /// The chain head signing key (made by `serve` as the secret global/chain_head_key):
    /// `export-pubkey` prints its public key for `verify --pubkey`.
    Keys(keys::KeysArgs),
    /// Print a tenant's or a session's events as a timeline (or JSON), a session's state at a
    /// seq (--at), or a what-if re-run of a session with another flow file (--with-flow; exits 1
    /// when it diverges). Reads the data dir (no running server), or goes through a running
    /// server with --server URL (not --at, --with-flow).
    Replay(audit::ReplayArgs),
    /// Stream a tenant's audit trail as JSONL or CSV with a manifest (chain hashes and stored
    /// bodies included, for `verify`). Offline, or through a running server with --server URL.
    /// Ctrl-C stops it and prints how to resume.
    Export(audit::ExportArgs),
    /// Check an export file, or a tenant's log (--tenant), against the hash chain. Exit 0
    /// intact, 1 a problem (the first one is named: line, tenant_seq, what), 2 cannot verify.
    /// --tenant goes through a running server with --server URL.
    Verify(audit::VerifyArgs),
    /// The cluster (JetStream log backend): `status` lists the stream, the live nodes and each
    /// tenant's owner. Works while the cluster runs.
    Cluster(cluster::ClusterArgs),
    /// Copy the sled log of the data dir into the JetStream stream (`--to jetstream`): every
    /// tenant's chain verified first, the copy read back after; resumable. Offline. Exit 0 every
    /// tenant is in the stream, 1 one was refused (named) or the copy stopped.
    Migrate(migrate::MigrateArgs),
    /// Tenants' data: `delete T` removes every event, session, idempotency record, read model,
    /// snapshot and secret of tenant T (offboarding) and prints what it freed. Offline.
    Tenant(tenant::TenantArgs),
    /// Trim the tenants that have a `retention` (all, or --tenant T) as `serve` does hourly:
    /// their frames older than now (or --as-of TIME) minus the retention, re-anchoring the
    /// chain. Offline. Exit 1 when a tenant's trim failed.
    Trim(retention::TrimArgs),
    /// Erase one session (--session S) or a user's sessions (--user U) of an env by
    /// crypto-shredding: their data keys are destroyed, their events keep only non-personal
    /// fields (`"erased": true`), the chain still verifies. Offline; sled backend only.
    Erase(erase::EraseArgs),
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

/// The `tenantry` binary: parse the arguments, run the command, map an error to exit 1.
pub fn main() -> ExitCode {
    init_tracing();
    // sled may panic on damaged files in its own threads: exit clearly rather than hang.
    crate::events::log::contain::install_panic_hook();
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

/// When `result` failed because a running server holds the data dir, says how to go through
/// it instead (`--server URL`).
fn with_in_use_hint(
    result: anyhow::Result<ExitCode>,
    config: &Config,
    command: &str,
) -> anyhow::Result<ExitCode> {
    result.map_err(|e| {
        let in_use = e
            .chain()
            .any(|c| matches!(c.downcast_ref(), Some(crate::audit::AuditError::InUse(_))));
        if in_use {
            anyhow::anyhow!("{e:#}; {}", remote::in_use_hint(config, command))
        } else {
            e
        }
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => serve::serve(&cli.config),
        Command::CheckConfig => {
            let config = load_config(&cli.config)?;
            print!("{}", config.summary());
            Ok(ExitCode::SUCCESS)
        }
        Command::Secrets(args) => {
            let config = load_config(&cli.config)?;
            let (mut stdin, mut stdout) = (std::io::stdin().lock(), std::io::stdout().lock());
            let data_dir = &config.server().data_dir;
            secrets::secrets(&args, data_dir, &mut stdin, &mut stdout)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            if let Some(remote) = remote::Remote::from_args(&args.through, &args.tenant)? {
                return audit::replay_through(&args, &remote);
            }
            let config = load_config(&cli.config)?;
            let replayed = audit::replay(&args, &config).map_err(anyhow::Error::new);
            with_in_use_hint(replayed, &config, "replay")
        }
        Command::Export(args) => {
            if let Some(remote) = remote::Remote::from_args(&args.through, &args.tenant)? {
                return audit::export_through(&args, &remote);
            }
            let config = load_config(&cli.config)?;
            let exported = audit::export(&args, &config).map_err(anyhow::Error::new);
            with_in_use_hint(exported, &config, "export")
        }
        Command::Verify(args) => {
            if let Some(tenant) = &args.tenant {
                match remote::Remote::from_args(&args.through, tenant) {
                    Ok(Some(remote)) => return Ok(audit::verify_through(&remote)),
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return Ok(ExitCode::from(audit::EXIT_UNUSABLE));
                    }
                }
            }
            // `verify FILE` needs no config; an unusable config is "cannot verify" (exit 2).
            let config = if args.needs_config() {
                match load_config(&cli.config) {
                    Ok(config) => Some(config),
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return Ok(ExitCode::from(audit::EXIT_UNUSABLE));
                    }
                }
            } else {
                None
            };
            Ok(audit::verify(&args, config.as_ref()))
        }
        Command::Migrate(args) => migrate::migrate(&args, &load_config(&cli.config)?),
        Command::Tenant(args) => tenant::run(&args, &load_config(&cli.config)?),
        Command::Erase(args) => erase::run(&args, &load_config(&cli.config)?),
        Command::Token(args) => {
            let config = load_config(&cli.config)?;
            let now = std::time::SystemTime::now();
            secrets::token(&args, &config, now, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Cluster(args) => cluster::run(&cli.config, &args),
        Command::Keygen => {
            secrets::keygen(&mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(args) => {
            keys::keys(&args, &load_config(&cli.config)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Usage {
            tenant,
            env,
            by,
            format,
            through,
        } => {
            if let Some(remote) = remote::Remote::from_args(&through, &tenant)? {
                return read_models::usage_through(&remote, &tenant, env.as_ref(), by, format);
            }
            let config = load_config(&cli.config)?;
            let usage = read_models::usage(&config, &tenant, env.as_ref(), by, format);
            with_in_use_hint(usage, &config, "usage")
        }
        Command::Trim(args) => retention::trim(&args, &load_config(&cli.config)?),
        Command::Rebuild {
            tenant,
            snapshots,
            jobs,
        } => read_models::rebuild(&cli.config, tenant, snapshots, jobs),
    }
}
