//! `tenantry verify --tenant T --server URL`: the tenant's chain verified by the server
//! (`GET /api/v1/audit/verify`, NDJSON progress then one result line), printed as the offline
//! `verify --tenant` prints it, with the same exit statuses.
//!
//! The server's answer carries less than the offline check shows: no session count, no
//! problem detail (only its kind and tenant_seq, so that no env's or team's ids leak), and the
//! session snapshots are not checked. The verdict says what it lacks; a note on stderr says
//! where to get the rest.

use std::io::{BufRead, BufReader, Read};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::Remote;
use crate::audit::verify::{Summary, Verdict};

/// Longest NDJSON line of the server's verification (its lines are a few dozen bytes).
const VERIFY_LINE_BYTES_MAX: u64 = 64 * 1024;

/// What a problem's detail says through the server, which tells only its kind.
pub const KIND_ONLY_DETAIL: &str =
    "(the server tells the kind only; `tenantry verify --tenant` on the host, with the server \
     stopped, names the detail)";

/// One line of the server's NDJSON answer.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Progress { events: u64, tenant_seq: u64 },
    Result(Outcome),
}

/// The result line.
#[derive(Deserialize)]
struct Outcome {
    ok: bool,
    events: u64,
    head: Option<Head>,
    first_bad: Option<FirstBad>,
}

#[derive(Deserialize)]
struct Head {
    tenant_seq: u64,
    hash: String,
}

#[derive(Deserialize)]
struct FirstBad {
    tenant_seq: Option<u64>,
    reason: String,
}

/// The final verdict of a verification through the server.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoteVerdict {
    /// The chain is intact (as offline, without the session count).
    Intact(Summary),
    /// The first problem: its tenant_seq (when the server knew it) and its kind.
    Broken {
        /// The first bad position.
        tenant_seq: Option<u64>,
        /// Its kind, as the offline verdict names it (`unreadable`, `bad hash`, ...).
        reason: String,
    },
}

impl std::fmt::Display for RemoteVerdict {
    /// The offline verdict's text: `OK: …` as [`Verdict`] prints it; `FAILED: tenant_seq S:
    /// KIND: DETAIL` as [`crate::audit::verify::Problem`] prints a log's problem, with
    /// [`KIND_ONLY_DETAIL`] for the detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteVerdict::Intact(summary) => {
                write!(f, "{}", Verdict::Intact(summary.clone()))
            }
            RemoteVerdict::Broken { tenant_seq, reason } => {
                write!(f, "FAILED: ")?;
                if let Some(seq) = tenant_seq {
                    write!(f, "tenant_seq {seq}: ")?;
                }
                write!(f, "{reason}: {KIND_ONLY_DETAIL}")
            }
        }
    }
}

impl Remote {
    /// `GET /api/v1/audit/verify` for the tenant: each progress line to `progress` (events,
    /// tenant_seq), then the verdict. An answer that ends without its result line is an error
    /// (the server failed while verifying: its log says why).
    pub fn verify(&self, progress: &mut dyn FnMut(u64, u64)) -> anyhow::Result<RemoteVerdict> {
        let body = self.get("/api/v1/audit/verify", None)?.into_body();
        read_verify(
            body.into_reader(),
            &self.base,
            self.tenant.as_str(),
            progress,
        )
    }
}

/// Reads the server's NDJSON verification answer `body` (see [`Remote::verify`]).
fn read_verify(
    body: impl Read,
    base: &str,
    tenant: &str,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<RemoteVerdict> {
    let mut reader = BufReader::new(body);
    let mut line = String::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(VERIFY_LINE_BYTES_MAX)
            .read_line(&mut line)
            .context("reading the server's verification (it ended early)")?;
        if n == 0 {
            bail!(
                "the server at {base} ended its verification without a result (a failure on \
                 its side: see its log)"
            );
        }
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .with_context(|| format!("a line of the server's verification: {}", line.trim()))?;
        match parsed {
            Line::Progress { events, tenant_seq } => progress(events, tenant_seq),
            Line::Result(outcome) => return verdict(outcome, base, tenant),
        }
    }
}

fn verdict(outcome: Outcome, base: &str, tenant: &str) -> anyhow::Result<RemoteVerdict> {
    if !outcome.ok {
        let first_bad = outcome
            .first_bad
            .context("the server's failed verification names no first bad position")?;
        return Ok(RemoteVerdict::Broken {
            tenant_seq: first_bad.tenant_seq,
            reason: first_bad.reason,
        });
    }
    let head = outcome
        .head
        .context("the server's intact verification names no head")?;
    let any = outcome.events > 0;
    Ok(RemoteVerdict::Intact(Summary {
        source: format!("log through the server at {base}"),
        tenant: tenant.to_owned(),
        env: None,
        team: None,
        count: outcome.events,
        // The chain is gapless up to the head (the server checked it), from 1 or, in a log
        // trimmed by retention, from its anchor.
        first_tenant_seq: any.then(|| (head.tenant_seq + 1).saturating_sub(outcome.events)),
        last_tenant_seq: any.then_some(head.tenant_seq),
        contiguous: true,
        head_hash: any.then_some(head.hash),
        sessions: None,
        anchoring: None,
        retention: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::verify::{Problem, ProblemKind};

    fn read(text: &str) -> (anyhow::Result<RemoteVerdict>, Vec<(u64, u64)>) {
        let mut seen = Vec::new();
        let verdict = read_verify(text.as_bytes(), "http://h:1", "acme", &mut |e, s| {
            seen.push((e, s));
        });
        (verdict, seen)
    }

    #[test]
    fn a_failed_verdict_reads_as_a_log_problem_does_offline() {
        let (verdict, seen) = read(
            "{\"progress\":{\"events\":4,\"tenant_seq\":4}}\n\
             {\"result\":{\"ok\":false,\"events\":4,\"first_bad\":{\"tenant_seq\":5,\"reason\":\"unreadable\"}}}\n",
        );
        assert_eq!(seen, vec![(4, 4)]);
        let offline = Verdict::Broken(Problem {
            line: None,
            tenant_seq: Some(5),
            kind: ProblemKind::Unreadable,
            detail: KIND_ONLY_DETAIL.to_owned(),
        });
        assert_eq!(verdict.unwrap().to_string(), offline.to_string());
    }

    #[test]
    fn an_intact_chain_has_no_session_count_and_an_empty_one_no_head() {
        let (verdict, _) = read(
            "{\"result\":{\"ok\":true,\"events\":3,\"head\":{\"tenant_seq\":3,\"hash\":\"ab\"}}}\n",
        );
        assert_eq!(
            verdict.unwrap().to_string(),
            "OK: log through the server at http://h:1: tenant acme (all envs): 3 events, \
             tenant_seq 1..=3, chain linked, head ab"
        );
        let (verdict, _) = read(
            "{\"result\":{\"ok\":true,\"events\":0,\"head\":{\"tenant_seq\":0,\"hash\":\"00\"}}}\n",
        );
        assert!(!verdict.unwrap().to_string().contains("head"));
    }

    #[test]
    fn an_answer_without_a_result_is_an_error() {
        let (verdict, _) = read("{\"progress\":{\"events\":1,\"tenant_seq\":1}}\n");
        let err = verdict.unwrap_err().to_string();
        assert!(err.contains("without a result"), "{err}");
        let (verdict, _) = read("not json\n");
        assert!(verdict.is_err());
    }
}
