use super::*;
use crate::audit::fixture::{self, ctx, FLOW_YAML};
use crate::tenancy::fixtures::id;

fn run(fx: &fixture::Fixture, tenant: &str, session: &str, yaml: &str) -> (WhatIf, String) {
    let flow = Flow::parse(Path::new("what-if.yaml"), yaml).unwrap();
    let settings = BTreeMap::new();
    let name = format!("{} <Corp>", tenant.to_uppercase());
    let info = TenantInfo {
        name: &name,
        settings: &settings,
    };
    let mut out = Vec::new();
    let result = what_if(
        &fx.log,
        &ctx(tenant, "prod"),
        &id(session),
        &flow,
        &info,
        &mut out,
    )
    .unwrap();
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn the_recorded_flow_reproduces_every_message() {
    let fx = fixture::build();
    for (tenant, messages) in [("acme", 3), ("acmex", 2)] {
        let (result, out) = run(&fx, tenant, "s1", FLOW_YAML);
        assert!(result.identical(), "{out}");
        assert_eq!(result.messages, messages);
        assert!(out.contains("message 1 (seq 2): same"), "{out}");
        assert!(
            out.contains(&format!("result: identical ({messages} messages)")),
            "{out}"
        );
    }
}

#[test]
fn an_edited_reply_shows_both_texts() {
    let fx = fixture::build();
    let yaml = FLOW_YAML.replace("Thanks, {{ state.name }}", "Cheers, {{ state.name }}");
    let (result, out) = run(&fx, "acmex", "s1", &yaml);
    assert!(!result.identical());
    assert_eq!(result.diverged, 1);
    assert!(out.contains("message 1 (seq 2): same"), "{out}");
    assert!(
        out.contains("  reply 1: recorded \"Thanks, Bob\" / what-if \"Cheers, Bob\""),
        "{out}"
    );
    assert!(out.contains("result: diverges in 1 of 2 messages"), "{out}");
}

#[test]
fn a_what_if_path_that_ends_early_leaves_later_messages_unrun() {
    let fx = fixture::build();
    let yaml = FLOW_YAML.replace("default: greet", "default: done");
    let (result, out) = run(&fx, "acme", "s1", &yaml);
    assert_eq!((result.messages, result.diverged), (3, 3), "{out}");
    assert!(
        out.contains("event 1: recorded reply \"Hello from ACME <Corp>! You said: =cmd|' /C calc'!A0\" / what-if session end \"user said bye\""),
        "{out}"
    );
    assert!(
        out.contains("missing in what-if: reply \"What's your name?\""),
        "{out}"
    );
    assert!(
        out.contains("not run: the what-if session ended at message 1"),
        "{out}"
    );
}

#[test]
fn differences_are_listed_position_by_position() {
    let reply = |t: &str| Outcome::Reply(t.to_owned());
    let lines = compare(
        &[reply("a"), reply("b"), Outcome::Ended("x".into())],
        &[reply("a"), reply("c")],
    );
    assert_eq!(
        lines,
        vec![
            "reply 2: recorded \"b\" / what-if \"c\"".to_owned(),
            "missing in what-if: session end \"x\"".to_owned(),
        ]
    );
}
