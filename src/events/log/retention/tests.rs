use super::*;
use crate::events::codec::GENESIS_HASH;
use crate::events::log::fixtures::{acme_support, ada_group};
use crate::events::log::LogOptions;

/// Ada's session: `SessionStarted` at 100, then one message a group at 200, 300, ...
fn ada_log(dir: &std::path::Path, messages: u64) -> EventLog {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    log.append_blocking(ada_group(0, String::new(), "", 100))
        .unwrap();
    for i in 1..=messages {
        log.append_blocking(ada_group(i, format!("m{i}"), "hi", 100 + 100 * i))
            .unwrap();
    }
    log
}

fn all_events(log: &EventLog) -> Vec<StoredEvent> {
    let tenant = acme_support().tenant;
    log.tenant(&tenant)
        .events(1..=u64::MAX)
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_trim_removes_old_frames_and_anchors_the_first_kept_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 5);
    let tenant = acme_support().tenant;
    let before = all_events(&log);
    assert_eq!(log.retention_anchor(&tenant).unwrap(), None);

    // Events at 100..=400 are older than 450: tenant_seqs 1..=4 go.
    let report = log.trim(&tenant, 450, 9_000).unwrap();
    assert_eq!((report.events, report.frames, report.batches), (4, 4, 1));
    let anchor = log.retention_anchor(&tenant).unwrap().unwrap();
    assert_eq!(
        anchor,
        RetentionAnchor {
            first_tenant_seq: 5,
            prev_hash: before[3].hash,
            trimmed: 4,
            last_trimmed_at_ms: 400,
            trimmed_at_ms: 9_000,
        }
    );
    let after = all_events(&log);
    assert_eq!(after, before[4..].to_vec());
    assert_eq!(after[0].prev_hash, anchor.prev_hash);
    // The session index entries of the trimmed frames went with them.
    let scope = log.scope(&acme_support());
    let s1 = "s1".parse().unwrap();
    let seqs: Vec<u64> = scope
        .session_events(&s1, 1..=u64::MAX)
        .map(|e| e.unwrap().event.seq)
        .collect();
    assert_eq!(seqs, vec![5, 6]);
    // A second trim with the same cutoff finds nothing more; the anchor stays.
    let again = log.trim(&tenant, 450, 9_500).unwrap();
    assert_eq!((again.events, again.anchor), (0, Some(anchor)));
    // A later one adds to the count and moves the anchor.
    let later = log.trim(&tenant, 550, 10_000).unwrap();
    assert_eq!(later.events, 1);
    let moved = log.retention_anchor(&tenant).unwrap().unwrap();
    assert_eq!((moved.first_tenant_seq, moved.trimmed), (6, 5));
    assert_eq!(moved.prev_hash, before[4].hash);
}

#[test]
fn the_last_frame_is_never_trimmed_so_the_head_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = acme_support().tenant;
    let head = {
        let log = ada_log(dir.path(), 3);
        let head = log.tenant(&tenant).head().unwrap().unwrap();
        let report = log.trim(&tenant, u64::MAX, 1).unwrap();
        assert_eq!(report.events, 3, "all but the last frame");
        head
    };
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    assert_eq!(log.tenant(&tenant).head().unwrap(), Some(head));
    // Appends continue the chain from the head.
    let next = log
        .append_blocking(ada_group(4, "m4".into(), "hi", 1_000))
        .unwrap();
    let crate::events::log::AppendOutcome::Appended(next) = next else {
        panic!("appended")
    };
    assert_eq!(next.first_tenant_seq, 5);
    let events = all_events(&log);
    assert_eq!(events[1].prev_hash, head.hash);
}

#[test]
fn nothing_is_trimmed_when_the_oldest_frame_is_younger_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 2);
    let tenant = acme_support().tenant;
    let report = log.trim(&tenant, 100, 5).unwrap();
    assert_eq!((report.events, report.anchor), (0, None));
    assert_eq!(all_events(&log).len(), 3);
    assert_eq!(all_events(&log)[0].prev_hash, GENESIS_HASH);
}

#[test]
fn a_trim_batch_is_bounded_and_a_trim_runs_batches_until_done() {
    let dir = tempfile::tempdir().unwrap();
    let n = TRIM_BATCH_FRAMES as u64 + 10;
    let log = ada_log(dir.path(), n);
    let tenant = acme_support().tenant;
    let report = log.trim(&tenant, u64::MAX, 1).unwrap();
    assert_eq!((report.frames, report.batches), (n, 2));
    let anchor = report.anchor.unwrap();
    assert_eq!((anchor.first_tenant_seq, anchor.trimmed), (n + 1, n));
}

#[test]
fn a_session_with_no_event_left_loses_its_meta_and_open_session_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 1);
    let tenant = acme_support().tenant;
    let ctx = acme_support();
    // Another session whose single frame is the last one: Ada's frames may all go.
    let mut bob = ada_group(0, String::new(), "", 10_000);
    bob.session = "s2".parse().unwrap();
    bob.kinds = vec![crate::events::schema::EventKind::SessionStarted {
        user: "bob".into(),
        flow: "f".into(),
        flow_version: "1".into(),
    }];
    log.append_blocking(bob).unwrap();
    let scope = log.scope(&ctx);
    let slack = "slack".parse().unwrap();
    assert_eq!(
        scope
            .open_session(&slack, "ada")
            .unwrap()
            .map(|s| s.to_string()),
        Some("s1".to_owned())
    );
    log.trim(&tenant, 5_000, 6_000).unwrap();
    let scope = log.scope(&ctx);
    assert_eq!(scope.open_session(&slack, "ada").unwrap(), None);
    let listed: Vec<String> = scope
        .sessions()
        .map(|s| s.unwrap().session.to_string())
        .collect();
    assert_eq!(listed, vec!["s2".to_owned()]);
}

#[test]
fn the_anchor_record_round_trips_and_a_malformed_one_is_an_error() {
    let a = RetentionAnchor {
        first_tenant_seq: 7,
        prev_hash: [3; 32],
        trimmed: 6,
        last_trimmed_at_ms: 11,
        trimmed_at_ms: 12,
    };
    assert_eq!(RetentionAnchor::decode(&a.encode()), Some(a));
    let mut bad = a.encode();
    bad[0] = 2;
    assert_eq!(RetentionAnchor::decode(&bad), None);
    assert_eq!(RetentionAnchor::decode(&a.encode()[..10]), None);
}
