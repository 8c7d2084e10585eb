//! Every untrusted-input decoder under random bytes, mutated valid encodings and the named nasty
//! inputs. The `check_*` functions assert the round trips; these tests assert acceptance where
//! it is due and that nothing panics.

use std::path::Path;

use proptest::prelude::*;

use super::*;
use crate::events::codec::{decode_body, decode_frame, CodecError, FRAME_HEADER_BYTES};

/// Nesting of the regression inputs here: far past every decoder's depth limit and past what
/// a 2 MiB test thread's stack could recurse through.
const DEPTH: usize = 100_000;

#[test]
fn every_seed_is_accepted() {
    for target in Target::ALL {
        let seeds = target.seeds();
        assert!(seeds.len() >= 3, "{target:?}");
        for (name, seed) in seeds {
            assert!(target.check(&seed), "{target:?} seed {name} was refused");
        }
    }
}

#[test]
fn seed_corpus_files_match_the_encoders() {
    // fuzz/seeds/<target>/ holds the seeds and regressions as files. UPDATE_SEEDS=1 rewrites
    // them (as UPDATE_EXPECT=1 does for expect-test), so they follow the formats.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let update = std::env::var_os("UPDATE_SEEDS").is_some();
    for target in Target::ALL {
        let dir = root.join(target.name());
        let mut files: Vec<(String, Vec<u8>)> = target.seeds();
        files.extend(
            target
                .regressions()
                .into_iter()
                .map(|(name, bytes)| (format!("regression-{name}"), bytes)),
        );
        if update {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &files {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SEEDS=1)", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut expected: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        expected.sort();
        assert_eq!(
            on_disk,
            expected,
            "{} (run with UPDATE_SEEDS=1)",
            dir.display()
        );
        for (name, bytes) in files {
            let stored = std::fs::read(dir.join(&name)).unwrap();
            assert!(
                stored == bytes,
                "{target:?} {name} is stale (run with UPDATE_SEEDS=1)"
            );
        }
    }
}

/// The named nasty inputs at [`DEPTH`]: each is refused, and none panics or allocates what it
/// declares (a 4 GiB or 2^64 allocation would abort the test binary).
fn refused(target: Target) {
    let cases = regressions(target, DEPTH);
    assert!(!cases.is_empty());
    for (name, bytes) in cases {
        assert!(!target.check(&bytes), "{target:?} accepted {name}");
    }
}

#[test]
fn nasty_event_records_are_refused() {
    refused(Target::EventRecord);
    // The error is the typed one, found before anything sized by the length is touched.
    let (_, frame) = &regressions(Target::EventRecord, 1)[0];
    assert!(matches!(
        decode_frame(frame),
        Err(CodecError::RecordLength { index: 0, len }) if len == u32::MAX as usize
    ));
    for (name, bytes) in regressions(Target::EventRecord, DEPTH).iter().skip(1) {
        assert!(
            matches!(
                decode_body(bytes),
                Err(CodecError::Schema(_) | CodecError::RecordLength { .. })
            ),
            "{name}"
        );
    }
    // Nesting that fits the size limit is stopped by the depth limit.
    let (_, deep) = regressions(Target::EventRecord, 60_000).pop().unwrap();
    assert_eq!(deep[..2], [0x81, 0xa2]);
    assert!(deep.len() < crate::events::codec::EVENT_BYTES_MAX);
    let err = decode_body(&deep).unwrap_err().to_string();
    assert!(err.contains("depth"), "{err}");
}

#[test]
fn nasty_snapshots_are_refused() {
    refused(Target::Snapshot);
}

#[test]
fn nasty_ingress_json_is_refused() {
    refused(Target::IngressJson);
    // Within the NATS payload limit, so the JSON parser's own depth limit must stop it.
    let (_, deep) = &regressions(Target::IngressJson, 30_000)[1];
    // serde_json skips an ignored value without recursing, so it gets to the end and finds
    // the body incomplete; what matters is that 30k levels cost no stack.
    let err = serde_json::from_slice::<MessageBody>(deep).unwrap_err();
    assert!(err.to_string().contains("missing field"), "{err}");
    // The NATS payload refuses unknown fields before reading their values.
    let err = crate::edge::nats::ingress::parse_payload_bytes(deep, None).unwrap_err();
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn nasty_subjects_are_refused() {
    refused(Target::NatsSubject);
}

#[test]
fn nasty_config_text_is_refused() {
    refused(Target::Config);
    // The alias bomb expands to 9^11 scalars if followed; the YAML reader must refuse it.
    let bomb = regressions(Target::Config, 1)
        .into_iter()
        .find(|(name, _)| *name == "yaml-alias-bomb")
        .unwrap()
        .1;
    let text = std::str::from_utf8(&bomb).unwrap();
    let err = Flow::parse(Path::new("bomb.yaml"), text).unwrap_err();
    assert!(err.to_string().contains("bomb.yaml"), "{err}");
}

#[test]
fn nasty_jwts_are_refused() {
    refused(Target::Jwt);
    // Correctly signed, but `exp` is a string: refused (jsonwebtoken >= 10.3).
    assert!(!check_jwt_claims(
        br#"{"tenant":"acme","env":"prod","exp":"4102444800","iss":"tenantry","aud":"tenantry-api"}"#
    ));
    assert!(check_jwt_claims(VALID_CLAIMS));
}

#[test]
fn frames_around_the_header_size_are_typed_errors() {
    let (_, frame) = &Target::EventRecord.seeds()[8];
    for len in 0..=FRAME_HEADER_BYTES + 8 {
        assert!(
            decode_frame(&frame[..len.min(frame.len())]).is_err(),
            "{len}"
        );
    }
}

/// One edit of a valid encoding.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Set {
        at: usize,
        byte: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Replaces everything from `at` with the tail of seed `other` from `from`.
    Splice {
        other: usize,
        from: usize,
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        2 => (any::<usize>(), prop_oneof![Just(0u8), Just(0xff), Just(0x7f), Just(0x80), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::Set { at, byte }),
        2 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(other, from, at)| Mutation::Splice { other, from, at }),
    ]
}

fn mutate(seeds: &[Vec<u8>], pick: usize, edits: &[Mutation]) -> Vec<u8> {
    let mut out = seeds[pick % seeds.len()].clone();
    for edit in edits {
        let pos = |at: usize, len: usize| at % (len + 1);
        match edit {
            Mutation::Flip { at, bit } if !out.is_empty() => {
                let i = at % out.len();
                out[i] ^= 1 << bit;
            }
            Mutation::Set { at, byte } if !out.is_empty() => {
                let i = at % out.len();
                out[i] = *byte;
            }
            Mutation::Flip { .. } | Mutation::Set { .. } => {}
            Mutation::Truncate { at } => out.truncate(pos(*at, out.len())),
            Mutation::Insert { at, bytes } => {
                let i = pos(*at, out.len());
                out.splice(i..i, bytes.iter().copied());
            }
            Mutation::Splice { other, from, at } => {
                let other = &seeds[other % seeds.len()];
                let from = pos(*from, other.len());
                out.truncate(pos(*at, out.len()));
                out.extend_from_slice(&other[from..]);
            }
        }
    }
    out
}

fn seed_bytes(target: Target) -> Vec<Vec<u8>> {
    target.seeds().into_iter().map(|(_, b)| b).collect()
}

/// Event bodies mutated and then framed with a correct CRC, so the mutation reaches the body
/// decoder instead of stopping at the checksum.
fn framed(body: Vec<u8>) -> Vec<u8> {
    encode_frame(&[0; 32], &[body])
}

/// Snapshot states (the CBOR after the envelope) of the seed snapshots.
fn snapshot_states() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (_, file) in Target::Snapshot.seeds() {
        let ids = SnapshotIds::new();
        let store = SnapshotStore::new("s".into());
        let snap = store.decode::<SessionState>(&ids.key(), &file).unwrap();
        let mut state = Vec::new();
        ciborium::into_writer(&snap.state, &mut state).unwrap();
        out.push(state);
    }
    out
}

fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..1024)
}

fn edits() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..4)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_any_decoder(bytes in random_bytes()) {
        for target in Target::ALL {
            target.check(&bytes);
        }
    }

    #[test]
    fn random_text_never_panics_text_decoders(text in "\\PC{0,300}") {
        check_nats_subject(&text);
        check_flow_yaml(&text);
        check_config_toml(&text);
        check_seed_yaml(&text);
        check_jwt(text.as_bytes());
    }

    #[test]
    fn mutated_event_records_are_typed_errors_or_round_trip(pick in any::<usize>(), e in edits()) {
        let seeds = seed_bytes(Target::EventRecord);
        let mutated = mutate(&seeds, pick, &e);
        Target::EventRecord.check(&mutated);
        // Only frames are CRC-protected: a mutated body in a valid frame reaches the decoder,
        // and the frame is accepted exactly when the body is.
        let body_ok = decode_body(&mutated).is_ok();
        prop_assert_eq!(check_event_frame(&framed(mutated)), body_ok);
    }

    #[test]
    fn mutated_frames_fail_their_checksum_or_are_unchanged(pick in any::<usize>(), e in edits()) {
        let seeds: Vec<Vec<u8>> = Target::EventRecord.seeds().into_iter()
            .filter(|(n, _)| n.starts_with("frame")).map(|(_, b)| b).collect();
        let mutated = mutate(&seeds, pick, &e);
        if decode_frame(&mutated).is_ok() {
            prop_assert!(seeds.contains(&mutated), "a changed frame passed its checks");
        }
    }

    #[test]
    fn mutated_snapshots_are_typed_errors_or_round_trip(pick in any::<usize>(), e in edits()) {
        let files = seed_bytes(Target::Snapshot);
        let mutated = mutate(&files, pick, &e);
        let ids = SnapshotIds::new();
        let store = SnapshotStore::new("s".into());
        if let Ok(snap) = store.decode::<SessionState>(&ids.key(), &mutated) {
            // A change to a file is caught by its CRC and layout checks; only an unchanged
            // file (or one a no-op edit left unchanged) is accepted.
            prop_assert!(files.contains(&mutated), "a changed snapshot was trusted: {snap:?}");
        }
        // The state decoder sees mutated states behind a valid envelope.
        let states = snapshot_states();
        check_snapshot(&mutate(&states, pick, &e));
    }

    #[test]
    fn mutated_ingress_json_is_typed_errors_or_round_trips(pick in any::<usize>(), e in edits()) {
        let mutated = mutate(&seed_bytes(Target::IngressJson), pick, &e);
        Target::IngressJson.check(&mutated);
    }

    #[test]
    fn mutated_subjects_are_typed_errors_or_rebuild_exactly(pick in any::<usize>(), e in edits()) {
        let mutated = mutate(&seed_bytes(Target::NatsSubject), pick, &e);
        Target::NatsSubject.check(&mutated);
    }

    #[test]
    fn mutated_config_text_never_panics(pick in any::<usize>(), e in edits()) {
        let mutated = mutate(&seed_bytes(Target::Config), pick, &e);
        Target::Config.check(&mutated);
    }

    #[test]
    fn mutated_jwts_are_refused_unless_unchanged(pick in any::<usize>(), e in edits()) {
        let seeds = seed_bytes(Target::Jwt);
        let mut mutated = mutate(&seeds, pick, &e);
        // Selector 0: the bare token. A changed token must fail its signature or parse.
        if mutated.first().is_some_and(|s| s % 2 == 0) && check_jwt(&mutated[1..]) {
            let token = String::from_utf8_lossy(&mutated[1..]).trim().to_owned();
            let original: Vec<String> = seeds.iter()
                .map(|s| String::from_utf8_lossy(&s[1..]).trim().trim_start_matches("Bearer ").to_owned())
                .collect();
            // Whatever the scheme's spelling, the token is the last space-separated part.
            let bare = token.rsplit(' ').next().unwrap_or_default().trim();
            prop_assert!(original.iter().any(|o| o == bare), "a changed token verified: {token}");
        }
        // Selector 1: signed claims, so mutations reach the claim checks.
        if let Some(first) = mutated.first_mut() {
            *first |= 1;
        }
        Target::Jwt.check(&mutated);
    }
}
