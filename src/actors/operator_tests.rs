//! The operator's session controls (issue #14's close and reset): a close appends
//! `SessionEnded { reason: "closed by operator" }` durably and once, also for a quarantined
//! session, and `Runtime::quarantined_sessions` lists a parked session in its scope only, until
//! it is reset.

use super::messages::RuntimeError;
use super::session::PANIC_PROBE;
use super::tests::{ctx, msg, say, web, Harness};
use crate::events::schema::EventKind;
use crate::projections::session::SessionStatus;
use crate::tenancy::{TeamId, TenantCtx};

#[actix_rt::test]
async fn an_operator_close_appends_session_ended_durably_and_only_once() {
    let (h, rt, acme) = Harness::started();
    let first = say(&rt, &acme, msg(None, "ada", "hello")).await;
    let session = first.session.clone();
    let web = web();
    let ack = rt.close_session(&acme, &web, &session).await.unwrap();
    // The close is the session's last event, alone in its group, and durable at the ack.
    let events: Vec<_> = rt
        .log()
        .scope(&acme)
        .session_events(&session, 1..=u64::MAX)
        .map(|e| e.unwrap().event)
        .collect();
    let last = events.last().unwrap();
    assert_eq!(ack.seq, last.seq);
    assert_eq!(ack.replies, Vec::<String>::new());
    assert_eq!(
        last.kind,
        EventKind::SessionEnded {
            reason: "closed by operator".into()
        }
    );
    let state = rt.session_state(&acme, &session).unwrap().unwrap();
    assert_eq!(
        state.status,
        SessionStatus::Ended {
            reason: "closed by operator".into()
        }
    );
    // Closing again, or writing to it by name, is refused and appends nothing.
    let again = rt.close_session(&acme, &web, &session).await;
    assert!(
        matches!(again, Err(RuntimeError::SessionEnded(_))),
        "{again:?}"
    );
    let named = rt
        .send(&acme, &web, msg(Some(session.as_str()), "ada", "hi"))
        .await;
    assert!(
        matches!(named, Err(RuntimeError::SessionEnded(_))),
        "{named:?}"
    );
    let count = rt.log().scope(&acme).session_last_seq(&session).unwrap();
    assert_eq!(count, last.seq);
    // The user's next message opens a new session.
    let next = say(&rt, &acme, msg(None, "ada", "hello again")).await;
    assert_ne!(next.session, session);
    rt.shutdown().await;
    drop(rt);
    // After a restart the close is still there (it was acked after the durable append).
    let rt = h.start();
    let state = rt.session_state(&acme, &session).unwrap().unwrap();
    assert!(!state.is_open());
    rt.shutdown().await;
}

#[actix_rt::test]
async fn an_operator_can_close_a_quarantined_session_which_leaves_the_list() {
    let (_h, rt, acme) = Harness::started();
    let victim = say(&rt, &acme, msg(None, "ada", "hello")).await.session;
    let v = Some(victim.as_str());
    for _ in 0..4 {
        let r = rt.send(&acme, &web(), msg(v, "ada", PANIC_PROBE)).await;
        assert!(matches!(r, Err(RuntimeError::FlowCrashed(_))), "{r:?}");
    }
    assert_eq!(rt.quarantined_sessions(&acme).len(), 1);
    let ack = rt.close_session(&acme, &web(), &victim).await.unwrap();
    assert!(ack.seq > 2);
    assert!(rt.quarantined_sessions(&acme).is_empty());
    let state = rt.session_state(&acme, &victim).unwrap().unwrap();
    assert!(!state.is_open());
    rt.shutdown().await;
}

#[actix_rt::test]
async fn quarantined_sessions_lists_a_parked_session_in_its_scope_only_until_reset() {
    let (_h, rt, acme) = Harness::started();
    let victim = say(&rt, &acme, msg(None, "ada", "hello")).await.session;
    let healthy = say(&rt, &acme, msg(None, "eve", "hi")).await.session;
    assert!(rt.quarantined_sessions(&acme).is_empty());
    for _ in 0..4 {
        let r = rt
            .send(
                &acme,
                &web(),
                msg(Some(victim.as_str()), "ada", PANIC_PROBE),
            )
            .await;
        assert!(matches!(r, Err(RuntimeError::FlowCrashed(_))), "{r:?}");
    }
    let support = TeamId::parse("support").unwrap();
    assert_eq!(
        rt.quarantined_sessions(&acme),
        vec![(support.clone(), victim.clone())]
    );
    assert!(!rt
        .quarantined_sessions(&acme)
        .iter()
        .any(|(_, s)| *s == healthy));
    // All teams of the env see it; another env, tenant or team does not.
    let all_teams = TenantCtx::new(acme.tenant.clone(), acme.env.clone(), None);
    assert_eq!(rt.quarantined_sessions(&all_teams).len(), 1);
    assert!(rt.quarantined_sessions(&ctx("acme", "staging")).is_empty());
    assert!(rt.quarantined_sessions(&ctx("bigcorp", "prod")).is_empty());
    let sales = TenantCtx::new(
        acme.tenant.clone(),
        acme.env.clone(),
        Some(TeamId::parse("sales").unwrap()),
    );
    assert!(rt.quarantined_sessions(&sales).is_empty());
    rt.reset_session(&acme, &victim).await.unwrap();
    // The reset is delivered through the actors: the next message is served after it.
    let back = say(&rt, &acme, msg(Some(victim.as_str()), "ada", "back")).await;
    assert_eq!(back.replies, vec!["ACME heard: back"]);
    assert!(rt.quarantined_sessions(&acme).is_empty());
    rt.shutdown().await;
}
