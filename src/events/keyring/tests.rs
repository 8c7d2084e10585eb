use super::*;
use crate::secrets::key::KeySources;
use crate::secrets::value::SecretValue;

fn ring(dir: &std::path::Path) -> Keyring {
    let sources = KeySources {
        master_key_hex: Some(SecretValue::new(b"ab".repeat(32))),
        signing_key: None,
    };
    Keyring::new(SecretStore::open_with(dir, sources).unwrap())
}

fn scope(session: &str) -> SealScope<'_> {
    SealScope {
        tenant: "acme",
        env: "prod",
        team: "default",
        session,
    }
}

#[test]
fn erasing_a_session_destroys_its_key_and_rotates_the_kek_so_a_stale_copy_never_unwraps() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("log").unwrap();
    let ring1 = ring(dir.path());
    let k1 = ring1.write_key(&tree, &scope("s1")).unwrap();
    let k2 = ring1.write_key(&tree, &scope("s2")).unwrap();
    // The same key again (cached, and from disk for a fresh ring).
    assert_eq!(
        ring1.write_key(&tree, &scope("s1")).unwrap().expose(),
        k1.expose()
    );
    let fresh = ring(dir.path());
    let read = fresh.read_key(&tree, &scope("s1")).unwrap().unwrap();
    assert_eq!(read.expose(), k1.expose());
    let s1_key = keys::data_key_key("acme", "prod", "default", "s1");
    let stale = tree.get(&s1_key).unwrap().unwrap();

    let acme = TenantId::parse("acme").unwrap();
    assert_eq!(
        ring1.erase_sessions(&tree, &acme, &[scope("s1")]).unwrap(),
        1
    );
    // Gone for the ring that cached it, and for a fresh one; s2 reads the same key.
    assert!(ring1.read_key(&tree, &scope("s1")).unwrap().is_none());
    let fresh = ring(dir.path());
    assert!(fresh.read_key(&tree, &scope("s1")).unwrap().is_none());
    let s2 = fresh.read_key(&tree, &scope("s2")).unwrap().unwrap();
    assert_eq!(s2.expose(), k2.expose());
    // A stale copy of the erased wrapped key (as sled may keep in its segments) does not
    // unwrap under the rotated KEK.
    tree.insert(&s1_key, stale).unwrap();
    let fresh = ring(dir.path());
    assert!(matches!(
        fresh.read_key(&tree, &scope("s1")),
        Err(KeyringError::Unwrap { .. })
    ));
    // The rotation finished: no pending KEK is left.
    assert!(fresh.kek("acme", KEK_NEXT_SECRET).unwrap().is_none());
}

#[test]
fn an_erasure_cut_short_twice_keeps_every_kept_key_readable_and_a_third_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().temporary(true).open().unwrap();
    let tree = db.open_tree("log").unwrap();
    let ring1 = ring(dir.path());
    ring1.write_key(&tree, &scope("s1")).unwrap();
    let k2 = ring1.write_key(&tree, &scope("s2")).unwrap();
    let k3 = ring1.write_key(&tree, &scope("s3")).unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let apply = |writes: &[LogWrite]| {
        for (key, value) in writes {
            match value {
                Some(v) => tree.insert(key, v.as_slice()).map(drop).unwrap(),
                None => tree.remove(key).map(drop).unwrap(),
            }
        }
    };
    // The first erasure is cut between two parts of its writes: s2 is re-wrapped under the
    // next KEK, s3 is still under the current one, and the KEK was never replaced.
    let first = ring1.start_erasure(&tree, &acme, &[scope("s1")]).unwrap();
    let s2_key = keys::data_key_key("acme", "prod", "default", "s2");
    let part: Vec<LogWrite> = first
        .writes
        .iter()
        .filter(|(k, _)| *k == s2_key)
        .cloned()
        .collect();
    assert_eq!(part.len(), 1);
    apply(&part);
    // The second is cut before any write.
    let _second = ring(dir.path())
        .start_erasure(&tree, &acme, &[scope("s1")])
        .unwrap();
    // Every kept key still reads, whichever KEK wraps it.
    let fresh = ring(dir.path());
    assert_eq!(
        fresh
            .read_key(&tree, &scope("s2"))
            .unwrap()
            .unwrap()
            .expose(),
        k2.expose()
    );
    assert_eq!(
        fresh
            .read_key(&tree, &scope("s3"))
            .unwrap()
            .unwrap()
            .expose(),
        k3.expose()
    );
    // A third erasure runs whole and finishes the rotation.
    let third = fresh.start_erasure(&tree, &acme, &[scope("s1")]).unwrap();
    apply(&third.writes);
    assert_eq!(fresh.finish_erasure(third).unwrap(), 1);
    let after = ring(dir.path());
    assert!(after.read_key(&tree, &scope("s1")).unwrap().is_none());
    assert_eq!(
        after
            .read_key(&tree, &scope("s2"))
            .unwrap()
            .unwrap()
            .expose(),
        k2.expose()
    );
    assert_eq!(
        after
            .read_key(&tree, &scope("s3"))
            .unwrap()
            .unwrap()
            .expose(),
        k3.expose()
    );
    assert!(after.kek("acme", KEK_NEXT_SECRET).unwrap().is_none());
}
