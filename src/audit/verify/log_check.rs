//! `verify --tenant`: a tenant's log checked from genesis (see [`super::verify_log`]): every
//! frame readable and of this tenant, `tenant_seq` gapless, the chain linked from the genesis
//! hash to the tenant's head, and every session's seqs gapless from its `SessionStarted`.
//! A log trimmed by retention is checked from its anchor instead (docs/audit.md#retention):
//! its first event must be the anchor's `first_tenant_seq` and link to the anchor's hash, and a
//! session whose start was trimmed may begin at any seq.

use std::collections::HashMap;
use std::ops::ControlFlow;

use super::super::record::{hash_hex, ManifestRetention};
use super::super::AuditError;
use super::{problem, Problem, ProblemKind, Progress, Summary, Verdict};
use crate::events::codec::{Hash, GENESIS_HASH};
use crate::events::log::{EventLog, Head, RetentionAnchor, StoredEvent};
use crate::events::schema::{Event, EventKind};
use crate::tenancy::TenantId;

/// See [`super::verify_log_with_progress`].
pub(super) fn verify(
    log: &EventLog,
    tenant: &TenantId,
    progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<Verdict, AuditError> {
    match check(log, tenant, progress) {
        Ok(summary) => Ok(Verdict::Intact(summary)),
        Err(Halt::Broken(p)) => Ok(Verdict::Broken(p)),
        Err(Halt::Stopped { checked }) => Err(AuditError::Usage(format!(
            "verification stopped by its caller after {checked} events"
        ))),
    }
}

/// Why a walk ended before the summary.
enum Halt {
    /// The first problem found.
    Broken(Problem),
    /// The progress callback asked to stop, after `checked` good events.
    Stopped { checked: u64 },
}

impl From<Problem> for Halt {
    fn from(p: Problem) -> Halt {
        Halt::Broken(p)
    }
}

/// The first problem of the tenant's log, else its summary; `progress` hears of every event
/// found good.
fn check(
    log: &EventLog,
    tenant: &TenantId,
    progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
) -> Result<Summary, Halt> {
    if let Some(d) = log.damaged().iter().find(|d| &d.tenant == tenant) {
        let detail = format!("{}: {}", d.position, d.detail);
        return Err(broken(None, ProblemKind::Unreadable, detail).into());
    }
    let reader = log.tenant(tenant);
    let head = reader
        .head()
        .map_err(|e| broken(None, ProblemKind::Unreadable, e.to_string()))?;
    let last = head.map_or(0, |h| h.tenant_seq);
    let read_anchor = || {
        log.retention_anchor(tenant)
            .map_err(|e| broken(None, ProblemKind::Unreadable, e.to_string()))
    };
    let mut anchor = read_anchor()?;
    let mut chain = Chain::new(tenant, anchor.as_ref());
    let mut first = chain.expected;
    if last > 0 {
        for item in reader.events(first..=last) {
            let stored = item.map_err(|e| {
                let detail = format!("{}: {}", e.position, e.detail);
                broken(Some(chain.expected), ProblemKind::Unreadable, detail)
            })?;
            let seq = stored.event.tenant_seq;
            if seq > chain.expected {
                // Frames trimmed by retention while this walk ran: start again from the new
                // anchor if nothing was checked yet, else say so (not a deletion).
                match read_anchor()? {
                    Some(now) if now.first_tenant_seq == seq && chain.expected == first => {
                        chain = Chain::new(tenant, Some(&now));
                        (first, anchor) = (seq, Some(now));
                    }
                    Some(now) if now.first_tenant_seq > chain.expected => {
                        let detail = "trimmed by the tenant's retention while verifying; verify \
                                      again"
                            .to_owned();
                        return Err(
                            broken(Some(chain.expected), ProblemKind::Unreadable, detail).into(),
                        );
                    }
                    _ => {}
                }
            }
            chain.follow(&stored)?;
            let good = Progress {
                events: chain.expected - first,
                tenant_seq: stored.event.tenant_seq,
            };
            if progress(good).is_break() {
                return Err(Halt::Stopped {
                    checked: good.events,
                });
            }
        }
    }
    chain.finish(last, head)?;
    Ok(Summary {
        source: format!("log {}", log.dir().display()),
        tenant: tenant.to_string(),
        env: None,
        team: None,
        count: last.saturating_sub(first - 1),
        first_tenant_seq: (last >= first).then_some(first),
        last_tenant_seq: (last > 0).then_some(last),
        contiguous: true,
        head_hash: head.map(|h| hash_hex(&h.hash)),
        sessions: Some(u64::try_from(chain.sessions.len()).unwrap_or(u64::MAX)),
        anchoring: None,
        // `anchored: 1000 trimmed up to 2026-08-31T12:00:00.000Z, prev hash …`
        retention: anchor.as_ref().map(|a| ManifestRetention::of(a).text()),
    })
}

fn broken(seq: Option<u64>, kind: ProblemKind, detail: String) -> Problem {
    problem(None, seq, kind, detail)
}

/// The walk along one tenant's chain.
struct Chain<'t> {
    tenant: &'t TenantId,
    prev_hash: Hash,
    /// The `tenant_seq` the next event must have.
    expected: u64,
    /// The log was trimmed: a session first seen here may have lost its start.
    trimmed: bool,
    /// Last seq per session: the only state that grows, with the number of sessions.
    sessions: HashMap<(String, String, String), u64>,
}

impl<'t> Chain<'t> {
    /// The walk from genesis, or from the retention anchor of a trimmed log.
    fn new(tenant: &'t TenantId, anchor: Option<&RetentionAnchor>) -> Chain<'t> {
        Chain {
            tenant,
            prev_hash: anchor.map_or(GENESIS_HASH, |a| a.prev_hash),
            expected: anchor.map_or(1, |a| a.first_tenant_seq),
            trimmed: anchor.is_some(),
            sessions: HashMap::new(),
        }
    }

    /// Checks the next stored event's tenant, position and link, then its session's seqs.
    fn follow(&mut self, stored: &StoredEvent) -> Result<(), Problem> {
        let e = &stored.event;
        let seq = Some(e.tenant_seq);
        let (tenant, expected) = (self.tenant, self.expected);
        if &e.tenant != tenant {
            let detail = format!("a record of tenant {} in tenant {tenant}'s range", e.tenant);
            return Err(broken(seq, ProblemKind::ForeignTenant, detail));
        }
        if e.tenant_seq != expected {
            let kind = if e.tenant_seq > expected {
                ProblemKind::Deleted
            } else {
                ProblemKind::Inserted
            };
            let detail = format!("expected tenant_seq {expected}, found {}", e.tenant_seq);
            return Err(broken(seq, kind, detail));
        }
        if stored.prev_hash != self.prev_hash {
            let detail = format!(
                "prev_hash is not the hash of tenant_seq {} (a frame was rewritten?)",
                expected - 1
            );
            return Err(broken(seq, ProblemKind::BrokenChain, detail));
        }
        self.session(e)?;
        self.prev_hash = stored.hash;
        self.expected += 1;
        Ok(())
    }

    /// A session's seqs are gapless and start with exactly one `SessionStarted`.
    fn session(&mut self, e: &Event) -> Result<(), Problem> {
        let seq = Some(e.tenant_seq);
        let key = (e.env.to_string(), e.team.to_string(), e.session.to_string());
        let seen = self.sessions.get(&key).copied();
        // A session first seen in a trimmed log continues from its trimmed start.
        let session_last = match seen {
            None if self.trimmed && e.seq > 1 => e.seq - 1,
            seen => seen.unwrap_or(0),
        };
        if e.seq != session_last + 1 {
            let detail = format!(
                "session {}/{}/{}: seq {} follows seq {session_last}",
                e.env, e.team, e.session, e.seq
            );
            return Err(broken(seq, ProblemKind::Deleted, detail));
        }
        if (e.seq == 1) != matches!(e.kind, EventKind::SessionStarted { .. }) {
            let detail = format!(
                "session {}/{}/{}: {} at seq {} (SessionStarted must be exactly seq 1)",
                e.env,
                e.team,
                e.session,
                e.kind.name(),
                e.seq
            );
            return Err(broken(seq, ProblemKind::Malformed, detail));
        }
        self.sessions.insert(key, e.seq);
        Ok(())
    }

    /// After the last event: the walk reached the head, and the chain ends at its hash.
    fn finish(&self, last: u64, head: Option<Head>) -> Result<(), Problem> {
        if self.expected != last + 1 {
            let detail = format!("the log ends before its head at tenant_seq {last}");
            return Err(broken(Some(self.expected), ProblemKind::Deleted, detail));
        }
        if head.is_some_and(|h| h.hash != self.prev_hash) {
            let detail = "the chain does not end at the tenant's head hash".to_owned();
            return Err(broken(Some(last), ProblemKind::BrokenChain, detail));
        }
        Ok(())
    }
}
