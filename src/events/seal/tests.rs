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
