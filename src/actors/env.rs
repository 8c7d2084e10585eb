//! `EnvActor`: one per (tenant, environment). Resolves which session a message belongs to,
//! starts session actors on first message, routes to them, and passivates idle ones.
//!
//! Session resolution (docs/events.md): a message that names a session goes to it (created on first
//! use); one that names none goes to the sender's open session on that (team, channel, user) —
//! remembered here, and in the log's open-session index across restarts — or to a new one.
//!
//! Live sessions are bounded (`slots`): a session actor is spawned only with a slot. With none
//! left, the least recently used idle sessions of this env are passivated early and the message
//! waits for them (bounded, like any message for a passivating session), as do the next new
//! sessions while more sessions are stopping than messages wait for them; with none idle here,
//! the other envs sharing the full count are asked to passivate theirs and the new session is
//! refused with `SessionsFull` (its retry finds the room).
//!
//! Runs under a `Supervisor` (see `supervise`): a panic in a handler restarts this actor with
//! its maps as they were, so its live sessions stay its own (no second actor per session).
//!
//! Invariants: at most one session actor per session; a session being passivated gets no new
//! messages until its actor has stopped (they wait here, bounded), so there is never more than
//! one writer per session.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use actix::prelude::*;

use super::messages::{
    Deliver, Ended, Evict, Passivate, Reroute, Reset, ResetSession, RuntimeError, Shutdown, Sweep,
};
use super::session::{SessionActor, SESSION_MAILBOX};
use super::shared::{EnvLink, EnvShared, TENANT_MAILBOX};
use super::slots::{Full, SessionSlot};
use super::supervise::guard;
use crate::tenancy::{ChannelId, SessionId, TeamId};

/// Messages an env actor queues for sessions that are being passivated, over all of them.
const PENDING_MAX: usize = 1024;
/// A session that received a message less than this long ago (ms) is busy, not idle: it is
/// never passivated early to make room.
pub(super) const EVICT_IDLE_MS_MIN: u64 = 1_000;
/// Idle sessions passivated at once when there is no slot for a new one, so that one scan for
/// the least recently used serves the next new sessions too.
pub(super) const EVICT_BATCH: usize = 64;

pub(super) type SessionKey = (TeamId, SessionId);

/// A live session in [`EnvActor::sessions`]; one per live session, so kept small (72 bytes).
pub(super) struct SessionEntry {
    addr: Addr<SessionActor>,
    last_seen_ms: u64,
    /// The (channel, user) it was resolved for, when it was resolved rather than named (boxed:
    /// named sessions, which have none, pay one pointer).
    owner: Option<Box<(ChannelId, String)>>,
}

/// A session whose actor is stopping, and the messages that wait for it to be gone.
struct Stopping {
    addr: Addr<SessionActor>,
    waiting: Vec<Deliver>,
}

pub(super) struct EnvActor {
    shared: Arc<EnvShared>,
    me: Addr<EnvActor>,
    /// What this env's session actors share (`shared` and the way back here), given to each.
    link: Arc<EnvLink>,
    sessions: HashMap<SessionKey, SessionEntry>,
    open_by_user: HashMap<(TeamId, ChannelId, String), SessionId>,
    passivating: HashMap<SessionKey, Stopping>,
    pending: usize,
    /// Whether `started` has run once (a later run is a restart after a panic).
    started_once: bool,
    /// When this env last asked the others to make room (ms): at most once per
    /// [`EVICT_IDLE_MS_MIN`], so a stream of refusals does not become a stream of requests.
    asked_others_ms: Option<u64>,
}

impl EnvActor {
    pub(super) fn new(shared: Arc<EnvShared>, ctx: &mut Context<EnvActor>) -> EnvActor {
        let me = ctx.address();
        let link = Arc::new(EnvLink {
            shared: shared.clone(),
            reroute: me.clone().recipient(),
            ended: me.clone().recipient(),
        });
        EnvActor {
            shared,
            me,
            link,
            sessions: HashMap::new(),
            open_by_user: HashMap::new(),
            passivating: HashMap::new(),
            pending: 0,
            started_once: false,
            asked_others_ms: None,
        }
    }

    fn now_ms(&self) -> u64 {
        self.shared.runtime.opts.clock.now_ms()
    }

    /// Resolves the session of `msg` and hands it to the session's actor.
    fn route(&mut self, mut msg: Deliver, ctx: &mut Context<Self>) {
        #[cfg(test)]
        if msg.inbound.text == super::supervise::ENV_PANIC_PROBE {
            panic!("injected env actor panic");
        }
        let session = match &msg.inbound.session {
            Some(s) => s.clone(),
            None => match self.resolve_open(&msg) {
                Ok(s) => s,
                Err(e) => return msg.answer(Err(e)),
            },
        };
        msg.span.record("session", session.as_str());
        msg.inbound.session = Some(session.clone());
        let key = (self.configured_team(&msg.team), session);
        if self.passivating.contains_key(&key) {
            return self.wait_for(&key, msg);
        }
        let now = self.now_ms();
        let owner = (!msg.named).then(|| {
            let channel = self.configured_channel(&msg.team, &msg.channel);
            Box::new((channel, msg.inbound.user.clone()))
        });
        let live = self
            .sessions
            .get(&key)
            .is_some_and(|entry| entry.addr.connected());
        if !live {
            // A stopped actor's slot went with it: drop its entry before counting.
            self.sessions.remove(&key);
        }
        let entry = match self.sessions.get_mut(&key) {
            Some(entry) => entry,
            None => {
                let slot = match self.slot() {
                    Ok(slot) => slot,
                    Err(full) => return self.make_room(msg, full, ctx),
                };
                let addr = self.spawn(&key, slot);
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
                // The actor stopped just now on its own (it never should): forget it; a retry
                // starts a fresh one.
                self.sessions.remove(&key);
                msg.answer(Err(RuntimeError::Overloaded));
            }
        }
    }

    /// Parks `msg` until the passivation of `key` is over (then it is routed again).
    fn wait_for(&mut self, key: &SessionKey, msg: Deliver) {
        let Some(stopping) = self.passivating.get_mut(key) else {
            return msg.answer(Err(RuntimeError::Overloaded));
        };
        if self.pending >= PENDING_MAX {
            return msg.answer(Err(RuntimeError::Overloaded));
        }
        self.pending += 1;
        stopping.waiting.push(msg);
    }

    fn slot(&self) -> Result<SessionSlot, Full> {
        let rt = &self.shared.runtime;
        SessionSlot::try_acquire(
            &rt.metrics,
            &self.shared.tenant_sessions,
            rt.opts.sessions_max,
            rt.opts.tenant_sessions_max,
        )
    }

    /// No slot for `msg`'s new session: passivate this env's least recently used idle sessions
    /// early and let `msg` wait for them (or for sessions of this env already stopping). With
    /// neither here, ask the other envs that hold the full count (the tenant's, or every
    /// tenant's) to passivate theirs, and refuse `msg`: its retry (after `Retry-After`) finds the
    /// room they made.
    fn make_room(&mut self, msg: Deliver, full: Full, ctx: &mut Context<Self>) {
        // More sessions stopping here than messages parked for them: each stop frees a slot
        // that nothing has claimed yet, so this message only waits for one. Scanning and
        // passivating anyway would stop a batch (each a synced snapshot) per new session.
        let keys = if self.passivating.len() > self.pending {
            Vec::new()
        } else {
            self.least_recently_used_idle()
        };
        // Sessions of this env already stopping free room too: wait for one of them.
        let first = keys
            .first()
            .or_else(|| self.passivating.keys().next())
            .cloned();
        let Some(first) = first else {
            self.ask_others_to_evict(full);
            let rt = &self.shared.runtime.opts;
            let limit = match full {
                Full::Tenant => rt.tenant_sessions_max,
                Full::Global => rt.sessions_max,
            };
            tracing::warn!(tenant = %self.shared.tenant.id, env = %self.shared.env, limit,
                ?full, "no room for a new session and none idle here; refused");
            return msg.answer(Err(RuntimeError::SessionsFull { limit }));
        };
        if !keys.is_empty() {
            tracing::debug!(tenant = %self.shared.tenant.id, env = %self.shared.env,
                sessions = keys.len(), "passivating idle sessions early to make room");
            let stopping = self.passivate(keys);
            ctx.spawn(stopping);
        }
        self.wait_for(&first, msg);
    }

    /// Up to [`EVICT_BATCH`] sessions idle for [`EVICT_IDLE_MS_MIN`] or more, least recently
    /// used first.
    fn least_recently_used_idle(&self) -> Vec<SessionKey> {
        let now = self.now_ms();
        let mut idle: Vec<(u64, &SessionKey)> = self
            .sessions
            .iter()
            .filter(|(_, e)| now.saturating_sub(e.last_seen_ms) >= EVICT_IDLE_MS_MIN)
            .map(|(k, e)| (e.last_seen_ms, k))
            .collect();
        if idle.len() > EVICT_BATCH {
            idle.select_nth_unstable(EVICT_BATCH - 1);
            idle.truncate(EVICT_BATCH);
        }
        idle.sort_unstable();
        idle.into_iter().map(|(_, k)| k.clone()).collect()
    }

    /// Tells the envs that share the full count to passivate their idle sessions early: the
    /// tenant's other envs when the tenant's share is full, every env when the global is.
    fn ask_others_to_evict(&mut self, full: Full) {
        let now = self.now_ms();
        if self
            .asked_others_ms
            .is_some_and(|t| now.saturating_sub(t) < EVICT_IDLE_MS_MIN)
        {
            return;
        }
        self.asked_others_ms = Some(now);
        let envs = self
            .shared
            .runtime
            .envs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (tenant, addr) in envs.iter() {
            let concerned = full == Full::Global || *tenant == self.shared.tenant.id;
            let Some(addr) = addr.upgrade().filter(|_| concerned) else {
                continue;
            };
            if addr != self.me.clone().recipient() {
                // A full mailbox means that env is busy; it is asked again on the next refusal.
                let _ = addr.try_send(Evict);
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
        // Kept while the session is open: with the configured copies of its ids.
        let (team, channel, user) = user_key;
        let user_key = (
            self.configured_team(&team),
            self.configured_channel(&team, &channel),
            user,
        );
        self.open_by_user.insert(user_key, session.clone());
        Ok(session)
    }

    /// The configured copy of `team` (shared by all its sessions), or `team` itself when the
    /// tenant has no such team (the runtime checks that first; the session then refuses).
    fn configured_team(&self, team: &TeamId) -> TeamId {
        self.shared
            .tenant
            .teams
            .get_key_value(team)
            .map_or_else(|| team.clone(), |(id, _)| id.clone())
    }

    /// The configured copy of `team`'s `channel`, or `channel` itself when there is none.
    fn configured_channel(&self, team: &TeamId, channel: &ChannelId) -> ChannelId {
        self.shared
            .tenant
            .teams
            .get(team)
            .and_then(|t| t.channels.get_key_value(channel))
            .map_or_else(|| channel.clone(), |(id, _)| id.clone())
    }

    fn spawn(&self, key: &SessionKey, slot: SessionSlot) -> Addr<SessionActor> {
        let arbiters = &self.shared.runtime.arbiters;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.1.hash(&mut h);
        let index = usize::try_from(h.finish() % arbiters.len().max(1) as u64).unwrap_or(0);
        let env = self.link.clone();
        let (team, session) = key.clone();
        let start =
            move |_ctx: &mut Context<SessionActor>| SessionActor::new(env, team, session, slot);
        match arbiters.get(index) {
            Some(arbiter) => start_with_mailbox(arbiter, start),
            None => SessionActor::create(|ctx| {
                ctx.set_mailbox_capacity(SESSION_MAILBOX);
                start(ctx)
            }),
        }
    }

    /// Stops the given sessions after their queued messages, then releases what waited for them.
    fn passivate(&mut self, keys: Vec<SessionKey>) -> ResponseActFuture<Self, ()> {
        let mut stopping = Vec::new();
        for key in keys {
            if let Some(entry) = self.sessions.remove(&key) {
                if let Some(owner) = entry.owner {
                    let (channel, user) = *owner;
                    let user_key = (key.0.clone(), channel, user);
                    if self.open_by_user.get(&user_key) == Some(&key.1) {
                        self.open_by_user.remove(&user_key);
                    }
                }
                stopping.push((key.clone(), entry.addr.send(Passivate)));
                let stopping = Stopping {
                    addr: entry.addr,
                    waiting: Vec::new(),
                };
                self.passivating.insert(key, stopping);
            }
        }
        self.await_stopped(stopping)
    }

    /// Resolves when every given session actor has stopped, then routes what waited for them.
    fn await_stopped(
        &mut self,
        stopping: Vec<(SessionKey, Request<SessionActor, Passivate>)>,
    ) -> ResponseActFuture<Self, ()> {
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
            .map(|done, act, ctx| {
                for key in done {
                    let waiting = act
                        .passivating
                        .remove(&key)
                        .map(|s| s.waiting)
                        .unwrap_or_default();
                    act.pending = act.pending.saturating_sub(waiting.len());
                    for msg in waiting {
                        guard(act, ctx, "route waiting", |act, ctx| act.route(msg, ctx));
                    }
                }
            }),
        )
    }
}

impl Actor for EnvActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(TENANT_MAILBOX);
        if !std::mem::replace(&mut self.started_once, true) {
            // First start: be reachable by other envs that need room.
            let mut envs = self
                .shared
                .runtime
                .envs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let evict = ctx.address().recipient::<Evict>().downgrade();
            envs.push((self.shared.tenant.id.clone(), evict));
        } else {
            // A restart dropped the futures that awaited passivations: await them again (a
            // second `Passivate` to an actor that is stopping or gone resolves at once).
            let again: Vec<_> = self
                .passivating
                .iter()
                .map(|(key, s)| (key.clone(), s.addr.send(Passivate)))
                .collect();
            let wait = self.await_stopped(again);
            ctx.spawn(wait);
        }
        let every = self.shared.runtime.opts.sweep_interval;
        ctx.run_interval(every, |act, ctx| {
            if let Some(sweep) = guard(act, ctx, "sweep", |act, _ctx| act.sweep()) {
                ctx.spawn(sweep);
            }
        });
    }
}

impl Supervised for EnvActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(tenant = %self.shared.tenant.id, env = %self.shared.env,
            "env actor restarting after a panic");
    }
}

impl EnvActor {
    fn sweep(&mut self) -> ResponseActFuture<Self, ()> {
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
        self.passivate(idle)
    }
}

/// What a guarded handler that returns a future gives back after a panic.
fn nothing() -> ResponseActFuture<EnvActor, ()> {
    Box::pin(actix::fut::ready(()))
}

impl Handler<Deliver> for EnvActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        guard(self, ctx, "deliver", |act, ctx| act.route(msg, ctx));
    }
}

impl Handler<Evict> for EnvActor {
    type Result = ();

    fn handle(&mut self, _msg: Evict, ctx: &mut Self::Context) {
        guard(self, ctx, "evict", |act, ctx| {
            let keys = act.least_recently_used_idle();
            if !keys.is_empty() {
                tracing::debug!(tenant = %act.shared.tenant.id, env = %act.shared.env,
                    sessions = keys.len(), "passivating idle sessions early for another env");
                let stopping = act.passivate(keys);
                ctx.spawn(stopping);
            }
        });
    }
}

impl Handler<Reroute> for EnvActor {
    type Result = ();

    fn handle(&mut self, Reroute(msg): Reroute, ctx: &mut Self::Context) {
        guard(self, ctx, "reroute", |act, ctx| act.reroute(msg, ctx));
    }
}

impl EnvActor {
    fn reroute(&mut self, mut msg: Deliver, ctx: &mut Context<Self>) {
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
        self.route(msg, ctx);
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
        guard(self, ctx, "sweep", |act, _ctx| act.sweep()).unwrap_or_else(nothing)
    }
}

impl Handler<Shutdown> for EnvActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _msg: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        guard(self, ctx, "shutdown", |act, _ctx| {
            let all: Vec<SessionKey> = act.sessions.keys().cloned().collect();
            act.passivate(all)
        })
        .unwrap_or_else(nothing)
    }
}

impl Handler<ResetSession> for EnvActor {
    type Result = ();

    fn handle(&mut self, msg: ResetSession, _ctx: &mut Self::Context) {
        let key = (msg.team.clone(), msg.session.clone());
        let Some(entry) = self.sessions.get(&key) else {
            // Not live: a quarantine lives as long as its actor, so there is none to lift.
            return msg.answer(Ok(()));
        };
        match entry.addr.try_send(Reset(msg)) {
            Ok(()) => {}
            Err(SendError::Full(Reset(msg))) => msg.answer(Err(RuntimeError::Overloaded)),
            // Stopped meanwhile, and its quarantine with it.
            Err(SendError::Closed(Reset(msg))) => msg.answer(Ok(())),
        }
    }
}

/// Starts a session actor on `arbiter` with a mailbox of [`SESSION_MAILBOX`] from the first
/// message on. `start_in_arbiter` makes the mailbox with actix's default (16) and the actor can
/// only raise it once the arbiter has run its start, so a burst to a new session sent meanwhile
/// was refused past 16 messages.
fn start_with_mailbox(
    arbiter: &actix_rt::ArbiterHandle,
    start: impl FnOnce(&mut Context<SessionActor>) -> SessionActor + Send + 'static,
) -> Addr<SessionActor> {
    let (tx, rx) = actix::dev::channel::channel(SESSION_MAILBOX);
    arbiter.spawn_fn(move || {
        let mut ctx = Context::with_receiver(rx);
        let actor = start(&mut ctx);
        actix_rt::spawn(ctx.into_future(actor));
    });
    Addr::new(tx)
}
