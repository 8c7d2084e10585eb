//! `--server URL`: `replay`, `usage`, `export` and `verify --tenant` through a running server's
//! HTTP API instead of the data dir (which a running server holds), with a token from `--token`
//! or `TENANTRY_TOKEN`, printing what they print offline (`verify`: as much as the server tells,
//! [`verify`]). Also the hint an offline command gives when a server holds the data dir.
//!
//! Through the server a command sees what the token may see: the token's env only (an `--env`
//! that differs is refused), and its team when the token is team-bound. `replay` reads the
//! server's audit export (JSONL with the stored bodies) and formats each event exactly as
//! offline; `export` writes the server's export as it comes.
//!
//! The client speaks plain HTTP only (ureq without TLS, to keep the dependency small): reach a
//! remote server through a tunnel or a proxy on this host.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use crate::audit::export::{sidecar_path, ExportFormat};
use crate::audit::record::{decode_base64, parse_hash, EventLine, Manifest, TYPE_MANIFEST};
use crate::config::Config;
use crate::events::log::StoredEvent;
use crate::tenancy::{EnvId, TeamId, TenantId};

/// Time to connect to the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the server to start answering (an export's first chunk comes after its slot).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most bytes of a usage answer read (rows per team, channel or day: far below this).
const USAGE_BODY_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Most bytes of an error response read (its JSON body is small).
const ERROR_BODY_BYTES_MAX: u64 = 64 * 1024;

/// The flags every command that can go through the server shares.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ServerArgs {
    /// Go through the HTTP API of the running server at URL (http://HOST:PORT) instead of
    /// reading the data dir, which a running server holds. Sees what the token may see: its env
    /// (and team). Needs a token: --token or TENANTRY_TOKEN.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The API token for --server (make one with `tenantry token --tenant T --env E`).
    #[arg(
        long,
        value_name = "JWT",
        env = "TENANTRY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// A server to go through, for one tenant.
pub struct Remote {
    base: String,
    token: String,
    tenant: TenantId,
    agent: ureq::Agent,
}

impl Remote {
    /// The server `args` name, for `tenant`; `None` without `--server`. Prints the note that the
    /// command goes through it.
    pub fn from_args(args: &ServerArgs, tenant: &TenantId) -> anyhow::Result<Option<Remote>> {
        let Some(url) = &args.server else {
            return Ok(None);
        };
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") {
            bail!(
                "--server {url}: give an http:// URL (e.g. http://127.0.0.1:8080); this client \
                 speaks plain HTTP only, so reach an https server through a tunnel"
            );
        }
        let token = args.token.clone().filter(|t| !t.trim().is_empty());
        let Some(token) = token else {
            bail!(
                "--server needs an API token: give --token or set TENANTRY_TOKEN (make one with \
                 `tenantry token --tenant {tenant} --env ENV`)"
            );
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .build()
            .into();
        eprintln!("note: reading through the server at {base}");
        Ok(Some(Remote {
            base: base.to_owned(),
            token: token.trim().to_owned(),
            tenant: tenant.clone(),
            agent,
        }))
    }

    /// The tenant this goes through the server for.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// GET `path` (with its query) as the tenant, with `X-Team-ID: team` when given; the
    /// response when it is 200, else an error saying what the server answered.
    fn get(
        &self,
        path: &str,
        team: Option<&TeamId>,
    ) -> anyhow::Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {}", self.token))
            .header("X-Tenant-ID", self.tenant.as_str());
        if let Some(team) = team {
            request = request.header("X-Team-ID", team.as_str());
        }
        let mut response = request
            .call()
            .with_context(|| format!("cannot reach the server at {}", self.base))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(response);
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(ERROR_BODY_BYTES_MAX)
            .read_to_string()
            .unwrap_or_default();
        Err(self.refusal(status, &body))
    }

    /// The error for a refused request: the server's code and message, and what to do.
    fn refusal(&self, status: u16, body: &str) -> anyhow::Error {
        let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v["error"][name].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let (code, message) = (field("code"), field("message"));
        let hint = match (status, code.as_str()) {
            (401, _) => format!(
                "; check --token or TENANTRY_TOKEN (a fresh one: `tenantry token --tenant {} \
                 --env ENV`)",
                self.tenant
            ),
            (403, "tenant_mismatch") => {
                format!("; the token is not for tenant {}", self.tenant)
            }
            (403, "team_scoped") => format!(
                "; make a token without a team (`tenantry token --tenant {} --env ENV`)",
                self.tenant
            ),
            (404, "unknown_tenant") => "; this server does not serve the tenant".to_owned(),
            (404, "not_found") => "; is this URL a tenantry server of this version?".to_owned(),
            _ => String::new(),
        };
        if code.is_empty() {
            anyhow!("the server at {} answered {status}{hint}", self.base)
        } else {
            anyhow!(
                "the server at {} refused: {status} {code}: {message}{hint}",
                self.base
            )
        }
    }

    /// `GET /api/v1/usage?by=BY`: the body (`tenant`, `env`, `by`, `usage`).
    pub fn usage(&self, by: &str) -> anyhow::Result<serde_json::Value> {
        let mut response = self.get(&format!("/api/v1/usage?by={by}"), None)?;
        let text = response
            .body_mut()
            .with_config()
            .limit(USAGE_BODY_BYTES_MAX)
            .read_to_vec()
            .context("reading the server's usage answer")?;
        serde_json::from_slice(&text).context("the server's usage answer is not JSON")
    }

    /// Refuses `env` unless it is the token's (the only env the server shows it).
    pub fn require_env(&self, env: &EnvId) -> anyhow::Result<()> {
        let answer = self.usage("team")?;
        let token_env = answer["env"].as_str().unwrap_or_default();
        if token_env != env.as_str() {
            bail!(
                "--env {env}: through the server a command sees the token's env only, which is \
                 {token_env}; use a token for env {env} (`tenantry token --tenant {} --env \
                 {env}`) or leave --env out",
                self.tenant
            );
        }
        Ok(())
    }

    /// `GET /api/v1/audit/export`: the body as it streams.
    pub fn export(
        &self,
        format: ExportFormat,
        since: Option<u64>,
        until: Option<u64>,
        team: Option<&TeamId>,
    ) -> anyhow::Result<impl Read> {
        let mut query = format!("/api/v1/audit/export?format={}", format.name());
        if let Some(since) = since {
            query.push_str(&format!("&since={since}"));
        }
        if let Some(until) = until {
            query.push_str(&format!("&until={until}"));
        }
        Ok(self.get(&query, team)?.into_body().into_reader())
    }
}

/// A stored event from one line of a JSONL export (which carries the stored body): the body
/// decoded, exactly the event the log holds, with its chain hashes.
pub fn stored_event(line: &EventLine) -> anyhow::Result<StoredEvent> {
    let at = || format!("the server's export, tenant_seq {}", line.tenant_seq);
    let body = line
        .body
        .as_deref()
        .and_then(decode_base64)
        .with_context(|| format!("{}: no readable body", at()))?;
    let decoded = crate::events::codec::decode_body_with(&body, None).with_context(at)?;
    let mut event = decoded.event;
    // The body is sealed and this side holds no key: the server's line carries the fields it
    // opened, unless the session was erased there.
    let erased = decoded.sealing == crate::events::codec::Sealing::Erased
        && line.data.get(crate::events::seal::ERASED_FIELD) == Some(&serde_json::Value::Bool(true));
    if decoded.sealing == crate::events::codec::Sealing::Erased && !erased {
        crate::events::seal::overlay_json(&mut event.kind, &line.data);
    }
    let prev_hash = parse_hash(&line.prev_hash).with_context(|| format!("{}: prev_hash", at()))?;
    let hash = parse_hash(&line.hash).with_context(|| format!("{}: hash", at()))?;
    Ok(StoredEvent {
        event,
        erased,
        prev_hash,
        hash,
    })
}

/// Reads a JSONL export: every event line to `each`, then the manifest (the last line), which
/// must be there (else the export was cut short).
pub fn read_jsonl(
    body: impl Read,
    each: &mut dyn FnMut(&EventLine) -> anyhow::Result<()>,
) -> anyhow::Result<Manifest> {
    let mut manifest = None;
    for line in BufReader::new(body).lines() {
        let line = line.context("reading the server's export (it ended early)")?;
        if line.is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).context("a line of the server's export is not JSON")?;
        if value["type"] == TYPE_MANIFEST {
            manifest = Some(serde_json::from_value(value).context("the export's manifest")?);
        } else {
            each(&serde_json::from_value(value).context("a record of the server's export")?)?;
        }
    }
    manifest.context("the server's export ended without its manifest (cut short)")
}

/// Writes the server's export `body` to `out` (a file with a manifest sidecar, as offline, or
/// stdout); the manifest when the format has one (JSONL).
pub fn write_export(
    mut body: impl Read,
    format: ExportFormat,
    out: Option<&Path>,
) -> anyhow::Result<Option<Manifest>> {
    let mut manifest_line = Vec::new();
    let mut write_all = |w: &mut dyn Write| -> anyhow::Result<()> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = body
                .read(&mut buf)
                .context("reading the server's export (it ended early)")?;
            if n == 0 {
                return Ok(());
            }
            let chunk = buf.get(..n).unwrap_or_default();
            w.write_all(chunk).context("writing the export")?;
            remember_last_line(&mut manifest_line, chunk);
        }
    };
    match out {
        Some(path) => {
            let sidecar = sidecar_path(path);
            match std::fs::remove_file(&sidecar) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context(format!("removing {}", sidecar.display())),
            }
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            write_all(&mut w)?;
            let file = w
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("writing {}", path.display()))?;
            file.sync_all()
                .with_context(|| format!("syncing {}", path.display()))?;
            let manifest = manifest_of(format, &manifest_line)?;
            if let Some(manifest) = &manifest {
                let mut text = serde_json::to_string(manifest)?;
                text.push('\n');
                std::fs::write(&sidecar, text)
                    .with_context(|| format!("writing {}", sidecar.display()))?;
            }
            Ok(manifest)
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            write_all(&mut w)?;
            w.flush().context("writing stdout")?;
            manifest_of(format, &manifest_line)
        }
    }
}

/// Keeps the last complete line seen so far in `last` (the manifest, at the end of a JSONL
/// export), given the stream chunk by chunk.
fn remember_last_line(last: &mut Vec<u8>, chunk: &[u8]) {
    if last.ends_with(b"\n") {
        last.clear();
    }
    for part in chunk.split_inclusive(|&b| b == b'\n') {
        if last.ends_with(b"\n") {
            last.clear();
        }
        last.extend_from_slice(part);
    }
}

fn manifest_of(format: ExportFormat, last_line: &[u8]) -> anyhow::Result<Option<Manifest>> {
    if format != ExportFormat::Jsonl {
        return Ok(None);
    }
    let manifest: Manifest = serde_json::from_slice(last_line)
        .context("the server's export ended without its manifest (cut short)")?;
    Ok(Some(manifest))
}

/// The URL of the config's server (`server.listen`; a wildcard address reads as 127.0.0.1),
/// or a placeholder when it listens on port 0.
pub fn server_url(config: &Config) -> String {
    let listen = config.server().listen;
    if listen.port() == 0 {
        return "http://HOST:PORT (the address in the server's `listening on` line)".to_owned();
    }
    let ip = if listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        listen.ip().to_string()
    };
    if listen.is_ipv6() && !listen.ip().is_unspecified() {
        format!("http://[{ip}]:{}", listen.port())
    } else {
        format!("http://{ip}:{}", listen.port())
    }
}

/// What an offline command says when a server holds the data dir: how to go through it.
pub fn in_use_hint(config: &Config, command: &str) -> String {
    format!(
        "while the server runs, go through its API: tenantry {command} --server {} with a \
         token from --token or TENANTRY_TOKEN (`tenantry token --tenant T --env E`)",
        server_url(config)
    )
}

pub mod verify;

#[cfg(test)]
mod tests;
