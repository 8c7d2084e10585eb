//! What the actors of the runtime share, below all of them: the runtime's options and metrics,
//! the log and snapshot handles ([`Shared`]), an environment's part ([`EnvShared`]), and the
//! mailbox bounds. Imports run one way: `runtime` → `tenant` → `env` → `session`, and each of
//! them → `shared`, `messages`; nothing here imports an actor.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::clock::{Clock, SystemClock};
use super::messages::{Ended, Evict, Reroute};
use crate::cluster::forward::Forwarding;
use crate::config::{Config, TenantConfig};
use crate::events::log::EventLog;
use crate::projections::snapshot::SnapshotStore;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantId};

/// Messages waiting for a tenant actor before senders get `Overloaded`.
pub(super) const TENANT_MAILBOX: usize = 4096;

/// How the runtime behaves; `from_config` maps `config.toml`'s `[runtime]`.
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Events between snapshots of a session.
    pub snapshot_every: u64,
    /// A session idle this long is snapshotted and its actor stopped.
    pub session_idle_timeout_ms: u64,
    /// How often env actors look for idle sessions (real time).
    pub sweep_interval: Duration,
    /// Arbiters (threads) that session actors are spread over.
    pub workers: usize,
    /// Live session actors over all tenants, and of one tenant (`runtime.sessions_max`,
    /// `runtime.tenant_sessions_max`).
    pub sessions_max: usize,
    pub tenant_sessions_max: usize,
    /// How long idempotency records are kept (`runtime.idempotency_window`), in ms.
    pub idempotency_window_ms: u64,
    /// How often the background purge of expired idempotency records runs (real time).
    pub idempotency_purge_every: Duration,
    pub clock: Arc<dyn Clock>,
    /// Where every reply goes after its ack (e.g. the NATS egress publisher); `None`: nowhere.
    pub egress: Option<EgressSink>,
    /// Messages that may be in flight (submitted, not yet answered) over all tenants. Past this,
    /// `submit` refuses at once with `Overloaded`: under overload, latency and memory stay
    /// bounded and the excess is refused in microseconds instead of queueing for seconds.
    pub inflight_max: usize,
    /// Messages one tenant may have in flight; `1..=inflight_max`. Past it that tenant's new
    /// messages are refused with `Overloaded` while the rest of `inflight_max` stays open to
    /// the others, so one tenant flooding (over HTTP or NATS) cannot make another's messages
    /// be refused.
    pub inflight_per_tenant_max: usize,
    /// Admitted messages running at once (in the actors and the log) over all tenants, shared
    /// evenly by the tenants with messages running or waiting; a tenant's messages past its
    /// share wait, in order, for its running ones to finish (see `lane`).
    pub running_max: usize,
    /// In a cluster: where each tenant's messages go, and how they reach another node
    /// (`cluster::forward`); `None`: every message is handled here.
    pub forwarding: Option<Forwarding>,
}

/// One reply on its way out to the user's channel.
#[derive(Clone, Debug)]
pub struct Egress {
    pub tenant: TenantId,
    pub env: crate::tenancy::EnvId,
    pub team: crate::tenancy::TeamId,
    pub channel: ChannelId,
    pub session: SessionId,
    pub text: String,
    /// The client's message id of the message this answers, when it had one.
    pub in_reply_to: Option<String>,
}

/// A bounded queue of replies to publish. When it is full a reply is dropped and counted, never
/// buffered without bound: the reply is in the log and the ack carries it anyway.
pub type EgressSink = tokio::sync::mpsc::Sender<Egress>;

impl RuntimeOptions {
    pub fn from_config(config: &Config) -> RuntimeOptions {
        let rt = config.runtime();
        let idle = rt.session_idle_timeout;
        RuntimeOptions {
            snapshot_every: rt.snapshot_every,
            session_idle_timeout_ms: u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
            // Check a few times per timeout, but not more than once a second.
            sweep_interval: (idle / 4).max(Duration::from_secs(1)),
            workers: std::thread::available_parallelism().map_or(2, usize::from),
            sessions_max: rt.sessions_max,
            tenant_sessions_max: rt.tenant_sessions_max,
            idempotency_window_ms: u64::try_from(rt.idempotency_window.as_millis())
                .unwrap_or(u64::MAX),
            idempotency_purge_every: IDEMPOTENCY_PURGE_INTERVAL,
            clock: Arc::new(SystemClock),
            egress: None,
            inflight_max: rt.inflight_max,
            inflight_per_tenant_max: config.inflight_per_tenant_max(),
            running_max: config.running_max(),
            forwarding: None,
        }
    }
}

/// How often the runtime purges idempotency records older than the window (the default of
/// `RuntimeOptions::idempotency_purge_every`).
pub const IDEMPOTENCY_PURGE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// When the first purge runs after start: soon, so that a server restarted more often than
/// hourly still purges, but not during the start itself.
pub const IDEMPOTENCY_PURGE_FIRST: Duration = Duration::from_secs(60);

/// Counters the runtime keeps about itself (exported by the metrics endpoint later).
#[derive(Default, Debug)]
pub struct RuntimeMetrics {
    /// Snapshots that were unusable and replaced by a rebuild from the log.
    pub snapshot_fallbacks: AtomicU64,
    /// Session actors currently running.
    pub active_sessions: AtomicU64,
    /// Replies dropped because the egress queue was full.
    pub egress_dropped: AtomicU64,
    /// Messages submitted and not yet answered.
    pub inflight: AtomicUsize,
    /// Of those, messages waiting in their tenant's lane for a running place (`actors::lane`).
    pub waiting: AtomicUsize,
    /// Messages refused because `inflight_max` were already in flight, or their tenant's
    /// `inflight_per_tenant_max`.
    pub inflight_refused: AtomicU64,
}

/// What every actor shares: the log, the snapshot store, options, arbiters.
pub(super) struct Shared {
    pub log: EventLog,
    pub snapshots: SnapshotStore,
    pub opts: RuntimeOptions,
    pub arbiters: Vec<ArbiterHandle>,
    pub metrics: Arc<RuntimeMetrics>,
    /// Every env actor with its tenant, so that one short of session slots can ask the others
    /// to passivate idle sessions early. Filled as env actors start; weak, so it keeps none
    /// alive.
    pub envs: std::sync::Mutex<Vec<(TenantId, actix::WeakRecipient<Evict>)>>,
    /// The quarantined sessions, for `Runtime::quarantined_sessions`: a session actor adds its
    /// key when it quarantines itself and removes it when reset or stopped (a quarantine lives
    /// as long as its actor), so this holds at most one key per live session.
    pub quarantined: std::sync::Mutex<BTreeSet<QuarantineKey>>,
}

/// A quarantined session: tenant, env, team, session.
pub(super) type QuarantineKey = (TenantId, EnvId, TeamId, SessionId);

/// What every actor of one environment shares (read-only).
pub(super) struct EnvShared {
    pub runtime: Arc<Shared>,
    pub tenant: Arc<TenantConfig>,
    pub env: EnvId,
    /// Live session actors of the tenant (all its envs share it).
    pub tenant_sessions: Arc<AtomicUsize>,
}

/// What the session actors of one environment share: its [`EnvShared`] and the way up to its
/// env actor (the two messages they send it). Built once by the env actor; each of its sessions
/// holds one pointer to it (a `Recipient` per session would cost each idle session two boxed
/// senders with their own allocations).
pub(super) struct EnvLink {
    pub shared: Arc<EnvShared>,
    pub reroute: Recipient<Reroute>,
    pub ended: Recipient<Ended>,
}
