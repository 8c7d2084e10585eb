//! Crash test of the whole server: the real `tenantry serve` with HTTP and NATS ingress, three
//! tenants that share every env, team, channel, session, user and message id, concurrent clients
//! on both transports that record every ack, and `kill -9` at a random moment (right after an ack
//! arrives). After each kill the data dir is checked against the acks: no acked message is
//! missing, no message id is stored twice, seqs are gapless per session and per tenant, every
//! tenant's chain verifies and the read models equal a rebuild. Every fourth trial then restarts
//! the server, sends more traffic, stops it cleanly and checks again; and every trial starts on
//! the data dir the previous one left, so the log must continue gaplessly after each recovery.
//!
//! The negative control runs the same scenario against a writer that acks before the flush (a
//! fault switch that only debug builds have) and requires the checker to report the loss.
//!
//! `TENANTRY_CRASH_TRIALS=N` sets the number of trials (default 20); `TENANTRY_CRASH_SEED=S`
//! replays a printed seed (kill delays and message choices; thread timing still varies).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{bearer, crash_seed, crash_trials, free_port, Nats, Serve, ServeProcess};
use crate::support::{tokio_runtime, XorShift};
use tenantry::audit::verify::verify_log;
use tenantry::events::log::{EventLog, LogOptions};
use tenantry::events::schema::EventKind;
use tenantry::projections::projector::Projector;
use tenantry::tenancy::TenantId;

/// Tenants whose names are prefixes of each other's, so a prefix-scan mistake would show.
const TENANTS: [&str; 3] = ["t1", "t1x", "t2"];
/// (session, user): the same ids in every tenant, written over both transports at once. Eight
/// sessions per tenant let that many appends per tenant wait for one flush.
const SESSIONS: [(&str, &str); 8] = [
    ("s-a", "ada"),
    ("s-b", "bob"),
    ("s-c", "cy"),
    ("s-d", "di"),
    ("s-e", "ed"),
    ("s-f", "flo"),
    ("s-g", "gus"),
    ("s-h", "hal"),
];
const ENV: &str = "prod";
const TEAM: &str = "support";
const CHANNEL: &str = "webchat";
const PREFIX: &str = "greentic.messaging";
const FAULT_VAR: &str = "TENANTRY_FAULT_ACK_BEFORE_FLUSH";
/// The kill comes this long after the trial's first ack: a random delay in this range (ms)...
const KILL_AFTER_MS: std::ops::Range<u64> = 200..1500;
/// ...and then at the next ack (or after this long without one).
const NEXT_ACK_WAIT: Duration = Duration::from_secs(5);
/// How long a NATS request may still wait for its reply after the kill: a reply the server sent
/// before dying arrives well within this; anything later never comes.
const REPLY_GRACE: Duration = Duration::from_millis(200);
/// Concurrent clients per tenant on each transport.
const CLIENTS_PER_TRANSPORT: usize = 1;
/// Every this many trials, the server is restarted after the kill and takes more traffic.
const RESTART_EVERY: usize = 4;

/// The text of a message: names its tenant, so an event stored under another tenant shows.
fn text(tenant: &str, message_id: &str) -> String {
    format!("{tenant}|{message_id}")
}

fn config(nats_port: u16) -> String {
    let mut config = format!(
        "[server]\ndata_dir = \"./data\"\n\
         [nats]\nurl = \"nats://127.0.0.1:{nats_port}\"\nsubject_prefix = \"{PREFIX}\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [runtime]\nsnapshot_every = 7\n"
    );
    for t in TENANTS {
        config += &format!(
            "[tenants.{t}]\nname = \"Tenant {t}\"\nenvironments = [\"{ENV}\"]\n\
             [tenants.{t}.teams.{TEAM}]\nflow = \"flows/acme_support.yaml\"\n\
             [tenants.{t}.teams.{TEAM}.channels.{CHANNEL}]\nprovider = \"messaging-webchat\"\n"
        );
    }
    config
}

/// Which log writer the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    /// The real one: acks after flush and fdatasync.
    Durable,
    /// The debug-only fault: acks right after `apply_batch`.
    AckBeforeFlush,
}

/// Starts `tenantry serve` on the scenario's data dir `dir` (which holds the flows) with NATS
/// ingress from the nats-server on `nats_port`; waits until it serves on both edges.
fn start(dir: &Path, nats_port: u16, writer: Writer) -> ServeProcess {
    let mut serve = Serve::config(&config(nats_port))
        .in_dir(dir)
        .log("warn,tenantry::edge=info");
    if writer == Writer::AckBeforeFlush {
        serve = serve.env(FAULT_VAR, "1");
    }
    let server = serve.start();
    // Release builds have no fault switch: they ignore the variable and stay silent.
    let faulty = writer == Writer::AckBeforeFlush && cfg!(debug_assertions);
    let warned = server
        .started
        .iter()
        .any(|l| l.contains("FAULT INJECTION ACTIVE"));
    assert_eq!(
        warned, faulty,
        "the fault warning must show exactly when the fault is on: {:#?}",
        server.started
    );
    server
}

/// SIGTERM and a clean exit.
fn stop(mut server: ServeProcess) {
    let status = server.stop();
    assert!(status.success(), "serve exited with {status:?} on SIGTERM");
}

/// One ack as a client received it.
#[derive(Clone, Debug)]
struct Ack {
    tenant: &'static str,
    /// From the ack body.
    session: String,
    /// From the ack body: the seq of the message's `MessageReceived`.
    seq: u64,
    message_id: String,
    via: &'static str,
}

impl fmt::Display for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tenant {} session {} seq {} message {} (via {})",
            self.tenant, self.session, self.seq, self.message_id, self.via
        )
    }
}

/// What one send came to.
enum Outcome {
    Acked(Ack),
    /// Overloaded or over quota: not acked, try the next message.
    Busy,
    /// The server is unreachable (killed), or the request died with it.
    Gone(String),
    /// Any other answer: a broken promise, reported by the trial.
    Refused(String),
}

/// One message: which tenant, session and id it is.
struct Message<'a> {
    tenant: &'static str,
    session: &'a str,
    user: &'a str,
    message_id: &'a str,
}

impl<'a> Message<'a> {
    fn new(tenant: &'static str, session: &'a str, user: &'a str, message_id: &'a str) -> Self {
        Message {
            tenant,
            session,
            user,
            message_id,
        }
    }

    fn what(&self) -> String {
        format!(
            "tenant {} session {} message {}",
            self.tenant, self.session, self.message_id
        )
    }

    fn check_ack(&self, body: &Value, via: &'static str) -> Outcome {
        let (Some(session), Some(seq)) = (body["session"].as_str(), body["seq"].as_u64()) else {
            return match body["error"]["code"].as_str() {
                Some("overloaded" | "quota_exceeded") => Outcome::Busy,
                _ => Outcome::Refused(format!("{}: reply via {via}: {body}", self.what())),
            };
        };
        if session != self.session {
            return Outcome::Refused(format!(
                "{}: acked via {via} for another session: {body}",
                self.what()
            ));
        }
        Outcome::Acked(Ack {
            tenant: self.tenant,
            session: session.to_owned(),
            seq,
            message_id: self.message_id.to_owned(),
            via,
        })
    }

    fn send_http(&self, agent: &ureq::Agent, base: &str, bearer: &str) -> Outcome {
        let body = json!({"team": TEAM, "channel": CHANNEL, "session": self.session,
                          "user": self.user, "text": text(self.tenant, self.message_id),
                          "message_id": self.message_id});
        let sent = agent
            .post(format!("{base}/api/v1/messages"))
            .header("Authorization", bearer)
            .header("X-Tenant-ID", self.tenant)
            .header("Content-Type", "application/json")
            .send(body.to_string());
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return Outcome::Gone(e.to_string()),
        };
        let status = response.status().as_u16();
        let text = match response.body_mut().read_to_string() {
            Ok(text) => text,
            Err(e) => return Outcome::Gone(e.to_string()),
        };
        match status {
            200 => self.check_ack(&serde_json::from_str(&text).unwrap(), "http"),
            429 | 503 => Outcome::Busy,
            _ => Outcome::Refused(format!("{}: HTTP {status}: {text}", self.what())),
        }
    }

    /// Even `n` carries the id in the `Nats-Msg-Id` header, odd `n` in the body. A request the
    /// killed server never answers is abandoned shortly after `killed` is set.
    async fn send_nats(&self, client: &async_nats::Client, n: u64, killed: &AtomicBool) -> Outcome {
        let mut body = json!({"session": self.session, "user": self.user,
                              "text": text(self.tenant, self.message_id)});
        let mut headers = async_nats::HeaderMap::new();
        if n.is_multiple_of(2) {
            headers.insert("Nats-Msg-Id", self.message_id);
        } else {
            body["message_id"] = json!(self.message_id);
        }
        let request = async_nats::Request::new()
            .payload(body.to_string().into())
            .headers(headers)
            .timeout(Some(Duration::from_secs(10)));
        let subject = format!("{PREFIX}.ingress.{ENV}.{}.{TEAM}.{CHANNEL}", self.tenant);
        let reply = client.send_request(subject, request);
        tokio::pin!(reply);
        let mut abandon_at = None;
        loop {
            tokio::select! {
                biased;
                reply = &mut reply => return match reply {
                    Ok(reply) => {
                        self.check_ack(&serde_json::from_slice(&reply.payload).unwrap(), "nats")
                    }
                    Err(e) => Outcome::Gone(e.to_string()),
                },
                () = tokio::time::sleep(Duration::from_millis(10)) => {
                    if killed.load(Ordering::SeqCst) {
                        let at = *abandon_at.get_or_insert_with(|| Instant::now() + REPLY_GRACE);
                        if Instant::now() >= at {
                            return Outcome::Gone("no reply from the killed server".into());
                        }
                    }
                }
            }
        }
    }
}

/// What the clients share with the killer.
struct Shared {
    acks: Mutex<Vec<Ack>>,
    acked: Condvar,
    /// Refusals and early disconnects, as report problems.
    problems: Mutex<Vec<String>>,
    /// The server; killed when dropped, whatever happened.
    victim: Mutex<Child>,
    /// When set, the client that records the next ack kills the server at once.
    armed: AtomicBool,
    /// Set just before the kill: from then on an unreachable server is expected.
    killed: AtomicBool,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Ok(victim) = self.victim.get_mut() {
            let _ = victim.kill();
            let _ = victim.wait();
        }
    }
}

impl Shared {
    fn new(server: ServeProcess) -> Shared {
        Shared {
            acks: Mutex::default(),
            acked: Condvar::new(),
            problems: Mutex::default(),
            victim: Mutex::new(server.into_child()),
            armed: AtomicBool::new(false),
            killed: AtomicBool::new(false),
        }
    }

    fn record(&self, ack: Ack) {
        let direct = ack.via == "http";
        self.acks.lock().unwrap().push(ack);
        // Killing from the thread that just got the ack leaves no scheduling delay in between:
        // an ack that ran ahead of its flush is as exposed as it can be. HTTP acks come straight
        // from the server (NATS ones pass through nats-server), so they trigger the kill.
        if direct && self.armed.swap(false, Ordering::SeqCst) {
            self.kill_9();
        }
        self.acked.notify_all();
    }

    /// SIGKILL: no drain, no final flush, no snapshot. (Reaping it checks that it died.)
    fn kill_9(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Ok(mut victim) = self.victim.lock() {
            let _ = victim.kill();
        }
    }

    /// Records an ack or a problem; whether the client should stop.
    fn take(&self, outcome: Outcome, what: &str) -> bool {
        match outcome {
            Outcome::Acked(ack) => self.record(ack),
            Outcome::Busy => std::thread::sleep(Duration::from_millis(5)),
            Outcome::Refused(problem) => self.problems.lock().unwrap().push(problem),
            Outcome::Gone(e) => {
                if !self.killed.load(Ordering::SeqCst) {
                    let problem = format!("{what}: the server went away before the kill: {e}");
                    self.problems.lock().unwrap().push(problem);
                }
                return true;
            }
        }
        false
    }
}

/// Messages per client per trial at most: a bound, not a target (the kill comes first).
const CLIENT_MESSAGES_MAX: u64 = 100_000;

/// One client's messages as `tenant`, each in a random session with the id `{id_prefix}{n}`,
/// handed to `send` until the outcome says the client should stop.
fn client_loop(
    shared: &Shared,
    tenant: &'static str,
    id_prefix: &str,
    mut rng: XorShift,
    mut send: impl FnMut(&Message, u64) -> Outcome,
) {
    for n in 0..CLIENT_MESSAGES_MAX {
        let (session, user) = SESSIONS[(rng.next() % SESSIONS.len() as u64) as usize];
        let message_id = format!("{id_prefix}{n}");
        let message = Message::new(tenant, session, user, &message_id);
        let what = format!("tenant {tenant} session {session} message {message_id}");
        if shared.take(send(&message, n), &what) {
            return;
        }
    }
}

fn http_client(shared: &Shared, base: &str, tenant: &'static str, tag: &str, rng: XorShift) {
    let agent = agent();
    let bearer = bearer(tenant);
    client_loop(shared, tenant, &format!("{tag}-h"), rng, |message, _| {
        message.send_http(&agent, base, &bearer)
    });
}

fn nats_client(shared: &Shared, port: u16, tenant: &'static str, tag: &str, rng: XorShift) {
    let rt = tokio_runtime();
    let client = rt
        .block_on(async_nats::connect(format!("nats://127.0.0.1:{port}")))
        .unwrap();
    client_loop(shared, tenant, &format!("{tag}-n"), rng, |message, n| {
        rt.block_on(message.send_nats(&client, n, &shared.killed))
    });
}

fn agent() -> ureq::Agent {
    crate::support::agent(Duration::from_secs(10))
}

/// What the checker found after a trial.
#[derive(Default)]
struct Report {
    /// Acked messages that are not in the log.
    lost: Vec<String>,
    /// Every other broken promise: duplicates, gaps, chain, isolation, projections.
    problems: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} acked messages lost, {} other problems",
            self.lost.len(),
            self.problems.len()
        )?;
        for line in self.lost.iter().chain(&self.problems).take(20) {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Checks the (stopped) server's data dir against every ack recorded so far.
fn check(data: &Path, acks: &[Ack]) -> Report {
    let mut report = Report::default();
    let log = EventLog::open(&data.join("log"), &LogOptions::default()).unwrap();
    for d in log.damaged() {
        report.problems.push(format!(
            "tenant {} damaged at {}: {}",
            d.tenant, d.position, d.detail
        ));
    }
    let projector = Projector::new(&log).unwrap();
    for tenant in TENANTS {
        let t = TenantId::parse(tenant).unwrap();
        let verdict = verify_log(&log, &t).unwrap();
        if !verdict.is_intact() {
            report
                .problems
                .push(format!("tenant {tenant}: verify: {verdict}"));
        }
        // message id -> (session, seq) of its MessageReceived.
        let mut stored: HashMap<String, (String, u64)> = HashMap::new();
        let mut session_last: BTreeMap<String, u64> = BTreeMap::new();
        let mut tenant_seq = 0;
        for e in log.tenant(&t).events(1..=u64::MAX) {
            let e = match e {
                Ok(e) => e.event,
                Err(err) => {
                    report.problems.push(format!(
                        "tenant {tenant}: unreadable after {tenant_seq}: {err}"
                    ));
                    break;
                }
            };
            let at = format!(
                "tenant {tenant} session {} seq {} tenant_seq {}",
                e.session, e.seq, e.tenant_seq
            );
            if e.tenant != t {
                report
                    .problems
                    .push(format!("{at}: holds an event of tenant {}", e.tenant));
            }
            if e.tenant_seq != tenant_seq + 1 {
                report
                    .problems
                    .push(format!("{at}: tenant_seq gap after {tenant_seq}"));
            }
            tenant_seq = e.tenant_seq;
            let key = format!("{}/{}/{}", e.env, e.team, e.session);
            let last = session_last.entry(key).or_insert(0);
            if e.seq != *last + 1 {
                report
                    .problems
                    .push(format!("{at}: session seq gap after {last}"));
            }
            *last = e.seq;
            if let EventKind::MessageReceived {
                message_id,
                text: body,
                ..
            } = &e.kind
            {
                if body != &text(tenant, message_id) {
                    report.problems.push(format!(
                        "{at}: message {message_id} carries another tenant's text {body:?}"
                    ));
                }
                let here = (e.session.to_string(), e.seq);
                if let Some(first) = stored.insert(message_id.clone(), here) {
                    report.problems.push(format!(
                        "{at}: message {message_id} stored twice (first at session {} seq {})",
                        first.0, first.1
                    ));
                }
            }
        }
        for ack in acks.iter().filter(|a| a.tenant == tenant) {
            match stored.get(&ack.message_id) {
                None => report.lost.push(format!("acked, not in the log: {ack}")),
                Some((session, seq)) if (session, *seq) != (&ack.session, ack.seq) => {
                    report.problems.push(format!(
                        "acked {ack}, stored at session {session} seq {seq}"
                    ));
                }
                Some(_) => {}
            }
        }
        // The read models the server folded (and what it left at the kill) must equal a rebuild.
        projector.catch_up(&log, &t, &mut |_| {}).unwrap();
        let folded = projector.dump(&t).unwrap();
        projector.rebuild(&log, &t, &mut |_| {}).unwrap();
        let rebuilt = projector.dump(&t).unwrap();
        if folded != rebuilt {
            let first = folded
                .iter()
                .zip(&rebuilt)
                .find(|(a, b)| a != b)
                .map(|(a, _)| String::from_utf8_lossy(&a.0).into_owned());
            report.problems.push(format!(
                "tenant {tenant}: read models ({} entries) differ from a rebuild ({} entries), \
                 first at key {first:?}",
                folded.len(),
                rebuilt.len()
            ));
        }
    }
    report
}

struct KillOnDrop(Arc<Shared>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.0.killed.load(Ordering::SeqCst) {
            self.0.kill_9();
        }
    }
}

/// One data dir, one nats-server, many trials; the acks of all trials so far.
struct Scenario {
    seed: u64,
    rng: XorShift,
    writer: Writer,
    nats: Nats,
    dir: tempfile::TempDir,
    acks: Vec<Ack>,
    restarts: usize,
}

impl Scenario {
    fn new(seed: u64, writer: Writer) -> Scenario {
        let nats = Nats::start(free_port());
        let dir = crate::support::dir_with_flows();
        Scenario {
            seed,
            rng: XorShift(seed),
            writer,
            nats,
            dir,
            acks: Vec::new(),
            restarts: 0,
        }
    }

    /// Load, kill -9, maybe restart with more traffic, then check everything so far.
    fn trial(&mut self, trial: usize) -> Report {
        let (seed, writer) = (self.seed, self.writer);
        let server = start(self.dir.path(), self.nats.port, writer);
        let base = server.base();
        let shared = Arc::new(Shared::new(server));
        let mut clients = Vec::new();
        for (tenant, k) in TENANTS
            .into_iter()
            .flat_map(|t| (0..CLIENTS_PER_TRANSPORT).map(move |k| (t, k)))
        {
            // The same ids in every tenant: a cross-tenant idempotency mix-up would lose acks.
            let tag = format!("r{trial}-c{k}");
            let (s, base, t, rng) = (
                shared.clone(),
                base.clone(),
                tag.clone(),
                XorShift(self.rng.next() | 1),
            );
            clients.push(std::thread::spawn(move || {
                http_client(&s, &base, tenant, &t, rng)
            }));
            let (s, port, t, rng) = (
                shared.clone(),
                self.nats.port,
                tag.clone(),
                XorShift(self.rng.next() | 1),
            );
            clients.push(std::thread::spawn(move || {
                nats_client(&s, port, tenant, &t, rng)
            }));
        }

        // If this thread fails, the server must die so that the clients stop.
        let _guard = KillOnDrop(shared.clone());
        let kill_after =
            KILL_AFTER_MS.start + self.rng.next() % (KILL_AFTER_MS.end - KILL_AFTER_MS.start);
        {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut acks = shared.acks.lock().unwrap();
            while acks.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "trial {trial} seed {seed}: no ack within 30 s"
                );
                acks = shared
                    .acked
                    .wait_timeout(acks, Duration::from_millis(100))
                    .unwrap()
                    .0;
            }
        }
        std::thread::sleep(Duration::from_millis(kill_after));
        shared.armed.store(true, Ordering::SeqCst);
        {
            let acks = shared.acks.lock().unwrap();
            let _ = shared
                .acked
                .wait_timeout_while(acks, NEXT_ACK_WAIT, |_| {
                    !shared.killed.load(Ordering::SeqCst)
                })
                .unwrap();
        }
        // No ack came in time: kill anyway.
        if shared.armed.swap(false, Ordering::SeqCst) {
            shared.kill_9();
        }
        shared.victim.lock().unwrap().wait().unwrap();
        for client in clients {
            client.join().expect("a client failed; see its panic above");
        }
        let acked = std::mem::take(&mut *shared.acks.lock().unwrap());
        eprintln!(
            "trial {trial} seed {seed} ({writer:?}): {} acks, kill {kill_after} ms after the first",
            acked.len()
        );
        self.acks.extend(acked);
        let refused = std::mem::take(&mut *shared.problems.lock().unwrap());

        // What recovery finds right after the kill...
        let mut report = check(&self.dir.path().join("data"), &self.acks);
        report.problems.extend(refused);
        // ...and, every few trials, after more traffic on the recovered log.
        if trial % RESTART_EVERY == RESTART_EVERY - 1 && report.lost.is_empty() {
            let refused = self.traffic_after_restart(trial);
            let after = check(&self.dir.path().join("data"), &self.acks);
            report.lost.extend(after.lost);
            report
                .problems
                .extend(refused.into_iter().chain(after.problems));
        }
        report
    }

    /// Restarts on the crashed data dir, sends one message per tenant, session and transport,
    /// each of which must be acked, and stops the server cleanly. Returns what was not acked.
    fn traffic_after_restart(&mut self, trial: usize) -> Vec<String> {
        let mut problems = Vec::new();
        let alive = AtomicBool::new(false);
        let server = start(self.dir.path(), self.nats.port, self.writer);
        let agent = agent();
        let rt = tokio_runtime();
        let client = rt
            .block_on(async_nats::connect(format!(
                "nats://127.0.0.1:{}",
                self.nats.port
            )))
            .unwrap();
        for tenant in TENANTS {
            let bearer = bearer(tenant);
            for (i, (session, user)) in SESSIONS.into_iter().enumerate() {
                for via in ["http", "nats"] {
                    let message_id = format!("r{trial}-after-{via}{i}");
                    let message = Message::new(tenant, session, user, &message_id);
                    let outcome = match via {
                        "http" => message.send_http(&agent, &server.base(), &bearer),
                        _ => rt.block_on(message.send_nats(&client, i as u64, &alive)),
                    };
                    match outcome {
                        Outcome::Acked(ack) => self.acks.push(ack),
                        Outcome::Busy | Outcome::Gone(_) => problems.push(format!(
                            "{}: not acked via {via} after the restart",
                            message.what()
                        )),
                        Outcome::Refused(problem) => problems.push(problem),
                    }
                }
            }
        }
        stop(server);
        self.restarts += 1;
        problems
    }
}

#[test]
fn kill_9_of_the_server_loses_no_acked_message() {
    let seed = crash_seed();
    eprintln!("server crash test seed {seed} (TENANTRY_CRASH_SEED={seed} replays it)");
    let trials = crash_trials();
    let mut scenario = Scenario::new(seed, Writer::Durable);
    for trial in 0..trials {
        let report = scenario.trial(trial);
        assert!(
            report.lost.is_empty() && report.problems.is_empty(),
            "trial {trial} seed {seed}: {report}"
        );
    }
    let per_transport = |via| scenario.acks.iter().filter(|a| a.via == via).count();
    let (http, nats) = (per_transport("http"), per_transport("nats"));
    assert!(
        http >= trials && nats >= trials,
        "seed {seed}: too few acks to prove anything: {http} over HTTP, {nats} over NATS"
    );
    assert_eq!(scenario.restarts, trials / RESTART_EVERY);
}

/// The fault switch exists only in debug builds, which is how `cargo test` runs.
#[cfg(debug_assertions)]
#[test]
fn the_crash_test_catches_a_writer_that_acks_before_the_flush() {
    /// Trials the checker may take to see a loss. The fault also delays each flush by 50 ms (a
    /// slow disk), and the kill follows an ack, so nearly every trial kills with acked but
    /// unflushed groups in memory. A catch ends the test.
    const FAULT_TRIALS_MAX: usize = 10;
    let seed = crash_seed();
    eprintln!("negative control seed {seed} (TENANTRY_CRASH_SEED={seed} replays it)");
    let mut scenario = Scenario::new(seed, Writer::AckBeforeFlush);
    for trial in 0..FAULT_TRIALS_MAX {
        let report = scenario.trial(trial);
        if !report.lost.is_empty() {
            eprintln!(
                "negative control: loss caught in trial {trial} ({} trials): {report}",
                trial + 1
            );
            return;
        }
    }
    panic!(
        "seed {seed}: {FAULT_TRIALS_MAX} kill -9 trials against a writer that acks before the \
         flush, and the checker reported no lost ack"
    );
}

/// Under `cargo test --release` the same variable must change nothing: no warning at start-up
/// (checked by `start`) and no loss. A debug `cargo test` cannot check this; it compiles
/// the switch in.
#[cfg(not(debug_assertions))]
#[test]
fn a_release_build_ignores_the_fault_switch() {
    let seed = crash_seed();
    eprintln!("release fault-switch check seed {seed}");
    let mut scenario = Scenario::new(seed, Writer::AckBeforeFlush);
    for trial in 0..3 {
        let report = scenario.trial(trial);
        assert!(
            report.lost.is_empty() && report.problems.is_empty(),
            "trial {trial} seed {seed}: {report}"
        );
    }
}
