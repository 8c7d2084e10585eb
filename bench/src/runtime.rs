//! End-to-end benchmark of the runtime, in process: clients → tenant/env/session actors → flow
//! → durable log → ack. No network; the clients are async tasks on one extra thread.
//!
//! Workload: `TENANTS` tenants with the seed's one-node greeting flow; each client owns one named
//! session and sends messages back to back (closed loop), then a paced pass offers half of the
//! best rate. Memory: sessions are first written through the log directly (no actors), and the
//! log's page cache is filled past its capacity with other sessions' history (a server that has
//! run a while has a full cache); then one message each wakes an actor per session and leaves it
//! idle; the RSS growth over that step, divided by the session count, is the cost of a live idle
//! session.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use tenantry::actors::messages::Inbound;
use tenantry::actors::runtime::{Runtime, RuntimeOptions};
use tenantry::events::codec::GROUP_EVENTS_MAX;
use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::projections::snapshot::SnapshotStore;
use tenantry::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

use crate::harness::{
    dir_bytes, fresh_dir, percentile, rss_bytes, wait_turn, wake_delay_us, write_config,
    ConfigSpec, StopTimer, Switches,
};

/// Tenants the clients are spread over.
const TENANTS: usize = 8;

/// The memory step's warm-up writes history until the log's files have grown by this many times
/// the log's page cache capacity, so that the cache is full before the sessions are woken.
const WARM_CACHE_MULTIPLE: u64 = 3;

/// Sessions the warm-up writes its history to (few, so that the log's in-memory session heads
/// barely grow), each taking one group of [`GROUP_EVENTS_MAX`] events per round.
const WARM_SESSIONS: usize = 256;

/// What to run.
#[derive(Clone, Debug)]
pub struct RuntimeBenchOptions {
    pub clients: Vec<usize>,
    pub duration: Duration,
    pub paced_fraction: f64,
    /// Sessions for the memory measurement (0 skips it).
    pub idle_sessions: usize,
}

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct RuntimeRun {
    pub clients: usize,
    pub paced_msgs_per_s: Option<f64>,
    pub messages: u64,
    pub seconds: f64,
    pub msgs_per_s: f64,
    pub events_per_s: f64,
    pub ack_p50_us: u64,
    pub ack_p99_us: u64,
    /// Paced passes: p99 of the client task's own delay in waking for a message it was free
    /// for (`harness::wake_delay_us`), which `ack_p99_us` includes.
    pub client_wake_delay_p99_us: Option<u64>,
    pub errors: u64,
    /// Context switches of every thread of this process (runtime, log and client threads)
    /// during the pass, per acked message: the thread hops a message costs.
    pub switches_per_msg: f64,
}

/// Memory of live idle sessions.
#[derive(Clone, Debug, Serialize)]
pub struct IdleMemory {
    pub sessions: usize,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub bytes_per_session: f64,
    /// RSS growth per session over the first and the second half of the sessions woken: a
    /// one-off cost of the wake step shows as a first half dearer than the second. The log's
    /// cache is full before either (see `warm_up_events`).
    pub first_half_bytes_per_session: f64,
    pub second_half_bytes_per_session: f64,
    /// The log's page cache capacity (sled's `cache_capacity`), in bytes.
    pub log_cache_bytes: u64,
    /// What the warm-up appended before the `before` sample: events, and the growth of the
    /// log's files, in bytes (at least `WARM_CACHE_MULTIPLE` × the cache).
    pub warm_up_events: u64,
    pub warm_up_log_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuntimeBenchReport {
    pub scenario: &'static str,
    pub tenants: usize,
    /// Events per message of the bench flow (MessageReceived, NodeEntered, ReplySent).
    pub events_per_message: u64,
    /// Events in the log after every step, counted from its tenants' heads: the passes' acked
    /// messages × `events_per_message` (all new: no pass reuses another's message ids) and one
    /// `SessionStarted` per client session, plus the memory step's history and wakes when it
    /// ran.
    pub events_in_log: u64,
    pub runs: Vec<RuntimeRun>,
    pub idle_memory: Option<IdleMemory>,
}

fn ctx_of(i: usize) -> TenantCtx {
    let tenant =
        TenantId::parse(&format!("tenant-{:02}", i % TENANTS)).expect("valid by construction");
    let env = EnvId::parse("prod").expect("valid by construction");
    TenantCtx::new(
        tenant,
        env,
        Some(TeamId::parse("support").expect("valid by construction")),
    )
}

/// Which pass a client runs in and with how many others: its messages' ids are unique to it,
/// so a later pass on the same sessions appends new messages instead of retrying earlier ones.
#[derive(Clone, Copy)]
struct PassOf {
    pass: usize,
    clients: usize,
}

async fn client_loop(
    rt: Runtime,
    c: usize,
    PassOf { pass, clients }: PassOf,
    stop: Arc<AtomicBool>,
    interval: Option<Duration>,
) -> ClientTally {
    let ctx = ctx_of(c);
    let channel = ChannelId::parse("webchat").expect("valid by construction");
    let session = SessionId::parse(&format!("c{clients}-s{c}")).expect("valid by construction");
    let mut latencies = Vec::with_capacity(1 << 14);
    let mut delays = Vec::new();
    let mut free_since = None;
    let mut errors = 0;
    let t0 = tokio::time::Instant::now();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        let due = wait_turn(t0, interval, n, c, clients).await;
        if interval.is_some() {
            delays.extend(wake_delay_us(due, free_since, tokio::time::Instant::now()));
        }
        let scheduled = due.into_std();
        let inbound = Inbound {
            session: Some(session.clone()),
            user: format!("user-{c}"),
            text: format!("hello, I need help with order {n:08}"),
            message_id: Some(format!("p{pass}-c{clients}-{c}-{n}")),
        };
        match rt.send(&ctx, &channel, inbound).await {
            Ok(_) => {
                latencies.push(u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX))
            }
            Err(_) => errors += 1,
        }
        free_since = Some(tokio::time::Instant::now());
        n += 1;
    }
    ClientTally {
        latencies,
        delays,
        errors,
    }
}

/// What one client measured: ack latencies, its own wake-up delays (paced), failed sends.
struct ClientTally {
    latencies: Vec<u64>,
    delays: Vec<u64>,
    errors: u64,
}

fn run_clients(
    rt: &Runtime,
    of: PassOf,
    duration: Duration,
    rate: Option<f64>,
) -> Result<RuntimeRun, String> {
    let clients = of.clients;
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let interval = rate.map(|r| Duration::from_secs_f64(clients as f64 / r));
    let timer = StopTimer::start(duration);
    let stop = timer.stop.clone();
    let switches = Switches::sample("self");
    let started = Instant::now();
    let results = load.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| tokio::spawn(client_loop(rt.clone(), c, of, stop.clone(), interval)))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(out)
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let switches = switches.since("self");
    timer.join();
    let mut latencies = Vec::new();
    let mut delays = Vec::new();
    let mut errors = 0;
    for t in results {
        latencies.extend(t.latencies);
        delays.extend(t.delays);
        errors += t.errors;
    }
    latencies.sort_unstable();
    delays.sort_unstable();
    let messages = latencies.len() as u64;
    Ok(RuntimeRun {
        clients,
        paced_msgs_per_s: rate,
        messages,
        seconds,
        msgs_per_s: messages as f64 / seconds,
        events_per_s: (messages * 3) as f64 / seconds,
        ack_p50_us: percentile(&latencies, 500),
        ack_p99_us: percentile(&latencies, 990),
        client_wake_delay_p99_us: rate.map(|_| percentile(&delays, 990)),
        errors,
        switches_per_msg: switches as f64 / messages.max(1) as f64,
    })
}

/// What [`warm_log_cache`] wrote.
struct WarmUp {
    events: u64,
    log_bytes: u64,
}

/// Appends history to [`WARM_SESSIONS`] sessions `warm-{i}` through the log directly (no
/// actors), in groups of [`GROUP_EVENTS_MAX`] wake-like events, until the log's files have grown
/// by [`WARM_CACHE_MULTIPLE`] × `cache_bytes`: the log's page cache is then full, and later
/// appends replace its pages instead of adding to them, as on a server that has run a while.
fn warm_log_cache(log: &EventLog, cache_bytes: u64) -> Result<WarmUp, String> {
    let channel = ChannelId::parse("webchat").map_err(|e| e.to_string())?;
    let sessions = (0..WARM_SESSIONS)
        .map(|i| SessionId::parse(&format!("warm-{i}")).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let start = dir_bytes(log.dir());
    let goal = cache_bytes.saturating_mul(WARM_CACHE_MULTIPLE);
    let mut seqs = vec![0u64; WARM_SESSIONS];
    let mut events = 0u64;
    let mut round = 0usize;
    while dir_bytes(log.dir()).saturating_sub(start) < goal {
        let pending: Vec<_> = sessions
            .iter()
            .zip(&seqs)
            .enumerate()
            .map(|(i, (session, &seq))| {
                let group = AppendGroup {
                    ctx: ctx_of(i),
                    channel: channel.clone(),
                    session: session.clone(),
                    expected_seq: seq,
                    at_ms: 1,
                    kinds: warm_events(i, round, seq == 0),
                    idempotency: None,
                };
                let log = log.clone();
                load.spawn(async move { log.append(group).await })
            })
            .collect();
        for (p, seq) in pending.into_iter().zip(seqs.iter_mut()) {
            let outcome = load
                .block_on(p)
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            if let AppendOutcome::Appended(a) = outcome {
                events += a.last_seq - a.first_seq + 1;
                *seq = a.last_seq;
            }
        }
        round += 1;
    }
    Ok(WarmUp {
        events,
        log_bytes: dir_bytes(log.dir()).saturating_sub(start),
    })
}

/// One warm-up group: a message, the node it entered and the reply, as a wake writes, repeated
/// (after the session's start in its first group).
fn warm_events(session: usize, round: usize, first: bool) -> Vec<EventKind> {
    (0..GROUP_EVENTS_MAX)
        .map(|k| match k % 3 {
            0 if first && k == 0 => EventKind::SessionStarted {
                user: format!("user-{session}"),
                flow: "bench_flow".into(),
                flow_version: "1.0".into(),
            },
            0 => EventKind::MessageReceived {
                message_id: format!("warm-{session}-{round}-{k}"),
                user: format!("user-{session}"),
                text: format!("hello, I need help with order {round:08}"),
            },
            1 => EventKind::NodeEntered {
                node: "greet".into(),
            },
            _ => EventKind::ReplySent {
                node: "greet".into(),
                text: format!("Welcome to {}!", session % TENANTS),
            },
        })
        .collect()
}

/// Writes `n` sessions through the log, fills the log's cache (see [`warm_log_cache`]), then
/// wakes one actor per session and measures RSS.
fn idle_memory(
    rt: &Runtime,
    log: &EventLog,
    cache_bytes: u64,
    n: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<IdleMemory, String> {
    let channel = ChannelId::parse("webchat").map_err(|e| e.to_string())?;
    for i in 0..n {
        let group = AppendGroup {
            ctx: ctx_of(i),
            channel: channel.clone(),
            session: SessionId::parse(&format!("idle-{i}")).map_err(|e| e.to_string())?,
            expected_seq: 0,
            at_ms: 1,
            kinds: vec![EventKind::SessionStarted {
                user: format!("user-{i}"),
                flow: "bench_flow".into(),
                flow_version: "1.0".into(),
            }],
            idempotency: None,
        };
        log.append_blocking(group).map_err(|e| e.to_string())?;
    }
    progress(&format!("memory: {n} sessions written through the log"));
    let warm = warm_log_cache(log, cache_bytes)?;
    progress(&format!(
        "memory: log cache warmed: {} events, {} MiB of log written ({:.1}× its {} MiB cache)",
        warm.events,
        warm.log_bytes >> 20,
        warm.log_bytes as f64 / cache_bytes.max(1) as f64,
        cache_bytes >> 20
    ));
    let before = rss_bytes("self").unwrap_or(0);
    let load = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let half = n / 2;
    load.block_on(wake(rt, &channel, 0..half))?;
    let middle = rss_bytes("self").unwrap_or(0);
    load.block_on(wake(rt, &channel, half..n))?;
    let after = rss_bytes("self").unwrap_or(0);
    let live = rt.metrics().active_sessions.load(Ordering::Relaxed);
    progress(&format!("memory: {live} session actors live"));
    let per = |from: u64, to: u64, sessions: usize| {
        to.saturating_sub(from) as f64 / sessions.max(1) as f64
    };
    let memory = IdleMemory {
        sessions: n,
        rss_before_bytes: before,
        rss_after_bytes: after,
        bytes_per_session: per(before, after, n),
        first_half_bytes_per_session: per(before, middle, half),
        second_half_bytes_per_session: per(middle, after, n - half),
        log_cache_bytes: cache_bytes,
        warm_up_events: warm.events,
        warm_up_log_bytes: warm.log_bytes,
    };
    progress(&format!(
        "memory: {:.0} bytes per session over the first half, {:.0} over the second",
        memory.first_half_bytes_per_session, memory.second_half_bytes_per_session
    ));
    Ok(memory)
}

impl IdleMemory {
    /// The figure the target is judged on: the dearer of the whole wake and its second half.
    /// An allocator that keeps what it freed (mimalloc) houses the first sessions in what the
    /// warm-up freed, so the whole step can read far below a session's cost (even 0); past that
    /// reserve, the second half pays for its sessions.
    pub fn judged_bytes_per_session(&self) -> f64 {
        self.bytes_per_session
            .max(self.second_half_bytes_per_session)
    }
}

/// Sends one message to each of the sessions `idle-{i}` for `i` in `range` (256 in flight),
/// which wakes an actor for each and leaves it idle.
async fn wake(
    rt: &Runtime,
    channel: &ChannelId,
    range: std::ops::Range<usize>,
) -> Result<(), String> {
    const WINDOW: usize = 256;
    let mut pending = Vec::with_capacity(WINDOW);
    for i in range {
        let rt = rt.clone();
        let channel = channel.clone();
        pending.push(tokio::spawn(async move {
            let inbound = Inbound {
                session: SessionId::parse(&format!("idle-{i}")).ok(),
                user: format!("user-{i}"),
                text: "hi".into(),
                message_id: None,
            };
            rt.send(&ctx_of(i), &channel, inbound).await
        }));
        if pending.len() == WINDOW {
            for p in pending.drain(..) {
                p.await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    for p in pending {
        p.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The client side, on its own thread (as edges would be): the idle-session memory step, then
/// the closed-loop passes and the paced pass at a fraction of the best (the idle sessions stay
/// live meanwhile).
fn drive(
    rt: &Runtime,
    log: &EventLog,
    cache_bytes: u64,
    opts: &RuntimeBenchOptions,
) -> Result<(Vec<RuntimeRun>, Option<IdleMemory>), String> {
    // Memory first, on a heap the clients' passes have not grown yet: RSS counts pages the
    // process takes from the system, so sessions woken after the passes were partly housed in
    // heap those passes had freed (a `--full` run measured 190 bytes per session that way).
    let idle = if opts.idle_sessions > 0 {
        let mut say = |l: &str| eprintln!("bench: {l}");
        Some(idle_memory(
            rt,
            log,
            cache_bytes,
            opts.idle_sessions,
            &mut say,
        )?)
    } else {
        None
    };
    let mut runs = Vec::new();
    for (pass, &clients) in opts.clients.iter().enumerate() {
        let run = run_clients(rt, PassOf { pass, clients }, opts.duration, None)?;
        eprintln!(
            "bench: {clients:>5} clients: {:.0} msgs/s ({:.0} events/s), ack p50 {} us, p99 {} us, {} errors, {:.1} switches/msg",
            run.msgs_per_s, run.events_per_s, run.ack_p50_us, run.ack_p99_us, run.errors, run.switches_per_msg
        );
        runs.push(run);
    }
    let peak = runs
        .iter()
        .max_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s))
        .cloned();
    if let Some(peak) = peak.filter(|_| opts.paced_fraction > 0.0) {
        let rate = peak.msgs_per_s * opts.paced_fraction;
        let of = PassOf {
            pass: opts.clients.len(),
            clients: peak.clients,
        };
        let run = run_clients(rt, of, opts.duration, Some(rate))?;
        eprintln!(
            "bench: paced at {:.0}% of peak ({rate:.0} msgs/s offered): {:.0} msgs/s, ack p50 {} us, p99 {} us, client wake-up delay p99 {} us",
            opts.paced_fraction * 100.0,
            run.msgs_per_s,
            run.ack_p50_us,
            run.ack_p99_us,
            run.client_wake_delay_p99_us.unwrap_or(0)
        );
        runs.push(run);
    }
    Ok((runs, idle))
}

/// Runs every configuration on one runtime over a fresh data dir under `work_dir`.
pub fn run(
    work_dir: &Path,
    opts: &RuntimeBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<RuntimeBenchReport, String> {
    let dir = fresh_dir(work_dir, "runtime")?;
    let spec = ConfigSpec {
        tenants: TENANTS,
        ..ConfigSpec::default()
    };
    let config = write_config(&dir, &spec)?;
    let data = config.server().data_dir.clone();
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let log_opts = LogOptions::default();
    let cache_bytes = log_opts.cache_capacity_bytes;
    let log = EventLog::open(&data.join("log"), &log_opts).map_err(|e| e.to_string())?;
    let snapshots = SnapshotStore::new(data.join("sessions"));
    let counted = log.clone();
    let system = actix_rt::System::new();
    let opts = opts.clone();
    let mut runs = Vec::new();
    let idle = system.block_on(async move {
        let mut rt_opts = RuntimeOptions::from_config(&config);
        // The memory step keeps every idle session live on purpose: room for all of them (and
        // the clients' sessions), so that no limit passivates them early.
        rt_opts.sessions_max = rt_opts
            .sessions_max
            .max(opts.idle_sessions.saturating_mul(2));
        rt_opts.tenant_sessions_max = rt_opts.sessions_max;
        let rt = Runtime::start(&config, log.clone(), snapshots, rt_opts);
        // The clients run on their own thread, as edges would.
        let bench_rt = rt.clone();
        let bench = std::thread::spawn(move || drive(&bench_rt, &log, cache_bytes, &opts));
        // Keep this (the System's) thread free to drive actors while the clients run.
        let outcome = loop {
            if bench.is_finished() {
                break bench
                    .join()
                    .map_err(|_| "bench thread panicked".to_owned())
                    .and_then(|r| r);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        rt.shutdown().await;
        outcome
    })?;
    runs.extend(idle.0);
    if let Some(mem) = &idle.1 {
        progress(&format!(
            "memory: {:.0} bytes per live idle session",
            mem.bytes_per_session
        ));
    }
    let mut events_in_log = 0;
    for i in 0..TENANTS {
        let head = counted.tenant(&ctx_of(i).tenant).head();
        events_in_log += head.map_err(|e| e.to_string())?.map_or(0, |h| h.tenant_seq);
    }
    Ok(RuntimeBenchReport {
        scenario: "runtime_e2e",
        tenants: TENANTS,
        events_per_message: 3,
        events_in_log,
        runs,
        idle_memory: idle.1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_warm_up_writes_past_the_cache_and_leaves_the_history_readable() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOptions {
            cache_capacity_bytes: 256 * 1024,
            ..LogOptions::default()
        };
        let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
        let warm = warm_log_cache(&log, opts.cache_capacity_bytes).unwrap();
        assert!(
            warm.log_bytes >= WARM_CACHE_MULTIPLE * opts.cache_capacity_bytes,
            "{} bytes written",
            warm.log_bytes
        );
        // Whole rounds: every warm session got the same number of full groups.
        let per_round = (WARM_SESSIONS * GROUP_EVENTS_MAX) as u64;
        assert!(warm.events >= per_round && warm.events.is_multiple_of(per_round));
        let last = log
            .scope(&ctx_of(0))
            .session_last_seq(&SessionId::parse("warm-0").unwrap())
            .unwrap();
        assert_eq!(last, warm.events / WARM_SESSIONS as u64);
    }

    #[test]
    fn every_pass_appends_new_messages_rather_than_retrying_an_earlier_passs() {
        let dir = tempfile::tempdir().unwrap();
        let opts = RuntimeBenchOptions {
            clients: vec![4, 4],
            duration: Duration::from_millis(300),
            paced_fraction: 0.5,
            idle_sessions: 0,
        };
        let report = run(dir.path(), &opts, &mut |_| {}).unwrap();
        // Two closed-loop passes with the same clients (so the same sessions), then the paced
        // one at the peak's clients: all three on the same sessions.
        assert_eq!(report.runs.len(), 3);
        assert!(report.runs.iter().all(|r| r.errors == 0 && r.messages > 0));
        let acked: u64 = report.runs.iter().map(|r| r.messages).sum();
        // A message id seen before is answered from its stored ack and appends nothing; each of
        // the 4 sessions started once.
        assert_eq!(report.events_in_log, acked * report.events_per_message + 4);
    }
}
