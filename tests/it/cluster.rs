//! The cluster: three `tenantry serve` nodes on a three-server nats-server 2.15 cluster
//! (JetStream R3, `sync_interval: always`), under HTTP and NATS load from three tenants that
//! reuse every id. Each trial breaks one thing while the load runs: (a) kill -9 of a tenantry
//! node (restarted on its data dir), (b) kill of a nats-server (restarted), (c) SIGSTOP of a
//! tenant's owner past its lease, then SIGCONT. Clients send each message until it is acked,
//! always with the same message id, to any live node (HTTP) or over NATS (the owner answers).
//! After each trial the stream is read into a fresh cache and checked against every ack: no acked
//! message missing, none stored twice, seqs gapless, every tenant's chain verifies. After (c),
//! no record of the paused node follows the new owner's takeover: its appends were refused.
//!
//! `TENANTRY_CLUSTER_TRIALS=N` sets the number of trials (default 3: one of each).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::server_crash::check::{check, LogSpec};
use crate::server_crash::{Ack, Message, Outcome, CHANNEL, ENV, PREFIX, SESSIONS, TEAM, TENANTS};
use crate::support::{bearer, cluster_trials, crash_seed, dir_with_flows, tokio_runtime};
use crate::support::{JetStream, Serve, ServeProcess, XorShift};

const STREAM: &str = "CLUSTER";
const NODES: usize = 3;
const LEASE_TTL: Duration = Duration::from_secs(2);
/// Longest a client keeps sending one message before it gives up on it (not an ack).
const MESSAGE_PATIENCE: Duration = Duration::from_secs(30);

fn node_config(urls: &str, node: &str) -> String {
    let mut config = format!(
        "[server]\ndata_dir = \"./data\"\n\
         [nats]\nurl = \"{urls}\"\nsubject_prefix = \"{PREFIX}\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [log]\nbackend = \"jetstream\"\nstream = \"{STREAM}\"\nreplicas = 3\n\
         [cluster]\nnode = \"{node}\"\nlease_ttl = \"{}s\"\n",
        LEASE_TTL.as_secs()
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

struct Node {
    name: String,
    dir: tempfile::TempDir,
    process: Option<ServeProcess>,
}

struct Cluster {
    js: JetStream,
    nodes: Vec<Node>,
    /// The HTTP base of each node, `None` while it is down.
    bases: Arc<RwLock<Vec<Option<String>>>>,
}

impl Cluster {
    fn start() -> Cluster {
        let js = JetStream::cluster(3);
        let mut cluster = Cluster {
            js,
            nodes: Vec::new(),
            bases: Arc::new(RwLock::new(vec![None; NODES])),
        };
        for i in 0..NODES {
            cluster.nodes.push(Node {
                name: format!("n{}", i + 1),
                dir: dir_with_flows(),
                process: None,
            });
            cluster.start_node(i);
        }
        cluster
    }

    fn start_node(&mut self, i: usize) {
        let config = node_config(&self.js.urls(), &self.nodes[i].name);
        let process = Serve::config(&config)
            .in_dir(self.nodes[i].dir.path())
            .log("warn,tenantry::edge=info,tenantry::cluster=info")
            .start();
        self.bases.write().unwrap()[i] = Some(process.base());
        self.nodes[i].process = Some(process);
    }

    /// Leaves the nats-servers' dir (stores, logs) and every node's dir on disk; their paths.
    fn keep_dirs(&mut self) -> String {
        let mut kept = vec![self.js.keep().display().to_string()];
        for node in &mut self.nodes {
            node.dir.disable_cleanup(true);
            kept.push(node.dir.path().display().to_string());
        }
        kept.join(", ")
    }

    fn kill_node(&mut self, i: usize) {
        self.bases.write().unwrap()[i] = None;
        if let Some(mut process) = self.nodes[i].process.take() {
            process.kill();
        }
    }

    fn signal_node(&self, i: usize, signal: &str) {
        let pid = self.nodes[i].process.as_ref().unwrap().pid().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    fn config_path(&self) -> PathBuf {
        self.nodes[0].dir.path().join("config.toml")
    }

    /// `tenantry cluster status --format json`, run against the cluster.
    fn status(&self) -> Value {
        let output = Command::new(env!("CARGO_BIN_EXE_tenantry"))
            .args(["cluster", "status", "--format", "json", "--config"])
            .arg(self.config_path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "cluster status: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn owner(&self, tenant: &str) -> Option<String> {
        let status = self.status();
        let tenants = status["tenants"].as_array().cloned().unwrap_or_default();
        tenants
            .iter()
            .find(|t| t["tenant"] == tenant)
            .and_then(|t| t["owner"].as_str().map(str::to_owned))
    }
}

/// The load: per tenant one HTTP client (a random live node each attempt) and one NATS client
/// (the owner answers), each sending every message until it is acked.
struct Load {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    problems: Arc<Mutex<Vec<String>>>,
    acked: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(cluster: &Cluster, tag: &str, seed: u64) -> Load {
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            acks: Arc::default(),
            problems: Arc::default(),
            acked: Arc::default(),
            threads: Vec::new(),
        };
        let mut rng = XorShift(seed);
        for tenant in TENANTS {
            for via in ["http", "nats"] {
                let client = Client {
                    tenant,
                    via,
                    tag: format!("{tag}-{via}"),
                    bases: cluster.bases.clone(),
                    urls: cluster.js.urls(),
                    stop: load.stop.clone(),
                    acks: load.acks.clone(),
                    problems: load.problems.clone(),
                    acked: load.acked.clone(),
                    rng: XorShift(rng.next() | 1),
                };
                load.threads.push(std::thread::spawn(move || client.run()));
            }
        }
        load
    }

    /// Waits until `n` more acks than now have arrived (the cluster is taking messages).
    fn wait_for_acks(&self, n: u64, what: &str) {
        let target = self.acked.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.acked.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "no acks within 60 s {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self) -> (Vec<Ack>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("a client failed; see its panic above");
        }
        let acks = std::mem::take(&mut *self.acks.lock().unwrap());
        let problems = std::mem::take(&mut *self.problems.lock().unwrap());
        (acks, problems)
    }
}

struct Client {
    tenant: &'static str,
    via: &'static str,
    tag: String,
    bases: Arc<RwLock<Vec<Option<String>>>>,
    urls: String,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    problems: Arc<Mutex<Vec<String>>>,
    acked: Arc<AtomicU64>,
    rng: XorShift,
}

impl Client {
    fn run(mut self) {
        let agent = crate::support::agent(Duration::from_secs(15));
        let rt = tokio_runtime();
        let nats = (self.via == "nats").then(|| {
            let urls: Vec<async_nats::ServerAddr> =
                self.urls.split(',').map(|u| u.parse().unwrap()).collect();
            rt.block_on(async_nats::connect(urls)).unwrap()
        });
        let bearer = bearer(self.tenant);
        let never = AtomicBool::new(false);
        let mut n = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            n += 1;
            let (session, user) = SESSIONS[(self.rng.next() % SESSIONS.len() as u64) as usize];
            let message_id = format!("{}-{n}", self.tag);
            let message = Message::new(self.tenant, session, user, &message_id);
            let started = Instant::now();
            // The same message id until acked: a retry of an append that did land is
            // answered with its first ack, never appended twice.
            loop {
                let outcome = match &nats {
                    Some(client) => rt.block_on(message.send_nats(client, n, &never)),
                    None => match self.random_base() {
                        Some(base) => message.send_http(&agent, &base, &bearer),
                        None => Outcome::Gone("no node up".into()),
                    },
                };
                match outcome {
                    Outcome::Acked(ack) => {
                        self.acks.lock().unwrap().push(ack);
                        self.acked.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    // A failure of ours (HTTP 5xx, NATS `internal`/`interrupted`: a node or
                    // server lost mid-request) is retried like an unreachable node, with the
                    // same id; anything else is a broken promise.
                    Outcome::Refused(p) if !retryable(&p) => {
                        self.problems.lock().unwrap().push(p);
                        break;
                    }
                    _ if started.elapsed() > MESSAGE_PATIENCE => break,
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
    }

    fn random_base(&mut self) -> Option<String> {
        let bases = self.bases.read().unwrap();
        let live: Vec<&String> = bases.iter().flatten().collect();
        if live.is_empty() {
            return None;
        }
        Some(live[(self.rng.next() % live.len() as u64) as usize].clone())
    }
}

/// Whether a refusal is one a client retries with the same message id.
fn retryable(refusal: &str) -> bool {
    refusal.contains("HTTP 5")
        || ["internal", "interrupted", "shutting_down"]
            .iter()
            .any(|code| refusal.contains(&format!("\"code\":\"{code}\"")))
}

/// The nodes of the records of `tenant`'s subject published at or after `since`, in order.
fn record_nodes_since(urls: &str, tenant: &str, since: SystemTime) -> Vec<(String, bool)> {
    let rt = tokio_runtime();
    rt.block_on(async {
        let urls: Vec<async_nats::ServerAddr> =
            urls.split(',').map(|u| u.parse().unwrap()).collect();
        let client = async_nats::connect(urls).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(STREAM).await.unwrap();
        let subject = format!("{STREAM}.{tenant}");
        let since = since
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let since = i128::try_from(since).unwrap();
        let mut out = Vec::new();
        let mut next = 1;
        while let Ok(message) = stream
            .get_first_raw_message_by_subject(&subject, next)
            .await
        {
            next = message.sequence + 1;
            if message.time.unix_timestamp_nanos() < since {
                continue;
            }
            let record: rmpv::Value = rmpv::decode::read_value(&mut &message.payload[..]).unwrap();
            let field = |name: &str| {
                record
                    .as_map()
                    .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
                    .map(|(_, v)| v.clone())
            };
            let node = field("node")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap();
            let takeover = field("ops")
                .and_then(|v| v.as_array().map(Vec::is_empty))
                .unwrap();
            out.push((node, takeover));
        }
        out
    })
}

/// The trial's fault, while the load runs. Returns what it checked on the side.
fn fault(cluster: &mut Cluster, kind: usize, rng: &mut XorShift, load: &Load) -> Vec<String> {
    let mut problems = Vec::new();
    match kind {
        0 => {
            let i = (rng.next() % NODES as u64) as usize;
            eprintln!("  kill -9 of node {}", cluster.nodes[i].name);
            cluster.kill_node(i);
            load.wait_for_acks(30, "after a node was killed");
            std::thread::sleep(LEASE_TTL);
            cluster.start_node(i);
        }
        1 => {
            let j = (rng.next() % 3) as usize;
            eprintln!("  kill of nats-server {j}");
            cluster.js.kill(j);
            load.wait_for_acks(30, "after a nats-server was killed");
            cluster.js.restart(j);
        }
        _ => {
            let tenant = TENANTS[(rng.next() % TENANTS.len() as u64) as usize];
            let owner = cluster.owner(tenant).expect("every tenant has an owner");
            let i = cluster.nodes.iter().position(|n| n.name == owner).unwrap();
            eprintln!("  SIGSTOP of {owner}, the owner of {tenant}");
            let paused_at = SystemTime::now();
            cluster.signal_node(i, "-STOP");
            let deadline = Instant::now() + LEASE_TTL * 10;
            let new_owner = loop {
                match cluster.owner(tenant) {
                    Some(o) if o != owner => break o,
                    _ => {
                        assert!(
                            Instant::now() < deadline,
                            "{tenant} never moved off {owner}"
                        );
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            };
            load.wait_for_acks(30, "after the owner was paused");
            cluster.signal_node(i, "-CONT");
            load.wait_for_acks(30, "after the owner woke up");
            // The paused node wrote nothing after the new owner's takeover.
            let records = record_nodes_since(&cluster.js.urls(), tenant, paused_at);
            let takeover = records
                .iter()
                .position(|(node, empty)| *node == new_owner && *empty);
            match takeover {
                None => problems.push(format!(
                    "{new_owner} took {tenant} without a takeover record"
                )),
                Some(at) => {
                    if let Some((node, _)) = records[at..].iter().find(|(n, _)| *n == owner) {
                        problems.push(format!(
                            "{node} appended for {tenant} after {new_owner}'s takeover"
                        ));
                    }
                }
            }
            eprintln!(
                "  {tenant} moved from {owner} to {new_owner}; {} records since",
                records.len()
            );
        }
    }
    problems
}

#[test]
fn a_cluster_loses_no_acked_message_when_a_node_a_server_or_an_owner_fails() {
    let seed = crash_seed();
    eprintln!("cluster trials seed {seed} (TENANTRY_CRASH_SEED={seed} replays it)");
    let mut rng = XorShift(seed);
    let mut cluster = Cluster::start();
    let mut all_acks: Vec<Ack> = Vec::new();
    let trials = cluster_trials();
    for trial in 0..trials {
        let kind = trial % 3;
        let load = Load::start(&cluster, &format!("r{trial}"), rng.next() | 1);
        load.wait_for_acks(20, "before the fault");
        let side = fault(&mut cluster, kind, &mut rng, &load);
        load.wait_for_acks(20, "after the fault");
        let (acks, problems) = load.finish();
        eprintln!(
            "trial {trial} ({}): {} acks",
            ["node kill", "server kill", "owner pause"][kind],
            acks.len()
        );
        all_acks.extend(acks);
        let fresh = tempfile::tempdir().unwrap();
        let spec = LogSpec::JetStream {
            url: cluster.js.urls(),
            stream: STREAM,
            replicas: 3,
        };
        let report = check(fresh.path(), &all_acks, &spec);
        let passed = report.lost.is_empty()
            && report.problems.is_empty()
            && problems.is_empty()
            && side.is_empty();
        if !passed {
            // The streams and the nodes' data dirs are the evidence: they stay.
            eprintln!("kept for a post-mortem: {}", cluster.keep_dirs());
        }
        assert!(
            passed,
            "trial {trial} seed {seed}: {report}; clients: {problems:#?}; {side:?}"
        );
    }
    reads_agree(&cluster, &all_acks);
    // The offline commands read the stream while the cluster runs.
    for tenant in TENANTS {
        let verified = crate::support::verify_tenant(&cluster.config_path(), tenant);
        assert!(
            verified.status.success(),
            "verify --tenant {tenant} beside the running cluster: {}{}",
            String::from_utf8_lossy(&verified.stdout),
            String::from_utf8_lossy(&verified.stderr)
        );
    }
}

/// A session's events read on every node are the same (the followers apply the stream).
fn reads_agree(cluster: &Cluster, acks: &[Ack]) {
    let ack = acks.last().expect("acks");
    let path = format!(
        "/api/v1/sessions/{}/events?from_seq={}",
        ack.session, ack.seq
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bodies: Vec<Value> = cluster
            .nodes
            .iter()
            .map(|n| n.process.as_ref().unwrap().get_as(ack.tenant, &path).json())
            .collect();
        if bodies.windows(2).all(|w| w[0] == w[1]) {
            let first = &bodies[0]["events"][0];
            assert_eq!(
                first["data"]["message_id"],
                ack.message_id.as_str(),
                "{first}"
            );
            return;
        }
        let summary: Vec<String> = bodies
            .iter()
            .map(|b| match b["events"].as_array() {
                Some(events) => format!(
                    "{} events, last seq {}, next_from_seq {}",
                    events.len(),
                    events.last().map_or(Value::Null, |e| e["seq"].clone()),
                    b["next_from_seq"]
                ),
                None => b.to_string(),
            })
            .collect();
        assert!(
            Instant::now() < deadline,
            "nodes disagree on {path} of {}: {summary:#?}",
            ack.tenant
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
