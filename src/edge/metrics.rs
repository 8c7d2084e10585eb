//! The edge's Prometheus metrics, rendered by `GET /metrics` on the metrics listener
//! (`server.metrics_listen`, never the API port; OpenMetrics text via prometheus-client).
//!
//! Series (counters get the `_total` suffix from the encoder):
//! `tenantry_messages_total{tenant,env}`, `tenantry_replies_total{tenant,env}`,
//! `tenantry_errors_total{tenant,code}`, `tenantry_rejected_requests_total{tenant,status}`,
//! `tenantry_ack_latency_seconds{tenant}` (histogram), `tenantry_active_sessions` (gauge),
//! `tenantry_log_lines_left_out_total` (refused requests' log lines over the budget).
//!
//! Invariants: label values come from a bounded set, so no client can grow the registry: a
//! `tenant` label is a tenant this instance serves (else `unknown`), `env` an env a message was
//! accepted in, `code` one of `ApiError`'s codes, `status` an HTTP status.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::actors::runtime::RuntimeMetrics;
use crate::tenancy::{EnvId, TenantId};

/// The `tenant` label of a request whose tenant is not (yet) known to be valid and served.
pub const UNKNOWN_TENANT: &str = "unknown";

/// Content type of [`EdgeMetrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

fn ack_latency_histogram() -> Histogram {
    // 0.5 ms .. ~4 s: a durable append is ~1 ms; seconds mean a queue is backed up.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The edge's metric families and their registry.
pub struct EdgeMetrics {
    registry: Registry,
    messages: Family<TenantEnv, Counter>,
    replies: Family<TenantEnv, Counter>,
    errors: Family<TenantCode, Counter>,
    rejected: Family<TenantStatus, Counter>,
    ack_latency: Family<TenantLabel, Histogram, fn() -> Histogram>,
    active_sessions: Gauge,
    inflight: Gauge,
    log_lines_left_out: Counter,
}

impl Default for EdgeMetrics {
    fn default() -> EdgeMetrics {
        EdgeMetrics::new()
    }
}

impl EdgeMetrics {
    /// Registers every family, empty.
    pub fn new() -> EdgeMetrics {
        let mut registry = Registry::default();
        let messages = Family::<TenantEnv, Counter>::default();
        let replies = Family::<TenantEnv, Counter>::default();
        let errors = Family::<TenantCode, Counter>::default();
        let rejected = Family::<TenantStatus, Counter>::default();
        let ack_latency = Family::<TenantLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            ack_latency_histogram,
        );
        let active_sessions = Gauge::default();
        let inflight = Gauge::default();
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
        registry.register(
            "tenantry_active_sessions",
            "Session actors currently running",
            active_sessions.clone(),
        );
        registry.register(
            "tenantry_inflight_messages",
            "Messages accepted and not yet answered, over all tenants (capped by runtime.inflight_max)",
            inflight.clone(),
        );
        EdgeMetrics {
            registry,
            messages,
            replies,
            errors,
            rejected,
            ack_latency,
            active_sessions,
            inflight,
            log_lines_left_out,
        }
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
    /// `tenant` must be a served tenant or [`UNKNOWN_TENANT`].
    pub fn error(&self, tenant: &str, code: &'static str, status: u16, rejection: bool) {
        self.errors
            .get_or_create(&TenantCode {
                tenant: tenant.to_owned(),
                code: code.to_owned(),
            })
            .inc();
        if rejection {
            self.rejected
                .get_or_create(&TenantStatus {
                    tenant: tenant.to_owned(),
                    status: status.to_string(),
                })
                .inc();
        }
    }

    /// Counts a refused request's log line that the log budget left out.
    pub fn log_line_left_out(&self) {
        self.log_lines_left_out.inc();
    }

    /// Adds the NATS edge's series to this registry.
    pub fn register_nats(&mut self, nats: &crate::nats::NatsMetrics) {
        nats.register(&mut self.registry);
    }

    /// The exposition text, with the runtime's gauges read from `runtime`.
    pub fn render(&self, runtime: &RuntimeMetrics) -> Result<String, std::fmt::Error> {
        let active = runtime.active_sessions.load(Ordering::Relaxed);
        self.active_sessions
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        let inflight = runtime.inflight.load(Ordering::Relaxed);
        self.inflight
            .set(i64::try_from(inflight).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
