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

/// The structured results of a what-if run, with the tenant's head before and after.
fn each(fx: &fixture::Fixture, tenant: &str, yaml: &str) -> (WhatIf, Vec<MessageResult>) {
    let flow = Flow::parse(Path::new("what-if.yaml"), yaml).unwrap();
    let settings = BTreeMap::new();
    let name = format!("{} <Corp>", tenant.to_uppercase());
    let info = TenantInfo {
        name: &name,
        settings: &settings,
    };
    let head = |fx: &fixture::Fixture| fx.log.tenant(&id(tenant)).head().unwrap();
    let before = head(fx);
    let mut results = Vec::new();
    let totals = what_if_each(
        &fx.log,
        &ctx(tenant, "prod"),
        &id("s1"),
        &flow,
        &info,
        &mut |m| {
            results.push(m);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(head(fx), before, "a what-if appends nothing");
    (totals, results)
}

#[test]
fn what_if_results_carry_both_sides_of_each_message() {
    let fx = fixture::build();
    let yaml = FLOW_YAML.replace("Thanks, {{ state.name }}", "Cheers, {{ state.name }}");
    let (totals, results) = each(&fx, "acmex", &yaml);
    assert_eq!((totals.messages, totals.diverged), (2, 1));
    assert_eq!(results.len(), 2);
    let (first, second) = (&results[0], &results[1]);
    assert_eq!((first.index, first.seq), (1, 2));
    assert!(!first.diverged(), "{first:?}");
    assert_eq!(first.recorded, first.what_if);
    assert!(!first.recorded.replies.is_empty());
    assert!(second.diverged());
    assert_eq!(second.recorded.replies, vec!["Thanks, Bob".to_owned()]);
    assert_eq!(second.what_if.replies, vec!["Cheers, Bob".to_owned()]);
    assert_eq!(second.text, "Bob");
    assert_eq!(second.recorded.vars, second.what_if.vars);
    assert_eq!(
        second.what_if.vars.get("greeted").map(String::as_str),
        Some("yes, Bob")
    );
    assert_eq!(
        second.differences,
        vec!["reply 1: recorded \"Thanks, Bob\" / what-if \"Cheers, Bob\"".to_owned()]
    );
    assert_eq!(
        (&second.recorded.ended, &second.recorded.failed),
        (&None, &None)
    );
}

#[test]
fn what_if_results_of_an_early_end_name_the_reason_and_run_nothing_after() {
    let fx = fixture::build();
    let yaml = FLOW_YAML.replace("default: greet", "default: done");
    let (totals, results) = each(&fx, "acme", &yaml);
    assert_eq!((totals.messages, totals.diverged), (3, 3));
    assert_eq!(results[0].what_if.ended.as_deref(), Some("user said bye"));
    assert_eq!(results[0].recorded.ended, None);
    assert!(results[0].what_if.replies.is_empty());
    // Not run: the what-if side stays as it ended; the recorded side goes on.
    assert!(results[1].what_if.replies.is_empty());
    assert!(!results[1].recorded.replies.is_empty());
    assert_eq!(
        results[1].differences,
        vec!["not run: the what-if session ended at message 1".to_owned()]
    );
    // The recorded session ended on "bye" at its third message.
    assert_eq!(results[2].recorded.ended.as_deref(), Some("user said bye"));
}
