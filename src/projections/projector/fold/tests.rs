//! A fold fed a session's events out of order, as a damaged or forked log would hold them.

use super::{Held, Projector, ProjectorError};
use crate::events::log::{EventLog, LogOptions};
use crate::events::schema::{EventView, KindView};
use crate::tenancy::fixtures::id;

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
    projector.fold_frame(&acme, &mut held, &first).unwrap();
    // The same session's seq 2 again, in a later frame: two histories of one session.
    let forked = [view(2, 4)];
    match projector.fold_frame(&acme, &mut held, &forked) {
        Err(ProjectorError::Corrupt { tenant, detail }) => {
            assert_eq!(tenant, acme);
            assert!(detail.contains("event seq 2 where 4 is next"), "{detail}");
            assert!(detail.contains("tenant_seq 4"), "{detail}");
        }
        other => panic!("a forked session folded: {other:?}"),
    }
    // The next event in order still folds.
    projector
        .fold_frame(&acme, &mut held, &[view(4, 5)])
        .unwrap();
}
