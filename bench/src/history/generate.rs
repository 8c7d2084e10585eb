//! Generation of the history scenario's log: many sessions over Zipf-sized tenants plus one
//! long session, written once and reused by later runs with the same parameters (a marker file,
//! written last, names them).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use tenantry::events::log::{AppendGroup, AppendOutcome, EventLog, Idempotency, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::{ChannelId, SessionId, TenantCtx, TenantId};

use super::{Generation, HistoryBenchOptions};
use crate::harness::{dir_bytes, tenant_name};

/// Tenants the sessions are spread over.
pub(super) const TENANTS: usize = 64;
/// Inbound messages per generated session.
pub(super) const SESSION_MESSAGES: u64 = 20;
/// Events per message group: `MessageReceived`, `NodeEntered`, `ReplySent`, `StateSet`.
pub(super) const GROUP_EVENTS: u64 = 4;
/// Events of one generated session: its start, its messages, its end.
pub(super) const SESSION_EVENTS: u64 = 1 + SESSION_MESSAGES * GROUP_EVENTS + 1;
/// Concurrent appenders while generating (the log commits their groups together).
pub const APPENDERS_DEFAULT: usize = 256;
/// Unix ms of the first generated session (2025-10-09); sessions start 37 s apart.
const EPOCH_MS: u64 = 1_760_000_000_000;
/// Bumped whenever the generated content or the log's layout changes, so that older logs are not
/// reused (2: frames of several groups, which the rebuild and export read).
const FORMAT_VERSION: u32 = 2;
/// Name of the marker file, next to the data dir.
const MARKER: &str = "history.json";
/// Shortest time between two generation progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);
/// The long session's id (in the largest tenant, `tenant-00`), and the number its texts are
/// made from (past every generated session's).
pub(super) const LONG_SESSION: &str = "long-session-0001";
const LONG_SESSION_NO: u64 = 99_999_999;

/// What the marker file records: the parameters the log was made with, and how it went.
#[derive(Serialize, Deserialize)]
struct Marker {
    params: String,
    generation: Generation,
}

pub(super) fn params(opts: &HistoryBenchOptions) -> String {
    format!(
        "v{FORMAT_VERSION} events={} long_session_events={} tenants={TENANTS} \
         session_messages={SESSION_MESSAGES}",
        opts.events, opts.long_session_events
    )
}

pub(super) fn id<T: std::str::FromStr>(raw: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    raw.parse().expect("bench ids are valid by construction")
}

fn tenant_id(t: usize) -> TenantId {
    id(&tenant_name(t))
}

pub(super) fn ctx_of(t: usize) -> TenantCtx {
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
pub(super) fn tenant_of(k: u64) -> usize {
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
pub(super) fn generate_sessions(
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

pub(super) fn open_log(dir: &Path) -> Result<EventLog, String> {
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
pub(super) fn reusable(dir: &Path, params: &str) -> Result<Option<Generation>, String> {
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
pub(super) fn generate(
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

#[cfg(test)]
mod tests {
    use super::*;

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
