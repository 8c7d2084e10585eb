//! Benchmark of the durable event log against raw sled, measured in the same run.
//!
//! Workload: each appender owns one session (sessions spread over `TENANTS` tenants that reuse
//! the same session ids) and appends groups shaped like one inbound message: `MessageReceived`,
//! `NodeEntered`, `ReplySent`, `StateSet` (about 200 bytes each once encoded), idempotent by
//! message id. An append is timed from the call to the durable ack.
//!
//! Baseline: the same encoded event bytes, one sled key per event, written by one thread with
//! `apply_batch` of `BASELINE_BATCH` events, `flush`, and `fdatasync`: what sled itself can make
//! durable per second on this machine, with none of the log's work.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use tenantry::events::codec::encode_body;
use tenantry::events::log::{
    AppendError, AppendGroup, AppendOutcome, EventLog, Idempotency, LogOptions,
};
use tenantry::events::schema::{Event, EventKind};
use tenantry::tenancy::{ChannelId, SessionId, TenantCtx, TenantId};

use crate::harness::{dir_bytes, fresh_dir, percentile, wait_turn, StopTimer};

/// Tenants the appenders are spread over.
pub const TENANTS: usize = 8;
/// Events per sled batch in the raw baseline (the order of the log's group-commit batches).
const BASELINE_BATCH: usize = 512;
/// Events per append group.
pub const GROUP_EVENTS: usize = 4;

/// How long and how wide to measure.
#[derive(Clone, Debug)]
pub struct LogBenchOptions {
    pub appenders: Vec<usize>,
    /// The log's tuning under test.
    pub log: LogOptions,
    /// Measured time per appender count.
    pub duration: Duration,
    /// Also run a paced pass at this fraction of the widest run's peak, for latency under load.
    pub paced_fraction: f64,
}

/// One measured configuration.
#[derive(Clone, Debug, Serialize)]
pub struct AppendRun {
    pub appenders: usize,
    /// Target rate for paced runs (groups/s); `None` for closed-loop runs at full speed.
    pub paced_groups_per_s: Option<f64>,
    pub groups: u64,
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub groups_per_s: f64,
    pub ack_p50_us: u64,
    pub ack_p99_us: u64,
    pub ack_max_us: u64,
    /// Disk bytes per event (sled directory size / events) after the run.
    pub disk_bytes_per_event: f64,
    /// sled writes the log's stager staged per appended group (its `sled_writes` metric over the
    /// groups acked): the keys an append costs, the log's main cost.
    pub sled_writes_per_group: f64,
}

/// A baseline: the raw-sled one, or the disk's fdatasync floor.
#[derive(Clone, Debug, Serialize)]
pub struct BaselineRun {
    pub events: u64,
    pub seconds: f64,
    pub events_per_s: f64,
    pub batch_events: usize,
    pub disk_bytes_per_event: f64,
}

/// Everything one run of the `log` scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct LogBenchReport {
    pub scenario: &'static str,
    pub event_bytes_avg: f64,
    pub group_events: usize,
    pub tenants: usize,
    pub baseline: BaselineRun,
    /// The disk's floor for group commit: the same bytes appended to a plain file, one
    /// `fdatasync` per batch. No log can ack durably faster on this disk.
    pub floor: BaselineRun,
    pub runs: Vec<AppendRun>,
    /// Most groups per commit batch in this run.
    pub batch_groups_max: usize,
    /// Best closed-loop events/s divided by the baseline's events/s.
    pub ratio_to_baseline: f64,
    /// Best closed-loop events/s divided by the floor's events/s.
    pub ratio_to_floor: f64,
}

fn id<T: std::str::FromStr>(raw: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    raw.parse().expect("bench ids are valid by construction")
}

fn kinds(n: u64) -> Vec<EventKind> {
    let text = format!("hello, I need help with order {n:08}, it has not arrived yet");
    vec![
        EventKind::MessageReceived {
            message_id: format!("m{n}"),
            user: "user-0001".into(),
            text,
        },
        EventKind::NodeEntered {
            node: "greet".into(),
        },
        EventKind::ReplySent {
            node: "greet".into(),
            text: "Welcome to ACME Support! How can I help?".into(),
        },
        EventKind::StateSet {
            key: "last_topic".into(),
            value: "order status".into(),
        },
    ]
}

fn sample_events(count: usize) -> Vec<Vec<u8>> {
    (0..count as u64)
        .flat_map(|n| {
            kinds(n)
                .into_iter()
                .enumerate()
                .map(move |(i, kind)| Event {
                    id: uuid::Uuid::now_v7(),
                    tenant: id("tenant-03"),
                    env: id("prod"),
                    team: id("support"),
                    channel: id("webchat"),
                    session: id(&format!("session-{n:06}")),
                    seq: 10 + i as u64,
                    tenant_seq: 1000 + n * 4 + i as u64,
                    at_ms: 1_760_000_000_000,
                    kind,
                })
        })
        .map(|e| encode_body(&e))
        .collect()
}

/// Raw sled: the same bytes, one key per event, batched, flushed and fdatasynced.
fn baseline(dir: &Path, duration: Duration) -> Result<BaselineRun, String> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(LogOptions::default().cache_capacity_bytes)
        .mode(sled::Mode::HighThroughput)
        .open()
        .map_err(|e| e.to_string())?;
    let data = File::open(dir.join("db")).map_err(|e| e.to_string())?;
    let bodies = sample_events(BASELINE_BATCH / GROUP_EVENTS);
    let prefix = b"tenant-03\0L";
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < duration {
        let mut batch = sled::Batch::default();
        for body in &bodies {
            let mut key = prefix.to_vec();
            key.extend_from_slice(&n.to_be_bytes());
            batch.insert(key, body.as_slice());
            n += 1;
        }
        db.apply_batch(batch).map_err(|e| e.to_string())?;
        db.flush().map_err(|e| e.to_string())?;
        data.sync_data().map_err(|e| e.to_string())?;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(db);
    Ok(BaselineRun {
        events: n,
        seconds,
        events_per_s: n as f64 / seconds,
        batch_events: BASELINE_BATCH,
        disk_bytes_per_event: dir_bytes(dir) as f64 / n.max(1) as f64,
    })
}

/// The fdatasync floor: the baseline's bytes, length-prefixed, appended to one plain file with
/// one `fdatasync` per batch of [`BASELINE_BATCH`] events (group commit with no index at all).
fn fdatasync_floor(dir: &Path, duration: Duration) -> Result<BaselineRun, String> {
    let path = dir.join("floor.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let bodies = sample_events(BASELINE_BATCH / GROUP_EVENTS);
    let mut batch = Vec::new();
    for body in &bodies {
        let len = u32::try_from(body.len()).map_err(|e| e.to_string())?;
        batch.extend_from_slice(&len.to_le_bytes());
        batch.extend_from_slice(body);
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < duration {
        file.write_all(&batch).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        n += bodies.len() as u64;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(BaselineRun {
        events: n,
        seconds,
        events_per_s: n as f64 / seconds,
        batch_events: bodies.len(),
        disk_bytes_per_event: dir_bytes(dir) as f64 / n.max(1) as f64,
    })
}

/// Opens a fresh sled-backed log in `dir` and measures it with [`drive`].
fn append_run(
    dir: &Path,
    log_opts: &LogOptions,
    appenders: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<AppendRun, String> {
    let log = EventLog::open(dir, log_opts).map_err(|e| e.to_string())?;
    drive(dir, log, appenders, duration, rate)
}

/// The log scenario's driver, for any backend: `appenders` async tasks (how the runtime's
/// session actors call the log) on one current-thread runtime, appending to `log` (fresh, its
/// files in `dir`) for `duration`. Paced when `rate` is set (groups/s over all appenders), with
/// latency measured from each append's scheduled time so a stall is not hidden by the appender
/// waiting (coordinated omission). Any failed append fails the run.
pub fn drive(
    dir: &Path,
    log: EventLog,
    appenders: usize,
    duration: Duration,
    rate: Option<f64>,
) -> Result<AppendRun, String> {
    let metrics = log.metrics().clone();
    let started = Instant::now();
    let timer = StopTimer::start(duration);
    let latencies = drive_until(log, appenders, &timer.stop, rate, None);
    let seconds = started.elapsed().as_secs_f64();
    timer.join();
    let mut latencies = latencies?;
    latencies.sort_unstable();
    let groups = latencies.len() as u64;
    let events = groups * GROUP_EVENTS as u64;
    Ok(AppendRun {
        appenders,
        paced_groups_per_s: rate,
        groups,
        events,
        seconds,
        events_per_s: events as f64 / seconds,
        groups_per_s: groups as f64 / seconds,
        ack_p50_us: percentile(&latencies, 500),
        ack_p99_us: percentile(&latencies, 990),
        ack_max_us: latencies.last().copied().unwrap_or(0),
        disk_bytes_per_event: dir_bytes(dir) as f64 / (events + appenders as u64).max(1) as f64,
        sled_writes_per_group: metrics.sled_writes.get() as f64 / groups.max(1) as f64,
    })
}

/// Runs the appenders on `log` until `stop` is set and returns every append's latency (µs),
/// unsorted; the log is closed when it returns. With a `watch`, failed appends are retried
/// (see [`AckWatch`]) instead of failing the run.
pub fn drive_until(
    log: EventLog,
    appenders: usize,
    stop: &Arc<AtomicBool>,
    rate: Option<f64>,
    watch: Option<&Arc<AckWatch>>,
) -> Result<Vec<u64>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let interval = rate.map(|r| Duration::from_secs_f64(appenders as f64 / r));
    let per_task = runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders)
            .map(|a| {
                let appender = Appender {
                    log: log.clone(),
                    a,
                    appenders,
                    stop: stop.clone(),
                    interval,
                    watch: watch.cloned(),
                };
                tokio::spawn(appender.run())
            })
            .collect();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(out)
    })?;
    drop(log);
    let mut latencies = Vec::new();
    for task in per_task {
        latencies.extend(task?);
    }
    Ok(latencies)
}

/// Pause before an appender retries a failed append (with an [`AckWatch`] only).
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Watches a run through a failure (a server killed mid-run): appends that fail with a
/// retryable error (`Failed`: the log is recovering, `Overloaded`) are retried with the same
/// group and message id until they are acked, and the watch records when the first append
/// *attempt started after [`AckWatch::mark`]* is acked. Counting only attempts started after
/// the mark keeps acks of appends already in flight out of the figure.
pub struct AckWatch {
    origin: Instant,
    /// Nanoseconds after `origin` of the mark, plus one; 0 while unmarked.
    mark_ns: AtomicU64,
    /// Nanoseconds after `origin` of the first qualifying ack; `u64::MAX` while none.
    first_ack_ns: AtomicU64,
    retries: AtomicU64,
}

impl Default for AckWatch {
    fn default() -> AckWatch {
        AckWatch {
            origin: Instant::now(),
            mark_ns: AtomicU64::new(0),
            first_ack_ns: AtomicU64::new(u64::MAX),
            retries: AtomicU64::new(0),
        }
    }
}

impl AckWatch {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// From now on, acked attempts count.
    pub fn mark(&self) {
        self.mark_ns.store(self.now_ns() + 1, Ordering::SeqCst);
    }

    /// When the first attempt started after the mark was acked.
    pub fn first_ack(&self) -> Option<Instant> {
        match self.first_ack_ns.load(Ordering::SeqCst) {
            u64::MAX => None,
            ns => Some(self.origin + Duration::from_nanos(ns)),
        }
    }

    /// Appends retried after a failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// An attempt started at `started_ns` was acked now.
    fn acked(&self, started_ns: u64) {
        let mark = self.mark_ns.load(Ordering::SeqCst);
        if mark != 0 && started_ns + 1 >= mark {
            self.first_ack_ns.fetch_min(self.now_ns(), Ordering::SeqCst);
        }
    }
}

/// One appender: starts its session, then appends message-shaped groups until `stop`.
struct Appender {
    log: EventLog,
    a: usize,
    appenders: usize,
    stop: Arc<AtomicBool>,
    interval: Option<Duration>,
    watch: Option<Arc<AckWatch>>,
}

impl Appender {
    async fn run(self) -> Result<Vec<u64>, String> {
        let a = self.a;
        let tenant: TenantId = id(&format!("tenant-{:02}", a % TENANTS));
        let ctx = TenantCtx::new(tenant, id("prod"), Some(id("support")));
        let session: SessionId = id(&format!("session-{:06}", a / TENANTS));
        let channel: ChannelId = id("webchat");
        let start = AppendGroup {
            ctx: ctx.clone(),
            channel: channel.clone(),
            session: session.clone(),
            expected_seq: 0,
            at_ms: 1,
            kinds: vec![EventKind::SessionStarted {
                user: "user-0001".into(),
                flow: "acme_support_flow".into(),
                flow_version: "1.0".into(),
            }],
            idempotency: None,
        };
        let mut latencies = Vec::with_capacity(1 << 14);
        let Some(mut last) = self.append(start).await? else {
            return Ok(latencies);
        };
        let t0 = tokio::time::Instant::now();
        let mut n: u64 = 0;
        while !self.stop.load(Ordering::Relaxed) {
            // Each task runs at its own phase, so the offered load is smooth.
            let scheduled = wait_turn(t0, self.interval, n, a, self.appenders)
                .await
                .into_std();
            let group = AppendGroup {
                ctx: ctx.clone(),
                channel: channel.clone(),
                session: session.clone(),
                expected_seq: last,
                at_ms: 2,
                kinds: kinds(n),
                idempotency: Some(Idempotency {
                    message_id: format!("a{a}-m{n}"),
                    ack: Vec::new(),
                }),
            };
            let Some(acked) = self.append(group).await? else {
                break;
            };
            last = acked;
            latencies.push(u64::try_from(scheduled.elapsed().as_micros()).unwrap_or(u64::MAX));
            n += 1;
        }
        Ok(latencies)
    }

    /// Appends `group` and returns the session's last seq after it. With a watch, retries it
    /// while the log fails (a retry of a group that did reach the stream is a duplicate, which
    /// hands back the same seqs), and gives up with `None` once `stop` is set.
    async fn append(&self, group: AppendGroup) -> Result<Option<u64>, String> {
        loop {
            let started = self.watch.as_ref().map(|w| w.now_ns());
            let error = match self.log.append(group.clone()).await {
                Ok(AppendOutcome::Appended(ok)) => break self.acked(started, ok.last_seq),
                Ok(AppendOutcome::Duplicate(rec)) if self.watch.is_some() => {
                    break self.acked(started, rec.last_seq)
                }
                Ok(AppendOutcome::Duplicate(_)) => "unexpected duplicate".to_owned(),
                Err(e @ (AppendError::Failed(_) | AppendError::Overloaded)) => e.to_string(),
                Err(e) => return Err(e.to_string()),
            };
            match &self.watch {
                Some(_) if self.stop.load(Ordering::Relaxed) => return Ok(None),
                Some(watch) => {
                    watch.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                None => return Err(error),
            }
        }
    }

    fn acked(&self, started_ns: Option<u64>, last_seq: u64) -> Result<Option<u64>, String> {
        if let (Some(watch), Some(started)) = (&self.watch, started_ns) {
            watch.acked(started);
        }
        Ok(Some(last_seq))
    }
}

/// Runs the baseline and every appender count in fresh directories under `work_dir`.
/// `progress` receives one line per finished step.
pub fn run(
    work_dir: &Path,
    opts: &LogBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<LogBenchReport, String> {
    let fresh = |name: &str| fresh_dir(work_dir, name);
    let sample = sample_events(64);
    let event_bytes_avg = sample.iter().map(Vec::len).sum::<usize>() as f64 / sample.len() as f64;

    let baseline = baseline(&fresh("raw-sled")?, opts.duration)?;
    progress(&format!(
        "raw sled baseline: {:.0} events/s",
        baseline.events_per_s
    ));
    let floor = fdatasync_floor(&fresh("fdatasync-floor")?, opts.duration)?;
    progress(&format!(
        "fdatasync floor: {:.0} events/s",
        floor.events_per_s
    ));
    let mut runs = Vec::new();
    for &appenders in &opts.appenders {
        let run = append_run(
            &fresh(&format!("log-{appenders}"))?,
            &opts.log,
            appenders,
            opts.duration,
            None,
        )?;
        progress(&format!(
            "{appenders:>4} appenders: {:.0} events/s, ack p50 {} us, p99 {} us",
            run.events_per_s, run.ack_p50_us, run.ack_p99_us
        ));
        runs.push(run);
    }
    let peak = runs
        .iter()
        .max_by(|a, b| a.groups_per_s.total_cmp(&b.groups_per_s))
        .cloned();
    if let Some(peak) = peak.filter(|_| opts.paced_fraction > 0.0) {
        let rate = peak.groups_per_s * opts.paced_fraction;
        let run = append_run(
            &fresh("log-paced")?,
            &opts.log,
            peak.appenders,
            opts.duration,
            Some(rate),
        )?;
        progress(&format!(
            "paced at {:.0}% of peak ({:.0} events/s offered): {:.0} events/s, ack p50 {} us, p99 {} us",
            opts.paced_fraction * 100.0,
            rate * GROUP_EVENTS as f64,
            run.events_per_s,
            run.ack_p50_us,
            run.ack_p99_us
        ));
        runs.push(run);
    }
    let best = runs
        .iter()
        .filter(|r| r.paced_groups_per_s.is_none())
        .map(|r| r.events_per_s)
        .fold(0.0, f64::max);
    Ok(LogBenchReport {
        scenario: "log_append",
        event_bytes_avg,
        group_events: GROUP_EVENTS,
        tenants: TENANTS,
        ratio_to_baseline: best / baseline.events_per_s.max(f64::MIN_POSITIVE),
        ratio_to_floor: best / floor.events_per_s.max(f64::MIN_POSITIVE),
        batch_groups_max: opts.log.batch_groups_max,
        baseline,
        floor,
        runs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_counts_only_attempts_started_after_the_mark() {
        let watch = AckWatch::default();
        let before = watch.now_ns();
        watch.acked(before);
        assert_eq!(watch.first_ack(), None, "nothing counts before the mark");
        std::thread::sleep(Duration::from_millis(2));
        watch.mark();
        // An attempt in flight across the mark (acked by the server about to die) is not the
        // way back.
        watch.acked(before);
        assert_eq!(watch.first_ack(), None);
        watch.acked(watch.now_ns());
        let first = watch
            .first_ack()
            .expect("an attempt started after the mark");
        std::thread::sleep(Duration::from_millis(2));
        watch.acked(watch.now_ns());
        assert_eq!(
            watch.first_ack(),
            Some(first),
            "the first ack stays the first"
        );
    }

    /// Sessions started and other events in the log, over every appender's tenant.
    fn stored_events(dir: &Path) -> (usize, usize) {
        let log = EventLog::open(dir, &LogOptions::default()).unwrap();
        let (mut starts, mut others) = (0, 0);
        for t in 0..TENANTS {
            let tenant: TenantId = id(&format!("tenant-{t:02}"));
            for stored in log.tenant(&tenant).events(1..=u64::MAX) {
                match stored.unwrap().event.kind {
                    EventKind::SessionStarted { .. } => starts += 1,
                    _ => others += 1,
                }
            }
        }
        (starts, others)
    }

    #[test]
    fn with_a_watch_refused_appends_are_retried_and_without_one_they_fail_the_run() {
        // A queue of one: most of 512 appenders are refused (`Overloaded`) at once.
        let opts = LogOptions {
            queue_capacity: 1,
            ..LogOptions::default()
        };
        let appenders = 512;
        let run = Duration::from_millis(300);
        let plain = tempfile::tempdir().unwrap();
        let log = EventLog::open(plain.path(), &opts).unwrap();
        let err = drive(plain.path(), log, appenders, run, None).unwrap_err();
        assert!(err.contains("overloaded"), "{err}");

        let watched = tempfile::tempdir().unwrap();
        let log = EventLog::open(watched.path(), &opts).unwrap();
        let watch = Arc::new(AckWatch::default());
        watch.mark();
        let timer = StopTimer::start(run);
        let latencies = drive_until(log, appenders, &timer.stop, None, Some(&watch)).unwrap();
        timer.join();
        assert!(watch.retries() > 0, "no append was refused");
        assert!(watch.first_ack().is_some());
        // Every acked group is stored once: nothing retried was lost or doubled.
        let (starts, others) = stored_events(watched.path());
        assert_eq!(others, latencies.len() * GROUP_EVENTS);
        assert!(
            starts > 0 && starts <= appenders,
            "{starts} sessions started"
        );
    }
}
