//! Test data for the audit unit tests: a log in a temp dir with two tenants, `acme` and `acmex`,
//! that use the same env, team, channel and session ids, written the way the runtime writes it
//! (the flow engine decides, one append group per message, the state folds the result), with
//! hostile text in messages and replies.

use crate::tenancy::fixtures::id;
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::flow::Flow;
use crate::events::log::{AppendGroup, AppendOutcome, EventLog, LogOptions};
use crate::events::schema::{Event, EventKind};
use crate::flow::engine::{self, Input, TenantInfo};
use crate::projections::session::SessionState;
use crate::tenancy::{SessionId, TenantCtx};

/// The fixture's flow: routes `bye` to an end, else greets (echoing the message), asks a name,
/// thanks, and sets a key.
pub const FLOW_YAML: &str = r#"name: audit_flow
version: "1"
nodes:
  - id: router
    type: route
    config:
      routes:
        - keyword: bye
          next: done
      default: greet
  - id: done
    type: end
    config:
      reason: "user said bye"
  - id: greet
    type: reply
    config:
      message: "Hello from {{ tenant.name }}! You said: {{ message.text }}"
  - id: ask_name
    type: ask
    config:
      message: "What's your name?"
      key: name
  - id: thanks
    type: reply
    config:
      message: "Thanks, {{ state.name }}"
  - id: remember
    type: set
    config:
      key: greeted
      value: "yes, {{ state.name }}"
"#;

/// Spreadsheet formula injection.
pub const FORMULA: &str = "=cmd|' /C calc'!A0";
/// Quotes, commas, CR/LF, a tab, a terminal escape and non-ASCII.
pub const HOSTILE: &str = "Ada \"the\", Countess\r\nof Lovelace\t✓ 日本 \u{1b}[31m";

pub fn flow() -> Flow {
    Flow::parse(Path::new("audit_flow.yaml"), FLOW_YAML).unwrap()
}

pub fn ctx(tenant: &str, env: &str) -> TenantCtx {
    TenantCtx::new(id(tenant), id(env), Some(id("support")))
}

/// A log with `acme` and `acmex` sessions; see [`build`].
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub log: EventLog,
}

/// Writes one session's messages as the runtime would; the state after the last message.
pub fn converse(
    log: &EventLog,
    ctx: &TenantCtx,
    session: &str,
    start_ms: u64,
    texts: &[&str],
) -> SessionState {
    let flow = flow();
    let settings = BTreeMap::new();
    let name = format!("{} <Corp>", ctx.tenant.as_str().to_uppercase());
    let info = TenantInfo {
        name: &name,
        settings: &settings,
    };
    let session: SessionId = id(session);
    let mut state = SessionState::new(
        ctx.tenant.clone(),
        ctx.env.clone(),
        ctx.team_or_default(),
        session.clone(),
    );
    for (i, text) in texts.iter().enumerate() {
        let message_id = format!("{session}-{i}");
        let input = Input {
            message_id: &message_id,
            user: "ada",
            text,
        };
        let mut kinds = engine::run(&flow, &state, &info, &input);
        if state.last_seq == 0 {
            kinds.insert(
                0,
                EventKind::SessionStarted {
                    user: "ada".into(),
                    flow: flow.name().into(),
                    flow_version: flow.version().into(),
                },
            );
        }
        let at_ms = start_ms + 1000 * i as u64;
        let group = AppendGroup {
            ctx: ctx.clone(),
            channel: id("slack"),
            session: session.clone(),
            expected_seq: state.last_seq,
            at_ms,
            kinds: kinds.clone(),
            idempotency: None,
        };
        let Ok(AppendOutcome::Appended(appended)) = log.append_blocking(group) else {
            panic!("append failed");
        };
        for (j, kind) in kinds.into_iter().enumerate() {
            state.apply(&Event {
                id: uuid::Uuid::nil(),
                tenant: ctx.tenant.clone(),
                env: ctx.env.clone(),
                team: ctx.team_or_default(),
                channel: id("slack"),
                session: session.clone(),
                seq: appended.first_seq + j as u64,
                tenant_seq: appended.first_tenant_seq + j as u64,
                at_ms,
                kind,
            });
        }
    }
    state
}

/// `acme`: prod/support/s1 (three messages, ends), staging/support/s1 (one message, an hour
/// later) and prod/support/s2 (one); `acmex`: prod/support/s1 with its own texts.
pub fn build() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(&dir.path().join("log"), &LogOptions::default()).unwrap();
    let t0 = 1_795_428_000_000; // 2026-11-23T10:00:00Z
    converse(
        &log,
        &ctx("acme", "prod"),
        "s1",
        t0,
        &[FORMULA, HOSTILE, "bye"],
    );
    converse(
        &log,
        &ctx("acmex", "prod"),
        "s1",
        t0,
        &["acmex only", "Bob"],
    );
    converse(
        &log,
        &ctx("acme", "staging"),
        "s1",
        t0 + 3_600_000,
        &["+SUM(1,2)"],
    );
    converse(
        &log,
        &ctx("acme", "prod"),
        "s2",
        t0 + 7_200_000,
        &["-1 @home"],
    );
    Fixture { dir, log }
}
