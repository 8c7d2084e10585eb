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
