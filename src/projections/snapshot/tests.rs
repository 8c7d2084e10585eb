use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use ciborium::Value;
use serde::{Deserialize, Serialize};

use super::*;
use crate::fuzzing::SnapshotIds as Ids;

fn acme() -> Ids {
    Ids::of("acme", "prod", "default", "sess-1")
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Step {
    Idle,
    Awaiting { node: String, retries: u32 },
    Done(u64),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sample {
    flow: String,
    step: Step,
    vars: BTreeMap<String, String>,
    counters: BTreeMap<String, u64>,
    history: Vec<Step>,
    big: u64,
    note: Option<String>,
}

fn sample() -> Sample {
    Sample {
        flow: "onboarding".to_owned(),
        step: Step::Awaiting {
            node: "ask_email".to_owned(),
            retries: 2,
        },
        vars: BTreeMap::from([
            ("name".to_owned(), "Zoë".to_owned()),
            ("plan".to_owned(), "pro".to_owned()),
        ]),
        counters: BTreeMap::from([("messages".to_owned(), 7), ("max".to_owned(), u64::MAX)]),
        history: vec![Step::Idle, Step::Done(3)],
        big: 1 << 40,
        note: None,
    }
}

/// A seq that encodes as `0x19 hi lo`, so the bit-flip test knows which bytes hold its value.
const SEQ: u64 = 1000;

fn store(dir: &tempfile::TempDir) -> SnapshotStore {
    SnapshotStore::new(dir.path().join("sessions"))
}

/// A file in our layout whose state is `state` verbatim, with a correct `state_len` and CRC, so
/// that hostile state bytes get past the envelope checks.
fn file_with_raw_state(key: &SnapshotKey, state: &[u8]) -> Vec<u8> {
    let len = u64::try_from(state.len()).unwrap();
    let crc = covered_crc(&encode_head(key, SEQ, len).unwrap(), state);
    let mut bytes = encode_prefix(key, SEQ, len, crc).unwrap();
    bytes.extend_from_slice(state);
    bytes
}

fn read_as<T: DeserializeOwned>(
    store: &SnapshotStore,
    ids: &Ids,
) -> Result<Option<Snapshot<T>>, SnapshotError> {
    store.read(&ids.key())
}

fn put_file(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// Every entry under `dir`, as paths relative to it, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if path.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// `depth` nested one-element arrays around a 0.
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut bytes = vec![0x81; depth];
    bytes.push(0x00);
    bytes
}

/// 9-byte CBOR heads declaring 2^63 entries or bytes, with nothing after them.
fn huge_length_heads() -> Vec<(&'static str, Vec<u8>)> {
    let len = (1u64 << 63).to_be_bytes();
    [
        ("bytes", 0x5b),
        ("text", 0x7b),
        ("array", 0x9b),
        ("map", 0xbb),
    ]
    .into_iter()
    .map(|(name, head)| {
        let mut bytes = vec![head];
        bytes.extend_from_slice(&len);
        (name, bytes)
    })
    .collect()
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    store.write(&ids.key(), SEQ, &sample()).unwrap();
    let got = read_as::<Sample>(&store, &ids).unwrap();
    assert_eq!(
        got,
        Some(Snapshot {
            seq: SEQ,
            state: sample()
        })
    );
}

#[test]
fn path_layout() {
    let store = SnapshotStore::new(PathBuf::from("/data/sessions"));
    let ids = Ids::of("acme", "staging", "support", "Sess_9-x");
    assert_eq!(
        store.path(&ids.key()),
        Path::new("/data/sessions/acme/staging/support/Sess_9-x.cbor")
    );

    let dir = tempfile::tempdir().unwrap();
    let store = self::store(&dir);
    store.write(&ids.key(), 1, &"s").unwrap();
    assert_eq!(
        tree(&dir.path().join("sessions")),
        [
            "acme",
            "acme/staging",
            "acme/staging/support",
            "acme/staging/support/Sess_9-x.cbor"
        ]
    );
}

#[test]
fn file_under_another_key_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let a = acme();
    store.write(&a.key(), SEQ, &sample()).unwrap();
    let bytes = fs::read(store.path(&a.key())).unwrap();

    for (other, field) in [
        (Ids::of("globex", "prod", "default", "sess-1"), "tenant"),
        (Ids::of("acme", "dev", "default", "sess-1"), "env"),
        (Ids::of("acme", "prod", "sales", "sess-1"), "team"),
        (Ids::of("acme", "prod", "default", "sess-2"), "session"),
    ] {
        put_file(&store.path(&other.key()), &bytes);
        match read_as::<Sample>(&store, &other) {
            Err(SnapshotError::Mismatch { path, detail }) => {
                assert_eq!(path, store.path(&other.key()));
                assert!(detail.starts_with(field), "{field}: {detail}");
            }
            other => panic!("{field}: expected Mismatch, got {other:?}"),
        }
    }
    // The original is still fine.
    assert!(read_as::<Sample>(&store, &a).unwrap().is_some());
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    store.write(&ids.key(), SEQ, &sample()).unwrap();
    let path = store.path(&ids.key());
    let full = fs::read(&path).unwrap();
    assert!(full.len() > 100, "the sample should exercise a real file");

    for len in 0..full.len() {
        fs::write(&path, &full[..len]).unwrap();
        match read_as::<Sample>(&store, &ids) {
            Err(SnapshotError::Corrupt { .. }) => {}
            other => panic!("truncated to {len} bytes: {other:?}"),
        }
    }
}

#[test]
fn single_bit_flips_are_never_silently_wrong_state() {
    let ids = acme();
    let key = ids.key();
    let full = encode(&key, SEQ, &sample()).unwrap();
    // Where seq's value bytes are: after the key "seq" (0x63 's' 'e' 'q') and the head 0x19.
    let seq_key = [0x63, b's', b'e', b'q', 0x19];
    let seq_at = full
        .windows(seq_key.len())
        .position(|w| w == seq_key)
        .unwrap()
        + seq_key.len();
    let seq_value = seq_at..seq_at + 2;

    let mut flips = 0;
    for byte in 0..full.len() {
        for bit in 0..8 {
            let mut bytes = full.clone();
            bytes[byte] ^= 1 << bit;
            flips += 1;
            match decode::<Sample>(&key, &bytes) {
                Err(_) => {}
                Ok(snapshot) => panic!(
                    "flip of byte {byte} bit {bit} (seq at {seq_value:?}) decoded as seq {}",
                    snapshot.seq
                ),
            }
        }
    }
    assert!(flips >= 200, "{flips}");
}

#[test]
fn huge_declared_lengths_are_rejected_without_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    let path = store.path(&ids.key());
    // If any of these were pre-allocated, the test would abort on a capacity overflow or OOM.
    for (name, head) in huge_length_heads() {
        // As the whole file.
        put_file(&path, &head);
        assert!(
            matches!(
                read_as::<Value>(&store, &ids),
                Err(SnapshotError::Corrupt { .. })
            ),
            "{name} as the file"
        );
        // As the state, past the envelope checks.
        put_file(&path, &file_with_raw_state(&ids.key(), &head));
        assert!(
            matches!(
                read_as::<Value>(&store, &ids),
                Err(SnapshotError::Corrupt { .. })
            ),
            "{name} as the state"
        );
        // Straight into the state decoder, as types that would pre-allocate if they trusted it.
        assert!(
            decode_exact::<Value>(&head, STATE_DEPTH_MAX).is_err(),
            "{name}"
        );
        assert!(
            decode_exact::<Vec<u64>>(&head, STATE_DEPTH_MAX).is_err(),
            "{name}"
        );
        assert!(
            decode_exact::<String>(&head, STATE_DEPTH_MAX).is_err(),
            "{name}"
        );
        assert!(decode_exact::<serde_bytes::ByteBuf>(&head, STATE_DEPTH_MAX).is_err());
        assert!(decode_exact::<BTreeMap<String, u64>>(&head, STATE_DEPTH_MAX).is_err());
        assert!(
            decode_exact::<Sample>(&head, STATE_DEPTH_MAX).is_err(),
            "{name}"
        );
    }
}

#[test]
fn deep_nesting_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    let path = store.path(&ids.key());
    let deep = nested_arrays(100_000);

    put_file(&path, &deep);
    assert!(matches!(
        read_as::<Value>(&store, &ids),
        Err(SnapshotError::Corrupt { .. })
    ));
    put_file(&path, &file_with_raw_state(&ids.key(), &deep));
    match read_as::<Value>(&store, &ids) {
        Err(SnapshotError::Corrupt { detail, .. }) => {
            assert!(detail.contains("nested"), "{detail}")
        }
        other => panic!("{other:?}"),
    }

    // The limit is exactly STATE_DEPTH_MAX levels of state, also inside the envelope.
    assert!(decode_exact::<Value>(&nested_arrays(STATE_DEPTH_MAX), STATE_DEPTH_MAX).is_ok());
    assert!(decode_exact::<Value>(&nested_arrays(STATE_DEPTH_MAX + 1), STATE_DEPTH_MAX).is_err());
    put_file(
        &path,
        &file_with_raw_state(&ids.key(), &nested_arrays(STATE_DEPTH_MAX)),
    );
    assert!(read_as::<Value>(&store, &ids).unwrap().is_some());
    put_file(
        &path,
        &file_with_raw_state(&ids.key(), &nested_arrays(STATE_DEPTH_MAX + 1)),
    );
    assert!(read_as::<Value>(&store, &ids).is_err());
}

#[test]
fn oversized_file_is_rejected_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    let path = store.path(&ids.key());
    put_file(&path, b"");
    let limit = u64::try_from(SNAPSHOT_BYTES_MAX).unwrap();
    // Sparse files: the second one would take minutes and 1 TiB of memory to read.
    for len in [limit + 1, 1 << 40] {
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len)
            .unwrap();
        match read_as::<Value>(&store, &ids) {
            Err(SnapshotError::TooLarge { len: got, .. }) => assert_eq!(got, len),
            other => panic!("{len}: {other:?}"),
        }
    }
}

#[test]
fn oversized_state_is_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    let state = serde_bytes::ByteBuf::from(vec![0u8; SNAPSHOT_BYTES_MAX]);
    assert!(matches!(
        store.write(&ids.key(), 1, &state),
        Err(SnapshotError::TooLarge { .. })
    ));
    assert!(!store.path(&ids.key()).exists());
}

#[test]
fn missing_file_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    assert_eq!(read_as::<Sample>(&store, &ids).unwrap(), None);
    // Same when only a sibling session has a snapshot.
    store
        .write(
            &Ids::of("acme", "prod", "default", "other").key(),
            1,
            &sample(),
        )
        .unwrap();
    assert_eq!(read_as::<Sample>(&store, &ids).unwrap(), None);
}

#[test]
fn writes_leave_no_temp_files_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    store.write(&ids.key(), 1, &sample()).unwrap();
    let mut second = sample();
    second.step = Step::Done(9);
    second.vars.clear();
    store.write(&ids.key(), 2, &second).unwrap();

    let got = read_as::<Sample>(&store, &ids).unwrap().unwrap();
    assert_eq!(
        got,
        Snapshot {
            seq: 2,
            state: second
        }
    );
    assert_eq!(
        tree(store.path(&ids.key()).parent().unwrap()),
        ["sess-1.cbor"]
    );
}

#[test]
fn unsynced_writes_replace_the_same_file_with_the_same_bytes_and_leave_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let (synced, unsynced) = (store(&dir), SnapshotStore::new(dir.path().join("unsynced")));
    let ids = acme();
    unsynced
        .write_as(&ids.key(), 1, &sample(), Durability::Unsynced)
        .unwrap();
    let mut second = sample();
    second.step = Step::Done(9);
    unsynced
        .write_as(&ids.key(), 2, &second, Durability::Unsynced)
        .unwrap();
    synced.write(&ids.key(), 2, &second).unwrap();

    let got = read_as::<Sample>(&unsynced, &ids).unwrap().unwrap();
    assert_eq!((got.seq, got.state), (2, second));
    let (a, b) = (synced.path(&ids.key()), unsynced.path(&ids.key()));
    assert_eq!(fs::read(a).unwrap(), fs::read(&b).unwrap());
    assert_eq!(tree(b.parent().unwrap()), ["sess-1.cbor"]);
}

#[test]
fn remove_deletes_one_snapshot_and_tolerates_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let a = acme();
    let b = Ids::of("acme", "prod", "default", "sess-2");
    store.write(&a.key(), 1, &sample()).unwrap();
    store.write(&b.key(), 1, &sample()).unwrap();

    store.remove(&a.key()).unwrap();
    assert_eq!(read_as::<Sample>(&store, &a).unwrap(), None);
    assert!(read_as::<Sample>(&store, &b).unwrap().is_some());
    store.remove(&a.key()).unwrap();
    // Nothing at all under the root yet.
    SnapshotStore::new(dir.path().join("none"))
        .remove(&a.key())
        .unwrap();
}

#[test]
fn remove_tenant_removes_only_that_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let acme_1 = acme();
    let acme_2 = Ids::of("acme", "dev", "sales", "x");
    let globex = Ids::of("globex", "prod", "default", "sess-1");
    // A tenant whose name starts with the other's must survive too.
    let acme_corp = Ids::of("acme-corp", "prod", "default", "sess-1");
    for ids in [&acme_1, &acme_2, &globex, &acme_corp] {
        store.write(&ids.key(), 1, &sample()).unwrap();
    }

    store.remove_tenant(&acme_1.tenant).unwrap();
    assert_eq!(read_as::<Sample>(&store, &acme_1).unwrap(), None);
    assert_eq!(read_as::<Sample>(&store, &acme_2).unwrap(), None);
    assert!(read_as::<Sample>(&store, &globex).unwrap().is_some());
    assert!(read_as::<Sample>(&store, &acme_corp).unwrap().is_some());
    assert!(!dir.path().join("sessions/acme").exists());
    // Again, now that it has none.
    store.remove_tenant(&acme_1.tenant).unwrap();
}

#[test]
fn file_is_one_standard_cbor_map_with_state_last() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let ids = acme();
    store.write(&ids.key(), SEQ, &sample()).unwrap();
    let bytes = fs::read(store.path(&ids.key())).unwrap();

    // ciborium's generic decoder, which knows nothing of our layout.
    let mut rest = &bytes[..];
    let value: Value = ciborium::from_reader(&mut rest).unwrap();
    assert!(rest.is_empty(), "one item spanning the whole file");
    let Value::Map(entries) = value else {
        panic!("not a map: {value:?}")
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_text().unwrap()).collect();
    assert_eq!(keys, KEYS);

    let get = |name: &str| {
        &entries
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .unwrap()
            .1
    };
    let uint = |name: &str| u64::try_from(get(name).as_integer().unwrap()).unwrap();
    assert_eq!(uint("v"), FORMAT_VERSION);
    assert_eq!(get("tenant").as_text(), Some("acme"));
    assert_eq!(get("env").as_text(), Some("prod"));
    assert_eq!(get("team").as_text(), Some("default"));
    assert_eq!(get("session").as_text(), Some("sess-1"));
    assert_eq!(uint("seq"), SEQ);
    assert_eq!(get("state"), &Value::serialized(&sample()).unwrap());

    // The state is exactly the last state_len bytes, and the CRC covers every byte before the
    // "crc32c" key, then those.
    let state_len = usize::try_from(uint("state_len")).unwrap();
    let tail = &bytes[bytes.len() - state_len..];
    let crc_key = [0x66, b'c', b'r', b'c', b'3', b'2', b'c'];
    let head_end = bytes
        .windows(crc_key.len())
        .position(|w| w == crc_key)
        .unwrap();
    let expected = crc32c::crc32c_append(crc32c::crc32c(&bytes[..head_end]), tail);
    assert_eq!(uint("crc32c"), u64::from(expected));
    let state: Sample = ciborium::from_reader(tail).unwrap();
    assert_eq!(state, sample());
}

#[test]
fn other_version_is_rejected() {
    let ids = acme();
    let mut bytes = encode(&ids.key(), SEQ, &sample()).unwrap();
    // Map header, then "v" (0x61 'v'), then its value 1.
    assert_eq!(bytes[..4], [0xa9, 0x61, b'v', 0x01]);
    bytes[3] = 0x02;
    assert!(matches!(
        decode::<Sample>(&ids.key(), &bytes),
        Err(Failure::UnsupportedVersion(2))
    ));
}

#[test]
fn trailing_bytes_and_wrong_types_are_corrupt() {
    let ids = acme();
    let mut bytes = encode(&ids.key(), SEQ, &sample()).unwrap();
    assert!(matches!(
        decode::<Vec<u64>>(&ids.key(), &bytes),
        Err(Failure::Corrupt(_))
    ));
    bytes.push(0x00);
    assert!(matches!(
        decode::<Sample>(&ids.key(), &bytes),
        Err(Failure::Corrupt(_))
    ));
    // The state decoder also insists on one item spanning all its bytes.
    assert!(matches!(
        decode_exact::<u64>(&[0x00, 0x00], STATE_DEPTH_MAX),
        Err(Failure::Corrupt(detail)) if detail.contains("trailing")
    ));
}
