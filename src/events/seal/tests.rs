use std::sync::Arc;

use super::*;

fn scope(session: &str) -> SealScope<'_> {
    SealScope {
        tenant: "acme",
        env: "prod",
        team: "default",
        session,
    }
}

#[test]
fn a_wrapped_key_unwraps_only_under_its_kek_and_session() {
    let kek = DataKey::generate();
    let key = DataKey::generate();
    let wrapped = wrap_key(&kek, &scope("s1"), &key);
    assert_eq!(wrapped.len(), WRAPPED_KEY_BYTES);
    let back = unwrap_key(&kek, &scope("s1"), &wrapped).unwrap();
    assert_eq!(back.expose(), key.expose());
    assert!(matches!(
        unwrap_key(&kek, &scope("s2"), &wrapped),
        Err(SealError::Open)
    ));
    assert!(matches!(
        unwrap_key(&DataKey::generate(), &scope("s1"), &wrapped),
        Err(SealError::Open)
    ));
    assert!(matches!(
        unwrap_key(&kek, &scope("s1"), &wrapped[..20]),
        Err(SealError::Truncated(20))
    ));
}

#[test]
fn a_key_shows_no_bytes_in_debug() {
    let key = DataKey::from_slice(&[0xab; DATA_KEY_BYTES]).unwrap();
    assert_eq!(format!("{key:?}"), "DataKey(..)");
    assert!(DataKey::from_slice(&[0; 31]).is_none());
}

#[test]
fn a_deterministic_seal_repeats_for_the_same_value_only_and_opens_like_any_seal() {
    let key = DataKey::generate();
    let a = seal_deterministic(&key, b"aad", b"value");
    assert_eq!(a, seal_deterministic(&key, b"aad", b"value"));
    assert_ne!(a, seal_deterministic(&key, b"aad", b"other value"));
    assert_ne!(a, seal_deterministic(&key, b"other aad", b"value"));
    assert_ne!(
        a,
        seal_deterministic(&DataKey::generate(), b"aad", b"value")
    );
    assert_eq!(open(&key, b"aad", &a).unwrap().as_slice(), b"value");
    assert!(open(&key, b"other aad", &a).is_err());
}

#[test]
fn a_seal_takes_a_fresh_nonce_each_time_on_every_thread() {
    let key = Arc::new(DataKey::generate());
    let mut nonces = std::collections::HashSet::new();
    let mut check = |sealed: Vec<u8>| {
        assert_eq!(open(&key, b"aad", &sealed).unwrap().as_slice(), b"value");
        assert!(
            nonces.insert(sealed[..NONCE_BYTES].to_vec()),
            "a nonce repeated"
        );
    };
    for _ in 0..1_000 {
        check(seal(&key, b"aad", b"value"));
    }
    // Other threads' generators are seeded on their own: none repeats this thread's nonces.
    let others: Vec<Vec<u8>> = (0..4)
        .map(|_| {
            let key = key.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|_| seal(&key, b"aad", b"value"))
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    for sealed in others {
        check(sealed);
    }
    assert_eq!(nonces.len(), 2_000);
}

#[test]
fn an_open_into_a_buffer_appends_what_open_returns_and_a_failed_one_leaves_it_as_it_was() {
    let key = DataKey::generate();
    let id = uuid::Uuid::from_bytes([7; 16]);
    let aad = event_aad(&scope("s1"), &id);
    let mut built = Vec::new();
    event_aad_into(&mut built, &scope("s1"), id.as_bytes());
    assert_eq!(
        built, aad,
        "the reused buffer builds the same associated data"
    );
    let sealed = seal(&key, &aad, b"the personal fields");
    let mut out = b"before".to_vec();
    let span = open_into(&key, &aad, &sealed, &mut out).unwrap();
    assert_eq!(
        &out[span.clone()],
        open(&key, &aad, &sealed).unwrap().as_slice()
    );
    assert_eq!(&out[..span.start], b"before");
    // The wrong key, another event's associated data, changed bytes, a truncated part.
    let mut changed = sealed.clone();
    if let Some(b) = changed.last_mut() {
        *b ^= 1;
    }
    let other_aad = event_aad(&scope("s2"), &id);
    for (k, a, s) in [
        (&DataKey::generate(), aad.as_slice(), sealed.as_slice()),
        (&key, other_aad.as_slice(), sealed.as_slice()),
        (&key, aad.as_slice(), changed.as_slice()),
        (&key, aad.as_slice(), &sealed[..NONCE_BYTES + TAG_BYTES - 1]),
    ] {
        let mut out = b"before".to_vec();
        assert!(open_into(k, a, s, &mut out).is_err());
        assert_eq!(out, b"before", "a part that does not open adds nothing");
    }
}

#[test]
fn the_fast_read_of_personal_fields_agrees_with_serde_and_leaves_other_forms_to_it() {
    let kinds = [
        EventKind::SessionStarted {
            user: "ana".into(),
            flow: "f".into(),
            flow_version: "1".into(),
        },
        EventKind::MessageReceived {
            message_id: "m1".into(),
            user: "ana".into(),
            text: "ünïcode ".repeat(40),
        },
        EventKind::ReplySent {
            node: "n".into(),
            text: String::new(),
        },
        EventKind::StateSet {
            key: "k".into(),
            value: "v".repeat(70_000),
        },
    ];
    for kind in &kinds {
        let (_, bytes) = split(kind).unwrap();
        let fast = personal_view_fast(&bytes).expect("the writer's own layout reads fast");
        let serde: PersonalView<'_> = decode_limited(&bytes).unwrap();
        assert_eq!(
            (fast.user, fast.text, fast.value),
            (serde.user, serde.text, serde.value)
        );
    }
    // Forms the fast read leaves to serde: an `error` field, a repeated field, bytes left over,
    // text that is not UTF-8.
    let flow_failed = split(&EventKind::FlowFailed {
        node: "n".into(),
        error: "boom".into(),
    })
    .unwrap()
    .1;
    assert!(personal_view_fast(&flow_failed).is_none());
    assert!(personal_view(&flow_failed).is_ok());
    let repeated = [
        0x82, 0xa4, b't', b'e', b'x', b't', 0xa1, b'a', 0xa4, b't', b'e', b'x', b't', 0xa1, b'b',
    ];
    assert!(personal_view_fast(&repeated).is_none());
    assert!(
        personal_view(&repeated).is_err(),
        "serde refuses a repeated field"
    );
    let trailing = [0x81, 0xa4, b'u', b's', b'e', b'r', 0xa1, b'a', 0xc0];
    assert!(personal_view_fast(&trailing).is_none());
    let not_utf8 = [0x81, 0xa4, b'u', b's', b'e', b'r', 0xa1, 0xff];
    assert!(personal_view_fast(&not_utf8).is_none());
    assert!(personal_view(&not_utf8).is_err());
}
