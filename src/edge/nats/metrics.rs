//! The NATS edge's counters, registered into the edges' one
//! [`MetricsRegistry`], and its connection state (for
//! `/readyz`), handed to the HTTP edge through [`PeerEdge`].

use crate::edge::metrics::MetricsRegistry;
use crate::edge::peer::{ForgetTenant, Link, PeerEdge};
use crate::tenancy::TenantId;

/// What happened to NATS traffic; the `event` label of `tenantry_nats_events_total`.
#[derive(Clone, Copy, Debug)]
pub enum NatsEvent {
    Received,
    Acked,
    RejectedSubject,
    RejectedPayload,
    QuotaExceeded,
    RuntimeError,
    NotServed,
    SlowConsumer,
    EgressPublished,
    EgressFailed,
}

impl NatsEvent {
    fn label(self) -> &'static str {
        match self {
            NatsEvent::Received => "received",
            NatsEvent::Acked => "acked",
            NatsEvent::RejectedSubject => "rejected_subject",
            NatsEvent::RejectedPayload => "rejected_payload",
            NatsEvent::QuotaExceeded => "quota_exceeded",
            NatsEvent::RuntimeError => "runtime_error",
            NatsEvent::NotServed => "not_served",
            NatsEvent::SlowConsumer => "slow_consumer",
            NatsEvent::EgressPublished => "egress_published",
            NatsEvent::EgressFailed => "egress_failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TenantCodeLabel {
    tenant: String,
    code: &'static str,
}

type CounterFamily<L> =
    prometheus_client::metrics::family::Family<L, prometheus_client::metrics::counter::Counter>;

/// Counters of the NATS edge, exported on `/metrics` as `tenantry_nats_events_total{event}` and
/// `tenantry_nats_refused_total{tenant,code}` (only served tenants get a label, so the series
/// are bounded by the config).
#[derive(Debug, Default)]
pub struct NatsMetrics {
    events: CounterFamily<EventLabel>,
    refused: CounterFamily<TenantCodeLabel>,
    /// The label sets of `refused` created so far (a family cannot list them), so that a
    /// deleted tenant's series can be removed; bounded like the family.
    refused_labels: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<TenantCodeLabel>>>,
    /// Whether the client is connected (set by its connection events), for `/readyz`.
    connected: Link,
}

impl NatsMetrics {
    /// Records a connection change reported by the client.
    pub(super) fn set_connected(&self, connected: bool) {
        self.connected.set(connected);
    }

    pub fn count(&self, event: NatsEvent) {
        self.events
            .get_or_create(&EventLabel {
                event: event.label(),
            })
            .inc();
    }

    /// Counts a message of served `tenant` refused with `code` (quota, runtime refusals).
    pub fn count_refused(&self, tenant: &TenantId, code: &'static str) {
        let label = TenantCodeLabel {
            tenant: tenant.to_string(),
            code,
        };
        self.refused.get_or_create(&label).inc();
        self.refused_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(label);
    }

    /// How often `event` happened.
    pub fn get(&self, event: NatsEvent) -> u64 {
        self.events
            .get_or_create(&EventLabel {
                event: event.label(),
            })
            .get()
    }

    /// Adds the NATS series to the edges' registry (rendered on `/metrics`).
    pub fn register(&self, registry: &mut MetricsRegistry) {
        registry.register(
            "tenantry_nats_events",
            "NATS edge traffic by what happened to it",
            self.events.clone(),
        );
        registry.register(
            "tenantry_nats_refused",
            "NATS ingress messages of a served tenant refused, by tenant and error code",
            self.refused.clone(),
        );
    }
}

impl PeerEdge for NatsMetrics {
    const NAME: &'static str = "nats";

    fn register(&self, registry: &mut MetricsRegistry) {
        NatsMetrics::register(self, registry);
    }

    fn link(&self) -> Link {
        self.connected.clone()
    }

    fn forget_tenant(&self) -> ForgetTenant {
        let (refused, labels) = (self.refused.clone(), self.refused_labels.clone());
        std::sync::Arc::new(move |tenant: &TenantId| {
            let mut labels = labels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut removed = 0;
            labels.retain(|label| {
                if label.tenant != tenant.as_str() {
                    return true;
                }
                removed += u64::from(refused.remove(label));
                false
            });
            removed
        })
    }
}

#[cfg(test)]
mod tests;
