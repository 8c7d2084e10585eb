//! NATS ingress: the subscription on `{prefix}.ingress.{env}.{tenant}.{team}.{channel}` and
//! what happens to each message (see the invariants in `edge::nats`): subject parsed, tenant
//! served, quota charged, payload parsed, handed to the runtime, acked after the durable
//! append or answered with an error.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};

use super::error::NatsError;
use super::metrics::{NatsEvent, NatsMetrics};
use super::subject;
use crate::actors::messages::{Ack, Inbound, RuntimeError};
use crate::actors::runtime::Runtime;
use crate::edge::quota::Quotas;
use crate::tenancy::{SessionId, TenantCtx, TenantId};

/// Largest ingress payload, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// Ingress messages awaiting their ack at once.
pub const IN_FLIGHT_MAX: usize = 4096;

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
        // The flush writes the subscription out; it does not wait for the server (async-nats'
        // flush is a socket flush, not a PING), so a request sent in the moment before the
        // server reads it is answered "no responders" (docs/nats.md: clients retry).
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
        // In a cluster every node receives every ingress message; only the tenant's owner
        // handles it (one path, so a subject's order holds), the others ignore it as not served.
        if !self.served.contains(&address.tenant) || !self.runtime.handles_here(&address.tenant) {
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

#[cfg(test)]
mod tests;
