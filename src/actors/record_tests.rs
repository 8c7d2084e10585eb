//! `Runtime::record` (the connector registry's appends): a system session starts with a
//! user-less `SessionStarted` and holds registry events only; messages and closes never enter
//! one.

use super::messages::RuntimeError;
use super::tests::{msg, web, Harness};
use crate::connectors::{system_session, REGISTRY_FLOW};
use crate::events::schema::EventKind;
use crate::tenancy::{ConnectorId, TeamId, TenantCtx};

fn registered(healed: bool) -> EventKind {
    EventKind::ConnectorRegistered {
        connector: "slack-1".into(),
        provider: "messaging-slack".into(),
        version: "1".into(),
        capabilities: vec![],
        healed,
    }
}

#[actix_rt::test]
async fn a_record_appends_registry_events_to_the_system_session_only() {
    let (_h, rt, acme) = Harness::started();
    let acme = TenantCtx::new(
        acme.tenant.clone(),
        acme.env.clone(),
        Some(TeamId::parse("support").unwrap()),
    );
    let session = system_session(&ConnectorId::parse("slack-1").unwrap());
    let first = rt
        .record(&acme, &web(), &session, vec![registered(false)])
        .await
        .unwrap();
    assert_eq!(first.seq, 2, "SessionStarted first, then the registration");
    let change = EventKind::ConnectorStateChanged {
        connector: "slack-1".into(),
        from: "live".into(),
        to: "stale".into(),
    };
    let second = rt
        .record(&acme, &web(), &session, vec![change.clone()])
        .await
        .unwrap();
    assert_eq!(second.seq, 3);
    let kinds: Vec<EventKind> = rt
        .log()
        .scope(&acme)
        .session_events(&session, 1..=u64::MAX)
        .map(|e| e.unwrap().event.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::SessionStarted {
                user: String::new(),
                flow: REGISTRY_FLOW.into(),
                flow_version: "1".into(),
            },
            registered(false),
            change,
        ]
    );

    // Nothing else goes in: another kind, a plain session, a message or a close naming it.
    let other = EventKind::SessionEnded {
        reason: "no".into(),
    };
    let refused = rt.record(&acme, &web(), &session, vec![other]).await;
    assert!(
        matches!(refused, Err(RuntimeError::Invalid(_))),
        "{refused:?}"
    );
    let plain = crate::tenancy::SessionId::parse("plain-1").unwrap();
    let refused = rt
        .record(&acme, &web(), &plain, vec![registered(true)])
        .await;
    assert!(
        matches!(refused, Err(RuntimeError::Invalid(_))),
        "{refused:?}"
    );
    let refused = rt
        .send(&acme, &web(), msg(Some(session.as_str()), "ada", "hi"))
        .await;
    assert!(
        matches!(refused, Err(RuntimeError::Invalid(_))),
        "{refused:?}"
    );
    let refused = rt.close_session(&acme, &web(), &session).await;
    assert!(
        matches!(refused, Err(RuntimeError::Invalid(_))),
        "{refused:?}"
    );
    let unknown_channel = crate::tenancy::ChannelId::parse("teams").unwrap();
    let refused = rt
        .record(&acme, &unknown_channel, &session, vec![registered(true)])
        .await;
    assert!(
        matches!(refused, Err(RuntimeError::UnknownChannel { .. })),
        "{refused:?}"
    );
    assert_eq!(
        rt.log().scope(&acme).session_last_seq(&session).unwrap(),
        3,
        "no refusal wrote anything"
    );
    rt.shutdown().await;
}
