//! `SessionActor`: one per active session. Hydrates from its CBOR snapshot plus the log tail,
//! then for each message: dedup by message id → run the flow (decide) → append through the
//! log's group commit → fold the events into its state (apply) → answer → maybe snapshot.
//! An operator's close (`Op::Close`) takes the same path without a flow run: `SessionEnded`
//! ("closed by operator") alone, answered after the durable append; so does a connector
//! registry record (`Op::Record`, in a connector's system session).
//!
//! Invariants:
//! - handles one message at a time (`ctx.wait` holds the mailbox during the append), so the
//!   session's seq order is its arrival order;
//! - its state always equals the fold of the session's durable events;
//! - a panic while running the flow is caught here: the message gets an error and a
//!   `FlowFailed` event (and a retry of it the same error), the state is reloaded from the
//!   snapshot and the log, and more than `RESTARTS_MAX` such failures within
//!   `RESTART_WINDOW_MS` quarantine the session.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::messages::{Ack, Deliver, Ended, Op, Passivate, Reroute, Reset, RuntimeError};
use super::shared::{Egress, EnvLink};
use super::slots::SessionSlot;
use crate::events::log::{AppendGroup, AppendOutcome, Idempotency, IdempotencyRecord};
use crate::events::schema::decode_limited;
use crate::events::schema::{Event, EventKind};
use crate::flow::engine::{self, Input, TenantInfo};
use crate::projections::load::load_session;
use crate::projections::session::SessionState;
use crate::projections::snapshot::{Durability, SnapshotKey};
use crate::tenancy::{ChannelId, SessionId, TeamId, TenantCtx};

/// Messages waiting for one session before senders get `Overloaded`.
pub(super) const SESSION_MAILBOX: usize = 64;
/// Flow failures (panics) tolerated within the window before the session is quarantined.
const RESTARTS_MAX: usize = 3;
const RESTART_WINDOW_MS: u64 = 5_000;

/// Text that makes a test build's flow run panic, to exercise isolation.
#[cfg(test)]
pub(crate) const PANIC_PROBE: &str = "\u{1f4a5} panic probe";

/// Most bytes of replies kept in an idempotency record for retries. Past it the record keeps
/// only a flag, and a retry's answer says that its replies were omitted (they stay in the log).
/// Far below the log's `ACK_BYTES_MAX`, so a chatty flow never makes its append fail.
pub(super) const STORED_REPLIES_BYTES_MAX: usize = 4 * 1024;

/// Version of [`StoredAck`] written now. v1 (no `v` field): `seq` and `replies` only.
const STORED_ACK_VERSION: u8 = 2;

/// What retries of a message get back; stored with the message id in the log (a MessagePack
/// map: fields added later default, so older records still read).
#[derive(Serialize, Deserialize)]
struct StoredAck {
    #[serde(default = "stored_ack_v1")]
    v: u8,
    seq: u64,
    replies: Vec<String>,
    /// The error the first try was answered with, if it was one (v2).
    #[serde(default)]
    failed: Option<FirstFailure>,
    /// The replies were over [`STORED_REPLIES_BYTES_MAX`] and are not in the record (v2).
    #[serde(default)]
    replies_omitted: bool,
}

fn stored_ack_v1() -> u8 {
    1
}

/// An error answer that a retry must repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FirstFailure {
    /// The flow panicked on the message: [`RuntimeError::FlowCrashed`].
    FlowFailed,
}

impl StoredAck {
    /// The record of a first answer, with the replies left out when they are too big to keep.
    fn new(seq: u64, replies: &[String], failed: Option<FirstFailure>) -> StoredAck {
        let bytes: usize = replies.iter().map(String::len).sum();
        let keep = bytes <= STORED_REPLIES_BYTES_MAX;
        StoredAck {
            v: STORED_ACK_VERSION,
            seq,
            replies: if keep { replies.to_vec() } else { Vec::new() },
            failed,
            replies_omitted: !keep,
        }
    }
}

/// A live session. Most live sessions are idle, so what one holds is kept small: the actor is
/// stored inside its tokio task, whose allocation is rounded up to 128 bytes, so the big and
/// the rarely used parts are behind pointers (the state boxed; the snapshot lane and the
/// failure record only while in use), and its ids share their text with its env's (see
/// [`SessionActor::adopt_ids`]). `idle_tests` holds the sizes to their budget.
pub(super) struct SessionActor {
    /// The env's shared part and the way up to its env actor: one per env, not per session.
    env: Arc<EnvLink>,
    state: Box<SessionState>,
    /// Seq covered by the newest snapshot on disk (or being written).
    snapshot_seq: u64,
    snapshot_in_flight: bool,
    /// Serialises this session's snapshot writes while any is in flight; `None` when none is.
    snapshot_lane: Option<Arc<tokio::sync::Mutex<()>>>,
    /// Why the session cannot be served, and its recent flow failures; `None` when it has none.
    trouble: Option<Box<Trouble>>,
    /// This actor's place among the live sessions (and in the active-sessions gauge); given
    /// back once, when it stops.
    slot: Option<SessionSlot>,
}

/// What goes wrong with a session, rarely: kept apart so a healthy session holds none of it.
#[derive(Default)]
struct Trouble {
    /// Why the session cannot be served (its stored data could not be read).
    broken: Option<String>,
    /// When its flow failed (ms), within the last [`RESTART_WINDOW_MS`].
    failures_ms: VecDeque<u64>,
    quarantined: bool,
}

impl Trouble {
    fn is_clear(&self) -> bool {
        self.broken.is_none() && self.failures_ms.is_empty() && !self.quarantined
    }
}

impl SessionActor {
    /// A session of `team` (its env's copy of the id, so that they share it).
    pub(super) fn new(
        env: Arc<EnvLink>,
        team: TeamId,
        session: SessionId,
        slot: SessionSlot,
    ) -> SessionActor {
        let state = SessionState::new(
            env.shared.tenant.id.clone(),
            env.shared.env.clone(),
            team,
            session,
        );
        SessionActor {
            env,
            state: Box::new(state),
            snapshot_seq: 0,
            snapshot_in_flight: false,
            snapshot_lane: None,
            trouble: None,
            slot: Some(slot),
        }
    }

    /// The scope this session reads and writes in.
    fn tenant_ctx(&self) -> TenantCtx {
        TenantCtx::new(
            self.state.tenant.clone(),
            self.state.env.clone(),
            Some(self.state.team.clone()),
        )
    }

    /// The configured copy of `channel` (shared by every session of the team), or `channel`
    /// itself when the team has no such channel.
    fn shared_channel(&self, channel: &ChannelId) -> ChannelId {
        self.env
            .shared
            .tenant
            .teams
            .get(&self.state.team)
            .and_then(|team| team.channels.get_key_value(channel))
            .map_or_else(|| channel.clone(), |(id, _)| id.clone())
    }

    /// Points a loaded state's ids at the copies this actor already holds: the text is the
    /// same (`load_session` checks it), but ids decoded from a snapshot or the log are copies
    /// of their own, which an idle session would otherwise keep.
    fn adopt_ids(&self, loaded: &mut SessionState) {
        debug_assert!(
            loaded.tenant == self.state.tenant
                && loaded.env == self.state.env
                && loaded.team == self.state.team
                && loaded.session == self.state.session
        );
        loaded.tenant = self.state.tenant.clone();
        loaded.env = self.state.env.clone();
        loaded.team = self.state.team.clone();
        loaded.session = self.state.session.clone();
        if let Some(channel) = &loaded.channel {
            loaded.channel = Some(self.shared_channel(channel));
        }
    }

    fn broken(&self) -> Option<&str> {
        self.trouble.as_ref().and_then(|t| t.broken.as_deref())
    }

    fn quarantined(&self) -> bool {
        self.trouble.as_ref().is_some_and(|t| t.quarantined)
    }

    /// Gives back this actor's slot (the live-session counts), once.
    fn uncount(&mut self) {
        self.slot = None;
    }

    /// Loads state from the snapshot (if usable) plus every later event in the log. A missing
    /// snapshot is normal; an unusable one is logged and counted, and the log rebuilds the state.
    fn hydrate(&mut self) {
        let rt = &self.env.shared.runtime;
        match load_session(
            &rt.log,
            &rt.snapshots,
            &self.tenant_ctx(),
            &self.state.session,
        ) {
            Ok(mut loaded) => {
                if let Some(problem) = &loaded.snapshot_problem {
                    let s = &loaded.state;
                    rt.metrics
                        .snapshot_fallbacks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(tenant = %s.tenant, env = %s.env, team = %s.team, session = %s.session,
                        error = %problem, "snapshot unusable; rebuilt from the log");
                }
                self.adopt_ids(&mut loaded.state);
                *self.state = loaded.state;
                self.snapshot_seq = loaded.snapshot_seq;
                if let Some(trouble) = &mut self.trouble {
                    trouble.broken = None;
                }
                self.trouble.take_if(|t| t.is_clear());
            }
            Err(e) => {
                tracing::error!(tenant = %self.state.tenant, session = %self.state.session, error = %e, "cannot load session");
                self.trouble.get_or_insert_default().broken = Some(e.to_string());
            }
        }
    }

    /// Records a failed flow run; quarantines the session past the budget.
    fn record_failure(&mut self) {
        let now = self.env.shared.runtime.opts.clock.now_ms();
        let trouble = self.trouble.get_or_insert_default();
        trouble.failures_ms.push_back(now);
        while trouble
            .failures_ms
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > RESTART_WINDOW_MS)
        {
            trouble.failures_ms.pop_front();
        }
        if trouble.failures_ms.len() > RESTARTS_MAX {
            trouble.quarantined = true;
            self.list_quarantined();
            tracing::error!(tenant = %self.state.tenant, env = %self.state.env, team = %self.state.team,
                session = %self.state.session, "session quarantined after repeated flow failures");
        }
        // Restart from durable truth: whatever the panic left behind is discarded.
        self.hydrate();
    }

    /// Runs the flow for one message; a panic becomes a `FlowFailed` event and `true`.
    fn decide(&mut self, msg: &Deliver, message_id: &str) -> (Vec<EventKind>, bool) {
        let tenant = &self.env.shared.tenant;
        let Some(team) = tenant.teams.get(&self.state.team) else {
            // The runtime handle checks the team before routing; this is defence in depth.
            let kinds = vec![
                EventKind::MessageReceived {
                    message_id: message_id.to_owned(),
                    user: msg.inbound.user.clone(),
                    text: msg.inbound.text.clone(),
                },
                EventKind::FlowFailed {
                    node: String::new(),
                    error: "team is not configured".into(),
                },
            ];
            return (kinds, false);
        };
        let flow = team.flow.clone();
        let info = TenantInfo {
            name: &tenant.name,
            settings: &tenant.settings,
        };
        let input = Input {
            message_id,
            user: &msg.inbound.user,
            text: &msg.inbound.text,
        };
        let state = &self.state;
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if input.text == PANIC_PROBE {
                panic!("injected flow panic");
            }
            engine::run(&flow, state, &info, &input)
        }));
        let panicked = run.is_err();
        let mut kinds = match run {
            Ok(kinds) => kinds,
            Err(_) => {
                let node = self
                    .state
                    .current_node
                    .as_deref()
                    .unwrap_or_default()
                    .to_owned();
                tracing::error!(tenant = %self.state.tenant, session = %self.state.session, node = %node,
                    "flow run panicked; session restarted from snapshot and log");
                self.record_failure();
                vec![
                    EventKind::MessageReceived {
                        message_id: message_id.to_owned(),
                        user: msg.inbound.user.clone(),
                        text: msg.inbound.text.clone(),
                    },
                    EventKind::FlowFailed {
                        node,
                        error: "internal error while running the flow".into(),
                    },
                ]
            }
        };
        if self.state.last_seq == 0 {
            kinds.insert(
                0,
                EventKind::SessionStarted {
                    user: msg.inbound.user.clone(),
                    flow: flow.name().to_owned(),
                    flow_version: flow.version().to_owned(),
                },
            );
        }
        (kinds, panicked)
    }

    /// Folds an appended group into the state.
    fn apply(
        &mut self,
        kinds: Vec<EventKind>,
        first_seq: u64,
        first_tenant_seq: u64,
        at_ms: u64,
        msg: &Deliver,
    ) {
        let channel = self.shared_channel(&msg.channel);
        for (i, kind) in kinds.into_iter().enumerate() {
            let event = Event {
                // The state does not keep event ids; the log assigned them.
                id: uuid::Uuid::nil(),
                tenant: self.state.tenant.clone(),
                env: self.state.env.clone(),
                team: self.state.team.clone(),
                channel: channel.clone(),
                session: self.state.session.clone(),
                seq: first_seq + i as u64,
                tenant_seq: first_tenant_seq + i as u64,
                at_ms,
                kind,
            };
            self.state.apply(&event);
        }
    }

    /// Writes a snapshot off the actor's thread when enough events have accumulated.
    fn maybe_snapshot(&mut self, ctx: &mut Context<Self>) {
        let every = self.env.shared.runtime.opts.snapshot_every;
        if self.snapshot_in_flight || self.state.last_seq < self.snapshot_seq + every {
            return;
        }
        self.snapshot_in_flight = true;
        let seq = self.state.last_seq;
        let write = self.write_snapshot(Durability::Unsynced);
        ctx.spawn(write.into_actor(self).map(move |written, act, _ctx| {
            act.snapshot_in_flight = false;
            if written {
                act.snapshot_seq = act.snapshot_seq.max(seq);
            }
            act.release_idle_lane();
        }));
    }

    /// Drops the snapshot lane when no write holds it: every write in flight holds a clone until
    /// its file is written, so a lane held here alone orders nothing, and the next write starts
    /// a new one.
    fn release_idle_lane(&mut self) {
        self.snapshot_lane
            .take_if(|lane| Arc::strong_count(lane) == 1);
    }

    /// Writes the current state as a snapshot on the blocking pool. Writes of one session go
    /// through its lane one at a time, in order, so an older snapshot can never land after (and
    /// over) a newer one. The periodic ones are written [`Durability::Unsynced`], a
    /// passivation's [`Durability::Synced`].
    fn write_snapshot(
        &mut self,
        durability: Durability,
    ) -> impl std::future::Future<Output = bool> + 'static {
        let lane = self.snapshot_lane.get_or_insert_default().clone();
        let state = (*self.state).clone();
        let runtime = self.env.shared.runtime.clone();
        async move {
            let turn = lane.lock_owned().await;
            let written = actix_rt::task::spawn_blocking(move || {
                let _turn = turn;
                let key = SnapshotKey { tenant: &state.tenant, env: &state.env, team: &state.team, session: &state.session };
                let result = runtime.snapshots.write_as(&key, state.last_seq, &state, durability);
                if let Err(e) = &result {
                    tracing::warn!(tenant = %state.tenant, session = %state.session, error = %e, "snapshot write failed");
                }
                result.is_ok()
            })
            .await;
            written.unwrap_or(false)
        }
    }
}

impl SessionActor {
    /// Hands the replies to the egress sink, if any (best effort, after the durable append).
    fn publish(&self, msg: &Deliver, replies: &[String]) {
        let runtime = &self.env.shared.runtime;
        let Some(sink) = &runtime.opts.egress else {
            return;
        };
        let channel = self.state.channel.as_ref().unwrap_or(&msg.channel);
        for text in replies {
            let out = Egress {
                tenant: self.state.tenant.clone(),
                env: self.state.env.clone(),
                team: self.state.team.clone(),
                channel: channel.clone(),
                session: self.state.session.clone(),
                text: text.clone(),
                in_reply_to: msg.inbound.message_id.clone(),
            };
            if sink.try_send(out).is_err() {
                runtime
                    .metrics
                    .egress_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(tenant = %self.state.tenant, session = %self.state.session, "egress queue full; reply not published");
            }
        }
    }
}

fn replies_of(kinds: &[EventKind]) -> Vec<String> {
    kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::ReplySent { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

/// The answer to a retry: the first try's answer, error or ack, as its record stored it.
/// A record whose stored answer is still sealed (its session's data key was destroyed) cannot
/// answer: the retry gets a storage error naming why, and nothing is appended again.
fn ack_from_record(rec: IdempotencyRecord) -> Result<Ack, RuntimeError> {
    if rec.sealed {
        return Err(RuntimeError::Storage(format!(
            "the first answer to this message was erased with session {}",
            rec.session
        )));
    }
    let stored: StoredAck =
        decode_limited(&rec.ack).map_err(|e| RuntimeError::Storage(e.to_string()))?;
    match stored.failed {
        Some(FirstFailure::FlowFailed) => Err(RuntimeError::FlowCrashed(rec.session)),
        None => Ok(Ack {
            session: rec.session,
            seq: stored.seq,
            replies: stored.replies,
            duplicate: true,
            replies_omitted: stored.replies_omitted,
        }),
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        self.hydrate();
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.quarantined() {
            self.unlist_quarantined();
        }
        self.uncount();
    }
}

impl SessionActor {
    /// Answers (or reroutes) a message this session cannot take: its storage is broken, it is
    /// quarantined, the message is for another channel, or the session has ended. `Some` hands
    /// back a message to run.
    fn admit(&mut self, msg: Deliver) -> Option<Deliver> {
        if self.broken().is_some() {
            // The log may have recovered since (e.g. from a full disk): load again.
            self.hydrate();
        }
        if let Some(e) = self.broken() {
            msg.answer(Err(RuntimeError::Storage(e.to_owned())));
            return None;
        }
        // An operator may close a quarantined session: closing runs no flow.
        if self.quarantined() && msg.op == Op::Message {
            msg.answer(Err(RuntimeError::Quarantined(self.state.session.clone())));
            return None;
        }
        if let Some(channel) = self.state.channel.as_ref().filter(|c| **c != msg.channel) {
            let err = RuntimeError::SessionChannel {
                session: self.state.session.clone(),
                channel: channel.clone(),
            };
            msg.answer(Err(err));
            return None;
        }
        if self.state.is_open() {
            return Some(msg);
        }
        // A retry of the message that ended the session still gets its first answer. (On an
        // open session the log's own atomic check answers retries; no lookup here.)
        if let Some(message_id) = &msg.inbound.message_id {
            let scope = self.env.shared.runtime.log.scope(&self.tenant_ctx());
            match scope.idempotency(&msg.channel, message_id) {
                Ok(Some(rec)) => {
                    msg.answer(ack_from_record(rec));
                    return None;
                }
                Ok(None) => {}
                Err(e) => {
                    msg.answer(Err(e.into()));
                    return None;
                }
            }
        }
        if msg.named || msg.rerouted {
            msg.answer(Err(RuntimeError::SessionEnded(self.state.session.clone())));
            return None;
        }
        self.env.reroute.do_send(Reroute(msg));
        None
    }
}

impl Handler<Deliver> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let span = msg.span.clone();
        let _entered = span.enter();
        let Some(mut msg) = self.admit(msg) else {
            return;
        };
        if msg.op == Op::Close {
            return self.close(msg, ctx);
        }
        if let Op::Record(kinds) = &mut msg.op {
            let kinds = std::mem::take(kinds);
            return self.record(msg, kinds, ctx);
        }
        let message_id = msg
            .inbound
            .message_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        // A panic here is still recorded (FlowFailed) and answered; if it was one too many, the
        // quarantine applies from the next message on.
        let (kinds, panicked) = self.decide(&msg, &message_id);
        let replies = replies_of(&kinds);
        let started = matches!(kinds.first(), Some(EventKind::SessionStarted { .. }));
        let seq = self.state.last_seq + 1 + u64::from(started);
        let idempotency = msg.inbound.message_id.as_ref().map(|id| Idempotency {
            message_id: id.clone(),
            // A retry must get what this try gets: the error too, when the flow panicked.
            ack: rmp_serde::to_vec_named(&StoredAck::new(
                seq,
                &replies,
                panicked.then_some(FirstFailure::FlowFailed),
            ))
            .expect("MessagePack encoding of plain fields is infallible"),
        });
        let outcome = Outcome {
            kinds,
            seq,
            replies,
            panicked,
        };
        self.commit(msg, outcome, idempotency, ctx);
    }
}

/// What one delivery decided to append, and how to answer once it is durable.
struct Outcome {
    kinds: Vec<EventKind>,
    /// The seq the ack names.
    seq: u64,
    replies: Vec<String>,
    /// The flow panicked: answer `FlowCrashed` after the append.
    panicked: bool,
}

impl SessionActor {
    /// Appends `outcome` as one durable group, folds it and answers `msg` after the ack.
    fn commit(
        &mut self,
        msg: Deliver,
        outcome: Outcome,
        idempotency: Option<Idempotency>,
        ctx: &mut Context<Self>,
    ) {
        let Outcome {
            kinds,
            seq,
            replies,
            panicked,
        } = outcome;
        let at_ms = self.env.shared.runtime.opts.clock.now_ms();
        // The log's writer keeps the channel of the sessions it has seen: the shared copy (for
        // a close, the session's own).
        let channel = match (&self.state.channel, &msg.op) {
            (Some(own), Op::Close) => own.clone(),
            _ => self.shared_channel(&msg.channel),
        };
        let group = AppendGroup {
            ctx: self.tenant_ctx(),
            channel,
            session: self.state.session.clone(),
            expected_seq: self.state.last_seq,
            at_ms,
            kinds: kinds.clone(),
            idempotency,
        };
        let log = self.env.shared.runtime.log.clone();
        let append = async move { log.append(group).await };
        // `wait` holds this actor's mailbox until the append is durable: one message at a time.
        ctx.wait(append.into_actor(self).map(move |result, act, ctx| {
            let _entered = msg.span.clone().entered();
            match result {
                Ok(AppendOutcome::Appended(a)) => {
                    let ends = kinds
                        .iter()
                        .any(|k| matches!(k, EventKind::SessionEnded { .. }));
                    act.apply(kinds, a.first_seq, a.first_tenant_seq, at_ms, &msg);
                    if ends {
                        act.env.ended.do_send(Ended {
                            team: act.state.team.clone(),
                            channel: msg.channel.clone(),
                            user: act.state.user.to_string(),
                            session: act.state.session.clone(),
                        });
                        // An operator closed a quarantined session: it runs nothing any more.
                        if act.quarantined() {
                            act.unlist_quarantined();
                            act.trouble.take_if(|t| {
                                t.quarantined = false;
                                t.is_clear()
                            });
                        }
                    }
                    let session = act.state.session.clone();
                    act.publish(&msg, &replies);
                    // Inside the message's span (tenant, env, team, channel, session); never
                    // the text itself.
                    tracing::debug!(seq, replies = replies.len(), "message acked");
                    if panicked {
                        msg.answer(Err(RuntimeError::FlowCrashed(session)));
                    } else {
                        msg.answer(Ok(Ack {
                            session,
                            seq,
                            replies,
                            duplicate: false,
                            replies_omitted: false,
                        }));
                    }
                    act.maybe_snapshot(ctx);
                }
                // Another session took this message id first (the same id sent to two sessions).
                Ok(AppendOutcome::Duplicate(rec)) => msg.answer(ack_from_record(rec)),
                Err(e) => {
                    // Our state may now be behind the log (e.g. a seq conflict): reload it.
                    act.hydrate();
                    msg.answer(Err(e.into()));
                }
            }
        }));
    }
}

impl Handler<Passivate> for SessionActor {
    /// Resolves once the final snapshot is on disk and the actor is stopping.
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Passivate, _ctx: &mut Self::Context) -> Self::Result {
        let behind = self.broken().is_none() && self.state.last_seq > self.snapshot_seq;
        let write = behind.then(|| self.write_snapshot(Durability::Synced));
        Box::pin(
            async move {
                if let Some(write) = write {
                    write.await;
                }
            }
            .into_actor(self)
            .map(|(), act, ctx| {
                // Before the answer goes out, so whoever awaited the passivation sees the gauge
                // already down.
                act.uncount();
                ctx.stop();
            }),
        )
    }
}

impl Handler<Reset> for SessionActor {
    type Result = ();

    fn handle(&mut self, Reset(msg): Reset, _ctx: &mut Self::Context) {
        if self.quarantined() {
            self.unlist_quarantined();
        }
        self.trouble = None;
        self.hydrate();
        msg.answer(Ok(()));
    }
}

mod operator;
#[cfg(test)]
mod tests;
