//! Templates: what they see, how they render and fail, and their limits.

use super::*;

#[test]
fn templates_see_the_tenant_its_settings_and_the_message() {
    let mut session = Session::new(flow(
        "  - {id: r, type: reply, config: {message: \"{{ tenant.name }} ({{ tenant.settings.tier }}) to {{ message.user }}: {{ message.text }}\"}}\n",
    ));
    session.tenant_name = "BigCorp".into();
    session.settings.insert("tier".into(), "gold".into());
    assert_eq!(
        session.send("hello"),
        [
            "in: hello",
            "node r",
            "reply r: BigCorp (gold) to u1: hello"
        ]
    );
}

#[test]
fn undefined_values_render_empty_but_attributes_of_them_fail() {
    check(
        "  - {id: r, type: reply, config: {message: \"[{{ state.nope }}|{{ tenant.settings.nope }}|{{ nope }}]\"}}\n",
        &[],
        "x",
        &["in: x", "node r", "reply r: [||]"],
    );
    check(
        "  - {id: r, type: reply, config: {message: \"{{ nope.deeper }}\"}}\n",
        &[],
        "x",
        &[
            "in: x",
            "node r",
            "fail r: template error: undefined value at line 1",
        ],
    );
}

#[test]
fn templates_are_not_html_escaped_and_keep_their_trailing_newline() {
    check(
        "  - {id: r, type: reply, config: {message: \"<{{ message.text }}>\\n\"}}\n",
        &[],
        "<b>&'\"",
        &["in: <b>&'\"", "node r", "reply r: <<b>&'\">\n"],
    );
}

#[test]
fn template_failures_describe_the_error_without_quoting_the_message() {
    let mut session = Session::new(flow(
        "  - {id: r, type: reply, config: {message: \"{{ message.text + 1 }}\"}}\n",
    ));
    let events = session.run("SECRET-42");
    let error = match events.last() {
        Some(EventKind::FlowFailed { node, error }) if node == "r" => error.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(error, "template error: invalid operation at line 1");
    assert!(!error.contains("SECRET"));
}

#[test]
fn a_spinning_template_runs_out_of_fuel() {
    let text = "x".repeat(200);
    check(
        "  - {id: r, type: reply, config: {message: \"{% for a in message.text %}{% for b in message.text %}{% endfor %}{% endfor %}\"}}\n",
        &[],
        &text,
        &[
            &format!("in: {text}"),
            "node r",
            "fail r: template ran out of fuel (10000 instructions) at line 1",
        ],
    );
    // The same template over a short text finishes within its fuel.
    check(
        "  - {id: r, type: reply, config: {message: \"{% for a in message.text %}{% for b in message.text %}.{% endfor %}{% endfor %}\"}}\n",
        &[],
        "abc",
        &["in: abc", "node r", "reply r: ........."],
    );
}

#[test]
fn texts_over_the_text_limit_fail_the_node() {
    let big = "x".repeat(TEXT_BYTES_MAX / 2 + 1);
    check(
        "  - {id: r, type: reply, config: {message: \"{{ message.text * 2 }}\"}}\n",
        &[],
        &big,
        &[
            &format!("in: {big}"),
            "node r",
            "fail r: rendered text exceeds 16384 bytes",
        ],
    );
    // A plain text is not rendered but is held to the same limit.
    let plain = "y".repeat(TEXT_BYTES_MAX + 1);
    check(
        &format!("  - {{id: r, type: reply, config: {{message: {plain}}}}}\n"),
        &[],
        "x",
        &[
            "in: x",
            "node r",
            "fail r: text of 16385 bytes exceeds 16384 bytes",
        ],
    );
    // At the limit exactly it is sent.
    let exact = "z".repeat(TEXT_BYTES_MAX);
    let mut session = Session::new(flow(&format!(
        "  - {{id: r, type: reply, config: {{message: {exact}}}}}\n"
    )));
    assert_eq!(session.send("x").last(), Some(&format!("reply r: {exact}")));
}

#[test]
fn the_rendered_budget_of_one_message_fails_the_node_that_would_exceed_it() {
    // Two texts of 12 KiB fit in 32 KiB; the third would not.
    let nodes = "
  - {id: a, type: reply, config: {message: \"{{ 'a' * 12288 }}\"}}
  - {id: b, type: set, config: {key: k, value: \"{{ 'b' * 12288 }}\"}}
  - {id: c, type: reply, config: {message: \"{{ 'c' * 12288 }}\"}}
";
    let mut session = Session::new(flow(nodes));
    let events = session.send("x");
    assert_eq!(events.len(), 7);
    assert_eq!(
        events.last().map(String::as_str),
        Some("fail c: the message's replies and values exceed 32768 bytes")
    );
    // The budget is per message: the next one starts afresh (and fails at the same node).
    assert_eq!(
        session.send("y"),
        events
            .iter()
            .map(|e| e.replace("in: x", "in: y"))
            .collect::<Vec<_>>()
    );
}
