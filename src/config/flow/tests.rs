//! Flow validation rules owned by `flow.rs` alone; the wider loading tests are in
//! `config/tests.rs`.

use std::path::Path;

use super::*;

fn parse(nodes: &str) -> Result<Flow, FlowError> {
    Flow::parse(
        Path::new("flows/t.yaml"),
        &format!("name: t\nversion: \"1\"\nnodes:\n{nodes}"),
    )
}

#[test]
fn template_syntax_errors_stop_the_load_naming_file_node_field_and_error() {
    let cases = [
        (
            "  - id: hello\n    type: reply\n    config: {message: \"Hi {{ state.name \"}\n",
            "nodes[0] (id \"hello\").config.message",
        ),
        (
            "  - id: q\n    type: ask\n    config: {message: \"{% if %}?\", key: k}\n",
            "nodes[0] (id \"q\").config.message",
        ),
        (
            "  - id: s\n    type: set\n    config: {key: k, value: \"{% for x in y %}\"}\n",
            "nodes[0] (id \"s\").config.value",
        ),
        (
            "  - id: ok\n    type: reply\n    config: {message: fine}\n  - id: c\n    type: reply\n    config: {message: \"{# open\"}\n",
            "nodes[1] (id \"c\").config.message",
        ),
    ];
    for (nodes, at_expected) in cases {
        let err = parse(nodes).expect_err(nodes);
        let text = err.to_string();
        assert!(text.starts_with("flows/t.yaml: "), "{text}");
        assert!(
            text.contains("invalid template on line 1: syntax error"),
            "{text}"
        );
        match err {
            FlowError::Invalid { node, at, .. } => {
                assert_eq!(at, at_expected);
                assert_eq!(node.as_deref(), at_expected.split('"').nth(1));
            }
            other => panic!("unexpected {other}"),
        }
    }
}

#[test]
fn valid_templates_and_plain_texts_load_unchanged() {
    let flow = parse(
        "  - id: a\n    type: reply\n    config: {message: \"Hi {{ state.name | upper }}! {# note #}\"}\n\
         \x20 - id: b\n    type: set\n    config: {key: k, value: \"{% if message.text %}y{% endif %}\"}\n\
         \x20 - id: c\n    type: reply\n    config: {message: \"plain } { text\"}\n",
    )
    .unwrap();
    assert!(matches!(
        &flow.nodes()[0].action,
        Action::Reply { message } if message == "Hi {{ state.name | upper }}! {# note #}"
    ));
    assert!(matches!(
        &flow.nodes()[2].action,
        Action::Reply { message } if message == "plain } { text"
    ));
}
