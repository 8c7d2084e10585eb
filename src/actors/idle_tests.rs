//! What a live idle session costs (issue 13: at most 1.5 KiB each): the sizes that decide it,
//! held to their budgets, and ids shared by the sessions of an env instead of copied into each.
//! `tenantry-bench runtime` measures the whole (RSS per idle session).

use std::mem::size_of;

use actix::dev::ContextFut;
use actix::Context;

use super::env::{SessionEntry, SessionKey};
use super::messages::Inbound;
use super::session::SessionActor;
use super::tests::{ctx, msg, say, web, with_support_snapshot, Harness};
use crate::projections::session::SessionState;
use crate::tenancy::SessionId;

/// What tokio 1.x adds to a spawned future in its task allocation (header, scheduler, id, stage
/// tag, trailer), which it then rounds up to a multiple of 128 bytes.
const TOKIO_TASK_OVERHEAD_BYTES: usize = 104;
/// The task allocation of an idle session actor (its whole actix context and actor inside).
const SESSION_TASK_BYTES_MAX: usize = 512;
/// A live session's entry in its env actor's map (key and value; the table adds a control byte
/// and its spare capacity).
const SESSION_ENTRY_BYTES_MAX: usize = 72;

#[test]
fn an_idle_session_actor_and_its_entry_stay_within_their_budgets() {
    let task = size_of::<ContextFut<SessionActor, Context<SessionActor>>>();
    assert!(
        task + TOKIO_TASK_OVERHEAD_BYTES <= SESSION_TASK_BYTES_MAX,
        "a session actor's task future is {task} bytes: its task would pass \
         {SESSION_TASK_BYTES_MAX} bytes; keep large or rarely used parts behind a pointer"
    );
    let entry = size_of::<SessionKey>() + size_of::<SessionEntry>();
    assert!(
        entry <= SESSION_ENTRY_BYTES_MAX,
        "a live session's env entry is {entry} bytes"
    );
}

/// A message to `session` on `web` whose session id is `session` itself (not a copy).
fn to(session: &SessionId) -> Inbound {
    Inbound {
        session: Some(session.clone()),
        user: "ada".into(),
        text: "hello".into(),
        message_id: None,
    }
}

#[actix_rt::test]
async fn live_sessions_share_their_scope_ids_and_keep_one_copy_of_their_own() {
    let h = Harness::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let rt = h.start_with(|opts| opts.egress = Some(tx));
    let acme = ctx("acme", "prod");
    let sessions = [
        SessionId::parse("s-a").unwrap(),
        SessionId::parse("s-b").unwrap(),
    ];
    // The first round spawns both actors from nothing; the second rehydrates them from the
    // snapshots their passivation wrote, whose ids are decoded copies.
    for round in 0..2 {
        let mut out = Vec::new();
        for s in &sessions {
            rt.send(&acme, &web(), to(s)).await.unwrap();
            out.push(rx.recv().await.unwrap());
        }
        let [a, b] = &out[..] else { unreachable!() };
        let same = |x: &str, y: &str| x.as_ptr() == y.as_ptr();
        assert!(
            same(a.tenant.as_str(), b.tenant.as_str()),
            "round {round}: tenant copied"
        );
        assert!(
            same(a.env.as_str(), b.env.as_str()),
            "round {round}: env copied"
        );
        assert!(
            same(a.team.as_str(), b.team.as_str()),
            "round {round}: team copied"
        );
        assert!(
            same(a.channel.as_str(), b.channel.as_str()),
            "round {round}: channel copied"
        );
        // Each actor keeps the session id it was started with, not a copy of it.
        for (e, s) in out.iter().zip(&sessions) {
            assert_eq!(e.session, *s);
            assert!(
                same(e.session.as_str(), s.as_str()),
                "round {round}: {s} copied"
            );
        }
        h.clock.advance_ms(11 * 60 * 1000);
        rt.sweep().await;
        assert_eq!(
            rt.metrics()
                .active_sessions
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
    rt.shutdown().await;
}

/// The snapshot lane exists only while a write is in flight (made for it, dropped after it):
/// across a periodic write and the passivation's final one, what is left on disk is the newest
/// state. (A regression guard for the lane's lifecycle; whether the two writes overlap depends
/// on timing, so it does not prove their order on its own.)
#[actix_rt::test]
async fn after_snapshot_writes_come_and_go_the_passivation_leaves_the_newest_state() {
    let h = Harness::new();
    let rt = h.start();
    let acme = ctx("acme", "prod");
    let names: Vec<String> = (0..16).map(|i| format!("lane-{i}")).collect();
    for name in &names {
        // The first message's events pass `snapshot_every` (5): a write starts; the second
        // message's events make the state newer while it may still be in flight.
        say(&rt, &acme, msg(Some(name), "ada", "hello")).await;
        say(&rt, &acme, msg(Some(name), "ada", "again")).await;
    }
    h.clock.advance_ms(11 * 60 * 1000);
    rt.sweep().await;
    for name in &names {
        let session = SessionId::parse(name).unwrap();
        let snap = with_support_snapshot(&h, &acme, &session, |store, key| {
            store.read::<SessionState>(key).unwrap()
        })
        .expect("passivation wrote a snapshot");
        let newest = rt.session_state(&acme, &session).unwrap().unwrap();
        assert_eq!(
            snap.seq, newest.last_seq,
            "{name}: an older snapshot landed last"
        );
        assert_eq!(snap.state, newest);
    }
    rt.shutdown().await;
}
