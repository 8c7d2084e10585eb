//! The child process of the crash test: appends to a log from many threads and prints one line
//! per durable ack, until it is killed (or `seconds` pass, so that a lost child cannot linger).
//!
//! It is this test binary itself: `crash.rs` re-executes it (`std::env::current_exe()`) with
//! `--exact crash_writer::writer_child` and [`DATA_DIR_ENV`] set, which makes that test the
//! writer; in a normal test run the variable is unset and the test returns at once. So the
//! writer is not part of the shipped binary, and `cargo test` needs nothing else.
//!
//! Lines on stdout, each flushed before the next append of that thread:
//! `ACK {tenant} {session} {first_seq} {last_seq} {message_id}` after an append was acked,
//! `DUP {tenant} {session} {message_id}` when a deliberate retry was recognised,
//! `BUG {detail}` when the log broke a promise (the test fails on any such line).
//!
//! Threads reuse the same session ids in every tenant, and resume their session where the log
//! is after a restart, so that every trial continues the previous trial's data.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tenantry::events::log::{
    AppendError, AppendGroup, AppendOutcome, EventLog, Idempotency, LogOptions, OpenError,
};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// Tenants written by the crash writer; `t1` and `t1x` share a prefix on purpose.
pub const TENANTS: [&str; 3] = ["t1", "t1x", "t2"];
/// The writer's data dir; set only in the environment of the writer child.
pub const DATA_DIR_ENV: &str = "TENANTRY_CRASH_WRITER_DIR";
/// Makes the writer's message ids unique per run.
pub const RUN_TAG_ENV: &str = "TENANTRY_CRASH_WRITER_RUN_TAG";
/// The test that is the writer, as `--exact` names it.
pub const TEST_NAME: &str = "crash_writer::writer_child";
/// Appending threads.
const THREADS: usize = 6;
/// The writer stops after this long even if nobody kills it.
const SECONDS: u64 = 20;

/// The writer child when [`DATA_DIR_ENV`] is set; otherwise nothing.
#[test]
fn writer_child() {
    let Some(dir) = std::env::var_os(DATA_DIR_ENV) else {
        return;
    };
    let run_tag = std::env::var(RUN_TAG_ENV).unwrap_or_else(|_| "r".to_owned());
    if let Err(e) = run(Path::new(&dir), THREADS, SECONDS, &run_tag) {
        // The parent fails on any line it does not expect.
        println!("BUG writer failed: {e}");
    }
}

/// Runs until killed or `seconds` pass. `run_tag` makes message ids unique per run.
fn run(data_dir: &Path, threads: usize, seconds: u64, run_tag: &str) -> Result<(), String> {
    let log = open_retrying(data_dir)?;
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            let out = out.clone();
            let run_tag = run_tag.to_owned();
            std::thread::spawn(move || writer_thread(&log, t, deadline, &run_tag, &out))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "writer thread panicked".to_owned())??;
    }
    Ok(())
}

/// A killed predecessor's lock is released by the kernel, but give a slow exit a moment.
fn open_retrying(dir: &Path) -> Result<EventLog, String> {
    let mut tries = 0;
    loop {
        match EventLog::open(dir, &LogOptions::default()) {
            Ok(log) => return Ok(log),
            Err(OpenError::InUse(_)) if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

fn line(out: &Mutex<std::io::Stdout>, text: &str) -> Result<(), String> {
    let out = out.lock().map_err(|_| "stdout lock poisoned".to_owned())?;
    let mut out = out.lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

fn writer_thread(
    log: &EventLog,
    t: usize,
    deadline: Instant,
    run_tag: &str,
    out: &Mutex<std::io::Stdout>,
) -> Result<(), String> {
    let parse_err = |e: tenantry::tenancy::InvalidId| e.to_string();
    let tenant = TenantId::parse(TENANTS[t % TENANTS.len()]).map_err(parse_err)?;
    let ctx = TenantCtx::new(
        tenant.clone(),
        EnvId::parse("prod").map_err(parse_err)?,
        Some(TeamId::parse("support").map_err(parse_err)?),
    );
    let session = SessionId::parse(&format!("s{}", t / TENANTS.len())).map_err(parse_err)?;
    let channel = ChannelId::parse("web").map_err(parse_err)?;
    let mut last = log
        .scope(&ctx)
        .session_last_seq(&session)
        .map_err(|e| e.to_string())?;
    let mut previous_id: Option<String> = None;
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        n += 1;
        // Every 5th append retries the previous message id, which must be recognised.
        let retry = n.is_multiple_of(5) && previous_id.is_some();
        let message_id = match (&previous_id, retry) {
            (Some(id), true) => id.clone(),
            _ => format!("{run_tag}-{t}-{n}"),
        };
        let mut kinds = Vec::new();
        if last == 0 {
            kinds.push(EventKind::SessionStarted {
                user: format!("u{t}"),
                flow: "f".into(),
                flow_version: "1".into(),
            });
        }
        kinds.push(EventKind::MessageReceived {
            message_id: message_id.clone(),
            user: format!("u{t}"),
            text: format!("n{n}"),
        });
        for i in 0..(n % 3) {
            kinds.push(EventKind::StateSet {
                key: format!("k{i}"),
                value: format!("{n}"),
            });
        }
        let group = AppendGroup {
            ctx: ctx.clone(),
            channel: channel.clone(),
            session: session.clone(),
            expected_seq: last,
            at_ms: n,
            kinds,
            idempotency: Some(Idempotency {
                message_id: message_id.clone(),
                ack: Vec::new(),
            }),
        };
        match log.append_blocking(group) {
            Ok(AppendOutcome::Appended(a)) => {
                if retry {
                    line(
                        out,
                        &format!("BUG retry of {message_id} was appended again"),
                    )?;
                }
                last = a.last_seq;
                line(
                    out,
                    &format!(
                        "ACK {tenant} {session} {} {} {message_id}",
                        a.first_seq, a.last_seq
                    ),
                )?;
                previous_id = Some(message_id);
            }
            Ok(AppendOutcome::Duplicate(_)) if retry => {
                line(out, &format!("DUP {tenant} {session} {message_id}"))?
            }
            Ok(AppendOutcome::Duplicate(_)) => {
                line(out, &format!("BUG fresh id {message_id} seen as duplicate"))?
            }
            Err(AppendError::Closed) => return Ok(()),
            Err(e) => line(out, &format!("BUG append failed: {e}"))?,
        }
    }
    Ok(())
}
