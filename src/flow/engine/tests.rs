use std::path::{Path, PathBuf};

use super::*;
use crate::events::codec::{encode_body, encode_frame, EVENT_BYTES_MAX, GENESIS_HASH};
use crate::events::schema::Event;
use crate::projections::session::fixtures::{acme_session, event_after};
use crate::projections::session::SessionStatus;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

// ---- Helpers --------------------------------------------------------------------------------

fn flow(nodes: &str) -> Flow {
    Flow::parse(
        Path::new("test.yaml"),
        &format!("name: f\nversion: \"1\"\nnodes:\n{nodes}"),
    )
    .unwrap()
}

fn seed(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/seed")
        .join(file)
}

fn new_state() -> SessionState {
    acme_session()
}

/// Wraps `kinds` into the events that follow `state` (consecutive seqs, fake ids and clock) and
/// folds them, as the session actor does after an append.
fn fold(state: &mut SessionState, kinds: &[EventKind]) {
    for kind in kinds {
        let seq = state.last_seq + 1;
        state.apply(&event_after(state, kind.clone(), seq, seq));
    }
}

/// One session of one user, driven message by message the way the runtime does: the first
/// message is preceded by `SessionStarted`, and every run's events are folded into the state.
struct Session {
    flow: Flow,
    state: SessionState,
    tenant_name: String,
    settings: BTreeMap<String, String>,
    sent: usize,
}

impl Session {
    fn new(flow: Flow) -> Session {
        Session {
            flow,
            state: new_state(),
            tenant_name: "ACME".to_owned(),
            settings: BTreeMap::new(),
            sent: 0,
        }
    }

    /// Runs `text` through the flow and folds the result; the run's events, shown compactly.
    fn send(&mut self, text: &str) -> Vec<String> {
        let kinds = self.run(text);
        if self.state.last_seq == 0 {
            fold(
                &mut self.state,
                &[EventKind::SessionStarted {
                    user: "u1".into(),
                    flow: self.flow.name().into(),
                    flow_version: self.flow.version().into(),
                }],
            );
        }
        fold(&mut self.state, &kinds);
        kinds.iter().map(show).collect()
    }

    /// Runs `text` without folding.
    fn run(&mut self, text: &str) -> Vec<EventKind> {
        self.sent += 1;
        let message_id = format!("m{}", self.sent);
        let tenant = TenantInfo {
            name: &self.tenant_name,
            settings: &self.settings,
        };
        let input = Input {
            message_id: &message_id,
            user: "u1",
            text,
        };
        let kinds = run(&self.flow, &self.state, &tenant, &input);
        assert!(kinds.len() <= EVENTS_PER_RUN_MAX);
        assert_eq!(
            kinds.first(),
            Some(&EventKind::MessageReceived {
                message_id,
                user: "u1".into(),
                text: text.into()
            })
        );
        kinds
    }
}

/// One event, compactly: `in: hi`, `node a`, `reply a: Hi`, `set k=v`, `await a -> k`,
/// `fail a: ...`, `end reason`.
fn show(kind: &EventKind) -> String {
    match kind {
        EventKind::SessionStarted { user, .. } => format!("start {user}"),
        EventKind::MessageReceived { text, .. } => format!("in: {text}"),
        EventKind::NodeEntered { node } => format!("node {node}"),
        EventKind::ReplySent { node, text } => format!("reply {node}: {text}"),
        EventKind::StateSet { key, value } => format!("set {key}={value}"),
        EventKind::AwaitingInput { node, key } => format!("await {node} -> {key}"),
        EventKind::FlowFailed { node, error } => format!("fail {node}: {error}"),
        EventKind::SessionEnded { reason } => format!("end {reason}"),
        other => format!("{} (not a flow's)", other.name()),
    }
}

/// Given the messages `given` sent to a new session of `nodes`, when `when` is sent, then the
/// run's events are `then`.
fn check(nodes: &str, given: &[&str], when: &str, then: &[&str]) {
    let mut session = Session::new(flow(nodes));
    for text in given {
        session.send(text);
    }
    assert_eq!(session.send(when), then);
}

const ASK_FLOW: &str = "
  - id: name
    type: ask
    config: {message: \"Your name?\", key: user_name}
  - id: thanks
    type: reply
    config: {message: \"Thanks {{ state.user_name }}, {{ message.text }}!\"}
  - id: email
    type: ask
    config: {message: \"Email, {{ state.user_name }}?\", key: email}
";

const ROUTE_FLOW: &str = "
  - id: pick
    type: route
    config:
      routes:
        - {keyword: billing, next: bill}
        - {regex: \"^#[0-9]+$\", next: order}
      default: other
  - id: bill
    type: reply
    config: {message: Billing}
    next: done
  - id: order
    type: reply
    config: {message: \"Order {{ message.text }}\"}
    next: done
  - id: other
    type: reply
    config: {message: Other}
  - id: done
    type: reply
    config: {message: Done}
";

// ---- Node types -----------------------------------------------------------------------------

#[test]
fn the_seed_flows_greet_every_message() {
    for (file, greeting) in [
        (
            "acme_support_flow.yaml",
            "Welcome to ACME Support! How can I help?",
        ),
        (
            "bigcorp_helpdesk_flow.yaml",
            "BigCorp Helpdesk here. What's your issue?",
        ),
    ] {
        let mut session = Session::new(Flow::load(&seed(file)).unwrap());
        for text in ["hi", "still there?", "{{ not a template }}"] {
            assert_eq!(
                session.send(text),
                [
                    format!("in: {text}"),
                    "node greet".to_owned(),
                    format!("reply greet: {greeting}")
                ]
            );
        }
        assert_eq!(session.state.cursor, Cursor::Start);
        assert_eq!(session.state.replies_out, 3);
    }
}

#[test]
fn replies_run_in_order_and_past_the_end_the_next_message_starts_over() {
    let nodes = "
  - {id: a, type: reply, config: {message: one}}
  - {id: b, type: reply, config: {message: two}}
";
    let then = ["in: x", "node a", "reply a: one", "node b", "reply b: two"];
    check(nodes, &[], "x", &then);
    check(nodes, &["first"], "x", &then);
}

#[test]
fn ask_waits_and_the_next_message_is_stored_and_visible_to_later_templates() {
    check(
        ASK_FLOW,
        &[],
        "hi",
        &[
            "in: hi",
            "node name",
            "reply name: Your name?",
            "await name -> user_name",
        ],
    );
    check(
        ASK_FLOW,
        &["hi"],
        "Ada",
        &[
            "in: Ada",
            "set user_name=Ada",
            "node thanks",
            "reply thanks: Thanks Ada, Ada!",
            "node email",
            "reply email: Email, Ada?",
            "await email -> email",
        ],
    );
    // The last `ask` has no successor: storing the answer ends the run, and the message after
    // that starts at the first node again, with the earlier answers still in state.
    check(
        ASK_FLOW,
        &["hi", "Ada"],
        "ada@x",
        &["in: ada@x", "set email=ada@x"],
    );
    check(
        ASK_FLOW,
        &["hi", "Ada", "ada@x"],
        "again",
        &[
            "in: again",
            "node name",
            "reply name: Your name?",
            "await name -> user_name",
        ],
    );
}

#[test]
fn folding_the_runs_gives_the_cursor_and_vars_for_the_next_message() {
    let mut session = Session::new(flow(ASK_FLOW));
    session.send("hi");
    assert_eq!(
        session.state.cursor,
        Cursor::Awaiting {
            node: "name".into(),
            key: "user_name".into()
        }
    );
    assert!(session.state.vars.is_empty());
    assert_eq!(session.state.current_node.as_deref(), Some("name"));

    session.send("Ada");
    assert_eq!(
        session.state.cursor,
        Cursor::Awaiting {
            node: "email".into(),
            key: "email".into()
        }
    );
    assert_eq!(session.state.vars["user_name"], "Ada");

    session.send("ada@x");
    assert_eq!(session.state.cursor, Cursor::Start);
    assert_eq!(session.state.vars["email"], "ada@x");
    assert_eq!(
        (session.state.messages_in, session.state.replies_out),
        (3, 3)
    );
    // SessionStarted + (4) + (7) + (2) events.
    assert_eq!(session.state.last_seq, 14);
    assert!(session.state.is_open());
}

#[test]
fn an_ask_node_gone_after_a_reload_keeps_the_answer_and_starts_over() {
    let mut session = Session::new(flow(ASK_FLOW));
    session.send("hi");
    session.flow =
        flow("  - {id: greet, type: reply, config: {message: \"Hi {{ state.user_name }}\"}}\n");
    assert_eq!(
        session.send("Ada"),
        [
            "in: Ada",
            "set user_name=Ada",
            "node greet",
            "reply greet: Hi Ada"
        ]
    );
}

#[test]
fn route_by_keyword_regex_and_default() {
    let billing = [
        "in: Billing question",
        "node pick",
        "node bill",
        "reply bill: Billing",
        "node done",
        "reply done: Done",
    ];
    check(ROUTE_FLOW, &[], "Billing question", &billing);
    let order = [
        "in: #42",
        "node pick",
        "node order",
        "reply order: Order #42",
        "node done",
        "reply done: Done",
    ];
    check(ROUTE_FLOW, &[], "#42", &order);
    // `billings` is not the whole word; `#42 x` does not match the anchored regex.
    for text in ["billings", "#42 x"] {
        let other = [
            format!("in: {text}"),
            "node pick".to_owned(),
            "node other".to_owned(),
            "reply other: Other".to_owned(),
            "node done".to_owned(),
            "reply done: Done".to_owned(),
        ];
        let mut session = Session::new(flow(ROUTE_FLOW));
        assert_eq!(session.send(text), other);
    }
}

#[test]
fn route_without_match_or_default_fails_and_the_next_message_starts_over() {
    let nodes = "
  - id: pick
    type: route
    config:
      routes:
        - {keyword: yes, next: ok}
  - {id: ok, type: reply, config: {message: OK}}
";
    let failed = [
        "in: no",
        "node pick",
        "fail pick: no route matched the message and the node has no `default`",
    ];
    check(nodes, &[], "no", &failed);
    check(
        nodes,
        &["no"],
        "yes",
        &["in: yes", "node pick", "node ok", "reply ok: OK"],
    );
    let mut session = Session::new(flow(nodes));
    session.send("no");
    assert_eq!(session.state.flow_errors, 1);
    assert_eq!(session.state.cursor, Cursor::Start);
}

#[test]
fn next_jumps_over_nodes() {
    check(
        "
  - {id: a, type: reply, config: {message: A}, next: c}
  - {id: b, type: reply, config: {message: B}}
  - {id: c, type: reply, config: {message: C}}
",
        &[],
        "x",
        &["in: x", "node a", "reply a: A", "node c", "reply c: C"],
    );
}

#[test]
fn set_renders_its_value_and_later_nodes_of_the_same_run_see_it() {
    check(
        "
  - {id: s, type: set, config: {key: shout, value: \"{{ message.text | upper }}!\"}}
  - {id: r, type: reply, config: {message: \"You said {{ state.shout }}\"}}
  - {id: t, type: set, config: {key: plain, value: fixed}}
",
        &[],
        "hey",
        &[
            "in: hey",
            "node s",
            "set shout=HEY!",
            "node r",
            "reply r: You said HEY!",
            "node t",
            "set plain=fixed",
        ],
    );
}

#[test]
fn end_closes_the_session_with_its_reason_or_flow_end() {
    let mut session = Session::new(flow(
        "  - {id: r, type: reply, config: {message: Bye}}\n  - {id: e, type: end, config: {reason: resolved}}\n  - {id: never, type: reply, config: {message: never}}\n",
    ));
    assert_eq!(
        session.send("x"),
        ["in: x", "node r", "reply r: Bye", "node e", "end resolved"]
    );
    assert_eq!(
        session.state.status,
        SessionStatus::Ended {
            reason: "resolved".into()
        }
    );
    assert!(!session.state.is_open());

    check(
        "  - {id: e, type: end}\n",
        &[],
        "x",
        &["in: x", "node e", "end flow_end"],
    );
}

// ---- Limits and determinism -----------------------------------------------------------------

#[test]
fn a_next_loop_stops_at_the_step_limit() {
    let mut session = Session::new(flow(
        "  - {id: a, type: reply, config: {message: A}, next: b}\n  - {id: b, type: set, config: {key: k, value: \"{{ state.k }}b\"}, next: a}\n",
    ));
    let events = session.send("x");
    assert_eq!(events.len(), 1 + 2 * STEPS_PER_MESSAGE_MAX + 1);
    assert_eq!(
        events.last().map(String::as_str),
        Some(
            "fail a: step limit: more than 16 nodes ran for one message (a `next` or route loop?)"
        )
    );
    assert_eq!(
        session.state.vars["k"],
        "b".repeat(STEPS_PER_MESSAGE_MAX / 2)
    );
    assert_eq!(session.state.flow_errors, 1);
}

#[test]
fn the_same_inputs_give_the_same_events() {
    let nodes = format!("{ROUTE_FLOW}  - {{id: s, type: set, config: {{key: k, value: \"{{{{ tenant.settings | dictsort }}}}{{{{ state }}}}\"}}}}\n");
    let runs: Vec<Vec<Vec<EventKind>>> = (0..3)
        .map(|_| {
            let mut session = Session::new(flow(&nodes));
            session.settings.insert("b".into(), "2".into());
            session.settings.insert("a".into(), "1".into());
            ["billing", "#7", "other"]
                .iter()
                .map(|text| {
                    let kinds = session.run(text);
                    fold(&mut session.state, &kinds);
                    kinds
                })
                .collect()
        })
        .collect();
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0], runs[2]);
    assert_eq!(runs[0].len(), 3);
}

/// The ids and texts of the largest group one message can produce.
#[test]
fn the_worst_case_message_fits_one_append_group() {
    let long = |c: char, n: usize| c.to_string().repeat(n);
    let ask_id = long('q', 128);
    let key = long('k', 64);
    // An `ask`, then a loop of 16 replies of 2 KiB each: the whole rendered budget, then the
    // step limit.
    let mut nodes =
        format!("  - {{id: {ask_id}, type: ask, config: {{message: q, key: {key}}}}}\n");
    let reply_id = |i: usize| format!("{i:0>128}");
    for i in 0..STEPS_PER_MESSAGE_MAX {
        let next = reply_id((i + 1) % STEPS_PER_MESSAGE_MAX);
        nodes.push_str(&format!(
            "  - {{id: {}, type: reply, config: {{message: \"{{{{ 'x' * 2048 }}}}\"}}, next: {next}}}\n",
            reply_id(i)
        ));
    }
    let flow = flow(&nodes);
    let id63 = long('t', 63);
    let mut state = SessionState::new(
        TenantId::parse(&id63).unwrap(),
        EnvId::parse(&id63).unwrap(),
        TeamId::parse(&id63).unwrap(),
        SessionId::parse(&long('s', 128)).unwrap(),
    );
    state.cursor = Cursor::Awaiting {
        node: ask_id.into(),
        key: key.into(),
    };
    let text = long('m', TEXT_BYTES_MAX);
    let user = long('u', NAME_BYTES_MAX);
    let message_id = long('i', NAME_BYTES_MAX);
    let settings = BTreeMap::new();
    let kinds = run(
        &flow,
        &state,
        &TenantInfo {
            name: "t",
            settings: &settings,
        },
        &Input {
            message_id: &message_id,
            user: &user,
            text: &text,
        },
    );
    assert_eq!(kinds.len(), EVENTS_PER_RUN_MAX);
    assert!(matches!(kinds.last(), Some(EventKind::FlowFailed { .. })));
    let replied: usize = kinds
        .iter()
        .map(|kind| match kind {
            EventKind::ReplySent { text, .. } => text.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(replied, RENDERED_BYTES_PER_MESSAGE_MAX);

    let started = EventKind::SessionStarted {
        user,
        flow: long('f', FLOW_LABEL_BYTES_MAX),
        flow_version: long('v', FLOW_LABEL_BYTES_MAX),
    };
    let bodies: Vec<Vec<u8>> = std::iter::once(started)
        .chain(kinds)
        .zip(1..)
        .map(|(kind, seq)| encode_body(&worst_envelope(&state, seq, kind)))
        .collect();
    assert!(bodies.len() <= GROUP_EVENTS_MAX);
    assert!(bodies.iter().all(|body| body.len() <= EVENT_BYTES_MAX));
    let frame = encode_frame(&GENESIS_HASH, &bodies);
    assert!(
        frame.len() <= FRAME_BYTES_MAX,
        "{} > {FRAME_BYTES_MAX}",
        frame.len()
    );
}

/// `kind` in an envelope with the ids of `state` and the largest numbers.
fn worst_envelope(state: &SessionState, seq: u64, kind: EventKind) -> Event {
    Event {
        id: uuid::Uuid::now_v7(),
        tenant: state.tenant.clone(),
        env: state.env.clone(),
        team: state.team.clone(),
        channel: ChannelId::parse(&"c".repeat(63)).unwrap(),
        session: state.session.clone(),
        seq: u64::MAX - 64 + seq,
        tenant_seq: u64::MAX - 64 + seq,
        at_ms: u64::MAX,
        kind,
    }
}

#[test]
fn every_kind_fits_the_event_overhead_bound_without_its_free_texts() {
    let id63 = "t".repeat(63);
    let state = SessionState::new(
        TenantId::parse(&id63).unwrap(),
        EnvId::parse(&id63).unwrap(),
        TeamId::parse(&id63).unwrap(),
        SessionId::parse(&"s".repeat(128)).unwrap(),
    );
    let node = "n".repeat(128);
    let key = "k".repeat(64);
    let cases = [
        (
            EventKind::SessionStarted {
                user: String::new(),
                flow: String::new(),
                flow_version: String::new(),
            },
            0,
        ),
        (
            EventKind::MessageReceived {
                message_id: String::new(),
                user: String::new(),
                text: String::new(),
            },
            0,
        ),
        (EventKind::NodeEntered { node: node.clone() }, 0),
        (
            EventKind::ReplySent {
                node: node.clone(),
                text: String::new(),
            },
            0,
        ),
        (
            EventKind::StateSet {
                key: key.clone(),
                value: String::new(),
            },
            0,
        ),
        (
            EventKind::AwaitingInput {
                node: node.clone(),
                key,
            },
            0,
        ),
        (
            EventKind::FlowFailed {
                node,
                error: "e".repeat(ERROR_BYTES_MAX),
            },
            ERROR_BYTES_MAX,
        ),
        (
            EventKind::SessionEnded {
                reason: String::new(),
            },
            0,
        ),
    ];
    for (kind, free_bytes) in cases {
        let name = kind.name();
        let record = 4 + encode_body(&worst_envelope(&state, 1, kind)).len();
        assert!(
            record <= EVENT_OVERHEAD_BYTES_MAX + free_bytes,
            "{name}: {record} bytes"
        );
    }
}

#[test]
fn flow_failed_errors_are_cut_to_their_limit_on_a_char_boundary() {
    let mut run = Run {
        tenant: &TenantInfo {
            name: "t",
            settings: &BTreeMap::new(),
        },
        input: &Input {
            message_id: "m",
            user: "u",
            text: "",
        },
        vars: Cow::Owned(BTreeMap::new()),
        context: None,
        rendered_bytes: 0,
        events: Vec::new(),
    };
    // One ASCII byte, then two-byte chars: the limit falls inside a char.
    run.fail("n", format!("a{}", "é".repeat(ERROR_BYTES_MAX)));
    match &run.events[..] {
        [EventKind::FlowFailed { error, .. }] => {
            assert_eq!(error.len(), ERROR_BYTES_MAX - 1);
            assert!(error.starts_with('a') && error[1..].chars().all(|c| c == 'é'));
        }
        other => panic!("unexpected {other:?}"),
    }
}

mod templates;
