//! The [`Runtime`] handle: starts the supervisor tree and is what the edges call.
//!
//! `Runtime::send` checks the message against the tenant's config (env, team, channel, sizes),
//! tags a span with the tenancy ids, and hands it to the tenant's actor with `try_send`; it
//! resolves with the [`Ack`] once the session actor has made the events durable. In a cluster
//! (`RuntimeOptions::forwarding`), a checked message of a tenant another node owns goes to that
//! node instead (`cluster::forward`), and resolves with its ack.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use futures_util::future::Either;
use tokio::sync::oneshot;

use super::lane::{Fairness, Lane};
use super::messages::{Ack, Deliver, Inbound, Op, ResetSession, RuntimeError, Shutdown, Sweep};
use super::shared::Shared;
// Defined in `shared` (every actor reads them); named here too, where the edges look for them.
pub use super::shared::{
    Egress, EgressSink, RuntimeMetrics, RuntimeOptions, IDEMPOTENCY_PURGE_FIRST,
    IDEMPOTENCY_PURGE_INTERVAL,
};
use super::tenant::TenantActor;
use crate::cluster::placement::Route;
use crate::config::{Config, TenantConfig};
use crate::events::codec::{NAME_BYTES_MAX, TEXT_BYTES_MAX};
use crate::events::log::{EventLog, PurgeError, PurgeReport};
use crate::projections::load::load_session;
use crate::projections::session::SessionState;
use crate::projections::snapshot::SnapshotStore;
use crate::tenancy::{ChannelId, SessionId, TeamId, TenantCtx, TenantId};

/// Longest [`Runtime::pause_tenant`] waits for the tenant's messages in flight to be answered.
pub const PAUSE_DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// How often it looks.
const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// A tenant stopped by [`Runtime::pause_tenant`]; dropping it lets its messages in again.
#[must_use = "the tenant is served again as soon as the pause is dropped"]
pub struct TenantPause(Arc<AtomicBool>);

impl Drop for TenantPause {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// One message's place among the in-flight ones, over all tenants and in its tenant's share;
/// both are given back when dropped (answered, failed, or abandoned by its caller).
struct InflightPermit {
    metrics: Arc<RuntimeMetrics>,
    tenant: Arc<AtomicUsize>,
}

impl InflightPermit {
    /// Takes a place in `tenant`'s share (at most `opts.inflight_per_tenant_max`), then one of
    /// `opts.inflight_max` overall; `None` (counted) when either is full, holding neither.
    fn try_acquire(
        metrics: &Arc<RuntimeMetrics>,
        tenant: &Arc<AtomicUsize>,
        opts: &RuntimeOptions,
    ) -> Option<InflightPermit> {
        let take = |counter: &AtomicUsize, max: usize| {
            counter
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok()
        };
        if !take(tenant, opts.inflight_per_tenant_max) {
            metrics.inflight_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if !take(&metrics.inflight, opts.inflight_max) {
            tenant.fetch_sub(1, Ordering::AcqRel);
            metrics.inflight_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(InflightPermit {
            metrics: metrics.clone(),
            tenant: tenant.clone(),
        })
    }
}

impl Drop for InflightPermit {
    fn drop(&mut self) {
        self.metrics.inflight.fetch_sub(1, Ordering::AcqRel);
        self.tenant.fetch_sub(1, Ordering::AcqRel);
    }
}

struct TenantEntry {
    addr: Addr<TenantActor>,
    config: Arc<TenantConfig>,
    /// The tenant's messages in flight (its share of `inflight_max`).
    inflight: Arc<AtomicUsize>,
    /// Set while the tenant's data is being deleted: its messages are refused.
    deleting: Arc<AtomicBool>,
    /// Where its admitted messages wait for their turn to run.
    lane: Arc<Lane>,
}

impl TenantEntry {
    /// Refuses while the tenant's data is being deleted. Call it after taking the in-flight
    /// place (both SeqCst): `pause_tenant` sets the flag and then waits for the places to
    /// drain, so either it waits for this message or this message sees the flag.
    fn refuse_while_deleting(&self, tenant: &TenantId) -> Result<(), RuntimeError> {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.deleting.load(Ordering::SeqCst) {
            return Err(RuntimeError::TenantDeleting(tenant.clone()));
        }
        Ok(())
    }
}

/// Handle to the running runtime. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    tenants: HashMap<TenantId, TenantEntry>,
    shutting_down: AtomicBool,
    arbiters: Vec<Arbiter>,
    metrics: Arc<RuntimeMetrics>,
}

impl Runtime {
    /// Starts one tenant actor per tenant of `config` (each with its env actors) on `workers`
    /// arbiters. Must be called from inside a running actix `System`.
    pub fn start(
        config: &Config,
        log: EventLog,
        snapshots: SnapshotStore,
        opts: RuntimeOptions,
    ) -> Runtime {
        let arbiters: Vec<Arbiter> = (0..opts.workers.max(1)).map(|_| Arbiter::new()).collect();
        let metrics = Arc::new(RuntimeMetrics::default());
        let shared = Arc::new(Shared {
            log,
            snapshots,
            opts,
            arbiters: arbiters.iter().map(Arbiter::handle).collect(),
            metrics: metrics.clone(),
            envs: std::sync::Mutex::default(),
            quarantined: std::sync::Mutex::default(),
        });
        start_purge(&shared);
        super::retention::start(&shared, retention_policies(config));
        let fairness = Fairness::new(shared.opts.running_max, shared.metrics.clone());
        let mut tenants = HashMap::new();
        for (i, (id, tenant)) in config.tenants().iter().enumerate() {
            let tenant = Arc::new(tenant.clone());
            let arbiter = &shared.arbiters[i % shared.arbiters.len()];
            let (s, t) = (shared.clone(), tenant.clone());
            // Supervised: a panic in the tenant's actor restarts it (see `supervise`).
            let addr = Supervisor::start_in_arbiter(arbiter, move |_ctx| TenantActor::new(s, t));
            tenants.insert(
                id.clone(),
                TenantEntry {
                    lane: Lane::new(fairness.clone(), addr.clone().recipient()),
                    addr,
                    config: tenant,
                    inflight: Arc::default(),
                    deleting: Arc::default(),
                },
            );
        }
        Runtime {
            inner: Arc::new(Inner {
                shared,
                tenants,
                shutting_down: AtomicBool::new(false),
                arbiters,
                metrics,
            }),
        }
    }

    /// Handles one inbound message in `ctx` (team `default` when `None`) on `channel`.
    /// Resolves after the resulting events are durable, with the session, the message's seq and
    /// the bot's replies; a retried `message_id` gets the first answer again.
    pub async fn send(
        &self,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: Inbound,
    ) -> Result<Ack, RuntimeError> {
        self.submit(ctx, channel, inbound)?.await
    }

    /// True when `inflight_max` messages are in flight, or `tenant`'s share: a new one of
    /// `tenant` would be refused. Lets an edge refuse before reading and parsing a request
    /// (`submit` still decides).
    pub fn saturated(&self, tenant: &TenantId) -> bool {
        let opts = &self.inner.shared.opts;
        let tenant_full = self.inner.tenants.get(tenant).is_some_and(|entry| {
            entry.inflight.load(Ordering::Acquire) >= opts.inflight_per_tenant_max
        });
        tenant_full || self.inner.metrics.inflight.load(Ordering::Acquire) >= opts.inflight_max
    }

    /// Checks and enqueues a message now and returns a future of its ack. Messages submitted
    /// one after another from one thread reach their session in that order, however their acks
    /// are awaited (NATS ingress relies on this to keep a subject's order).
    ///
    /// In a cluster (`RuntimeOptions::forwarding`), a message that passes the checks here and
    /// whose tenant is owned by another node is forwarded to it (queued now, in call order, so
    /// the order holds there too) and holds its in-flight place here until answered; a tenant
    /// without an owner waits for one (see `cluster::forward`).
    pub fn submit(
        &self,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: Inbound,
    ) -> Result<
        impl std::future::Future<Output = Result<Ack, RuntimeError>> + Send + 'static,
        RuntimeError,
    > {
        let (entry, permit) = self.admit(ctx, channel, &inbound)?;
        if let Some(forwarding) = &self.inner.shared.opts.forwarding {
            let route = forwarding.route(&ctx.tenant);
            if route != Route::Local {
                let pending =
                    forwarding.remote(self.clone(), route, ctx, channel, inbound, permit)?;
                return Ok(Either::Right(pending));
            }
        }
        Ok(Either::Left(self.deliver(
            entry,
            ctx,
            channel,
            (Op::Message, inbound),
            permit,
        )?))
    }

    /// Whether this node handles `tenant`'s messages itself: always without a cluster; in one,
    /// when its placement says `Local` (else `submit` forwards them, or waits for an owner).
    pub fn handles_here(&self, tenant: &TenantId) -> bool {
        self.route(tenant) == Route::Local
    }

    /// Where `tenant`'s messages go from this node: `Local` without a cluster, else what its
    /// placement says (the owner's name for a tenant another node owns).
    pub fn route(&self, tenant: &TenantId) -> Route {
        self.inner
            .shared
            .opts
            .forwarding
            .as_ref()
            .map_or(Route::Local, |f| f.route(tenant))
    }

    /// [`submit`](Self::submit) without asking the placement: the message is handled here.
    /// For messages forwarded to this node, whose listener has checked the route itself (so a
    /// message is never forwarded twice).
    pub fn submit_here(
        &self,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: Inbound,
    ) -> Result<
        impl std::future::Future<Output = Result<Ack, RuntimeError>> + Send + 'static,
        RuntimeError,
    > {
        let (entry, permit) = self.admit(ctx, channel, &inbound)?;
        self.deliver(entry, ctx, channel, (Op::Message, inbound), permit)
    }

    /// The checks every message passes on the node that receives it, and its in-flight place.
    fn admit(
        &self,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: &Inbound,
    ) -> Result<(&TenantEntry, InflightPermit), RuntimeError> {
        let entry = self.served(ctx)?;
        check(&entry.config, ctx, channel, inbound)?;
        Ok((entry, self.inflight_place(ctx, entry)?))
    }

    /// The entry of `ctx`'s tenant, when served here and not shutting down.
    fn served(&self, ctx: &TenantCtx) -> Result<&TenantEntry, RuntimeError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(RuntimeError::ShuttingDown);
        }
        self.inner
            .tenants
            .get(&ctx.tenant)
            .ok_or_else(|| RuntimeError::UnknownTenant(ctx.tenant.clone()))
    }

    /// A place among the messages in flight, overall and in `entry`'s tenant's share; refused
    /// while the tenant's data is being deleted (checked after the place is taken, see
    /// [`TenantEntry::refuse_while_deleting`]).
    fn inflight_place(
        &self,
        ctx: &TenantCtx,
        entry: &TenantEntry,
    ) -> Result<InflightPermit, RuntimeError> {
        let permit = InflightPermit::try_acquire(
            &self.inner.metrics,
            &entry.inflight,
            &self.inner.shared.opts,
        )
        .ok_or(RuntimeError::Overloaded)?;
        entry.refuse_while_deleting(&ctx.tenant)?;
        Ok(permit)
    }

    /// Hands an admitted message to its tenant's actor now; the future resolves with its ack.
    fn deliver(
        &self,
        entry: &TenantEntry,
        ctx: &TenantCtx,
        channel: &ChannelId,
        (op, inbound): (Op, Inbound),
        permit: InflightPermit,
    ) -> Result<
        impl std::future::Future<Output = Result<Ack, RuntimeError>> + Send + 'static,
        RuntimeError,
    > {
        let team = ctx.team_or_default();
        let named = inbound.session.is_some();
        let span = tracing::info_span!("message", tenant = %ctx.tenant, env = %ctx.env, team = %team,
            channel = %channel, session = tracing::field::Empty);
        if let Some(session) = &inbound.session {
            span.record("session", session.as_str());
        }
        let (reply, answer) = oneshot::channel();
        let deliver = Deliver {
            op,
            ctx: TenantCtx::new(ctx.tenant.clone(), ctx.env.clone(), Some(team.clone())),
            team,
            channel: channel.clone(),
            inbound,
            named,
            rerouted: false,
            reply,
            span,
            running: None,
        };
        entry.lane.submit(deliver)?;
        let inner = self.inner.clone();
        Ok(async move {
            // Held until the answer arrives (or the caller stops waiting).
            let _permit = permit;
            answer.await.map_err(|_| {
                // Dropped unanswered: by the drain of a shutdown, else by an actor that
                // panicked and restarted on the message's way.
                if inner.shutting_down.load(Ordering::Acquire) {
                    RuntimeError::ShuttingDown
                } else {
                    RuntimeError::Interrupted
                }
            })?
        })
    }

    /// The state of a session of `ctx`'s tenant, env and team (`default` when `None`), from its
    /// snapshot and the log; `None` when it does not exist there (another tenant's or env's
    /// session of the same id is a different session, so it is `None` too).
    pub fn session_state(
        &self,
        ctx: &TenantCtx,
        session: &SessionId,
    ) -> Result<Option<SessionState>, RuntimeError> {
        if !self.inner.tenants.contains_key(&ctx.tenant) {
            return Err(RuntimeError::UnknownTenant(ctx.tenant.clone()));
        }
        let shared = &self.inner.shared;
        let loaded = load_session(&shared.log, &shared.snapshots, ctx, session)?;
        Ok((loaded.state.last_seq > 0).then_some(loaded.state))
    }

    /// Lifts the quarantine of a session of `ctx` (team `default` when `None`); resolves once
    /// its actor has (a session that is not live has no quarantine: nothing to do). A full
    /// mailbox on the way is `Overloaded`. In a cluster only the tenant's owner node holds its
    /// sessions' actors (elsewhere `Interrupted`).
    pub async fn reset_session(
        &self,
        ctx: &TenantCtx,
        session: &SessionId,
    ) -> Result<(), RuntimeError> {
        if !self.handles_here(&ctx.tenant) {
            return Err(RuntimeError::Interrupted);
        }
        let entry = self
            .inner
            .tenants
            .get(&ctx.tenant)
            .ok_or_else(|| RuntimeError::UnknownTenant(ctx.tenant.clone()))?;
        let (reply, answer) = oneshot::channel();
        let reset = ResetSession {
            env: ctx.env.clone(),
            team: ctx.team_or_default(),
            session: session.clone(),
            reply,
        };
        match entry.addr.try_send(reset) {
            Ok(()) => {}
            Err(SendError::Full(_)) => return Err(RuntimeError::Overloaded),
            Err(SendError::Closed(_)) => return Err(RuntimeError::ShuttingDown),
        }
        answer.await.map_err(|_| RuntimeError::Interrupted)?
    }

    /// The quarantined sessions of `ctx`'s tenant and env, in its team or (team `None`) in all
    /// teams, as (team, session) in that order. A quarantine lives as long as the session's
    /// actor: one passivated or restarted is not listed (its next message runs again). In a
    /// cluster, a node lists the sessions of the tenants it owns only.
    pub fn quarantined_sessions(&self, ctx: &TenantCtx) -> Vec<(TeamId, SessionId)> {
        let listed = self
            .inner
            .shared
            .quarantined
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        listed
            .iter()
            .filter(|(tenant, env, team, _)| {
                *tenant == ctx.tenant
                    && *env == ctx.env
                    && ctx.team.as_ref().is_none_or(|t| t == team)
            })
            .map(|(_, _, team, session)| (team.clone(), session.clone()))
            .collect()
    }

    /// Ends an open session of `ctx` (team `default` when `None`) for an operator: its actor
    /// appends `SessionEnded { reason: "closed by operator" }` as one durable group; resolves
    /// after the ack with the seq of that event. `channel` must be the session's own (its
    /// state's `channel`). An ended session is `SessionEnded`; the rest as for a message. In a
    /// cluster only the tenant's owner node closes its sessions (elsewhere `Interrupted`).
    pub async fn close_session(
        &self,
        ctx: &TenantCtx,
        channel: &ChannelId,
        session: &SessionId,
    ) -> Result<Ack, RuntimeError> {
        if !self.handles_here(&ctx.tenant) {
            return Err(RuntimeError::Interrupted);
        }
        refuse_system_session(session)?;
        let inbound = Inbound {
            session: Some(session.clone()),
            user: String::new(),
            text: String::new(),
            message_id: None,
        };
        let (entry, permit) = self.admit_close(ctx)?;
        self.deliver(entry, ctx, channel, (Op::Close, inbound), permit)?
            .await
    }

    /// Appends connector registry events `kinds` (`ConnectorRegistered`,
    /// `ConnectorStateChanged`, `OutboxAcked`, `OutboxDeadLettered`; any other kind is `Invalid`) to the connector's system session
    /// `session` (`crate::connectors::system_session`) of `ctx` (its team) on `channel`, through
    /// the session's actor like a message (one writer per session), without a flow run; resolves
    /// after the durable append. In a cluster only the tenant's owner node records (elsewhere
    /// `Interrupted`).
    pub async fn record(
        &self,
        ctx: &TenantCtx,
        channel: &ChannelId,
        session: &SessionId,
        kinds: Vec<crate::events::schema::EventKind>,
    ) -> Result<Ack, RuntimeError> {
        if !self.handles_here(&ctx.tenant) {
            return Err(RuntimeError::Interrupted);
        }
        if !crate::connectors::is_system_session(session.as_str()) {
            return Err(RuntimeError::Invalid(format!(
                "session {session} is not a connector's system session"
            )));
        }
        use crate::events::schema::EventKind;
        let registry_kind = |k: &EventKind| {
            matches!(
                k,
                EventKind::ConnectorRegistered { .. }
                    | EventKind::ConnectorStateChanged { .. }
                    | EventKind::OutboxAcked { .. }
                    | EventKind::OutboxDeadLettered { .. }
            )
        };
        if !kinds.iter().all(registry_kind) {
            return Err(RuntimeError::Invalid(
                "a system session records connector registry events only".to_owned(),
            ));
        }
        let (entry, permit) = self.admit_close(ctx)?;
        let team = ctx.team_or_default();
        let known = entry
            .config
            .teams
            .get(&team)
            .is_some_and(|t| t.channels.contains_key(channel));
        if !known {
            let channel = channel.clone();
            return Err(RuntimeError::UnknownChannel { team, channel });
        }
        let inbound = Inbound {
            session: Some(session.clone()),
            user: String::new(),
            text: String::new(),
            message_id: None,
        };
        self.deliver(entry, ctx, channel, (Op::Record(kinds), inbound), permit)?
            .await
    }

    /// The checks of a close (a served tenant, its env and team) and its in-flight place.
    fn admit_close(&self, ctx: &TenantCtx) -> Result<(&TenantEntry, InflightPermit), RuntimeError> {
        let entry = self.served(ctx)?;
        if entry.config.env(&ctx.env).is_none() {
            let (tenant, env) = (ctx.tenant.clone(), ctx.env.clone());
            return Err(RuntimeError::UnknownEnv { tenant, env });
        }
        let team = ctx.team_or_default();
        if !entry.config.teams.contains_key(&team) {
            let tenant = ctx.tenant.clone();
            return Err(RuntimeError::UnknownTeam { tenant, team });
        }
        Ok((entry, self.inflight_place(ctx, entry)?))
    }

    /// The config of a served tenant (what its flows' templates see: name, settings).
    pub fn tenant_config(&self, tenant: &TenantId) -> Option<&TenantConfig> {
        self.inner.tenants.get(tenant).map(|entry| &*entry.config)
    }

    /// Passivates idle sessions now (the env actors also do this on a timer).
    pub async fn sweep(&self) {
        for entry in self.inner.tenants.values() {
            let _ = entry.addr.send(Sweep).await;
        }
    }

    /// Removes the idempotency records older than `runtime.idempotency_window` by the runtime's
    /// clock, now; a retry of such a message is then a new message. Blocks on storage: call it
    /// off the actors' threads (the runtime also runs it every `idempotency_purge_every`).
    pub fn purge_idempotency(&self) -> Result<PurgeReport, PurgeError> {
        purge(&self.inner.shared)
    }

    /// Graceful stop: refuse new messages, let queued ones finish, snapshot every session and
    /// stop its actor. The log stays open for the caller to drop.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for entry in self.inner.tenants.values() {
            let _ = entry.addr.send(Shutdown).await;
        }
        for arbiter in &self.inner.arbiters {
            arbiter.stop();
        }
    }

    /// Stops `tenant` for the deletion of its data (offboarding): from now on its messages are
    /// refused ([`RuntimeError::TenantDeleting`], 503); the messages in flight are awaited (at
    /// most [`PAUSE_DRAIN_MAX`]), then every live session of the tenant is snapshotted and its
    /// actor stopped, so nothing writes for the tenant until the returned [`TenantPause`] is
    /// dropped. Then the tenant is served again: its env actors stay, and new sessions start
    /// from whatever the log holds (nothing, after a deletion). One pause per tenant at a time:
    /// a second is refused with `TenantDeleting`.
    pub async fn pause_tenant(&self, tenant: &TenantId) -> Result<TenantPause, RuntimeError> {
        let entry = self
            .inner
            .tenants
            .get(tenant)
            .ok_or_else(|| RuntimeError::UnknownTenant(tenant.clone()))?;
        if entry.deleting.swap(true, Ordering::SeqCst) {
            return Err(RuntimeError::TenantDeleting(tenant.clone()));
        }
        let pause = TenantPause(entry.deleting.clone());
        std::sync::atomic::fence(Ordering::SeqCst);
        let started = std::time::Instant::now();
        while entry.inflight.load(Ordering::SeqCst) > 0 {
            if started.elapsed() > PAUSE_DRAIN_MAX {
                return Err(RuntimeError::Overloaded);
            }
            actix_rt::time::sleep(PAUSE_POLL).await;
        }
        entry
            .addr
            .send(Shutdown)
            .await
            .map_err(|_| RuntimeError::ShuttingDown)?;
        Ok(pause)
    }

    /// The tenants this instance serves.
    pub fn tenants(&self) -> impl Iterator<Item = &TenantId> {
        self.inner.tenants.keys()
    }

    /// The log the runtime writes (for readers: the edges' event and session queries).
    pub fn log(&self) -> &EventLog {
        &self.inner.shared.log
    }

    pub fn metrics(&self) -> &RuntimeMetrics {
        &self.inner.metrics
    }
}

/// The served tenants that have a `retention`.
fn retention_policies(config: &Config) -> Vec<super::retention::Policy> {
    config
        .tenants()
        .values()
        .filter_map(|t| t.retention.map(|keep| (t.id.clone(), keep)))
        .collect()
}

fn purge(shared: &Shared) -> Result<PurgeReport, PurgeError> {
    let now = shared.opts.clock.now_ms();
    let report = shared
        .log
        .purge_idempotency(now, shared.opts.idempotency_window_ms)?;
    if report.removed + report.stamped + report.unreadable + report.failed_tenants > 0 {
        tracing::info!(
            removed = report.removed,
            stamped = report.stamped,
            kept = report.kept,
            unreadable = report.unreadable,
            failed_tenants = report.failed_tenants,
            "idempotency records purged"
        );
    }
    Ok(report)
}

/// Purges expired idempotency records [`IDEMPOTENCY_PURGE_FIRST`] after start (or sooner, if
/// the interval is shorter) and then every `idempotency_purge_every`, on the blocking pool, until
/// the runtime's arbiters stop.
fn start_purge(shared: &Arc<Shared>) {
    let Some(arbiter) = shared.arbiters.first() else {
        return;
    };
    let every = shared.opts.idempotency_purge_every;
    let shared = Arc::downgrade(shared);
    arbiter.spawn(async move {
        let mut wait = IDEMPOTENCY_PURGE_FIRST.min(every);
        loop {
            actix_rt::time::sleep(wait).await;
            wait = every;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let run = actix_rt::task::spawn_blocking(move || purge(&shared)).await;
            if let Ok(Err(e)) = run {
                tracing::error!(error = %e, "idempotency purge failed");
            }
        }
    });
}

/// Checks a message against the tenant's config and the size limits before it enters a queue.
fn check(
    tenant: &TenantConfig,
    ctx: &TenantCtx,
    channel: &ChannelId,
    inbound: &Inbound,
) -> Result<(), RuntimeError> {
    if tenant.env(&ctx.env).is_none() {
        return Err(RuntimeError::UnknownEnv {
            tenant: ctx.tenant.clone(),
            env: ctx.env.clone(),
        });
    }
    let team_id = ctx.team_or_default();
    let team = tenant
        .teams
        .get(&team_id)
        .ok_or_else(|| RuntimeError::UnknownTeam {
            tenant: ctx.tenant.clone(),
            team: team_id.clone(),
        })?;
    if !team.channels.contains_key(channel) {
        return Err(RuntimeError::UnknownChannel {
            team: team_id,
            channel: channel.clone(),
        });
    }
    if let Some(session) = &inbound.session {
        refuse_system_session(session)?;
    }
    if inbound.user.is_empty() || inbound.user.len() > NAME_BYTES_MAX {
        return Err(RuntimeError::Invalid(format!(
            "user must be 1..={NAME_BYTES_MAX} bytes"
        )));
    }
    if inbound.text.len() > TEXT_BYTES_MAX {
        return Err(RuntimeError::Invalid(format!(
            "text must be at most {TEXT_BYTES_MAX} bytes"
        )));
    }
    if let Some(id) = &inbound.message_id {
        if id.is_empty() || id.len() > NAME_BYTES_MAX {
            return Err(RuntimeError::Invalid(format!(
                "message_id must be 1..={NAME_BYTES_MAX} bytes"
            )));
        }
    }
    Ok(())
}

/// Refuses a message or close naming a connector's system session: only the registry appends
/// there, and no flow ever runs in one.
fn refuse_system_session(session: &SessionId) -> Result<(), RuntimeError> {
    if crate::connectors::is_system_session(session.as_str()) {
        return Err(RuntimeError::Invalid(format!(
            "session ids starting with {} are reserved for the connector registry",
            crate::connectors::SYSTEM_SESSION_PREFIX
        )));
    }
    Ok(())
}
