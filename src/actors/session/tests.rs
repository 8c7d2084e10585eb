use serde::Serialize;

use super::*;

/// A stored answer as v1 wrote it: no `v`, `failed` or `replies_omitted`.
#[derive(Serialize)]
struct V1StoredAck {
    seq: u64,
    replies: Vec<String>,
}

fn record(ack: Vec<u8>) -> IdempotencyRecord {
    IdempotencyRecord {
        v: 1,
        session: SessionId::parse("s1").unwrap(),
        first_seq: 2,
        last_seq: 4,
        ack,
        at_ms: 0,
        sealed: false,
    }
}

#[test]
fn a_v1_stored_answer_still_answers_retries() {
    let v1 = V1StoredAck {
        seq: 2,
        replies: vec!["hi".into()],
    };
    let ack = ack_from_record(record(rmp_serde::to_vec_named(&v1).unwrap())).unwrap();
    assert_eq!((ack.seq, ack.replies), (2, vec!["hi".to_owned()]));
    assert!(ack.duplicate && !ack.replies_omitted);
}

#[test]
fn a_stored_failure_is_answered_as_the_same_error_and_big_replies_are_left_out() {
    let failed = StoredAck::new(2, &["x".into()], Some(FirstFailure::FlowFailed));
    let answer = ack_from_record(record(rmp_serde::to_vec_named(&failed).unwrap()));
    assert!(
        matches!(&answer, Err(RuntimeError::FlowCrashed(s)) if s.as_str() == "s1"),
        "{answer:?}"
    );
    let big = vec!["y".repeat(STORED_REPLIES_BYTES_MAX / 2 + 1); 2];
    let stored = StoredAck::new(2, &big, None);
    assert!(stored.replies.is_empty() && stored.replies_omitted);
    let at_cap = vec!["z".repeat(STORED_REPLIES_BYTES_MAX)];
    assert_eq!(StoredAck::new(2, &at_cap, None).replies, at_cap);
    // An unknown failure (a newer version's) is a storage error, never a guessed success.
    let unknown = rmp_serde::to_vec_named(&serde_json::json!({
        "v": 3, "seq": 2, "replies": [], "failed": "from_the_future"
    }))
    .unwrap();
    assert!(matches!(
        ack_from_record(record(unknown)),
        Err(RuntimeError::Storage(_))
    ));
}

#[test]
fn a_stored_answer_that_stays_sealed_is_a_storage_error_naming_the_erasure() {
    // Sealed bytes that happen to decode as an answer must not be taken for one.
    let ok = StoredAck::new(2, &["hi".into()], None);
    let mut rec = record(rmp_serde::to_vec_named(&ok).unwrap());
    rec.sealed = true;
    let answer = ack_from_record(rec);
    assert!(
        matches!(&answer, Err(RuntimeError::Storage(m)) if m.contains("erased with session s1")),
        "{answer:?}"
    );
}
