use super::*;
use crate::events::schema::{Event, EventKind, EventView};
use crate::tenancy::*;

fn sample(kind: EventKind) -> Event {
    Event {
        id: uuid::Uuid::now_v7(),
        tenant: TenantId::parse("acme").unwrap(),
        env: EnvId::parse("prod").unwrap(),
        team: TeamId::parse("support").unwrap(),
        channel: ChannelId::parse("slack").unwrap(),
        session: SessionId::parse("s1").unwrap(),
        seq: 3,
        tenant_seq: 42,
        at_ms: 1_700_000_000_000,
        kind,
    }
}

fn all_kinds() -> Vec<EventKind> {
    crate::fuzzing::sample_kinds()
}

#[test]
fn every_kind_round_trips() {
    for kind in all_kinds() {
        let event = sample(kind);
        let body = encode_body(&event);
        assert_eq!(decode_body(&body).unwrap(), event);
    }
}

#[test]
fn frame_round_trips_and_chains() {
    let bodies: Vec<Vec<u8>> = all_kinds()
        .into_iter()
        .map(|k| encode_body(&sample(k)))
        .collect();
    let prev = [7u8; 32];
    let frame = encode_frame(&prev, &bodies);
    let view = decode_frame(&frame).unwrap();
    assert_eq!(view.prev_hash, prev);
    assert_eq!(view.bodies.len(), bodies.len());
    let hashes = view.hashes();
    assert_eq!(hashes[0], chain_hash(&prev, &bodies[0]));
    assert_eq!(hashes[1], chain_hash(&hashes[0], &bodies[1]));
    assert_eq!(view.last_hash(), *hashes.last().unwrap());
}

#[test]
fn every_truncation_and_bit_flip_of_a_frame_is_detected() {
    let bodies = vec![encode_body(&sample(all_kinds().remove(1)))];
    let frame = encode_frame(&GENESIS_HASH, &bodies);
    for len in 0..frame.len() {
        assert!(
            decode_frame(&frame[..len]).is_err(),
            "truncation to {len} accepted"
        );
    }
    for byte in 0..frame.len() {
        for bit in 0..8 {
            let mut bad = frame.clone();
            bad[byte] ^= 1 << bit;
            assert!(
                decode_frame(&bad).is_err(),
                "flip of byte {byte} bit {bit} accepted"
            );
        }
    }
}

#[test]
fn v1_message_received_is_upcast() {
    // A v1 record, as the seed-era writer produced it: no message_id in the payload.
    #[derive(serde::Serialize)]
    struct V1Data<'a> {
        user: &'a str,
        text: &'a str,
    }
    #[derive(serde::Serialize)]
    struct V1Body<'a> {
        v: u16,
        id: uuid::Uuid,
        tenant: &'a str,
        env: &'a str,
        team: &'a str,
        channel: &'a str,
        session: &'a str,
        seq: u64,
        tenant_seq: u64,
        at: u64,
        kind: &'a str,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    }
    let id = uuid::Uuid::now_v7();
    let data = rmp_serde::to_vec_named(&V1Data {
        user: "ada",
        text: "hello",
    })
    .unwrap();
    let body = rmp_serde::to_vec_named(&V1Body {
        v: 1,
        id,
        tenant: "acme",
        env: "prod",
        team: "support",
        channel: "slack",
        session: "s1",
        seq: 2,
        tenant_seq: 9,
        at: 5,
        kind: "MessageReceived",
        data,
    })
    .unwrap();
    let event = decode_body(&body).unwrap();
    assert_eq!(
        event.kind,
        EventKind::MessageReceived {
            message_id: id.to_string(),
            user: "ada".into(),
            text: "hello".into()
        }
    );
    assert_eq!(event.seq, 2);
    // The fold's view reads v1 bodies too.
    let view = decode_body_view(&body).unwrap();
    assert_eq!(view, EventView::from(&event));
}

#[test]
fn the_fold_view_of_every_kind_is_the_view_of_its_full_decode() {
    for kind in all_kinds() {
        let event = sample(kind);
        let body = encode_body(&event);
        let view = decode_body_view(&body).unwrap();
        assert_eq!(view, EventView::from(&event));
        // Every string of the view points into the body: nothing was copied.
        let inside = body.as_ptr_range();
        for part in [view.tenant, view.env, view.team, view.channel, view.session] {
            assert!(inside.contains(&part.as_ptr()), "{part} was copied");
        }
    }
}

#[test]
fn the_fold_view_refuses_a_payload_missing_a_field_the_full_decode_requires() {
    // A ReplySent whose data lacks `node`: the view does not read it, but it must be there.
    #[derive(serde::Serialize)]
    struct TextOnly<'a> {
        text: &'a str,
    }
    let event = sample(EventKind::ReplySent {
        node: "n".into(),
        text: "hi".into(),
    });
    let body = encode_body(&event);
    let mut value = rmpv::decode::read_value(&mut &body[..]).unwrap();
    let data = rmp_serde::to_vec_named(&TextOnly { text: "hi" }).unwrap();
    if let rmpv::Value::Map(entries) = &mut value {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("data") {
                *v = rmpv::Value::Binary(data.clone());
            }
        }
    }
    let mut patched = Vec::new();
    rmpv::encode::write_value(&mut patched, &value).unwrap();
    assert!(decode_body(&patched).is_err());
    assert!(matches!(
        decode_body_view(&patched),
        Err(CodecError::Schema(SchemaError::Malformed(_)))
    ));
}

#[test]
fn unknown_versions_and_kinds_are_typed_errors() {
    let event = sample(EventKind::NodeEntered { node: "x".into() });
    let body = encode_body(&event);
    // Patch the version: re-encode through a generic value.
    let mut value = rmpv::decode::read_value(&mut &body[..]).unwrap();
    if let rmpv::Value::Map(entries) = &mut value {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("v") {
                *v = rmpv::Value::from(99);
            }
        }
    }
    let mut patched = Vec::new();
    rmpv::encode::write_value(&mut patched, &value).unwrap();
    assert!(matches!(
        decode_body(&patched),
        Err(CodecError::Schema(SchemaError::Version(99)))
    ));
    assert!(matches!(
        decode_body_view(&patched),
        Err(CodecError::Schema(SchemaError::Version(99)))
    ));
}

#[test]
fn deep_nesting_and_huge_lengths_do_not_panic() {
    // 100k nested arrays.
    let mut deep = vec![0x91u8; 100_000];
    deep.push(0xc0);
    assert!(decode_body(&deep).is_err());
    assert!(decode_body_view(&deep).is_err());
    // A map declaring u32::MAX entries, and a str declaring 4 GiB, with no bytes behind them.
    assert!(decode_body(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(decode_body(&[0xdb, 0xff, 0xff, 0xff, 0xff]).is_err());
    // A frame whose record declares a huge length.
    let mut frame = encode_frame(&GENESIS_HASH, &[vec![0xc0]]);
    frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&frame[5..]);
    frame[1..5].copy_from_slice(&crc.to_le_bytes());
    assert!(matches!(
        decode_frame(&frame),
        Err(CodecError::RecordLength { .. })
    ));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode_body(&bytes);
        let _ = decode_frame(&bytes);
    }
}

#[test]
fn the_fold_view_refuses_data_as_an_array_which_no_writer_writes() {
    // The full decoder copies an array of integers into the data bytes; the view borrows them,
    // so it refuses with a typed error rather than read something else.
    let event = sample(EventKind::NodeEntered { node: "x".into() });
    let body = encode_body(&event);
    let mut value = rmpv::decode::read_value(&mut &body[..]).unwrap();
    if let rmpv::Value::Map(entries) = &mut value {
        for (k, v) in entries.iter_mut() {
            if k.as_str() == Some("data") {
                let bytes = v.as_slice().unwrap().to_vec();
                *v = rmpv::Value::Array(bytes.into_iter().map(rmpv::Value::from).collect());
            }
        }
    }
    let mut patched = Vec::new();
    rmpv::encode::write_value(&mut patched, &value).unwrap();
    assert_eq!(decode_body(&patched).unwrap(), event);
    assert!(matches!(
        decode_body_view(&patched),
        Err(CodecError::Schema(SchemaError::Malformed(_)))
    ));
}

#[test]
fn the_writers_envelope_layout_is_read_directly_and_any_other_form_as_serde_reads_it() {
    for kind in all_kinds() {
        let mut event = sample(kind);
        // Every width of the integers and strings the writer may use.
        for (seq, len) in [(1, 1), (300, 40), (70_000, 128)] {
            let session = "s".repeat(len);
            event.seq = seq;
            event.tenant_seq = u64::from(u32::MAX) + seq;
            event.session = SessionId::parse(&session).unwrap();
            let body = encode_body(&event);
            assert!(envelope::read(&body, None).is_some(), "the writer's layout");
            assert_eq!(decode_body_view(&body).unwrap(), EventView::from(&event));
        }
    }
    // The same event as an array (a form serde reads, not the writer's) and with its keys in
    // another order: not the fast path, read all the same.
    let event = sample(EventKind::NodeEntered { node: "x".into() });
    let body = encode_body(&event);
    let value = rmpv::decode::read_value(&mut &body[..]).unwrap();
    let rmpv::Value::Map(entries) = value else {
        panic!("a body is a map")
    };
    let mut reversed = entries.clone();
    reversed.reverse();
    let array = rmpv::Value::Array(entries.into_iter().map(|(_, v)| v).collect());
    for other in [array, rmpv::Value::Map(reversed)] {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &other).unwrap();
        assert!(envelope::read(&bytes, None).is_none());
        assert_eq!(decode_body_view(&bytes).unwrap(), EventView::from(&event));
    }
    // Cut anywhere, the fast path reads nothing (and nothing panics).
    for cut in 0..body.len() {
        assert!(envelope::read(&body[..cut], None).is_none(), "cut at {cut}");
    }
}

/// A key source of one session's key (or none: erased).
struct OneKey(Option<DataKey>);

impl KeySource for OneKey {
    fn data_key(&self, scope: &SealScope<'_>) -> Result<Option<DataKey>, String> {
        Ok(self.0.clone().filter(|_| scope.session == "s1"))
    }
}

const CANARY: &str = "canary-7f3a";

fn canary_kinds() -> Vec<EventKind> {
    vec![
        EventKind::SessionStarted {
            user: CANARY.into(),
            flow: "f".into(),
            flow_version: "1".into(),
        },
        EventKind::MessageReceived {
            message_id: "m-1".into(),
            user: CANARY.into(),
            text: CANARY.into(),
        },
        EventKind::ReplySent {
            node: "n".into(),
            text: CANARY.into(),
        },
        EventKind::StateSet {
            key: "k".into(),
            value: CANARY.into(),
        },
        EventKind::FlowFailed {
            node: "n".into(),
            error: CANARY.into(),
        },
    ]
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_sealed_body_holds_no_personal_plaintext_and_opens_with_its_key() {
    let key = DataKey::generate();
    for kind in canary_kinds().into_iter().chain(all_kinds()) {
        let event = sample(kind);
        let body = encode_body_sealed(&EventRef::from(&event), &key);
        assert!(!contains(&body, CANARY), "{} leaks", event.kind.name());
        let with_key = decode_body_with(&body, Some(&OneKey(Some(key.clone())))).unwrap();
        assert_eq!(with_key.event, event);
        let sealed = seal::split(&event.kind).is_some();
        let expect = if sealed {
            Sealing::Opened
        } else {
            Sealing::Plain
        };
        assert_eq!(with_key.sealing, expect);
        // The fold's view reads the same, once opened.
        let (mut view, part) = decode_body_view_sealed(&body).unwrap();
        assert_eq!(part.is_some(), sealed);
        let opened = part.map(|p| open_view(&view, &p, &key).unwrap());
        if let Some(opened) = &opened {
            overlay_view(&mut view, opened).unwrap();
        }
        assert_eq!(view, EventView::from(&event));
    }
}

#[test]
fn without_its_key_a_sealed_body_reads_as_its_public_fields_erased() {
    let key = DataKey::generate();
    let event = sample(EventKind::MessageReceived {
        message_id: "m-1".into(),
        user: CANARY.into(),
        text: CANARY.into(),
    });
    let body = encode_body_sealed(&EventRef::from(&event), &key);
    for keys in [None, Some(&OneKey(None) as &dyn KeySource)] {
        let d = decode_body_with(&body, keys).unwrap();
        assert_eq!(d.sealing, Sealing::Erased);
        assert_eq!(
            d.event.kind,
            EventKind::MessageReceived {
                message_id: "m-1".into(),
                user: String::new(),
                text: String::new(),
            }
        );
        assert_eq!(d.event.id, event.id);
    }
    // Another key (a stale or forged one) is corruption, not erasure.
    let other = OneKey(Some(DataKey::generate()));
    assert!(matches!(
        decode_body_with(&body, Some(&other)),
        Err(CodecError::Seal(SealError::Open))
    ));
}

#[test]
fn a_sealed_part_is_bound_to_its_event_and_session() {
    let key = DataKey::generate();
    let a = sample(EventKind::ReplySent {
        node: "n".into(),
        text: CANARY.into(),
    });
    let mut b = a.clone();
    b.id = uuid::Uuid::now_v7();
    let body_a = encode_body_sealed(&EventRef::from(&a), &key);
    let body_b = encode_body_sealed(&EventRef::from(&b), &key);
    // Move a's sealed part into b's body: it does not open there.
    let part = |body: &[u8]| {
        let value = rmpv::decode::read_value(&mut &body[..]).unwrap();
        let rmpv::Value::Map(entries) = value else {
            panic!("a body is a map")
        };
        entries
    };
    let sealed_a = part(&body_a)
        .into_iter()
        .find(|(k, _)| k.as_str() == Some("sealed"))
        .unwrap()
        .1;
    let mut moved = part(&body_b);
    for (k, v) in moved.iter_mut() {
        if k.as_str() == Some("sealed") {
            *v = sealed_a.clone();
        }
    }
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &rmpv::Value::Map(moved)).unwrap();
    assert!(matches!(
        decode_body_with(&bytes, Some(&OneKey(Some(key)))),
        Err(CodecError::Seal(SealError::Open))
    ));
}

#[test]
fn v2_bodies_still_decode_and_a_seal_on_them_is_refused() {
    let event = sample(EventKind::StateSet {
        key: "k".into(),
        value: "v".into(),
    });
    let body = encode_body(&event);
    let d = decode_body_with(&body, None).unwrap();
    assert_eq!((d.event, d.sealing), (event.clone(), Sealing::Plain));
    // A v2 body that claims a sealed part is malformed.
    let value = rmpv::decode::read_value(&mut &body[..]).unwrap();
    let rmpv::Value::Map(mut entries) = value else {
        panic!("a body is a map")
    };
    entries.push((
        rmpv::Value::from("sealed"),
        rmpv::Value::Binary(vec![0; 48]),
    ));
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &rmpv::Value::Map(entries)).unwrap();
    assert!(matches!(
        decode_body_with(&bytes, None),
        Err(CodecError::UnexpectedSeal { version: 2, .. })
    ));
}

#[test]
fn the_fast_envelope_reader_reads_a_sealed_body() {
    let key = DataKey::generate();
    let event = sample(EventKind::StateSet {
        key: "k".into(),
        value: CANARY.into(),
    });
    let body = encode_body_sealed(&EventRef::from(&event), &key);
    let fast = envelope::read(&body, None).expect("the writer's v3 layout");
    assert!(fast.sealed.is_some());
    assert_eq!(fast.v, SCHEMA_VERSION_SEALED);
}

#[test]
fn the_envelope_keys_are_fixstr_markers_and_names() {
    // The `Body` struct's field names, in order.
    let names = "v id tenant env team channel session seq tenant_seq at kind data".split(' ');
    assert_eq!(names.clone().count(), envelope::KEYS.len());
    for (key, name) in envelope::KEYS.iter().zip(names) {
        assert_eq!(usize::from(key[0]), 0xa0 | name.len(), "{name}");
        assert_eq!(&key[1..], name.as_bytes());
    }
    assert_eq!(envelope::SEALED_KEY, b"\xa6sealed");
}

#[test]
fn an_id_equal_to_the_record_befores_is_borrowed_from_it() {
    let first = sample(EventKind::NodeEntered { node: "n".into() });
    let mut next = sample(EventKind::NodeEntered { node: "m".into() });
    next.seq += 1;
    next.tenant_seq += 1;
    let mut other = next.clone();
    other.session = SessionId::parse("s2").unwrap();
    other.channel = ChannelId::parse("web").unwrap();
    let (b1, b2, b3) = (encode_body(&first), encode_body(&next), encode_body(&other));
    let (v1, _) = decode_body_view_after(&b1, None).unwrap();
    let (v2, _) = decode_body_view_after(&b2, Some(&v1)).unwrap();
    assert_eq!(v2, EventView::from(&next));
    for (a, b) in [
        (v1.session, v2.session),
        (v1.channel, v2.channel),
        (v1.env, v2.env),
    ] {
        assert!(std::ptr::eq(a, b), "borrowed from the record before");
    }
    let (v3, _) = decode_body_view_after(&b3, Some(&v2)).unwrap();
    assert_eq!(v3, EventView::from(&other));
    assert!(std::ptr::eq(v3.team, v2.team));
    assert!(!std::ptr::eq(v3.session.as_ptr(), v2.session.as_ptr()));
    assert!(!std::ptr::eq(v3.channel.as_ptr(), v2.channel.as_ptr()));
    // Sessions compare the same whether their ids are borrowed or only equal.
    let (alone, _) = decode_body_view_after(&b2, None).unwrap();
    assert!(!std::ptr::eq(alone.session.as_ptr(), v1.session.as_ptr()));
    assert!(v2.same_session(&v1) && alone.same_session(&v1));
    assert!(!v3.same_session(&v2));
}
