//! Crash test of the durable log: a child process (this test binary as the writer of
//! `crash_writer.rs`) appends from many threads and prints every ack; we `kill -9` it at a
//! random moment, reopen the log and check that every acked event is there, nothing is
//! duplicated, seqs are gapless and every tenant's hash chain verifies.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::crash_writer::{DATA_DIR_ENV, RUN_TAG_ENV, TENANTS, TEST_NAME};
use crate::support::{crash_seed, crash_trials, XorShift};
use tenantry::events::codec::{chain_hash, encode_body, GENESIS_HASH};
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

#[derive(Debug)]
struct Ack {
    tenant: String,
    session: String,
    first_seq: u64,
    last_seq: u64,
    message_id: String,
}

/// Runs one child until killed after `kill_after`; returns its acks.
fn run_child(dir: &Path, trial: usize, kill_after: Duration) -> Vec<Ack> {
    let this = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(this)
        .args([
            "--exact",
            TEST_NAME,
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(DATA_DIR_ENV, dir)
        .env(RUN_TAG_ENV, format!("r{trial}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash writer");
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(kill_after);
    child.kill().expect("kill -9"); // SIGKILL on Unix
    child.wait().expect("reap child");
    let lines = reader.join().expect("reader thread");
    let mut acks = Vec::new();
    // The test harness's own header (`running 1 test`) comes before the writer's lines.
    for line in lines
        .into_iter()
        .skip_while(|l| l.is_empty() || is_harness_header(l))
    {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ACK", tenant, session, first, last, message_id] => acks.push(Ack {
                tenant: tenant.to_string(),
                session: session.to_string(),
                first_seq: first.parse().unwrap(),
                last_seq: last.parse().unwrap(),
                message_id: message_id.to_string(),
            }),
            ["DUP", ..] => {}
            _ => panic!("crash writer reported: {line}"),
        }
    }
    acks
}

/// `running 1 test`: what libtest prints before the writer test starts.
fn is_harness_header(line: &str) -> bool {
    line.strip_prefix("running ")
        .is_some_and(|rest| rest == "1 test")
}

#[test]
fn kill_9_never_loses_an_acked_event() {
    let dir = tempfile::tempdir().unwrap();
    let seed = crash_seed();
    eprintln!("crash test seed {seed} (TENANTRY_CRASH_SEED={seed} replays it)");
    let mut rng = XorShift(seed);
    let mut all_acks: Vec<Ack> = Vec::new();
    for trial in 0..crash_trials() {
        let kill_after = Duration::from_millis(40 + rng.next() % 300);
        let acks = run_child(dir.path(), trial, kill_after);
        all_acks.extend(acks);
        verify(dir.path(), &all_acks, trial, seed);
    }
    assert!(
        all_acks.len() > 100,
        "the children acked too little to prove anything: {}",
        all_acks.len()
    );
}

fn verify(dir: &Path, acks: &[Ack], trial: usize, seed: u64) {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    assert!(
        log.damaged().is_empty(),
        "trial {trial} seed {seed}: {:?}",
        log.damaged()
    );
    // (tenant, session, seq) -> message id of the MessageReceived at that seq
    let mut stored: HashMap<(String, String, u64), Option<String>> = HashMap::new();
    for tenant in TENANTS {
        let t = TenantId::parse(tenant).unwrap();
        let mut prev = GENESIS_HASH;
        let mut session_seqs: BTreeMap<String, u64> = BTreeMap::new();
        let mut message_ids = HashSet::new();
        for (i, e) in log.tenant(&t).events(1..=u64::MAX).enumerate() {
            let e = e.unwrap_or_else(|err| panic!("trial {trial} seed {seed}: {err}"));
            assert_eq!(e.event.tenant, t);
            assert_eq!(
                e.event.tenant_seq,
                i as u64 + 1,
                "trial {trial}: tenant_seq gap in {tenant}"
            );
            assert_eq!(
                e.prev_hash, prev,
                "trial {trial}: chain broken in {tenant} at {}",
                e.event.tenant_seq
            );
            assert_eq!(e.hash, chain_hash(&prev, &encode_body(&e.event)));
            prev = e.hash;
            let last = session_seqs.entry(e.event.session.to_string()).or_insert(0);
            assert_eq!(
                e.event.seq,
                *last + 1,
                "trial {trial}: seq gap in {tenant}/{}",
                e.event.session
            );
            *last = e.event.seq;
            let message_id = match &e.event.kind {
                EventKind::MessageReceived { message_id, .. } => {
                    assert!(
                        message_ids.insert(message_id.clone()),
                        "trial {trial}: {message_id} stored twice"
                    );
                    Some(message_id.clone())
                }
                _ => None,
            };
            stored.insert(
                (tenant.to_owned(), e.event.session.to_string(), e.event.seq),
                message_id,
            );
        }
        // Session reads agree with the tenant read.
        let ctx = TenantCtx::new(
            t.clone(),
            EnvId::parse("prod").unwrap(),
            Some(TeamId::parse("support").unwrap()),
        );
        for (session, last) in &session_seqs {
            let sid = SessionId::parse(session).unwrap();
            assert_eq!(log.scope(&ctx).session_last_seq(&sid).unwrap(), *last);
            let n = log.scope(&ctx).session_events(&sid, 1..=u64::MAX).count() as u64;
            assert_eq!(n, *last);
        }
    }
    let mut missing = 0;
    for ack in acks {
        for seq in ack.first_seq..=ack.last_seq {
            match stored.get(&(ack.tenant.clone(), ack.session.clone(), seq)) {
                None => missing += 1,
                Some(Some(id)) if id != &ack.message_id => {
                    panic!(
                        "trial {trial}: {}/{} seq {seq} holds {id}, acked {}",
                        ack.tenant, ack.session, ack.message_id
                    )
                }
                Some(_) => {}
            }
        }
    }
    assert_eq!(
        missing, 0,
        "trial {trial} seed {seed}: {missing} acked events missing after kill -9"
    );
}
