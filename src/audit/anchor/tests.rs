use super::*;
use crate::audit::export::{export, ExportFormat, ExportOptions};
use crate::audit::fixture;
use crate::tenancy::fixtures::id;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn signer(byte: u8) -> HeadSigner {
    HeadSigner::from_seed_hex(hex::encode([byte; 32]).as_bytes()).unwrap()
}

#[test]
fn a_signed_head_verifies_only_for_its_key_tenant_and_values() {
    let s = signer(7);
    let head = Head {
        tenant_seq: 42,
        hash: [9; 32],
    };
    let signed = s.sign(&id("acme"), &head, 1_000);
    assert!(signed.verify("acme", &s.public_key()));
    assert!(
        !signed.verify("acme", &signer(8).public_key()),
        "another key"
    );
    assert!(!signed.verify("acmex", &s.public_key()), "another tenant");
    let mut later = signed;
    later.tenant_seq = 43;
    assert!(!later.verify("acme", &s.public_key()), "another tenant_seq");
    let mut rehashed = signed;
    rehashed.hash[0] ^= 1;
    assert!(!rehashed.verify("acme", &s.public_key()), "another hash");
    let mut retimed = signed;
    retimed.at_ms += 1;
    assert!(!retimed.verify("acme", &s.public_key()), "another time");
    // The stored and the manifest forms carry it whole.
    assert_eq!(SignedHead::decode(42, &signed.encode()), Some(signed));
    assert_eq!(SignedHead::decode(42, &signed.encode()[1..]), None);
    assert_eq!(signed.to_manifest().parse(), Ok(signed));
}

#[test]
fn the_key_is_made_once_and_read_back_from_the_secret_store() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(secret_name().unwrap().as_str(), CHAIN_HEAD_KEY_SECRET);
    assert!(HeadSigner::load(dir.path()).unwrap().is_none());
    assert!(
        !dir.path().join("master.key").exists(),
        "a lookup creates nothing"
    );
    let (made, generated) = HeadSigner::load_or_generate(dir.path()).unwrap();
    assert!(generated);
    let (again, generated) = HeadSigner::load_or_generate(dir.path()).unwrap();
    assert!(!generated);
    assert_eq!(again.public_key(), made.public_key());
}

#[test]
fn the_signed_message_is_the_documented_byte_string() {
    let m = signed_message("acme", 258, &[0xab; 32], 3);
    let mut want = b"tenantry-head/1\0acme\0".to_vec();
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
    want.extend_from_slice(&[0xab; 32]);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
    assert_eq!(m, want);
}

#[test]
fn public_keys_are_read_as_exported_and_bad_ones_are_named() {
    let key = signer(1).public_key();
    let text = format!("  {}\n", public_key_hex(&key));
    assert_eq!(parse_public_key(&text, "k").unwrap(), key);
    let short = parse_public_key("abcd", "k.pub").unwrap_err().to_string();
    assert!(
        short.contains("k.pub") && short.contains("64 hex digits"),
        "{short}"
    );
    let not_hex = parse_public_key(&"zz".repeat(32), "k").unwrap_err();
    assert!(matches!(not_hex, AnchorError::BadPublicKey { .. }));
}

#[test]
fn heads_are_stored_per_tenant_and_removed_with_the_tenant() {
    let fx = fixture::build();
    let s = signer(3);
    let (acme, acmex) = (id("acme"), id("acmex"));
    let first = sign_and_store(&fx.log, &s, &acme, 5).unwrap().unwrap();
    let head = fx.log.tenant(&acme).head().unwrap().unwrap();
    assert_eq!((first.tenant_seq, first.hash), (head.tenant_seq, head.hash));
    // Nothing new to sign: no second head at the same place.
    assert_eq!(sign_and_store(&fx.log, &s, &acme, 6).unwrap(), None);
    assert_eq!(
        stored_heads(&fx.log, &acme, u64::MAX, 10).unwrap(),
        vec![first]
    );
    assert!(stored_heads(&fx.log, &acmex, u64::MAX, 10)
        .unwrap()
        .is_empty());
    assert!(stored_heads(&fx.log, &acme, head.tenant_seq - 1, 10)
        .unwrap()
        .is_empty());

    fx.log.delete_tenant_blocking(&acme).unwrap();
    assert!(stored_heads(&fx.log, &acme, u64::MAX, 10)
        .unwrap()
        .is_empty());
}

#[test]
fn an_export_carries_the_stored_heads_and_signs_its_tail() {
    let fx = fixture::build();
    let s = Arc::new(signer(4));
    let acme = id("acme");
    let stored = sign_and_store(&fx.log, &s, &acme, 5).unwrap().unwrap();
    fixture::converse(
        &fx.log,
        &fixture::ctx("acme", "prod"),
        "late",
        9_000_000,
        &["hi"],
    );
    let head = fx.log.tenant(&acme).head().unwrap().unwrap();
    assert!(head.tenant_seq > stored.tenant_seq);

    let mut opts = ExportOptions::new(acme.clone(), ExportFormat::Jsonl);
    let run = |opts: &ExportOptions| {
        export(
            &fx.log,
            opts,
            &mut Vec::new(),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap()
    };
    let unsigned = run(&opts);
    assert_eq!(unsigned.heads, vec![stored.to_manifest()]);
    opts.signer = Some(s.clone());
    let signed = run(&opts);
    assert_eq!(signed.heads.len(), 2);
    assert_eq!(signed.heads[0], stored.to_manifest());
    let tail = signed.heads[1].parse().unwrap();
    assert_eq!((tail.tenant_seq, tail.hash), (head.tenant_seq, head.hash));
    assert!(tail.verify("acme", &s.public_key()));
    // A resumed export carries only the heads of its range.
    opts.from_seq = stored.tenant_seq + 1;
    assert_eq!(run(&opts).heads.len(), 1);
}

#[test]
fn verify_with_the_key_checks_a_filtered_export_without_the_tail_rules() {
    use crate::audit::verify::{verify_file_with_key, Verdict};
    let fx = fixture::build();
    let s = Arc::new(signer(5));
    let acme = id("acme");
    sign_and_store(&fx.log, &s, &acme, 5).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, opts: &ExportOptions| {
        let path = dir.path().join(name);
        let mut out = Vec::new();
        export(
            &fx.log,
            opts,
            &mut out,
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        std::fs::write(&path, out).unwrap();
        path
    };
    let mut opts = ExportOptions::new(acme.clone(), ExportFormat::Jsonl);
    opts.env = Some(id("staging"));
    let filtered = write("staging.jsonl", &opts);
    let key = s.public_key();
    let verdict = verify_file_with_key(&filtered, None, Some(&key)).unwrap();
    assert!(verdict.is_intact(), "{verdict}");
    // Another key is refused there too.
    let other = signer(6).public_key();
    let Verdict::Broken(p) = verify_file_with_key(&filtered, None, Some(&other)).unwrap() else {
        panic!("another key verified");
    };
    assert_eq!(p.kind.name(), "bad head signature");
    // A whole export made without the key, after more events, has an unanchored tail.
    fixture::converse(
        &fx.log,
        &fixture::ctx("acme", "prod"),
        "late",
        9_000_000,
        &["hi"],
    );
    let whole = write(
        "whole.jsonl",
        &ExportOptions::new(acme, ExportFormat::Jsonl),
    );
    let Verdict::Broken(p) = verify_file_with_key(&whole, None, Some(&key)).unwrap() else {
        panic!("an unanchored tail verified");
    };
    assert_eq!(p.kind.name(), "unanchored");
}
