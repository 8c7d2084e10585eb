//! The fold read with and without its reading thread: the same frames, in the same order, and
//! the same stops (a corrupt frame, a fold that fails).

use std::ops::RangeInclusive;

use crate::events::log::fixtures::flip_last_byte_of_frame;
use crate::events::log::read::tests::start;
use crate::events::log::{EventLog, LogOptions, ReadError};
use crate::tenancy::fixtures::id;

/// More frames than the reading thread hands over and queues at once, so it blocks on a full
/// queue and ends on a partial batch.
const FRAMES: usize = 1500;
const APPENDERS: usize = 6;

/// `tenant` with [`FRAMES`] one-event frames (session starts), appended from several threads
/// so that commits take several groups.
fn log_of_many_frames(dir: &std::path::Path, tenant: &str) -> EventLog {
    let log = EventLog::open(dir, &LogOptions::default()).unwrap();
    std::thread::scope(|s| {
        for t in 0..APPENDERS {
            let log = &log;
            s.spawn(move || {
                for n in (t..FRAMES).step_by(APPENDERS) {
                    start(log, tenant, "support", &format!("s{n}"));
                }
            });
        }
    });
    log
}

/// Each frame's views, as text, of `range`, read ahead or not; stops at the fold's `stop_at`th
/// frame with an error of its own.
fn folded(
    log: &EventLog,
    range: RangeInclusive<u64>,
    ahead: bool,
    stop_at: Option<usize>,
) -> (Vec<Vec<String>>, Result<(), ReadError>) {
    let mut frames = Vec::new();
    let result = log.tenant(&id("acme")).fold_frames_reading(
        range,
        if ahead { 0 } else { u64::MAX },
        &mut |views, _| {
            if stop_at == Some(frames.len()) {
                return Err(ReadError {
                    tenant: id("acme"),
                    position: "the fold".into(),
                    detail: "stopped on purpose".into(),
                });
            }
            frames.push(views.iter().map(|v| format!("{v:?}")).collect());
            Ok(())
        },
    );
    (frames, result)
}

#[test]
fn reading_ahead_hands_out_the_same_frames_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of_many_frames(dir.path(), "acme");
    let last = FRAMES as u64;
    for range in [
        1..=u64::MAX,
        300..=1200,
        last - 1..=last,
        last + 1..=last + 9,
    ] {
        let (alone, r) = folded(&log, range.clone(), false, None);
        r.unwrap();
        let (ahead, r) = folded(&log, range.clone(), true, None);
        r.unwrap();
        assert_eq!(ahead, alone, "range {range:?}");
        let expected = (range.end().min(&last) + 1).saturating_sub(*range.start());
        assert_eq!(ahead.len() as u64, expected, "range {range:?}");
    }
}

#[test]
fn a_fold_that_fails_stops_the_reading_thread_and_returns_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_of_many_frames(dir.path(), "acme");
    // The reader has filled its queue long before the fold stops: it must not hang the call.
    let (frames, result) = folded(&log, 1..=u64::MAX, true, Some(3));
    assert_eq!(frames.len(), 3);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("stopped on purpose"), "{err}");
}

#[test]
fn reading_ahead_stops_at_a_corrupt_frame_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    drop(log_of_many_frames(dir.path(), "acme"));
    let corrupt = flip_last_byte_of_frame(dir.path(), "acme", 700);
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    for ahead in [false, true] {
        let (groups, result) = folded(&log, 1..=u64::MAX, ahead, None);
        // One event per group: every group of the frames before the corrupt one.
        assert_eq!(
            groups.len() as u64,
            corrupt - 1,
            "ahead {ahead}: every group before the corrupt frame"
        );
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains(&format!("tenant_seq {corrupt}")),
            "{err}"
        );
    }
}
