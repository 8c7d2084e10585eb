use super::*;
use crate::events::schema::{EventKind, SCHEMA_VERSION, SCHEMA_VERSION_SEALED};
use crate::events::seal;

fn all_kinds() -> Vec<EventKind> {
    crate::fuzzing::sample_kinds()
}

fn is_connector(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::ConnectorRegistered { .. }
            | EventKind::ConnectorStateChanged { .. }
            | EventKind::OutboxAcked { .. }
            | EventKind::OutboxDeadLettered { .. }
    )
}

fn encode(value: &rmpv::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).unwrap();
    bytes
}

#[test]
fn every_kind_this_build_writes_is_a_known_name_and_nothing_else_is() {
    for kind in all_kinds() {
        assert_eq!(known_kind(kind.name().as_bytes()), Some(kind.name()));
    }
    for other in [
        &b""[..],
        b"messagereceived",
        b"MessageReceived ",
        b"MessageReceive",
        b"Unknown",
        b"\xffMessageReceived",
    ] {
        assert_eq!(known_kind(other), None, "{other:?}");
    }
}

#[test]
fn the_writers_data_layout_is_read_directly_as_serde_reads_it() {
    for kind in all_kinds() {
        let name = kind.name();
        // As written without a key ring, and the public part of a sealed event.
        let mut forms = vec![(SCHEMA_VERSION, kind.encode_data())];
        if let Some((public, _)) = seal::split(&kind) {
            forms.push((SCHEMA_VERSION_SEALED, public.encode_data()));
        }
        for (version, data) in forms {
            let fast = kind_view(name, version, &data);
            let serde = KindView::decode_serde(name, version, &data).unwrap();
            if is_connector(&kind) {
                assert_eq!(fast, None, "{name}: the connector kinds are serde's");
            } else {
                assert_eq!(fast, Some(serde), "{name} v{version}");
            }
            assert_eq!(KindView::decode(name, version, &data).unwrap(), serde);
        }
    }
}

#[test]
fn a_v1_message_is_read_directly_too() {
    let data = encode(&rmpv::Value::Map(vec![
        ("user".into(), "u".into()),
        ("text".into(), "hello".into()),
    ]));
    let view = KindView::MessageReceived { text: "hello" };
    assert_eq!(kind_view("MessageReceived", 1, &data), Some(view));
    assert_eq!(
        KindView::decode_serde("MessageReceived", 1, &data).unwrap(),
        view
    );
    // The v2 layout has a message id first: a v1 body is not read as one.
    assert_eq!(kind_view("MessageReceived", 2, &data), None);
}

#[test]
fn any_other_form_falls_back_to_serde_and_reads_the_same() {
    let fields = |pairs: &[(&str, rmpv::Value)]| {
        encode(&rmpv::Value::Map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.clone()))
                .collect(),
        ))
    };
    let expect = KindView::MessageReceived { text: "hi" };
    let others = [
        // Another key order.
        fields(&[
            ("text", "hi".into()),
            ("user", "u".into()),
            ("message_id", "m".into()),
        ]),
        // A skipped field of another type (serde skips any value).
        fields(&[
            ("message_id", 7.into()),
            ("user", "u".into()),
            ("text", "hi".into()),
        ]),
        // A struct as an array.
        encode(&rmpv::Value::Array(vec![
            "m".into(),
            "u".into(),
            "hi".into(),
        ])),
    ];
    for data in &others {
        assert_eq!(kind_view("MessageReceived", 2, data), None);
        assert_eq!(
            KindView::decode("MessageReceived", 2, data).unwrap(),
            expect
        );
    }
    // Bytes after the map: not the writer's, left to serde (which reads the map).
    let mut trailing = EventKind::NodeEntered { node: "n".into() }.encode_data();
    trailing.push(0xc0);
    assert_eq!(kind_view("NodeEntered", 2, &trailing), None);
    assert_eq!(
        KindView::decode("NodeEntered", 2, &trailing).unwrap(),
        KindView::NodeEntered { node: "n" }
    );
    // A taken field that is not UTF-8 is refused by both.
    let mut bad = EventKind::NodeEntered { node: "n".into() }.encode_data();
    if let Some(last) = bad.last_mut() {
        *last = 0xff;
    }
    assert_eq!(kind_view("NodeEntered", 2, &bad), None);
    assert!(KindView::decode("NodeEntered", 2, &bad).is_err());
}

#[test]
fn cut_anywhere_the_fast_read_reads_nothing() {
    for kind in all_kinds() {
        let data = kind.encode_data();
        for cut in 0..data.len() {
            assert_eq!(
                kind_view(kind.name(), SCHEMA_VERSION, &data[..cut]),
                None,
                "{} cut at {cut}",
                kind.name()
            );
        }
    }
}
