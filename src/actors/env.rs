//! `EnvActor`: one per (tenant, environment). Resolves which session a message belongs to,
//! starts session actors on first message, routes to them, and passivates idle ones.
//!
//! Session resolution (DESIGN §4): a message that names a session goes to it (created on first
//! use); one that names none goes to the sender's open session on that (team, channel, user) —
//! remembered here, and in the log's open-session index across restarts — or to a new one.
//!
//! Invariants: at most one session actor per session; a session being passivated gets no new
//! messages until its actor has stopped (they wait here, bounded), so there is never more than
//! one writer per session.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::{Deliver, RuntimeError};
use super::runtime::Shared;
use super::session::{Passivate, Reset, SessionActor, SESSION_MAILBOX};
use crate::config::TenantConfig;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId};

/// Messages an env actor queues for sessions that are being passivated, over all of them.
const PENDING_MAX: usize = 1024;

/// What every actor of one environment shares (read-only).
pub(super) struct EnvShared {
    pub runtime: Arc<Shared>,
    pub tenant: Arc<TenantConfig>,
    pub env: EnvId,
}

type SessionKey = (TeamId, SessionId);

struct SessionEntry {
    addr: Addr<SessionActor>,
    last_seen_ms: u64,
    /// The (channel, user) it was resolved for, when it was resolved rather than named.
    owner: Option<(ChannelId, String)>,
}

pub(super) struct EnvActor {
    shared: Arc<EnvShared>,
    me: Addr<EnvActor>,
    sessions: HashMap<SessionKey, SessionEntry>,
    open_by_user: HashMap<(TeamId, ChannelId, String), SessionId>,
    passivating: HashMap<SessionKey, Vec<Deliver>>,
    pending: usize,
}

/// Look for idle sessions now and passivate them; resolves when they have stopped.
pub(crate) struct Sweep;
impl Message for Sweep {
    type Result = ();
}

/// Passivate every session and resolve when all have stopped (graceful shutdown).
pub(crate) struct Shutdown;
impl Message for Shutdown {
    type Result = ();
}

/// A session actor found its session ended under a message that did not name it: route the
/// message again, to the user's next session.
pub(super) struct Reroute(pub Deliver);
impl Message for Reroute {
    type Result = ();
}

/// A session ended: its user's next message on that channel opens a new one.
pub(super) struct Ended {
    pub team: TeamId,
    pub channel: ChannelId,
    pub user: String,
    pub session: SessionId,
}
impl Message for Ended {
    type Result = ();
}

/// Lift a session's quarantine.
pub(crate) struct ResetSession {
    pub env: EnvId,
    pub team: TeamId,
    pub session: SessionId,
}
impl Message for ResetSession {
    type Result = ();
}

impl EnvActor {
    pub(super) fn new(shared: Arc<EnvShared>, ctx: &mut Context<EnvActor>) -> EnvActor {
        EnvActor {
            shared,
            me: ctx.address(),
            sessions: HashMap::new(),
            open_by_user: HashMap::new(),
            passivating: HashMap::new(),
            pending: 0,
        }
    }

    fn now_ms(&self) -> u64 {
        self.shared.runtime.opts.clock.now_ms()
    }

    /// Resolves the session of `msg` and hands it to the session's actor.
    fn route(&mut self, mut msg: Deliver) {
        let session = match &msg.inbound.session {
            Some(s) => s.clone(),
            None => match self.resolve_open(&msg) {
                Ok(s) => s,
                Err(e) => return msg.answer(Err(e)),
            },
        };
        msg.span.record("session", session.as_str());
        msg.inbound.session = Some(session.clone());
        let key = (msg.team.clone(), session);
        if let Some(waiting) = self.passivating.get_mut(&key) {
            if self.pending >= PENDING_MAX {
                return msg.answer(Err(RuntimeError::Overloaded));
            }
            self.pending += 1;
            waiting.push(msg);
            return;
        }
        let now = self.now_ms();
        let owner = (!msg.named).then(|| (msg.channel.clone(), msg.inbound.user.clone()));
        let entry = match self.sessions.get_mut(&key) {
            Some(entry) if entry.addr.connected() => entry,
            _ => {
                let addr = self.spawn(&key);
                self.sessions
                    .entry(key.clone())
                    .insert_entry(SessionEntry {
                        addr,
                        last_seen_ms: now,
                        owner: None,
                    })
                    .into_mut()
            }
        };
        entry.last_seen_ms = now;
        if entry.owner.is_none() {
            entry.owner = owner;
        }
        match entry.addr.try_send(msg) {
            Ok(()) => {}
            Err(SendError::Full(msg)) => msg.answer(Err(RuntimeError::Overloaded)),
            Err(SendError::Closed(msg)) => {
                // The actor stopped on its own (it never should); start a fresh one once.
                let addr = self.spawn(&key);
                if let Some(entry) = self.sessions.get_mut(&key) {
                    entry.addr = addr.clone();
                }
                if let Err(e) = addr.try_send(msg) {
                    let msg = match e {
                        SendError::Full(m) | SendError::Closed(m) => m,
                    };
                    msg.answer(Err(RuntimeError::Overloaded));
                }
            }
        }
    }

    /// The sender's open session on this channel, or a new session id.
    fn resolve_open(&mut self, msg: &Deliver) -> Result<SessionId, RuntimeError> {
        let user_key = (
            msg.team.clone(),
            msg.channel.clone(),
            msg.inbound.user.clone(),
        );
        if let Some(s) = self.open_by_user.get(&user_key) {
            return Ok(s.clone());
        }
        let scope = self.shared.runtime.log.scope(&msg.ctx);
        let session = match scope.open_session(&msg.channel, &msg.inbound.user)? {
            Some(s) => s,
            None => SessionId::generate(),
        };
        self.open_by_user.insert(user_key, session.clone());
        Ok(session)
    }

    fn spawn(&self, key: &SessionKey) -> Addr<SessionActor> {
        let arbiters = &self.shared.runtime.arbiters;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.1.hash(&mut h);
        let index = usize::try_from(h.finish() % arbiters.len().max(1) as u64).unwrap_or(0);
        let shared = self.shared.clone();
        let env = self.me.clone();
        let (team, session) = key.clone();
        let start = move |ctx: &mut Context<SessionActor>| {
            ctx.set_mailbox_capacity(SESSION_MAILBOX);
            SessionActor::new(shared, env, team, session)
        };
        match arbiters.get(index) {
            Some(arbiter) => SessionActor::start_in_arbiter(arbiter, start),
            None => SessionActor::create(start),
        }
    }

    /// Stops the given sessions after their queued messages, then releases what waited for them.
    fn passivate(
        &mut self,
        keys: Vec<SessionKey>,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, ()> {
        let mut stopping = Vec::new();
        for key in keys {
            if let Some(entry) = self.sessions.remove(&key) {
                if let Some((channel, user)) = entry.owner {
                    let user_key = (key.0.clone(), channel, user);
                    if self.open_by_user.get(&user_key) == Some(&key.1) {
                        self.open_by_user.remove(&user_key);
                    }
                }
                self.passivating.insert(key.clone(), Vec::new());
                stopping.push((key, entry.addr.send(Passivate)));
            }
        }
        let _ = ctx;
        Box::pin(
            async move {
                let mut done = Vec::with_capacity(stopping.len());
                for (key, stopped) in stopping {
                    // An error means the actor is already gone, which is what we wanted.
                    let _ = stopped.await;
                    done.push(key);
                }
                done
            }
            .into_actor(self)
            .map(|done, act, _ctx| {
                for key in done {
                    let waiting = act.passivating.remove(&key).unwrap_or_default();
                    act.pending = act.pending.saturating_sub(waiting.len());
                    for msg in waiting {
                        act.route(msg);
                    }
                }
            }),
        )
    }
}

impl Actor for EnvActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::tenant::TENANT_MAILBOX);
        let every = self.shared.runtime.opts.sweep_interval;
        ctx.run_interval(every, |act, ctx| {
            let sweep = act.sweep(ctx);
            ctx.spawn(sweep);
        });
    }
}

impl EnvActor {
    fn sweep(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, ()> {
        let now = self.now_ms();
        let idle_ms = self.shared.runtime.opts.session_idle_timeout_ms;
        let idle: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.last_seen_ms) >= idle_ms)
            .map(|(k, _)| k.clone())
            .collect();
        if !idle.is_empty() {
            tracing::debug!(tenant = %self.shared.tenant.id, env = %self.shared.env, sessions = idle.len(), "passivating idle sessions");
        }
        self.passivate(idle, ctx)
    }
}

impl Handler<Deliver> for EnvActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, _ctx: &mut Self::Context) {
        self.route(msg);
    }
}

impl Handler<Reroute> for EnvActor {
    type Result = ();

    fn handle(&mut self, Reroute(mut msg): Reroute, _ctx: &mut Self::Context) {
        if let Some(ended) = msg.inbound.session.take() {
            let user_key = (
                msg.team.clone(),
                msg.channel.clone(),
                msg.inbound.user.clone(),
            );
            if self.open_by_user.get(&user_key) == Some(&ended) {
                self.open_by_user.remove(&user_key);
            }
        }
        msg.rerouted = true;
        self.route(msg);
    }
}

impl Handler<Ended> for EnvActor {
    type Result = ();

    fn handle(&mut self, msg: Ended, _ctx: &mut Self::Context) {
        let user_key = (msg.team, msg.channel, msg.user);
        if self.open_by_user.get(&user_key) == Some(&msg.session) {
            self.open_by_user.remove(&user_key);
        }
    }
}

impl Handler<Sweep> for EnvActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Sweep, ctx: &mut Self::Context) -> Self::Result {
        self.sweep(ctx)
    }
}

impl Handler<Shutdown> for EnvActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        let all: Vec<SessionKey> = self.sessions.keys().cloned().collect();
        self.passivate(all, ctx)
    }
}

impl Handler<ResetSession> for EnvActor {
    type Result = ();

    fn handle(&mut self, msg: ResetSession, _ctx: &mut Self::Context) {
        if let Some(entry) = self.sessions.get(&(msg.team, msg.session)) {
            entry.addr.do_send(Reset);
        }
    }
}
