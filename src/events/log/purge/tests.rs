use serde::Serialize;

use super::*;
use crate::events::log::{AppendGroup, LogOptions};
use crate::events::schema::EventKind;
use crate::tenancy::{ChannelId, SessionId, TenantCtx};

const WINDOW: u64 = 1_000;

/// A record as version 1 wrote it: no `v`, no `at_ms`.
#[derive(Serialize)]
struct V1Record {
    session: SessionId,
    first_seq: u64,
    last_seq: u64,
    #[serde(with = "serde_bytes")]
    ack: Vec<u8>,
}

fn ctx(tenant: &str) -> TenantCtx {
    TenantCtx::new(
        tenant.parse().unwrap(),
        "prod".parse().unwrap(),
        Some("support".parse().unwrap()),
    )
}

#[test]
fn a_v1_record_still_reads_and_expires_one_window_after_the_first_purge() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let acme = ctx("acme");
    let web: ChannelId = "web".parse().unwrap();
    // A tenant needs a frame to be listed; the v1 record sits beside it.
    let group = AppendGroup {
        ctx: acme.clone(),
        channel: web.clone(),
        session: "s1".parse().unwrap(),
        expected_seq: 0,
        at_ms: 5,
        kinds: vec![EventKind::SessionStarted {
            user: "u".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        }],
        idempotency: None,
    };
    log.append_blocking(group).unwrap();
    let v1 = V1Record {
        session: "s1".parse().unwrap(),
        first_seq: 1,
        last_seq: 1,
        ack: vec![7],
    };
    let team = acme.team_or_default();
    let key = keys::idempotency_key(&acme.tenant, &acme.env, &team, &web, "old");
    let store = log.inner.shared.store().unwrap();
    store
        .tree
        .insert(key, rmp_serde::to_vec_named(&v1).unwrap())
        .unwrap();

    let rec = log.scope(&acme).idempotency(&web, "old").unwrap().unwrap();
    assert_eq!((rec.v, rec.at_ms, rec.ack.clone()), (1, 0, vec![7]));
    // The first purge cannot know its age: it stamps it instead of guessing.
    let report = log.purge_idempotency(10_000, WINDOW).unwrap();
    assert_eq!((report.stamped, report.removed), (1, 0));
    let rec = log.scope(&acme).idempotency(&web, "old").unwrap().unwrap();
    assert_eq!((rec.v, rec.at_ms), (IDEMPOTENCY_RECORD_VERSION, 10_000));
    assert_eq!(
        log.purge_idempotency(10_000 + WINDOW - 1, WINDOW)
            .unwrap()
            .kept,
        1
    );
    assert_eq!(
        log.purge_idempotency(10_000 + WINDOW, WINDOW)
            .unwrap()
            .removed,
        1
    );
    assert_eq!(log.scope(&acme).idempotency(&web, "old").unwrap(), None);
}

#[test]
fn an_unreadable_record_is_kept_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let acme = ctx("acme");
    let web: ChannelId = "web".parse().unwrap();
    let team = acme.team_or_default();
    let key = keys::idempotency_key(&acme.tenant, &acme.env, &team, &web, "bad");
    let store = log.inner.shared.store().unwrap();
    store.tree.insert(key.clone(), &[0xc1u8][..]).unwrap();
    let report = log.purge_idempotency(u64::MAX, WINDOW).unwrap();
    assert_eq!((report.unreadable, report.removed), (1, 0));
    assert!(store.tree.get(key).unwrap().is_some());
}
