//! `tenantry migrate --to jetstream`: copy the sled log of `{data_dir}/log` into the JetStream
//! stream, print progress (stderr) and a summary (stdout). The work is in
//! `events::log::replica::migrate`.
//!
//! Exit statuses: 0 every tenant is in the stream and read back the same; 1 a tenant was refused
//! (named, with what to do) or the migration stopped (running it again resumes).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::cluster::{CLUSTER_NODE_CHARS_MAX, LOG_REPLICAS_MAX, LOG_STREAM_CHARS_MAX};
use crate::config::{Config, NatsAuth, NatsConfig, DEFAULT_SUBJECT_PREFIX};
use crate::edge::nats::NatsMetrics;
use crate::events::log::replica::migrate::{
    migrate as copy_log, MigrateReport, SealedTenants, Step,
};
use crate::events::log::{EventLog, LogOptions, OpenError, Replica, ReplicaOptions};
use crate::tenancy::TenantId;

/// The scratch directory under `data_dir` where the copy is read back (removed afterwards).
pub const CHECK_DIR: &str = "migrate-check";

/// Least time between two progress lines of one tenant's records.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Where `migrate` copies the log to.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Target {
    /// The JetStream stream (`[log] stream`) on the servers of `[nats]`.
    Jetstream,
}

/// `tenantry migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The backend to copy `{data_dir}/log` (sled) into.
    #[arg(long, value_enum)]
    pub to: Target,
    /// The stream's name (default: `[log] stream`).
    #[arg(long, value_parser = parse_stream)]
    pub stream: Option<String>,
    /// The stream's replicas when it is created; an existing stream must have as many
    /// (default: `[log] replicas`).
    #[arg(long, value_parser = parse_replicas)]
    pub replicas: Option<usize>,
    /// The NATS server, instead of `[nats] url` (credentials still come from `[nats]`).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// The node name written into the records (default: `[cluster] node`, else `migrate`).
    #[arg(long, value_parser = parse_node)]
    pub node: Option<String>,
}

/// The node name written into the records when neither `--node` nor `[cluster] node` gives one.
pub const DEFAULT_NODE: &str = "migrate";

/// A `--stream` value: what `[log] stream` accepts.
fn parse_stream(raw: &str) -> Result<String, String> {
    token(raw, LOG_STREAM_CHARS_MAX, "[log] stream")
}

/// A `--node` value: what `[cluster] node` accepts.
fn parse_node(raw: &str) -> Result<String, String> {
    token(raw, CLUSTER_NODE_CHARS_MAX, "[cluster] node")
}

/// One NATS subject token of at most `chars_max` characters of `[A-Za-z0-9_-]`.
fn token(raw: &str, chars_max: usize, like: &str) -> Result<String, String> {
    let ok = (1..=chars_max).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "expected 1 to {chars_max} characters of A-Z, a-z, 0-9, _ and - (one NATS subject \
             token, as {like} takes)"
        ))
    }
}

/// A `--replicas` value: what `[log] replicas` accepts.
fn parse_replicas(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(n) if (1..=LOG_REPLICAS_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of replicas from 1 to {LOG_REPLICAS_MAX} (JetStream's limit)"
        )),
    }
}

/// Runs `migrate`: 0 when every tenant is in the stream, 1 when one was refused.
pub fn migrate(args: &MigrateArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let Target::Jetstream = args.to;
    let data_dir = &config.server().data_dir;
    let log = open_sled(&data_dir.join("log"))?;
    let opts = ReplicaOptions {
        stream: args
            .stream
            .clone()
            .unwrap_or_else(|| config.log().stream.clone()),
        replicas: args.replicas.unwrap_or(config.log().replicas),
        node: args
            .node
            .clone()
            .or_else(|| config.cluster().map(|c| c.node.clone()))
            .unwrap_or_else(|| DEFAULT_NODE.to_owned()),
        // One writer, copying: no leases.
        cluster: false,
    };
    let nats = nats_config(args, config)?;
    eprintln!(
        "migrate: connecting to stream {} at {}",
        opts.stream,
        nats.url_for_display()
    );
    let replica = connect(&opts, &nats, data_dir)?;
    // Sealed tenants: a single node keeps this data dir's secrets; a cluster gets their keys
    // in its key stream, which needs the cluster key.
    let shared = match (config.cluster(), crate::cluster::key::load(data_dir)?) {
        (Some(_), Some(key)) => Some(replica.shared_keys(key)?),
        _ => None,
    };
    let local = match &shared {
        Some(_) => crate::events::keyring::Keyring::for_data_dir(data_dir, false)?,
        None => None,
    };
    let share = |tenant: &TenantId| -> Result<(), String> {
        let (Some(keys), Some(ring)) = (&shared, &local) else {
            return Err(
                "this data dir has no master key, so its key encryption keys cannot be \
                 read (set TENANTRY_MASTER_KEY or restore {data_dir}/master.key)"
                    .into(),
            );
        };
        ring.copy_to_shared(tenant, keys)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let sealed = match (config.cluster(), &shared) {
        (None, _) => SealedTenants::Copy,
        (Some(_), Some(_)) => SealedTenants::Share(&share),
        (Some(_), None) => SealedTenants::Refuse,
    };
    let mut printer = Printer::default();
    let report = copy_log(
        &log,
        replica,
        &data_dir.join(CHECK_DIR),
        &sealed,
        &mut |tenant, step| {
            printer.step(tenant, &step);
        },
    )?;
    print!("{}", summary(&report, &opts.stream, &data_dir.join("log")));
    Ok(if report.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Opens the sled log: a missing directory is an error, not a new empty log.
fn open_sled(dir: &Path) -> anyhow::Result<EventLog> {
    if !dir.is_dir() {
        anyhow::bail!(
            "no event log at {}: check server.data_dir in the config",
            dir.display()
        );
    }
    EventLog::open(dir, &LogOptions::default()).map_err(|e| match e {
        OpenError::InUse(_) => anyhow::anyhow!(
            "the data dir's log {} is in use by a running server: stop it first (the copy \
             must see a log nobody appends to)",
            dir.display()
        ),
        other => other.into(),
    })
}

/// `[nats]`, with `--nats` as its URL when given.
fn nats_config(args: &MigrateArgs, config: &Config) -> anyhow::Result<NatsConfig> {
    match (config.nats(), &args.nats) {
        (Some(nats), None) => Ok(nats.clone()),
        (Some(nats), Some(url)) => Ok(NatsConfig {
            url: url.clone(),
            ..nats.clone()
        }),
        (None, Some(url)) => Ok(NatsConfig {
            url: url.clone(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            auth: NatsAuth::None,
        }),
        (None, None) => anyhow::bail!(
            "migrate --to jetstream needs the NATS servers: add a [nats] section with url to {}, \
             or pass --nats URL",
            config.source().display()
        ),
    }
}

fn connect(opts: &ReplicaOptions, nats: &NatsConfig, data_dir: &Path) -> anyhow::Result<Replica> {
    let metrics = Arc::new(NatsMetrics::default());
    Replica::connect(opts, || async move {
        crate::edge::nats::connect(nats, data_dir, metrics)
            .await
            .map_err(|e| e.to_string())
    })
    .with_context(|| format!("connecting to stream {}", opts.stream))
}

/// Prints the steps on stderr, the records of a tenant at most once per [`PROGRESS_EVERY`].
#[derive(Default)]
struct Printer {
    last_records_line: Option<Instant>,
}

impl Printer {
    fn step(&mut self, tenant: &TenantId, step: &Step<'_>) {
        match step {
            Step::Verified { events } => {
                self.last_records_line = Some(Instant::now());
                eprintln!("migrate {tenant}: chain verified, {events} events");
            }
            Step::AlreadyCopied => eprintln!("migrate {tenant}: already in the stream; skipped"),
            Step::Purged => eprintln!(
                "migrate {tenant}: the stream held an unfinished or older copy; purged it to \
                 copy again"
            ),
            Step::Published { records, bytes } => {
                let due = self
                    .last_records_line
                    .is_none_or(|at| at.elapsed() >= PROGRESS_EVERY);
                if due {
                    self.last_records_line = Some(Instant::now());
                    eprintln!("migrate {tenant}: {records} records published ({bytes} bytes)");
                }
            }
            Step::Copied { events, records } => {
                eprintln!("migrate {tenant}: copied, {events} events in {records} records");
            }
            Step::Refused(e) => eprintln!("migrate {tenant}: refused: {e}"),
            Step::Checked { events } => {
                eprintln!(
                    "migrate {tenant}: read back from the stream, {events} events, same head"
                );
            }
        }
    }
}

/// The summary printed at the end.
fn summary(report: &MigrateReport, stream: &str, sled_dir: &Path) -> String {
    let mut out = format!(
        "migrated {} into stream {stream}: {} tenants copied ({} events, {} records, {} \
         bytes), {} already there, {} refused\n",
        sled_dir.display(),
        report.copied.len(),
        report.events,
        report.records,
        report.bytes,
        report.skipped.len(),
        report.refused.len()
    );
    for refused in &report.refused {
        out.push_str(&format!("refused: {refused}\n"));
    }
    if report.refused.is_empty() {
        out.push_str(&format!(
            "next: set [log] backend = \"jetstream\", and move {} aside (keep it as a backup): a \
             node keeps only its cache of the stream there\n",
            sled_dir.display()
        ));
    } else {
        out.push_str(
            "the other tenants are in the stream; fix the refused ones and run migrate again\n",
        );
    }
    out
}
