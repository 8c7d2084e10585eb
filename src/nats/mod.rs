//! The NATS edge (DESIGN §6): ingress on `{prefix}.ingress.{env}.{tenant}.{team}.{channel}`,
//! acks on the reply subject after the durable append, replies published on the matching egress
//! subject.
//!
//! Invariants:
//! - a subject is parsed into validated ids before anything else; a malformed subject or payload
//!   is counted, logged with whatever is known of its tenant, answered with an error when it has
//!   a reply subject, and never reaches any tenant;
//! - a message for a tenant this instance does not serve is ignored without a reply (another
//!   instance may serve it: hybrid deployments share one NATS);
//! - an ack (`{"session","seq"}`) is sent only after the message's events are durable; a retry
//!   with the same `message_id` or `Nats-Msg-Id` appends nothing and gets the first ack;
//! - a message for a served tenant is charged to that tenant's quota (the one HTTP charges too)
//!   before its payload is parsed; over quota it is refused with `quota_exceeded` (replied when
//!   it has a reply subject, counted per tenant) and never reaches the runtime, whose in-flight
//!   budget is shared out per tenant as well;
//! - a subject's messages are handed to the runtime in arrival order; at most `IN_FLIGHT_MAX`
//!   await their ack at once, so a burst cannot grow memory without bound.

mod connect;
pub mod subject;

pub use self::connect::connect;

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Semaphore};

use crate::actors::messages::{Ack, Inbound, RuntimeError};
use crate::actors::runtime::{Egress, EgressSink, Runtime};
use crate::edge::quota::Quotas;
use crate::tenancy::{SessionId, TenantCtx, TenantId};

/// Largest ingress payload, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// Messages the client buffers for our subscription before it reports a slow consumer and drops.
pub const SUBSCRIPTION_CAPACITY: usize = 16 * 1024;
/// Ingress messages awaiting their ack at once.
pub const IN_FLIGHT_MAX: usize = 4096;
/// Replies queued for publishing.
pub const EGRESS_QUEUE: usize = 16 * 1024;

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
    /// Whether the client is connected (set by its connection events), for `/readyz`.
    connected: NatsConnection,
}

/// Whether the NATS client is connected right now. Cheap to clone; false until the first
/// `Connected` event.
#[derive(Clone, Debug, Default)]
pub struct NatsConnection(Arc<std::sync::atomic::AtomicBool>);

impl NatsConnection {
    pub fn is_connected(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn set(&self, connected: bool) {
        self.0.store(connected, std::sync::atomic::Ordering::SeqCst);
    }
}

impl NatsMetrics {
    /// The client's connection state, as its events report it.
    pub fn connection(&self) -> NatsConnection {
        self.connected.clone()
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
        self.refused
            .get_or_create(&TenantCodeLabel {
                tenant: tenant.to_string(),
                code,
            })
            .inc();
    }

    /// How often `event` happened.
    pub fn get(&self, event: NatsEvent) -> u64 {
        self.events
            .get_or_create(&EventLabel {
                event: event.label(),
            })
            .get()
    }

    /// Adds the NATS series to a registry (the HTTP edge's `/metrics`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
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

/// The NATS edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The URL (user info hidden) and why.
    #[error("cannot connect to NATS at {url}: {detail}")]
    Connect { url: String, detail: String },
    /// A credential named in `[nats]` could not be read; `field` names the key, `detail` the
    /// fix. Never carries the secret.
    #[error("{field}: {detail}")]
    Credentials { field: &'static str, detail: String },
    #[error("cannot subscribe to {subject}: {detail}")]
    Subscribe { subject: String, detail: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IngressPayload {
    session: Option<String>,
    user: String,
    text: String,
    message_id: Option<String>,
}

#[derive(Serialize)]
struct AckBody<'a> {
    session: &'a str,
    seq: u64,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct EgressBody<'a> {
    session: &'a str,
    text: &'a str,
    in_reply_to: Option<&'a str>,
}

/// A queue for the runtime's replies and the receiving end for [`publish_egress`].
pub fn egress_channel() -> (EgressSink, mpsc::Receiver<Egress>) {
    mpsc::channel(EGRESS_QUEUE)
}

/// Everything ingress needs.
pub struct Ingress {
    pub client: async_nats::Client,
    pub prefix: String,
    pub runtime: Runtime,
    /// Tenants this instance serves; messages for others are ignored.
    pub served: HashSet<TenantId>,
    /// In dedicated mode, the one tenant (subscription is narrowed to it).
    pub dedicated: Option<TenantId>,
    /// The tenants' quotas, shared with the HTTP edge.
    pub quotas: Arc<Quotas>,
    pub metrics: Arc<NatsMetrics>,
}

impl Ingress {
    /// Subscribes and handles messages until `stop` turns true; then waits for in-flight acks.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<(), NatsError> {
        let filter = subject::ingress_filter(&self.prefix, self.dedicated.as_ref());
        let mut sub =
            self.client
                .subscribe(filter.clone())
                .await
                .map_err(|e| NatsError::Subscribe {
                    subject: filter.clone(),
                    detail: e.to_string(),
                })?;
        // The subscription counts as made once the server has it: a flush round-trips.
        if let Err(e) = self.client.flush().await {
            tracing::warn!(error = %e, "NATS flush after subscribing failed; the client retries");
        }
        tracing::info!(subject = %filter, "NATS ingress subscribed");
        let permits = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
        let this = Arc::new(self);
        loop {
            let msg = tokio::select! {
                msg = sub.next() => match msg { Some(m) => m, None => break },
                _ = stop.changed() => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            if let Some(pending) = this.accept(&msg) {
                let this = this.clone();
                actix_rt::spawn(async move {
                    let result = pending.await;
                    this.answer(msg.reply.as_ref(), result).await;
                    drop(permit);
                });
            }
        }
        let _ = sub.unsubscribe().await;
        // Wait for every accepted message's ack to be sent.
        let _all = permits
            .acquire_many(u32::try_from(IN_FLIGHT_MAX).unwrap_or(u32::MAX))
            .await;
        Ok(())
    }

    /// Validates one message and hands it to the runtime; `None` when it was answered or
    /// ignored here.
    fn accept(
        &self,
        msg: &async_nats::Message,
    ) -> Option<impl std::future::Future<Output = Result<Ack, RuntimeError>> + Send + 'static> {
        let m = &self.metrics;
        m.count(NatsEvent::Received);
        let address = match subject::parse_ingress(&self.prefix, &msg.subject) {
            Ok(a) => a,
            Err(e) => {
                m.count(NatsEvent::RejectedSubject);
                let tenant = subject::tenant_token(&self.prefix, &msg.subject).unwrap_or("?");
                tracing::warn!(tenant = %tenant.escape_debug(), error = %e, "malformed NATS ingress subject rejected");
                self.reject_later(msg, "invalid_subject", e.to_string());
                return None;
            }
        };
        if !self.served.contains(&address.tenant) {
            m.count(NatsEvent::NotServed);
            tracing::debug!(tenant = %address.tenant, "NATS message for a tenant not served here ignored");
            return None;
        }
        if let Err(over) = self.quotas.check(&address.tenant) {
            m.count(NatsEvent::QuotaExceeded);
            m.count_refused(&address.tenant, "quota_exceeded");
            // Counted, not logged at info: a flood must not become a flood of log lines.
            tracing::debug!(tenant = %address.tenant, "NATS message over the tenant's quota refused");
            self.reject_later(msg, "quota_exceeded", over.to_string());
            return None;
        }
        let inbound = match parse_payload(msg) {
            Ok(i) => i,
            Err(problem) => {
                m.count(NatsEvent::RejectedPayload);
                tracing::warn!(tenant = %address.tenant, env = %address.env, team = %address.team,
                    channel = %address.channel, error = %problem, "malformed NATS ingress payload rejected");
                self.reject_later(msg, "invalid_payload", problem);
                return None;
            }
        };
        let ctx = TenantCtx::new(address.tenant, address.env, Some(address.team));
        match self.runtime.submit(&ctx, &address.channel, inbound) {
            Ok(pending) => Some(pending),
            Err(e) => {
                m.count(NatsEvent::RuntimeError);
                m.count_refused(&ctx.tenant, e.code());
                if matches!(e, RuntimeError::Overloaded) {
                    // Counted, not logged at info: overload must not flood the log too.
                    tracing::debug!(tenant = %ctx.tenant, code = e.code(), "NATS message refused");
                } else {
                    tracing::info!(tenant = %ctx.tenant, code = e.code(), "NATS message refused");
                }
                self.reply_later(msg, runtime_error_body(&e));
                None
            }
        }
    }

    fn reject_later(&self, msg: &async_nats::Message, code: &'static str, message: String) {
        self.reply_later(msg, error_body(code, &message));
    }

    /// Publishes `body` on the message's reply subject, if it has one, without waiting.
    fn reply_later(&self, msg: &async_nats::Message, body: Vec<u8>) {
        if let Some(reply) = msg.reply.clone() {
            let client = self.client.clone();
            actix_rt::spawn(async move {
                let _ = client.publish(reply, body.into()).await;
            });
        }
    }

    async fn answer(&self, reply: Option<&async_nats::Subject>, result: Result<Ack, RuntimeError>) {
        let body = match &result {
            Ok(ack) => {
                self.metrics.count(NatsEvent::Acked);
                serde_json::to_vec(&AckBody {
                    session: ack.session.as_str(),
                    seq: ack.seq,
                })
            }
            Err(e) => {
                self.metrics.count(NatsEvent::RuntimeError);
                if e.is_internal() {
                    // The reply carries no detail: the log gets it, once, here.
                    tracing::error!(code = e.code(), error = %e, "NATS message failed");
                }
                Ok(runtime_error_body(e))
            }
        };
        if let (Some(reply), Ok(body)) = (reply, body) {
            if let Err(e) = self.client.publish(reply.clone(), body.into()).await {
                tracing::warn!(error = %e, "NATS ack could not be sent");
            }
        }
    }
}

/// The reply body `{"error":{"code","message"}}`.
fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code, message },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"internal error"}}"#.to_vec())
}

/// The reply body for a runtime error: the code and client-safe message HTTP shows too
/// ([`RuntimeError::public`]), never our internals.
fn runtime_error_body(e: &RuntimeError) -> Vec<u8> {
    let (code, message) = e.public();
    error_body(code, &message)
}

/// The inbound message of a NATS payload; `Nats-Msg-Id` stands in for a missing `message_id`.
fn parse_payload(msg: &async_nats::Message) -> Result<Inbound, String> {
    let header_id = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned());
    parse_payload_bytes(&msg.payload, header_id)
}

/// [`parse_payload`] on the payload's bytes and the `Nats-Msg-Id` header (also the entry point
/// of `crate::fuzzing`).
pub(crate) fn parse_payload_bytes(
    payload: &[u8],
    header_id: Option<String>,
) -> Result<Inbound, String> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(format!(
            "payload of {} bytes exceeds {PAYLOAD_BYTES_MAX}",
            payload.len()
        ));
    }
    let p: IngressPayload = serde_json::from_slice(payload)
        .map_err(|e| format!("payload is not valid JSON of the expected shape: {e}"))?;
    let session = p
        .session
        .as_deref()
        .map(SessionId::parse)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok(Inbound {
        session,
        user: p.user,
        text: p.text,
        message_id: p.message_id.or(header_id),
    })
}

/// Publishes replies from the runtime on their egress subjects until the queue closes or `stop`
/// turns true (then what is queued is still published).
pub async fn publish_egress(
    client: async_nats::Client,
    prefix: String,
    mut replies: mpsc::Receiver<Egress>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<NatsMetrics>,
) {
    loop {
        let out = tokio::select! {
            out = replies.recv() => match out { Some(o) => o, None => break },
            _ = stop.changed() => {
                replies.close();
                continue;
            }
        };
        let subject = subject::egress(&prefix, &out.env, &out.tenant, &out.team, &out.channel);
        let body = EgressBody {
            session: out.session.as_str(),
            text: &out.text,
            in_reply_to: out.in_reply_to.as_deref(),
        };
        let published = match serde_json::to_vec(&body) {
            Ok(body) => client
                .publish(subject, body.into())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match published {
            Ok(()) => metrics.count(NatsEvent::EgressPublished),
            Err(e) => {
                tracing::warn!(tenant = %out.tenant, error = %e, "egress publish failed");
                metrics.count(NatsEvent::EgressFailed)
            }
        };
    }
    let _ = client.flush().await;
}

#[cfg(test)]
mod tests;
