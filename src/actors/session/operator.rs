//! What is appended to a session apart from the message path: a connector registry record
//! (`Op::Record`, in a connector's system session, see `crate::connectors`), and what an
//! operator does to a session: close it (`Op::Close`:
//! `SessionEnded` "closed by operator" alone, through the same durable append as a message) and
//! keep the runtime's list of quarantined sessions (`Runtime::quarantined_sessions`) true.

use std::collections::BTreeSet;

use actix::prelude::*;

use super::{Outcome, SessionActor};
use crate::actors::messages::{Deliver, RuntimeError, CLOSED_BY_OPERATOR};
use crate::actors::shared::QuarantineKey;
use crate::connectors::{REGISTRY_FLOW, REGISTRY_FLOW_VERSION};
use crate::events::schema::EventKind;

impl SessionActor {
    /// This session's key among the runtime's quarantined sessions.
    fn quarantine_key(&self) -> QuarantineKey {
        let s = &self.state;
        (
            s.tenant.clone(),
            s.env.clone(),
            s.team.clone(),
            s.session.clone(),
        )
    }

    /// The runtime's set of quarantined sessions (a poisoned lock only means a panic
    /// elsewhere; the set itself is consistent).
    fn quarantine_list(&self) -> std::sync::MutexGuard<'_, BTreeSet<QuarantineKey>> {
        self.env
            .shared
            .runtime
            .quarantined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds this session to the runtime's quarantined sessions.
    pub(super) fn list_quarantined(&self) {
        let key = self.quarantine_key();
        self.quarantine_list().insert(key);
    }

    /// Removes this session from the runtime's quarantined sessions.
    pub(super) fn unlist_quarantined(&self) {
        let key = self.quarantine_key();
        self.quarantine_list().remove(&key);
    }

    /// An operator's close of an open session: `SessionEnded` alone, through the same durable
    /// append as a message; the ack names its seq.
    pub(super) fn close(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if self.state.last_seq == 0 {
            // The edge looks the session up first; an actor for no session appends nothing.
            let e = RuntimeError::Invalid(format!("no session {}", self.state.session));
            return msg.answer(Err(e));
        }
        let outcome = Outcome {
            kinds: vec![EventKind::SessionEnded {
                reason: CLOSED_BY_OPERATOR.to_owned(),
            }],
            seq: self.state.last_seq + 1,
            replies: Vec::new(),
            panicked: false,
        };
        self.commit(msg, outcome, None, ctx);
    }

    /// Appends connector registry events (no flow run) as one durable group, with
    /// `SessionStarted` (no user: no message can resolve to this session) first when the system
    /// session is new; the ack names the first recorded event's seq.
    pub(super) fn record(
        &mut self,
        msg: Deliver,
        mut kinds: Vec<EventKind>,
        ctx: &mut Context<Self>,
    ) {
        if kinds.is_empty() {
            return msg.answer(Err(RuntimeError::Invalid("nothing to record".to_owned())));
        }
        let mut seq = self.state.last_seq + 1;
        if self.state.last_seq == 0 {
            kinds.insert(
                0,
                EventKind::SessionStarted {
                    user: String::new(),
                    flow: REGISTRY_FLOW.to_owned(),
                    flow_version: REGISTRY_FLOW_VERSION.to_owned(),
                },
            );
            seq += 1;
        }
        let outcome = Outcome {
            kinds,
            seq,
            replies: Vec::new(),
            panicked: false,
        };
        self.commit(msg, outcome, None, ctx);
    }
}
