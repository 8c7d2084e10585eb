use super::*;
use crate::audit::fixture::{self, ctx, FORMULA, HOSTILE};
use crate::tenancy::fixtures::id;

fn text(log: &EventLog, opts: &ReplayOptions) -> String {
    let mut out = Vec::new();
    replay(log, opts, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn options(scope: ReplayScope) -> ReplayOptions {
    ReplayOptions {
        scope,
        from_seq: None,
        to_seq: None,
        since_ms: None,
        until_ms: None,
        format: ReplayFormat::Text,
    }
}

fn tenant_scope(tenant: &str) -> ReplayScope {
    ReplayScope::Tenant {
        tenant: id(tenant),
        env: None,
        team: None,
    }
}

#[test]
fn the_timeline_has_one_escaped_line_per_event() {
    let fx = fixture::build();
    let out = text(&fx.log, &options(tenant_scope("acme")));
    let head = fx.log.tenant(&id("acme")).head().unwrap().unwrap();
    assert_eq!(out.lines().count() as u64, head.tenant_seq);
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        "2026-11-23T10:00:00.000Z  #1  prod/support/s1 seq 1  SessionStarted  \
         user \"ada\" flow \"audit_flow\" version \"1\""
    );
    assert!(
        out.contains(&format!("MessageReceived  {FORMULA:?} from \"ada\"")),
        "{out}"
    );
    assert!(
        out.contains(&format!("StateSet  name = {HOSTILE:?}")),
        "{out}"
    );
    assert!(
        out.contains("SessionEnded  reason \"user said bye\""),
        "{out}"
    );
    assert!(
        !out.contains('\u{1b}') && !out.contains('\r'),
        "escapes reach the terminal"
    );
    assert!(!out.contains("acmex"), "{out}");
}

#[test]
fn filters_select_env_team_seq_range_and_time() {
    let fx = fixture::build();
    let mut opts = options(ReplayScope::Tenant {
        tenant: id("acme"),
        env: Some(id("staging")),
        team: Some(id("support")),
    });
    let out = text(&fx.log, &opts);
    assert!(!out.is_empty() && out.lines().all(|l| l.contains("staging/support/s1")));

    opts.scope = tenant_scope("acme");
    opts.from_seq = Some(2);
    opts.to_seq = Some(3);
    let out = text(&fx.log, &opts);
    assert_eq!(out.lines().count(), 2);
    assert!(out.lines().next().unwrap().contains("  #2  "));

    opts.from_seq = None;
    opts.to_seq = None;
    opts.since_ms = Some(1_795_428_000_000 + 3_600_000);
    opts.until_ms = Some(1_795_428_000_000 + 7_200_000);
    let out = text(&fx.log, &opts);
    assert!(
        !out.is_empty() && out.lines().all(|l| l.contains("staging/")),
        "{out}"
    );
}

#[test]
fn a_session_replays_in_seq_order_and_json_mode_writes_records() {
    let fx = fixture::build();
    let mut opts = options(ReplayScope::Session {
        ctx: ctx("acmex", "prod"),
        session: id("s1"),
    });
    opts.from_seq = Some(2);
    opts.format = ReplayFormat::Json;
    let out = text(&fx.log, &opts);
    let records: Vec<EventLine> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(records
        .iter()
        .all(|r| r.tenant == "acmex" && r.body.is_none()));
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (2..2 + seqs.len() as u64).collect::<Vec<_>>());

    opts.scope = ReplayScope::Session {
        ctx: ctx("acme", "prod"),
        session: id("nope"),
    };
    let err = replay(&fx.log, &opts, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no session nope"), "{err}");
}

#[test]
fn the_state_at_a_seq_is_the_fold_of_the_prefix() {
    let fx = fixture::build();
    let c = ctx("acme", "prod");
    let last = fx.log.scope(&c).session_last_seq(&id("s1")).unwrap();
    for seq in 1..=last {
        let mut expected = SessionState::new(id("acme"), id("prod"), id("support"), id("s1"));
        for e in fx.log.scope(&c).session_events(&id("s1"), 1..=seq) {
            expected.apply(&e.unwrap().event);
        }
        assert_eq!(state_at(&fx.log, &c, &id("s1"), seq).unwrap(), expected);
    }
    let state = state_at(&fx.log, &c, &id("s1"), last).unwrap();
    assert_eq!(state.vars.get("name").map(String::as_str), Some(HOSTILE));
    assert!(!state.is_open());
    for bad in [0, last + 1] {
        let err = state_at(&fx.log, &c, &id("s1"), bad).unwrap_err();
        assert!(err.to_string().contains(&format!("1..={last}")), "{err}");
    }
}

#[test]
fn registry_events_read_plainly_and_unambiguously() {
    let registered = EventKind::ConnectorRegistered {
        connector: "slack-1".into(),
        provider: "messaging-slack".into(),
        version: "1.2".into(),
        capabilities: vec!["a,b".into(), "c\"d".into()],
        healed: true,
    };
    assert_eq!(
        details(&registered),
        r#"connector slack-1 provider "messaging-slack" version "1.2" capabilities ["a,b", "c\"d"] (healed)"#
    );
    let changed = EventKind::ConnectorStateChanged {
        connector: "slack-1".into(),
        from: "live".into(),
        to: "stale".into(),
    };
    assert_eq!(details(&changed), "connector slack-1 live -> stale");
}
