//! Benchmark of a long history (issue 4): how fast the runtime reads back what it wrote.
//!
//! Generates a log of many sessions over `TENANTS` tenants (sessions of `SESSION_MESSAGES`
//! messages, each message one group of `GROUP_EVENTS` events as in `bench log`, tenants sized by
//! a Zipf law so that one tenant is much larger than the rest) plus one long session, then
//! measures, each on the reopened log:
//!
//! - **rebuild**: `Projector::rebuild` of every tenant's read models;
//! - **export**: `audit::export::export` as JSONL (chain hashes and bodies checked and included)
//!   of the largest tenant and of every tenant, into a sink that only counts bytes;
//! - **replay**: folding the long session from the log into a `SessionState`, which is what
//!   `projections::load::load_session` does when there is no snapshot;
//! - **cold start**: the real binary's `serve` on this data, from spawn to its `listening on`
//!   line and to the first `200` from `GET /healthz`, then SIGTERM.
//!
//! Generating takes minutes at 10M events, so the log is kept in `{dir}/history` with a marker
//! file naming its parameters and reused by the next run with the same parameters. The marker is
//! written only after generation succeeded, so a half-written log is never reused.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::audit::export::{export, ExportFormat, ExportOptions};
use crate::events::log::{AppendGroup, AppendOutcome, EventLog, Idempotency, LogOptions};
use crate::events::schema::EventKind;
use crate::projections::projector::Projector;
use crate::projections::session::SessionState;
use crate::tenancy::{ChannelId, SessionId, TenantCtx, TenantId};

/// Tenants the sessions are spread over.
const TENANTS: usize = 64;
/// Inbound messages per generated session.
const SESSION_MESSAGES: u64 = 20;
/// Events per message group: `MessageReceived`, `NodeEntered`, `ReplySent`, `StateSet`.
const GROUP_EVENTS: u64 = 4;
/// Events of one generated session: its start, its messages, its end.
const SESSION_EVENTS: u64 = 1 + SESSION_MESSAGES * GROUP_EVENTS + 1;
/// Concurrent appenders while generating (the log commits their groups together).
pub const APPENDERS_DEFAULT: usize = 256;
/// Unix ms of the first generated session (2025-10-09); sessions start 37 s apart.
const EPOCH_MS: u64 = 1_760_000_000_000;
/// Bumped whenever the generated content changes, so that older logs are not reused.
const FORMAT_VERSION: u32 = 1;
/// Name of the marker file, next to the data dir.
const MARKER: &str = "history.json";
/// Shortest time between two generation progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// Buffer between the export and its byte-counting sink (the CLI also writes through one).
const EXPORT_BUFFER_BYTES: usize = 64 * 1024;
/// The long session's id (in the largest tenant, `tenant-00`), and the number its texts are
/// made from (past every generated session's).
const LONG_SESSION: &str = "long-session-0001";
const LONG_SESSION_NO: u64 = 99_999_999;

/// The targets, printed beside the figures.
const REBUILD_EVENTS_PER_S_MIN: f64 = 2_000_000.0;
const EXPORT_MB_PER_S_MIN: f64 = 150.0;
const COLD_START_MS_MAX: f64 = 2_000.0;

/// How long `serve` may take to come up, and to stop after SIGTERM, before the bench gives up.
const SERVE_READY_TIMEOUT: Duration = Duration::from_secs(120);
const SERVE_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for this process's own sled handle to let go of the data file.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// The HS256 key handed to `serve` (only the cold start uses the server; no token is minted).
const SIGNING_KEY: &str = "tenantry-bench-history-signing-key-0123456789";
/// Lines of the server's stderr kept to explain a failed start.
const STDERR_TAIL_LINES: usize = 20;

const FLOW: &str = "name: bench_flow\nversion: \"1.0\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      message: \"Welcome to {{ tenant.name }}! How can I help?\"\n";

/// What to generate and how to measure.
#[derive(Clone, Debug)]
pub struct HistoryBenchOptions {
    /// Events of the many-session history (rounded up to whole sessions).
    pub events: u64,
    /// Events of the one long session (rounded up to a start plus whole message groups).
    pub long_session_events: u64,
    /// Concurrent appenders while generating.
    pub appenders: usize,
    /// Runs of each measurement; the report's figure is their median.
    pub runs: usize,
    /// The tenantry binary whose `serve` is timed; `None` skips the cold start.
    pub serve_exe: Option<PathBuf>,
}

/// How the log was made (now, or by an earlier run whose log is reused).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Generation {
    /// Taken from an earlier run's marker; the figures below are that run's.
    #[serde(skip_deserializing)]
    pub reused: bool,
    /// Every event in the log: the sessions plus the long session.
    pub events: u64,
    pub sessions: u64,
    pub long_session_events: u64,
    /// Wall time of writing the sessions (the long session excluded: it has one appender).
    pub seconds: f64,
    pub events_per_s: f64,
    pub long_session_seconds: f64,
    /// Size of the log directory right after generation (before any read model is written).
    pub log_bytes: u64,
    pub log_bytes_per_event: f64,
}

/// Repeated timings of one fold over the same events.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// Events per run.
    pub events: u64,
    /// Wall time of each run, in order (the first runs on a cold sled cache).
    pub seconds_runs: Vec<f64>,
    /// The median run.
    pub seconds: f64,
    pub events_per_s: f64,
}

/// Repeated timings of one export.
#[derive(Clone, Debug, Serialize)]
pub struct ExportFigure {
    /// The tenant exported, or `None` for every tenant one after another.
    pub tenant: Option<String>,
    pub tenants: usize,
    /// Event lines per run (the manifests' counts).
    pub events: u64,
    /// Output bytes per run, manifest lines included.
    pub bytes: u64,
    pub bytes_per_event: f64,
    pub seconds_runs: Vec<f64>,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
}

/// One start and stop of `serve`.
#[derive(Clone, Debug, Serialize)]
pub struct ColdStartRun {
    /// From spawn to the `listening on` line on stderr.
    pub listening_ms: f64,
    /// From spawn to the first `200` answer to `GET /healthz`.
    pub healthz_ms: f64,
    /// From SIGTERM to the process's exit.
    pub stop_ms: f64,
}

/// `serve` on the generated data, started `runs` times one after another.
#[derive(Clone, Debug, Serialize)]
pub struct ColdStart {
    pub runs: Vec<ColdStartRun>,
    /// Medians over the runs.
    pub listening_ms: f64,
    pub healthz_ms: f64,
    pub stop_ms: f64,
}

/// One figure against the target.
#[derive(Clone, Debug, Serialize)]
pub struct TargetCheck {
    pub figure: &'static str,
    pub target: String,
    pub measured: f64,
    pub met: bool,
}

/// Everything one `bench history` run measured.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryBenchReport {
    pub scenario: &'static str,
    pub tenants: usize,
    pub session_messages: u64,
    pub group_events: u64,
    pub runs: usize,
    pub generation: Generation,
    pub rebuild: Throughput,
    pub export_largest_tenant: ExportFigure,
    pub export_all_tenants: ExportFigure,
    pub replay_long_session: Throughput,
    pub cold_start: Option<ColdStart>,
    pub targets: Vec<TargetCheck>,
}

/// What the marker file records: the parameters the log was made with, and how it went.
#[derive(Serialize, Deserialize)]
struct Marker {
    params: String,
    generation: Generation,
}

fn params(opts: &HistoryBenchOptions) -> String {
    format!(
        "v{FORMAT_VERSION} events={} long_session_events={} tenants={TENANTS} \
         session_messages={SESSION_MESSAGES}",
        opts.events, opts.long_session_events
    )
}

fn id<T: std::str::FromStr>(raw: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    raw.parse().expect("bench ids are valid by construction")
}

fn tenant_id(t: usize) -> TenantId {
    id(&format!("tenant-{t:02}"))
}

fn ctx_of(t: usize) -> TenantCtx {
    TenantCtx::new(tenant_id(t), id("prod"), Some(id("support")))
}

/// SplitMix64: a fixed, well-mixed sequence, so every run generates the same history.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The tenant of session `k`: tenant `t` gets a share proportional to 1/(t+1) (Zipf), so
/// `tenant-00` holds about a fifth of the sessions and `tenant-63` a few per thousand.
fn tenant_of(k: u64) -> usize {
    let total: f64 = (1..=TENANTS).map(|t| 1.0 / t as f64).sum();
    // 53 random bits as a fraction in [0, 1).
    let mut left = (mix(k) >> 11) as f64 / (1u64 << 53) as f64 * total;
    for t in 0..TENANTS {
        left -= 1.0 / (t + 1) as f64;
        if left < 0.0 {
            return t;
        }
    }
    TENANTS - 1
}

const QUESTIONS: [&str; 6] = [
    "where is my order {n}? still not here",
    "can I change the address on order {n}",
    "I was charged twice for order {n}, help",
    "please cancel order {n}, wrong size",
    "how do I return the shoes from order {n}",
    "is there a discount code for order {n}?",
];
const REPLIES: [&str; 3] = [
    "Welcome to ACME Support! How can I help?",
    "Thanks, let me look that order up for you.",
    "Done. Anything else I can help you with?",
];
const TOPICS: [&str; 4] = ["order status", "billing", "returns", "address change"];

/// The events of message `m` of a session, about 40-byte texts as in real chats.
fn message_kinds(session: u64, m: u64) -> Vec<EventKind> {
    let pick = usize::try_from(mix(session ^ (m << 40)) % 12).unwrap_or(0);
    let order = format!("{:06}", (session * 7 + m) % 1_000_000);
    vec![
        EventKind::MessageReceived {
            message_id: format!("s{session}-m{m}"),
            user: format!("user-{session:07}"),
            text: QUESTIONS[pick % QUESTIONS.len()].replace("{n}", &order),
        },
        EventKind::NodeEntered {
            node: "greet".into(),
        },
        EventKind::ReplySent {
            node: "greet".into(),
            text: REPLIES[pick % REPLIES.len()].into(),
        },
        EventKind::StateSet {
            key: "last_topic".into(),
            value: TOPICS[pick % TOPICS.len()].into(),
        },
    ]
}

fn appended_seq(outcome: AppendOutcome) -> Result<u64, String> {
    match outcome {
        AppendOutcome::Appended(a) => Ok(a.last_seq),
        AppendOutcome::Duplicate(_) => Err("unexpected duplicate while generating".into()),
    }
}

/// The append groups of generated session `k`, in order: start, messages, end.
fn session_groups(k: u64) -> Vec<AppendGroup> {
    let ctx = ctx_of(tenant_of(k));
    let channel: ChannelId = id("webchat");
    let session: SessionId = id(&format!("s{k:07}"));
    let start_ms = EPOCH_MS + k * 37_000;
    let group =
        |expected_seq: u64, at_ms: u64, kinds: Vec<EventKind>, message: Option<u64>| AppendGroup {
            ctx: ctx.clone(),
            channel: channel.clone(),
            session: session.clone(),
            expected_seq,
            at_ms,
            kinds,
            idempotency: message.map(|m| Idempotency {
                message_id: format!("s{k}-m{m}"),
                ack: Vec::new(),
            }),
        };
    let mut groups = Vec::new();
    let start = vec![EventKind::SessionStarted {
        user: format!("user-{k:07}"),
        flow: "bench_flow".into(),
        flow_version: "1.0".into(),
    }];
    groups.push(group(0, start_ms, start, None));
    for m in 0..SESSION_MESSAGES {
        let seq = 1 + m * GROUP_EVENTS;
        let at_ms = start_ms + (m + 1) * 20_000;
        groups.push(group(seq, at_ms, message_kinds(k, m), Some(m)));
    }
    let end = vec![EventKind::SessionEnded {
        reason: "idle timeout".into(),
    }];
    let last = 1 + SESSION_MESSAGES * GROUP_EVENTS;
    groups.push(group(last, start_ms + 600_000, end, None));
    groups
}

/// One appender: takes the next session number until all `sessions` are written.
async fn write_sessions(
    log: EventLog,
    sessions: u64,
    next: Arc<AtomicU64>,
    appended: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= sessions || stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut last = 0;
        for group in session_groups(k) {
            let count = group.kinds.len() as u64;
            let outcome = log.append(group).await.map_err(|e| {
                // The others stop at their next session instead of writing on for minutes.
                stop.store(true, Ordering::Relaxed);
                format!("generating session {k}: {e}")
            })?;
            last = appended_seq(outcome)?;
            appended.fetch_add(count, Ordering::Relaxed);
        }
        debug_assert_eq!(last, SESSION_EVENTS);
    }
}

/// Writes `sessions` sessions with `appenders` async tasks on one current-thread runtime (as
/// the runtime's session actors call the log). Returns the seconds it took.
fn generate_sessions(
    log: &EventLog,
    sessions: u64,
    appenders: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<f64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| e.to_string())?;
    let next = Arc::new(AtomicU64::new(0));
    let appended = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..appenders.max(1))
            .map(|_| {
                tokio::spawn(write_sessions(
                    log.clone(),
                    sessions,
                    next.clone(),
                    appended.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // This future runs on the same thread as the appenders, so it may borrow `progress`.
        let mut reported = Instant::now();
        while !tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if reported.elapsed() >= PROGRESS_INTERVAL {
                let n = appended.load(Ordering::Relaxed);
                progress(&format!("generated {n} events"));
                reported = Instant::now();
            }
        }
        for task in tasks {
            task.await.map_err(|e| e.to_string())??;
        }
        Ok::<_, String>(())
    })?;
    let seconds = started.elapsed().as_secs_f64();
    progress(&format!(
        "generated {} events",
        appended.load(Ordering::Relaxed)
    ));
    Ok(seconds)
}

/// The long session: a start, then message groups until it holds at least `events` events.
/// Returns its event count and the seconds it took (one appender, so one commit per group).
fn generate_long_session(log: &EventLog, events: u64) -> Result<(u64, f64), String> {
    let ctx = ctx_of(0);
    let channel: ChannelId = id("webchat");
    let session: SessionId = id(LONG_SESSION);
    let group = |expected_seq: u64, kinds: Vec<EventKind>, message: Option<u64>| AppendGroup {
        ctx: ctx.clone(),
        channel: channel.clone(),
        session: session.clone(),
        expected_seq,
        at_ms: EPOCH_MS + expected_seq * 5_000,
        kinds,
        idempotency: message.map(|m| Idempotency {
            message_id: format!("long-m{m}"),
            ack: Vec::new(),
        }),
    };
    let started = Instant::now();
    let start = vec![EventKind::SessionStarted {
        user: "user-long".into(),
        flow: "bench_flow".into(),
        flow_version: "1.0".into(),
    }];
    let mut last = appended_seq(
        log.append_blocking(group(0, start, None))
            .map_err(|e| format!("generating the long session: {e}"))?,
    )?;
    let mut m = 0;
    while last < events {
        let kinds = message_kinds(LONG_SESSION_NO, m);
        let outcome = log
            .append_blocking(group(last, kinds, Some(m)))
            .map_err(|e| format!("generating the long session: {e}"))?;
        last = appended_seq(outcome)?;
        m += 1;
    }
    Ok((last, started.elapsed().as_secs_f64()))
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn open_log(dir: &Path) -> Result<EventLog, String> {
    EventLog::open(dir, &LogOptions::default()).map_err(|e| e.to_string())
}

/// Every event in the log: the sum of the tenants' heads.
fn count_events(log: &EventLog) -> Result<u64, String> {
    let mut total = 0;
    for tenant in log.tenants().map_err(|e| e.to_string())? {
        let head = log.tenant(&tenant).head().map_err(|e| e.to_string())?;
        total += head.map_or(0, |h| h.tenant_seq);
    }
    Ok(total)
}

/// The earlier run's generation, when its marker names `params` and the log still holds
/// exactly the events it wrote.
fn reusable(dir: &Path, params: &str) -> Result<Option<Generation>, String> {
    let Ok(raw) = std::fs::read(dir.join(MARKER)) else {
        return Ok(None);
    };
    let Ok(marker) = serde_json::from_slice::<Marker>(&raw) else {
        return Ok(None);
    };
    if marker.params != params {
        return Ok(None);
    }
    let log = open_log(&dir.join("data").join("log"))?;
    let events = count_events(&log)?;
    Ok((events == marker.generation.events).then_some(Generation {
        reused: true,
        ..marker.generation
    }))
}

/// Generates the whole history into a fresh `dir` and writes its marker last.
fn generate(
    dir: &Path,
    opts: &HistoryBenchOptions,
    params: String,
    progress: &mut dyn FnMut(&str),
) -> Result<Generation, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let log_dir = dir.join("data").join("log");
    std::fs::create_dir_all(&log_dir).map_err(|e| format!("{}: {e}", log_dir.display()))?;
    let sessions = opts.events.div_ceil(SESSION_EVENTS);
    progress(&format!(
        "generating {sessions} sessions ({} events) over {TENANTS} tenants with {} appenders in {}",
        sessions * SESSION_EVENTS,
        opts.appenders,
        dir.display()
    ));
    let log = open_log(&log_dir)?;
    let seconds = generate_sessions(&log, sessions, opts.appenders, progress)?;
    progress(&format!(
        "appending one long session of {} events",
        opts.long_session_events
    ));
    let (long_session_events, long_session_seconds) =
        generate_long_session(&log, opts.long_session_events)?;
    let events = count_events(&log)?;
    let expected = sessions * SESSION_EVENTS + long_session_events;
    if events != expected {
        return Err(format!(
            "the log holds {events} events after generating {expected}"
        ));
    }
    drop(log);
    let log_bytes = dir_bytes(&log_dir);
    let bulk = sessions * SESSION_EVENTS;
    progress(&format!(
        "generated {events} events: sessions at {:.0} events/s, the long session in {long_session_seconds:.1} s",
        bulk as f64 / seconds.max(f64::MIN_POSITIVE)
    ));
    let generation = Generation {
        reused: false,
        events,
        sessions,
        long_session_events,
        seconds,
        events_per_s: bulk as f64 / seconds.max(f64::MIN_POSITIVE),
        long_session_seconds,
        log_bytes,
        log_bytes_per_event: log_bytes as f64 / events.max(1) as f64,
    };
    let marker = Marker { params, generation };
    let raw = serde_json::to_vec_pretty(&marker).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(MARKER), raw).map_err(|e| e.to_string())?;
    Ok(marker.generation)
}

/// The config `serve` runs with: every bench tenant, an ephemeral port, the generated data.
fn write_config(dir: &Path) -> Result<PathBuf, String> {
    std::fs::write(dir.join("flow.yaml"), FLOW).map_err(|e| e.to_string())?;
    let data = dir.join("data");
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"off\"\ndata_dir = \"{}\"\n",
        data.display()
    );
    for t in 0..TENANTS {
        toml.push_str(&format!(
            "[tenants.tenant-{t:02}]\nname = \"Tenant {t}\"\nenvironments = [\"prod\"]\n\
             [tenants.tenant-{t:02}.teams.support]\nflow = \"flow.yaml\"\n\
             [tenants.tenant-{t:02}.teams.support.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).map_err(|e| e.to_string())?;
    Ok(path)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Runs `work` `runs` times; each returns its event count, which must not change between runs.
fn timed(runs: usize, mut work: impl FnMut() -> Result<u64, String>) -> Result<Throughput, String> {
    let mut seconds_runs = Vec::new();
    let mut events = None;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let n = work()?;
        seconds_runs.push(started.elapsed().as_secs_f64());
        if events.is_some_and(|e| e != n) {
            return Err(format!("a run saw {n} events, an earlier one {events:?}"));
        }
        events = Some(n);
    }
    let events = events.unwrap_or(0);
    let seconds = median(&seconds_runs);
    Ok(Throughput {
        events,
        seconds_runs,
        seconds,
        events_per_s: events as f64 / seconds.max(f64::MIN_POSITIVE),
    })
}

/// Counts what it is given and keeps nothing.
#[derive(Default)]
struct CountingSink {
    bytes: u64,
}

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Exports each tenant in turn as JSONL; returns (events, bytes).
fn export_tenants(log: &EventLog, tenants: &[TenantId]) -> Result<(u64, u64), String> {
    let (mut events, mut bytes) = (0, 0);
    let cancel = AtomicBool::new(false);
    for tenant in tenants {
        let opts = ExportOptions::new(tenant.clone(), ExportFormat::Jsonl);
        let mut out = BufWriter::with_capacity(EXPORT_BUFFER_BYTES, CountingSink::default());
        let manifest = export(log, &opts, &mut out, &mut |_| {}, &cancel)
            .map_err(|e| format!("exporting {tenant}: {e}"))?;
        let sink = out.into_inner().map_err(|e| e.to_string())?;
        events += manifest.count;
        bytes += sink.bytes;
    }
    Ok((events, bytes))
}

fn export_figure(
    log: &EventLog,
    tenants: &[TenantId],
    runs: usize,
    tenant: Option<&TenantId>,
) -> Result<ExportFigure, String> {
    let mut bytes = 0;
    let t = timed(runs, || {
        let (events, b) = export_tenants(log, tenants)?;
        bytes = b;
        Ok(events)
    })?;
    let seconds = t.seconds.max(f64::MIN_POSITIVE);
    Ok(ExportFigure {
        tenant: tenant.map(ToString::to_string),
        tenants: tenants.len(),
        events: t.events,
        bytes,
        bytes_per_event: bytes as f64 / t.events.max(1) as f64,
        seconds_runs: t.seconds_runs,
        seconds: t.seconds,
        events_per_s: t.events_per_s,
        mb_per_s: bytes as f64 / 1e6 / seconds,
    })
}

/// Folds every tenant's read models from scratch; returns the events folded.
fn rebuild_all(log: &EventLog, tenants: &[TenantId]) -> Result<u64, String> {
    let projector = Projector::new(log).map_err(|e| e.to_string())?;
    let mut folded = 0;
    for tenant in tenants {
        folded += projector
            .rebuild(log, tenant, &mut |_| {})
            .map_err(|e| format!("rebuilding {tenant}: {e}"))?;
    }
    Ok(folded)
}

/// Folds the long session from the log, as `load_session` does without a snapshot.
fn replay_long_session(log: &EventLog) -> Result<u64, String> {
    let ctx = ctx_of(0);
    let session: SessionId = id(LONG_SESSION);
    let team = ctx.team_or_default();
    let mut state = SessionState::new(ctx.tenant.clone(), ctx.env.clone(), team, session.clone());
    for event in log.scope(&ctx).session_events(&session, 1..=u64::MAX) {
        state.apply(&event.map_err(|e| e.to_string())?.event);
    }
    Ok(std::hint::black_box(state).last_seq)
}

/// Waits until no handle (ours, being torn down) holds sled's lock on the log's data file, so
/// that the server's start is not timed waiting for it.
fn wait_unlocked(log_dir: &Path) -> Result<(), String> {
    let path = log_dir.join("db");
    let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return file.unlock().map_err(|e| e.to_string()),
            Err(_) if started.elapsed() < UNLOCK_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("{} stays locked: {e}", path.display())),
        }
    }
}

/// A spawned server, killed (SIGKILL) if the bench leaves early.
struct Server {
    child: Child,
    exited: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET /healthz` over a fresh connection; true on a `200`.
fn healthz(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 200"
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Starts `serve`, waits for its `listening on` line and a healthy `/healthz`, then stops it.
fn cold_start(exe: &Path, config: &Path, log_dir: &Path) -> Result<ColdStartRun, String> {
    wait_unlocked(log_dir)?;
    let started = Instant::now();
    let child = Command::new(exe)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("TENANTRY_SIGNING_KEY", SIGNING_KEY)
        .env("RUST_LOG", "info")
        .env_remove("TENANTRY_TENANT_ID")
        .env_remove("TENANTRY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let mut server = Server {
        child,
        exited: false,
    };
    let stderr = server
        .child
        .stderr
        .take()
        .ok_or("the server's stderr is not piped")?;
    // Drains stderr to the end (a full pipe would block the server's logging).
    let (tx, lines) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut tail = std::collections::VecDeque::new();
    let failed = |tail: &std::collections::VecDeque<String>, what: &str| {
        let lines: Vec<&str> = tail.iter().map(String::as_str).collect();
        format!("serve {what}; its last lines:\n{}", lines.join("\n"))
    };
    let (addr, listening_ms) = loop {
        let left = SERVE_READY_TIMEOUT.saturating_sub(started.elapsed());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(failed(&tail, "did not print `listening on` in time"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(failed(&tail, "exited before listening"))
            }
        };
        if let Some((_, rest)) = line.split_once("listening on ") {
            let raw = rest.split_whitespace().next().unwrap_or_default();
            let addr: SocketAddr = raw
                .parse()
                .map_err(|e| format!("listening address {raw:?}: {e}"))?;
            break (addr, elapsed_ms(started));
        }
        tail.push_back(line);
        if tail.len() > STDERR_TAIL_LINES {
            tail.pop_front();
        }
    };
    let healthz_ms = loop {
        if healthz(addr) {
            break elapsed_ms(started);
        }
        if started.elapsed() > SERVE_READY_TIMEOUT {
            return Err(failed(&tail, "never answered GET /healthz with 200"));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stopping = Instant::now();
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
    if !killed.success() {
        return Err(format!("kill -TERM {pid}: {killed}"));
    }
    let status = loop {
        if let Some(status) = server.child.try_wait().map_err(|e| e.to_string())? {
            server.exited = true;
            break status;
        }
        if stopping.elapsed() > SERVE_STOP_TIMEOUT {
            return Err(format!(
                "serve did not stop within {SERVE_STOP_TIMEOUT:?} of SIGTERM"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stop_ms = elapsed_ms(stopping);
    let _ = reader.join();
    tail.extend(lines.try_iter());
    if !status.success() {
        return Err(failed(
            &tail,
            &format!("exited with {status} after SIGTERM"),
        ));
    }
    Ok(ColdStartRun {
        listening_ms,
        healthz_ms,
        stop_ms,
    })
}

fn at_least(figure: &'static str, measured: f64, min: f64) -> TargetCheck {
    TargetCheck {
        figure,
        target: format!(">= {min}"),
        measured,
        met: measured >= min,
    }
}

fn below(figure: &'static str, measured: f64, max: f64) -> TargetCheck {
    TargetCheck {
        figure,
        target: format!("< {max}"),
        measured,
        met: measured < max,
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// Generates (or reuses) the history under `work_dir/history` and measures it. `progress`
/// receives a line per step.
pub fn run(
    work_dir: &Path,
    opts: &HistoryBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<HistoryBenchReport, String> {
    let dir = work_dir.join("history");
    let log_dir = dir.join("data").join("log");
    let params = params(opts);
    let generation = match reusable(&dir, &params)? {
        Some(g) => {
            progress(&format!(
                "reusing the log in {} ({} events, generated at {:.0} events/s)",
                dir.display(),
                g.events,
                g.events_per_s
            ));
            g
        }
        None => generate(&dir, opts, params, progress)?,
    };
    progress(&format!(
        "log on disk: {} bytes, {:.0} bytes/event",
        generation.log_bytes, generation.log_bytes_per_event
    ));
    let config = write_config(&dir)?;

    let log = open_log(&log_dir)?;
    let mut tenants = log.tenants().map_err(|e| e.to_string())?;
    tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut largest: Option<(TenantId, u64)> = None;
    for tenant in &tenants {
        let head = log.tenant(tenant).head().map_err(|e| e.to_string())?;
        let n = head.map_or(0, |h| h.tenant_seq);
        if largest.as_ref().is_none_or(|(_, m)| n > *m) {
            largest = Some((tenant.clone(), n));
        }
    }
    let (largest, _) = largest.ok_or("the generated log has no tenants")?;

    let mut run_no = 0;
    let runs = opts.runs.max(1);
    let rebuild = timed(runs, || {
        run_no += 1;
        let started = Instant::now();
        let n = rebuild_all(&log, &tenants)?;
        let secs = started.elapsed().as_secs_f64();
        progress(&format!(
            "rebuild run {run_no}/{runs}: {n} events in {secs:.2} s ({:.0} events/s)",
            n as f64 / secs.max(f64::MIN_POSITIVE)
        ));
        Ok(n)
    })?;
    progress(&format!(
        "rebuild of {} tenants: {:.0} events/s (median; target >= {REBUILD_EVENTS_PER_S_MIN:.0}: {})",
        tenants.len(),
        rebuild.events_per_s,
        verdict(rebuild.events_per_s >= REBUILD_EVENTS_PER_S_MIN)
    ));

    let export_largest = export_figure(&log, std::slice::from_ref(&largest), runs, Some(&largest))?;
    progress(&format!(
        "export of {largest} ({} events, {} bytes): {:.1} MB/s, {:.0} events/s (median; target >= {EXPORT_MB_PER_S_MIN:.0} MB/s: {})",
        export_largest.events,
        export_largest.bytes,
        export_largest.mb_per_s,
        export_largest.events_per_s,
        verdict(export_largest.mb_per_s >= EXPORT_MB_PER_S_MIN)
    ));
    let export_all = export_figure(&log, &tenants, runs, None)?;
    progress(&format!(
        "export of all {} tenants ({} events, {} bytes): {:.1} MB/s, {:.0} events/s (median)",
        tenants.len(),
        export_all.events,
        export_all.bytes,
        export_all.mb_per_s,
        export_all.events_per_s
    ));

    let replay = timed(runs, || replay_long_session(&log))?;
    progress(&format!(
        "replay of one {}-event session to its state: {:.0} events/s (median)",
        replay.events, replay.events_per_s
    ));
    drop(log);

    let cold_start = match &opts.serve_exe {
        None => None,
        Some(exe) => {
            let mut starts = Vec::new();
            for i in 1..=runs {
                let run = cold_start(exe, &config, &log_dir)?;
                progress(&format!(
                    "serve cold start {i}/{runs}: listening after {:.0} ms, /healthz 200 after {:.0} ms, stopped {:.0} ms after SIGTERM",
                    run.listening_ms, run.healthz_ms, run.stop_ms
                ));
                starts.push(run);
            }
            let pick =
                |f: fn(&ColdStartRun) -> f64| median(&starts.iter().map(f).collect::<Vec<_>>());
            let figure = ColdStart {
                listening_ms: pick(|r| r.listening_ms),
                healthz_ms: pick(|r| r.healthz_ms),
                stop_ms: pick(|r| r.stop_ms),
                runs: starts,
            };
            progress(&format!(
                "serve cold start: /healthz 200 after {:.0} ms (median; target < {COLD_START_MS_MAX:.0} ms: {})",
                figure.healthz_ms,
                verdict(figure.healthz_ms < COLD_START_MS_MAX)
            ));
            Some(figure)
        }
    };

    let mut targets = vec![
        at_least(
            "rebuild_events_per_s",
            rebuild.events_per_s,
            REBUILD_EVENTS_PER_S_MIN,
        ),
        at_least(
            "export_largest_tenant_mb_per_s",
            export_largest.mb_per_s,
            EXPORT_MB_PER_S_MIN,
        ),
    ];
    if let Some(c) = &cold_start {
        targets.push(below(
            "cold_start_healthz_ms",
            c.healthz_ms,
            COLD_START_MS_MAX,
        ));
    }
    Ok(HistoryBenchReport {
        scenario: "history",
        tenants: TENANTS,
        session_messages: SESSION_MESSAGES,
        group_events: GROUP_EVENTS,
        runs,
        generation,
        rebuild,
        export_largest_tenant: export_largest,
        export_all_tenants: export_all,
        replay_long_session: replay,
        cold_start,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_history_is_generated_folded_exported_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = HistoryBenchOptions {
            events: 2_000,
            long_session_events: 200,
            appenders: 16,
            runs: 2,
            serve_exe: None,
        };
        let mut lines = Vec::new();
        let report = run(dir.path(), &opts, &mut |l| lines.push(l.to_owned())).unwrap();

        let g = &report.generation;
        assert!(!g.reused);
        assert_eq!(g.sessions, 2_000u64.div_ceil(SESSION_EVENTS));
        assert_eq!(g.long_session_events, 201, "a start plus 50 groups of 4");
        assert_eq!(g.events, g.sessions * SESSION_EVENTS + 201);
        assert!(g.log_bytes > 0 && g.events_per_s > 0.0);

        assert_eq!(report.rebuild.events, g.events, "every event is folded");
        assert_eq!(report.rebuild.seconds_runs.len(), 2);
        assert!(report.rebuild.events_per_s > 0.0);

        let all = &report.export_all_tenants;
        assert_eq!(all.events, g.events, "every event is exported");
        assert!(all.bytes > all.events * 100 && all.mb_per_s > 0.0);
        let largest = &report.export_largest_tenant;
        assert_eq!(largest.tenant.as_deref(), Some("tenant-00"));
        assert!(largest.events > 201 && largest.events < all.events);
        assert!(largest.events_per_s > 0.0);

        assert_eq!(report.replay_long_session.events, 201);
        assert!(report.replay_long_session.events_per_s > 0.0);
        assert!(report.cold_start.is_none());
        assert_eq!(report.targets.len(), 2);
        assert!(lines.iter().any(|l| l.starts_with("generated ")));

        // A second run with the same parameters reuses the log; other parameters replace it.
        let again = run(dir.path(), &opts, &mut |_| {}).unwrap();
        assert!(again.generation.reused);
        assert_eq!(again.rebuild.events, g.events);
        let bigger = HistoryBenchOptions {
            events: 2_500,
            runs: 1,
            ..opts
        };
        let fresh = run(dir.path(), &bigger, &mut |_| {}).unwrap();
        assert!(!fresh.generation.reused);
        assert_eq!(fresh.export_all_tenants.events, fresh.generation.events);
    }

    #[test]
    fn tenants_are_skewed_and_all_used() {
        let mut counts = [0u64; TENANTS];
        for k in 0..20_000 {
            counts[tenant_of(k)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0));
        assert!(counts[0] > 3_000 && counts[0] < 5_500, "{}", counts[0]);
        assert!(counts[0] > counts[63] * 20);
    }
}
