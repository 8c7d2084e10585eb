//! A fold fed a session's events out of order, as a damaged or forked log would hold them.

use super::{cut_chars, Held, Projector, ProjectorError};
use crate::events::log::{EventLog, LogOptions};
use crate::events::schema::{EventView, KindView};
use crate::tenancy::fixtures::id;
use std::ops::RangeInclusive;

/// Event `seq` of session `s1` of acme/prod/support at `tenant_seq`: a message.
fn view(seq: u64, tenant_seq: u64) -> EventView<'static> {
    EventView {
        tenant: "acme",
        env: "prod",
        team: "support",
        channel: "web",
        session: "s1",
        seq,
        tenant_seq,
        at_ms: 1_000 * tenant_seq,
        kind: KindView::MessageReceived { text: "hi" },
    }
}

#[test]
fn a_session_event_repeated_in_a_later_frame_is_a_corrupt_log_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), &LogOptions::default()).unwrap();
    let projector = Projector::new(&log).unwrap();
    let acme = id("acme");
    let mut held = Held {
        replacing: true,
        ..Held::default()
    };
    let first = [view(1, 1), view(2, 2), view(3, 3)];
    projector
        .fold_frame(&acme, &mut held, &first, None)
        .unwrap();
    // The same session's seq 2 again, in a later frame: two histories of one session.
    let forked = [view(2, 4)];
    match projector.fold_frame(&acme, &mut held, &forked, None) {
        Err(ProjectorError::Corrupt { tenant, detail }) => {
            assert_eq!(tenant, acme);
            assert!(detail.contains("event seq 2 where 4 is next"), "{detail}");
            assert!(detail.contains("tenant_seq 4"), "{detail}");
        }
        other => panic!("a forked session folded: {other:?}"),
    }
    // The next event in order still folds.
    projector
        .fold_frame(&acme, &mut held, &[view(4, 5)], None)
        .unwrap();
}

/// A sealed log of ada's session `s1` (her start, then `texts`), its projector, and the dir
/// holding both.
fn sealed_ada(texts: &[&str]) -> (tempfile::TempDir, EventLog, Projector) {
    use crate::events::log::fixtures::{ada_group, keyring};
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions {
        keyring: Some(keyring(dir.path())),
        ..LogOptions::default()
    };
    let log = EventLog::open(&dir.path().join("log"), &opts).unwrap();
    let groups = std::iter::once("").chain(texts.iter().copied());
    for (seq, text) in (0u64..).zip(groups) {
        let group = ada_group(seq, format!("m{seq}"), text, 1_000);
        log.append_blocking(group).unwrap();
    }
    let projector = Projector::new(&log).unwrap();
    (dir, log, projector)
}

/// Folds `range` of acme's log into `held` as `Projector::fold` does.
fn fold_into(projector: &Projector, log: &EventLog, held: &mut Held, range: RangeInclusive<u64>) {
    log.tenant(&id("acme"))
        .fold_frames_keyed(range, &mut |events, key| {
            projector.fold_frame(&id("acme"), held, events, key)
        })
        .unwrap();
}

/// Erases ada's session `s1` from the log (its data key destroyed).
fn erase_ada(log: &EventLog) {
    let ctx = crate::events::log::fixtures::acme_support();
    let sessions: Vec<_> = log.scope(&ctx).sessions().map(Result::unwrap).collect();
    let done = log.erase_sessions_offline(&ctx.tenant, &sessions).unwrap();
    assert_eq!(done.keys_destroyed, 1);
}

/// Asserts that no value of acme's read models holds `canary` or ada's user id, and that her
/// session's `S` and `M` entries are sealed.
fn assert_nothing_plain(projector: &Projector, canary: &str) {
    let entries = projector.tree.dump(&id("acme")).unwrap();
    let mut sealed = 0;
    for (k, v) in &entries {
        for needle in [canary.as_bytes(), b"ada"] {
            assert!(
                !v.windows(needle.len()).any(|w| w == needle),
                "{} is plain at {}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(k)
            );
        }
        let tag = k.get("acme\0D".len()).copied();
        if tag == Some(super::TAG_SESSION) || tag == Some(super::TAG_LAST_MESSAGE) {
            assert_eq!(
                v.first(),
                Some(&crate::projections::projector::sealed::SEALED_MARK),
                "{k:?}"
            );
            sealed += 1;
        }
    }
    assert_eq!(sealed, 2, "{entries:?}");
}

#[test]
fn an_erasure_between_the_folds_read_and_its_commit_leaves_nothing_plain() {
    let canary = "fold-race-canary-5150";
    let (_dir, log, projector) = sealed_ada(&[canary]);
    let mut held = Held::default();
    fold_into(&projector, &log, &mut held, 1..=2);
    assert!(held.last_messages.values().any(|t| t == canary));
    // The erasure destroys the session's key after the fold opened its events.
    erase_ada(&log);
    projector.commit(&id("acme"), &mut held, 2).unwrap();
    assert_nothing_plain(&projector, canary);
}

#[test]
fn an_erasure_after_a_fold_loaded_a_sealed_state_leaves_nothing_plain() {
    let canary = "fold-race-canary-7781";
    let (_dir, log, projector) = sealed_ada(&[canary, "later"]);
    let mut held = Held::default();
    fold_into(&projector, &log, &mut held, 1..=2);
    projector.commit(&id("acme"), &mut held, 2).unwrap();
    assert_nothing_plain(&projector, canary);
    // The next catch-up loads the stored (sealed) state; its frame is handed over without a
    // key (as one without sealed parts is), so only the load knew the key.
    log.tenant(&id("acme"))
        .fold_frames_keyed(3..=3, &mut |events, _| {
            projector.fold_frame(&id("acme"), &mut held, events, None)
        })
        .unwrap();
    erase_ada(&log);
    projector.commit(&id("acme"), &mut held, 3).unwrap();
    assert_nothing_plain(&projector, "later");
}

#[test]
fn a_last_message_is_cut_at_a_char_boundary_after_its_first_chars() {
    assert_eq!(cut_chars("short", 200), "short");
    assert_eq!(cut_chars("", 3), "");
    assert_eq!(cut_chars("abcdef", 3), "abc");
    // Bytes past the limit but chars within it: kept whole.
    assert_eq!(cut_chars("ééé", 3), "ééé");
    assert_eq!(cut_chars("ééééé", 3), "ééé");
    assert_eq!(cut_chars("a€b€c", 4), "a€b€");
    let long = "ß".repeat(300);
    assert_eq!(cut_chars(&long, 200).chars().count(), 200);
}
