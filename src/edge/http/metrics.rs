//! The HTTP edge's metric families, registered into the edges' one
//! [`MetricsRegistry`].
//!
//! Series (counters get the `_total` suffix from the encoder):
//! `tenantry_messages_total{tenant,env}`, `tenantry_replies_total{tenant,env}`,
//! `tenantry_errors_total{tenant,code}`, `tenantry_rejected_requests_total{tenant,status}`,
//! `tenantry_ack_latency_seconds{tenant}` (histogram), `tenantry_log_lines_left_out_total`
//! (refused requests' log lines over the budget); the connector registry's
//! `tenantry_connector_heartbeats_total{tenant,env,connector}` and, computed at each scrape from
//! the registry, `tenantry_connectors{tenant,env,state}` and
//! `tenantry_connector_heartbeat_age_seconds{tenant,env,connector}`; the outboxes'
//! `tenantry_outbox_served_total{tenant,env,connector}` (replies handed out by outbox reads,
//! again when read again), `tenantry_outbox_acks_total{tenant,env,connector}` (acks that moved
//! the cursor), `tenantry_outbox_dead_lettered_total{tenant,env,connector}` (replies given up)
//! and, at each scrape, `tenantry_outbox_lag_events{tenant,env,connector}` (events of the
//! tenant's log past the connector's cursor: an upper bound of its pending replies); webhook
//! channels' `tenantry_webhook_deliveries_total` and `tenantry_webhook_failures_total`
//! (labelled by their internal connector id).
//!
//! Invariants: label values come from a bounded set, so no client can grow the registry: a
//! `tenant` label is a tenant this instance serves (else `unknown`), `env` an env a message was
//! accepted in, `code` one of `ApiError`'s codes, `status` an HTTP status, `connector` a
//! connector the registry holds (registered or healed with a token of the server's key).

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::connectors::Registry;
use crate::edge::metrics::MetricsRegistry;
use crate::tenancy::{ConnectorId, EnvId, TenantId};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantEnv {
    tenant: String,
    env: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantCode {
    tenant: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantStatus {
    tenant: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    tenant: String,
    env: String,
    connector: String,
}

impl ConnectorLabels {
    fn new(tenant: &TenantId, env: &EnvId, connector: &ConnectorId) -> ConnectorLabels {
        ConnectorLabels {
            tenant: tenant.to_string(),
            env: env.to_string(),
            connector: connector.to_string(),
        }
    }
}

/// The outboxes' families.
struct OutboxFamilies {
    served: Family<ConnectorLabels, Counter>,
    acks: Family<ConnectorLabels, Counter>,
    dead_lettered: Family<ConnectorLabels, Counter>,
    lag: Family<ConnectorLabels, Gauge>,
    webhook_delivered: Family<ConnectorLabels, Counter>,
    webhook_failed: Family<ConnectorLabels, Counter>,
}

impl OutboxFamilies {
    fn new(registry: &mut MetricsRegistry) -> OutboxFamilies {
        let families = OutboxFamilies {
            served: Family::default(),
            acks: Family::default(),
            dead_lettered: Family::default(),
            lag: Family::default(),
            webhook_delivered: Family::default(),
            webhook_failed: Family::default(),
        };
        registry.register(
            "tenantry_webhook_deliveries",
            "Replies a webhook channel's receiver accepted (2xx)",
            families.webhook_delivered.clone(),
        );
        registry.register(
            "tenantry_webhook_failures",
            "Failed webhook requests (not 2xx, no answer, no secret); each is retried",
            families.webhook_failed.clone(),
        );
        registry.register(
            "tenantry_outbox_served",
            "Replies handed out by reads of a connector's outbox (again when read again)",
            families.served.clone(),
        );
        registry.register(
            "tenantry_outbox_acks",
            "Acks that moved a connector's outbox cursor",
            families.acks.clone(),
        );
        registry.register(
            "tenantry_outbox_dead_lettered",
            "Replies of a connector's outbox older than connectors.outbox_ttl, given up",
            families.dead_lettered.clone(),
        );
        registry.register(
            "tenantry_outbox_lag_events",
            "Events of the tenant's log past a connector's outbox cursor, at the scrape",
            families.lag.clone(),
        );
        families
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    tenant: String,
    env: String,
    state: String,
}

fn ack_latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s: a durable append is ~1 ms; seconds mean a queue is backed up.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The HTTP edge's metric families.
pub struct HttpMetrics {
    messages: Family<TenantEnv, Counter>,
    replies: Family<TenantEnv, Counter>,
    errors: Family<TenantCode, Counter>,
    rejected: Family<TenantStatus, Counter>,
    ack_latency: Family<TenantLabel, Histogram, fn() -> Histogram>,
    log_lines_left_out: Counter,
    heartbeats: Family<ConnectorLabels, Counter>,
    connectors: Family<StateLabels, Gauge>,
    heartbeat_age: Family<ConnectorLabels, Gauge<f64, AtomicU64>>,
    outbox: OutboxFamilies,
    /// The label sets of `errors` and `rejected` created so far (prometheus-client cannot list
    /// a family's label sets), so that a deleted tenant's series can be removed. Bounded like
    /// the families: served tenants × codes / statuses.
    error_labels: Mutex<HashSet<(TenantCode, Option<TenantStatus>)>>,
}

impl HttpMetrics {
    /// Every family, empty, registered into `registry`.
    pub fn new(registry: &mut MetricsRegistry) -> HttpMetrics {
        let messages = Family::<TenantEnv, Counter>::default();
        let replies = Family::<TenantEnv, Counter>::default();
        let errors = Family::<TenantCode, Counter>::default();
        let rejected = Family::<TenantStatus, Counter>::default();
        let ack_latency = Family::<TenantLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            ack_latency_histogram,
        );
        let log_lines_left_out = Counter::default();
        registry.register(
            "tenantry_log_lines_left_out",
            "Log lines about refused HTTP requests not written (over the per-second budget)",
            log_lines_left_out.clone(),
        );
        registry.register(
            "tenantry_messages",
            "Inbound messages accepted and durably appended",
            messages.clone(),
        );
        registry.register(
            "tenantry_replies",
            "Bot replies sent in answer to accepted messages",
            replies.clone(),
        );
        registry.register(
            "tenantry_errors",
            "HTTP requests answered with an error, by error code",
            errors.clone(),
        );
        registry.register(
            "tenantry_rejected_requests",
            "HTTP requests refused at the edge (auth, quota, size limits), by status",
            rejected.clone(),
        );
        registry.register(
            "tenantry_ack_latency_seconds",
            "Time from receiving a message to its durable ack",
            ack_latency.clone(),
        );
        let heartbeats = Family::<ConnectorLabels, Counter>::default();
        let connectors = Family::<StateLabels, Gauge>::default();
        let heartbeat_age = Family::<ConnectorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "tenantry_connector_heartbeats",
            "Heartbeats received from a connector",
            heartbeats.clone(),
        );
        registry.register(
            "tenantry_connectors",
            "Registered connectors by state (live, stale, dead), at the scrape",
            connectors.clone(),
        );
        registry.register(
            "tenantry_connector_heartbeat_age_seconds",
            "Time since a connector's last heartbeat or registration, at the scrape",
            heartbeat_age.clone(),
        );
        let outbox = OutboxFamilies::new(registry);
        HttpMetrics {
            outbox,
            messages,
            replies,
            errors,
            rejected,
            ack_latency,
            log_lines_left_out,
            heartbeats,
            connectors,
            heartbeat_age,
            error_labels: Mutex::default(),
        }
    }

    /// Counts a heartbeat of `connector`.
    pub fn heartbeat(&self, tenant: &TenantId, env: &EnvId, connector: &ConnectorId) {
        self.heartbeats
            .get_or_create(&ConnectorLabels {
                tenant: tenant.to_string(),
                env: env.to_string(),
                connector: connector.to_string(),
            })
            .inc();
    }

    /// Counts `count` replies handed out by an outbox read of `connector`.
    pub fn outbox_served(
        &self,
        tenant: &TenantId,
        env: &EnvId,
        connector: &ConnectorId,
        count: u64,
    ) {
        let labels = ConnectorLabels::new(tenant, env, connector);
        self.outbox.served.get_or_create(&labels).inc_by(count);
    }

    /// Counts an ack that moved `connector`'s outbox cursor.
    pub fn outbox_acked(&self, tenant: &TenantId, env: &EnvId, connector: &ConnectorId) {
        let labels = ConnectorLabels::new(tenant, env, connector);
        self.outbox.acks.get_or_create(&labels).inc();
    }

    /// Counts `count` replies of `connector`'s outbox given up as dead letters.
    pub fn dead_lettered(
        &self,
        tenant: &TenantId,
        env: &EnvId,
        connector: &ConnectorId,
        count: u64,
    ) {
        let labels = ConnectorLabels::new(tenant, env, connector);
        self.outbox
            .dead_lettered
            .get_or_create(&labels)
            .inc_by(count);
    }

    /// Counts `count` replies of a webhook channel (its internal `connector`) delivered.
    pub fn webhook_delivered(
        &self,
        tenant: &TenantId,
        env: &EnvId,
        connector: &ConnectorId,
        count: u64,
    ) {
        let labels = ConnectorLabels::new(tenant, env, connector);
        self.outbox
            .webhook_delivered
            .get_or_create(&labels)
            .inc_by(count);
    }

    /// Counts a failed webhook request of a webhook channel (its internal `connector`).
    pub fn webhook_failed(&self, tenant: &TenantId, env: &EnvId, connector: &ConnectorId) {
        let labels = ConnectorLabels::new(tenant, env, connector);
        self.outbox.webhook_failed.get_or_create(&labels).inc();
    }

    /// Sets the registry's gauges to `registry`'s connectors now (before a scrape): by state,
    /// and each one's heartbeat age. Connectors gone since (a deleted tenant) lose their series.
    pub fn refresh_connectors(&self, registry: &Registry) {
        self.connectors.clear();
        self.heartbeat_age.clear();
        self.outbox.lag.clear();
        let interval = registry.interval();
        for (tenant, c) in registry.all() {
            let state = StateLabels {
                tenant: tenant.to_string(),
                env: c.env.to_string(),
                state: c.state(interval).as_str().to_owned(),
            };
            self.connectors.get_or_create(&state).inc();
            let labels = ConnectorLabels {
                tenant: tenant.to_string(),
                env: c.env.to_string(),
                connector: c.id.to_string(),
            };
            self.heartbeat_age
                .get_or_create(&labels)
                .set(c.heartbeat_age().as_secs_f64());
            let lag = registry.outbox_lag(&tenant, &c);
            self.outbox
                .lag
                .get_or_create(&labels)
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
    }

    /// Removes every series of `tenant` (its messages and replies in `envs`, its ack latency,
    /// its errors and rejections, the heartbeats of its `connectors`), for offboarding; returns how many were removed. Its
    /// counters start again from zero if the tenant is served again.
    pub fn forget_tenant<'a>(
        &self,
        tenant: &TenantId,
        envs: impl IntoIterator<Item = &'a EnvId>,
        connectors: &[(TenantId, crate::connectors::Connector)],
    ) -> u64 {
        let mut removed = 0u64;
        let mut count = |gone: bool| removed += u64::from(gone);
        for env in envs {
            let labels = TenantEnv {
                tenant: tenant.to_string(),
                env: env.to_string(),
            };
            count(self.messages.remove(&labels));
            count(self.replies.remove(&labels));
        }
        count(self.ack_latency.remove(&TenantLabel {
            tenant: tenant.to_string(),
        }));
        for (_, c) in connectors {
            let labels = ConnectorLabels::new(tenant, &c.env, &c.id);
            count(self.heartbeats.remove(&labels));
            for family in [
                &self.outbox.served,
                &self.outbox.acks,
                &self.outbox.dead_lettered,
                &self.outbox.webhook_delivered,
                &self.outbox.webhook_failed,
            ] {
                count(family.remove(&labels));
            }
        }
        let mut seen = self
            .error_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.retain(|(code, status)| {
            if code.tenant != tenant.as_str() {
                return true;
            }
            count(self.errors.remove(code));
            if let Some(status) = status {
                count(self.rejected.remove(status));
            }
            false
        });
        removed
    }

    /// Counts an accepted message, its replies and its ack latency.
    pub fn message_acked(&self, tenant: &TenantId, env: &EnvId, replies: usize, latency: Duration) {
        let labels = TenantEnv {
            tenant: tenant.to_string(),
            env: env.to_string(),
        };
        self.messages.get_or_create(&labels).inc();
        self.replies
            .get_or_create(&labels)
            .inc_by(u64::try_from(replies).unwrap_or(u64::MAX));
        self.ack_latency
            .get_or_create(&TenantLabel {
                tenant: tenant.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Counts an error response; `rejection` also counts it as refused at the edge.
    /// `tenant` must be a served tenant or [`UNKNOWN_TENANT`](crate::edge::metrics::UNKNOWN_TENANT).
    pub fn error(&self, tenant: &str, code: &'static str, status: u16, rejection: bool) {
        let code = TenantCode {
            tenant: tenant.to_owned(),
            code: code.to_owned(),
        };
        self.errors.get_or_create(&code).inc();
        let status = rejection.then(|| TenantStatus {
            tenant: tenant.to_owned(),
            status: status.to_string(),
        });
        if let Some(status) = &status {
            self.rejected.get_or_create(status).inc();
        }
        self.error_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert((code, status));
    }

    /// Counts a refused request's log line that the log budget left out.
    pub fn log_line_left_out(&self) {
        self.log_lines_left_out.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::runtime::RuntimeMetrics;

    #[test]
    fn a_forgotten_tenant_loses_every_series_and_no_other_tenant_does() {
        let mut registry = MetricsRegistry::new();
        let metrics = HttpMetrics::new(&mut registry);
        let (acme, zeta): (TenantId, TenantId) = ("acme".parse().unwrap(), "zeta".parse().unwrap());
        let prod: EnvId = "prod".parse().unwrap();
        for t in [&acme, &zeta] {
            metrics.message_acked(t, &prod, 1, Duration::from_millis(1));
            metrics.error(t.as_str(), "quota_exceeded", 429, true);
            metrics.error(t.as_str(), "session_not_found", 404, false);
        }
        // messages, replies, ack latency, two error codes, one rejection status.
        assert_eq!(metrics.forget_tenant(&acme, [&prod], &[]), 6);
        assert_eq!(metrics.forget_tenant(&acme, [&prod], &[]), 0);
        let text = registry.render(&RuntimeMetrics::default()).unwrap();
        assert!(!text.contains(r#"tenant="acme""#), "{text}");
        assert!(text.matches(r#"tenant="zeta""#).count() >= 6, "{text}");
    }
}
