//! `Runtime::pause_tenant` (offboarding): the tenant's messages are refused and its sessions
//! stopped (snapshotted) while paused, other tenants carry on, and the tenant is served again
//! once the pause is dropped.

use std::sync::atomic::Ordering;

use super::messages::RuntimeError;
use super::tests::{ctx, msg, web, Harness};
use crate::tenancy::TenantId;

#[actix_rt::test]
async fn a_paused_tenant_refuses_messages_with_its_sessions_stopped_and_serves_again_after() {
    let (h, rt, acme) = Harness::started();
    let bigcorp = ctx("bigcorp", "prod");
    let live = || rt.metrics().active_sessions.load(Ordering::Relaxed);
    rt.send(&acme, &web(), msg(Some("a1"), "ada", "hi"))
        .await
        .unwrap();
    rt.send(&bigcorp, &web(), msg(Some("b1"), "bob", "hi"))
        .await
        .unwrap();
    assert_eq!(live(), 2);

    let pause = rt.pause_tenant(&acme.tenant).await.unwrap();
    assert_eq!(live(), 1, "acme's session was stopped, bigcorp's was not");
    assert!(
        h.data()
            .join("sessions/acme/prod/support/a1.cbor")
            .is_file(),
        "the stopped session was snapshotted"
    );
    let refused = rt
        .send(&acme, &web(), msg(Some("a1"), "ada", "again"))
        .await;
    assert!(
        matches!(refused, Err(RuntimeError::TenantDeleting(_))),
        "{refused:?}"
    );
    let close = rt
        .close_session(&acme, &web(), &"a1".parse().unwrap())
        .await;
    assert!(
        matches!(close, Err(RuntimeError::TenantDeleting(_))),
        "{close:?}"
    );
    let second = rt.pause_tenant(&acme.tenant).await;
    assert!(matches!(second, Err(RuntimeError::TenantDeleting(_))));
    rt.send(&bigcorp, &web(), msg(Some("b1"), "bob", "still here"))
        .await
        .unwrap();
    let unknown = rt.pause_tenant(&TenantId::parse("nobody").unwrap()).await;
    assert!(matches!(unknown, Err(RuntimeError::UnknownTenant(_))));

    drop(pause);
    let ack = rt
        .send(&acme, &web(), msg(Some("a1"), "ada", "back"))
        .await
        .unwrap();
    assert!(ack.seq > 2, "the session's history is intact: {ack:?}");
    rt.shutdown().await;
}
