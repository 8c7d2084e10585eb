//! NATS egress: the runtime's replies, published on
//! `{prefix}.egress.{env}.{tenant}.{team}.{channel}` in the order the runtime queued them.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::metrics::{NatsEvent, NatsMetrics};
use super::subject;
use crate::actors::runtime::{Egress, EgressSink};

/// Replies queued for publishing.
pub const EGRESS_QUEUE: usize = 16 * 1024;

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
