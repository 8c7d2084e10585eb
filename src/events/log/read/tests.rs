//! Session paging: `ScopedReader::sessions_after` seeks to the cursor.

use super::super::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use crate::events::schema::EventKind;
use crate::tenancy::fixtures::id;
use crate::tenancy::{SessionId, TeamId, TenantCtx};

fn scope(tenant: &str, team: Option<&str>) -> TenantCtx {
    TenantCtx::new(id(tenant), id("prod"), team.map(id))
}

/// Starts `session` in `team` of `tenant`.
pub(super) fn start(log: &EventLog, tenant: &str, team: &str, session: &str) {
    let group = AppendGroup {
        ctx: scope(tenant, Some(team)),
        channel: id("slack"),
        session: id(session),
        expected_seq: 0,
        at_ms: 1000,
        kinds: vec![EventKind::SessionStarted {
            user: format!("{tenant}-{team}-{session}"),
            flow: "f".into(),
            flow_version: "1".into(),
        }],
        idempotency: None,
    };
    assert!(matches!(
        log.append_blocking(group),
        Ok(AppendOutcome::Appended(_))
    ));
}

/// A log with sessions s00..s09 in teams `a`, `b` and `c` of tenant `t`, and the same ids in
/// tenant `t2` (which must never show up).
fn log_with_sessions(dir: &std::path::Path) -> EventLog {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    for tenant in ["t", "t2"] {
        for team in ["a", "b", "c"] {
            for n in 0..10 {
                start(&log, tenant, team, &format!("s{n:02}"));
            }
        }
    }
    log
}

fn page(log: &EventLog, ctx: &TenantCtx, after: Option<(&str, &str)>) -> Vec<(String, String)> {
    let after: Option<(TeamId, SessionId)> = after.map(|(t, s)| (id(t), id(s)));
    log.scope(ctx)
        .sessions_after(after.as_ref().map(|(t, s)| (t, s)))
        .map(|info| {
            let info = info.unwrap();
            assert_eq!(info.user, format!("t-{}-{}", info.team, info.session));
            (info.team.to_string(), info.session.to_string())
        })
        .collect()
}

#[test]
fn the_page_after_a_cursor_starts_right_after_it_and_visits_nothing_before() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_sessions(dir.path());
    let all = scope("t", None);
    // Everything the iterator visits, it yields: so the count is the number of entries read.
    // A scan from the start of the scope would visit all 30 and leave skipping to the caller.
    let rest = page(&log, &all, Some(("b", "s07")));
    assert_eq!(rest.len(), 12, "{rest:?}");
    assert_eq!(rest[0], ("b".to_owned(), "s08".to_owned()));
    assert_eq!(rest[2], ("c".to_owned(), "s00".to_owned()));
    assert_eq!(rest.last().unwrap(), &("c".to_owned(), "s09".to_owned()));
    // A cursor that names no stored session still seeks to the next one.
    let rest = page(&log, &all, Some(("b", "s075")));
    assert_eq!(rest[0], ("b".to_owned(), "s08".to_owned()));
    // Past the last session: nothing.
    assert!(page(&log, &all, Some(("c", "s09"))).is_empty());
    assert!(page(&log, &all, Some(("z", "s00"))).is_empty());
}

#[test]
fn paging_by_cursor_covers_every_session_once_in_order_across_teams() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_sessions(dir.path());
    for (team, expected) in [(None, 30), (Some("a"), 10), (Some("b"), 10)] {
        let ctx = scope("t", team);
        let whole = page(&log, &ctx, None);
        assert_eq!(whole.len(), expected);
        let mut paged: Vec<(String, String)> = Vec::new();
        // More pages than needed: a cursor that does not move must fail, not hang.
        for _ in 0..=expected / 7 + 1 {
            let cursor = paged.last().map(|(t, s)| (t.as_str(), s.as_str()));
            paged.extend(page(&log, &ctx, cursor).into_iter().take(7));
        }
        assert_eq!(paged, whole, "team {team:?}");
        assert!(paged.windows(2).all(|w| w[0] < w[1]));
    }
}

#[test]
fn a_team_scope_ignores_cursors_of_other_teams() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with_sessions(dir.path());
    let b = scope("t", Some("b"));
    // A cursor in an earlier team starts at the scope's first session, one in a later team
    // yields nothing: never another team's sessions.
    let from_a = page(&log, &b, Some(("a", "s05")));
    assert_eq!(from_a.len(), 10);
    assert!(from_a.iter().all(|(team, _)| team == "b"));
    assert!(page(&log, &b, Some(("c", "s00"))).is_empty());
    let mid = page(&log, &b, Some(("b", "s04")));
    assert_eq!(mid.len(), 5);
    assert!(mid.iter().all(|(team, _)| team == "b"));
}
