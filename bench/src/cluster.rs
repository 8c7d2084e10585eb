//! Benchmark of the log's backends side by side in one run: the `log` scenario's driver (same
//! appenders, groups and tenants; see [`crate::log`]) on (a) the sled backend, (b) the JetStream
//! backend on one nats-server, (c) the JetStream backend on three clustered nats-servers with an
//! R3 stream. The servers are nats-server 2.15 with `sync_interval: always`, started by the
//! bench on free loopback ports, their stores under the bench's directory; every run gets a
//! fresh local directory and a fresh stream (deleted after it, to keep the disk free).
//!
//! Failover: on the 3-node cluster, appenders append to a fresh R3 stream; the stream's leader
//! nats-server is killed (SIGKILL) mid-run, appends that fail meanwhile are retried (same group,
//! same message id), and the figure is the time from the kill to the ack of the first append
//! attempted after it ([`AckWatch`]). Each further trial first restarts the server killed by the
//! one before (the next R3 stream needs three servers), then kills the new stream's leader.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::context::DeleteStreamErrorKind;
use serde::Serialize;

use tenantry::events::log::{EventLog, LogOptions, Replica, ReplicaOptions};

use crate::harness::{fresh_dir, jetstream_binary, percentile, server_version, JetStreamCluster};
use crate::log::{self, AckWatch, AppendRun, GROUP_EVENTS, TENANTS};

/// The peers' figures of issue #12 for one nats-server (2 cores, loopback, 2.15.1,
/// `sync_interval: always`): publish + await each ack, 512 acks outstanding, 64 events framed
/// per message with 64 outstanding.
pub const ANCHOR_ONE_NODE: &str = "1.8k/3.9k msgs/s, 142k framed ev/s";
/// The same for three nodes, R3.
pub const ANCHOR_R3: &str = "0.6k/33.6k msgs/s, 275k framed ev/s";
/// Longest wait, after the leader's kill, for the first ack before a failover trial gives up.
pub const FAILOVER_WAIT_MAX: Duration = Duration::from_secs(30);
/// A failover trial goes on this long after the first ack, to see appends flow again.
const FAILOVER_TAIL: Duration = Duration::from_millis(500);
/// How long to wait for a stream to have a leader.
const LEADER_WAIT: Duration = Duration::from_secs(30);
/// The name the bench's log writes into its records.
const NODE: &str = "bench";

/// How long and how wide to measure.
#[derive(Clone, Debug)]
pub struct ClusterBenchOptions {
    /// Closed-loop passes per backend, as in the log scenario.
    pub appenders: Vec<usize>,
    pub log: LogOptions,
    /// Measured time per pass; also each failover trial's time before the kill.
    pub duration: Duration,
    /// Appenders of the failover trials.
    pub failover_appenders: usize,
    /// Failover trials (0 skips them).
    pub failover_trials: usize,
    /// Only the failover trials: no backend's passes (the report's `backends` is empty).
    pub failover_only: bool,
}

/// One backend's passes.
#[derive(Clone, Debug, Serialize)]
pub struct BackendRuns {
    /// `sled`, `jetstream-1` or `jetstream-r3`.
    pub backend: &'static str,
    /// nats-servers (0 for sled).
    pub servers: usize,
    /// The stream's replicas (0 for sled).
    pub replicas: usize,
    /// Every pass; `disk_bytes_per_event` counts the local directory only (for JetStream, the
    /// node's cache, not the stream's store).
    pub runs: Vec<AppendRun>,
    pub best_appenders: usize,
    pub best_events_per_s: f64,
    pub best_ack_p99_us: u64,
    /// `best_events_per_s` over the sled backend's, same run.
    pub ratio_to_sled: f64,
}

/// One failover trial.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverRun {
    pub appenders: usize,
    /// The server killed: the stream's leader at the time.
    pub killed: String,
    /// When it was killed, milliseconds since the Unix epoch (to find the moment in the
    /// servers' logs, `n*/nats.log` under the scenario's directory).
    pub killed_at_unix_ms: u64,
    /// The stream's leader after the kill, if one was found.
    pub new_leader: Option<String>,
    /// From the kill to the ack of the first append attempted after it; `None` when none was
    /// acked within [`FAILOVER_WAIT_MAX`].
    pub kill_to_ack_ms: Option<f64>,
    /// Appends retried after failing (the log refuses appends while it recovers).
    pub retries: u64,
    pub groups: u64,
    pub seconds: f64,
    pub ack_p99_us: u64,
    pub ack_max_us: u64,
}

/// Everything one run of the `cluster` scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterBenchReport {
    pub scenario: &'static str,
    /// `nats-server --version` of the JetStream servers.
    pub nats_server: String,
    pub group_events: usize,
    pub tenants: usize,
    /// sled, JetStream 1 node, JetStream 3 nodes R3, in that order.
    pub backends: Vec<BackendRuns>,
    /// The failover trials, in order.
    pub failover: Vec<FailoverRun>,
}

/// Runs every backend's passes (and the failover trials) in directories under `work_dir`.
/// `progress` receives one line per finished step.
pub fn run(
    work_dir: &std::path::Path,
    opts: &ClusterBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ClusterBenchReport, String> {
    let binary = jetstream_binary()?;
    let nats_server = server_version(&binary);
    progress(&format!("JetStream servers: {nats_server}"));
    let mut backends = Vec::new();
    if opts.failover_only {
        let mut cluster = JetStreamCluster::start(&fresh_dir(work_dir, "jetstream-r3")?, 3)?;
        let failover = failover_trials(work_dir, &mut cluster, opts, progress)?;
        return Ok(ClusterBenchReport {
            scenario: "cluster_log_append",
            nats_server,
            group_events: GROUP_EVENTS,
            tenants: TENANTS,
            backends,
            failover,
        });
    }
    let mut runs = Vec::new();
    for &appenders in &opts.appenders {
        let dir = fresh_dir(work_dir, &format!("cluster-sled-{appenders}"))?;
        let log = EventLog::open(&dir, &opts.log).map_err(|e| e.to_string())?;
        runs.push(pass("sled", &dir, log, appenders, opts, progress)?);
    }
    backends.push(backend("sled", 0, 0, runs));

    let mut failover = Vec::new();
    for (label, servers, replicas) in [("jetstream-1", 1, 1), ("jetstream-r3", 3, 3)] {
        let mut cluster = JetStreamCluster::start(&fresh_dir(work_dir, label)?, servers)?;
        let urls = cluster.urls();
        let mut runs = Vec::new();
        for &appenders in &opts.appenders {
            let stream = format!(
                "BENCH_{}_A{appenders}",
                label.replace('-', "_").to_uppercase()
            );
            let dir = fresh_dir(work_dir, &format!("cluster-{label}-{appenders}"))?;
            let log = open_jetstream(&dir, &urls, &stream, replicas, &opts.log)?;
            let run = pass(label, &dir, log, appenders, opts, progress);
            delete_stream(&urls, &stream)?;
            runs.push(run?);
        }
        backends.push(backend(label, servers, replicas, runs));
        if replicas == 3 {
            failover = failover_trials(work_dir, &mut cluster, opts, progress)?;
        }
    }
    let sled = backends[0].best_events_per_s.max(f64::MIN_POSITIVE);
    for b in &mut backends {
        b.ratio_to_sled = b.best_events_per_s / sled;
    }
    Ok(ClusterBenchReport {
        scenario: "cluster_log_append",
        nats_server,
        group_events: GROUP_EVENTS,
        tenants: TENANTS,
        backends,
        failover,
    })
}

/// One closed-loop pass of the log scenario's driver on `log`.
fn pass(
    label: &str,
    dir: &std::path::Path,
    log: EventLog,
    appenders: usize,
    opts: &ClusterBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<AppendRun, String> {
    let run = log::drive(dir, log, appenders, opts.duration, None)
        .map_err(|e| format!("{label}, {appenders} appenders: {e}"))?;
    progress(&format!(
        "{label:<12} {appenders:>4} appenders: {:.0} events/s, ack p50 {} us, p99 {} us",
        run.events_per_s, run.ack_p50_us, run.ack_p99_us
    ));
    Ok(run)
}

/// A backend's passes with its best (ratio filled in later).
fn backend(
    label: &'static str,
    servers: usize,
    replicas: usize,
    runs: Vec<AppendRun>,
) -> BackendRuns {
    let best = runs
        .iter()
        .max_by(|a, b| a.events_per_s.total_cmp(&b.events_per_s));
    BackendRuns {
        backend: label,
        servers,
        replicas,
        best_appenders: best.map_or(0, |b| b.appenders),
        best_events_per_s: best.map_or(0.0, |b| b.events_per_s),
        best_ack_p99_us: best.map_or(0, |b| b.ack_p99_us),
        ratio_to_sled: 0.0,
        runs,
    }
}

/// A JetStream-backed log in `dir` on a fresh `stream` of the servers at `urls`.
fn open_jetstream(
    dir: &std::path::Path,
    urls: &[String],
    stream: &str,
    replicas: usize,
    log_opts: &LogOptions,
) -> Result<EventLog, String> {
    let replica_opts = ReplicaOptions {
        stream: stream.to_owned(),
        replicas,
        node: NODE.to_owned(),
        // A single writer: appends for every tenant, no leases.
        cluster: false,
    };
    let urls = urls.to_vec();
    let replica = Replica::connect(&replica_opts, || async move {
        async_nats::ConnectOptions::new()
            .connect(urls)
            .await
            .map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?;
    EventLog::open_replicated(dir, log_opts, replica).map_err(|e| e.to_string())
}

/// `opts.failover_trials` failover trials on the 3-node `cluster`, each after restarting the
/// server the one before killed.
fn failover_trials(
    work_dir: &std::path::Path,
    cluster: &mut JetStreamCluster,
    opts: &ClusterBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<FailoverRun>, String> {
    let mut trials: Vec<FailoverRun> = Vec::new();
    for trial in 1..=opts.failover_trials {
        if let Some(before) = trials.last() {
            cluster.restart(&before.killed)?;
        }
        let run = failover_run(work_dir, cluster, trial, opts)?;
        progress(&format!(
            "failover {trial}/{}: {} killed (at {} ms after the epoch), kill to first ack {}, {} \
             retries",
            opts.failover_trials,
            run.killed,
            run.killed_at_unix_ms,
            run.kill_to_ack_ms
                .map_or_else(|| "never".to_owned(), |ms| format!("{ms:.0} ms")),
            run.retries
        ));
        trials.push(run);
    }
    Ok(trials)
}

/// Appends to a fresh R3 stream, kills its leader after `opts.duration`, and times the way
/// back to an ack (see the module docs).
fn failover_run(
    work_dir: &std::path::Path,
    cluster: &mut JetStreamCluster,
    trial: usize,
    opts: &ClusterBenchOptions,
) -> Result<FailoverRun, String> {
    let appenders = opts.failover_appenders;
    let stream = &format!("BENCH_FAILOVER_{trial}");
    let urls = cluster.urls();
    let dir = fresh_dir(work_dir, &format!("cluster-failover-{trial}"))?;
    let log = open_jetstream(&dir, &urls, stream, 3, &opts.log)?;
    let killed = stream_leader(&urls, stream, None)?
        .ok_or_else(|| format!("stream {stream} has no leader within {LEADER_WAIT:?}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let watch = Arc::new(AckWatch::default());
    let started = Instant::now();
    let driver = {
        let (stop, watch) = (stop.clone(), watch.clone());
        std::thread::spawn(move || log::drive_until(log, appenders, &stop, None, Some(&watch)))
    };
    std::thread::sleep(opts.duration);
    let killing = match cluster.server_mut(&killed) {
        Some(server) => {
            let at = (Instant::now(), SystemTime::now());
            server.kill().map(|()| at)
        }
        None => Err(format!(
            "the stream's leader {killed:?} is none of the bench's servers"
        )),
    };
    watch.mark();
    if let Ok((kill_at, _)) = killing {
        while watch.first_ack().is_none() && kill_at.elapsed() < FAILOVER_WAIT_MAX {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(FAILOVER_TAIL);
    }
    // Stopped whatever happened: the appenders must not outlive the trial.
    stop.store(true, Ordering::Relaxed);
    let latencies = driver
        .join()
        .map_err(|_| "the failover run's appenders panicked".to_owned())?;
    let seconds = started.elapsed().as_secs_f64();
    let (kill_at, kill_wall) = killing?;
    let mut latencies = latencies?;
    latencies.sort_unstable();
    let survivors = cluster.urls_alive();
    let new_leader = stream_leader(&survivors, stream, Some(&killed)).unwrap_or(None);
    delete_stream(&survivors, stream)?;
    Ok(FailoverRun {
        appenders,
        killed,
        killed_at_unix_ms: kill_wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        new_leader,
        kill_to_ack_ms: watch
            .first_ack()
            .map(|at| at.saturating_duration_since(kill_at).as_secs_f64() * 1000.0),
        retries: watch.retries(),
        groups: latencies.len() as u64,
        seconds,
        ack_p99_us: percentile(&latencies, 990),
        ack_max_us: latencies.last().copied().unwrap_or(0),
    })
}

/// A runtime for the bench's own NATS requests (the log's client has its own).
fn client_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The server name of `stream`'s leader (other than `not`), waiting up to [`LEADER_WAIT`] for
/// one; `None` if there is none by then.
fn stream_leader(
    urls: &[String],
    stream: &str,
    not: Option<&str>,
) -> Result<Option<String>, String> {
    client_runtime()?.block_on(async {
        let client = async_nats::connect(urls.to_vec())
            .await
            .map_err(|e| format!("connecting to {urls:?}: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + LEADER_WAIT;
        while Instant::now() < deadline {
            if let Ok(mut found) = js.get_stream(stream).await {
                if let Ok(info) = found.info().await {
                    let leader = info.cluster.as_ref().and_then(|c| c.leader.clone());
                    if let Some(leader) = leader.filter(|l| Some(l.as_str()) != not) {
                        return Ok(Some(leader));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    })
}

/// Deletes `stream` (its records are not needed after the run; the disk is), retrying for up
/// to [`LEADER_WAIT`]: right after a failover the cluster may still be electing its meta
/// leader, and a request then times out.
fn delete_stream(urls: &[String], stream: &str) -> Result<(), String> {
    client_runtime()?.block_on(async {
        let client = async_nats::connect(urls.to_vec())
            .await
            .map_err(|e| format!("connecting to {urls:?}: {e}"))?;
        let js = async_nats::jetstream::new(client);
        let deadline = Instant::now() + LEADER_WAIT;
        let mut retried = false;
        loop {
            match js.delete_stream(stream).await {
                Ok(_) => return Ok(()),
                // A timed-out attempt may have deleted it.
                Err(e) if retried && e.to_string().contains("not found") => return Ok(()),
                Err(e)
                    if Instant::now() < deadline && e.kind() == DeleteStreamErrorKind::Request =>
                {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(format!("deleting stream {stream}: {e}")),
            }
        }
    })
}
