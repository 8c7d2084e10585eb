//! What-if replay: re-runs a recorded session's inputs through another flow file and compares
//! what that flow would have done with what was recorded, message by message.
//!
//! Starting from a fresh [`SessionState`] (with the recorded `SessionStarted`), each recorded
//! `MessageReceived` is run through [`engine::run`] on the *what-if* state; the comparable events
//! it produces (`ReplySent` texts, `StateSet` keys and values, `AwaitingInput`, `FlowFailed`,
//! `SessionEnded`) are compared with those recorded between that message and the next, and the
//! what-if events are folded into the what-if state, so later messages follow the what-if path.
//! `NodeEntered` is not compared: node ids are the flow's own business. Once the what-if session
//! ends, the remaining recorded messages are reported as diverging (they were never run).
//!
//! Each message's result is structured ([`MessageResult`]: both sides' replies, the vars after
//! it, the end reason and the flow failure, and the differences as text lines), handed to the
//! caller one message at a time ([`what_if_each`]); the CLI's text report ([`what_if`]) and the
//! HTTP API's JSON are both rendered from it.
//!
//! Invariants: the engine is deterministic, so the same flow file on the same session reports
//! every message the same; a flow panic is recorded as the runtime records it (`FlowFailed`,
//! "internal error while running the flow"); memory holds one message's recorded events and
//! the two sessions' states; nothing is written to the log.

use std::collections::BTreeMap;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use super::replay::{apply_checked, quote, require_session};
use super::AuditError;
use crate::config::flow::Flow;
use crate::config::Config;
use crate::events::codec::GROUP_EVENTS_MAX;
use crate::events::log::EventLog;
use crate::events::schema::{Event, EventKind};
use crate::flow::engine::{self, Input, TenantInfo};
use crate::projections::session::{SessionState, SessionStatus};
use crate::tenancy::{ChannelId, SessionId, TenantCtx};

/// Most recorded events kept for one message. The runtime appends one message's events as one
/// group, so more would mean a damaged log.
pub const RECORDED_EVENTS_PER_MESSAGE_MAX: usize = GROUP_EVENTS_MAX;

/// The result of a what-if replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhatIf {
    /// Recorded messages.
    pub messages: u64,
    /// Messages whose what-if outcome differs from the recorded one (or that were not run).
    pub diverged: u64,
}

impl WhatIf {
    /// Whether every message came out the same.
    pub fn identical(&self) -> bool {
        self.diverged == 0
    }
}

/// What one side (the recorded session, or the what-if one) did on one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Side {
    /// The reply texts, in order.
    pub replies: Vec<String>,
    /// The session's vars after the message.
    pub vars: BTreeMap<String, String>,
    /// The session's end reason, once it has ended.
    pub ended: Option<String>,
    /// The flow failure's message, when the run on this message failed.
    pub failed: Option<String>,
}

/// One recorded message re-run through the what-if flow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageResult {
    /// 1-based among the session's messages.
    pub index: u64,
    /// The seq of its `MessageReceived`.
    pub seq: u64,
    /// The message's text.
    pub text: String,
    /// What was recorded.
    pub recorded: Side,
    /// What the what-if flow did (nothing, once the what-if session has ended).
    pub what_if: Side,
    /// How they differ, one readable line each (the CLI prints them); empty when the same.
    pub differences: Vec<String>,
}

impl MessageResult {
    /// Whether the what-if outcome differs from the recorded one (or was not run).
    pub fn diverged(&self) -> bool {
        !self.differences.is_empty()
    }
}

/// [`what_if`] with the flow loaded from `flow_path` and the templates' tenant info from the
/// config (a tenant missing from the config gets its id as name and no settings, with a note).
pub fn what_if_with_config(
    log: &EventLog,
    config: &Config,
    ctx: &TenantCtx,
    session: &SessionId,
    flow_path: &Path,
    out: &mut dyn Write,
) -> Result<WhatIf, AuditError> {
    let flow = Flow::load(flow_path)?;
    let no_settings = BTreeMap::new();
    let info = match config.tenant(&ctx.tenant) {
        Some(tenant) => TenantInfo {
            name: &tenant.name,
            settings: &tenant.settings,
        },
        None => {
            writeln!(
                out,
                "note: tenant {} is not in the config; templates see its id as tenant.name and \
                 no settings",
                ctx.tenant
            )
            .map_err(write_error)?;
            TenantInfo {
                name: ctx.tenant.as_str(),
                settings: &no_settings,
            }
        }
    };
    what_if(log, ctx, session, &flow, &info, out)
}

/// Re-runs the session's recorded messages through `flow` and writes the comparison to `out`,
/// one line per message (`message N (seq S): same`, or `differs` and one indented line per
/// difference), then a result line.
pub fn what_if(
    log: &EventLog,
    ctx: &TenantCtx,
    session: &SessionId,
    flow: &Flow,
    tenant: &TenantInfo<'_>,
    out: &mut dyn Write,
) -> Result<WhatIf, AuditError> {
    let scope = log.scope(ctx);
    require_session(scope.session_last_seq(session)?, &scope, session)?;
    writeln!(
        out,
        "what-if replay of session {ctx}/{session} with flow {} {} ({})",
        quote(flow.name()),
        quote(flow.version()),
        flow.source().display()
    )
    .map_err(write_error)?;
    let result = what_if_each(log, ctx, session, flow, tenant, &mut |message| {
        let label = format!("message {} (seq {})", message.index, message.seq);
        if message.diverged() {
            writeln!(out, "{label}: differs").map_err(write_error)?;
            for difference in &message.differences {
                writeln!(out, "  {difference}").map_err(write_error)?;
            }
        } else {
            writeln!(out, "{label}: same").map_err(write_error)?;
        }
        Ok(())
    })?;
    if result.identical() {
        writeln!(out, "result: identical ({} messages)", result.messages)
    } else {
        writeln!(
            out,
            "result: diverges in {} of {} messages",
            result.diverged, result.messages
        )
    }
    .map_err(write_error)?;
    Ok(result)
}

/// Re-runs the session's recorded messages through `flow`, handing each message's result to
/// `each` in seq order; returns the totals. Appends nothing. An unknown session is
/// [`AuditError::Usage`]; an error from `each` stops the run and is returned.
pub fn what_if_each(
    log: &EventLog,
    ctx: &TenantCtx,
    session: &SessionId,
    flow: &Flow,
    tenant: &TenantInfo<'_>,
    each: &mut dyn FnMut(MessageResult) -> Result<(), AuditError>,
) -> Result<WhatIf, AuditError> {
    let scope = log.scope(ctx);
    require_session(scope.session_last_seq(session)?, &scope, session)?;
    let fresh = || {
        SessionState::new(
            ctx.tenant.clone(),
            ctx.env.clone(),
            ctx.team_or_default(),
            session.clone(),
        )
    };
    let mut run = Rerun {
        recorded: fresh(),
        flow,
        tenant,
        state: SessionState::new(
            ctx.tenant.clone(),
            ctx.env.clone(),
            ctx.team_or_default(),
            session.clone(),
        ),
        ended_at: None,
        result: WhatIf {
            messages: 0,
            diverged: 0,
        },
    };
    let mut pending: Option<Recorded> = None;
    for item in scope.session_events(session, 1..=u64::MAX) {
        let event = item?.event;
        if matches!(event.kind, EventKind::MessageReceived { .. }) {
            // The recorded state after the previous message's events: its side.
            if let Some(done) = pending.take() {
                run.message(done, each)?;
            }
        }
        apply_checked(&mut run.recorded, &event)?;
        match event.kind {
            EventKind::SessionStarted { .. } => {
                if run.state.last_seq == 0 {
                    apply_checked(&mut run.state, &event)?;
                }
            }
            EventKind::MessageReceived { .. } => {
                pending = Some(Recorded {
                    index: run.result.messages + 1,
                    message: event,
                    events: Vec::new(),
                });
            }
            kind => {
                // Events before the first message (none besides SessionStarted) are not a
                // message's outcome.
                if let Some(recorded) = pending.as_mut() {
                    if recorded.events.len() == RECORDED_EVENTS_PER_MESSAGE_MAX {
                        return Err(AuditError::Usage(format!(
                            "message at seq {} has more than {RECORDED_EVENTS_PER_MESSAGE_MAX} \
                             recorded events; the log looks damaged",
                            recorded.message.seq
                        )));
                    }
                    recorded.events.push(kind);
                }
            }
        }
    }
    if let Some(done) = pending.take() {
        run.message(done, each)?;
    }
    Ok(run.result)
}

fn write_error(e: std::io::Error) -> AuditError {
    AuditError::io("writing the what-if report", e)
}

/// One recorded message and the events recorded after it.
struct Recorded {
    /// 1-based among the session's messages.
    index: u64,
    /// The `MessageReceived` event.
    message: Event,
    /// Events up to the next message.
    events: Vec<EventKind>,
}

/// The what-if session as it runs.
struct Rerun<'a> {
    flow: &'a Flow,
    tenant: &'a TenantInfo<'a>,
    /// The recorded session, folded from its events.
    recorded: SessionState,
    /// The what-if session.
    state: SessionState,
    /// The message after which the what-if session ended.
    ended_at: Option<u64>,
    result: WhatIf,
}

impl Rerun<'_> {
    fn message(
        &mut self,
        recorded: Recorded,
        each: &mut dyn FnMut(MessageResult) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        self.result.messages += 1;
        let EventKind::MessageReceived {
            message_id,
            user,
            text,
        } = &recorded.message.kind
        else {
            return Ok(());
        };
        let recorded_outcomes = outcomes(&recorded.events);
        let mut result = MessageResult {
            index: recorded.index,
            seq: recorded.message.seq,
            text: text.clone(),
            recorded: side(&self.recorded, &recorded_outcomes),
            what_if: side(&self.state, &[]),
            differences: Vec::new(),
        };
        if let Some(ended) = self.ended_at {
            self.result.diverged += 1;
            result.differences = vec![format!(
                "not run: the what-if session ended at message {ended}"
            )];
            return each(result);
        }
        let input = Input {
            message_id,
            user,
            text,
        };
        let state = &self.state;
        let (flow, tenant) = (self.flow, self.tenant);
        // Mirror the runtime: a panicking flow run is recorded as a failure, not a crash.
        let produced = std::panic::catch_unwind(AssertUnwindSafe(|| {
            engine::run(flow, state, tenant, &input)
        }))
        .unwrap_or_else(|_| {
            vec![
                recorded.message.kind.clone(),
                EventKind::FlowFailed {
                    node: state.current_node.as_deref().unwrap_or_default().to_owned(),
                    error: "internal error while running the flow".into(),
                },
            ]
        });
        let produced_outcomes = outcomes(&produced);
        result.differences = compare(&recorded_outcomes, &produced_outcomes);
        if result.diverged() {
            self.result.diverged += 1;
        }
        self.fold(produced, &recorded.message.channel, &recorded.message)?;
        if !self.state.is_open() {
            self.ended_at = Some(recorded.index);
        }
        result.what_if = side(&self.state, &produced_outcomes);
        each(result)
    }

    /// Applies the what-if events, numbered after the what-if state's last seq.
    fn fold(
        &mut self,
        kinds: Vec<EventKind>,
        channel: &ChannelId,
        message: &Event,
    ) -> Result<(), AuditError> {
        for kind in kinds {
            let event = Event {
                // What-if events were never stored; they have no id or tenant position.
                id: uuid::Uuid::nil(),
                tenant: self.state.tenant.clone(),
                env: self.state.env.clone(),
                team: self.state.team.clone(),
                channel: channel.clone(),
                session: self.state.session.clone(),
                seq: self.state.last_seq + 1,
                tenant_seq: message.tenant_seq,
                at_ms: message.at_ms,
                kind,
            };
            apply_checked(&mut self.state, &event)?;
        }
        Ok(())
    }
}

/// One side of a message's result: its replies and failure from `outcomes`, its vars and end
/// from `state` (after the message).
fn side(state: &SessionState, outcomes: &[Outcome]) -> Side {
    let mut side = Side {
        vars: state.vars.clone(),
        ended: match &state.status {
            SessionStatus::Ended { reason } => Some(reason.clone()),
            SessionStatus::Open => None,
        },
        ..Side::default()
    };
    for outcome in outcomes {
        match outcome {
            Outcome::Reply(text) => side.replies.push(text.clone()),
            Outcome::Failed { error, .. } => {
                side.failed.get_or_insert_with(|| error.clone());
            }
            Outcome::State { .. } | Outcome::Awaiting { .. } | Outcome::Ended(_) => {}
        }
    }
    side
}

/// What a message's run did that the comparison looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Reply(String),
    State { key: String, value: String },
    Awaiting { node: String, key: String },
    Failed { node: String, error: String },
    Ended(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Reply(_) => "reply",
            Outcome::State { .. } => "state",
            Outcome::Awaiting { .. } => "awaiting input",
            Outcome::Failed { .. } => "flow failure",
            Outcome::Ended(_) => "session end",
        }
    }

    fn describe(&self) -> String {
        match self {
            Outcome::Reply(text) => quote(text),
            Outcome::State { key, value } => format!("{} = {}", quote(key), quote(value)),
            Outcome::Awaiting { node, key } => {
                format!("after node {} for {}", quote(node), quote(key))
            }
            Outcome::Failed { node, error } => format!("at node {}: {}", quote(node), quote(error)),
            Outcome::Ended(reason) => quote(reason),
        }
    }
}

fn outcomes(kinds: &[EventKind]) -> Vec<Outcome> {
    kinds
        .iter()
        .filter_map(|kind| match kind {
            EventKind::ReplySent { text, .. } => Some(Outcome::Reply(text.clone())),
            EventKind::StateSet { key, value } => Some(Outcome::State {
                key: key.clone(),
                value: value.clone(),
            }),
            EventKind::AwaitingInput { node, key } => Some(Outcome::Awaiting {
                node: node.clone(),
                key: key.clone(),
            }),
            EventKind::FlowFailed { node, error } => Some(Outcome::Failed {
                node: node.clone(),
                error: error.clone(),
            }),
            EventKind::SessionEnded { reason } => Some(Outcome::Ended(reason.clone())),
            EventKind::SessionStarted { .. }
            | EventKind::MessageReceived { .. }
            | EventKind::NodeEntered { .. }
            | EventKind::ConnectorRegistered { .. }
            | EventKind::ConnectorStateChanged { .. }
            | EventKind::OutboxAcked { .. }
            | EventKind::OutboxDeadLettered { .. } => None,
        })
        .collect()
}

/// Differences between the recorded and the what-if outcomes, position by position.
fn compare(recorded: &[Outcome], what_if: &[Outcome]) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..recorded.len().max(what_if.len()) {
        match (recorded.get(i), what_if.get(i)) {
            (Some(r), Some(w)) if r == w => {}
            (Some(r), Some(w)) if r.label() == w.label() => {
                let nth = recorded[..=i]
                    .iter()
                    .filter(|o| o.label() == r.label())
                    .count();
                out.push(format!(
                    "{} {nth}: recorded {} / what-if {}",
                    r.label(),
                    r.describe(),
                    w.describe()
                ));
            }
            (Some(r), Some(w)) => out.push(format!(
                "event {}: recorded {} {} / what-if {} {}",
                i + 1,
                r.label(),
                r.describe(),
                w.label(),
                w.describe()
            )),
            (Some(r), None) => out.push(format!(
                "missing in what-if: {} {}",
                r.label(),
                r.describe()
            )),
            (None, Some(w)) => {
                out.push(format!("extra in what-if: {} {}", w.label(), w.describe()))
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
