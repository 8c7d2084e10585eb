//! An outside load tool beside the bench's own HTTP client: `wrk` posting the same kind of
//! messages to the same server in the same run, so that the HTTP row has an anchor that is not
//! this crate's client (the project is also checked from outside with wrk).
//!
//! Invariants:
//! - Every request wrk sends is a new message (its own message id, `w{thread}-c{c}-{n}`), so it
//!   appends like the bench's own passes rather than answering from a stored ack.
//! - The figures come from the script's `done` callback, one line in a format this module
//!   defines ([`LINE_PREFIX`]), not from wrk's human report.
//! - wrk is optional where the bench runs by hand: without it on `PATH` the report says so.
//!   When it is there and fails, the scenario fails with wrk's own output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::harness::tenant_name;

/// The line the script's `done` callback writes.
const LINE_PREFIX: &str = "tenantry-wrk ";
/// wrk's threads: one, as the bench's own client.
const THREADS: usize = 1;
/// A request not answered within this counts as one of wrk's timeouts.
const TIMEOUT: Duration = Duration::from_secs(10);

/// wrk's closed loop against the server.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WrkRun {
    /// `wrk --version`'s first words.
    pub version: String,
    pub connections: usize,
    pub threads: usize,
    pub seconds: f64,
    /// Answers with a 2xx status.
    pub ok: u64,
    pub ok_per_s: f64,
    /// Answers with another status.
    pub non_2xx: u64,
    /// wrk's connect, read, write and timeout errors.
    pub socket_errors: u64,
    /// From send to answer, closed loop (wrk does not correct for coordinated omission).
    pub latency_p50_us: u64,
    pub latency_p99_us: u64,
}

/// The outside anchor of the HTTP scenario.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outside {
    Measured(WrkRun),
    /// Not measured, and why (wrk not installed).
    Missing {
        reason: String,
    },
}

/// `wrk` on `PATH`.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
}

/// Runs wrk against `addr` for `duration` with `connections` connections, its script written
/// to `dir`; `tokens[i]` is the JWT of tenant `i`.
pub fn run(
    wrk: &Path,
    dir: &Path,
    addr: SocketAddr,
    tokens: &[String],
    connections: usize,
    duration: Duration,
) -> Result<WrkRun, String> {
    let connections = connections.max(THREADS);
    let script_path = dir.join("wrk-messages.lua");
    std::fs::write(&script_path, script(tokens, connections))
        .map_err(|e| format!("{}: {e}", script_path.display()))?;
    let output = Command::new(wrk)
        .arg(format!("-t{THREADS}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg(format!("--timeout={}s", TIMEOUT.as_secs()))
        .arg("-s")
        .arg(&script_path)
        .arg(format!("http://{addr}/api/v1/messages"))
        .output()
        .map_err(|e| format!("starting {}: {e}", wrk.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{} exited with {}: {}{}",
            wrk.display(),
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let mut run = parse(&stdout)?;
    run.version = version(wrk);
    run.connections = connections;
    run.threads = THREADS;
    Ok(run)
}

/// `run` when wrk got at least one 2xx answer: with none, the server took none of its requests,
/// so the script is wrong rather than the server slow, and the figure would mislead.
pub fn acked(run: WrkRun) -> Result<WrkRun, String> {
    if run.ok == 0 {
        return Err(format!(
            "wrk got no 2xx answer in {:.1} s: {} non-2xx, {} socket errors",
            run.seconds, run.non_2xx, run.socket_errors
        ));
    }
    Ok(run)
}

/// The Lua script: every request a new message of one of `clients` sessions, the tenant and
/// its token chosen by the session; `done` writes the figures on one line.
pub fn script(tokens: &[String], clients: usize) -> String {
    let tenants: Vec<String> = (0..tokens.len())
        .map(|t| format!("\"{}\"", tenant_name(t)))
        .collect();
    let tokens: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    format!(
        r#"-- Written by tenantry-bench: POST /api/v1/messages, a new message per request.
local tenants = {{ {tenants} }}
local tokens = {{ {tokens} }}
local clients = {clients}
local threads = 0
local n = 0

function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

request = function()
  n = n + 1
  local c = n % clients
  local t = (c % #tokens) + 1
  local body = string.format(
    '{{"team":"support","channel":"webchat","session":"w%d-c%d","user":"user-%d",' ..
    '"text":"hello, I need help with order %08d","message_id":"w%d-c%d-%d"}}',
    id, c, c, n, id, c, n)
  return wrk.format("POST", nil, {{
    ["Authorization"] = "Bearer " .. tokens[t],
    ["X-Tenant-ID"] = tenants[t],
    ["Content-Type"] = "application/json",
  }}, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{prefix}requests=%d duration_us=%d non2xx=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99))))
end
"#,
        tenants = tenants.join(", "),
        tokens = tokens.join(", "),
        clients = clients.max(1),
        prefix = LINE_PREFIX,
    )
}

/// The figures of the script's `done` line in wrk's output (version and connections unset).
pub fn parse(stdout: &str) -> Result<WrkRun, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(LINE_PREFIX))
        .ok_or_else(|| format!("no `{}` line in wrk's output: {stdout}", LINE_PREFIX.trim()))?;
    let field = |name: &str| -> Result<u64, String> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .ok_or_else(|| format!("wrk's `{}` line has no {name}: {line}", LINE_PREFIX.trim()))?
            .parse::<u64>()
            .map_err(|e| format!("wrk's {name} in `{line}`: {e}"))
    };
    let requests = field("requests")?;
    let non_2xx = field("non2xx")?;
    let seconds = field("duration_us")? as f64 / 1e6;
    let ok = requests.saturating_sub(non_2xx);
    Ok(WrkRun {
        version: String::new(),
        connections: 0,
        threads: 0,
        seconds,
        ok,
        ok_per_s: ok as f64 / seconds.max(f64::MIN_POSITIVE),
        non_2xx,
        socket_errors: field("socket_errors")?,
        latency_p50_us: field("p50_us")?,
        latency_p99_us: field("p99_us")?,
    })
}

/// `wrk -v`'s first words ("wrk debian/4.1.0-3+b2 [epoll]"), or "wrk".
fn version(wrk: &Path) -> String {
    Command::new(wrk)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let first = text
                .lines()
                .next()?
                .split(" Copyright")
                .next()?
                .trim()
                .to_owned();
            (!first.is_empty()).then_some(first)
        })
        .unwrap_or_else(|| "wrk".to_owned())
}

#[cfg(test)]
mod tests;
