//! Runtime tests of what must hold when things go wrong: a retried failure, bounded idempotency
//! records.

use super::messages::RuntimeError;
use super::session::{PANIC_PROBE, STORED_REPLIES_BYTES_MAX};
use super::tests::{ctx, msg, say, web, Harness};

#[actix_rt::test]
async fn a_retry_of_a_message_whose_flow_panicked_gets_the_same_error() {
    let h = Harness::new();
    let rt = h.start();
    let acme = ctx("acme", "prod");
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
    let h = Harness::new();
    let rt = h.start();
    let acme = ctx("acme", "prod");
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

fn rt_window_ms(h: &Harness) -> u64 {
    u64::try_from(h.config.runtime().idempotency_window.as_millis()).unwrap()
}
