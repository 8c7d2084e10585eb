//! Session state: the read model of one session, folded from its events (docs/events.md).
//!
//! The flow engine reads it to know where the next message starts ([`Cursor`]), which state keys
//! are set and whether the session is still open; snapshots store it so a session restarts from
//! its snapshot plus the events after it.
//!
//! Invariants:
//! - [`SessionState::apply`] is infallible and pure: the state is a function of the events alone,
//!   so folding a snapshot plus the tail gives the same result as folding the whole session.
//! - Events are applied in `seq` order without gaps, and only the session's own events are
//!   applied. Both are asserted on every event (a violation is a bug in the caller, never bad
//!   input). The one exception is the first event folded into a new state: when the session's
//!   start was trimmed by the tenant's retention (docs/storage.md#retention), its first kept
//!   event has a seq above 1; the state then starts there and records it in
//!   [`SessionState::trimmed_before_seq`].
//! - After the events of a whole message, [`SessionState::cursor`] says where the next message
//!   starts: [`Cursor::Awaiting`] exactly when the run stopped at an `ask` node.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::events::schema::{Event, EventView, KindView};
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

/// Whether a session still accepts messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SessionStatus {
    /// Accepts messages.
    Open,
    /// Closed by `SessionEnded`; later messages open a new session.
    Ended {
        /// The reason recorded in `SessionEnded`.
        reason: String,
    },
}

/// Where the flow resumes when the session's next message arrives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cursor {
    /// At the flow's first node.
    Start,
    /// After the `ask` node `node`, once the message is stored under state key `key`.
    Awaiting {
        /// The id of the `ask` node that waits.
        node: CompactString,
        /// The state key that receives the next message's text.
        key: CompactString,
    },
}

/// The state of one session, as of [`SessionState::last_seq`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The session's tenant.
    pub tenant: TenantId,
    /// The session's environment.
    pub env: EnvId,
    /// The session's team (always concrete: the default team when the message named none).
    pub team: TeamId,
    /// The session's id.
    pub session: SessionId,
    /// The channel of the session's first event; `None` before any event.
    pub channel: Option<ChannelId>,
    /// The user who started the session (from `SessionStarted`).
    pub user: CompactString,
    /// The flow's name (from `SessionStarted`).
    pub flow: CompactString,
    /// The flow's version (from `SessionStarted`).
    pub flow_version: CompactString,
    /// Open, or ended with a reason.
    pub status: SessionStatus,
    /// Where the next message starts.
    pub cursor: Cursor,
    /// The id of the last node entered, if any.
    pub current_node: Option<CompactString>,
    /// State keys set by the flow (`set` nodes and answers to `ask` nodes).
    pub vars: BTreeMap<String, String>,
    /// The `seq` of the last event applied; 0 before any.
    pub last_seq: u64,
    /// The `tenant_seq` of the last event applied; 0 before any.
    pub last_tenant_seq: u64,
    /// Inbound messages (`MessageReceived`).
    pub messages_in: u64,
    /// Replies sent (`ReplySent`).
    pub replies_out: u64,
    /// Flow failures (`FlowFailed`).
    pub flow_errors: u64,
    /// `at_ms` of `SessionStarted`; 0 before it.
    pub started_at_ms: u64,
    /// `at_ms` of the last event applied; 0 before any.
    pub last_activity_ms: u64,
    /// 0, unless the session's events before this seq were trimmed by the tenant's retention
    /// and the state was folded from what remains (its user, flow, start time, vars and counts
    /// before that seq are unknown). Absent from the encoding when 0, so the states of
    /// untrimmed sessions encode as before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trimmed_before_seq: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl SessionState {
    /// The state of a session before its first event: open, at the start, nothing counted.
    pub fn new(tenant: TenantId, env: EnvId, team: TeamId, session: SessionId) -> SessionState {
        SessionState {
            tenant,
            env,
            team,
            session,
            channel: None,
            user: CompactString::default(),
            flow: CompactString::default(),
            flow_version: CompactString::default(),
            status: SessionStatus::Open,
            cursor: Cursor::Start,
            current_node: None,
            vars: BTreeMap::new(),
            last_seq: 0,
            last_tenant_seq: 0,
            messages_in: 0,
            replies_out: 0,
            flow_errors: 0,
            started_at_ms: 0,
            last_activity_ms: 0,
            trimmed_before_seq: 0,
        }
    }

    /// Folds one event into the state. Infallible: events are facts that were already accepted.
    ///
    /// # Panics
    ///
    /// When `event` is not the session's next event (see [`SessionState::apply_view`]).
    pub fn apply(&mut self, event: &Event) {
        let had_channel = self.channel.is_some();
        self.apply_view(&EventView::from(event));
        if !had_channel {
            // The event's id, not a parsed copy of its text: a live session shares its
            // channel id with the config (and every other session of the channel).
            self.channel = Some(event.channel.clone());
        }
    }

    /// Why `event` cannot be folded next into this state, or `None` when it can: what
    /// [`SessionState::apply_view`] panics on and [`SessionState::try_apply_view`] returns, so a
    /// log holding a session's events out of order (damaged, or forked by a bug) is an error
    /// that names the session and the seqs.
    pub fn misfit(&self, event: &EventView<'_>) -> Option<String> {
        let ours = event.tenant == self.tenant.as_str()
            && event.env == self.env.as_str()
            && event.team == self.team.as_str()
            && event.session == self.session.as_str();
        if !ours {
            return Some(format!(
                "an event of {}/{}/{}/{} among session {}'s",
                event.tenant,
                event.env,
                event.team,
                event.session,
                self.state_key()
            ));
        }
        // A state with no event yet takes any first seq from 1: its start may have been trimmed.
        let next = self.last_seq + 1;
        let fits = if self.last_seq == 0 {
            event.seq >= 1
        } else {
            event.seq == next
        };
        (!fits).then(|| {
            format!(
                "session {}: event seq {} where {next} is next (tenant_seq {})",
                self.session, event.seq, event.tenant_seq
            )
        })
    }

    /// Folds one event, as a fold reads it from the log, into the state: what
    /// [`SessionState::apply`] does, without the event having been decoded whole. Strings are
    /// copied into the state's own buffers, which are reused where the state already has one.
    ///
    /// # Panics
    ///
    /// When `event` is not the session's next event: `event.seq != last_seq + 1`, or its tenant,
    /// env, team or session differs. Either means the caller skipped, repeated or mixed up events,
    /// which would silently corrupt the state (and every snapshot taken from it), so it is a bug
    /// to stop at rather than bad input to tolerate. The check is two integer and four short
    /// string comparisons, cheap enough to keep in release builds.
    pub fn apply_view(&mut self, event: &EventView<'_>) {
        if let Err(why) = self.try_apply_view(event) {
            panic!("{why}");
        }
    }

    /// [`SessionState::apply_view`] for a fold reading a log: an event that does not fit
    /// ([`SessionState::misfit`]) is an error naming the session and the seqs, and leaves the
    /// state as it was.
    pub fn try_apply_view(&mut self, event: &EventView<'_>) -> Result<(), String> {
        if let Some(why) = self.misfit(event) {
            return Err(why);
        }
        if self.last_seq == 0 && event.seq > 1 {
            // The session's start was trimmed (see the module's invariants): fold what remains.
            self.trimmed_before_seq = event.seq;
            self.last_seq = event.seq - 1;
        }
        match event.kind {
            KindView::SessionStarted {
                user,
                flow,
                flow_version,
            } => {
                replace(&mut self.user, user);
                replace(&mut self.flow, flow);
                replace(&mut self.flow_version, flow_version);
                self.started_at_ms = event.at_ms;
            }
            // The cursor stays as it is: the engine reads it before the message's other events,
            // and the `StateSet` that stores the answer is what consumes the wait.
            KindView::MessageReceived { .. } => self.messages_in += 1,
            KindView::NodeEntered { node } => {
                match &mut self.current_node {
                    Some(current) => replace(current, node),
                    None => self.current_node = Some(node.into()),
                }
                self.cursor = Cursor::Start;
            }
            KindView::ReplySent { .. } => self.replies_out += 1,
            KindView::StateSet { key, value } => {
                match self.vars.get_mut(key) {
                    Some(current) => value.clone_into(current),
                    None => {
                        self.vars.insert(key.to_owned(), value.to_owned());
                    }
                }
                // While awaiting, the only `StateSet` the engine writes is the stored answer,
                // which resumes the flow. If nothing else follows (the `ask` node was the last),
                // the next message starts at the first node.
                self.cursor = Cursor::Start;
            }
            KindView::AwaitingInput { node, key } => {
                self.cursor = Cursor::Awaiting {
                    node: node.into(),
                    key: key.into(),
                };
            }
            KindView::FlowFailed => {
                self.flow_errors += 1;
                self.cursor = Cursor::Start;
            }
            KindView::SessionEnded { reason } => {
                self.status = SessionStatus::Ended {
                    reason: reason.to_owned(),
                };
                self.cursor = Cursor::Start;
            }
            // A connector's system session runs no flow: nothing to fold but its seq.
            KindView::Connector => {}
        }

        self.last_seq = event.seq;
        self.last_tenant_seq = event.tenant_seq;
        self.last_activity_ms = event.at_ms;
        if self.channel.is_none() {
            // Always a valid id: an `Event`'s channel is a `ChannelId`, and the log's fold read
            // checks the ids of every frame it hands out.
            self.channel = ChannelId::parse(event.channel).ok();
        }
        Ok(())
    }

    /// The seed's state key: `state:{tenant}:{env}:{team}:{session}`.
    pub fn state_key(&self) -> String {
        format!(
            "state:{}:{}:{}:{}",
            self.tenant, self.env, self.team, self.session
        )
    }

    /// Whether the session accepts messages (it has not ended).
    pub fn is_open(&self) -> bool {
        self.status == SessionStatus::Open
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;

/// Sets `to` to `text`, reusing its heap buffer when it has one (a fold replaces these fields
/// at every message).
fn replace(to: &mut CompactString, text: &str) {
    to.clear();
    to.push_str(text);
}
