//! [`Registry`]: one node's view of the connectors of the tenants it serves, in memory, rebuilt
//! from the system sessions' events at start ([`Registry::rebuild`]). Heartbeats touch memory
//! only; registrations and state changes are appended first and applied after the durable ack.
//!
//! Each connector also carries its outbox cursor (`super::outbox`): the `tenant_seq` up to which
//! its replies were acknowledged or dead-lettered, rebuilt from the same events.
//!
//! Invariants: writes (registrations, heartbeats, acks, the sweeps) run one at a time
//! (`writes`), so a check and the append it leads to never interleave with another's; the memory
//! never holds a registration, a state or a cursor the log has not acknowledged.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{system_session, ConnectorError, ConnectorState, SYSTEM_SESSION_PREFIX};
use crate::actors::runtime::Runtime;
use crate::events::log::ReadError;
use crate::events::schema::EventKind;
use crate::tenancy::{ChannelId, ConnectorId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

pub(super) type Key = (TenantId, EnvId, ConnectorId);

/// What a connector registers with (ids already validated against the tenant's config).
#[derive(Clone, Debug)]
pub struct Registration {
    pub tenant: TenantId,
    pub env: EnvId,
    pub team: TeamId,
    pub channel: ChannelId,
    pub id: ConnectorId,
    pub provider: String,
    pub version: String,
    pub capabilities: Vec<String>,
}

/// A registered connector, as the registry knows it.
#[derive(Clone, Debug)]
pub struct Connector {
    pub id: ConnectorId,
    pub env: EnvId,
    pub team: TeamId,
    pub channel: ChannelId,
    pub provider: String,
    pub version: String,
    pub capabilities: Vec<String>,
    /// The state last recorded in the log.
    recorded: ConnectorState,
    /// Its last heartbeat or registration (at a restart: the rebuild).
    last_beat: Instant,
    /// The outbox cursor: replies up to this `tenant_seq` are acknowledged or dead-lettered.
    pub(super) acked: u64,
    /// The highest cursor an outbox read handed out since this node started (at least `acked`):
    /// an ack may not go past it.
    pub(super) delivered: u64,
    /// In memory: outbox reads found none of its replies up to this `tenant_seq` (reads start
    /// past it, so a quiet connector does not rescan the same events).
    pub(super) skipped: u64,
}

impl Connector {
    /// Its state now: by the age of its last heartbeat, never better than the recorded one
    /// (only a heartbeat or a registration makes a connector live again).
    pub fn state(&self, interval: Duration) -> ConnectorState {
        ConnectorState::by_age(self.last_beat.elapsed(), interval).max(self.recorded)
    }

    /// Time since its last heartbeat or registration (at a restart: since the rebuild).
    pub fn heartbeat_age(&self) -> Duration {
        self.last_beat.elapsed()
    }

    /// The outbox cursor: its replies up to this `tenant_seq` are acknowledged or dead-lettered.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    fn from_registration(r: &Registration) -> Connector {
        Connector {
            id: r.id.clone(),
            env: r.env.clone(),
            team: r.team.clone(),
            channel: r.channel.clone(),
            provider: r.provider.clone(),
            version: r.version.clone(),
            capabilities: r.capabilities.clone(),
            recorded: ConnectorState::Live,
            last_beat: Instant::now(),
            acked: 0,
            delivered: 0,
            skipped: 0,
        }
    }

    fn registered_event(&self, healed: bool) -> EventKind {
        EventKind::ConnectorRegistered {
            connector: self.id.to_string(),
            provider: self.provider.clone(),
            version: self.version.clone(),
            capabilities: self.capabilities.clone(),
            healed,
        }
    }

    fn state_event(&self, to: ConnectorState) -> EventKind {
        EventKind::ConnectorStateChanged {
            connector: self.id.to_string(),
            from: self.recorded.as_str().to_owned(),
            to: to.as_str().to_owned(),
        }
    }
}

/// The connectors of the tenants this node serves.
pub struct Registry {
    runtime: Runtime,
    interval: Duration,
    entries: Mutex<HashMap<Key, Connector>>,
    /// Held by every write from its check to its update (across the append).
    writes: tokio::sync::Mutex<()>,
}

impl Registry {
    /// An empty registry appending through `runtime`, with `connectors.heartbeat_interval`.
    pub fn new(runtime: Runtime, interval: Duration) -> Registry {
        Registry {
            runtime,
            interval,
            entries: Mutex::default(),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// `connectors.heartbeat_interval`.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Key, Connector>> {
        // A poisoned lock only means a panic elsewhere; the map itself is consistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads every served tenant's system sessions and rebuilds the registry from their events;
    /// every connector counts as having beaten now (its recorded state still holds). A tenant
    /// whose log cannot be read is logged and left out (its connectors heal by heartbeat).
    /// Blocking: call it at start, before the registry is used. Returns how many connectors it
    /// found.
    pub fn rebuild(&self) -> usize {
        let mut found = HashMap::new();
        let tenants: Vec<TenantId> = self.runtime.tenants().cloned().collect();
        for tenant in tenants {
            if let Err(e) = self.rebuild_tenant(&tenant, &mut found) {
                tracing::error!(tenant = %tenant, error = %e,
                    "connector registry: the tenant's log cannot be read; its connectors are \
                     left out until they heartbeat");
            }
        }
        let count = found.len();
        *self.entries() = found;
        count
    }

    fn rebuild_tenant(
        &self,
        tenant: &TenantId,
        found: &mut HashMap<Key, Connector>,
    ) -> Result<(), ReadError> {
        let log = self.runtime.log();
        let Some(config) = self.runtime.tenant_config(tenant) else {
            return Ok(());
        };
        // Sessions are listed in (team, id) order: a team's system sessions are one run, found
        // by seeking past the id that sorts just before every `sys-connector-…`, so the rebuild
        // reads the connectors' sessions only, however many conversations there are.
        let before = SessionId::parse(SYSTEM_SESSION_PREFIX.trim_end_matches('-'))
            .expect("the prefix without its dash is a valid session id");
        let mut mine = HashMap::new();
        for env in &config.environments {
            for team in config.teams.keys() {
                let ctx = TenantCtx::new(tenant.clone(), env.id.clone(), Some(team.clone()));
                let scope = log.scope(&ctx);
                for info in scope.sessions_after(Some((team, &before))) {
                    let info = info?;
                    if !super::is_system_session(info.session.as_str()) {
                        break;
                    }
                    for stored in scope.session_events(&info.session, 1..=u64::MAX) {
                        fold(&mut mine, tenant, &stored?.event);
                    }
                }
            }
        }
        found.extend(mine);
        Ok(())
    }

    /// Forgets `tenant`'s connectors (its data was deleted).
    pub fn forget_tenant(&self, tenant: &TenantId) {
        self.entries().retain(|(t, _, _), _| t != tenant);
    }

    /// Registers `r`: a new id is recorded (`ConnectorRegistered`) and `true` returned; a known
    /// id with the same team and channel is re-registered (a new `ConnectorRegistered` only when
    /// provider, version or capabilities changed; `live` again, recorded if it was not) and
    /// `false` returned; another team or channel is a [`ConnectorError::Conflict`].
    pub async fn register(&self, r: Registration) -> Result<(Connector, bool), ConnectorError> {
        let _write = self.writes.lock().await;
        let key = (r.tenant.clone(), r.env.clone(), r.id.clone());
        let existing = self.entries().get(&key).cloned();
        let Some(known) = existing else {
            let mut connector = Connector::from_registration(&r);
            let at = self
                .append(
                    &r.tenant,
                    &connector,
                    vec![connector.registered_event(false)],
                )
                .await?;
            (connector.acked, connector.delivered) = (at, at);
            self.entries().insert(key, connector.clone());
            return Ok((connector, true));
        };
        for (field, registered, got) in [
            ("team", known.team.as_str(), r.team.as_str()),
            ("channel", known.channel.as_str(), r.channel.as_str()),
        ] {
            if registered != got {
                return Err(ConnectorError::Conflict {
                    connector: r.id,
                    field,
                    registered: registered.to_owned(),
                    got: got.to_owned(),
                });
            }
        }
        let mut connector = Connector::from_registration(&r);
        connector.recorded = known.recorded;
        (connector.acked, connector.delivered) = (known.acked, known.delivered);
        connector.skipped = known.skipped;
        let mut kinds = Vec::new();
        if (&known.provider, &known.version, &known.capabilities)
            != (&r.provider, &r.version, &r.capabilities)
        {
            kinds.push(connector.registered_event(false));
        }
        if known.recorded != ConnectorState::Live {
            kinds.push(connector.state_event(ConnectorState::Live));
        }
        if !kinds.is_empty() {
            self.append(&r.tenant, &connector, kinds).await?;
        }
        connector.recorded = ConnectorState::Live;
        self.entries().insert(key, connector.clone());
        Ok((connector, false))
    }

    /// A heartbeat of connector `id` of `tenant`/`env`, from a token of `team`: the connector is
    /// live from now (recorded if it was not). A connector the registry does not know (e.g.
    /// after a restore of an older data dir) is registered again from `heal()` and recorded with
    /// `healed: true`; the `bool` says whether that happened.
    pub async fn heartbeat(
        &self,
        (tenant, env, id): (&TenantId, &EnvId, &ConnectorId),
        team: &TeamId,
        heal: impl FnOnce() -> Result<Registration, ConnectorError>,
    ) -> Result<(Connector, bool), ConnectorError> {
        let _write = self.writes.lock().await;
        let key = (tenant.clone(), env.clone(), id.clone());
        let existing = self.entries().get(&key).cloned();
        let Some(mut connector) = existing else {
            let mut connector = Connector::from_registration(&heal()?);
            let at = self
                .append(tenant, &connector, vec![connector.registered_event(true)])
                .await?;
            (connector.acked, connector.delivered) = (at, at);
            self.entries().insert(key, connector.clone());
            return Ok((connector, true));
        };
        if connector.team != *team {
            return Err(ConnectorError::TeamMismatch {
                connector: id.clone(),
                registered: connector.team,
                token: team.clone(),
            });
        }
        if connector.recorded != ConnectorState::Live {
            let kinds = vec![connector.state_event(ConnectorState::Live)];
            self.append(tenant, &connector, kinds).await?;
            connector.recorded = ConnectorState::Live;
        }
        connector.last_beat = Instant::now();
        self.entries().insert(key, connector.clone());
        Ok((connector, false))
    }

    /// The connector `id` of `tenant`/`env`, if registered.
    pub fn get(&self, tenant: &TenantId, env: &EnvId, id: &ConnectorId) -> Option<Connector> {
        let key = (tenant.clone(), env.clone(), id.clone());
        self.entries().get(&key).cloned()
    }

    /// Every connector of every tenant, with its tenant (for the metrics listener).
    pub fn all(&self) -> Vec<(TenantId, Connector)> {
        self.entries()
            .iter()
            .map(|((tenant, _, _), c)| (tenant.clone(), c.clone()))
            .collect()
    }

    /// The connectors of `tenant`/`env` (of `team` only, when given), by id.
    pub fn list(&self, tenant: &TenantId, env: &EnvId, team: Option<&TeamId>) -> Vec<Connector> {
        let mut listed: Vec<Connector> = self
            .entries()
            .iter()
            .filter(|((t, e, _), c)| {
                t == tenant && e == env && team.is_none_or(|team| *team == c.team)
            })
            .map(|(_, c)| c.clone())
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed
    }

    /// Records every state that decayed since it was last recorded (`live` → `stale` →
    /// `dead`), for the tenants this node handles; returns how many changes were recorded. A
    /// failed append is logged and retried at the next sweep.
    pub async fn sweep(&self) -> usize {
        let _write = self.writes.lock().await;
        let due: Vec<(Key, Connector, ConnectorState)> = self
            .entries()
            .iter()
            .filter(|((tenant, _, _), _)| self.runtime.handles_here(tenant))
            .filter_map(|(key, c)| {
                let now = c.state(self.interval);
                (now != c.recorded).then(|| (key.clone(), c.clone(), now))
            })
            .collect();
        let mut recorded = 0;
        for (key, connector, to) in due {
            let kinds = vec![connector.state_event(to)];
            match self.append(&key.0, &connector, kinds).await {
                Ok(_) => {
                    if let Some(entry) = self.entries().get_mut(&key) {
                        entry.recorded = to;
                    }
                    recorded += 1;
                }
                Err(e) => tracing::warn!(tenant = %key.0, env = %key.1, connector = %key.2,
                    error = %e, "connector state change not recorded; retried at the next sweep"),
            }
        }
        recorded
    }

    /// Appends `kinds` to `connector`'s system session, durably; returns the `tenant_seq` of
    /// the first of them.
    pub(super) async fn append(
        &self,
        tenant: &TenantId,
        connector: &Connector,
        kinds: Vec<EventKind>,
    ) -> Result<u64, ConnectorError> {
        let ctx = TenantCtx::new(
            tenant.clone(),
            connector.env.clone(),
            Some(connector.team.clone()),
        );
        let session = system_session(&connector.id);
        let ack = self
            .runtime
            .record(&ctx, &connector.channel, &session, kinds)
            .await?;
        // One durable event, read back for its position (a point read of one frame).
        let log = self.runtime.log();
        let stored = log
            .scope(&ctx)
            .session_events(&session, ack.seq..=ack.seq)
            .next();
        match stored {
            Some(Ok(stored)) => Ok(stored.event.tenant_seq),
            Some(Err(e)) => Err(ConnectorError::Read(e.to_string())),
            None => Err(ConnectorError::Read(format!(
                "the recorded event {session}#{} is not readable",
                ack.seq
            ))),
        }
    }

    pub(super) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(super) fn writes(&self) -> &tokio::sync::Mutex<()> {
        &self.writes
    }

    /// Runs `update` on the entry of `key`, if there is one.
    pub(super) fn update(&self, key: &Key, update: impl FnOnce(&mut Connector)) {
        if let Some(entry) = self.entries().get_mut(key) {
            update(entry);
        }
    }
}

/// Folds one event of a system session into `found` (a rebuild).
fn fold(
    found: &mut HashMap<Key, Connector>,
    tenant: &TenantId,
    event: &crate::events::schema::Event,
) {
    match &event.kind {
        EventKind::ConnectorRegistered {
            connector,
            provider,
            version,
            capabilities,
            healed: _,
        } => {
            let Ok(id) = ConnectorId::parse(connector) else {
                tracing::warn!(tenant = %tenant, session = %event.session,
                    "a ConnectorRegistered event names an invalid connector id; skipped");
                return;
            };
            let key = (tenant.clone(), event.env.clone(), id.clone());
            let recorded = found.get(&key).map_or(ConnectorState::Live, |c| c.recorded);
            // The cursor starts at the first registration and is kept by later ones.
            let acked = found.get(&key).map_or(event.tenant_seq, |c| c.acked);
            found.insert(
                key,
                Connector {
                    id,
                    env: event.env.clone(),
                    team: event.team.clone(),
                    channel: event.channel.clone(),
                    provider: provider.clone(),
                    version: version.clone(),
                    capabilities: capabilities.clone(),
                    recorded,
                    last_beat: Instant::now(),
                    acked,
                    delivered: acked,
                    skipped: 0,
                },
            );
        }
        EventKind::ConnectorStateChanged { connector, to, .. } => {
            let (Ok(id), Some(to)) = (ConnectorId::parse(connector), ConnectorState::parse(to))
            else {
                return;
            };
            if let Some(c) = found.get_mut(&(tenant.clone(), event.env.clone(), id)) {
                c.recorded = to;
            }
        }
        EventKind::OutboxAcked { connector, up_to }
        | EventKind::OutboxDeadLettered {
            connector, up_to, ..
        } => {
            let Ok(id) = ConnectorId::parse(connector) else {
                return;
            };
            if let Some(c) = found.get_mut(&(tenant.clone(), event.env.clone(), id)) {
                c.acked = c.acked.max(*up_to);
                c.delivered = c.acked;
            }
        }
        _ => {}
    }
}
