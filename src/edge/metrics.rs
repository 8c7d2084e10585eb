//! The one metrics registry of the edges, rendered by `GET /metrics` on the metrics listener
//! (`server.metrics_listen`, never the API port; OpenMetrics text via prometheus-client).
//!
//! Each edge registers its own families into it: the HTTP edge's in `http::metrics`, the NATS
//! edge's in `nats::metrics`; neither edge imports the other. The runtime's gauges
//! (`tenantry_active_sessions`, `tenantry_inflight_messages`, `tenantry_waiting_messages`) are
//! registered here and read from the runtime when the page is rendered, and the event log's
//! timings (`tenantry_log_*`) beside them.
//!
//! Invariant: label values come from bounded sets (see each edge's families), so no client can
//! grow the registry.

use std::sync::atomic::Ordering;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::actors::runtime::RuntimeMetrics;
use crate::events::log::LogMetrics;

/// The `tenant` label of a request whose tenant is not (yet) known to be valid and served.
pub const UNKNOWN_TENANT: &str = "unknown";

/// Content type of [`MetricsRegistry::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The families of every edge and the runtime's gauges.
pub struct MetricsRegistry {
    registry: Registry,
    active_sessions: Gauge,
    inflight: Gauge,
    waiting: Gauge,
}

impl Default for MetricsRegistry {
    fn default() -> MetricsRegistry {
        MetricsRegistry::new()
    }
}

impl MetricsRegistry {
    /// A registry holding the runtime's gauges only; the edges register their families next.
    pub fn new() -> MetricsRegistry {
        let mut registry = Registry::default();
        let active_sessions = Gauge::default();
        let inflight = Gauge::default();
        let waiting = Gauge::default();
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
        registry.register(
            "tenantry_waiting_messages",
            "Of the messages in flight, those waiting in their tenant's lane for a running place (runtime.running_max shared by the busy tenants)",
            waiting.clone(),
        );
        MetricsRegistry {
            registry,
            active_sessions,
            inflight,
            waiting,
        }
    }

    /// Adds the event log's timings (`events::log::LogMetrics`): `tenantry_log_append_seconds`,
    /// `tenantry_log_queue_seconds`, `tenantry_log_batch_seconds`,
    /// `tenantry_log_sled_writes_total`, `tenantry_log_commit_seconds` and
    /// `tenantry_log_commit_groups`.
    pub fn register_log(&mut self, log: &LogMetrics) {
        let log = log.clone();
        self.register(
            "tenantry_log_append_seconds",
            "Time of an append group in the event log: from its arrival to its durable answer",
            log.append_seconds,
        );
        self.register(
            "tenantry_log_commit_seconds",
            "Time of one commit of the event log (flush and fdatasync, or the stream's quorum acks)",
            log.commit_seconds,
        );
        self.register(
            "tenantry_log_commit_groups",
            "Append groups made durable by one commit of the event log (group commit)",
            log.commit_groups,
        );
        self.register(
            "tenantry_log_queue_seconds",
            "Time an append group waited in the event log's queue before the stager took it",
            log.queue_seconds,
        );
        self.register(
            "tenantry_log_batch_seconds",
            "Time the event log's stager spent on one batch (staging its groups, applying them)",
            log.batch_seconds,
        );
        self.register(
            "tenantry_log_sled_writes",
            "sled writes (puts and removals) the event log's stager staged for its batches",
            log.sled_writes,
        );
    }

    /// Adds one family (or a single metric) under `name`; counters get `_total` when rendered.
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// The exposition text, with the runtime's gauges read from `runtime`.
    pub fn render(&self, runtime: &RuntimeMetrics) -> Result<String, std::fmt::Error> {
        let active = runtime.active_sessions.load(Ordering::Relaxed);
        self.active_sessions.set(saturating(active));
        self.inflight
            .set(saturating(runtime.inflight.load(Ordering::Relaxed)));
        self.waiting
            .set(saturating(runtime.waiting.load(Ordering::Relaxed)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A count as a gauge's value (`i64::MAX` past it).
fn saturating(count: impl TryInto<i64>) -> i64 {
    count.try_into().unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_gauges_are_read_at_each_render() {
        let registry = MetricsRegistry::new();
        let runtime = RuntimeMetrics::default();
        runtime.inflight.store(9, Ordering::Relaxed);
        runtime.waiting.store(7, Ordering::Relaxed);
        runtime.active_sessions.store(3, Ordering::Relaxed);
        let text = registry.render(&runtime).unwrap();
        for line in [
            "tenantry_inflight_messages 9\n",
            "tenantry_waiting_messages 7\n",
            "tenantry_active_sessions 3\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        runtime.waiting.store(0, Ordering::Relaxed);
        let text = registry.render(&runtime).unwrap();
        assert!(text.contains("tenantry_waiting_messages 0\n"), "{text}");
    }
}
