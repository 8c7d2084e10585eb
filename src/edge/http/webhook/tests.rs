use super::*;

const SECRET: &[u8] = b"whsec-acme";
const NOW: u64 = 1_800_000_000;

/// `sha256=<hex>` of `{timestamp}.{body}` under `secret`, computed independently of
/// `check_signature` (the HTTP tests sign with python3's hmac instead).
fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn check(timestamp: Option<&str>, signature: Option<&str>, body: &[u8]) -> Result<(), Refusal> {
    check_signature(SECRET, timestamp, signature, body, NOW)
}

#[test]
fn a_signature_over_the_timestamp_and_body_is_accepted() {
    let ts = NOW.to_string();
    let sig = sign(SECRET, &ts, b"{}");
    assert_eq!(check(Some(&ts), Some(&sig), b"{}"), Ok(()));
    // Hex case does not matter.
    assert_eq!(
        check(
            Some(&ts),
            Some(&sig.to_uppercase().replace("SHA256=", "sha256=")),
            b"{}"
        ),
        Ok(())
    );
}

#[test]
fn anything_else_signed_or_a_missing_part_is_refused() {
    let ts = NOW.to_string();
    let sig = sign(SECRET, &ts, b"{}");
    let mismatch = Err(Refusal::Signature("the signature does not match"));
    // Another body, another timestamp, another secret.
    assert_eq!(check(Some(&ts), Some(&sig), b"{} "), mismatch);
    assert_eq!(
        check(Some(&(NOW + 1).to_string()), Some(&sig), b"{}"),
        mismatch
    );
    let other = sign(b"whsec-acmex", &ts, b"{}");
    assert_eq!(check(Some(&ts), Some(&other), b"{}"), mismatch);
    // The body alone (without the timestamp) is not what is signed.
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(b"{}");
    let body_only = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(check(Some(&ts), Some(&body_only), b"{}"), mismatch);
    // A truncated MAC is refused (verify_slice needs the whole tag).
    assert_eq!(
        check(Some(&ts), Some(&sig[..sig.len() - 2]), b"{}"),
        mismatch
    );
    for (timestamp, signature) in [
        (None, Some(sig.as_str())),
        (Some(ts.as_str()), None),
        (Some("12.5"), Some(sig.as_str())),
        (Some("-1"), Some(sig.as_str())),
        (Some(ts.as_str()), Some(sig.trim_start_matches("sha256="))),
        (Some(ts.as_str()), Some("sha256=zz")),
    ] {
        let refused = check(timestamp, signature, b"{}");
        assert!(
            matches!(refused, Err(Refusal::Signature(why)) if why.contains("X-Tenantry-")),
            "{timestamp:?} {signature:?}: {refused:?}"
        );
    }
}

#[test]
fn a_correct_signature_at_a_time_past_the_tolerance_is_stale() {
    for at in [NOW - WEBHOOK_TOLERANCE_S, NOW + WEBHOOK_TOLERANCE_S] {
        let ts = at.to_string();
        assert_eq!(
            check(Some(&ts), Some(&sign(SECRET, &ts, b"x")), b"x"),
            Ok(())
        );
    }
    for at in [
        NOW - WEBHOOK_TOLERANCE_S - 1,
        NOW + WEBHOOK_TOLERANCE_S + 1,
        0,
    ] {
        let ts = at.to_string();
        let sig = sign(SECRET, &ts, b"x");
        assert_eq!(
            check(Some(&ts), Some(&sig), b"x"),
            Err(Refusal::Stale),
            "{at}"
        );
    }
}

#[test]
fn what_the_outbound_connector_signs_the_inbound_check_accepts() {
    let secret = b"a shared webhook secret";
    let body = br#"{"text":"hello"}"#;
    let now = 1_700_000_000;
    let signed = crate::connectors::webhook::signature(secret, now, body);
    let timestamp = now.to_string();
    check_signature(secret, Some(&timestamp), Some(&signed), body, now).unwrap();
    let other = crate::connectors::webhook::signature(b"another secret", now, body);
    assert!(check_signature(secret, Some(&timestamp), Some(&other), body, now).is_err());
}
