//! `verify --tenant`: a tenant's log checked from genesis (see [`super::verify_log`]).

use std::collections::HashMap;

use super::super::record::hash_hex;
use super::super::AuditError;
use super::{problem, ProblemKind, Summary, Verdict};
use crate::events::codec::GENESIS_HASH;
use crate::events::log::EventLog;
use crate::events::schema::EventKind;
use crate::tenancy::TenantId;

/// See [`super::verify_log`].
pub(super) fn verify(log: &EventLog, tenant: &TenantId) -> Result<Verdict, AuditError> {
    let broken = |seq: Option<u64>, kind, detail: String| -> Result<Verdict, AuditError> {
        Ok(Verdict::Broken(problem(None, seq, kind, detail)))
    };
    if let Some(d) = log.damaged().iter().find(|d| &d.tenant == tenant) {
        return broken(
            None,
            ProblemKind::Unreadable,
            format!("{}: {}", d.position, d.detail),
        );
    }
    let reader = log.tenant(tenant);
    let head = match reader.head() {
        Ok(head) => head,
        Err(e) => return broken(None, ProblemKind::Unreadable, e.to_string()),
    };
    let last = head.map_or(0, |h| h.tenant_seq);
    let mut prev_hash = GENESIS_HASH;
    let mut expected = 1;
    // Last seq per session: the only state that grows, with the number of sessions.
    let mut sessions: HashMap<(String, String, String), u64> = HashMap::new();
    if last > 0 {
        for item in reader.events(1..=last) {
            let stored = match item {
                Ok(stored) => stored,
                Err(e) => {
                    return broken(
                        Some(expected),
                        ProblemKind::Unreadable,
                        format!("{}: {}", e.position, e.detail),
                    )
                }
            };
            let e = &stored.event;
            let seq = Some(e.tenant_seq);
            if &e.tenant != tenant {
                return broken(
                    seq,
                    ProblemKind::ForeignTenant,
                    format!("a record of tenant {} in tenant {tenant}'s range", e.tenant),
                );
            }
            if e.tenant_seq != expected {
                let kind = if e.tenant_seq > expected {
                    ProblemKind::Deleted
                } else {
                    ProblemKind::Inserted
                };
                return broken(
                    seq,
                    kind,
                    format!("expected tenant_seq {expected}, found {}", e.tenant_seq),
                );
            }
            if stored.prev_hash != prev_hash {
                return broken(
                    seq,
                    ProblemKind::BrokenChain,
                    format!(
                        "prev_hash is not the hash of tenant_seq {} (a frame was rewritten?)",
                        expected - 1
                    ),
                );
            }
            let key = (e.env.to_string(), e.team.to_string(), e.session.to_string());
            let session_last = sessions.get(&key).copied().unwrap_or(0);
            if e.seq != session_last + 1 {
                return broken(
                    seq,
                    ProblemKind::Deleted,
                    format!(
                        "session {}/{}/{}: seq {} follows seq {session_last}",
                        e.env, e.team, e.session, e.seq
                    ),
                );
            }
            if (e.seq == 1) != matches!(e.kind, EventKind::SessionStarted { .. }) {
                return broken(
                    seq,
                    ProblemKind::Malformed,
                    format!(
                        "session {}/{}/{}: {} at seq {} (SessionStarted must be exactly seq 1)",
                        e.env,
                        e.team,
                        e.session,
                        e.kind.name(),
                        e.seq
                    ),
                );
            }
            sessions.insert(key, e.seq);
            prev_hash = stored.hash;
            expected += 1;
        }
    }
    if expected != last + 1 {
        return broken(
            Some(expected),
            ProblemKind::Deleted,
            format!("the log ends before its head at tenant_seq {last}"),
        );
    }
    if let Some(h) = head {
        if h.hash != prev_hash {
            return broken(
                Some(last),
                ProblemKind::BrokenChain,
                "the chain does not end at the tenant's head hash".to_owned(),
            );
        }
    }
    Ok(Verdict::Intact(Summary {
        source: format!("log {}", log.dir().display()),
        tenant: tenant.to_string(),
        env: None,
        team: None,
        count: last,
        first_tenant_seq: (last > 0).then_some(1),
        last_tenant_seq: (last > 0).then_some(last),
        contiguous: true,
        head_hash: head.map(|h| hash_hex(&h.hash)),
        sessions: Some(u64::try_from(sessions.len()).unwrap_or(u64::MAX)),
    }))
}
