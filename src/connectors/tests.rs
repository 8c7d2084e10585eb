use std::time::Duration;

use super::*;

#[test]
fn state_decays_by_heartbeat_intervals() {
    let interval = Duration::from_secs(10);
    let at = |s: u64| ConnectorState::by_age(Duration::from_secs(s), interval);
    assert_eq!(at(0), ConnectorState::Live);
    assert_eq!(at(19), ConnectorState::Live);
    assert_eq!(at(20), ConnectorState::Stale);
    assert_eq!(at(49), ConnectorState::Stale);
    assert_eq!(at(50), ConnectorState::Dead);
    for s in [
        ConnectorState::Live,
        ConnectorState::Stale,
        ConnectorState::Dead,
    ] {
        assert_eq!(ConnectorState::parse(s.as_str()), Some(s));
    }
    assert_eq!(ConnectorState::parse("gone"), None);
}

#[test]
fn system_sessions_are_named_by_their_connector() {
    let longest = crate::tenancy::ConnectorId::parse(&"c".repeat(63)).unwrap();
    let session = system_session(&longest);
    assert!(is_system_session(session.as_str()));
    assert!(!is_system_session("0190a0b0-0000-7000-8000-000000000000"));
}

#[test]
fn registry_events_round_trip_through_the_codec() {
    use crate::events::schema::{EventKind, KindView, SCHEMA_VERSION};
    let id = uuid::Uuid::now_v7();
    for kind in [
        EventKind::ConnectorRegistered {
            connector: "slack-1".into(),
            provider: "messaging-slack".into(),
            version: "1.2.0".into(),
            capabilities: vec!["text".into(), "files".into()],
            healed: true,
        },
        EventKind::ConnectorStateChanged {
            connector: "slack-1".into(),
            from: "live".into(),
            to: "stale".into(),
        },
    ] {
        let data = kind.encode_data();
        let back = EventKind::decode_data(kind.name(), SCHEMA_VERSION, &data, &id).unwrap();
        assert_eq!(back, kind);
        let view = KindView::decode(kind.name(), SCHEMA_VERSION, &data).unwrap();
        assert_eq!(view, KindView::Connector);
        assert_eq!(kind.data_json()["connector"], "slack-1");
    }
}
