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

use std::fmt;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{bearer, cluster_trials, crash_seed, crash_trials, free_port};
use crate::support::{tokio_runtime, XorShift};

pub(crate) mod check;
use crate::support::{JetStream, Nats, Serve, ServeProcess};
use check::{check, LogSpec, Report};

/// Tenants whose names are prefixes of each other's, so a prefix-scan mistake would show.
pub(crate) const TENANTS: [&str; 3] = ["t1", "t1x", "t2"];
/// (session, user): the same ids in every tenant, written over both transports at once. Eight
/// sessions per tenant let that many appends per tenant wait for one flush.
pub(crate) const SESSIONS: [(&str, &str); 8] = [
    ("s-a", "ada"),
    ("s-b", "bob"),
    ("s-c", "cy"),
    ("s-d", "di"),
    ("s-e", "ed"),
    ("s-f", "flo"),
    ("s-g", "gus"),
    ("s-h", "hal"),
];
pub(crate) const ENV: &str = "prod";
pub(crate) const TEAM: &str = "support";
pub(crate) const CHANNEL: &str = "webchat";
pub(crate) const PREFIX: &str = "greentic.messaging";
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
pub(crate) fn text(tenant: &str, message_id: &str) -> String {
    format!("{tenant}|{message_id}")
}

/// The stream of the JetStream runs.
const STREAM: &str = "CRASH";

fn config(nats_port: u16, backend: Backend) -> String {
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
    if backend == Backend::JetStream {
        config += &format!(
            "[log]\nbackend = \"jetstream\"\nstream = \"{STREAM}\"\n[cluster]\nnode = \"n1\"\n"
        );
    }
    config
}

/// Which log backend the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// sled in the data dir: acks after flush and fdatasync.
    Sled,
    /// A JetStream stream on nats-server 2.15 (`sync_interval: always`), which also carries the
    /// NATS ingress: acks after the stream's ack.
    JetStream,
}

/// The NATS server of a scenario: Debian's 2.9 for the sled runs, 2.15 with JetStream else.
enum Broker {
    Nats(Nats),
    JetStream(JetStream),
}

impl Broker {
    fn start(backend: Backend) -> Broker {
        match backend {
            Backend::Sled => Broker::Nats(Nats::start(free_port())),
            Backend::JetStream => Broker::JetStream(JetStream::single()),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Broker::Nats(nats) => nats.port,
            Broker::JetStream(js) => {
                let url = js.url(0);
                let port = url.rsplit(':').next().and_then(|p| p.parse().ok());
                port.unwrap_or_else(|| panic!("no port in {url}"))
            }
        }
    }
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
fn start(dir: &Path, nats_port: u16, writer: Writer, backend: Backend) -> ServeProcess {
    let mut serve = Serve::config(&config(nats_port, backend))
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
pub(crate) struct Ack {
    pub(crate) tenant: &'static str,
    /// From the ack body.
    pub(crate) session: String,
    /// From the ack body: the seq of the message's `MessageReceived`.
    pub(crate) seq: u64,
    pub(crate) message_id: String,
    pub(crate) via: &'static str,
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
pub(crate) enum Outcome {
    Acked(Ack),
    /// Overloaded or over quota: not acked, try the next message.
    Busy,
    /// The server is unreachable (killed), or the request died with it.
    Gone(String),
    /// Any other answer: a broken promise, reported by the trial.
    Refused(String),
}

/// One message: which tenant, session and id it is.
pub(crate) struct Message<'a> {
    tenant: &'static str,
    session: &'a str,
    user: &'a str,
    message_id: &'a str,
}

impl<'a> Message<'a> {
    pub(crate) fn new(
        tenant: &'static str,
        session: &'a str,
        user: &'a str,
        message_id: &'a str,
    ) -> Self {
        Message {
            tenant,
            session,
            user,
            message_id,
        }
    }

    pub(crate) fn what(&self) -> String {
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

    pub(crate) fn send_http(&self, agent: &ureq::Agent, base: &str, bearer: &str) -> Outcome {
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
    pub(crate) async fn send_nats(
        &self,
        client: &async_nats::Client,
        n: u64,
        killed: &AtomicBool,
    ) -> Outcome {
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
                    // "No responders" too: the test support waits for nats-server to list
                    // the subscription before a client starts, so it means a server gone.
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
    backend: Backend,
    nats: Broker,
    dir: tempfile::TempDir,
    acks: Vec<Ack>,
    restarts: usize,
}

impl Scenario {
    fn new(seed: u64, writer: Writer, backend: Backend) -> Scenario {
        let nats = Broker::start(backend);
        let dir = crate::support::dir_with_flows();
        Scenario {
            seed,
            rng: XorShift(seed),
            writer,
            backend,
            nats,
            dir,
            acks: Vec::new(),
            restarts: 0,
        }
    }

    /// Load, kill -9, maybe restart with more traffic, then check everything so far.
    fn trial(&mut self, trial: usize) -> Report {
        let (seed, writer, backend) = (self.seed, self.writer, self.backend);
        let nats_port = self.nats.port();
        let server = start(self.dir.path(), nats_port, writer, backend);
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
                nats_port,
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
            "trial {trial} seed {seed} ({writer:?}, {backend:?}): {} acks, kill {kill_after} ms \
             after the first",
            acked.len()
        );
        self.acks.extend(acked);
        let refused = std::mem::take(&mut *shared.problems.lock().unwrap());

        // What recovery finds right after the kill...
        let data = self.dir.path().join("data");
        let mut report = check(&data, &self.acks, &LogSpec::single(backend, nats_port));
        report.problems.extend(refused);
        // ...and, every few trials, after more traffic on the recovered log.
        if trial % RESTART_EVERY == RESTART_EVERY - 1 && report.lost.is_empty() {
            let refused = self.traffic_after_restart(trial);
            let after = check(&data, &self.acks, &LogSpec::single(backend, nats_port));
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
        let nats_port = self.nats.port();
        let server = start(self.dir.path(), nats_port, self.writer, self.backend);
        let agent = agent();
        let rt = tokio_runtime();
        let client = rt
            .block_on(async_nats::connect(format!("nats://127.0.0.1:{nats_port}")))
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
    durable_trials(Backend::Sled, crash_trials());
}

/// The same trials with the log on JetStream: what the stream acked survives the node, the
/// node's cache is brought back to the stream at restart. `TENANTRY_CLUSTER_TRIALS=N` for long
/// runs.
#[test]
fn kill_9_of_a_jetstream_node_loses_no_acked_message() {
    durable_trials(Backend::JetStream, cluster_trials());
}

fn durable_trials(backend: Backend, trials: usize) {
    let seed = crash_seed();
    eprintln!(
        "server crash test ({backend:?}) seed {seed} (TENANTRY_CRASH_SEED={seed} replays it)"
    );
    let mut scenario = Scenario::new(seed, Writer::Durable, backend);
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
    negative_control(Backend::Sled);
}

/// The same on JetStream: the fault answers before the syncer publishes.
#[cfg(debug_assertions)]
#[test]
fn the_jetstream_crash_test_catches_a_writer_that_acks_before_the_stream() {
    negative_control(Backend::JetStream);
}

#[cfg(debug_assertions)]
fn negative_control(backend: Backend) {
    /// Trials the checker may take to see a loss. The fault also delays each flush by 50 ms (a
    /// slow disk), and the kill follows an ack, so nearly every trial kills with acked but
    /// unflushed groups in memory. A catch ends the test.
    const FAULT_TRIALS_MAX: usize = 10;
    let seed = crash_seed();
    eprintln!("negative control ({backend:?}) seed {seed} (TENANTRY_CRASH_SEED={seed} replays it)");
    let mut scenario = Scenario::new(seed, Writer::AckBeforeFlush, backend);
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
        "seed {seed} ({backend:?}): {FAULT_TRIALS_MAX} kill -9 trials against a writer that acks \
         before the flush, and the checker reported no lost ack"
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
    let mut scenario = Scenario::new(seed, Writer::AckBeforeFlush, Backend::Sled);
    for trial in 0..3 {
        let report = scenario.trial(trial);
        assert!(
            report.lost.is_empty() && report.problems.is_empty(),
            "trial {trial} seed {seed}: {report}"
        );
    }
}
