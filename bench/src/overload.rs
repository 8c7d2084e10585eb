//! Overload and noisy-neighbour figures through the real HTTP edge: `tenantry-bench overload`.
//!
//! Three phases on one real server (a child process, as in [`super::edge`]):
//! 1. **Peak**: closed loop, 64 keep-alive connections, to find what this machine acks per second.
//! 2. **Overload**: an open-loop generator offers `overload_factor` × peak (3× by default): every
//!    request leaves at its scheduled time on an idle connection, opening a new one when none is
//!    free (up to [`CONNECTIONS_MAX`]), so a slow server is not spared load the way a closed loop
//!    spares it. Reports goodput against peak, how fast refusals (429/503) come back, accepted
//!    latency, and the server's RSS sampled through the phase (does it plateau?).
//! 3. **Noisy neighbour** (a second server, tenant 0 given a quota of 5% of peak): the other seven
//!    tenants are paced at 30% of peak alone, then again while tenant 0 offers 10× its quota
//!    from a thread of its own; [`NEIGHBOUR_ROUNDS`] such pairs, alternated. Reports the others'
//!    p99 and errors in each run, the median pair's ratio, and tenant 0's refusals.
//!
//! Latency is measured from each request's scheduled send time (no coordinated omission).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::edge::{
    client_tenant, http_pass, load_runtime, server_config, Connection, Pass, REQUEST_TIMEOUT,
    STARTUP_TIMEOUT, TENANTS,
};
use crate::harness::{
    fresh_dir, mint_tokens, paced_at, percentile, rss_bytes, ChildServe, CpuSpent, Ready,
};

/// Most connections the open-loop generator opens; past it a due request is counted as not sent.
pub const CONNECTIONS_MAX: usize = 2048;
/// Closed-loop clients of the peak phase.
const PEAK_CLIENTS: usize = 64;
/// RSS samples per second during the overload phase.
const RSS_SAMPLES_PER_S: u64 = 10;

#[derive(Clone, Debug)]
pub struct OverloadBenchOptions {
    /// Length of each phase.
    pub duration: Duration,
    /// Offered load of the overload phase, in multiples of the measured peak.
    pub overload_factor: f64,
}

/// What one open-loop or paced run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct OpenRun {
    pub offered_per_s: f64,
    pub seconds: f64,
    pub ok: u64,
    pub ok_per_s: f64,
    pub ok_p50_us: u64,
    pub ok_p99_us: u64,
    pub refused: u64,
    pub refused_per_s: f64,
    pub refused_p50_us: u64,
    pub refused_p99_us: u64,
    pub refused_max_us: u64,
    /// Other failures (timeouts, closed connections, unexpected statuses), by cause.
    pub errors: BTreeMap<String, u64>,
    /// Due requests the generator could not send: every connection busy and none left to open.
    pub not_sent: u64,
    pub connections_opened: usize,
    /// The generator's own delay (p99): from a request's due time until its task first runs,
    /// before it opens a connection or writes a byte. The open loop never waits for an answer
    /// to send, so all of it is the client's (its timer, its thread's turn on a busy core), and
    /// it is inside the latencies above, which count from the due time.
    pub send_delay_p99_us: u64,
}

impl OpenRun {
    /// Requests refused or failed.
    pub fn failed(&self) -> u64 {
        self.refused + self.errors.values().sum::<u64>()
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct RssFigure {
    pub samples: usize,
    /// Resident set at the start of the phase.
    pub start_bytes: u64,
    /// Highest resident set in the first and second halves of the phase.
    pub first_half_max_bytes: u64,
    pub second_half_max_bytes: u64,
    pub end_bytes: u64,
    /// `second_half_max / first_half_max`: about 1.0 when memory plateaus.
    pub plateau_ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct OverloadFigure {
    pub peak_ok_per_s: f64,
    pub run: OpenRun,
    pub goodput_ratio: f64,
    pub rss: RssFigure,
    pub server_cpu_s: f64,
    pub load_cpu_s: f64,
}

/// Alternated pairs of the neighbour phase (the others alone, then beside the noisy tenant):
/// one pair's ratio ranged 1.2–3.3× from run to run of the same build on this kind of machine,
/// so the figure is the median pair's.
pub const NEIGHBOUR_ROUNDS: usize = 3;

#[derive(Clone, Debug, Serialize)]
pub struct NeighbourFigure {
    pub noisy_quota_per_s: u32,
    pub noisy_offered_per_s: f64,
    pub others_offered_per_s: f64,
    /// In the order run.
    pub rounds: Vec<NeighbourRound>,
}

impl NeighbourFigure {
    /// The round of the median ratio (the upper one of an even count); `None` without rounds.
    pub fn median(&self) -> Option<&NeighbourRound> {
        let mut sorted: Vec<&NeighbourRound> = self.rounds.iter().collect();
        sorted.sort_by(|a, b| a.others_p99_ratio.total_cmp(&b.others_p99_ratio));
        sorted.get(sorted.len() / 2).copied()
    }

    /// The calm tenants' refusals and errors beside the noisy tenant, over every round.
    pub fn others_failed(&self) -> u64 {
        self.rounds
            .iter()
            .map(|r| r.others_with_noisy.failed())
            .sum()
    }
}

/// One pair of the neighbour phase.
#[derive(Clone, Debug, Serialize)]
pub struct NeighbourRound {
    /// The seven other tenants alone.
    pub others_alone: OpenRun,
    /// The same, while tenant 0 offers 10× its quota.
    pub others_with_noisy: OpenRun,
    pub noisy: OpenRun,
    /// `others_with_noisy.ok_p99 / others_alone.ok_p99`.
    pub others_p99_ratio: f64,
    /// CPU the server and the load generator spent during each of the two runs.
    pub cpu_alone: CpuSpent,
    pub cpu_with_noisy: CpuSpent,
}

#[derive(Clone, Debug, Serialize)]
pub struct OverloadBenchReport {
    pub scenario: &'static str,
    pub tenants: usize,
    pub overload: OverloadFigure,
    pub neighbour: NeighbourFigure,
}

/// Runs the three phases under `work_dir/overload` (and `work_dir/neighbour`), each on a real
/// server (`exe serve`).
pub fn run(
    exe: &Path,
    work_dir: &Path,
    opts: &OverloadBenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<OverloadBenchReport, String> {
    let load = load_runtime()?;
    let overload = overload_phases(exe, work_dir, opts, &load, progress)?;
    let neighbour = neighbour_phase(exe, work_dir, opts, &load, overload.peak_ok_per_s, progress)?;
    Ok(OverloadBenchReport {
        scenario: "overload",
        tenants: TENANTS,
        overload,
        neighbour,
    })
}

/// Phases 1 and 2: the closed-loop peak, then `overload_factor` × peak offered open loop.
fn overload_phases(
    exe: &Path,
    work_dir: &Path,
    opts: &OverloadBenchOptions,
    load: &tokio::runtime::Runtime,
    progress: &mut dyn FnMut(&str),
) -> Result<OverloadFigure, String> {
    let dir = fresh_dir(work_dir, "overload")?;
    let config = server_config(&dir, None, None)?;
    let tokens = Arc::new(mint_tokens(&config, TENANTS)?);
    let mut server = ChildServe::start(exe, &dir, Ready::Listening, STARTUP_TIMEOUT)?;
    let addr = server.addr;

    let peak_pass = Pass {
        index: 0,
        clients: PEAK_CLIENTS,
        duration: opts.duration,
        rate: None,
    };
    let started = std::time::Instant::now();
    let tallies = load.block_on(http_pass(addr, tokens.clone(), peak_pass))?;
    let ok: usize = tallies.iter().map(|t| t.latencies_us.len()).sum();
    let peak = ok as f64 / started.elapsed().as_secs_f64().max(f64::EPSILON);
    server.check_alive()?;
    progress(&format!(
        "overload: peak {peak:.0} acks/s (closed loop, {PEAK_CLIENTS} connections)"
    ));
    if peak <= 0.0 {
        return Err("the server acked nothing in the peak phase".to_owned());
    }

    let offered = peak * opts.overload_factor;
    let sampler = RssSampler::start(server.pid());
    let all: Vec<usize> = (0..TENANTS).collect();
    let (run, cpu) = CpuSpent::measure(&server, || {
        load.block_on(open_loop(
            addr,
            tokens.clone(),
            Plan {
                tag: "o".to_owned(),
                tenants: all,
                rate: offered,
                duration: opts.duration,
            },
        ))
    });
    let rss = sampler.finish();
    server.check_alive()?;
    let overload = OverloadFigure {
        peak_ok_per_s: peak,
        goodput_ratio: run.ok_per_s / peak,
        run,
        rss,
        server_cpu_s: cpu.server_s,
        load_cpu_s: cpu.load_s,
    };
    progress(&format!(
        "overload: {:.0}/s offered ({:.1}x peak): goodput {:.0}/s ({:.0}% of peak), refused {:.0}/s \
         p99 {} us, accepted p99 {} us, own send delay p99 {} us, not sent {}, RSS {} -> {} MiB \
         (plateau {:.2})",
        offered,
        opts.overload_factor,
        overload.run.ok_per_s,
        overload.goodput_ratio * 100.0,
        overload.run.refused_per_s,
        overload.run.refused_p99_us,
        overload.run.ok_p99_us,
        overload.run.send_delay_p99_us,
        overload.run.not_sent,
        overload.rss.start_bytes >> 20,
        overload.rss.end_bytes >> 20,
        overload.rss.plateau_ratio,
    ));
    Ok(overload)
}

/// Phase 3 on a fresh server where tenant 0 has a small quota: [`NEIGHBOUR_ROUNDS`] times the
/// others alone, then the others while tenant 0 offers 10× its quota.
fn neighbour_phase(
    exe: &Path,
    work_dir: &Path,
    opts: &OverloadBenchOptions,
    load: &tokio::runtime::Runtime,
    peak: f64,
    progress: &mut dyn FnMut(&str),
) -> Result<NeighbourFigure, String> {
    // `as` saturates; the quota is a small fraction of a rate that fits a u32 many times over.
    #[allow(clippy::cast_possible_truncation)]
    let quota = ((peak * 0.05) as u32).max(10);
    let dir = fresh_dir(work_dir, "neighbour")?;
    let config = server_config(&dir, None, Some((0, quota)))?;
    let tokens = Arc::new(mint_tokens(&config, TENANTS)?);
    let mut server = ChildServe::start(exe, &dir, Ready::Listening, STARTUP_TIMEOUT)?;
    let addr = server.addr;
    let others_rate = peak * 0.3;
    let noisy_rate = f64::from(quota) * 10.0;
    let mut rounds = Vec::with_capacity(NEIGHBOUR_ROUNDS);
    for round in 0..NEIGHBOUR_ROUNDS {
        let plan = |tag: String, tenants: Vec<usize>, rate: f64| Plan {
            tag,
            tenants,
            rate,
            duration: opts.duration,
        };
        let others: Vec<usize> = (1..TENANTS).collect();
        let (others_alone, cpu_alone) = CpuSpent::measure(&server, || {
            let alone = plan(format!("a{round}-"), others.clone(), others_rate);
            load.block_on(open_loop(addr, tokens.clone(), alone))
        });
        server.check_alive()?;
        let (with_noisy, cpu_with_noisy) = CpuSpent::measure(&server, || {
            // The noisy tenant is another organisation's client: it sends from a thread of its
            // own, so the calm tenants' requests never wait for its tasks in the generator's
            // scheduler (the server's cores are what they share, as in a real deployment).
            let noisy = plan(format!("n{round}-"), vec![0], noisy_rate);
            let noisy = open_loop_on_own_thread(addr, tokens.clone(), noisy)?;
            let calm = plan(format!("b{round}-"), others.clone(), others_rate);
            let calm = load.block_on(open_loop(addr, tokens.clone(), calm));
            let noisy = noisy
                .join()
                .map_err(|_| "the noisy tenant's load generator panicked".to_owned())??;
            Ok::<_, String>((calm, noisy))
        });
        let (others_with_noisy, noisy) = with_noisy?;
        server.check_alive()?;
        let r = NeighbourRound {
            others_p99_ratio: others_with_noisy.ok_p99_us as f64
                / (others_alone.ok_p99_us.max(1)) as f64,
            others_alone,
            others_with_noisy,
            noisy,
            cpu_alone,
            cpu_with_noisy,
        };
        progress(&format!(
            "neighbour {}/{NEIGHBOUR_ROUNDS}: 7 tenants at {others_rate:.0}/s: p99 {} us alone, \
             {} us with tenant 0 at {noisy_rate:.0}/s (10x its quota of {quota}/s): {:.2}x; own \
             send delay p99 {} / {} us; errors {} / {}; tenant 0 refused {}; cpu server {:.2} / \
             {:.2} s, load {:.2} / {:.2} s",
            round + 1,
            r.others_alone.ok_p99_us,
            r.others_with_noisy.ok_p99_us,
            r.others_p99_ratio,
            r.others_alone.send_delay_p99_us,
            r.others_with_noisy.send_delay_p99_us,
            r.others_alone.failed(),
            r.others_with_noisy.failed(),
            r.noisy.refused,
            r.cpu_alone.server_s,
            r.cpu_with_noisy.server_s,
            r.cpu_alone.load_s,
            r.cpu_with_noisy.load_s,
        ));
        rounds.push(r);
    }
    Ok(NeighbourFigure {
        noisy_quota_per_s: quota,
        noisy_offered_per_s: noisy_rate,
        others_offered_per_s: others_rate,
        rounds,
    })
}

/// [`open_loop`] on a thread of its own, with its own single-threaded runtime.
fn open_loop_on_own_thread(
    addr: SocketAddr,
    tokens: Arc<Vec<String>>,
    plan: Plan,
) -> Result<std::thread::JoinHandle<Result<OpenRun, String>>, String> {
    std::thread::Builder::new()
        .name(format!("load-{}", plan.tag.trim_end_matches('-')))
        .spawn(move || Ok(load_runtime()?.block_on(open_loop(addr, tokens, plan))))
        .map_err(|e| format!("cannot start a load generator thread: {e}"))
}

/// Whom an open-loop run sends to, how fast and for how long.
struct Plan {
    /// Makes message and session ids unique per run.
    tag: String,
    tenants: Vec<usize>,
    rate: f64,
    duration: Duration,
}

/// What the request tasks record, shared.
#[derive(Default)]
struct Record {
    ok_us: Vec<u64>,
    refused_us: Vec<u64>,
    errors: BTreeMap<String, u64>,
    /// Each request's wait from its due time until its task ran ([`OpenRun::send_delay_p99_us`]).
    send_delay_us: Vec<u64>,
}

/// Sends requests at `plan.rate` from their schedule, whatever the server's pace.
async fn open_loop(addr: SocketAddr, tokens: Arc<Vec<String>>, plan: Plan) -> OpenRun {
    let record = Arc::new(Mutex::new(Record::default()));
    let idle: Arc<Mutex<Vec<Connection>>> = Arc::new(Mutex::new(Vec::new()));
    let opened = Arc::new(AtomicUsize::new(0));
    let interval = Duration::from_secs_f64(1.0 / plan.rate.max(1.0));
    let t0 = Instant::now();
    let deadline = t0 + plan.duration;
    let mut not_sent = 0u64;
    let mut tasks = Vec::new();
    let mut n: u64 = 0;
    loop {
        let at = paced_at(t0, interval, n, 0, 1);
        if at >= deadline {
            break;
        }
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        let conn = idle.lock().ok().and_then(|mut v| v.pop());
        let conn = match conn {
            Some(c) => Some(c),
            None if opened.load(Ordering::Relaxed) < CONNECTIONS_MAX => None,
            None => {
                not_sent += 1;
                n += 1;
                continue;
            }
        };
        if conn.is_none() {
            opened.fetch_add(1, Ordering::Relaxed);
        }
        let t = plan.tenants[usize::try_from(n).unwrap_or(0) % plan.tenants.len()];
        let request = request(&addr, &tokens[t], &client_tenant(t), &plan.tag, n);
        let (record, idle, opened) = (record.clone(), idle.clone(), opened.clone());
        tasks.push(tokio::spawn(send_one(
            addr, conn, request, at, record, idle, opened,
        )));
        n += 1;
        // Reap finished tasks now and then so the list stays small.
        if tasks.len() >= 4096 {
            tasks.retain(|t| !t.is_finished());
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = t0.elapsed().as_secs_f64().max(f64::EPSILON);
    let connections_opened = opened.load(Ordering::Relaxed);
    let mut r = match Arc::try_unwrap(record) {
        Ok(m) => m.into_inner().unwrap_or_default(),
        Err(shared) => shared
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default(),
    };
    r.ok_us.sort_unstable();
    r.refused_us.sort_unstable();
    r.send_delay_us.sort_unstable();
    OpenRun {
        offered_per_s: plan.rate,
        seconds,
        ok: r.ok_us.len() as u64,
        ok_per_s: r.ok_us.len() as f64 / seconds,
        ok_p50_us: percentile(&r.ok_us, 500),
        ok_p99_us: percentile(&r.ok_us, 990),
        refused: r.refused_us.len() as u64,
        refused_per_s: r.refused_us.len() as f64 / seconds,
        refused_p50_us: percentile(&r.refused_us, 500),
        refused_p99_us: percentile(&r.refused_us, 990),
        refused_max_us: r.refused_us.last().copied().unwrap_or(0),
        errors: r.errors,
        not_sent,
        connections_opened,
        send_delay_p99_us: percentile(&r.send_delay_us, 990),
    }
}

/// One request of an open-loop run on an idle connection (`conn`) or a new one, recorded by
/// its outcome; the connection goes back to `idle` when it stays open.
async fn send_one(
    addr: SocketAddr,
    conn: Option<Connection>,
    request: Vec<u8>,
    at: Instant,
    record: Arc<Mutex<Record>>,
    idle: Arc<Mutex<Vec<Connection>>>,
    opened: Arc<AtomicUsize>,
) {
    let send_delay_us = micros_since(at);
    let conn = match conn {
        Some(c) => Ok(c),
        None => Connection::open(addr).await,
    };
    let (answer, kept) = match conn {
        Err(_) => (Answer::Error("connect".to_owned()), None),
        Ok(mut conn) => {
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&request)).await;
            let us = micros_since(at);
            let keep = matches!(&outcome, Ok(Ok(head)) if !head.close);
            let answer = match outcome {
                Ok(Ok(head)) if head.status == 200 => Answer::Ok(us),
                Ok(Ok(head)) if head.status == 429 || head.status == 503 => Answer::Refused(us),
                Ok(Ok(head)) => Answer::Error(format!("status {}", head.status)),
                Ok(Err(cause)) => Answer::Error(cause),
                Err(_) => Answer::Error("timeout".to_owned()),
            };
            (answer, keep.then_some(conn))
        }
    };
    // One lock per request: the generator's own cost stays out of the figures it takes.
    if let Ok(mut r) = record.lock() {
        r.send_delay_us.push(send_delay_us);
        match answer {
            Answer::Ok(us) => r.ok_us.push(us),
            Answer::Refused(us) => r.refused_us.push(us),
            Answer::Error(cause) => *r.errors.entry(cause).or_default() += 1,
        }
    }
    match kept {
        Some(conn) => {
            if let Ok(mut v) = idle.lock() {
                v.push(conn);
            }
        }
        None => {
            opened.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What one request came to: its time to answer (µs from its due time), or why it failed.
enum Answer {
    Ok(u64),
    Refused(u64),
    Error(String),
}

fn micros_since(at: Instant) -> u64 {
    u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Request `n` of a run: its own message id, one of 1024 sessions of its tenant.
fn request(host: &SocketAddr, token: &str, tenant: &str, tag: &str, n: u64) -> Vec<u8> {
    let body = format!(
        "{{\"team\":\"support\",\"channel\":\"webchat\",\"session\":\"{tag}{}\",\"user\":\"u{}\",\
         \"text\":\"hello, I need help with order {n:08}\",\"message_id\":\"{tag}-{n}\"}}",
        n % 1024,
        n % 1024
    );
    let mut out = format!(
        "POST /api/v1/messages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         X-Tenant-ID: {tenant}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Samples a process's RSS from /proc on a thread until finished.
struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<u64>>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Some(rss) = rss_bytes(&pid.to_string()) {
                    samples.push(rss);
                }
                std::thread::sleep(Duration::from_millis(1000 / RSS_SAMPLES_PER_S));
            }
            samples
        });
        RssSampler { stop, thread }
    }

    fn finish(self) -> RssFigure {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        let half = samples.len() / 2;
        let max = |s: &[u64]| s.iter().copied().max().unwrap_or(0);
        let (first, second) = (max(&samples[..half]), max(&samples[half..]));
        RssFigure {
            samples: samples.len(),
            start_bytes: samples.first().copied().unwrap_or(0),
            first_half_max_bytes: first,
            second_half_max_bytes: second,
            end_bytes: samples.last().copied().unwrap_or(0),
            plateau_ratio: if first == 0 {
                0.0
            } else {
                second as f64 / first as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delay counts from the due time to the task's start, before any connection: here
    /// nothing listens, every request fails to connect, and the generator's thread is blocked
    /// for 60 ms in the middle of the run, so the requests due meanwhile waited for it.
    #[test]
    fn the_generators_own_delay_counts_from_the_due_time_before_connecting() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let plan = Plan {
            tag: "t".to_owned(),
            tenants: vec![0],
            rate: 1_000.0,
            duration: Duration::from_millis(200),
        };
        let run = load_runtime().unwrap().block_on(async {
            let blocker = tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                std::thread::sleep(Duration::from_millis(60));
            });
            let run = open_loop(addr, Arc::new(vec!["token".to_owned()]), plan).await;
            blocker.await.unwrap();
            run
        });
        assert!(
            run.errors.get("connect").copied().unwrap_or(0) > 100,
            "{run:?}"
        );
        assert_eq!(run.ok + run.refused, 0);
        assert!(run.send_delay_p99_us >= 30_000, "{run:?}");
    }
}
