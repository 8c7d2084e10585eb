use std::panic::{catch_unwind, AssertUnwindSafe};

use proptest::prelude::*;

use super::fixtures::{acme_session, event_after};
use super::*;
use crate::events::schema::EventKind;

// ---- Helpers --------------------------------------------------------------------------------

fn empty() -> SessionState {
    acme_session()
}

/// Wraps `kind` in the envelope of the event that follows `state`: next seq, same ids, channel
/// `web`, `tenant_seq` ten ahead (other sessions interleave in the tenant's log) and a clock
/// ticking 1000 ms per event.
fn next_event(state: &SessionState, kind: EventKind) -> Event {
    let seq = state.last_seq + 1;
    event_after(state, kind, seq * 10, 1_000 * seq)
}

fn fold(state: &mut SessionState, kinds: &[EventKind]) {
    for kind in kinds {
        let event = next_event(state, kind.clone());
        state.apply(&event);
    }
}

/// Given the events `given` (wrapped in consecutive envelopes), then `then` holds for the state.
fn check(given: &[EventKind], then: impl FnOnce(&SessionState)) {
    let mut state = empty();
    fold(&mut state, given);
    then(&state);
}

fn started() -> EventKind {
    EventKind::SessionStarted {
        user: "u1".into(),
        flow: "support".into(),
        flow_version: "2.1".into(),
    }
}
fn received(text: &str) -> EventKind {
    EventKind::MessageReceived {
        message_id: format!("m-{text}"),
        user: "u1".into(),
        text: text.into(),
    }
}
fn entered(node: &str) -> EventKind {
    EventKind::NodeEntered { node: node.into() }
}
fn replied(node: &str, text: &str) -> EventKind {
    EventKind::ReplySent {
        node: node.into(),
        text: text.into(),
    }
}
fn set(key: &str, value: &str) -> EventKind {
    EventKind::StateSet {
        key: key.into(),
        value: value.into(),
    }
}
fn awaiting(node: &str, key: &str) -> EventKind {
    EventKind::AwaitingInput {
        node: node.into(),
        key: key.into(),
    }
}
fn failed(node: &str) -> EventKind {
    EventKind::FlowFailed {
        node: node.into(),
        error: "no route matched".into(),
    }
}
fn ended(reason: &str) -> EventKind {
    EventKind::SessionEnded {
        reason: reason.into(),
    }
}

fn awaiting_cursor(node: &str, key: &str) -> Cursor {
    Cursor::Awaiting {
        node: node.into(),
        key: key.into(),
    }
}

// ---- Folding --------------------------------------------------------------------------------

#[test]
fn a_new_state_is_open_at_the_start_with_nothing_applied() {
    check(&[], |s| {
        assert!(s.is_open());
        assert_eq!(s.cursor, Cursor::Start);
        assert_eq!((s.last_seq, s.last_tenant_seq, s.messages_in), (0, 0, 0));
        assert_eq!(s.channel, None);
        assert_eq!(s.state_key(), "state:acme:prod:support:s1");
    });
}

#[test]
fn a_greeting_run_records_start_counts_and_envelope() {
    check(
        &[
            started(),
            received("hi"),
            entered("greet"),
            replied("greet", "Welcome"),
        ],
        |s| {
            assert_eq!(
                (s.user.as_str(), s.flow.as_str(), s.flow_version.as_str()),
                ("u1", "support", "2.1")
            );
            assert_eq!(s.started_at_ms, 1_000);
            assert_eq!((s.messages_in, s.replies_out, s.flow_errors), (1, 1, 0));
            assert_eq!(s.current_node.as_deref(), Some("greet"));
            assert_eq!(s.cursor, Cursor::Start);
            assert_eq!((s.last_seq, s.last_tenant_seq), (4, 40));
            assert_eq!(s.last_activity_ms, 4_000);
            assert_eq!(s.channel, Some(ChannelId::parse("web").unwrap()));
            assert!(s.is_open());
        },
    );
}

#[test]
fn an_ask_leaves_the_cursor_awaiting_until_the_answer_is_stored() {
    let asked = [
        started(),
        received("hi"),
        entered("name"),
        replied("name", "Your name?"),
        awaiting("name", "user_name"),
    ];
    check(&asked, |s| {
        assert_eq!(s.cursor, awaiting_cursor("name", "user_name"));
    });

    // The next message alone does not consume the wait: the engine reads the cursor first.
    let answered = [&asked[..], &[received("Ada")]].concat();
    check(&answered, |s| {
        assert_eq!(s.cursor, awaiting_cursor("name", "user_name"));
        assert_eq!(s.messages_in, 2);
    });

    // Storing the answer resumes; when the `ask` was the last node, nothing else follows.
    let stored = [&answered[..], &[set("user_name", "Ada")]].concat();
    check(&stored, |s| {
        assert_eq!(s.cursor, Cursor::Start);
        assert_eq!(s.vars.get("user_name").map(String::as_str), Some("Ada"));
    });

    // Asking again after the answer waits again, on the new node.
    let again = [
        &stored[..],
        &[
            entered("email"),
            replied("email", "Email?"),
            awaiting("email", "email"),
        ],
    ]
    .concat();
    check(&again, |s| {
        assert_eq!(s.cursor, awaiting_cursor("email", "email"));
        assert_eq!(s.current_node.as_deref(), Some("email"));
        assert_eq!(s.replies_out, 2);
    });
}

#[test]
fn a_failure_counts_and_sends_the_next_message_to_the_start() {
    check(
        &[
            started(),
            received("hi"),
            entered("ask"),
            replied("ask", "?"),
            awaiting("ask", "k"),
            received("zzz"),
            set("k", "zzz"),
            entered("pick"),
            failed("pick"),
        ],
        |s| {
            assert_eq!(s.flow_errors, 1);
            assert_eq!(s.cursor, Cursor::Start);
            assert!(s.is_open());
        },
    );
}

#[test]
fn set_overwrites_and_ended_closes_with_the_reason() {
    check(
        &[
            started(),
            received("hi"),
            entered("a"),
            set("k", "1"),
            entered("b"),
            set("k", "2"),
            entered("bye"),
            ended("resolved"),
        ],
        |s| {
            assert_eq!(s.vars.len(), 1);
            assert_eq!(s.vars["k"], "2");
            assert_eq!(
                s.status,
                SessionStatus::Ended {
                    reason: "resolved".into()
                }
            );
            assert!(!s.is_open());
            assert_eq!(s.cursor, Cursor::Start);
        },
    );
}

#[test]
fn the_channel_is_taken_from_the_first_event_only() {
    let mut state = empty();
    let mut first = next_event(&state, started());
    first.channel = ChannelId::parse("slack").unwrap();
    state.apply(&first);
    let second = next_event(&state, received("hi"));
    assert_eq!(second.channel.as_str(), "web");
    state.apply(&second);
    assert_eq!(state.channel, Some(ChannelId::parse("slack").unwrap()));
}

// ---- Pair assertions ------------------------------------------------------------------------

/// Applies `event` to a copy of `state`; whether it panicked.
fn panics(state: &SessionState, event: &Event) -> bool {
    let mut copy = state.clone();
    catch_unwind(AssertUnwindSafe(|| copy.apply(event))).is_err()
}

/// What `misfit` says of `event` for `state`.
fn misfit(state: &SessionState, event: &Event) -> Option<String> {
    state.misfit(&EventView::from(event))
}

#[test]
fn applying_out_of_order_or_foreign_events_is_a_bug_that_panics_and_misfit_names_first() {
    let mut state = empty();
    fold(&mut state, &[started(), received("hi")]);
    let good = next_event(&state, entered("greet"));
    assert!(!panics(&state, &good));
    assert_eq!(misfit(&state, &good), None);

    let mut gap = good.clone();
    gap.seq += 1;
    let mut repeat = good.clone();
    repeat.seq -= 1;
    let mut other_session = good.clone();
    other_session.session = SessionId::parse("s2").unwrap();
    let mut other_tenant = good.clone();
    other_tenant.tenant = TenantId::parse("bigcorp").unwrap();
    let mut other_env = good.clone();
    other_env.env = EnvId::parse("staging").unwrap();
    let mut other_team = good.clone();
    other_team.team = TeamId::default_team();
    for bad in [
        gap,
        repeat,
        other_session,
        other_tenant,
        other_env,
        other_team,
    ] {
        assert!(panics(&state, &bad), "accepted {bad:?}");
        assert!(misfit(&state, &bad).is_some(), "fits: {bad:?}");
    }
    let mut repeat = good.clone();
    repeat.seq -= 1;
    let said = misfit(&state, &repeat).unwrap();
    assert!(said.contains("event seq 2 where 3 is next"), "{said}");
    // A state with nothing folded takes a trimmed start, never seq 0.
    let mut trimmed = next_event(&empty(), started());
    trimmed.seq = 40;
    assert_eq!(misfit(&empty(), &trimmed), None);
    trimmed.seq = 0;
    assert!(misfit(&empty(), &trimmed).is_some());
}

// ---- Serde and snapshot equivalence ---------------------------------------------------------

#[test]
fn serde_round_trip_keeps_every_field() {
    check(
        &[
            started(),
            received("hi"),
            entered("name"),
            set("plan", "gold"),
            replied("name", "?"),
            awaiting("name", "user_name"),
        ],
        |s| {
            let json = serde_json::to_string(s).unwrap();
            let back: SessionState = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, s);
        },
    );
    check(&[started(), ended("bye")], |s| {
        let json = serde_json::to_string(s).unwrap();
        let back: SessionState = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, s);
    });
}

/// What an idle session holds: its names of up to 24 bytes (user, flow, version, node, the
/// awaited node and key) live inside the state, not in heap allocations of their own (each of
/// those cost a 32-byte malloc chunk), whether folded or decoded from a snapshot's CBOR, which
/// reads as it did when these fields were `String`s.
#[test]
fn short_names_take_no_heap_of_their_own_folded_or_decoded() {
    check(
        &[started(), entered("name"), awaiting("name", "user_name")],
        |s| {
            let inline = |s: &SessionState| {
                let Cursor::Awaiting { node, key } = &s.cursor else {
                    panic!("not awaiting")
                };
                let current = s.current_node.as_ref().unwrap();
                [&s.user, &s.flow, &s.flow_version, current, node, key]
                    .iter()
                    .all(|t| !t.is_heap_allocated())
            };
            assert!(inline(s));
            // The snapshot's encoding, with the names as plain text strings.
            let plain = serde_json::to_value(s).unwrap();
            let mut cbor = Vec::new();
            ciborium::into_writer(&plain, &mut cbor).unwrap();
            let back: SessionState = ciborium::from_reader(&cbor[..]).unwrap();
            assert_eq!(&back, s);
            assert!(inline(&back));
        },
    );
    let long = "u".repeat(40);
    let mut state = empty();
    fold(
        &mut state,
        &[EventKind::SessionStarted {
            user: long.clone(),
            flow: "support".into(),
            flow_version: "2.1".into(),
        }],
    );
    assert_eq!(state.user, long);
}

#[test]
fn deserializing_validates_the_ids() {
    let json = serde_json::to_string(&empty())
        .unwrap()
        .replace("\"acme\"", "\"ACME/..\"");
    assert!(serde_json::from_str::<SessionState>(&json).is_err());
}

/// Any kind but `SessionStarted`, from a small alphabet so that keys and nodes repeat.
fn arb_kind() -> impl Strategy<Value = EventKind> {
    let word = prop::sample::select(vec!["a", "b", "c"]).prop_map(str::to_owned);
    prop_oneof![
        word.clone().prop_map(|text| received(&text)),
        word.clone().prop_map(|node| entered(&node)),
        (word.clone(), word.clone()).prop_map(|(node, text)| replied(&node, &text)),
        (word.clone(), word.clone()).prop_map(|(key, value)| set(&key, &value)),
        (word.clone(), word.clone()).prop_map(|(node, key)| awaiting(&node, &key)),
        word.clone().prop_map(|node| failed(&node)),
        word.prop_map(|reason| ended(&reason)),
    ]
}

proptest! {
    /// Snapshot + tail == full replay: folding a prefix, passing the state through its
    /// serialized form (as a snapshot does) and folding the rest gives the state of folding
    /// everything in one go.
    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        tail in prop::collection::vec(arb_kind(), 0..40),
        cut in 0usize..=41,
    ) {
        let kinds = [&[started()][..], &tail[..]].concat();
        let cut = cut.min(kinds.len());

        let mut full = empty();
        fold(&mut full, &kinds);

        let mut prefix = empty();
        fold(&mut prefix, &kinds[..cut]);
        let snapshot = serde_json::to_vec(&prefix).unwrap();
        let mut resumed: SessionState = serde_json::from_slice(&snapshot).unwrap();
        fold(&mut resumed, &kinds[cut..]);

        prop_assert_eq!(&resumed, &full);
        prop_assert_eq!(full.last_seq, u64::try_from(kinds.len()).unwrap());
    }
}
