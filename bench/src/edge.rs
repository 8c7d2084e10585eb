//! End-to-end benchmarks through the real edges: `tenantry-bench http` and `tenantry-bench nats`.
//!
//! Each starts the real server (`tenantry serve`) as a child process on a fresh
//! config in the work dir (and, for NATS, a real `nats-server` on a free loopback port), then
//! drives it from this process the way clients do: HTTP/1.1 keep-alive connections posting
//! `/api/v1/messages` with a JWT, or NATS requests on the ingress subjects, each client owning one
//! session. A closed-loop pass per client count finds the peak; a paced pass then offers a
//! fraction of it, measuring latency from each request's scheduled send time (no coordinated
//! omission).
//!
//! Invariants:
//! - Child processes are the harness's ([`crate::harness`]): killed on drop, so an error or a
//!   panic here leaves no server behind.
//! - The load generator is one thread in this process; the server is another process, but both
//!   share the machine's cores. Reports say so, and give each side's CPU time per run.
//! - The HTTP client ([`http`]) is deliberately minimal: one request in flight per connection,
//!   responses framed by `Content-Length` only (the server never sends chunked bodies for this
//!   route).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::harness::{
    fresh_dir, mint_tokens, paced_at, percentile, tenant_name, write_config, ChildServe,
    ConfigSpec, CpuSpent, NatsServer, Ready, Switches, SUBJECT_PREFIX,
};

pub mod http;
pub mod wrk;

pub use http::{http_pass, Connection};

/// Tenants the clients are spread over.
pub const TENANTS: usize = 8;
/// High enough that the per-tenant quota never answers 429 during a run.
pub const RATE_LIMIT_PER_S: u32 = 1_000_000;
/// Time the server (and nats-server) get to come up.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A request not answered within this counts as a `timeout` error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// What the load generator shares with the server.
const LOAD_GENERATOR: &str = "same machine, separate process from the server";

/// What to run.
#[derive(Clone, Debug)]
pub struct EdgeBenchOptions {
    /// Concurrent clients (connections or requesters) per closed-loop pass.
    pub clients: Vec<usize>,
    /// Length of each pass.
    pub duration: Duration,
    /// The paced pass offers this fraction of the best closed-loop rate (0 skips it).
    pub paced_fraction: f64,
}

/// What the issue asks of an edge.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    /// Acked requests per second, at the best client count.
    pub ok_per_s_min: f64,
    /// p99 latency of the paced pass, when the issue sets one.
    pub paced_p99_us_max: Option<u64>,
}

/// Whether the targets were met in this run.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub peak_ok_per_s: f64,
    pub throughput_met: bool,
    pub paced_p99_us: Option<u64>,
    pub paced_p99_met: Option<bool>,
}

/// One measured pass.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeRun {
    pub clients: usize,
    /// Offered rate of a paced pass; `None` for closed loop.
    pub paced_per_s: Option<f64>,
    /// Requests answered with an ack (HTTP 200 / NATS ack payload).
    pub ok: u64,
    pub seconds: f64,
    pub ok_per_s: f64,
    /// From send (closed loop) or scheduled send time (paced) to the whole answer.
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
    pub latency_max_us: u64,
    /// Paced passes: p99 of the load generator's own delay in waking for a request it was free
    /// for (its timer, its thread's turn on the cores it shares with the server), which the
    /// latency above includes.
    pub client_wake_delay_p99_us: Option<u64>,
    /// Failed requests by cause: `status 429`, `timeout`, `io`, `no_responders`, `error:CODE`...
    pub errors: BTreeMap<String, u64>,
    /// CPU seconds (user + system) the server process used during the pass.
    pub server_cpu_s: f64,
    /// CPU seconds this process (the load generator) used during the pass.
    pub load_cpu_s: f64,
    /// Context switches of the server's threads during the pass, per ok: the thread hops a
    /// request costs inside the server.
    pub server_switches_per_ok: f64,
}

/// What the server and the load generator spent on a pass.
struct Spent {
    server_cpu_s: f64,
    load_cpu_s: f64,
    server_switches: u64,
}

/// The report of the `http` or `nats` scenario.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeBenchReport {
    pub scenario: &'static str,
    /// What one `ok` is.
    pub unit: &'static str,
    pub tenants: usize,
    pub load_generator: &'static str,
    /// Threads the load generator runs on (all clients are async tasks on them).
    pub load_generator_threads: usize,
    pub cores: usize,
    pub targets: Targets,
    pub verdict: Verdict,
    pub runs: Vec<EdgeRun>,
    /// HTTP: the same server measured by an outside tool (wrk) in the same run.
    pub outside: Option<wrk::Outside>,
}

/// The edge under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Http,
    Nats,
}

impl Edge {
    fn name(self) -> &'static str {
        match self {
            Edge::Http => "http",
            Edge::Nats => "nats",
        }
    }
}

/// Benchmarks `POST /api/v1/messages` on a real server (`exe serve`) started under
/// `work_dir/http`.
pub fn run_http(
    exe: &Path,
    work_dir: &Path,
    opts: &EdgeBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<EdgeBenchReport, String> {
    let dir = fresh_dir(work_dir, "http")?;
    let config = server_config(&dir, None, None)?;
    let tokens = Arc::new(mint_tokens(&config, TENANTS)?);
    let mut server = ChildServe::start(exe, &dir, Ready::Listening, STARTUP_TIMEOUT)?;
    progress(&format!(
        "http: server pid {} listening on {}",
        server.pid(),
        server.addr
    ));
    let addr = server.addr;
    let load = load_runtime()?;
    let targets = Targets {
        ok_per_s_min: 20_000.0,
        paced_p99_us_max: Some(5_000),
    };
    let runs = measure(Edge::Http, opts, &mut server, progress, |pass| {
        load.block_on(http_pass(addr, tokens.clone(), pass))
    })?;
    let outside = outside_anchor(&dir, addr, &tokens, &runs, opts, progress)?;
    server.check_alive()?;
    Ok(report(
        Edge::Http,
        "HTTP 200 ack",
        targets,
        runs,
        Some(outside),
    ))
}

/// wrk's closed loop on the same server, with the connections of the bench's best closed-loop
/// pass and its length.
fn outside_anchor(
    dir: &Path,
    addr: std::net::SocketAddr,
    tokens: &[String],
    runs: &[EdgeRun],
    opts: &EdgeBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<wrk::Outside, String> {
    let Some(binary) = wrk::binary() else {
        progress("http: wrk is not on PATH: no outside anchor (Debian: apt install wrk)");
        return Ok(wrk::Outside::Missing {
            reason: "wrk is not on PATH".to_owned(),
        });
    };
    let connections = best_closed_loop(runs).map_or(64, |r| r.clients);
    let run = wrk::acked(wrk::run(
        &binary,
        dir,
        addr,
        tokens,
        connections,
        opts.duration,
    )?)?;
    progress(&format!(
        "http by {}: {connections} connections, {} thread: {:.0} ok/s, p50 {} us, p99 {} us, \
         {} non-2xx, {} socket errors",
        run.version,
        run.threads,
        run.ok_per_s,
        run.latency_p50_us,
        run.latency_p99_us,
        run.non_2xx,
        run.socket_errors
    ));
    Ok(wrk::Outside::Measured(run))
}

/// Benchmarks the NATS ingress (request → ack) on a real server (`exe serve`) and nats-server
/// started under `work_dir/nats`.
pub fn run_nats(
    exe: &Path,
    work_dir: &Path,
    opts: &EdgeBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<EdgeBenchReport, String> {
    let dir = fresh_dir(work_dir, "nats")?;
    let nats = NatsServer::start()?;
    let url = nats.url();
    progress(&format!("nats: nats-server pid {} on {url}", nats.pid()));
    server_config(&dir, Some(&url), None)?;
    let mut server = ChildServe::start(exe, &dir, Ready::NatsSubscribed, STARTUP_TIMEOUT)?;
    progress(&format!(
        "nats: server pid {} subscribed to the ingress",
        server.pid()
    ));
    let load = load_runtime()?;
    let client = load
        .block_on(async_nats::connect(url.as_str()))
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let targets = Targets {
        ok_per_s_min: 30_000.0,
        paced_p99_us_max: None,
    };
    let runs = measure(Edge::Nats, opts, &mut server, progress, |pass| {
        load.block_on(nats_pass(client.clone(), pass))
    })?;
    // Our client first, then the server before nats-server, so that the server never logs a
    // lost NATS connection.
    drop(client);
    drop(server);
    drop(nats);
    Ok(report(Edge::Nats, "NATS ack", targets, runs, None))
}

/// One pass as the client tasks see it.
#[derive(Clone, Copy, Debug)]
pub struct Pass {
    /// Distinguishes the passes' session and message ids.
    pub index: usize,
    pub clients: usize,
    pub duration: Duration,
    /// Offered rate; `None` for closed loop.
    pub rate: Option<f64>,
}

impl Pass {
    /// Each client's send interval when paced.
    fn interval(&self) -> Option<Duration> {
        self.rate
            .map(|r| Duration::from_secs_f64(self.clients as f64 / r))
    }

    /// When client `c` sends its `n`th request (paced), each client on its own phase.
    pub fn scheduled(&self, t0: Instant, c: usize, n: u64) -> Option<Instant> {
        Some(paced_at(t0, self.interval()?, n, c, self.clients))
    }

    /// Waits until client `c`'s `n`th request is due (at once in a closed loop); returns when.
    pub async fn wait_turn(&self, t0: Instant, c: usize, n: u64) -> Instant {
        crate::harness::wait_turn(t0, self.interval(), n, c, self.clients).await
    }
}

/// What one client task measured.
#[derive(Default)]
pub struct Tally {
    pub latencies_us: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    /// Paced passes: the client's own delay in waking for each request it was free for
    /// ([`crate::harness::wake_delay_us`]).
    pub wake_delays_us: Vec<u64>,
    /// When this client's last answer came.
    free_since: Option<Instant>,
}

impl Tally {
    fn error(&mut self, cause: impl Into<String>) {
        *self.errors.entry(cause.into()).or_default() += 1;
        self.free_since = Some(Instant::now());
    }

    fn ok(&mut self, since: Instant) {
        let now = Instant::now();
        let us = u64::try_from(now.duration_since(since).as_micros()).unwrap_or(u64::MAX);
        self.latencies_us.push(us);
        self.free_since = Some(now);
    }

    /// A paced client's turn for a request due at `due` has come: records its wake-up delay.
    fn woke(&mut self, p: &Pass, due: Instant) {
        if p.rate.is_some() {
            let delay = crate::harness::wake_delay_us(due, self.free_since, Instant::now());
            self.wake_delays_us.extend(delay);
        }
    }
}

/// Closed-loop passes for each client count, then the paced pass at a fraction of the best.
fn measure(
    edge: Edge,
    opts: &EdgeBenchOptions,
    server: &mut ChildServe,
    progress: &mut dyn FnMut(&str),
    mut pass: impl FnMut(Pass) -> Result<Vec<Tally>, String>,
) -> Result<Vec<EdgeRun>, String> {
    let name = edge.name();
    let mut runs = Vec::new();
    let mut one = |p: Pass, server: &mut ChildServe| -> Result<EdgeRun, String> {
        let pid = server.pid().to_string();
        let switches = Switches::sample(&pid);
        let started = Instant::now();
        let (tallies, cpu) = CpuSpent::measure(server, || pass(p));
        let tallies = tallies?;
        let seconds = started.elapsed().as_secs_f64();
        let spent = Spent {
            server_cpu_s: cpu.server_s,
            load_cpu_s: cpu.load_s,
            server_switches: switches.since(&pid),
        };
        server.check_alive()?;
        Ok(summarize(p, seconds, tallies, &spent))
    };
    for (index, &clients) in opts.clients.iter().enumerate() {
        let p = Pass {
            index,
            clients: clients.max(1),
            duration: opts.duration,
            rate: None,
        };
        let run = one(p, server)?;
        progress(&format!("{name} {}", line(&run)));
        runs.push(run);
    }
    let peak = runs
        .iter()
        .max_by(|a, b| a.ok_per_s.total_cmp(&b.ok_per_s))
        .cloned();
    if let Some(peak) = peak.filter(|p| p.ok_per_s > 0.0 && opts.paced_fraction > 0.0) {
        let rate = peak.ok_per_s * opts.paced_fraction;
        let p = Pass {
            index: runs.len(),
            clients: peak.clients,
            duration: opts.duration,
            rate: Some(rate),
        };
        let run = one(p, server)?;
        progress(&format!(
            "{name} paced at {:.0}% of peak ({rate:.0}/s offered): {}",
            opts.paced_fraction * 100.0,
            line(&run)
        ));
        runs.push(run);
    }
    Ok(runs)
}

fn line(run: &EdgeRun) -> String {
    format!(
        "{:>5} clients: {:.0} ok/s, p50 {} us, p99 {} us, max {} us, errors {:?}, cpu server {:.2} s / load {:.2} s, {:.1} server switches/ok",
        run.clients,
        run.ok_per_s,
        run.latency_p50_us,
        run.latency_p99_us,
        run.latency_max_us,
        run.errors,
        run.server_cpu_s,
        run.load_cpu_s,
        run.server_switches_per_ok
    ) + &run
        .client_wake_delay_p99_us
        .map_or(String::new(), |d| format!(", client wake-up delay p99 {d} us"))
}

fn summarize(p: Pass, seconds: f64, tallies: Vec<Tally>, spent: &Spent) -> EdgeRun {
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    let mut delays = Vec::new();
    for t in tallies {
        latencies.extend(t.latencies_us);
        delays.extend(t.wake_delays_us);
        for (cause, n) in t.errors {
            *errors.entry(cause).or_default() += n;
        }
    }
    latencies.sort_unstable();
    delays.sort_unstable();
    let ok = latencies.len() as u64;
    EdgeRun {
        clients: p.clients,
        paced_per_s: p.rate,
        ok,
        seconds,
        ok_per_s: ok as f64 / seconds.max(f64::EPSILON),
        latency_p50_us: percentile(&latencies, 500),
        latency_p99_us: percentile(&latencies, 990),
        latency_max_us: latencies.last().copied().unwrap_or(0),
        client_wake_delay_p99_us: p.rate.map(|_| percentile(&delays, 990)),
        errors,
        server_cpu_s: spent.server_cpu_s,
        load_cpu_s: spent.load_cpu_s,
        server_switches_per_ok: spent.server_switches as f64 / ok.max(1) as f64,
    }
}

/// The closed-loop pass with the most acks per second.
fn best_closed_loop(runs: &[EdgeRun]) -> Option<&EdgeRun> {
    runs.iter()
        .filter(|r| r.paced_per_s.is_none())
        .max_by(|a, b| a.ok_per_s.total_cmp(&b.ok_per_s))
}

fn report(
    edge: Edge,
    unit: &'static str,
    targets: Targets,
    runs: Vec<EdgeRun>,
    outside: Option<wrk::Outside>,
) -> EdgeBenchReport {
    let peak = best_closed_loop(&runs).map_or(0.0, |r| r.ok_per_s);
    let paced_p99_us = runs
        .iter()
        .find(|r| r.paced_per_s.is_some())
        .map(|r| r.latency_p99_us);
    let paced_p99_met = targets
        .paced_p99_us_max
        .zip(paced_p99_us)
        .map(|(max, p99)| p99 <= max);
    EdgeBenchReport {
        scenario: match edge {
            Edge::Http => "http_edge",
            Edge::Nats => "nats_edge",
        },
        unit,
        tenants: TENANTS,
        load_generator: LOAD_GENERATOR,
        load_generator_threads: 1,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        verdict: Verdict {
            peak_ok_per_s: peak,
            throughput_met: peak >= targets.ok_per_s_min,
            paced_p99_us,
            paced_p99_met,
        },
        targets,
        runs,
        outside,
    }
}

/// The load generator's runtime: one thread, so that it takes at most one of the cores.
pub fn load_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The tenant client `c` speaks for.
pub fn client_tenant(c: usize) -> String {
    tenant_name(c % TENANTS)
}

/// The config of an edge scenario's server: every tenant at [`RATE_LIMIT_PER_S`] but `quota`.
pub fn server_config(
    dir: &Path,
    nats_url: Option<&str>,
    quota: Option<(usize, u32)>,
) -> Result<tenantry::config::Config, String> {
    let spec = ConfigSpec {
        tenants: TENANTS,
        serve: true,
        rate_limit_per_s: Some(RATE_LIMIT_PER_S),
        nats_url,
        quota,
    };
    write_config(dir, &spec)
}
// ---------------------------------------------------------------------------------------------
// NATS

/// What the server answers on the reply subject: an ack, or `{"error":{"code",...}}`.
#[derive(Deserialize)]
struct NatsReply {
    #[serde(default)]
    error: Option<NatsReplyError>,
}

#[derive(Deserialize)]
struct NatsReplyError {
    code: String,
}

async fn nats_pass(client: async_nats::Client, p: Pass) -> Result<Vec<Tally>, String> {
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..p.clients)
        .map(|c| tokio::spawn(nats_client(client.clone(), p, c, t0)))
        .collect();
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await.map_err(|e| e.to_string())?);
    }
    Ok(tallies)
}

async fn nats_client(client: async_nats::Client, p: Pass, c: usize, t0: Instant) -> Tally {
    let subject = format!(
        "{SUBJECT_PREFIX}.ingress.prod.{}.support.webchat",
        client_tenant(c)
    );
    let subject = async_nats::Subject::from(subject);
    let deadline = t0 + p.duration;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 14),
        ..Tally::default()
    };
    let mut n: u64 = 0;
    loop {
        let sent = p.wait_turn(t0, c, n).await;
        if sent >= deadline {
            break;
        }
        tally.woke(&p, sent);
        let payload = format!(
            "{{\"session\":\"n{}-c{c}\",\"user\":\"user-{c}\",\
             \"text\":\"hello, I need help with order {n:08}\",\"message_id\":\"n{}-c{c}-{n}\"}}",
            p.index, p.index
        );
        n += 1;
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(REQUEST_TIMEOUT));
        match client.send_request(subject.clone(), request).await {
            Ok(reply) => match serde_json::from_slice::<NatsReply>(&reply.payload) {
                Ok(NatsReply { error: None }) => tally.ok(sent),
                Ok(NatsReply { error: Some(e) }) => tally.error(format!("error:{}", e.code)),
                Err(_) => tally.error("bad reply"),
            },
            Err(e) => tally.error(match e.kind() {
                async_nats::RequestErrorKind::TimedOut => "timeout",
                async_nats::RequestErrorKind::NoResponders => "no_responders",
                async_nats::RequestErrorKind::InvalidSubject => "invalid_subject",
                async_nats::RequestErrorKind::MaxPayloadExceeded => "max_payload",
                async_nats::RequestErrorKind::Other => "other",
            }),
        }
    }
    tally
}
