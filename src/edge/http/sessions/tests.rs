use std::collections::HashSet;
use std::convert::Infallible;

use super::*;
use crate::tenancy::{EnvId, TenantId};

fn state(
    team: &str,
    session: &str,
    user: &str,
    last_activity_ms: u64,
    ended: bool,
) -> SessionState {
    let mut s = SessionState::new(
        TenantId::parse("acme").unwrap(),
        EnvId::parse("prod").unwrap(),
        TeamId::parse(team).unwrap(),
        SessionId::parse(session).unwrap(),
    );
    s.user = user.into();
    s.last_activity_ms = last_activity_ms;
    if ended {
        s.status = SessionStatus::Ended {
            reason: "done".into(),
        };
    }
    s
}

fn rows() -> Vec<(SessionState, Option<String>)> {
    vec![
        (
            state("support", "s1", "ada", 100, false),
            Some("Hello there".into()),
        ),
        (state("support", "s2", "bob", 300, true), Some("bye".into())),
        (state("sales", "s3", "cy", 200, false), None),
        (
            state("support", "s4", "dee", 200, false),
            Some("need HELP".into()),
        ),
        (
            state("sales", "s5", "eve", 50, false),
            Some("help me".into()),
        ),
    ]
}

fn ids(body: &SessionsBody) -> Vec<String> {
    body.sessions
        .iter()
        .map(|i| {
            serde_json::to_value(i).unwrap()["session"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn run(
    filter: &Filter,
    quarantined: &HashSet<(TeamId, SessionId)>,
    after: Option<&Position>,
    limit: usize,
) -> SessionsBody {
    page(
        rows().into_iter().map(Ok::<_, Infallible>),
        filter,
        quarantined,
        after,
        limit,
    )
    .unwrap()
}

#[test]
fn latest_activity_first_ties_by_team_then_session_and_pages_follow_the_cursor() {
    let none = HashSet::new();
    let all = run(&Filter::default(), &none, None, 10);
    assert_eq!(ids(&all), ["s2", "s3", "s4", "s1", "s5"]);
    assert!(all.next_after.is_none());
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let body = run(&Filter::default(), &none, after.as_ref(), 2);
        seen.extend(ids(&body));
        match &body.next_after {
            Some(cursor) => after = Some(Position::parse(cursor).unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, ["s2", "s3", "s4", "s1", "s5"]);
}

#[test]
fn filters_by_text_status_and_since() {
    let none = HashSet::new();
    let q = |q: &str| Filter {
        q: Some(q.to_lowercase()),
        ..Filter::default()
    };
    // The user or the last message, case-insensitively.
    assert_eq!(ids(&run(&q("HELP"), &none, None, 10)), ["s4", "s5"]);
    assert_eq!(ids(&run(&q("Bob"), &none, None, 10)), ["s2"]);
    let status = |s: &'static str| Filter {
        status: Some(s),
        ..Filter::default()
    };
    assert_eq!(ids(&run(&status("ended"), &none, None, 10)), ["s2"]);
    assert_eq!(
        ids(&run(&status("quarantined"), &none, None, 10)),
        Vec::<String>::new()
    );
    let parked: HashSet<_> = [(
        TeamId::parse("sales").unwrap(),
        SessionId::parse("s3").unwrap(),
    )]
    .into();
    assert_eq!(ids(&run(&status("quarantined"), &parked, None, 10)), ["s3"]);
    assert_eq!(
        ids(&run(&status("open"), &parked, None, 10)),
        ["s4", "s1", "s5"]
    );
    let item =
        serde_json::to_value(&run(&status("quarantined"), &parked, None, 10).sessions[0]).unwrap();
    assert_eq!(item["status"], "quarantined");
    assert_eq!(item["last_activity"], 200);
    assert!(item["last_message"].is_null());
    let since = Filter {
        since_ms: Some(200),
        ..Filter::default()
    };
    assert_eq!(ids(&run(&since, &none, None, 10)), ["s2", "s3", "s4"]);
}

#[test]
fn bad_parameters_name_their_field() {
    let query = |q: Option<&str>, status: Option<&str>, since: Option<&str>| SessionsQuery {
        limit: None,
        after: None,
        q: q.map(str::to_owned),
        status: status.map(str::to_owned),
        since: since.map(str::to_owned),
    };
    let field = |e: ApiError| match e {
        ApiError::InvalidField { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(Filter::parse(&query(None, Some("closed"), None)).unwrap_err()),
        "status"
    );
    assert_eq!(
        field(Filter::parse(&query(None, None, Some("yesterday"))).unwrap_err()),
        "since"
    );
    let long = "x".repeat(SESSIONS_QUERY_BYTES_MAX + 1);
    assert_eq!(
        field(Filter::parse(&query(Some(&long), None, None)).unwrap_err()),
        "q"
    );
    assert_eq!(field(Position::parse("not-a-cursor").unwrap_err()), "after");
    let day = Filter::parse(&query(None, None, Some("2026-11-30"))).unwrap();
    assert_eq!(day.since_ms, Some(1_795_996_800_000));
    let ms = Filter::parse(&query(None, None, Some("1795996800123"))).unwrap();
    assert_eq!(ms.since_ms, Some(1_795_996_800_123));
    let at = Filter::parse(&query(None, None, Some("2026-11-30T01:00:00Z"))).unwrap();
    assert_eq!(at.since_ms, Some(1_795_996_800_000 + 3_600_000));
}
