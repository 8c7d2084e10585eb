//! The corruption matrix's snapshot files (see [`super::corruption`]): session snapshots
//! truncated and bit-flipped are refused by `load_session` and rebuilt from the log, equal to a
//! clean replay; the session actor then replaces the bad file.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tenantry::projections::load::load_session;
use tenantry::projections::session::SessionState;
use tenantry::projections::snapshot::SnapshotStore;
use tenantry::tenancy::SessionId;

use super::corruption::{count_panics, ctx, ids, key, open, replay, seed, Pristine, Rng, VICTIM};
use crate::support::Serve;

#[test]
fn damaged_snapshots_are_rebuilt_from_the_log() {
    count_panics();
    let mut rng = Rng(seed() ^ 0x5a5);
    let p = Pristine::build();
    let copy = p.copy();
    let data = copy.path().join("data");
    let log = open(&data);
    let snapshots = SnapshotStore::new(data.join("sessions"));
    let (t, e, m, s) = ids(VICTIM, "s2");
    let path = snapshots.path(&key(&t, &e, &m, &s));
    let good = std::fs::read(&path).unwrap();
    let clean = &p.states[&(VICTIM, "s2")];
    assert_eq!(&replay(&log, VICTIM, "s2"), clean);

    let check = |bad: &[u8], label: &str| {
        std::fs::write(&path, bad).unwrap();
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            load_session(&log, &snapshots, &ctx(VICTIM), &s)
        }))
        .unwrap_or_else(|_| panic!("{label}: load panicked"))
        .unwrap();
        assert!(
            loaded.snapshot_problem.is_some(),
            "{label}: a damaged snapshot was trusted"
        );
        assert_eq!(loaded.snapshot_seq, 0, "{label}");
        assert_eq!(
            &loaded.state, clean,
            "{label}: the rebuilt state differs from a clean replay"
        );
    };
    let mut trials = 0;
    for len in 0..good.len() {
        check(&good[..len], &format!("snapshot truncated to {len}"));
        trials += 1;
    }
    let mut flips = 0;
    while flips < 200 {
        let mut bad = good.clone();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(bad.len());
            bad[at] ^= 1 << rng.below(8);
        }
        if bad == good {
            continue;
        }
        check(&bad, &format!("snapshot bits flipped (trial {flips})"));
        flips += 1;
    }
    println!("snapshot trials: {trials} truncations, {flips} bit flips");
    assert!(trials >= 100);
    // The good file is still used as it is.
    std::fs::write(&path, &good).unwrap();
    let loaded = load_session(&log, &snapshots, &ctx(VICTIM), &s).unwrap();
    assert_eq!(
        (loaded.snapshot_seq, loaded.snapshot_problem),
        (clean.last_seq, None)
    );
}

/// The session actor that fell back to the log replaces the bad snapshot: after a restart with
/// a truncated snapshot and one more message, the file on disk is valid again and matches a
/// clean replay.
#[actix_rt::test]
async fn a_bad_snapshot_is_replaced_by_the_session_that_rebuilt_it() {
    use tenantry::actors::messages::Inbound;
    use tenantry::actors::runtime::{Runtime, RuntimeOptions};
    use tenantry::config::{Config, LoadOptions};

    let dir = crate::support::dir_with_flows();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, Serve::shipped().config_text()).unwrap();
    let config = Config::load(&config_path, &LoadOptions::default()).unwrap();
    let data = config.server().data_dir.clone();
    let start = || {
        Runtime::start(
            &config,
            open(&data),
            SnapshotStore::new(data.join("sessions")),
            RuntimeOptions::from_config(&config),
        )
    };
    let acme = ctx("acme");
    let slack = "slack".parse().unwrap();
    let say = |session: Option<SessionId>, text: &str| Inbound {
        session,
        user: "ada".into(),
        text: text.into(),
        message_id: None,
    };

    let rt = start();
    let first = rt.send(&acme, &slack, say(None, "hello")).await.unwrap();
    let session = first.session;
    rt.send(&acme, &slack, say(Some(session.clone()), "again"))
        .await
        .unwrap();
    rt.shutdown().await; // snapshots every session
    drop(rt);

    let store = SnapshotStore::new(data.join("sessions"));
    let (t, e, m, _) = ids("acme", "s1");
    let path = store.path(&key(&t, &e, &m, &session));
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();

    let rt = start();
    rt.send(&acme, &slack, say(Some(session.clone()), "third"))
        .await
        .unwrap();
    let fallbacks = rt
        .metrics()
        .snapshot_fallbacks
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(fallbacks, 1, "the truncated snapshot was not refused");
    rt.shutdown().await;
    drop(rt);

    let log = open(&data);
    let loaded = load_session(&log, &store, &acme, &session).unwrap();
    assert_eq!(
        loaded.snapshot_problem, None,
        "the bad snapshot is still there"
    );
    assert_eq!(loaded.snapshot_seq, loaded.state.last_seq);
    let mut clean = SessionState::new(t, e, m, session.clone());
    for event in log.scope(&acme).session_events(&session, 1..=u64::MAX) {
        clean.apply(&event.unwrap().event);
    }
    assert_eq!(loaded.state, clean);
}
