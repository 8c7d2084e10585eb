use proptest::prelude::*;

use super::*;
use crate::events::log::{AppendGroup, AppendOutcome, LogOptions};
use crate::events::schema::EventKind;
use crate::tenancy::fixtures::id;
use crate::tenancy::TenantCtx;

const DAY: u64 = MS_PER_DAY;

/// Appends one group in `(tenant, team)` and returns the session's new last seq.
/// A message in tenant acmex, which shares acme's team, channel and session ids (and starts with
/// acme's name): what must never leak into acme's read models.
fn append_acmex(log: &EventLog, at_ms: u64, text: &str) {
    append_in(
        log,
        ("acmex", "support"),
        "web",
        "s1",
        0,
        at_ms,
        vec![msg(text)],
    );
}

pub(super) fn append_in(
    log: &EventLog,
    (tenant, team): (&str, &str),
    channel: &str,
    session: &str,
    last: u64,
    at_ms: u64,
    kinds: Vec<EventKind>,
) -> u64 {
    let mut all = Vec::new();
    if last == 0 {
        all.push(EventKind::SessionStarted {
            user: "u".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        });
    }
    all.extend(kinds);
    let group = AppendGroup {
        ctx: TenantCtx::new(id(tenant), id("prod"), Some(id(team))),
        channel: id(channel),
        session: id(session),
        expected_seq: last,
        at_ms,
        kinds: all,
        idempotency: None,
    };
    match log.append_blocking(group).unwrap() {
        AppendOutcome::Appended(a) => a.last_seq,
        other => panic!("{other:?}"),
    }
}

pub(super) fn msg(text: &str) -> EventKind {
    EventKind::MessageReceived {
        message_id: text.into(),
        user: "u".into(),
        text: text.into(),
    }
}

fn reply(text: &str) -> EventKind {
    EventKind::ReplySent {
        node: "n".into(),
        text: text.into(),
    }
}

#[test]
fn usage_matches_a_hand_computed_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let day1 = 20_000 * DAY + 5;
    let day2 = 20_001 * DAY + 7;
    // acme, web, day 1: start + "hello"(5) + reply "hi!"(3); then "bye"(3), failure, end.
    let s = append_in(
        &log,
        ("acme", "support"),
        "web",
        "s1",
        0,
        day1,
        vec![msg("hello"), reply("hi!")],
    );
    append_in(
        &log,
        ("acme", "support"),
        "web",
        "s1",
        s,
        day1,
        vec![
            msg("bye"),
            EventKind::FlowFailed {
                node: "n".into(),
                error: "x".into(),
            },
            EventKind::SessionEnded { reason: "r".into() },
        ],
    );
    // acme, slack, day 2: start + "ping"(4) + reply "pong!"(5).
    append_in(
        &log,
        ("acme", "support"),
        "slack",
        "s2",
        0,
        day2,
        vec![msg("ping"), reply("pong!")],
    );
    // acmex (prefix of nothing, but shares the ids) must not leak into acme.
    append_acmex(&log, day1, "zzzzzzzzzz");

    let p = Projector::new(&log).unwrap();
    assert_eq!(p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap(), 9);
    p.catch_up(&log, &id("acmex"), &mut |_| {}).unwrap();

    let by_channel = p.usage(&id("acme"), None, None, UsageBy::Channel).unwrap();
    assert_eq!(by_channel.len(), 2);
    let slack = &by_channel[0];
    assert_eq!(slack.channel.as_ref().map(ChannelId::as_str), Some("slack"));
    assert_eq!(
        slack.counters,
        UsageCounters {
            messages_in: 1,
            replies_out: 1,
            sessions_started: 1,
            sessions_ended: 0,
            flow_errors: 0,
            bytes_in: 4,
            bytes_out: 5,
            events: 3
        }
    );
    let web = &by_channel[1];
    assert_eq!(
        web.counters,
        UsageCounters {
            messages_in: 2,
            replies_out: 1,
            sessions_started: 1,
            sessions_ended: 1,
            flow_errors: 1,
            bytes_in: 8,
            bytes_out: 3,
            events: 6
        }
    );
    let by_day = p
        .usage(&id("acme"), Some(&id("prod")), None, UsageBy::Day)
        .unwrap();
    let days: Vec<_> = by_day
        .iter()
        .map(|r| (r.day.clone().unwrap(), r.counters.events))
        .collect();
    assert_eq!(
        days,
        vec![("2024-10-04".to_owned(), 6), ("2024-10-05".to_owned(), 3)]
    );
    // Between dates (both inclusive): one day, or none.
    let day = |date: &str| day_number(date).unwrap();
    let prod = Some(&id("prod"));
    let only = |from: &str, to: &str| {
        let rows = p.usage_days(
            &id("acme"),
            prod,
            None,
            UsageBy::Day,
            &(day(from)..=day(to)),
        );
        let rows = rows.unwrap();
        rows.iter()
            .map(|r| r.day.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(only("2024-10-05", "2024-10-05"), vec!["2024-10-05"]);
    assert_eq!(only("2024-10-01", "2024-10-04"), vec!["2024-10-04"]);
    assert!(only("2024-10-06", "2030-01-01").is_empty());
    let by_team = p.usage(&id("acme"), None, None, UsageBy::Team).unwrap();
    assert_eq!(by_team.len(), 1);
    assert_eq!(by_team[0].counters.messages_in, 3);
    assert!(p
        .usage(&id("acme"), Some(&id("staging")), None, UsageBy::Team)
        .unwrap()
        .is_empty());
    let other = p.usage(&id("acmex"), None, None, UsageBy::Team).unwrap();
    assert_eq!(other[0].counters.bytes_in, 10);

    // The session read model equals the session's fold.
    let s1 = p
        .session(&id("acme"), &id("prod"), &id("support"), &id("s1"))
        .unwrap()
        .unwrap();
    assert!(!s1.is_open());
    assert_eq!(s1.messages_in, 2);
    let listed: Vec<String> = p
        .sessions(&id("acme"), &id("prod"), None)
        .map(|s| s.unwrap().session.to_string())
        .collect();
    assert_eq!(listed, vec!["s1", "s2"]);
    // Nothing new: catching up again folds nothing.
    assert_eq!(p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap(), 0);
}

#[test]
fn usage_by_day_of_one_team_counts_only_that_team() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let (day1, day2) = (20_000 * DAY + 5, 20_001 * DAY + 7);
    // support: 1 + 1 events on day 1 ("hi"), 1 + 2 on day 2; sales: 1 + 3 on day 2 only.
    append_in(
        &log,
        ("acme", "support"),
        "web",
        "s1",
        0,
        day1,
        vec![msg("hi")],
    );
    append_in(
        &log,
        ("acme", "support"),
        "web",
        "s2",
        0,
        day2,
        vec![msg("a"), msg("b")],
    );
    let sales = vec![msg("x"), msg("y"), msg("z")];
    append_in(&log, ("acme", "sales"), "slack", "s1", 0, day2, sales);
    // Another tenant's support team on day 1 must not count.
    append_acmex(&log, day1, "q");
    let p = Projector::new(&log).unwrap();
    p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap();
    p.catch_up(&log, &id("acmex"), &mut |_| {}).unwrap();

    let days = |env: Option<&EnvId>, team: &str| -> Vec<(String, Option<String>, u64, u64)> {
        p.usage(&id("acme"), env, Some(&id(team)), UsageBy::Day)
            .unwrap()
            .into_iter()
            .map(|r| {
                let team = r.team.map(|t| t.to_string());
                (
                    r.day.unwrap(),
                    team,
                    r.counters.events,
                    r.counters.messages_in,
                )
            })
            .collect()
    };
    let support = Some("support".to_owned());
    let expected = vec![
        ("2024-10-04".to_owned(), support.clone(), 2, 1),
        ("2024-10-05".to_owned(), support, 3, 2),
    ];
    assert_eq!(days(Some(&id("prod")), "support"), expected);
    assert_eq!(days(None, "support"), expected);
    assert_eq!(
        days(Some(&id("prod")), "sales"),
        vec![("2024-10-05".to_owned(), Some("sales".to_owned()), 4, 3)]
    );
    assert!(days(Some(&id("staging")), "sales").is_empty());
    assert!(days(Some(&id("prod")), "billing").is_empty());
    // The teams' days add up to the tenant's.
    let all = p.usage(&id("acme"), None, None, UsageBy::Day).unwrap();
    let totals: Vec<_> = all
        .iter()
        .map(|r| (r.team.clone(), r.counters.events))
        .collect();
    assert_eq!(totals, vec![(None, 2), (None, 7)]);
    // Grouped by team or channel, a team restriction keeps only that team's rows.
    for by in [UsageBy::Team, UsageBy::Channel] {
        let rows = p.usage(&id("acme"), None, Some(&id("sales")), by).unwrap();
        assert_eq!(rows.len(), 1, "{by:?}");
        assert_eq!(rows[0].team.as_ref().map(TeamId::as_str), Some("sales"));
        assert_eq!(rows[0].counters.events, 4);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        tenant: usize,
        session: usize,
        channel: usize,
        day: u64,
        n: usize,
    },
    CatchUp {
        tenant: usize,
    },
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..3usize, 0..2usize, 0..3u64, 1..4usize)
            .prop_map(|(tenant, session, channel, day, n)| Op::Append { tenant, session, channel, day, n }),
        2 => (0..3usize).prop_map(|tenant| Op::CatchUp { tenant }),
        1 => Just(Op::Restart),
    ]
}

const TENANTS: [&str; 3] = ["a", "ab", "a_b"];
const CHANNELS: [&str; 2] = ["web", "slack"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn rebuild_equals_incremental_across_restarts(ops in proptest::collection::vec(op(), 1..30)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
        let mut p = Projector::new(&log).unwrap();
        // Sessions stay on the channel they started on.
        let mut last = std::collections::HashMap::new();
        for op in ops {
            match op {
                Op::Append { tenant, session, channel, day, n } => {
                    let key = (tenant, session);
                    let (seq, ch) = last.get(&key).copied().unwrap_or((0, channel));
                    let kinds = (0..n).map(|i| if i % 2 == 0 { msg("m") } else { reply("r") }).collect();
                    let s = append_in(&log, (TENANTS[tenant], "support"), CHANNELS[ch], &format!("s{session}"), seq, day * DAY + 1, kinds);
                    last.insert(key, (s, ch));
                }
                Op::CatchUp { tenant } => {
                    p.catch_up(&log, &id(TENANTS[tenant]), &mut |_| {}).unwrap();
                }
                Op::Restart => {
                    drop(p);
                    drop(log);
                    log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
                    p = Projector::new(&log).unwrap();
                }
            }
        }
        for t in TENANTS {
            let tenant: TenantId = id(t);
            p.catch_up(&log, &tenant, &mut |_| {}).unwrap();
            let incremental = p.dump(&tenant).unwrap();
            p.rebuild(&log, &tenant, &mut |_| {}).unwrap();
            let rebuilt = p.dump(&tenant).unwrap();
            prop_assert_eq!(&incremental, &rebuilt);
            // Every session in the read model equals the fold of its own events.
            for state in p.sessions(&tenant, &id("prod"), None) {
                let state = state.unwrap();
                let ctx = TenantCtx::new(tenant.clone(), id("prod"), Some(state.team.clone()));
                let mut fold = SessionState::new(tenant.clone(), id("prod"), state.team.clone(), state.session.clone());
                for e in log.scope(&ctx).session_events(&state.session, 1..=u64::MAX) {
                    fold.apply(&e.unwrap().event);
                }
                prop_assert_eq!(&fold, &state);
            }
        }
    }
}

#[test]
fn one_tenants_long_fold_does_not_block_another_tenants_fold() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let projector = std::sync::Arc::new(Projector::new(&log).unwrap());
    append_in(
        &log,
        ("acme", "support"),
        "web",
        "s1",
        0,
        DAY,
        vec![msg("a")],
    );
    append_in(
        &log,
        ("bigcorp", "support"),
        "web",
        "s1",
        0,
        DAY,
        vec![msg("b")],
    );
    let (slow_in_fold, slow_entered) = std::sync::mpsc::channel();
    let (other_done, other_finished) = std::sync::mpsc::channel::<()>();
    // acme's fold stays inside (its progress callback runs under the fold lock) until bigcorp's
    // fold has finished, or 10 s have passed.
    let slow = {
        let (log, projector) = (log.clone(), projector.clone());
        std::thread::spawn(move || {
            projector
                .catch_up(&log, &id("acme"), &mut |_| {
                    let _ = slow_in_fold.send(());
                    let _ = other_finished.recv_timeout(std::time::Duration::from_secs(10));
                })
                .unwrap()
        })
    };
    slow_entered.recv().unwrap();
    let started = std::time::Instant::now();
    let (log2, projector2) = (log.clone(), projector.clone());
    let other = std::thread::spawn(move || {
        let n = projector2
            .catch_up(&log2, &id("bigcorp"), &mut |_| {})
            .unwrap();
        let _ = other_done.send(());
        n
    });
    assert_eq!(other.join().unwrap(), 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "bigcorp's fold waited {:?} for acme's",
        started.elapsed()
    );
    assert_eq!(slow.join().unwrap(), 2);
    // The same tenant still folds once at a time: a second acme fold finds nothing left to do.
    assert_eq!(
        projector.catch_up(&log, &id("acme"), &mut |_| {}).unwrap(),
        0
    );
}

/// acme with two sessions of `groups` groups each (a start, then 63 events a group), interleaved.
fn two_long_sessions(log: &EventLog, groups: usize) -> u64 {
    let mut last = [0u64; 2];
    for _ in 0..groups {
        for (s, seq) in last.iter_mut().enumerate() {
            let kinds = (0..63)
                .map(|i| if i % 2 == 0 { msg("m") } else { reply("r") })
                .collect();
            *seq = append_in(
                log,
                ("acme", "support"),
                "web",
                &format!("s{s}"),
                *seq,
                DAY,
                kinds,
            );
        }
    }
    log.tenant(&id("acme")).head().unwrap().unwrap().tenant_seq
}

#[test]
fn a_rebuild_writes_its_entries_once_when_they_fit_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let head = two_long_sessions(&log, 70);
    assert!(head > 2 * FOLD_BATCH_EVENTS as u64);
    let p = Projector::new(&log).unwrap();
    p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap();
    let incremental = p.dump(&id("acme")).unwrap();
    // While it folds, the rebuild commits nothing (3 entries are far below its bound): readers
    // see the old read models, whole, until the one commit at the end replaces them; progress
    // still comes.
    let mut seen = Vec::new();
    let folded = p
        .rebuild(&log, &id("acme"), &mut |n| {
            let whole = p.dump(&id("acme")).unwrap() == incremental;
            seen.push((n, p.checkpoint(&id("acme")).unwrap(), whole));
        })
        .unwrap();
    assert_eq!(folded, head);
    let (last, during) = seen.split_last().unwrap();
    assert!(
        during.len() >= 2,
        "progress every batch of events: {seen:?}"
    );
    assert!(
        during
            .iter()
            .all(|&(_, checkpoint, whole)| checkpoint == head && whole),
        "{seen:?}"
    );
    assert_eq!(*last, (head, head, true));
    assert_eq!(p.dump(&id("acme")).unwrap(), incremental);
}

#[test]
fn a_fold_cut_short_between_commits_is_finished_by_the_next_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let head = two_long_sessions(&log, 3);
    append_acmex(&log, DAY, "never in acme");
    let p = Projector::new(&log).unwrap();
    p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap();
    let incremental = p.dump(&id("acme")).unwrap();
    // A rebuild whose memory bound is 2 entries commits after every frame; it dies at its
    // second commit's progress report, as a crash would cut it.
    let mut reports = 0;
    let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.fold(
            &log,
            &id("acme"),
            (Start::FromScratch, CommitWhen::EntriesHeld(2)),
            &mut |_| {
                reports += 1;
                assert!(reports < 2, "cut");
            },
        )
    }));
    assert!(cut.is_err());
    // Its first commit replaced the old read models: what is there is a prefix of the new.
    assert_ne!(p.dump(&id("acme")).unwrap(), incremental);
    let checkpoint = p.checkpoint(&id("acme")).unwrap();
    assert!(
        0 < checkpoint && checkpoint < head,
        "{checkpoint} of {head}"
    );
    assert_eq!(
        p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap(),
        head - checkpoint
    );
    assert_eq!(p.dump(&id("acme")).unwrap(), incremental);
}

#[test]
fn a_rebuild_drops_entries_the_log_does_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let head = two_long_sessions(&log, 2);
    append_acmex(&log, DAY, "acmex keeps its own");
    let p = Projector::new(&log).unwrap();
    p.catch_up(&log, &id("acme"), &mut |_| {}).unwrap();
    p.catch_up(&log, &id("acmex"), &mut |_| {}).unwrap();
    let (acme, acmex) = (p.dump(&id("acme")).unwrap(), p.dump(&id("acmex")).unwrap());
    for when in [CommitWhen::REBUILD, CommitWhen::EntriesHeld(2)] {
        // A stale session and a stale usage row (a newer read model beside an older log, say).
        let stale: BTreeMap<Vec<u8>, Vec<u8>> = [
            (b"Sprod\0support\0gone".to_vec(), b"stale".to_vec()),
            (
                b"Uprod\0support\0web\0\0\0\0\x01".to_vec(),
                b"stale".to_vec(),
            ),
        ]
        .into();
        p.tree.commit(&id("acme"), &stale, head).unwrap();
        let lock = p.fold_lock(&id("acme"));
        let _one_fold = one_fold(&lock);
        p.fold(&log, &id("acme"), (Start::FromScratch, when), &mut |_| {})
            .unwrap();
        assert_eq!(p.dump(&id("acme")).unwrap(), acme, "{when:?}");
        assert_eq!(p.dump(&id("acmex")).unwrap(), acmex, "{when:?}");
    }
}

#[test]
fn day_numbers_are_utc_dates_in_exactly_one_shape() {
    assert_eq!(day_number("1970-01-01"), Ok(0));
    assert_eq!(day_number("1970-01-02"), Ok(1));
    let n = day_number("2026-11-30").unwrap();
    assert_eq!(day_string(n), "2026-11-30");
    for bad in [
        "2026-11-3",
        "2026/11/30",
        "2026-11-30T00:00:00Z",
        "2026-13-01",
        "2026-02-30",
        "",
    ] {
        assert!(day_number(bad).is_err(), "{bad}");
    }
}

/// A node whose log lost a tenant's events (deleted here, or purged from the stream by another
/// node) drops that tenant's read models and snapshots, and only that tenant's; read models
/// that match the log are left alone.
/// A log in `dir` where acme's session s1 says "hi" (its last seq returned), and a snapshot
/// store in `sessions`.
fn acme_says_hi(
    dir: &std::path::Path,
    sessions: &std::path::Path,
) -> (EventLog, SnapshotStore, u64) {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    let last = append_in(
        &log,
        ("acme", "support"),
        "web",
        "s1",
        0,
        DAY,
        vec![msg("hi")],
    );
    (log, SnapshotStore::new(sessions.to_owned()), last)
}

#[test]
fn read_models_ahead_of_the_log_are_dropped_with_the_snapshots() {
    let (dir, sessions) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log, snapshots, _) = acme_says_hi(dir.path(), sessions.path());
    append_acmex(&log, DAY, "hello");
    let p = Projector::new(&log).unwrap();
    for t in ["acme", "acmex"] {
        p.catch_up(&log, &id(t), &mut |_| {}).unwrap();
        std::fs::create_dir_all(sessions.path().join(t).join("prod")).unwrap();
        std::fs::write(sessions.path().join(t).join("prod/s1.cbor"), b"x").unwrap();
    }
    let acmex = p.dump(&id("acmex")).unwrap();
    assert_eq!(
        p.forget_if_deleted(&log, &snapshots, &id("acme")).unwrap(),
        0
    );
    assert!(sessions.path().join("acme").is_dir());

    log.delete_tenant_blocking(&id("acme")).unwrap();
    assert!(p.forget_if_deleted(&log, &snapshots, &id("acme")).unwrap() > 0);
    assert!(p.dump(&id("acme")).unwrap().is_empty());
    assert_eq!(p.checkpoint(&id("acme")).unwrap(), 0);
    assert!(!sessions.path().join("acme").exists());
    assert_eq!(
        p.forget_if_deleted(&log, &snapshots, &id("acme")).unwrap(),
        0
    );
    // acmex (acme's name is a prefix of it) keeps everything.
    assert_eq!(p.dump(&id("acmex")).unwrap(), acmex);
    assert_eq!(
        p.forget_if_deleted(&log, &snapshots, &id("acmex")).unwrap(),
        0
    );
    assert!(sessions.path().join("acmex/prod/s1.cbor").is_file());
}

#[test]
fn a_panic_in_one_tenants_background_fold_leaves_the_others_folding() {
    let (dir, sessions) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (log, snapshots, last) = acme_says_hi(dir.path(), sessions.path());
    let p = Arc::new(Projector::new(&log).unwrap());
    // The probe comes first: every round panics in it before acme's turn.
    let tenants = vec![id(FOLD_PANIC_PROBE), id("acme")];
    let every = std::time::Duration::from_millis(5);
    let background = Background::start(log.clone(), p.clone(), snapshots, tenants, every).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while p.checkpoint(&id("acme")).unwrap() < last {
        assert!(
            std::time::Instant::now() < deadline,
            "acme was never folded"
        );
        std::thread::sleep(every);
    }
    // And it goes on: a later append is folded too.
    append_in(
        &log,
        ("acme", "support"),
        "web",
        "s1",
        last,
        DAY,
        vec![msg("again")],
    );
    while p.checkpoint(&id("acme")).unwrap() < last + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "acme's second message was never folded"
        );
        std::thread::sleep(every);
    }
    drop(background);
}
