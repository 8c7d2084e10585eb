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
    for seq in [2u8, 4, 5] {
        log.put_signed_head(&tenant, u64::from(seq), &[seq])
            .unwrap();
    }

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
    // Signed heads of trimmed events went in the same batch; the one at a kept event stays.
    let heads = log.signed_heads(&tenant, u64::MAX, 10).unwrap();
    assert_eq!(heads, vec![(5, vec![5])]);
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

#[test]
fn verify_of_a_trimmed_log_passes_from_the_anchor_and_fails_on_a_forged_one() {
    use crate::audit::verify::{verify_log, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 5);
    let tenant = acme_support().tenant;
    log.trim(&tenant, 450, 9_000).unwrap();
    let Verdict::Intact(summary) = verify_log(&log, &tenant).unwrap() else {
        panic!("a trimmed log verifies")
    };
    assert_eq!(
        (
            summary.count,
            summary.first_tenant_seq,
            summary.last_tenant_seq
        ),
        (2, Some(5), Some(6))
    );
    let said = summary.to_string();
    assert!(
        said.contains("anchored: 4 trimmed up to 1970-01-01T00:00:00.400Z"),
        "{said}"
    );

    // An anchor whose hash is not the first kept event's prev_hash: the chain is broken there.
    let tree = log.inner.shared.store().unwrap().tree.clone();
    let mut forged = log.retention_anchor(&tenant).unwrap().unwrap();
    forged.prev_hash = [9; 32];
    tree.insert(keys::retention_anchor_key(&tenant), forged.encode())
        .unwrap();
    let Verdict::Broken(problem) = verify_log(&log, &tenant).unwrap() else {
        panic!("a forged anchor is found")
    };
    assert_eq!(problem.tenant_seq, Some(5), "{problem}");
    // An anchor that claims fewer trimmed events than are missing: the gap is found.
    forged = log.retention_anchor(&tenant).unwrap().unwrap();
    forged.first_tenant_seq = 3;
    tree.insert(keys::retention_anchor_key(&tenant), forged.encode())
        .unwrap();
    let Verdict::Broken(problem) = verify_log(&log, &tenant).unwrap() else {
        panic!("frames missing after the anchor are found")
    };
    assert!(
        problem.to_string().contains("expected tenant_seq 3"),
        "{problem}"
    );
}

#[test]
fn a_session_whose_start_was_trimmed_loads_and_folds_from_what_remains() {
    use crate::projections::load::load_session;
    use crate::projections::snapshot::SnapshotStore;
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 5);
    let tenant = acme_support().tenant;
    log.trim(&tenant, 450, 9_000).unwrap();
    let snapshots = SnapshotStore::new(dir.path().join("sessions"));
    let loaded = load_session(&log, &snapshots, &acme_support(), &"s1".parse().unwrap()).unwrap();
    let state = loaded.state;
    assert_eq!(
        (state.trimmed_before_seq, state.last_seq, state.messages_in),
        (5, 6, 2)
    );
    assert_eq!(state.user, "", "the start, with its user, was trimmed");
    assert_eq!(loaded.snapshot_seq, 0);
}

#[test]
fn a_snapshot_whose_last_event_was_trimmed_is_used_when_the_kept_events_continue_it() {
    use crate::projections::load::load_session;
    use crate::projections::session::SessionState;
    use crate::projections::snapshot::{SnapshotKey, SnapshotStore};
    let ctx = acme_support();
    let (team, s1) = (ctx.team_or_default(), "s1".parse().unwrap());
    let key = SnapshotKey {
        tenant: &ctx.tenant,
        env: &ctx.env,
        team: &team,
        session: &s1,
    };
    // The state after seqs 1..=upto, folded before the trim.
    let state_upto = |log: &EventLog, upto: u64| {
        let mut state = SessionState::new(
            ctx.tenant.clone(),
            ctx.env.clone(),
            team.clone(),
            s1.clone(),
        );
        for e in log.scope(&ctx).session_events(&s1, 1..=upto) {
            state.apply(&e.unwrap().event);
        }
        state
    };
    for (snapshot_at, used) in [(4, true), (3, false)] {
        let dir = tempfile::tempdir().unwrap();
        let log = ada_log(dir.path(), 5);
        let snapshots = SnapshotStore::new(dir.path().join("sessions"));
        snapshots
            .write(&key, snapshot_at, &state_upto(&log, snapshot_at))
            .unwrap();
        // tenant_seqs (= seqs) 1..=4 go; the kept ones are 5 and 6.
        log.trim(&ctx.tenant, 450, 9_000).unwrap();
        let loaded = load_session(&log, &snapshots, &ctx, &s1).unwrap();
        assert_eq!(loaded.snapshot_problem, None, "snapshot at {snapshot_at}");
        let state = loaded.state;
        assert_eq!(state.last_seq, 6);
        if used {
            // Seq 5 follows the snapshot: the whole history is known.
            assert_eq!((loaded.snapshot_seq, state.trimmed_before_seq), (4, 0));
            assert_eq!((state.user.as_str(), state.messages_in), ("ada", 5));
        } else {
            // Seq 4 is gone: the snapshot cannot be continued; folded from what remains.
            assert_eq!((loaded.snapshot_seq, state.trimmed_before_seq), (0, 5));
            assert_eq!(state.messages_in, 2);
        }
    }
}

#[test]
fn a_session_read_overtaken_by_a_trim_before_its_first_event_starts_at_the_kept_events() {
    // What a reader sees if a trim's batch lands between its index read and its frame read:
    // index entries whose frames are gone. Made here by removing frames alone.
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 3); // frames at tenant_seqs 1..=4, one event each
    let ctx = acme_support();
    let before = all_events(&log);
    let tree = log.inner.shared.store().unwrap().tree.clone();
    tree.remove(keys::frame_key(&ctx.tenant, 1)).unwrap();
    let s1 = "s1".parse().unwrap();
    let read = || -> Result<Vec<u64>, ReadError> {
        log.scope(&ctx)
            .session_events(&s1, 1..=u64::MAX)
            .map(|e| e.map(|e| e.event.seq))
            .collect()
    };
    let anchor_at = |first: u64| {
        let a = RetentionAnchor {
            first_tenant_seq: first,
            prev_hash: before[usize::try_from(first).unwrap() - 2].hash,
            trimmed: first - 1,
            last_trimmed_at_ms: 100,
            trimmed_at_ms: 1,
        };
        tree.insert(keys::retention_anchor_key(&ctx.tenant), a.encode())
            .unwrap();
    };
    // No anchor: a missing frame is damage.
    let err = read().unwrap_err();
    assert!(err.detail.contains("indexed frame is missing"), "{err}");
    // Trimmed: the session starts at its first kept event.
    anchor_at(2);
    assert_eq!(read().unwrap(), vec![2, 3, 4]);
    // A frame missing after events were returned would be a gap: an error, never skipped.
    tree.remove(keys::frame_key(&ctx.tenant, 3)).unwrap();
    anchor_at(4);
    let err = read().unwrap_err();
    assert!(err.detail.contains("indexed frame is missing"), "{err}");
    assert!(err.position.contains("tenant_seq 3"), "{err}");
}

#[test]
fn a_fold_whose_checkpoint_a_trim_overtook_restarts_the_session_from_what_was_kept() {
    use crate::projections::projector::Projector;
    let dir = tempfile::tempdir().unwrap();
    let log = ada_log(dir.path(), 5); // seqs 1..=6 at 100..=600
    let tenant = acme_support().tenant;
    let projector = Projector::new(&log).unwrap();
    projector.catch_up(&log, &tenant, &mut |_| {}).unwrap();
    for (seq, at) in [(6, 700), (7, 800), (8, 5_000)] {
        log.append_blocking(ada_group(seq, format!("m{seq}"), "hi", at))
            .unwrap();
    }
    // Seqs 7 and 8 go before the fold reads them; seq 9 is kept.
    log.trim(&tenant, 950, 6_000).unwrap();
    projector.catch_up(&log, &tenant, &mut |_| {}).unwrap();
    let states: Vec<_> = projector
        .all_sessions(&tenant)
        .map(Result::unwrap)
        .collect();
    assert_eq!(states.len(), 1);
    assert_eq!(
        (
            states[0].last_seq,
            states[0].trimmed_before_seq,
            states[0].messages_in
        ),
        (9, 9, 1)
    );
}

#[test]
fn verify_and_export_racing_trims_never_report_a_deletion() {
    use crate::audit::export::{export, ExportFormat, ExportOptions};
    use crate::audit::verify::{verify_file, verify_log, Verdict};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let frames = 3 * TRIM_BATCH_FRAMES as u64;
    let log = ada_log(dir.path(), frames); // seq i at 100 + 100 i
    let tenant = acme_support().tenant;
    let out = dir.path().join("x.jsonl");
    let stop = AtomicBool::new(false);
    let overtaken = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Trims 10 frames at a time, oldest first, while the reads below run.
            for step in 1..=frames / 10 {
                log.trim(&tenant, 100 + 100 * 10 * step, 1).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            stop.store(true, Ordering::Release);
        });
        while !stop.load(Ordering::Acquire) {
            match verify_log(&log, &tenant).unwrap() {
                Verdict::Intact(_) => {}
                Verdict::Broken(p) => {
                    assert!(
                        p.detail
                            .contains("trimmed by the tenant's retention while verifying"),
                        "{p}"
                    );
                    overtaken.fetch_add(1, Ordering::Relaxed);
                }
            }
            let mut file = std::fs::File::create(&out).unwrap();
            let opts = ExportOptions::new(tenant.clone(), ExportFormat::Jsonl);
            match export(&log, &opts, &mut file, &mut |_| {}, &AtomicBool::new(false)) {
                Ok(_) => {
                    drop(file);
                    let verdict = verify_file(&out, None).unwrap();
                    assert!(matches!(verdict, Verdict::Intact(_)), "{verdict:?}");
                }
                Err(e) => {
                    assert!(
                        format!("{e:#}").contains("trimmed by the tenant's retention while the"),
                        "{e:#}"
                    );
                    overtaken.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    eprintln!(
        "reads overtaken by a trim: {}",
        overtaken.load(Ordering::Relaxed)
    );
}
