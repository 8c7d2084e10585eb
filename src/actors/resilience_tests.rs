//! Runtime tests of what must hold when things go wrong: a retried failure, bounded idempotency
//! records, panics in tenant and env actors, and the bound on live sessions.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::env::{EVICT_BATCH, EVICT_IDLE_MS_MIN};
use super::lane::RUNNING_SHARE_MIN;
use super::messages::RuntimeError;
use super::session::{PANIC_PROBE, STORED_REPLIES_BYTES_MAX};
use super::supervise::{ENV_PANIC_PROBE, TENANT_PANIC_PROBE};
use super::tests::{ctx, msg, say, web, Harness};
use crate::projections::snapshot::hold;
use crate::tenancy::SessionId;

#[actix_rt::test]
async fn a_retry_of_a_message_whose_flow_panicked_gets_the_same_error() {
    let (_h, rt, acme) = Harness::started();
    let mut m = msg(None, "ada", PANIC_PROBE);
    m.message_id = Some("boom-1".into());
    let first = rt.send(&acme, &web(), m.clone()).await;
    let Err(RuntimeError::FlowCrashed(session)) = &first else {
        panic!("expected FlowCrashed, got {first:?}");
    };
    let retry = rt.send(&acme, &web(), m.clone()).await;
    match &retry {
        Err(e @ RuntimeError::FlowCrashed(s)) => {
            assert_eq!(s, session);
            assert_eq!(e.to_string(), first.as_ref().unwrap_err().to_string());
        }
        other => panic!("the retry got {other:?}, not the first answer {first:?}"),
    }
    // Nothing was appended twice: one MessageReceived, one FlowFailed.
    let state = rt.session_state(&acme, session).unwrap().unwrap();
    assert_eq!((state.messages_in, state.flow_errors), (1, 1));
    // A later message of the session is served normally.
    let ok = say(&rt, &acme, msg(Some(session.as_str()), "ada", "after")).await;
    assert_eq!(ok.replies, vec!["ACME heard: after"]);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_retry_whose_replies_were_too_big_to_keep_says_they_were_omitted() {
    let (_h, rt, acme) = Harness::started();
    let long = "x".repeat(STORED_REPLIES_BYTES_MAX + 1);
    let mut m = msg(None, "ada", &long);
    m.message_id = Some("long-1".into());
    let first = say(&rt, &acme, m.clone()).await;
    assert_eq!(first.replies, vec![format!("ACME heard: {long}")]);
    assert!(!first.replies_omitted);
    let retry = say(&rt, &acme, m).await;
    assert!(retry.duplicate);
    assert!(retry.replies_omitted, "{retry:?}");
    assert!(retry.replies.is_empty());
    assert_eq!((&retry.session, retry.seq), (&first.session, first.seq));
    // A small answer is kept whole.
    let mut small = msg(None, "bob", "hi");
    small.message_id = Some("small-1".into());
    let first = say(&rt, &acme, small.clone()).await;
    let retry = say(&rt, &acme, small).await;
    assert_eq!(retry.replies, first.replies);
    assert!(!retry.replies_omitted);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn idempotency_records_expire_after_the_window_and_only_theirs() {
    let h = Harness::new();
    let rt = h.start();
    let window = rt_window_ms(&h);
    let (acme, big) = (ctx("acme", "prod"), ctx("bigcorp", "prod"));
    let mut m = msg(None, "ada", "hello");
    m.message_id = Some("id-1".into());
    let first = say(&rt, &acme, m.clone()).await;
    h.clock.advance_ms(window - 1);
    // bigcorp's record of the same id is younger: it must outlive acme's.
    let big_first = say(&rt, &big, m.clone()).await;
    assert_eq!(rt.purge_idempotency().unwrap().removed, 0);
    assert!(
        say(&rt, &acme, m.clone()).await.duplicate,
        "expired too early"
    );
    h.clock.advance_ms(1);
    let report = rt.purge_idempotency().unwrap();
    assert_eq!((report.removed, report.kept), (1, 1));
    // Past the window the id is new again: appended, with a new seq.
    let again = say(&rt, &acme, m.clone()).await;
    assert!(!again.duplicate);
    assert_eq!(again.session, first.session);
    assert!(again.seq > first.seq, "{again:?} vs {first:?}");
    let state = rt.session_state(&acme, &first.session).unwrap().unwrap();
    assert_eq!(state.messages_in, 2);
    // bigcorp's retry is still answered from its record.
    let big_retry = say(&rt, &big, m).await;
    assert!(big_retry.duplicate);
    assert_eq!(big_retry.seq, big_first.seq);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn the_background_purge_expires_records_without_being_asked() {
    let h = Harness::new();
    let rt = h.start_with(|o| o.idempotency_purge_every = std::time::Duration::from_millis(20));
    let acme = ctx("acme", "prod");
    let mut m = msg(None, "ada", "hello");
    m.message_id = Some("bg-1".into());
    let first = say(&rt, &acme, m.clone()).await;
    h.clock.advance_ms(rt_window_ms(&h));
    let mut again = None;
    for _ in 0..250 {
        actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        if rt
            .log()
            .scope(&acme)
            .idempotency(&web(), "bg-1")
            .unwrap()
            .is_none()
        {
            again = Some(say(&rt, &acme, m.clone()).await);
            break;
        }
    }
    let again = again.expect("the background purge never removed the expired record");
    assert!(!again.duplicate && again.seq > first.seq, "{again:?}");
    rt.shutdown().await;
}

fn rt_window_ms(h: &Harness) -> u64 {
    u64::try_from(h.config.runtime().idempotency_window.as_millis()).unwrap()
}

/// Sends 20 messages of bigcorp one after another while acme's actors panic.
fn bystander(rt: &super::runtime::Runtime) -> actix_rt::task::JoinHandle<Vec<usize>> {
    let rt = rt.clone();
    actix_rt::spawn(async move {
        let big = ctx("bigcorp", "prod");
        let mut replies = Vec::new();
        for i in 0..20 {
            let ack = rt
                .send(&big, &web(), msg(Some("calm"), "bob", &format!("m{i}")))
                .await
                .unwrap();
            replies.push(ack.replies.len());
        }
        replies
    })
}

#[actix_rt::test]
async fn a_panic_in_a_tenant_actor_restarts_it_and_spares_other_tenants() {
    let h = Harness::new();
    // One arbiter: both tenants' actors share the thread the panic happens on.
    let rt = h.start_with(|o| o.workers = 1);
    let acme = ctx("acme", "prod");
    let before = say(&rt, &acme, msg(Some("s1"), "ada", "hello")).await;
    let others = bystander(&rt);
    for _ in 0..3 {
        let r = rt
            .send(&acme, &web(), msg(Some("s1"), "ada", TENANT_PANIC_PROBE))
            .await;
        // Not "shutting down": the runtime is not stopping, the message was interrupted.
        assert!(matches!(r, Err(RuntimeError::Interrupted)), "{r:?}");
    }
    assert_eq!(others.await.unwrap(), vec![1; 20]);
    // The tenant recovered, and its session went on where it was.
    let after = say(&rt, &acme, msg(Some("s1"), "ada", "again")).await;
    assert_eq!(after.replies, vec!["ACME heard: again"]);
    assert!(after.seq > before.seq);
    say(&rt, &acme, msg(None, "eve", "new session")).await;
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_panic_in_an_env_actor_restarts_it_with_its_sessions_and_spares_the_rest() {
    let h = Harness::new();
    let rt = h.start_with(|o| o.workers = 1);
    let (prod, staging) = (ctx("acme", "prod"), ctx("acme", "staging"));
    let before = say(&rt, &prod, msg(Some("s1"), "ada", "hello")).await;
    let others = bystander(&rt);
    for _ in 0..3 {
        let r = rt
            .send(&prod, &web(), msg(Some("s2"), "ada", ENV_PANIC_PROBE))
            .await;
        assert!(matches!(r, Err(RuntimeError::Interrupted)), "{r:?}");
    }
    assert_eq!(others.await.unwrap(), vec![1; 20]);
    // The tenant's other env never noticed.
    say(&rt, &staging, msg(Some("s1"), "ada", "hi")).await;
    // The env recovered: its live session continues in the same actor (acme prod s1, acme
    // staging s1 and bigcorp's are the only actors: no second one for s1), and new sessions
    // start.
    let after = say(&rt, &prod, msg(Some("s1"), "ada", "again")).await;
    assert_eq!(after.replies, vec!["ACME heard: again"]);
    assert!(after.seq > before.seq);
    let live = || rt.metrics().active_sessions.load(Ordering::Relaxed);
    assert_eq!(live(), 3);
    say(&rt, &prod, msg(None, "eve", "new session")).await;
    assert_eq!(live(), 4);
    rt.shutdown().await;
}

#[actix_rt::test]
async fn past_the_session_limits_idle_sessions_are_passivated_early_else_new_ones_refused() {
    let h = Harness::new();
    let rt = h.start_with(|o| {
        o.sessions_max = 3;
        o.tenant_sessions_max = 2;
    });
    let (acme, big) = (ctx("acme", "prod"), ctx("bigcorp", "prod"));
    let live = || rt.metrics().active_sessions.load(Ordering::Relaxed);
    let s1 = say(&rt, &acme, msg(Some("s1"), "ada", "one")).await;
    h.clock.advance_ms(EVICT_IDLE_MS_MIN / 2);
    say(&rt, &acme, msg(Some("s2"), "bob", "two")).await;
    // acme holds its share and both sessions are busy: a third is refused, and writes nothing.
    let r = rt
        .send(&acme, &web(), msg(Some("s3"), "eve", "three"))
        .await;
    assert!(
        matches!(r, Err(RuntimeError::SessionsFull { limit: 2 })),
        "{r:?}"
    );
    assert_eq!(rt.session_state(&acme, &sid("s3")).unwrap(), None);
    // A live session of the full tenant is still served.
    say(&rt, &acme, msg(Some("s2"), "bob", "still here")).await;
    // bigcorp has its own share, but together they hit the global limit.
    say(&rt, &big, msg(Some("b1"), "bea", "hi")).await;
    assert_eq!(live(), 3);
    let r = rt.send(&big, &web(), msg(Some("b2"), "bea", "again")).await;
    assert!(
        matches!(r, Err(RuntimeError::SessionsFull { limit: 3 })),
        "{r:?}"
    );
    // Once s1 (the least recently used) is idle, a new acme session takes its place; s2, used
    // since, stays live.
    h.clock.advance_ms(EVICT_IDLE_MS_MIN / 2 + 1);
    say(&rt, &acme, msg(Some("s3"), "eve", "three")).await;
    assert_eq!(live(), 3);
    let s2_again = rt
        .send(&acme, &web(), msg(Some("s2"), "bob", "live?"))
        .await;
    assert!(s2_again.is_ok(), "{s2_again:?}");
    // s1 was passivated cleanly: it comes back (making room again) where it was.
    h.clock.advance_ms(EVICT_IDLE_MS_MIN);
    let back = say(&rt, &acme, msg(Some("s1"), "ada", "back")).await;
    assert!(back.seq > s1.seq, "{back:?}");
    let state = rt.session_state(&acme, &sid("s1")).unwrap().unwrap();
    // Its events are 1 + 6 (first message) + 6 (this one): nothing lost, nothing doubled.
    assert_eq!((state.messages_in, state.last_seq), (2, back.seq + 5));
    assert_eq!(back.replies, vec!["ACME heard: back"]);
    assert!(live() <= 3);
    rt.shutdown().await;
    assert_eq!(live(), 0);
}

fn sid(s: &str) -> crate::tenancy::SessionId {
    crate::tenancy::SessionId::parse(s).unwrap()
}

#[actix_rt::test]
async fn a_tenant_short_of_room_gets_it_from_another_tenants_idle_sessions() {
    let h = Harness::new();
    let rt = h.start_with(|o| {
        o.sessions_max = 2;
        o.tenant_sessions_max = 2;
    });
    let (acme, big) = (ctx("acme", "prod"), ctx("bigcorp", "prod"));
    let live = || rt.metrics().active_sessions.load(Ordering::Relaxed);
    let s1 = say(&rt, &acme, msg(Some("s1"), "ada", "one")).await;
    say(&rt, &acme, msg(Some("s2"), "bob", "two")).await;
    let r = rt.send(&big, &web(), msg(Some("b1"), "bea", "hi")).await;
    assert!(
        matches!(r, Err(RuntimeError::SessionsFull { limit: 2 })),
        "{r:?}"
    );
    // acme's sessions go idle: bigcorp's next refusal has them passivated, and its retry fits.
    // (The env actors' periodic sweep may passivate them first: then the message fits at once.)
    h.clock.advance_ms(EVICT_IDLE_MS_MIN);
    let r = rt.send(&big, &web(), msg(Some("b1"), "bea", "hi")).await;
    let fitted = match r {
        Ok(ack) => ack,
        Err(RuntimeError::SessionsFull { .. }) => {
            for _ in 0..200 {
                if live() < 2 {
                    break;
                }
                actix_rt::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            assert!(live() < 2, "acme's idle sessions were not passivated");
            say(&rt, &big, msg(Some("b1"), "bea", "hi")).await
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(fitted.replies, vec!["BigCorp heard: hi"]);
    // Nothing of acme's was lost: s1 continues where it was.
    h.clock.advance_ms(EVICT_IDLE_MS_MIN);
    let back = say(&rt, &acme, msg(Some("s1"), "ada", "back")).await;
    assert!(back.seq > s1.seq);
    assert_eq!(
        rt.session_state(&acme, &sid("s1"))
            .unwrap()
            .unwrap()
            .messages_in,
        2
    );
    rt.shutdown().await;
}

#[actix_rt::test]
async fn new_sessions_arriving_while_room_is_made_share_one_batch_of_passivations() {
    let h = Harness::new();
    const FULL: usize = 100;
    let rt = h.start_with(|o| {
        o.sessions_max = 10 * FULL;
        o.tenant_sessions_max = FULL;
        // No periodic snapshot: every passivation ends with a write of its own to hold.
        o.snapshot_every = 1_000;
    });
    let acme = ctx("acme", "prod");
    let live = || rt.metrics().active_sessions.load(Ordering::Relaxed);
    for s in 0..FULL {
        say(&rt, &acme, msg(Some(&format!("room-old{s}")), "ada", "hi")).await;
    }
    assert_eq!(live(), FULL as u64);
    h.clock.advance_ms(EVICT_IDLE_MS_MIN);
    // The old sessions' final snapshots wait until `hold` goes, so the first new session's
    // batch of passivations is still stopping when the others arrive, on every run.
    let hold = hold::writes_of("room-old");
    const NEW: usize = 8;
    let pending: Vec<_> = (0..NEW)
        .map(|s| {
            rt.submit(
                &acme,
                &web(),
                msg(Some(&format!("room-new{s}")), "bob", "hi"),
            )
            .unwrap()
        })
        .collect();
    // Travels the same mailboxes (tenant, then env) after the new sessions' messages: once it
    // is answered, the env has routed all of them.
    let nobody = SessionId::parse("room-nobody").unwrap();
    rt.reset_session(&acme, &nobody).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while hold.waiting() < EVICT_BATCH {
        assert!(
            Instant::now() < deadline,
            "{} snapshot writes held",
            hold.waiting()
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    drop(hold);
    for answer in pending {
        assert!(answer.await.is_ok());
    }
    // One batch went, not one per new session (which would have passivated them all).
    let passivated = FULL + NEW - usize::try_from(live()).unwrap();
    assert!(
        (NEW..=EVICT_BATCH).contains(&passivated),
        "{passivated} sessions passivated for {NEW} new ones"
    );
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_burst_past_the_tenants_running_share_is_answered_in_full_and_in_order() {
    let h = Harness::new();
    let rt = h.start_with(|o| o.running_max = RUNNING_SHARE_MIN);
    let acme = ctx("acme", "prod");
    const SESSIONS: usize = 4;
    const EACH: usize = 20;
    // Five times the share at once: most wait in the tenant's lane and start as others finish.
    let pending: Vec<_> = (0..SESSIONS * EACH)
        .map(|n| {
            let session = format!("burst{}", n % SESSIONS);
            let text = format!("m{n}");
            rt.submit(&acme, &web(), msg(Some(&session), "ada", &text))
                .unwrap()
        })
        .collect();
    let mut last_seq = [0u64; SESSIONS];
    for (n, answer) in pending.into_iter().enumerate() {
        let ack = answer.await.unwrap();
        // A session's messages ran in the order they were submitted.
        assert!(ack.seq > last_seq[n % SESSIONS], "m{n}: {ack:?}");
        last_seq[n % SESSIONS] = ack.seq;
    }
    for s in 0..SESSIONS {
        let sid = SessionId::parse(&format!("burst{s}")).unwrap();
        let state = rt.session_state(&acme, &sid).unwrap().unwrap();
        assert_eq!(state.messages_in, EACH as u64);
    }
    assert_eq!(rt.metrics().inflight.load(Ordering::Relaxed), 0);
    rt.shutdown().await;
}
