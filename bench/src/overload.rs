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
//!    tenants are paced at 30% of peak alone, then again while tenant 0 offers 10× its quota.
//!    Reports the others' p99 and errors in both runs and tenant 0's refusals.
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

#[derive(Clone, Debug, Serialize)]
pub struct NeighbourFigure {
    pub noisy_quota_per_s: u32,
    pub noisy_offered_per_s: f64,
    pub others_offered_per_s: f64,
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
                tag: "o",
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
         p99 {} us, accepted p99 {} us, not sent {}, RSS {} -> {} MiB (plateau {:.2})",
        offered,
        opts.overload_factor,
        overload.run.ok_per_s,
        overload.goodput_ratio * 100.0,
        overload.run.refused_per_s,
        overload.run.refused_p99_us,
        overload.run.ok_p99_us,
        overload.run.not_sent,
        overload.rss.start_bytes >> 20,
        overload.rss.end_bytes >> 20,
        overload.rss.plateau_ratio,
    ));
    Ok(overload)
}

/// Phase 3 on a fresh server where tenant 0 has a small quota: the others alone, then the
/// others while tenant 0 offers 10× its quota.
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
    let others: Vec<usize> = (1..TENANTS).collect();
    let others_rate = peak * 0.3;
    let noisy_rate = f64::from(quota) * 10.0;
    let calm = |tag: &'static str| Plan {
        tag,
        tenants: others.clone(),
        rate: others_rate,
        duration: opts.duration,
    };
    let (others_alone, cpu_alone) = CpuSpent::measure(&server, || {
        load.block_on(open_loop(addr, tokens.clone(), calm("a")))
    });
    progress(&format!(
        "neighbour: 7 tenants alone at {others_rate:.0}/s: p99 {} us, errors {}, cpu server {:.2} s \
         / load {:.2} s",
        others_alone.ok_p99_us,
        others_alone.refused + others_alone.errors.values().sum::<u64>(),
        cpu_alone.server_s,
        cpu_alone.load_s,
    ));
    let ((others_with_noisy, noisy), cpu_with_noisy) = CpuSpent::measure(&server, || {
        load.block_on(async {
            let noisy = tokio::spawn(open_loop(
                addr,
                tokens.clone(),
                Plan {
                    tag: "n",
                    tenants: vec![0],
                    rate: noisy_rate,
                    duration: opts.duration,
                },
            ));
            let calm = open_loop(addr, tokens.clone(), calm("b")).await;
            let noisy = noisy.await.unwrap_or_default();
            (calm, noisy)
        })
    });
    server.check_alive()?;
    let ratio = others_with_noisy.ok_p99_us as f64 / (others_alone.ok_p99_us.max(1)) as f64;
    progress(&format!(
        "neighbour: with tenant 0 at {noisy_rate:.0}/s (10x its quota of {quota}/s): others' p99 {} us \
         ({ratio:.2}x alone), errors {}; tenant 0 refused {}; cpu server {:.2} s / load {:.2} s",
        others_with_noisy.ok_p99_us,
        others_with_noisy.refused + others_with_noisy.errors.values().sum::<u64>(),
        noisy.refused,
        cpu_with_noisy.server_s,
        cpu_with_noisy.load_s,
    ));
    Ok(NeighbourFigure {
        noisy_quota_per_s: quota,
        noisy_offered_per_s: noisy_rate,
        others_offered_per_s: others_rate,
        others_alone,
        others_with_noisy,
        noisy,
        others_p99_ratio: ratio,
        cpu_alone,
        cpu_with_noisy,
    })
}

/// Whom an open-loop run sends to, how fast and for how long.
struct Plan {
    /// Makes message and session ids unique per run.
    tag: &'static str,
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
        let request = request(&addr, &tokens[t], &client_tenant(t), plan.tag, n);
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
    let mut conn = match conn {
        Some(c) => c,
        None => match Connection::open(addr).await {
            Ok(c) => c,
            Err(_) => {
                opened.fetch_sub(1, Ordering::Relaxed);
                if let Ok(mut r) = record.lock() {
                    *r.errors.entry("connect".to_owned()).or_default() += 1;
                }
                return;
            }
        },
    };
    let outcome = tokio::time::timeout(REQUEST_TIMEOUT, conn.exchange(&request)).await;
    let us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
    let keep = matches!(&outcome, Ok(Ok(head)) if !head.close);
    if let Ok(mut r) = record.lock() {
        match outcome {
            Ok(Ok(head)) if head.status == 200 => r.ok_us.push(us),
            Ok(Ok(head)) if head.status == 429 || head.status == 503 => r.refused_us.push(us),
            Ok(Ok(head)) => {
                *r.errors
                    .entry(format!("status {}", head.status))
                    .or_default() += 1
            }
            Ok(Err(cause)) => *r.errors.entry(cause).or_default() += 1,
            Err(_) => *r.errors.entry("timeout".to_owned()).or_default() += 1,
        }
    }
    if keep {
        if let Ok(mut v) = idle.lock() {
            v.push(conn);
        }
    } else {
        opened.fetch_sub(1, Ordering::Relaxed);
    }
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
