//! Forwarding a tenant's messages to the node that owns it, over NATS request/reply, so that any
//! node accepts HTTP and NATS for any tenant and clients need not know the owner.
//!
//! A node listens on [`subject`] `tenantry.cluster.{stream}.forward.{node}` ([`serve_forwarded`]);
//! another node's runtime, told `Route::Remote(node)` by its [`Placement`], sends the message
//! there with its [`Forwarder`] and answers its client with the owner's ack or error. The wire
//! format (JSON) is in docs/nats.md, "Cluster forwarding".
//!
//! Invariants:
//! - bad input is refused by the node that received it, before forwarding: the runtime checks
//!   the tenant's config first, so every node refuses it the same way;
//! - the forwarding node answers with the very error the owner gave (a [`RuntimeError`] crosses
//!   the wire whole, its ids validated when read back), so its edge gives the same status, code,
//!   message and `Retry-After` as the owner's would; a failure of ours crosses without detail
//!   (the owner logs it);
//! - per-session order holds: requests leave in the order the runtime's `submit` was called
//!   (one queue, one publisher, one connection), and the listener submits them to its runtime in
//!   arrival order before awaiting any ack;
//! - a listener handles only tenants its placement says are `Local`; any other request is
//!   answered "not owner" and nothing is appended; the sender re-asks its placement and tries
//!   once more;
//! - a request without an answer (no listener, timeout, not owner twice, no owner within
//!   [`OWNER_WAIT`]) is answered `Interrupted`: retry with the same `message_id`, which the
//!   owner's idempotency recognises if the message was appended.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

use super::placement::{Placement, Route};
use crate::actors::messages::{Ack, Inbound, RuntimeError, INTERNAL_ERROR_MESSAGE};
use crate::actors::runtime::Runtime;
use crate::config::cluster::CLUSTER_NODE_CHARS_MAX;
use crate::config::Config;
use crate::tenancy::{ChannelId, EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// How long a forwarding node waits for the owner's answer before answering `Interrupted`.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a message for a tenant no node owns (a failover in progress) waits for an owner.
pub const OWNER_WAIT: Duration = Duration::from_secs(10);
/// How often the placement is asked again while a tenant has no owner.
pub const OWNER_POLL: Duration = Duration::from_millis(100);
/// Forwarded requests waiting to be published; past this `submit` refuses with `Overloaded`.
pub const FORWARD_QUEUE: usize = 4096;
/// Forwarded requests a listener has submitted and not yet answered.
pub const LISTENER_IN_FLIGHT_MAX: usize = 4096;
/// How often the forwarder forgets requests whose caller stopped waiting (timed out).
const PENDING_SWEEP: Duration = Duration::from_secs(5);

/// The subject on which `node` receives the messages forwarded to it, in the cluster of `stream`.
pub fn subject(stream: &str, node: &str) -> String {
    format!("tenantry.cluster.{stream}.forward.{node}")
}

/// Why forwarding could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The subscription (the listener's, or the forwarder's reply inbox) was refused.
    #[error("cannot subscribe to {subject}: {detail}")]
    Subscribe { subject: String, detail: String },
    /// The static placement given is not `tenant=node,...`; `detail` names the pair and the fix.
    #[error("{detail}")]
    Placement { detail: String },
}

// ---- Wire format ---------------------------------------------------------------------------

/// A forwarded message: where it goes and what the client sent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardRequest {
    tenant: TenantId,
    env: EnvId,
    team: TeamId,
    channel: ChannelId,
    inbound: WireInbound,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireInbound {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<SessionId>,
    user: String,
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message_id: Option<String>,
}

/// The owner's answer: exactly one of `ack`, `error` (`{"code","message","fields"?}`),
/// `not_owner`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ForwardReply {
    Ack(WireAck),
    Error(serde_json::Value),
    NotOwner { tenant: TenantId, node: String },
}

/// [`Ack`] with every field (the stored form skips `duplicate`).
#[derive(Debug, Serialize, Deserialize)]
struct WireAck {
    session: SessionId,
    seq: u64,
    replies: Vec<String>,
    duplicate: bool,
    replies_omitted: bool,
}

impl ForwardRequest {
    fn new(ctx: &TenantCtx, channel: &ChannelId, inbound: &Inbound) -> ForwardRequest {
        ForwardRequest {
            tenant: ctx.tenant.clone(),
            env: ctx.env.clone(),
            team: ctx.team_or_default(),
            channel: channel.clone(),
            inbound: WireInbound {
                session: inbound.session.clone(),
                user: inbound.user.clone(),
                text: inbound.text.clone(),
                message_id: inbound.message_id.clone(),
            },
        }
    }

    fn into_parts(self) -> (TenantCtx, ChannelId, Inbound) {
        let ctx = TenantCtx::new(self.tenant, self.env, Some(self.team));
        let i = self.inbound;
        let inbound = Inbound {
            session: i.session,
            user: i.user,
            text: i.text,
            message_id: i.message_id,
        };
        (ctx, self.channel, inbound)
    }
}

impl From<&Ack> for WireAck {
    fn from(ack: &Ack) -> WireAck {
        WireAck {
            session: ack.session.clone(),
            seq: ack.seq,
            replies: ack.replies.clone(),
            duplicate: ack.duplicate,
            replies_omitted: ack.replies_omitted,
        }
    }
}

impl From<WireAck> for Ack {
    fn from(ack: WireAck) -> Ack {
        Ack {
            session: ack.session,
            seq: ack.seq,
            replies: ack.replies,
            duplicate: ack.duplicate,
            replies_omitted: ack.replies_omitted,
        }
    }
}

/// `{"code","message","fields"?}` of `e`: the variant whole, so that the forwarding node
/// answers exactly as this one would; a failure of ours without its detail.
fn encode_error(e: &RuntimeError) -> serde_json::Value {
    let (_, message) = e.public();
    let without_detail;
    let shown = if e.is_internal() {
        without_detail = RuntimeError::Storage(INTERNAL_ERROR_MESSAGE.to_owned());
        &without_detail
    } else {
        e
    };
    let mut value = serde_json::to_value(shown).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(map) = value.as_object_mut() {
        map.insert("message".into(), serde_json::Value::String(message));
    }
    value
}

/// The error of an `error` reply; one this node cannot read (a newer node's code) is a failure
/// of ours.
fn decode_error(mut value: serde_json::Value, node: &str) -> RuntimeError {
    if let Some(map) = value.as_object_mut() {
        map.remove("message");
    }
    serde_json::from_value(value).unwrap_or_else(|e| {
        RuntimeError::Storage(format!("unreadable error reply from node {node}: {e}"))
    })
}

fn encode_reply(reply: &ForwardReply) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_else(|_| {
        br#"{"error":{"code":"internal","fields":"internal error","message":"internal error"}}"#
            .to_vec()
    })
}

// ---- The sending side ----------------------------------------------------------------------

/// What became of one forwarded request.
enum Outcome {
    /// The owner's answer, or `Interrupted` when none came (no listener, timeout).
    Answered(Result<Ack, RuntimeError>),
    /// The node asked does not own the tenant (any more).
    NotOwner,
}

/// One request on its way to the publisher.
struct Outgoing {
    subject: String,
    payload: Vec<u8>,
    answer: oneshot::Sender<Received>,
}

/// What the reply inbox got for a request.
enum Received {
    Reply(ForwardReply),
    NoResponders,
    Unreadable(String),
    PublishFailed(String),
}

/// Sends messages to other nodes' listeners and hands back their answers. Cheap to clone; the
/// publishing task stops when the last clone is dropped.
#[derive(Clone)]
pub struct Forwarder {
    stream: String,
    queue: mpsc::Sender<Outgoing>,
}

impl Forwarder {
    /// Subscribes to a reply inbox of `client` and starts the task that publishes requests in
    /// order and routes the replies. Must be called inside a tokio runtime.
    pub async fn start(
        client: async_nats::Client,
        stream: &str,
    ) -> Result<Forwarder, ForwardError> {
        let inbox = client.new_inbox();
        let filter = format!("{inbox}.*");
        let replies =
            client
                .subscribe(filter.clone())
                .await
                .map_err(|e| ForwardError::Subscribe {
                    subject: filter,
                    detail: e.to_string(),
                })?;
        let (queue, requests) = mpsc::channel(FORWARD_QUEUE);
        tokio::spawn(publish_requests(client, inbox, replies, requests));
        Ok(Forwarder {
            stream: stream.to_owned(),
            queue,
        })
    }

    /// Forwards one message to `node` and waits for its answer (at most [`FORWARD_TIMEOUT`]);
    /// a node that does not own the tenant, or no answer, gives `Interrupted`.
    pub async fn forward(
        &self,
        node: &str,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: &Inbound,
    ) -> Result<Ack, RuntimeError> {
        match self.send(node, ctx, channel, inbound)?.await {
            Outcome::Answered(result) => result,
            Outcome::NotOwner => Err(RuntimeError::Interrupted),
        }
    }

    /// Queues the request now (requests leave in the order of these calls) and returns the
    /// future of its outcome; a full queue is `Overloaded`.
    fn send(
        &self,
        node: &str,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: &Inbound,
    ) -> Result<impl Future<Output = Outcome> + Send + 'static, RuntimeError> {
        let request = ForwardRequest::new(ctx, channel, inbound);
        let payload = serde_json::to_vec(&request)
            .map_err(|e| RuntimeError::Storage(format!("encoding a forwarded request: {e}")))?;
        let (answer, received) = oneshot::channel();
        let outgoing = Outgoing {
            subject: subject(&self.stream, node),
            payload,
            answer,
        };
        self.queue.try_send(outgoing).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RuntimeError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => RuntimeError::ShuttingDown,
        })?;
        let node = node.to_owned();
        let tenant = ctx.tenant.clone();
        Ok(async move {
            let received = match tokio::time::timeout(FORWARD_TIMEOUT, received).await {
                Ok(Ok(received)) => received,
                Ok(Err(_)) => Received::PublishFailed("the forwarder stopped".into()),
                Err(_) => {
                    tracing::warn!(%tenant, node = %node, "forwarded message not answered in time");
                    return Outcome::Answered(Err(RuntimeError::Interrupted));
                }
            };
            outcome(received, &tenant, &node)
        })
    }
}

fn outcome(received: Received, tenant: &TenantId, node: &str) -> Outcome {
    match received {
        Received::Reply(ForwardReply::Ack(ack)) => Outcome::Answered(Ok(ack.into())),
        Received::Reply(ForwardReply::Error(e)) => Outcome::Answered(Err(decode_error(e, node))),
        Received::Reply(ForwardReply::NotOwner { .. }) => Outcome::NotOwner,
        Received::NoResponders => {
            tracing::warn!(%tenant, node = %node, "no listener on the owner's forwarding subject");
            Outcome::Answered(Err(RuntimeError::Interrupted))
        }
        Received::Unreadable(detail) => Outcome::Answered(Err(RuntimeError::Storage(format!(
            "unreadable forwarding reply from node {node}: {detail}"
        )))),
        Received::PublishFailed(detail) => {
            tracing::warn!(%tenant, node = %node, error = %detail, "forwarding publish failed");
            Outcome::Answered(Err(RuntimeError::Interrupted))
        }
    }
}

/// The forwarder's task: publishes queued requests one after another (so in `send` order), each
/// with its own reply subject `{inbox}.{n}`, and hands each reply to its waiting caller.
async fn publish_requests(
    client: async_nats::Client,
    inbox: String,
    mut replies: async_nats::Subscriber,
    mut requests: mpsc::Receiver<Outgoing>,
) {
    let mut pending: HashMap<u64, oneshot::Sender<Received>> = HashMap::new();
    let mut next: u64 = 0;
    let mut sweep = tokio::time::interval(PENDING_SWEEP);
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                next += 1;
                let reply = format!("{inbox}.{next}");
                match client.publish_with_reply(request.subject, reply, request.payload.into()).await {
                    Ok(()) => {
                        pending.insert(next, request.answer);
                    }
                    Err(e) => {
                        let _ = request.answer.send(Received::PublishFailed(e.to_string()));
                    }
                }
            }
            message = replies.next() => {
                let Some(message) = message else { break };
                let id = message.subject.rsplit('.').next().and_then(|n| n.parse::<u64>().ok());
                let Some(answer) = id.and_then(|id| pending.remove(&id)) else { continue };
                let received = if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    Received::NoResponders
                } else {
                    serde_json::from_slice(&message.payload)
                        .map_or_else(|e| Received::Unreadable(e.to_string()), Received::Reply)
                };
                let _ = answer.send(received);
            }
            _ = sweep.tick() => pending.retain(|_, answer| !answer.is_closed()),
        }
    }
    let _ = replies.unsubscribe().await;
}

// ---- The runtime's hook --------------------------------------------------------------------

/// What a runtime in a cluster needs to send a message to its tenant's owner
/// (`RuntimeOptions::forwarding`).
#[derive(Clone)]
pub struct Forwarding {
    pub placement: Arc<dyn Placement>,
    pub forwarder: Forwarder,
}

impl Forwarding {
    /// The route of `tenant` from here.
    pub fn route(&self, tenant: &TenantId) -> Route {
        self.placement.route(tenant)
    }

    /// Sends a checked message whose route is not `Local` (`Remote` is queued now, in call
    /// order) and returns the future of its answer, which holds `permit` until it resolves.
    /// `Unowned` waits for an owner (up to [`OWNER_WAIT`]); a "not owner" answer re-asks the
    /// placement and tries once more.
    pub(crate) fn remote<P: Send + 'static>(
        &self,
        runtime: Runtime,
        route: Route,
        ctx: &TenantCtx,
        channel: &ChannelId,
        inbound: Inbound,
        permit: P,
    ) -> Result<impl Future<Output = Result<Ack, RuntimeError>> + Send + 'static, RuntimeError>
    {
        let first = match &route {
            Route::Remote(node) => Some((
                node.clone(),
                self.forwarder.send(node, ctx, channel, &inbound)?,
            )),
            Route::Local | Route::Unowned => None,
        };
        let this = self.clone();
        let (ctx, channel) = (ctx.clone(), channel.clone());
        Ok(async move {
            let mut asked = None;
            if let Some((node, pending)) = first {
                match pending.await {
                    Outcome::Answered(result) => return result,
                    Outcome::NotOwner => asked = Some(node),
                }
            }
            match this.await_owner(&ctx.tenant, asked.as_deref()).await {
                Route::Local => {
                    // Handled here after all; the runtime takes its own place in flight.
                    drop(permit);
                    runtime.submit_here(&ctx, &channel, inbound)?.await
                }
                Route::Remote(node) => {
                    let _permit = permit;
                    this.forwarder
                        .forward(&node, &ctx, &channel, &inbound)
                        .await
                }
                Route::Unowned => {
                    tracing::warn!(tenant = %ctx.tenant, "no node owns the tenant; message refused");
                    Err(RuntimeError::Interrupted)
                }
            }
        })
    }

    /// The route of `tenant` once it has an owner other than `not` (a node that said it is
    /// not the owner), asking every [`OWNER_POLL`] for up to [`OWNER_WAIT`]; `Unowned` if none.
    async fn await_owner(&self, tenant: &TenantId, not: Option<&str>) -> Route {
        let deadline = Instant::now() + OWNER_WAIT;
        loop {
            let route = self.route(tenant);
            let settled = match &route {
                Route::Local => true,
                Route::Remote(node) => Some(node.as_str()) != not,
                Route::Unowned => false,
            };
            if settled {
                return route;
            }
            if Instant::now() >= deadline {
                return Route::Unowned;
            }
            tokio::time::sleep(OWNER_POLL).await;
        }
    }
}

// ---- The receiving side --------------------------------------------------------------------

/// Subscribes to this node's forwarding subject and handles each request: a tenant the
/// placement says is `Local` goes to `runtime` (submitted in arrival order, acks awaited
/// concurrently, at most [`LISTENER_IN_FLIGHT_MAX`] at once), any other is answered "not
/// owner". Stops when `stop` turns true, after answering what it accepted.
pub async fn serve_forwarded(
    client: async_nats::Client,
    subject: String,
    runtime: Runtime,
    placement: Arc<dyn Placement>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ForwardError> {
    let mut sub = client
        .subscribe(subject.clone())
        .await
        .map_err(|e| ForwardError::Subscribe {
            subject: subject.clone(),
            detail: e.to_string(),
        })?;
    // Written out, not yet confirmed by the server: a forward sent in the moment before it
    // reads the subscription finds no responder and is answered `interrupted` (retryable).
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "NATS flush after subscribing failed; the client retries");
    }
    tracing::info!(subject = %subject, "cluster forwarding listener subscribed");
    let permits = Arc::new(Semaphore::new(LISTENER_IN_FLIGHT_MAX));
    loop {
        let msg = tokio::select! {
            msg = sub.next() => match msg { Some(m) => m, None => break },
            _ = stop.changed() => break,
        };
        let Some(reply) = msg.reply.clone() else {
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        match accept(&msg.payload, &runtime, placement.as_ref()) {
            Accepted::Now(answer) => {
                tokio::spawn(async move {
                    let _ = client.publish(reply, encode_reply(&answer).into()).await;
                    drop(permit);
                });
            }
            Accepted::Later(pending) => {
                tokio::spawn(async move {
                    let answer = answer_of(pending.await);
                    if let Err(e) = client.publish(reply, encode_reply(&answer).into()).await {
                        tracing::warn!(error = %e, "forwarded message's answer could not be sent");
                    }
                    drop(permit);
                });
            }
        }
    }
    let _ = sub.unsubscribe().await;
    let _all = permits
        .acquire_many(u32::try_from(LISTENER_IN_FLIGHT_MAX).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

enum Accepted<F> {
    Now(ForwardReply),
    Later(F),
}

/// Reads one request and, when this node owns its tenant, submits it to `runtime` now.
fn accept(
    payload: &[u8],
    runtime: &Runtime,
    placement: &dyn Placement,
) -> Accepted<impl Future<Output = Result<Ack, RuntimeError>> + Send + 'static> {
    let request: ForwardRequest = match serde_json::from_slice(payload) {
        Ok(r) => r,
        Err(e) => {
            let e = RuntimeError::Invalid(format!("unreadable forwarded request: {e}"));
            return Accepted::Now(answer_of(Err(e)));
        }
    };
    if placement.route(&request.tenant) != Route::Local {
        tracing::info!(tenant = %request.tenant, "forwarded message for a tenant not owned here refused");
        return Accepted::Now(ForwardReply::NotOwner {
            tenant: request.tenant,
            node: placement.node().to_owned(),
        });
    }
    let (ctx, channel, inbound) = request.into_parts();
    match runtime.submit_here(&ctx, &channel, inbound) {
        Ok(pending) => Accepted::Later(pending),
        Err(e) => Accepted::Now(answer_of(Err(e))),
    }
}

fn answer_of(result: Result<Ack, RuntimeError>) -> ForwardReply {
    match result {
        Ok(ack) => ForwardReply::Ack(WireAck::from(&ack)),
        Err(e) => {
            if e.is_internal() {
                // The reply carries no detail: the owner's log gets it, once, here.
                tracing::error!(code = e.code(), error = %e, "forwarded message failed");
            }
            ForwardReply::Error(encode_error(&e))
        }
    }
}

// ---- Starting it in `serve` ----------------------------------------------------------------

/// The environment variable that gives a debug build's `serve` a [`StaticPlacement`]:
/// `tenant=node` pairs separated by commas (`node` = `unowned` for no owner), e.g.
/// `acme=n1,globex=unowned`. For tests of forwarding between real servers; release builds
/// ignore it.
pub const STATIC_PLACEMENT_VAR: &str = "TENANTRY_STATIC_PLACEMENT";

/// A fixed placement: the tenants it names go to their node (or have none), every other tenant
/// is handled here. `serve` uses it when the node has no leases (no `[cluster]` on the
/// JetStream log): every tenant local, or what [`STATIC_PLACEMENT_VAR`] says in a debug build.
pub struct StaticPlacement {
    node: String,
    routes: HashMap<TenantId, Route>,
}

impl StaticPlacement {
    /// Every tenant handled here, by `node`.
    pub fn local(node: &str) -> StaticPlacement {
        StaticPlacement {
            node: node.to_owned(),
            routes: HashMap::new(),
        }
    }

    /// [`StaticPlacement::local`], or in a debug build what [`STATIC_PLACEMENT_VAR`] says.
    pub fn for_node(node: &str) -> Result<StaticPlacement, ForwardError> {
        match std::env::var(STATIC_PLACEMENT_VAR) {
            Ok(spec) if cfg!(debug_assertions) => StaticPlacement::parse(node, &spec),
            _ => Ok(StaticPlacement::local(node)),
        }
    }

    /// `tenant=node` pairs, as in [`STATIC_PLACEMENT_VAR`]; a pair naming `node` itself is
    /// `Local`.
    pub fn parse(node: &str, spec: &str) -> Result<StaticPlacement, ForwardError> {
        let mut placement = StaticPlacement::local(node);
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let invalid = |why: &str| ForwardError::Placement {
                detail: format!("{STATIC_PLACEMENT_VAR}: {pair:?} {why}; write tenant=node,..."),
            };
            let (tenant, owner) = pair.split_once('=').ok_or_else(|| invalid("has no `=`"))?;
            let tenant = TenantId::parse(tenant.trim()).map_err(|e| invalid(&e.to_string()))?;
            let route = match owner.trim() {
                "unowned" => Route::Unowned,
                owner if owner == node => Route::Local,
                owner if is_node_name(owner) => Route::Remote(owner.to_owned()),
                _ => return Err(invalid("names no valid node")),
            };
            placement.routes.insert(tenant, route);
        }
        Ok(placement)
    }
}

/// `cluster.node`'s rule: 1..=`CLUSTER_NODE_CHARS_MAX` characters of `[A-Za-z0-9_-]`.
fn is_node_name(name: &str) -> bool {
    (1..=CLUSTER_NODE_CHARS_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Placement for StaticPlacement {
    fn route(&self, tenant: &TenantId) -> Route {
        self.routes.get(tenant).cloned().unwrap_or(Route::Local)
    }

    fn node(&self) -> &str {
        &self.node
    }
}

/// The stream name that scopes forwarding subjects (`[log] stream`).
fn stream_of(config: &Config) -> &str {
    &config.log().stream
}

/// The runtime's hook for `config`'s cluster: `None` without `[cluster]`. Call before
/// `Runtime::start` and put it in `RuntimeOptions::forwarding`.
pub async fn forwarding(
    config: &Config,
    client: &async_nats::Client,
    placement: Arc<dyn Placement>,
) -> Result<Option<Forwarding>, ForwardError> {
    if config.cluster().is_none() {
        return Ok(None);
    }
    let forwarder = Forwarder::start(client.clone(), stream_of(config)).await?;
    Ok(Some(Forwarding {
        placement,
        forwarder,
    }))
}

/// Starts this node's listener for `config`'s cluster (`None` without `[cluster]`); it stops
/// on `stop`, like the NATS ingress.
pub fn start(
    config: &Config,
    client: async_nats::Client,
    runtime: Runtime,
    placement: Arc<dyn Placement>,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<Result<(), ForwardError>>> {
    let cluster = config.cluster()?;
    let subject = subject(stream_of(config), &cluster.node);
    Some(tokio::spawn(serve_forwarded(
        client, subject, runtime, placement, stop,
    )))
}

#[cfg(test)]
mod tests;
