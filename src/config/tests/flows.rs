//! Flow files: loading, references and their errors.

use super::*;

/// Loads `yaml` as a flow through a config, expecting an error; returns its message.
fn flow_error(yaml: &str) -> String {
    let fixture = Fixture::new(&[
        (
            "config.toml",
            "[tenants.acme.teams.support]\nflow = \"flows/bad.yaml\"\n",
        ),
        ("flows/bad.yaml", yaml),
    ]);
    let err = fixture.error();
    assert_mentions(
        &err,
        &[
            "config.toml",
            "tenants.acme.teams.support.flow",
            "flows/bad.yaml",
        ],
    );
    err
}

fn flow(yaml: &str) -> Flow {
    Flow::parse(Path::new("test.yaml"), yaml).unwrap()
}

#[test]
fn flow_validation_errors_name_file_node_and_fix() {
    let head = "name: f\nversion: \"1\"\nnodes:\n";
    let cases: &[(&str, &[&str])] = &[
        (
            "  - id: a\n    type: shout\n    config: {message: hi}\n",
            &["\"a\"", "unknown node type \"shout\"", "reply, ask, route, set, end"],
        ),
        (
            "  - id: a\n    type: reply\n    config: {message: x}\n  - id: a\n    type: end\n",
            &["nodes[1]", "duplicate node id \"a\""],
        ),
        (
            "  - id: a\n    type: reply\n    config: {message: x}\n    next: nowhere\n",
            &["\"a\"", "next", "no node has id \"nowhere\""],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes:\n        - {keyword: hi, next: ghost}\n",
            &["\"r\"", "routes[0].next", "\"ghost\""],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes: []\n      default: ghost\n",
            &["\"r\"", "config.default", "\"ghost\""],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes:\n        - {regex: \"(unclosed\", next: r}\n",
            &["\"r\"", "routes[0].regex", "invalid regex"],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes:\n        - {regex: \"\\\\w{1000}\\\\w{1000}\", next: r}\n",
            &["\"r\"", "routes[0].regex", "invalid regex"],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes:\n        - {keyword: \"  \", next: r}\n",
            &["\"r\"", "routes[0].keyword", "empty"],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes:\n        - {keyword: a, regex: b, next: r}\n",
            &["\"r\"", "routes[0]", "both"],
        ),
        (
            "  - id: r\n    type: route\n    config:\n      routes:\n        - {next: r}\n",
            &["\"r\"", "routes[0]", "neither"],
        ),
        (
            "  - id: r\n    type: route\n    config: {routes: []}\n",
            &["\"r\"", "at least one route"],
        ),
        (
            "  - id: a\n    type: reply\n    config: {message: x, colour: red}\n",
            &["\"a\"", "invalid `reply` config", "colour"],
        ),
        ("  - id: a\n    type: reply\n", &["\"a\"", "invalid `reply` config", "message"]),
        (
            "  - id: a\n    type: ask\n    config: {message: x, key: \"user name\"}\n",
            &["\"a\"", "config.key", "invalid state key"],
        ),
        ("  - id: \"a b\"\n    type: end\n", &["nodes[0].id", "invalid node id"]),
        ("  - id: a\n    type: end\n    nxt: a\n", &["nxt", "line"]),
    ];
    for (nodes, parts) in cases {
        let err = flow_error(&format!("{head}{nodes}"));
        assert_mentions(&err, parts);
    }

    let err = flow_error("name: f\nversion: \"1\"\nnodes: []\n");
    assert_mentions(&err, &["nodes", "no nodes"]);
    let err = flow_error("name: f\nnodes: []\n");
    assert_mentions(&err, &["missing field `version`"]);
    let err = flow_error("name: \"\"\nversion: \"1\"\nnodes: []\n");
    assert_mentions(&err, &["name", "must not be empty"]);
}

#[test]
fn flow_errors_carry_the_node_id() {
    let err = Flow::parse(
        Path::new("x.yaml"),
        "name: f\nversion: \"1\"\nnodes:\n  - id: a\n    type: nope\n",
    )
    .unwrap_err();
    match err {
        FlowError::Invalid { path, node, .. } => {
            assert_eq!(path, Path::new("x.yaml"));
            assert_eq!(node.as_deref(), Some("a"));
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn flow_node_count_is_bounded() {
    let mut yaml = String::from("name: f\nversion: \"1\"\nnodes:\n");
    for index in 0..=NODES_PER_FLOW_MAX {
        yaml.push_str(&format!("  - id: n{index}\n    type: end\n"));
    }
    let err = Flow::parse(Path::new("big.yaml"), &yaml)
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["big.yaml", "nodes", "limit of 1024"]);
}

#[test]
fn flow_nodes_resolve_targets_and_successors() {
    let flow = flow(
        r#"name: support
version: "2.1"
nodes:
  - id: ask_name
    type: ask
    config: {message: "Your name?", key: name}
  - id: pick
    type: route
    config:
      routes:
        - {keyword: Refund, next: refund}
        - {regex: "(?i)^order\\s+#?\\d+$", next: order}
      default: bye
  - id: order
    type: set
    config: {key: topic, value: "order {{message.text}}"}
    next: bye
  - id: refund
    type: reply
    config: {message: "Refunds take 5 days."}
  - id: bye
    type: end
    config: {reason: done}
"#,
    );
    assert_eq!(flow.position("pick"), Some(1));
    assert_eq!(flow.successor(0), Some(1));
    assert_eq!(flow.successor(2), Some(4), "`next` wins over file order");
    assert_eq!(flow.successor(4), None);
    assert!(matches!(&flow.nodes()[0].action, Action::Ask { key, .. } if key == "name"));
    assert!(matches!(&flow.nodes()[4].action, Action::End { reason: Some(r) } if r == "done"));
    let Action::Route(route) = &flow.nodes()[1].action else {
        panic!("not a route")
    };
    assert!(matches!(&route.routes[0].matcher, RouteMatcher::Keyword(k) if k == "refund"));
    assert_eq!(route.choose("I want a REFUND!"), Some(3));
    assert_eq!(route.choose("Order #123"), Some(2));
    assert_eq!(
        route.choose("refunds please"),
        Some(4),
        "keywords match whole words only"
    );
    assert_eq!(route.choose("hello"), Some(4));
    assert_eq!(flow.nodes()[1].action.type_name(), "route");
}

#[test]
fn keywords_match_whole_words_case_insensitively() {
    let matcher = RouteMatcher::Keyword("help".to_owned());
    for yes in [
        "help",
        "HELP",
        "  Help!",
        "I need help",
        "help me",
        "(help)",
        "please,help",
    ] {
        assert!(matcher.matches(yes), "{yes:?}");
    }
    for no in ["", "helpful", "unhelp", "h e l p", "help2"] {
        assert!(!matcher.matches(no), "{no:?}");
    }
    let phrase = RouteMatcher::Keyword("talk to human".to_owned());
    assert!(phrase.matches("Can I talk to human?"));
    assert!(!phrase.matches("talk to humans"));
    // Lowercasing can change byte lengths; the offsets must still line up.
    let after_special = RouteMatcher::Keyword("ok".to_owned());
    assert!(after_special.matches("İ ok"));
}

#[test]
fn unquoted_versions_read_as_written() {
    let flow = flow("name: f\nversion: 1.0\nnodes:\n  - id: a\n    type: end\n");
    assert_eq!(flow.version(), "1.0");
}
