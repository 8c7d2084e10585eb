//! Set-up shared by the integration tests: the one launcher of `tenantry serve`
//! ([`Serve`] → [`ServeProcess`]), the one launcher of `nats-server` ([`Nats`]; with
//! JetStream, one node or a cluster, on the shipped jetstream block: [`JetStream`]), API tokens
//! signed with the key every test server verifies ([`SIGNING_KEY`]), a small HTTP client
//! ([`Reply`], [`agent`]) and the crash tests' seeds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod nats;
pub use nats::{
    has_subscription, jetstream_server_binary, shipped_jetstream_block, tokio_runtime, JetStream,
    Nats, JETSTREAM_DEPLOY_CONFIG,
};

/// The HS256 key every test server verifies API tokens with (at least 32 bytes).
pub const SIGNING_KEY: &str = "it-signing-key-0123456789abcdef0123456789";

/// Where a server's NATS ingress subscribes: the nats-servers and the subjects' prefix.
struct NatsIngress {
    /// The client ports of its `[nats] url` (a comma-separated list of URLs).
    ports: Vec<u16>,
    /// `{subject_prefix}.ingress.`, the start of its subscription's subject.
    subjects: String,
}

impl NatsIngress {
    fn of(config: &str) -> NatsIngress {
        let config: toml::Value = toml::from_str(config).unwrap_or_else(|e| panic!("config: {e}"));
        let field = |name| config["nats"].get(name).and_then(|v| v.as_str());
        let port = |url: &str| {
            url.trim()
                .trim_end_matches('/')
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        };
        let ports = field("url")
            .unwrap_or_default()
            .split(',')
            .filter_map(port)
            .collect();
        let prefix = field("subject_prefix").unwrap_or("greentic.messaging");
        NatsIngress {
            ports,
            subjects: format!("{prefix}.ingress."),
        }
    }
}

/// How long a starting server may go without logging a line before the test fails.
const START_LINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The claims of a valid API token for `tenant` in env `prod`, valid for 10 minutes.
pub fn claims(tenant: &str) -> Value {
    let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
    json!({"tenant": tenant, "env": "prod", "iss": "tenantry", "aud": "tenantry-api",
           "sub": "it", "iat": now, "exp": now + 600})
}

/// `claims` signed with HS256 and [`SIGNING_KEY`].
pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(SIGNING_KEY.as_bytes()),
    )
    .unwrap()
}

/// A valid API token for `tenant` (env `prod`).
pub fn token(tenant: &str) -> String {
    sign(&claims(tenant))
}

/// `Bearer <token>` for `tenant`.
pub fn bearer(tenant: &str) -> String {
    format!("Bearer {}", token(tenant))
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

/// The shipped config.toml without its `listen` and `metrics_listen` lines (8080 and 9464 may
/// be taken on a test machine, and tests run in parallel); [`Serve`] puts port 0 in their place.
pub fn shipped_config() -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")).unwrap();
    let kept: Vec<&str> = shipped
        .lines()
        .filter(|l| !l.starts_with("listen = ") && !l.starts_with("metrics_listen = "))
        .collect();
    assert_eq!(
        kept.len() + 2,
        shipped.lines().count(),
        "config.toml sets server.listen and server.metrics_listen"
    );
    kept.join("\n") + "\n"
}

/// `config` with `keys` added to its `[section]` (the section is appended if it has none).
/// A section may appear once only: a second header would make the TOML invalid anyway, and
/// commented examples (`# [nats]`) do not count.
pub fn with_section_keys(config: &str, section: &str, keys: &str) -> String {
    let header = format!("[{section}]");
    let at: Vec<usize> = config
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .map(|(i, _)| i)
        .collect();
    assert!(
        at.len() <= 1,
        "{header} twice in the test config:\n{config}"
    );
    let mut lines: Vec<&str> = config.lines().collect();
    match at.first() {
        Some(&i) => lines.insert(i + 1, keys.trim_end()),
        None => {
            lines.push(&header);
            lines.push(keys.trim_end());
        }
    }
    lines.join("\n") + "\n"
}

/// A config of one tenant, acme (env prod, team support, channel slack), with its data in
/// `data` (listeners are [`Serve`]'s to add).
pub fn acme_config(data: &Path) -> String {
    format!(
        "[server]\ndata_dir = \"{}\"\n\
         [auth]\nissuer = \"tenantry\"\naudience = \"tenantry-api\"\n\
         [tenants.acme]\nname = \"ACME\"\nenvironments = [\"prod\"]\n\
         [tenants.acme.teams.support]\nflow = \"flows/acme_support.yaml\"\n\
         [tenants.acme.teams.support.channels.slack]\nprovider = \"messaging-slack\"\n",
        data.display()
    )
}

/// Copies the tree `from` to `to` (a data dir, as a backup or restore would).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `tenantry verify --tenant TENANT --config CONFIG`, run to its exit.
pub fn verify_tenant(config: &Path, tenant: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["verify", "--tenant", tenant, "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// A free TCP port on the loopback interface (free when asked; the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `tenantry` binary with `args`, run by `sh` under `umask 022` (the common default) in
/// `dir`, so that file modes are tested against the umask that would leave files
/// world-readable, whatever the test runner's umask is.
pub fn tenantry_under_umask_022(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .current_dir(dir);
    cmd
}

/// Where a [`Serve`] runs: a fresh temp dir with the flows, or a dir the test keeps.
enum ServeDir {
    Fresh,
    Existing(PathBuf),
}

/// How to start one `tenantry serve`: a config (text, or [`Serve::shipped`]) written to
/// `config.toml` in its dir (a fresh one with the shipped flows, or [`Serve::in_dir`]), the
/// API on port 0 and the metrics listener on port 0 (unless [`Serve::metrics_listen`] says
/// otherwise), `TENANTRY_SIGNING_KEY` = [`SIGNING_KEY`], `RUST_LOG=info`, and no
/// `TENANTRY_TENANT_ID`, `TENANTRY_CONFIG`, `TENANTRY_MASTER_KEY` or fault switch
/// (`TENANTRY_FAULT_ACK_BEFORE_FLUSH`) from the test's own environment; [`Serve::env`] adds
/// variables after that.
pub struct Serve {
    config: String,
    dir: ServeDir,
    metrics_listen: String,
    log: String,
    signing_key: Option<String>,
    env: Vec<(String, String)>,
    umask_022: bool,
    seed: Option<Seed>,
}

/// What writes a server's `data/` dir before it starts.
type Seed = Box<dyn FnOnce(&Path)>;

impl Serve {
    /// With this config text; it must not set `server.listen` or `server.metrics_listen`.
    pub fn config(text: &str) -> Serve {
        Serve {
            config: text.to_owned(),
            dir: ServeDir::Fresh,
            metrics_listen: "127.0.0.1:0".to_owned(),
            log: "info".to_owned(),
            signing_key: Some(SIGNING_KEY.to_owned()),
            env: Vec::new(),
            umask_022: false,
            seed: None,
        }
    }

    /// With the shipped config.toml (see [`shipped_config`]).
    pub fn shipped() -> Serve {
        Serve::config(&shipped_config())
    }

    /// `keys` (TOML lines) added to the config's `[section]`, e.g. `server`, `nats`, `runtime`.
    pub fn section(mut self, section: &str, keys: &str) -> Serve {
        self.config = with_section_keys(&self.config, section, keys);
        self
    }

    /// `server.metrics_listen`, for the tests of the metrics listener itself.
    pub fn metrics_listen(mut self, addr: &str) -> Serve {
        addr.clone_into(&mut self.metrics_listen);
        self
    }

    /// `RUST_LOG` of the server.
    pub fn log(mut self, filter: &str) -> Serve {
        filter.clone_into(&mut self.log);
        self
    }

    /// `TENANTRY_SIGNING_KEY` of the server (none: unset), for the tests of the key itself.
    pub fn signing_key(mut self, key: Option<&str>) -> Serve {
        self.signing_key = key.map(str::to_owned);
        self
    }

    /// An environment variable of the server.
    pub fn env(mut self, name: &str, value: &str) -> Serve {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs in `dir` (which must hold what the config names, e.g. `flows/`) instead of a fresh
    /// temp dir; the config is (re)written there.
    pub fn in_dir(mut self, dir: &Path) -> Serve {
        self.dir = ServeDir::Existing(dir.to_owned());
        self
    }

    /// Lets `seed` write into the server's `data/` dir before it starts.
    pub fn seed(mut self, seed: impl FnOnce(&Path) + 'static) -> Serve {
        self.seed = Some(Box::new(seed));
        self
    }

    /// Runs the binary under `umask 022` (see [`tenantry_under_umask_022`]).
    pub fn umask_022(mut self) -> Serve {
        self.umask_022 = true;
        self
    }

    /// Spawns the server and waits until it serves: its `listening on` line, and with a
    /// `[nats]` section also its `NATS ingress subscribed` line.
    pub fn start(self) -> ServeProcess {
        let mut process = self.spawn();
        process.wait_until_serving();
        process
    }

    /// Spawns the server without waiting for anything (for servers that may refuse to start).
    pub fn spawn(self) -> ServeProcess {
        let (mut command, temp, dir, nats) = self.command();
        let (child, lines) = spawn_with_lines(command.stdin(Stdio::null()).stdout(Stdio::null()));
        ServeProcess {
            child: Some(child),
            lines,
            started: Vec::new(),
            nats,
            addr: String::new(),
            metrics: None,
            dir,
            temp,
            agent: agent(Duration::from_secs(60)),
        }
    }

    /// Runs the server to its exit (for servers that must refuse to start): its dir and output.
    pub fn output(self) -> (tempfile::TempDir, Output) {
        let (mut command, temp, _, _) = self.command();
        let temp = temp.expect("Serve::output runs in a fresh dir");
        (temp, command.output().unwrap())
    }

    /// The config.toml it writes: the config with the listeners added to `[server]`.
    pub fn config_text(&self) -> String {
        let listeners = format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"{}\"",
            self.metrics_listen
        );
        with_section_keys(&self.config, "server", &listeners)
    }

    /// Writes [`Serve::config_text`] to `config.toml` in the [`Serve::in_dir`] dir (for the
    /// offline commands run before the server); its path.
    pub fn write_config(&self) -> PathBuf {
        let ServeDir::Existing(dir) = &self.dir else {
            panic!("Serve::write_config needs Serve::in_dir");
        };
        let path = dir.join("config.toml");
        std::fs::write(&path, self.config_text()).unwrap();
        path
    }

    /// The command, its temp dir (if fresh), its dir, and where its NATS ingress subscribes.
    fn command(
        self,
    ) -> (
        Command,
        Option<tempfile::TempDir>,
        PathBuf,
        Option<NatsIngress>,
    ) {
        let config = self.config_text();
        let (temp, dir) = match self.dir {
            ServeDir::Fresh => {
                let temp = dir_with_flows();
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
            ServeDir::Existing(dir) => (None, dir),
        };
        let nats = config
            .lines()
            .any(|l| l.trim() == "[nats]")
            .then(|| NatsIngress::of(&config));
        std::fs::write(dir.join("config.toml"), config).unwrap();
        if let Some(seed) = self.seed {
            seed(&dir.join("data"));
        }
        let args = ["serve", "--config", "config.toml"];
        let mut command = if self.umask_022 {
            tenantry_under_umask_022(&dir, &args)
        } else {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tenantry"));
            command.args(args).current_dir(&dir);
            command
        };
        match &self.signing_key {
            Some(key) => command.env("TENANTRY_SIGNING_KEY", key),
            None => command.env_remove("TENANTRY_SIGNING_KEY"),
        };
        command
            .env("RUST_LOG", &self.log)
            .env_remove("TENANTRY_TENANT_ID")
            .env_remove("TENANTRY_CONFIG")
            .env_remove("TENANTRY_MASTER_KEY")
            .env_remove("TENANTRY_FAULT_ACK_BEFORE_FLUSH")
            .envs(self.env);
        (command, temp, dir, nats)
    }
}

/// Spawns `command` with its stderr piped; every line of it arrives on the receiver (a thread
/// drains it, so the server never blocks on a full pipe).
fn spawn_with_lines(command: &mut Command) -> (Child, mpsc::Receiver<String>) {
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

/// A running `tenantry serve`; killed when dropped (a failing test leaves no server behind).
pub struct ServeProcess {
    child: Option<Child>,
    /// Every line of its stderr not yet taken (those up to serving are in `started`).
    pub lines: mpsc::Receiver<String>,
    /// The lines it logged until it served.
    pub started: Vec<String>,
    /// With NATS ingress, where it subscribes.
    nats: Option<NatsIngress>,
    /// The API's address (`host:port`) from the `listening on` line.
    pub addr: String,
    /// The metrics listener's address from the `metrics on http://ADDR/metrics` line.
    pub metrics: Option<String>,
    /// The dir it runs in (`config.toml`, `data/`, `flows/`).
    pub dir: PathBuf,
    temp: Option<tempfile::TempDir>,
    agent: ureq::Agent,
}

impl ServeProcess {
    fn wait_until_serving(&mut self) {
        let (mut addr, mut subscribed) = (None, self.nats.is_none());
        while addr.is_none() || !subscribed {
            let line = self
                .lines
                .recv_timeout(START_LINE_TIMEOUT)
                .unwrap_or_else(|_| {
                    panic!("the server did not start: {:#?}", self.started);
                });
            if let Some((_, rest)) = line.split_once("listening on ") {
                addr = rest.split_whitespace().next().map(str::to_owned);
            }
            if let Some((_, rest)) = line.split_once("metrics on http://") {
                self.metrics = rest.split_once("/metrics").map(|(a, _)| a.to_owned());
            }
            subscribed |= line.contains("NATS ingress subscribed");
            self.started.push(line);
        }
        self.addr = addr.unwrap_or_default();
        if let Some(ingress) = &self.nats {
            self.wait_until_nats_has_the_subscription(ingress);
        }
    }

    /// The `NATS ingress subscribed` line means the subscription was written to the socket:
    /// nats-server may read it a moment later, and a request sent in that moment is answered
    /// "no responders" (docs/nats.md). Waits until the server lists it (`/connz`), so that every
    /// test may send at once; servers the tests did not start are not asked.
    fn wait_until_nats_has_the_subscription(&self, ingress: &NatsIngress) {
        let NatsIngress { ports, subjects } = ingress;
        let name = format!("tenantry pid {}", self.pid());
        let deadline = Instant::now() + START_LINE_TIMEOUT;
        loop {
            let found: Vec<Option<bool>> = ports
                .iter()
                .map(|&port| has_subscription(port, &name, subjects))
                .collect();
            if found.iter().all(Option::is_none) || found.contains(&Some(true)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no nats-server of {ports:?} lists the ingress subscription of `{name}` \
                 within {START_LINE_TIMEOUT:?}: {:#?}",
                self.started
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The process, while it has not been handed off.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the server process was handed off")
    }

    /// Hands the process to whoever will kill it (the dir stays with `self`).
    pub fn into_child(mut self) -> Child {
        self.child.take().unwrap()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap()
    }

    /// Sends SIGTERM (what an operator's `kill` and systemd send).
    pub fn sigterm(&self) {
        let kill = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(kill.success(), "kill -TERM {}", self.pid());
    }

    /// SIGTERM, then waits for the exit; the caller judges the status.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.child().wait().unwrap()
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes the server's temp dir (with its data) for after the server is gone; a fresh empty
    /// one takes its place.
    pub fn take_dir(&mut self) -> tempfile::TempDir {
        let fresh = tempfile::tempdir().unwrap();
        self.temp.replace(fresh).expect("a server in a fresh dir")
    }

    /// For a server that must refuse to start: its exit status and stderr once it has exited
    /// within `timeout`, or `None` if it still runs.
    pub fn exit_within(&mut self, timeout: Duration) -> Option<Output> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child().try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The pipe closes with the process: the reader thread ends the channel.
        let stderr: String = self.lines.iter().map(|l| l + "\n").collect();
        Some(Output {
            status,
            stdout: Vec::new(),
            stderr: stderr.into_bytes(),
        })
    }

    /// Waits (20 s at most between lines) for a line containing `needle`; returns the lines up
    /// to and with it.
    pub fn wait_for_line(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(20)) {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return seen;
            }
        }
        panic!("no line with {needle:?} in {seen:#?}");
    }

    /// `http://ADDR` of the API.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://ADDR` of the metrics listener.
    pub fn metrics_base(&self) -> String {
        let addr = self.metrics.as_deref();
        format!("http://{}", addr.expect("a `metrics on` line"))
    }

    /// The URL of `path` on the API.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The HTTP client of this server's helpers (statuses are replies, not errors; 60 s).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// GET `path` with `headers`.
    pub fn get(&self, path: &str, headers: Headers) -> Reply {
        let mut request = self.agent.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.call())
    }

    /// POST the JSON `body` to `path` with `headers`.
    pub fn post(&self, path: &str, headers: Headers, body: &str) -> Reply {
        let mut request = self
            .agent
            .post(self.url(path))
            .header("Content-Type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send(body))
    }

    /// GET as `tenant` with a valid token and `X-Tenant-ID`.
    pub fn get_as(&self, tenant: &str, path: &str) -> Reply {
        let bearer = bearer(tenant);
        self.get(path, &[("Authorization", &bearer), ("X-Tenant-ID", tenant)])
    }

    /// POST a message as `tenant` with a valid token and `X-Tenant-ID`.
    pub fn post_as(&self, tenant: &str, body: &Value) -> Reply {
        let bearer = bearer(tenant);
        let headers = [("Authorization", bearer.as_str()), ("X-Tenant-ID", tenant)];
        self.post("/api/v1/messages", &headers, &body.to_string())
    }

    /// GET `/metrics` from the metrics listener.
    pub fn get_metrics(&self) -> Reply {
        read(
            self.agent
                .get(format!("{}/metrics", self.metrics_base()))
                .call(),
        )
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Request headers: (name, value) pairs, repeated names allowed.
pub type Headers<'a> = &'a [(&'a str, &'a str)];

/// An HTTP client that hands back every status as a reply, with a global `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.body))
    }

    /// Asserts 200; the JSON body.
    #[track_caller]
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        self.json()
    }

    /// Asserts the status and the error shape; returns the code.
    #[track_caller]
    pub fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        let code = body["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_owned();
        assert!(
            body["error"]["message"].as_str().is_some(),
            "error.message: {body}"
        );
        code
    }
}

/// Reads a response whole (no size limit: exports are large).
pub fn read(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response
        .body_mut()
        .with_config()
        .limit(u64::MAX)
        .read_to_string()
        .unwrap();
    Reply {
        status,
        retry_after,
        body,
    }
}

/// Crash trials per run: 20, or `TENANTRY_CRASH_TRIALS` for long runs offline.
pub fn crash_trials() -> usize {
    std::env::var("TENANTRY_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Trials of the JetStream (cluster) crash tests: `TENANTRY_CLUSTER_TRIALS`, default 4 (one of
/// them restarts the node: see the crash test's `RESTART_EVERY`).
pub fn cluster_trials() -> usize {
    std::env::var("TENANTRY_CLUSTER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
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
