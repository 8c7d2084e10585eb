//! Set-up shared by the integration tests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Spawns `command` (a `tenantry serve`) with its stderr piped; every line of it arrives on the
/// receiver (a thread drains it, so the server never blocks on a full pipe).
pub fn spawn_with_lines(command: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = command.stderr(Stdio::piped()).spawn().unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// Waits for the server's `listening on ADDR` line (and with `nats`, its `NATS ingress
/// subscribed` line, in either order); returns ADDR and every line seen.
pub fn wait_until_serving(
    lines: &mpsc::Receiver<String>,
    nats: bool,
    timeout: Duration,
) -> (String, Vec<String>) {
    let (mut addr, mut subscribed, mut seen) = (None, !nats, Vec::new());
    while addr.is_none() || !subscribed {
        let line = lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("the server did not start: {seen:#?}"));
        if let Some((_, rest)) = line.split_once("listening on ") {
            addr = rest.split_whitespace().next().map(str::to_owned);
        }
        subscribed |= line.contains("NATS ingress subscribed");
        seen.push(line);
    }
    (addr.unwrap_or_default(), seen)
}

/// A temp dir holding copies of the shipped flow files under `flows/` (the config is the
/// caller's to write).
pub fn dir_with_flows() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    for f in ["acme_support.yaml", "bigcorp_helpdesk.yaml"] {
        std::fs::copy(root.join("flows").join(f), dir.path().join("flows").join(f)).unwrap();
    }
    dir
}

/// The address of the server's `metrics on http://ADDR/metrics` line among `lines` (it comes
/// before `listening on`, so [`wait_until_serving`]'s lines hold it).
pub fn metrics_addr(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|line| line.split_once("metrics on http://"))
        .and_then(|(_, rest)| rest.split_once("/metrics"))
        .map(|(addr, _)| addr.to_owned())
        .unwrap_or_else(|| panic!("no `metrics on` line in {lines:#?}"))
}

/// The shipped config.toml, with the API and metrics listeners on port 0 (8080 and 9464 may be
/// taken on a test machine, and tests run in parallel).
pub fn shipped_config_on_port_0() -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")).unwrap();
    assert!(
        shipped.contains("127.0.0.1:9464"),
        "config.toml sets metrics_listen"
    );
    shipped
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9464", "127.0.0.1:0")
}

/// A free TCP port on the loopback interface (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
        // Debian installs it in /usr/sbin, which is not on every user's PATH.
        let binary = if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let mut command = Command::new(binary);
        if let Some(config) = config {
            command.arg("-c").arg(config);
        }
        let child = command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is installed (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// Crash trials per run: 20, or `TENANTRY_CRASH_TRIALS` for long runs offline.
pub fn crash_trials() -> usize {
    std::env::var("TENANTRY_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// A crash test's seed: `TENANTRY_CRASH_SEED` to replay a printed one, else from the clock.
/// Never zero, which would stall [`XorShift`].
pub fn crash_seed() -> u64 {
    std::env::var("TENANTRY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1
}

/// A small deterministic generator; the seed is printed so a failure can be replayed.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
