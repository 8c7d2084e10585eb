//! Benchmark of a long history (issue 4): how fast the runtime reads back what it wrote.
//!
//! Generates a log of many sessions over `TENANTS` tenants (sessions of `SESSION_MESSAGES`
//! messages, each message one group of `GROUP_EVENTS` events as in the `log` scenario, tenants
//! sized by a Zipf law so that one tenant is much larger than the rest) plus one long session,
//! then measures, each on the reopened log:
//!
//! - **rebuild**: `Projector::rebuild_tenants` of every tenant's read models, one tenant per
//!   core at once as `tenantry rebuild` does, and again one tenant at a time;
//! - **export**: `audit::export::export` as JSONL (chain hashes and bodies checked and included)
//!   of the largest tenant and of every tenant, into a sink that only counts bytes;
//! - **replay**: folding the long session from the log into a `SessionState`, which is what
//!   `projections::load::load_session` does when there is no snapshot;
//! - **cold start**: the real `tenantry serve` (a child process) on this data, from spawn to its
//!   `listening on` line and to the first `200` from `GET /healthz`, then SIGTERM;
//! - **sealed / plain**: the rebuild and export of a smaller history written twice, sealed (the
//!   server's default) and plain, in the same run (`sealed`).
//!
//! Generating takes minutes at 10M events, so the log is kept in `{dir}/history` with a marker
//! file naming its parameters and reused by the next run with the same parameters. The marker is
//! written only after generation succeeded, so a half-written log is never reused.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use tenantry::audit::export::{export, ExportFormat, ExportOptions};
use tenantry::events::log::EventLog;
use tenantry::projections::projector::{
    longest_logs_first, rebuild_jobs, Projector, ProjectorError,
};
use tenantry::projections::session::SessionState;
use tenantry::tenancy::{SessionId, TenantId};

use crate::harness::{write_config, ChildServe, ConfigSpec, Ready};
pub use generate::APPENDERS_DEFAULT;
use generate::{ctx_of, generate, id, open_log, params, reusable, LONG_SESSION};
use generate::{GROUP_EVENTS, SESSION_MESSAGES, TENANTS};

mod generate;
mod sealed;
pub use sealed::SealedFigures;

/// Buffer between the export and its byte-counting sink (the CLI also writes through one).
const EXPORT_BUFFER_BYTES: usize = 64 * 1024;
/// The targets, printed beside the figures.
const REBUILD_EVENTS_PER_S_MIN: f64 = 2_000_000.0;
const EXPORT_MB_PER_S_MIN: f64 = 150.0;
const COLD_START_MS_MAX: f64 = 2_000.0;

/// How long `serve` may take to come up, and to stop after SIGTERM, before the bench gives up.
const SERVE_READY_TIMEOUT: Duration = Duration::from_secs(120);
const SERVE_STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for this process's own sled handle to let go of the data file.
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Events of the sealed / plain pair (written fresh each run); 0 skips it.
    pub sealed_events: u64,
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

/// Everything one run of the `history` scenario measured.
#[derive(Clone, Debug, Serialize)]
pub struct HistoryBenchReport {
    pub scenario: &'static str,
    pub tenants: usize,
    pub session_messages: u64,
    pub group_events: u64,
    pub runs: usize,
    pub generation: Generation,
    /// The whole log's rebuild with [`HistoryBenchReport::rebuild_jobs`] tenants at once.
    pub rebuild: Throughput,
    /// Tenants rebuilt at once: one per core, at most one per tenant (`tenantry rebuild`'s
    /// default).
    pub rebuild_jobs: usize,
    /// The same rebuild one tenant after another, in the same run.
    pub rebuild_one_job: Throughput,
    pub export_largest_tenant: ExportFigure,
    pub export_all_tenants: ExportFigure,
    pub replay_long_session: Throughput,
    /// Every other session of the largest tenant replayed in turn: groups read from frames of
    /// several groups.
    pub replay_sessions: Throughput,
    pub cold_start: Option<ColdStart>,
    /// The sealed / plain pair (`None`: not measured).
    pub sealed: Option<SealedFigures>,
    pub targets: Vec<TargetCheck>,
}

/// The config `serve` runs with: every bench tenant, an ephemeral port, the generated data.
fn serve_config(dir: &Path) -> Result<(), String> {
    let spec = ConfigSpec {
        tenants: TENANTS,
        serve: true,
        ..ConfigSpec::default()
    };
    write_config(dir, &spec).map(drop)
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

/// Folds every tenant's read models from scratch, `jobs` tenants at once (the longest logs
/// first), as `tenantry rebuild` does; returns the events folded.
fn rebuild_all(log: &EventLog, tenants: &[TenantId], jobs: NonZeroUsize) -> Result<u64, String> {
    let projector = Projector::new(log).map_err(|e| e.to_string())?;
    let order = longest_logs_first(log, tenants.to_vec()).map_err(|e| e.to_string())?;
    projector
        .rebuild_tenants(log, &order, jobs, &|_, _| {}, &|_, _| {
            Ok::<(), ProjectorError>(())
        })
        .map_err(|e| format!("rebuilding: {e}"))
}

/// The sessions of tenant-00 other than the long one (generated many at once, so their groups
/// share frames with other sessions' groups).
fn short_sessions(log: &EventLog) -> Result<Vec<SessionId>, String> {
    let long: SessionId = id(LONG_SESSION);
    let mut out = Vec::new();
    for info in log.scope(&ctx_of(0)).sessions() {
        let info = info.map_err(|e| e.to_string())?;
        if info.session != long {
            out.push(info.session);
        }
    }
    Ok(out)
}

/// Folds each of `sessions` from the log in turn, as `load_session` does without a snapshot;
/// returns the events folded.
fn replay_sessions(log: &EventLog, sessions: &[SessionId]) -> Result<u64, String> {
    let ctx = ctx_of(0);
    let scope = log.scope(&ctx);
    let team = ctx.team_or_default();
    let mut events = 0;
    for session in sessions {
        let mut state = SessionState::new(
            ctx.tenant.clone(),
            ctx.env.clone(),
            team.clone(),
            session.clone(),
        );
        for event in scope.session_events(session, 1..=u64::MAX) {
            state.apply(&event.map_err(|e| e.to_string())?.event);
            events += 1;
        }
        std::hint::black_box(&state);
    }
    Ok(events)
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

/// Starts `exe serve` on the config in `dir`, waits for its `listening on` line and a healthy
/// `/healthz`, then stops it with SIGTERM.
fn cold_start(exe: &Path, dir: &Path, log_dir: &Path) -> Result<ColdStartRun, String> {
    wait_unlocked(log_dir)?;
    let started = Instant::now();
    let server = ChildServe::start(exe, dir, Ready::Listening, SERVE_READY_TIMEOUT)?;
    let listening_ms = server.listening_after.as_secs_f64() * 1e3;
    let healthz_ms = loop {
        if healthz(server.addr) {
            break elapsed_ms(started);
        }
        if started.elapsed() > SERVE_READY_TIMEOUT {
            return Err(format!(
                "serve never answered GET /healthz with 200 within {SERVE_READY_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let stop_ms = server.terminate(SERVE_STOP_TIMEOUT)?.as_secs_f64() * 1e3;
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

/// The log's generation: an earlier run's when its marker matches, else a fresh one.
fn generation(
    dir: &Path,
    opts: &HistoryBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Generation, String> {
    let params = params(opts);
    let generation = match reusable(dir, &params)? {
        Some(g) => {
            progress(&format!(
                "reusing the log in {} ({} events, generated at {:.0} events/s)",
                dir.display(),
                g.events,
                g.events_per_s
            ));
            g
        }
        None => generate(dir, opts, params, progress)?,
    };
    progress(&format!(
        "log on disk: {} bytes, {:.0} bytes/event",
        generation.log_bytes, generation.log_bytes_per_event
    ));
    Ok(generation)
}

/// The tenant with the most events.
fn largest_tenant(log: &EventLog, tenants: &[TenantId]) -> Result<TenantId, String> {
    let mut largest: Option<(TenantId, u64)> = None;
    for tenant in tenants {
        let head = log.tenant(tenant).head().map_err(|e| e.to_string())?;
        let n = head.map_or(0, |h| h.tenant_seq);
        if largest.as_ref().is_none_or(|(_, m)| n > *m) {
            largest = Some((tenant.clone(), n));
        }
    }
    largest
        .map(|(t, _)| t)
        .ok_or_else(|| "the generated log has no tenants".to_owned())
}

/// `runs` cold starts of `exe serve` on the generated data, one after another.
fn cold_starts(
    exe: &Path,
    dir: &Path,
    log_dir: &Path,
    runs: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<ColdStart, String> {
    let mut starts = Vec::new();
    for i in 1..=runs {
        let run = cold_start(exe, dir, log_dir)?;
        progress(&format!(
            "serve cold start {i}/{runs}: listening after {:.0} ms, /healthz 200 after {:.0} ms, stopped {:.0} ms after SIGTERM",
            run.listening_ms, run.healthz_ms, run.stop_ms
        ));
        starts.push(run);
    }
    let pick = |f: fn(&ColdStartRun) -> f64| median(&starts.iter().map(f).collect::<Vec<_>>());
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
    Ok(figure)
}

/// The figures that have a target, against it.
fn targets(
    rebuild: &Throughput,
    export_largest: &ExportFigure,
    cold_start: Option<&ColdStart>,
) -> Vec<TargetCheck> {
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
    if let Some(c) = cold_start {
        targets.push(below(
            "cold_start_healthz_ms",
            c.healthz_ms,
            COLD_START_MS_MAX,
        ));
    }
    targets
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
    let generation = generation(&dir, opts, progress)?;
    serve_config(&dir)?;

    let log = open_log(&log_dir)?;
    let mut tenants = log.tenants().map_err(|e| e.to_string())?;
    tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let largest = largest_tenant(&log, &tenants)?;

    let runs = opts.runs.max(1);
    let jobs = rebuild_jobs(tenants.len());
    let mut rebuild_with = |jobs: NonZeroUsize| {
        let mut run_no = 0;
        let figure = timed(runs, || {
            run_no += 1;
            let started = Instant::now();
            let n = rebuild_all(&log, &tenants, jobs)?;
            let secs = started.elapsed().as_secs_f64();
            progress(&format!(
                "rebuild (jobs {jobs}) run {run_no}/{runs}: {n} events in {secs:.2} s ({:.0} events/s)",
                n as f64 / secs.max(f64::MIN_POSITIVE)
            ));
            Ok(n)
        })?;
        progress(&format!(
            "rebuild of {} tenants, jobs {jobs}: {:.0} events/s (median)",
            tenants.len(),
            figure.events_per_s,
        ));
        Ok::<_, String>(figure)
    };
    let rebuild = rebuild_with(jobs)?;
    // The same rebuild one tenant after another: what the jobs add, in the same run.
    let rebuild_one_job = rebuild_with(NonZeroUsize::MIN)?;
    progress(&format!(
        "rebuild: {:.0} events/s with jobs {jobs} = {:.2}x one job (target >= {REBUILD_EVENTS_PER_S_MIN:.0}: {})",
        rebuild.events_per_s,
        rebuild.events_per_s / rebuild_one_job.events_per_s.max(f64::MIN_POSITIVE),
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
    let sessions = short_sessions(&log)?;
    let replay_sessions = timed(runs, || replay_sessions(&log, &sessions))?;
    progress(&format!(
        "replay of {largest}'s {} other sessions, one after another: {:.0} events/s (median)",
        sessions.len(),
        replay_sessions.events_per_s
    ));
    drop(log);

    let cold_start = match &opts.serve_exe {
        None => None,
        Some(exe) => Some(cold_starts(exe, &dir, &log_dir, runs, progress)?),
    };

    let sealed = sealed::run(&dir, opts, (runs, jobs), progress)?;

    let targets = targets(&rebuild, &export_largest, cold_start.as_ref());
    Ok(HistoryBenchReport {
        scenario: "history",
        tenants: TENANTS,
        session_messages: SESSION_MESSAGES,
        group_events: GROUP_EVENTS,
        runs,
        generation,
        rebuild,
        rebuild_jobs: jobs.get(),
        rebuild_one_job,
        export_largest_tenant: export_largest,
        export_all_tenants: export_all,
        replay_long_session: replay,
        replay_sessions,
        cold_start,
        sealed,
        targets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use generate::SESSION_EVENTS;

    #[test]
    fn tiny_history_is_generated_folded_exported_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = HistoryBenchOptions {
            events: 2_000,
            long_session_events: 200,
            appenders: 16,
            runs: 2,
            serve_exe: None,
            sealed_events: 1_000,
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
        assert_eq!(report.rebuild_one_job.events, g.events, "and with one job");
        assert!((1..=TENANTS).contains(&report.rebuild_jobs));

        let all = &report.export_all_tenants;
        assert_eq!(all.events, g.events, "every event is exported");
        assert!(all.bytes > all.events * 100 && all.mb_per_s > 0.0);
        let largest = &report.export_largest_tenant;
        assert_eq!(largest.tenant.as_deref(), Some("tenant-00"));
        assert!(largest.events > 201 && largest.events < all.events);
        assert!(largest.events_per_s > 0.0);

        assert_eq!(report.replay_long_session.events, 201);
        assert!(report.replay_long_session.events_per_s > 0.0);
        // Every event of the largest tenant is in one of its sessions' replays.
        assert_eq!(report.replay_sessions.events + 201, largest.events);
        assert!(report.replay_sessions.events_per_s > 0.0);
        assert!(report.cold_start.is_none());
        // The sealed / plain pair: the same sessions folded and exported from both logs (each
        // checked sealed or plain by its first session's meta), then removed.
        let pair = report.sealed.as_ref().unwrap();
        assert_eq!(pair.sessions, 1_000u64.div_ceil(SESSION_EVENTS));
        assert_eq!(pair.plain_rebuild.events, pair.sessions * SESSION_EVENTS);
        assert_eq!(pair.sealed_rebuild.events, pair.plain_rebuild.events);
        assert_eq!(pair.sealed_export.events, pair.plain_export.events);
        assert!(pair.rebuild_ratio() > 0.0 && pair.export_ratio() > 0.0);
        assert!(pair.open_ns > 0.0 && pair.open_ns.is_finite());
        assert!(!dir.path().join("history/sealed-pair").exists());
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
}
