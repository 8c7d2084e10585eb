//! End-to-end benchmarks through the real edges: `tenantry bench http` and `tenantry bench nats`.
//!
//! Each starts the real server (`tenantry serve`, this binary) as a child process on a fresh
//! config in the work dir (and, for NATS, a real `nats-server` on a free loopback port), then
//! drives it from this process the way clients do: HTTP/1.1 keep-alive connections posting
//! `/api/v1/messages` with a JWT, or NATS requests on the ingress subjects, each client owning one
//! session. A closed-loop pass per client count finds the peak; a paced pass then offers a
//! fraction of it, measuring latency from each request's scheduled send time (no coordinated
//! omission).
//!
//! Invariants:
//! - Child processes are owned by guards that kill them on drop, so an error or a panic here
//!   leaves no server behind.
//! - The load generator is one thread in this process; the server is another process, but both
//!   share the machine's cores. Reports say so, and give each side's CPU time per run.
//! - The HTTP client is deliberately minimal: one request in flight per connection, responses
//!   framed by `Content-Length` only (the server never sends chunked bodies for this route).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Config, LoadOptions};
use crate::secrets::token::{claims_for, mint, TokenRequest};
use crate::secrets::value::SecretValue;
use crate::tenancy::{EnvId, TenantId};

pub(super) const TENANTS: usize = 8;
const FLOW: &str = "name: bench_flow\nversion: \"1.0\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      message: \"Welcome to {{ tenant.name }}! How can I help?\"\n";
/// HS256 key the child server is given; the tokens are minted with it.
const SIGNING_KEY: &str = "tenantry-bench-signing-key-0123456789abcdef";
const SUBJECT_PREFIX: &str = "greentic.messaging";
/// High enough that the per-tenant quota never answers 429 during a run.
const RATE_LIMIT_PER_S: u32 = 1_000_000;
/// Time the server (and nats-server) get to come up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// A request not answered within this counts as a `timeout` error.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head the HTTP client accepts.
const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Largest response body the HTTP client accepts (an ack is under 200 bytes).
const BODY_BYTES_MAX: usize = 64 * 1024;
/// Server stderr lines kept for error messages.
const STDERR_TAIL: usize = 40;
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
    /// Failed requests by cause: `status 429`, `timeout`, `io`, `no_responders`, `error:CODE`...
    pub errors: BTreeMap<String, u64>,
    /// CPU seconds (user + system) the server process used during the pass.
    pub server_cpu_s: f64,
    /// CPU seconds this process (the load generator) used during the pass.
    pub load_cpu_s: f64,
}

/// The report of `bench http` or `bench nats`.
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
}

/// The edge under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Edge {
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

/// Benchmarks `POST /api/v1/messages` on a real server started under `work_dir/http`.
pub fn run_http(
    work_dir: &Path,
    opts: &EdgeBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<EdgeBenchReport, String> {
    let dir = fresh_dir(work_dir, "http")?;
    let config = write_config(&dir, None, None)?;
    let tokens = Arc::new(mint_tokens(&config)?);
    let mut server = Server::start(&dir, Edge::Http)?;
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
    let runs = measure(opts, &mut server, progress, |pass| {
        load.block_on(http_pass(addr, tokens.clone(), pass))
    })?;
    Ok(report(Edge::Http, "HTTP 200 ack", targets, runs))
}

/// Benchmarks the NATS ingress (request → ack) on a real server and nats-server started under
/// `work_dir/nats`.
pub fn run_nats(
    work_dir: &Path,
    opts: &EdgeBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<EdgeBenchReport, String> {
    let dir = fresh_dir(work_dir, "nats")?;
    let nats = NatsServer::start()?;
    let url = format!("nats://127.0.0.1:{}", nats.port);
    progress(&format!(
        "nats: nats-server pid {} on {url}",
        nats.child.child.id()
    ));
    write_config(&dir, Some(&url), None)?;
    let mut server = Server::start(&dir, Edge::Nats)?;
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
    let runs = measure(opts, &mut server, progress, |pass| {
        load.block_on(nats_pass(client.clone(), pass))
    })?;
    // Our client first, then the server before nats-server, so that the server never logs a
    // lost NATS connection.
    drop(client);
    drop(server);
    drop(nats);
    Ok(report(Edge::Nats, "NATS ack", targets, runs))
}

/// One pass as the client tasks see it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pass {
    /// Distinguishes the passes' session and message ids.
    pub(super) index: usize,
    pub(super) clients: usize,
    pub(super) duration: Duration,
    /// Offered rate; `None` for closed loop.
    pub(super) rate: Option<f64>,
}

impl Pass {
    /// Each client's send interval when paced.
    fn interval(&self) -> Option<Duration> {
        self.rate
            .map(|r| Duration::from_secs_f64(self.clients as f64 / r))
    }

    /// When client `c` sends its `n`th request (paced), each client on its own phase.
    fn scheduled(&self, t0: Instant, c: usize, n: u64) -> Option<Instant> {
        let iv = self.interval()?;
        Some(t0 + iv.mul_f64(n as f64 + c as f64 / self.clients as f64))
    }
}

/// What one client task measured.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) latencies_us: Vec<u64>,
    pub(super) errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, cause: impl Into<String>) {
        *self.errors.entry(cause.into()).or_default() += 1;
    }

    fn ok(&mut self, since: Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latencies_us.push(us);
    }
}

/// Closed-loop passes for each client count, then the paced pass at a fraction of the best.
fn measure(
    opts: &EdgeBenchOptions,
    server: &mut Server,
    progress: &mut dyn FnMut(&str),
    mut pass: impl FnMut(Pass) -> Result<Vec<Tally>, String>,
) -> Result<Vec<EdgeRun>, String> {
    let name = server.edge.name();
    let mut runs = Vec::new();
    let mut one = |p: Pass, server: &mut Server| -> Result<EdgeRun, String> {
        let (server_ticks, load_ticks) = (server.cpu_ticks(), cpu_ticks("self"));
        let started = Instant::now();
        let tallies = pass(p)?;
        let seconds = started.elapsed().as_secs_f64();
        let server_cpu = ticks_to_s(server.cpu_ticks().saturating_sub(server_ticks));
        let load_cpu = ticks_to_s(cpu_ticks("self").saturating_sub(load_ticks));
        server.check_alive()?;
        Ok(summarize(p, seconds, tallies, server_cpu, load_cpu))
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
        "{:>5} clients: {:.0} ok/s, p50 {} us, p99 {} us, max {} us, errors {:?}, cpu server {:.2} s / load {:.2} s",
        run.clients,
        run.ok_per_s,
        run.latency_p50_us,
        run.latency_p99_us,
        run.latency_max_us,
        run.errors,
        run.server_cpu_s,
        run.load_cpu_s
    )
}

fn summarize(
    p: Pass,
    seconds: f64,
    tallies: Vec<Tally>,
    server_cpu: f64,
    load_cpu: f64,
) -> EdgeRun {
    let mut latencies = Vec::new();
    let mut errors = BTreeMap::new();
    for t in tallies {
        latencies.extend(t.latencies_us);
        for (cause, n) in t.errors {
            *errors.entry(cause).or_default() += n;
        }
    }
    latencies.sort_unstable();
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
        errors,
        server_cpu_s: server_cpu,
        load_cpu_s: load_cpu,
    }
}

fn report(edge: Edge, unit: &'static str, targets: Targets, runs: Vec<EdgeRun>) -> EdgeBenchReport {
    let peak = runs
        .iter()
        .filter(|r| r.paced_per_s.is_none())
        .map(|r| r.ok_per_s)
        .fold(0.0, f64::max);
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
    }
}

pub(super) fn percentile(sorted: &[u64], permille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * permille.min(1000) / 1000]
}

/// The load generator's runtime: one thread, so that it takes at most one of the cores.
pub(super) fn load_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

pub(super) fn fresh_dir(work_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = work_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

pub(super) fn tenant_name(i: usize) -> String {
    format!("tenant-{:02}", i % TENANTS)
}

/// Writes config.toml and the flow into `dir` and loads the config back (so a bad config fails
/// here, with the loader's message, rather than as a server that never says `listening on`).
pub(super) fn write_config(
    dir: &Path,
    nats_url: Option<&str>,
    quota: Option<(usize, u32)>,
) -> Result<Config, String> {
    std::fs::write(dir.join("flow.yaml"), FLOW).map_err(|e| e.to_string())?;
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"off\"\ndata_dir = \"./data\"\n\
         rate_limit_per_s = {RATE_LIMIT_PER_S}\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n"
    );
    if let Some(url) = nats_url {
        toml.push_str(&format!(
            "[nats]\nurl = \"{url}\"\nsubject_prefix = \"{SUBJECT_PREFIX}\"\n"
        ));
    }
    for t in 0..TENANTS {
        let tenant = tenant_name(t);
        let quota = match quota {
            Some((q, per_s)) if q == t => format!("rate_limit_per_s = {per_s}\n"),
            _ => String::new(),
        };
        toml.push_str(&format!(
            "[tenants.{tenant}]\n{quota}name = \"Tenant {t}\"\nenvironments = [\"prod\"]\n\
             [tenants.{tenant}.teams.support]\nflow = \"flow.yaml\"\n\
             [tenants.{tenant}.teams.support.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        ));
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, toml).map_err(|e| e.to_string())?;
    Config::load(&path, &LoadOptions::default()).map_err(|e| e.to_string())
}

/// One tenant-wide token per tenant, valid for an hour.
pub(super) fn mint_tokens(config: &Config) -> Result<Vec<String>, String> {
    let key = SecretValue::new(SIGNING_KEY.as_bytes().to_vec());
    let env = EnvId::parse("prod").map_err(|e| e.to_string())?;
    (0..TENANTS)
        .map(|t| {
            let request = TokenRequest {
                tenant: TenantId::parse(&tenant_name(t)).map_err(|e| e.to_string())?,
                env: env.clone(),
                team: None,
                ttl: Duration::from_secs(60 * 60),
                subject: "tenantry-bench".to_owned(),
            };
            let claims =
                claims_for(config, &request, SystemTime::now()).map_err(|e| e.to_string())?;
            mint(&key, &claims).map_err(|e| e.to_string())
        })
        .collect()
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_S: u64 = 100;

pub(super) fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / TICKS_PER_S as f64
}

/// CPU time (user + system, in ticks) of process `pid` ("self" for this one), from /proc; 0 if
/// unknown.
pub(super) fn cpu_ticks(pid: &str) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the parenthesised command name start with field 3 (state); utime and stime
    // are fields 14 and 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ticks(11) + ticks(12)
}

/// A child process killed (and reaped) when dropped.
struct Guard {
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nats-server` on a free loopback port.
struct NatsServer {
    child: Guard,
    port: u16,
}

impl NatsServer {
    fn start() -> Result<NatsServer, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let binary = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start nats-server ({e}): install it (Debian: apt-get install \
                     nats-server) or put it on PATH"
                )
            })?;
        let mut nats = NatsServer {
            child: Guard { child },
            port,
        };
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nats.child.child.try_wait() {
                return Err(format!("nats-server exited at start: {status}"));
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("nats-server did not listen on port {port} in time"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }
}

/// `tenantry serve` as a child process, with its stderr drained by a thread.
pub(super) struct Server {
    edge: Edge,
    child: Guard,
    pub(super) addr: SocketAddr,
    /// The last [`STDERR_TAIL`] lines, for error messages.
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts the server on `dir/config.toml` and waits until it serves `edge`.
    pub(super) fn start(dir: &Path, edge: Edge) -> Result<Server, String> {
        let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .env("TENANTRY_SIGNING_KEY", SIGNING_KEY)
            .env_remove("TENANTRY_TENANT_ID")
            .env_remove("TENANTRY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {} serve: {e}", exe.display()))?;
        let stderr = child.stderr.take();
        let child = Guard { child };
        let stderr = stderr.ok_or("the server's stderr is not piped")?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        // Bounded: lines past the startup wait are dropped here (the tail keeps the last ones).
        let (tx, lines) = mpsc::sync_channel(1024);
        {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == STDERR_TAIL {
                            tail.pop_front();
                        }
                        tail.push_back(line.clone());
                    }
                    let _ = tx.try_send(line);
                }
            });
        }
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        let mut addr = None;
        let mut subscribed = edge != Edge::Nats;
        while addr.is_none() || !subscribed {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = match lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the server did not start in {STARTUP_TIMEOUT:?}; its stderr:\n{}",
                        tail_text(&tail)
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let mut child = child;
                    let status = child.child.wait().map_err(|e| e.to_string())?;
                    return Err(format!(
                        "the server exited at start ({status}); its stderr:\n{}",
                        tail_text(&tail)
                    ));
                }
            };
            if let Some((_, rest)) = line.split_once("listening on ") {
                let raw = rest.split_whitespace().next().unwrap_or("");
                addr = Some(
                    raw.parse::<SocketAddr>()
                        .map_err(|e| format!("bad address in {line:?}: {e}"))?,
                );
            }
            subscribed |= line.contains("NATS ingress subscribed");
        }
        let addr = addr.ok_or("no `listening on` line")?;
        Ok(Server {
            edge,
            child,
            addr,
            tail,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.child.id()
    }

    pub(super) fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&self.pid().to_string())
    }

    /// An error with the server's last words if it has exited.
    pub(super) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "the server exited during the run ({status}); its stderr:\n{}",
                tail_text(&self.tail)
            )),
            Err(e) => Err(format!("checking on the server: {e}")),
        }
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The parts of an HTTP/1.1 response head the load generator needs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ResponseHead {
    pub(super) status: u16,
    /// Bytes of the head, including the blank line.
    head_len: usize,
    content_length: usize,
    /// The server will close the connection after this response.
    pub(super) close: bool,
}

/// Why a response cannot be read by this client.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// No blank line within [`HEAD_BYTES_MAX`] bytes.
    TooLong,
    /// Chunked bodies are not supported (the server sends `Content-Length` for this route).
    Chunked,
    /// Not an HTTP/1.x response head we understand.
    Malformed(&'static str),
}

/// Parses the response head at the start of `buf`; `Ok(None)` when it is not complete yet.
fn parse_head(buf: &[u8]) -> Result<Option<ResponseHead>, HeadError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > HEAD_BYTES_MAX {
            Err(HeadError::TooLong)
        } else {
            Ok(None)
        };
    };
    if end > HEAD_BYTES_MAX {
        return Err(HeadError::TooLong);
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let mut status_line = lines.next().unwrap_or("").splitn(3, ' ');
    let version = status_line.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("not HTTP/1.x"));
    }
    let status = status_line
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(HeadError::Malformed("bad status code"))?;
    let mut content_length = None;
    let mut close = version == "HTTP/1.0";
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header without a colon"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .map_err(|_| HeadError::Malformed("bad Content-Length"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(HeadError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().contains("chunked") {
                return Err(HeadError::Chunked);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    let content_length = match content_length {
        Some(n) => n,
        None if bodiless => 0,
        None => return Err(HeadError::Malformed("no Content-Length")),
    };
    Ok(Some(ResponseHead {
        status,
        head_len: end + 4,
        content_length,
        close,
    }))
}

/// One keep-alive connection with its read buffer.
pub(super) struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    pub(super) async fn open(addr: SocketAddr) -> std::io::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request` and reads the whole response: its head (status, close) only.
    pub(super) async fn exchange(&mut self, request: &[u8]) -> Result<ResponseHead, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|_| "io".to_owned())?;
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(head) = parse_head(&self.buf).map_err(|e| format!("bad response: {e:?}"))? {
                if head.content_length > BODY_BYTES_MAX {
                    return Err("bad response: body too large".to_owned());
                }
                let total = head.head_len + head.content_length;
                if self.buf.len() >= total {
                    self.buf.drain(..total);
                    return Ok(head);
                }
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|_| "io".to_owned())?;
            if n == 0 {
                return Err("closed".to_owned());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The request bytes for message `n` of client `c` in pass `p`.
fn http_request(
    out: &mut Vec<u8>,
    host: &SocketAddr,
    token: &str,
    tenant: &str,
    p: &Pass,
    c: usize,
    n: u64,
) {
    let body = format!(
        "{{\"team\":\"support\",\"channel\":\"webchat\",\"session\":\"h{}-c{c}\",\"user\":\"user-{c}\",\
         \"text\":\"hello, I need help with order {n:08}\",\"message_id\":\"h{}-c{c}-{n}\"}}",
        p.index, p.index
    );
    out.clear();
    out.extend_from_slice(
        format!(
            "POST /api/v1/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
             X-Tenant-ID: {tenant}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

pub(super) async fn http_pass(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    p: Pass,
) -> Result<Vec<Tally>, String> {
    // Connect everything first, so that the pass measures requests, not the connection storm.
    let mut connections = Vec::with_capacity(p.clients);
    for _ in 0..p.clients {
        connections.push(
            Connection::open(addr)
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?,
        );
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(c, conn)| tokio::spawn(http_client(addr, tokens.clone(), conn, p, c, t0)))
        .collect();
    let mut tallies = Vec::with_capacity(tasks.len());
    for t in tasks {
        tallies.push(t.await.map_err(|e| e.to_string())?);
    }
    Ok(tallies)
}

async fn http_client(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    conn: Connection,
    p: Pass,
    c: usize,
    t0: Instant,
) -> Tally {
    let tenant = tenant_name(c);
    let token = &tokens[c % tokens.len()];
    let deadline = t0 + p.duration;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 14),
        errors: BTreeMap::new(),
    };
    let mut conn = Some(conn);
    let mut request = Vec::with_capacity(1024);
    let mut n: u64 = 0;
    loop {
        let sent = match p.scheduled(t0, c, n) {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                at
            }
            None => Instant::now(),
        };
        if sent >= deadline {
            break;
        }
        let mut open = match conn.take() {
            Some(open) => open,
            None => match Connection::open(addr).await {
                Ok(open) => open,
                Err(_) => {
                    tally.error("connect");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    n += 1;
                    continue;
                }
            },
        };
        http_request(&mut request, &addr, token, &tenant, &p, c, n);
        n += 1;
        match tokio::time::timeout(REQUEST_TIMEOUT, open.exchange(&request)).await {
            Ok(Ok(head)) => {
                if head.status == 200 {
                    tally.ok(sent);
                } else {
                    tally.error(format!("status {}", head.status));
                }
                if !head.close {
                    conn = Some(open);
                }
            }
            // The connection's state is unknown: drop it and reconnect.
            Ok(Err(cause)) => tally.error(cause),
            Err(_) => tally.error("timeout"),
        }
    }
    tally
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
        tenant_name(c)
    );
    let subject = async_nats::Subject::from(subject);
    let deadline = t0 + p.duration;
    let mut tally = Tally {
        latencies_us: Vec::with_capacity(1 << 14),
        errors: BTreeMap::new(),
    };
    let mut n: u64 = 0;
    loop {
        let sent = match p.scheduled(t0, c, n) {
            Some(at) => {
                tokio::time::sleep_until(at).await;
                at
            }
            None => Instant::now(),
        };
        if sent >= deadline {
            break;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> Result<Option<ResponseHead>, HeadError> {
        parse_head(raw.as_bytes())
    }

    #[test]
    fn head_with_content_length_is_framed() {
        let raw = "HTTP/1.1 200 OK\r\ncontent-length: 27\r\ncontent-type: application/json\r\n\
                   date: Mon, 23 Nov 2026 10:00:00 GMT\r\n\r\n{\"session\":\"s\",\"seq\":1}   ";
        let head = parsed(raw).unwrap().unwrap();
        assert_eq!(
            head,
            ResponseHead {
                status: 200,
                head_len: raw.find("{").unwrap(),
                content_length: 27,
                close: false,
            }
        );
    }

    #[test]
    fn incomplete_head_asks_for_more() {
        assert_eq!(parsed("HTTP/1.1 200 OK\r\ncontent-len"), Ok(None));
        assert_eq!(parsed(""), Ok(None));
    }

    #[test]
    fn error_status_and_close_are_reported() {
        let head = parsed(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (head.status, head.content_length, head.close),
            (429, 0, true)
        );
        let head = parsed("HTTP/1.0 204 No Content\r\n\r\n").unwrap().unwrap();
        assert_eq!(
            (head.status, head.content_length, head.close),
            (204, 0, true)
        );
    }

    #[test]
    fn unsupported_or_broken_heads_are_errors() {
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Chunked)
        );
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\n\r\n"),
            Err(HeadError::Malformed("no Content-Length"))
        );
        assert_eq!(
            parsed("HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\n"),
            Err(HeadError::Malformed("bad status code"))
        );
        assert_eq!(
            parsed("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::Malformed("conflicting Content-Length"))
        );
        assert_eq!(
            parsed(&"x".repeat(HEAD_BYTES_MAX + 1)),
            Err(HeadError::TooLong)
        );
    }

    #[test]
    fn request_is_well_formed() {
        let p = Pass {
            index: 3,
            clients: 2,
            duration: Duration::from_secs(1),
            rate: None,
        };
        let mut out = Vec::new();
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        http_request(&mut out, &addr, "TOKEN", "tenant-01", &p, 1, 7);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /api/v1/messages HTTP/1.1\r\n"));
        assert!(head.contains("\r\nAuthorization: Bearer TOKEN\r\n"));
        assert!(head.contains("\r\nX-Tenant-ID: tenant-01\r\n"));
        assert!(head.ends_with(&format!("Content-Length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["session"], "h3-c1");
        assert_eq!(json["message_id"], "h3-c1-7");
    }

    #[test]
    fn paced_clients_are_spread_over_the_interval() {
        let p = Pass {
            index: 0,
            clients: 4,
            duration: Duration::from_secs(1),
            rate: Some(1000.0),
        };
        let t0 = Instant::now();
        // 4 clients at 1000/s: each sends every 4 ms, client 1 a quarter interval after client 0.
        assert_eq!(p.scheduled(t0, 0, 1), Some(t0 + Duration::from_millis(4)));
        assert_eq!(p.scheduled(t0, 1, 0), Some(t0 + Duration::from_millis(1)));
        let closed = Pass { rate: None, ..p };
        assert_eq!(closed.scheduled(t0, 1, 0), None);
    }
}
