//! The HTTP edge's metric families, registered into the edges' one
//! [`MetricsRegistry`].
//!
//! Series (counters get the `_total` suffix from the encoder):
//! `tenantry_messages_total{tenant,env}`, `tenantry_replies_total{tenant,env}`,
//! `tenantry_errors_total{tenant,code}`, `tenantry_rejected_requests_total{tenant,status}`,
//! `tenantry_ack_latency_seconds{tenant}` (histogram), `tenantry_log_lines_left_out_total`
//! (refused requests' log lines over the budget).
//!
//! Invariants: label values come from a bounded set, so no client can grow the registry: a
//! `tenant` label is a tenant this instance serves (else `unknown`), `env` an env a message was
//! accepted in, `code` one of `ApiError`'s codes, `status` an HTTP status.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::edge::metrics::MetricsRegistry;
use crate::tenancy::{EnvId, TenantId};

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

/// The HTTP edge's metric families.
pub struct HttpMetrics {
    messages: Family<TenantEnv, Counter>,
    replies: Family<TenantEnv, Counter>,
    errors: Family<TenantCode, Counter>,
    rejected: Family<TenantStatus, Counter>,
    ack_latency: Family<TenantLabel, Histogram, fn() -> Histogram>,
    log_lines_left_out: Counter,
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
        HttpMetrics {
            messages,
            replies,
            errors,
            rejected,
            ack_latency,
            log_lines_left_out,
            error_labels: Mutex::default(),
        }
    }

    /// Removes every series of `tenant` (its messages and replies in `envs`, its ack latency,
    /// its errors and rejections), for offboarding; returns how many were removed. Its
    /// counters start again from zero if the tenant is served again.
    pub fn forget_tenant<'a>(
        &self,
        tenant: &TenantId,
        envs: impl IntoIterator<Item = &'a EnvId>,
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
        assert_eq!(metrics.forget_tenant(&acme, [&prod]), 6);
        assert_eq!(metrics.forget_tenant(&acme, [&prod]), 0);
        let text = registry.render(&RuntimeMetrics::default()).unwrap();
        assert!(!text.contains(r#"tenant="acme""#), "{text}");
        assert!(text.matches(r#"tenant="zeta""#).count() >= 6, "{text}");
    }
}
