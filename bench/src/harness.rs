//! The one harness of every scenario: the bench's flow and config files, the child `serve`
//! launcher, the `nats-server` launcher (submodule `nats`: a plain server, or JetStream servers
//! alone or clustered), the percentile, the pacing schedule, and the /proc readings (CPU time,
//! resident set, directory sizes).
//!
//! Invariants:
//! - Child processes are owned by guards that kill (SIGKILL) and reap them on drop, so an error
//!   or a panic in a scenario leaves no server behind.
//! - A child `serve`'s stderr is drained to its end by a thread (a full pipe would block the
//!   server's logging); its last [`STDERR_TAIL_LINES`] lines explain a failure.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tenantry::config::{Config, LoadOptions};
use tenantry::secrets::token::{claims_for, mint, TokenRequest};
use tenantry::secrets::value::SecretValue;
use tenantry::tenancy::{EnvId, TenantId};

mod nats;
pub use nats::{jetstream_binary, server_version, JetStreamCluster, NatsServer, JS_SERVER_VAR};

/// The flow of every bench tenant: one reply node (three events per message).
pub const FLOW: &str = "name: bench_flow\nversion: \"1.0\"\nnodes:\n  - id: greet\n    type: reply\n    config:\n      message: \"Welcome to {{ tenant.name }}! How can I help?\"\n";
/// HS256 key every child server is given; the bench's tokens are minted with it.
pub const SIGNING_KEY: &str = "tenantry-bench-signing-key-0123456789abcdef";
/// The NATS subject prefix of the bench's servers.
pub const SUBJECT_PREFIX: &str = "greentic.messaging";
/// The config file [`write_config`] writes into a scenario's directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Server stderr lines kept for error messages.
const STDERR_TAIL_LINES: usize = 40;
/// Startup lines queued for the launcher; later ones only reach the tail.
const STARTUP_LINES_MAX: usize = 1024;
/// Lifetime of the bench's tokens.
const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);
/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on every Linux we run on).
const TICKS_PER_S: u64 = 100;

/// `tenant-NN`: the bench's name of tenant `i`.
pub fn tenant_name(i: usize) -> String {
    format!("tenant-{i:02}")
}

/// What [`write_config`] puts in a scenario's config.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConfigSpec<'a> {
    /// Tenants `tenant-00`..: each with env `prod`, team `support` on [`FLOW`], channel `webchat`.
    pub tenants: usize,
    /// A child server's settings: an ephemeral API port (found from its `listening on` line),
    /// no metrics listener (`metrics_listen = "off"`), the bench's token issuer and audience.
    pub serve: bool,
    /// `server.rate_limit_per_s`, the default quota of every tenant.
    pub rate_limit_per_s: Option<u32>,
    /// A `[nats]` section for this server URL.
    pub nats_url: Option<&'a str>,
    /// `(tenant index, per-second quota)`: one tenant's own quota.
    pub quota: Option<(usize, u32)>,
}

/// Writes [`CONFIG_FILE`] (data dir `dir/data`) and `flow.yaml` into `dir`, creating it, and
/// loads the config back, so that a bad config fails here with the loader's message rather than
/// as a server that never says `listening on`.
pub fn write_config(dir: &Path, spec: &ConfigSpec<'_>) -> Result<Config, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("flow.yaml"), FLOW).map_err(|e| e.to_string())?;
    let mut toml = format!("[server]\ndata_dir = \"{}\"\n", dir.join("data").display());
    if spec.serve {
        toml.push_str("listen = \"127.0.0.1:0\"\nmetrics_listen = \"off\"\n");
    }
    if let Some(per_s) = spec.rate_limit_per_s {
        toml.push_str(&format!("rate_limit_per_s = {per_s}\n"));
    }
    if spec.serve {
        toml.push_str("[auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n");
    }
    if let Some(url) = spec.nats_url {
        toml.push_str(&format!(
            "[nats]\nurl = \"{url}\"\nsubject_prefix = \"{SUBJECT_PREFIX}\"\n"
        ));
    }
    for t in 0..spec.tenants {
        let tenant = tenant_name(t);
        let quota = match spec.quota {
            Some((q, per_s)) if q == t => format!("rate_limit_per_s = {per_s}\n"),
            _ => String::new(),
        };
        toml.push_str(&format!(
            "[tenants.{tenant}]\n{quota}name = \"Tenant {t}\"\nenvironments = [\"prod\"]\n\
             [tenants.{tenant}.teams.support]\nflow = \"flow.yaml\"\n\
             [tenants.{tenant}.teams.support.channels.webchat]\nprovider = \"messaging-webchat\"\n"
        ));
    }
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, toml).map_err(|e| e.to_string())?;
    Config::load(&path, &LoadOptions::default()).map_err(|e| e.to_string())
}

/// One tenant-wide token per tenant of `config` (`tenant-00`.. up to `tenants`), signed with
/// [`SIGNING_KEY`], valid for an hour.
pub fn mint_tokens(config: &Config, tenants: usize) -> Result<Vec<String>, String> {
    let key = SecretValue::new(SIGNING_KEY.as_bytes().to_vec());
    let env = EnvId::parse("prod").map_err(|e| e.to_string())?;
    (0..tenants)
        .map(|t| {
            let request = TokenRequest {
                tenant: TenantId::parse(&tenant_name(t)).map_err(|e| e.to_string())?,
                env: env.clone(),
                team: None,
                ttl: TOKEN_TTL,
                subject: "tenantry-bench".to_owned(),
            };
            let claims =
                claims_for(config, &request, SystemTime::now()).map_err(|e| e.to_string())?;
            mint(&key, &claims, None).map_err(|e| e.to_string())
        })
        .collect()
}

/// Nearest-rank percentile of sorted values; `permille` is the percentile times ten (p99 = 990).
pub fn percentile(sorted: &[u64], permille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(sorted.len() - 1) * permille.min(1000) / 1000]
}

/// When a paced sender sends its `n`th item: every `interval` from `t0`, sender `phase` of
/// `senders` shifted by `phase / senders` of an interval, so that the offered load is smooth
/// rather than every sender firing at the same instant.
pub fn paced_at(
    t0: tokio::time::Instant,
    interval: Duration,
    n: u64,
    phase: usize,
    senders: usize,
) -> tokio::time::Instant {
    t0 + interval.mul_f64(n as f64 + phase as f64 / senders.max(1) as f64)
}

/// Waits until a paced sender's `n`th item is due ([`paced_at`]) and returns that moment; with
/// no `interval` (a closed loop) returns now at once.
pub async fn wait_turn(
    t0: tokio::time::Instant,
    interval: Option<Duration>,
    n: u64,
    phase: usize,
    senders: usize,
) -> tokio::time::Instant {
    match interval {
        Some(interval) => {
            let at = paced_at(t0, interval, n, phase, senders);
            tokio::time::sleep_until(at).await;
            at
        }
        None => tokio::time::Instant::now(),
    }
}

/// A paced sender's own delay in waking for an item due at `due`, as seen at `now`, when it had
/// been free since `free_since` (its last answer; `None`: none yet). Only when it was free by
/// `due` does the delay belong to the sender (its timer, its thread's turn on a busy core);
/// when it was still waiting on an earlier answer, the delay is the server's (`None`), and the
/// item's latency, counted from `due`, holds it either way.
pub fn wake_delay_us(
    due: tokio::time::Instant,
    free_since: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
) -> Option<u64> {
    free_since
        .is_none_or(|free| free <= due)
        .then(|| u64::try_from(now.saturating_duration_since(due).as_micros()).unwrap_or(u64::MAX))
}

/// A flag that a thread sets after `duration`: closed-loop workers run until it is set.
pub struct StopTimer {
    pub stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl StopTimer {
    pub fn start(duration: Duration) -> StopTimer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(duration);
            flag.store(true, Ordering::Relaxed);
        });
        StopTimer { stop, thread }
    }

    /// Waits for the timer thread (it has fired once the workers it stopped are done).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// `work_dir/name`, emptied (removed and created again).
pub fn fresh_dir(work_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let dir = work_dir.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Bytes of the files under `dir`, recursively; 0 for what cannot be read.
pub fn dir_bytes(dir: &Path) -> u64 {
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

pub fn ticks_to_s(ticks: u64) -> f64 {
    ticks as f64 / TICKS_PER_S as f64
}

/// CPU time (user + system, in ticks) of process `pid` ("self" for this one), from /proc; 0 if
/// unknown.
pub fn cpu_ticks(pid: &str) -> u64 {
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

/// CPU time (user + system) spent by the server and by this process (the load) over a run.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuSpent {
    pub server_s: f64,
    pub load_s: f64,
}

impl CpuSpent {
    /// Runs `f`, counting the CPU time `server` and this process spend meanwhile.
    pub fn measure<T>(server: &ChildServe, f: impl FnOnce() -> T) -> (T, CpuSpent) {
        let (server_ticks, load_ticks) = (server.cpu_ticks(), cpu_ticks("self"));
        let out = f();
        let spent = CpuSpent {
            server_s: ticks_to_s(server.cpu_ticks().saturating_sub(server_ticks)),
            load_s: ticks_to_s(cpu_ticks("self").saturating_sub(load_ticks)),
        };
        (out, spent)
    }
}

/// The context switches (voluntary + involuntary) of each thread of a process at one moment, by
/// thread id, from `/proc/{pid}/task/*/status`. A message handed from one thread to a sleeping
/// other wakes it: switches per message count the thread hops a message costs (and the wake-ups
/// of batching threads, shared by the messages of a batch).
pub struct Switches(std::collections::HashMap<String, u64>);

impl Switches {
    /// Each thread of process `pid` now (none if the process is unknown).
    pub fn sample(pid: &str) -> Switches {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return Switches(Default::default());
        };
        let counts = tasks
            .flatten()
            .filter_map(|task| {
                let status = std::fs::read_to_string(task.path().join("status")).ok()?;
                Some((
                    task.file_name().to_string_lossy().into_owned(),
                    switches_in(&status),
                ))
            })
            .collect();
        Switches(counts)
    }

    /// The switches of process `pid`'s threads since this sample: of each thread alive now,
    /// what it added (from zero if it started since). A thread that exited since adds nothing,
    /// where a difference of two sums would subtract all it ever counted.
    pub fn since(&self, pid: &str) -> u64 {
        Switches::sample(pid)
            .0
            .iter()
            .map(|(tid, now)| now.saturating_sub(self.0.get(tid).copied().unwrap_or(0)))
            .sum()
    }
}

/// The context switches (voluntary + involuntary) a `/proc/.../status` text counts.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|l| {
            l.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// Resident set (VmRSS) of process `pid` ("self" for this one) in bytes, from /proc.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A child process killed (SIGKILL) and reaped when dropped, unless it has been reaped already.
struct Guard {
    child: Child,
    exited: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// When a child `serve` counts as up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// Its `listening on` line.
    Listening,
    /// Its `listening on` line and its `NATS ingress subscribed` line.
    NatsSubscribed,
}

/// The stderr lines of a child, shared with the thread that drains them.
type Tail = Arc<Mutex<VecDeque<String>>>;

/// `tenantry serve` as a child process on `dir/config.toml`, its stderr drained by a thread.
pub struct ChildServe {
    child: Guard,
    /// The API address from its `listening on` line.
    pub addr: SocketAddr,
    /// The metrics address from its `metrics on` line, when one came before it was ready
    /// (`None` with `metrics_listen = "off"`).
    pub metrics: Option<SocketAddr>,
    /// From spawn to the `listening on` line.
    pub listening_after: Duration,
    tail: Tail,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ChildServe {
    /// Starts `exe serve` on `dir/config.toml` (in `dir`) and waits up to `timeout` until it is
    /// `ready`.
    pub fn start(exe: &Path, dir: &Path, ready: Ready, timeout: Duration) -> Result<Self, String> {
        let started = Instant::now();
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--config")
            .arg(dir.join(CONFIG_FILE))
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
        let mut guard = Guard {
            child,
            exited: false,
        };
        let stderr = stderr.ok_or("the server's stderr is not piped")?;
        let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let (tx, lines) = mpsc::sync_channel(STARTUP_LINES_MAX);
        let reader = {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == STDERR_TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line.clone());
                    }
                    // Bounded: lines past the startup wait only reach the tail.
                    let _ = tx.try_send(line);
                }
            })
        };
        let seen = match wait_ready(&lines, ready, started + timeout) {
            Ok(seen) => seen,
            Err(Waited::Timeout) => {
                return Err(format!(
                    "the server was not ready within {timeout:?}; its stderr:\n{}",
                    tail_text(&tail)
                ))
            }
            Err(Waited::Exited) => {
                let status = guard.child.wait().map_err(|e| e.to_string())?;
                guard.exited = true;
                let _ = reader.join();
                return Err(format!(
                    "the server exited at start ({status}); its stderr:\n{}",
                    tail_text(&tail)
                ));
            }
            Err(Waited::Bad(e)) => return Err(e),
        };
        Ok(ChildServe {
            child: guard,
            addr: seen.addr,
            metrics: seen.metrics,
            listening_after: seen.listening_at.duration_since(started),
            tail,
            reader: Some(reader),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    /// CPU time (in ticks) the server has used so far.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(&self.pid().to_string())
    }

    /// An error with the server's last words if it has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.child.exited = true;
                Err(format!(
                    "the server exited during the run ({status}); its stderr:\n{}",
                    tail_text(&self.tail)
                ))
            }
            Err(e) => Err(format!("checking on the server: {e}")),
        }
    }

    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns how long it took.
    pub fn terminate(mut self, timeout: Duration) -> Result<Duration, String> {
        let stopping = Instant::now();
        let pid = self.pid().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
        if !killed.success() {
            return Err(format!("kill -TERM {pid}: {killed}"));
        }
        let status: ExitStatus = loop {
            if let Some(status) = self.child.child.try_wait().map_err(|e| e.to_string())? {
                self.child.exited = true;
                break status;
            }
            if stopping.elapsed() > timeout {
                return Err(format!("serve did not stop within {timeout:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        let stopped = stopping.elapsed();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if !status.success() {
            return Err(format!(
                "serve exited with {status} after SIGTERM; its stderr:\n{}",
                tail_text(&self.tail)
            ));
        }
        Ok(stopped)
    }
}

/// What the startup lines said.
struct Seen {
    addr: SocketAddr,
    metrics: Option<SocketAddr>,
    listening_at: Instant,
}

enum Waited {
    Timeout,
    Exited,
    Bad(String),
}

/// Reads startup lines until `ready` holds or `deadline` passes.
fn wait_ready(
    lines: &mpsc::Receiver<String>,
    ready: Ready,
    deadline: Instant,
) -> Result<Seen, Waited> {
    let mut addr = None;
    let mut metrics = None;
    let mut subscribed = ready != Ready::NatsSubscribed;
    loop {
        if let (Some((addr, listening_at)), true) = (addr, subscribed) {
            return Ok(Seen {
                addr,
                metrics,
                listening_at,
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(Waited::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Waited::Exited),
        };
        if let Some(raw) = address_after(&line, "listening on ") {
            let parsed = raw
                .parse::<SocketAddr>()
                .map_err(|e| Waited::Bad(format!("bad address in {line:?}: {e}")))?;
            addr = Some((parsed, Instant::now()));
        }
        if let Some(raw) = address_after(&line, "metrics on http://") {
            metrics = raw.trim_end_matches("/metrics").parse().ok();
        }
        subscribed |= line.contains("NATS ingress subscribed");
    }
}

/// The word after `marker` in `line`.
fn address_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(marker)?;
    Some(rest.split_whitespace().next().unwrap_or(""))
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_delay_is_the_senders_only_when_it_was_free_by_the_due_time() {
        let due = tokio::time::Instant::now();
        let ms = Duration::from_millis;
        // Free before the item was due: the 3 ms past it are the sender's own.
        assert_eq!(
            wake_delay_us(due, Some(due - ms(1)), due + ms(3)),
            Some(3_000)
        );
        assert_eq!(wake_delay_us(due, None, due + ms(3)), Some(3_000));
        // Still waiting on an earlier answer at the due time: the delay is the server's.
        assert_eq!(wake_delay_us(due, Some(due + ms(2)), due + ms(3)), None);
        // Woken early (a timer never does, but a clock read may): no delay.
        assert_eq!(wake_delay_us(due, None, due - ms(1)), Some(0));
    }

    /// Counted on this thread alone: the process's sum also moves with other tests' threads,
    /// and falls when one of them exits between two readings.
    #[test]
    fn context_switches_grow_when_a_thread_sleeps_and_wakes() {
        let own = || switches_in(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
        let before = own();
        for _ in 0..20 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let after = own();
        assert!(after >= before + 20, "{before} → {after}");
        // The process's count holds this thread's, whatever the others did meanwhile.
        let total = |pid| Switches::sample(pid).0.values().sum::<u64>();
        assert!(total("self") >= after);
        assert_eq!(total("no-such-process"), 0);
    }

    /// A thread that exits between the two samples does not take its past switches off the
    /// pass's count (a difference of the process's sums would go to zero here).
    #[test]
    fn a_pass_counts_the_switches_of_threads_alive_at_its_end() {
        let sleep = || std::thread::sleep(std::time::Duration::from_millis(1));
        let (slept, exit) = (mpsc::channel::<()>(), mpsc::channel::<()>());
        let helper = std::thread::spawn(move || {
            for _ in 0..50 {
                sleep();
            }
            let _ = slept.0.send(());
            let _ = exit.1.recv();
        });
        slept.1.recv().unwrap();
        let before = Switches::sample("self");
        exit.0.send(()).unwrap();
        helper.join().unwrap();
        for _ in 0..20 {
            sleep();
        }
        let pass = before.since("self");
        assert!(pass >= 20, "{pass}");
        assert_eq!(
            Switches::sample("no-such-process").since("no-such-process"),
            0
        );
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[], 990), 0);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 500), 50);
        assert_eq!(percentile(&v, 990), 99);
        assert_eq!(percentile(&v, 1000), 100);
        assert_eq!(percentile(&v, 5000), 100);
    }

    #[test]
    fn startup_lines_give_the_api_and_metrics_addresses() {
        let line = "2026-11-30T05:00:00Z  INFO tenantry::edge::http: listening on 127.0.0.1:4100";
        assert_eq!(address_after(line, "listening on "), Some("127.0.0.1:4100"));
        let line = "INFO metrics on http://127.0.0.1:9100/metrics";
        let raw = address_after(line, "metrics on http://").unwrap();
        assert_eq!(raw.trim_end_matches("/metrics"), "127.0.0.1:9100");
        assert_eq!(
            address_after("tenantry runtime started", "listening on "),
            None
        );
    }

    #[test]
    fn a_written_config_loads_with_every_tenant_and_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ConfigSpec {
            tenants: 3,
            serve: true,
            rate_limit_per_s: Some(1_000),
            nats_url: Some("nats://127.0.0.1:4222"),
            quota: Some((1, 7)),
        };
        let config = write_config(dir.path(), &spec).unwrap();
        assert!(config.nats().is_some());
        let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert!(text.contains("metrics_listen = \"off\""), "{text}");
        assert!(
            text.contains("[tenants.tenant-01]\nrate_limit_per_s = 7\n"),
            "{text}"
        );
        assert_eq!(mint_tokens(&config, 3).unwrap().len(), 3);
    }
}
