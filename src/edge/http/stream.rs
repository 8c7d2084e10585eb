//! The live event streams of the HTTP API (Server-Sent Events, docs/streams.md):
//! `GET /api/v1/events/stream` (the tenant's new events in the token's env and the caller's
//! team) and `GET /api/v1/sessions/{id}/events/stream` (one session, from its first event on).
//!
//! One SSE message per event: `id: <tenant_seq>` and `data: <one JSON line>`, exactly an item of
//! `GET /sessions/{id}/events`. `Last-Event-ID: N` (or `?after=N`; the header wins, as a
//! browser's reconnect sends it beside the original URL) resumes after `tenant_seq` N.
//!
//! How new events are noticed: a stream waits on the log's per-tenant frontier watch
//! (`EventLog::watch_frontier`), which every frontier change bumps: a flush on this node, or a
//! followed record on a cluster node that does not own the tenant (the follower applies them
//! every 200 ms). Then it reads from where it stopped up to the new frontier, on the blocking
//! pool, at most [`STREAM_READ_EVENTS_MAX`] events per read. No polling.
//!
//! Invariants:
//! - a stream reads through the caller's tenant only and sends only events of the token's env
//!   and the caller's team (the session stream: the one session `find_session` found in them);
//! - at most [`STREAMS_PER_TENANT_MAX`] streams per tenant are open; past it 429 with
//!   `Retry-After` ([`StreamsBusy`](super::error::ApiError::StreamsBusy));
//! - a server stopping ends every stream at once (the graceful stop never waits for them), and
//!   the connection of a stream is closed when the stream ends;
//! - an event is sent only once durable (reads stop at the durable frontier).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tokio::sync::watch;

use super::dto::EventItem;
use super::error::ApiError;
use super::routes::{find_session, session_of};
use super::state::{blocking, read_team, EdgeState};
use crate::edge::auth::Caller;
use crate::events::log::StoredEvent;
use crate::tenancy::{EnvId, SessionId, TeamId, TenantCtx, TenantId};

/// Most event streams open at once per tenant.
pub const STREAMS_PER_TENANT_MAX: usize = 16;
/// `Retry-After` when a tenant has [`STREAMS_PER_TENANT_MAX`] streams open: a console tab
/// that closed frees its stream at its next heartbeat at the latest.
pub const STREAMS_BUSY_RETRY_AFTER_S: u64 = 15;
/// A comment line (`: ping`) is sent after this long in which nothing was sent, so proxies keep
/// the connection and a client that went away is noticed.
pub const STREAM_PING_INTERVAL: Duration = Duration::from_secs(15);
/// A second, empty comment line follows each heartbeat after this long. actix notices a client
/// that went away only when a write to it fails, and the first write after the client closed
/// still succeeds (it only draws the peer's reset): the probe fails, so a closed stream's slot
/// is given back within [`STREAM_PING_INTERVAL`] plus this, not two heartbeats.
pub const STREAM_PROBE_AFTER_PING: Duration = Duration::from_secs(1);
/// Most events one read of the log turns into one chunk of the response.
pub const STREAM_READ_EVENTS_MAX: usize = 500;

/// The open streams, per tenant.
#[derive(Default)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<TenantId, usize>>>,
}

fn lock(open: &Mutex<HashMap<TenantId, usize>>) -> MutexGuard<'_, HashMap<TenantId, usize>> {
    // A poisoned lock only means a panic elsewhere; the counts are updated under the lock only.
    open.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StreamSlots {
    /// A slot for one stream of `tenant`, or `StreamsBusy`.
    fn acquire(&self, tenant: &TenantId) -> Result<StreamSlot, ApiError> {
        let mut open = lock(&self.open);
        let mine = open.entry(tenant.clone()).or_insert(0);
        if *mine >= STREAMS_PER_TENANT_MAX {
            return Err(ApiError::StreamsBusy {
                max: STREAMS_PER_TENANT_MAX,
            });
        }
        *mine += 1;
        Ok(StreamSlot {
            open: Arc::clone(&self.open),
            tenant: tenant.clone(),
        })
    }
}

/// One open stream's slot; given back when the stream is dropped (it ended, or its client went
/// away).
struct StreamSlot {
    open: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(mine) = open.get_mut(&self.tenant) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct StreamQuery {
    after: Option<String>,
}

/// Where a stream resumes: `Last-Event-ID`, else `?after=`, else `None`.
fn resume_after(req: &HttpRequest, query: &StreamQuery) -> Result<Option<u64>, ApiError> {
    if let Some(value) = req.headers().get("last-event-id") {
        let parsed = value.to_str().ok().and_then(|v| v.trim().parse().ok());
        return parsed.map(Some).ok_or_else(|| {
            ApiError::field(
                "Last-Event-ID",
                "must be the id (a tenant_seq) of an event this stream sent",
            )
        });
    }
    query
        .after
        .as_deref()
        .map(|raw| {
            raw.parse::<u64>().map_err(|_| {
                ApiError::field("after", "must be a tenant_seq (a whole number, 0 or more)")
            })
        })
        .transpose()
}

/// What a stream sends.
#[derive(Clone)]
enum Source {
    /// The tenant's events of one env, and of one team when set.
    Tenant {
        tenant: TenantId,
        env: EnvId,
        team: Option<TeamId>,
    },
    /// One session's events, from seq `next_seq` on.
    Session {
        ctx: TenantCtx,
        session: SessionId,
        next_seq: u64,
    },
}

impl Source {
    fn tenant(&self) -> &TenantId {
        match self {
            Source::Tenant { tenant, .. } => tenant,
            Source::Session { ctx, .. } => &ctx.tenant,
        }
    }
}

/// A stream between two chunks.
struct Live {
    state: web::Data<EdgeState>,
    source: Source,
    /// Events with a `tenant_seq` up to this one are sent or skipped.
    sent_upto: u64,
    /// The frontier the last read reached; a read is due when the log's is past it.
    read_upto: u64,
    frontier: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
    /// A heartbeat went out; its probe is due next.
    probe_due: bool,
    /// When the next heartbeat (or probe) is due, unless something is sent before: moved only
    /// by what is sent, so wake-ups for other envs' or teams' events do not put it off.
    beat_at: tokio::time::Instant,
    _slot: StreamSlot,
}

/// `GET /api/v1/events/stream`: the tenant's new events in the token's env (and the caller's
/// team, when one applies), live.
pub(super) async fn tenant_stream(
    caller: Caller,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let after = resume_after(&req, &query)?;
    let team = read_team(&state, &caller)?;
    let source = Source::Tenant {
        tenant: caller.tenant.clone(),
        env: caller.env.clone(),
        team,
    };
    open(state, source, after)
}

/// `GET /api/v1/sessions/{id}/events/stream`: one session's events from its first (or after
/// `Last-Event-ID`), then live.
pub(super) async fn session_stream(
    caller: Caller,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
    state: web::Data<EdgeState>,
) -> Result<HttpResponse, ApiError> {
    let session = session_of(&path)?;
    let after = resume_after(&req, &query)?;
    let team = read_team(&state, &caller)?;
    let found = session.clone();
    let ctx = blocking(state.clone(), move |state| {
        find_session(state, &caller, team, &found)
    })
    .await?;
    let source = Source::Session {
        ctx,
        session,
        next_seq: 1,
    };
    // The whole session unless resumed.
    open(state, source, Some(after.unwrap_or(0)))
}

/// Takes a slot and starts the response. `after: None` starts at the tenant's frontier.
fn open(
    state: web::Data<EdgeState>,
    source: Source,
    after: Option<u64>,
) -> Result<HttpResponse, ApiError> {
    let slot = state.streams().acquire(source.tenant())?;
    let log = state.runtime().log();
    // Subscribed before the frontier is read: a change in between still wakes the stream.
    let frontier = log.watch_frontier(source.tenant());
    let head = log.durable_frontier(source.tenant());
    let sent_upto = after.unwrap_or(head);
    let live = Live {
        shutdown: state.shutdown_signal(),
        state,
        source,
        sent_upto,
        read_upto: sent_upto.min(head),
        frontier,
        probe_due: false,
        beat_at: tokio::time::Instant::now() + STREAM_PING_INTERVAL,
        _slot: slot,
    };
    // The first chunk goes out at once, so a client knows the stream is open.
    let first = web::Bytes::from_static(b": open\n\n");
    let body = futures_util::stream::unfold((Some(first), live), |(first, mut live)| async move {
        if let Some(chunk) = first {
            return Some((Ok::<_, Infallible>(chunk), (None, live)));
        }
        let chunk = live.next_chunk().await?;
        Some((Ok(chunk), (None, live)))
    });
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        // The connection is the stream's: closed when it ends, so a stopping server does not
        // wait for an idle keep-alive connection after it.
        .force_close();
    Ok(response.streaming(body))
}

impl Live {
    /// The next chunk: new events, a heartbeat, or `None` once the stream is over (the server
    /// stops, or a read failed).
    async fn next_chunk(&mut self) -> Option<web::Bytes> {
        loop {
            if *self.shutdown.borrow() {
                return None;
            }
            let head = self
                .state
                .runtime()
                .log()
                .durable_frontier(self.source.tenant());
            if head > self.read_upto {
                match self.read(head).await {
                    Ok(Some(chunk)) => return Some(self.sent(chunk, false)),
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(tenant = %self.source.tenant(), error = %e,
                            "event stream ended: reading the log failed");
                        return None;
                    }
                }
            }
            tokio::select! {
                changed = self.frontier.changed() => {
                    if changed.is_err() {
                        // The log is gone: the server is stopping.
                        return None;
                    }
                }
                _ = self.shutdown.changed() => {}
                () = tokio::time::sleep_until(self.beat_at) => {
                    let chunk = if self.probe_due {
                        web::Bytes::from_static(b":\n\n")
                    } else {
                        web::Bytes::from_static(b": ping\n\n")
                    };
                    let probe_next = !self.probe_due;
                    return Some(self.sent(chunk, probe_next));
                }
            }
        }
    }

    /// `chunk`, once the next heartbeat is set: its probe when `probe_next` (after a ping),
    /// else a ping after the full interval.
    fn sent(&mut self, chunk: web::Bytes, probe_next: bool) -> web::Bytes {
        self.probe_due = probe_next;
        let quiet = if probe_next {
            STREAM_PROBE_AFTER_PING
        } else {
            STREAM_PING_INTERVAL
        };
        self.beat_at = tokio::time::Instant::now() + quiet;
        chunk
    }

    /// Reads past `read_upto` (up to `head`, at most [`STREAM_READ_EVENTS_MAX`] events) on the
    /// blocking pool; the events to send as one chunk, or `None` when none of them is ours.
    async fn read(&mut self, head: u64) -> Result<Option<web::Bytes>, ApiError> {
        let from = self.read_upto + 1;
        // Ids share their text: the clone is cheap.
        let source = self.source.clone();
        let batch = blocking(self.state.clone(), move |state| {
            read_batch(state, &source, from, head)
        })
        .await?;
        if let (Source::Session { next_seq, .. }, Some(next)) = (&mut self.source, batch.next_seq) {
            *next_seq = next;
        }
        self.read_upto = batch.reached;
        let mut chunk = String::new();
        for stored in batch.events {
            let tenant_seq = stored.event.tenant_seq;
            if tenant_seq <= self.sent_upto {
                continue;
            }
            let data = serde_json::to_string(&EventItem::new(&stored))
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            chunk.push_str(&format!("id: {tenant_seq}\ndata: {data}\n\n"));
            self.sent_upto = tenant_seq;
        }
        self.sent_upto = self.sent_upto.max(self.read_upto);
        Ok((!chunk.is_empty()).then(|| web::Bytes::from(chunk)))
    }
}

/// What one read found.
struct Batch {
    /// The stream's events, in order.
    events: Vec<StoredEvent>,
    /// The `tenant_seq` the read covered: `head`, or less when it stopped at the bound.
    reached: u64,
    /// A session stream's next seq to read.
    next_seq: Option<u64>,
}

/// Reads `source`'s events with `tenant_seq` in `from..=head`, at most
/// [`STREAM_READ_EVENTS_MAX`]. Blocking.
fn read_batch(state: &EdgeState, source: &Source, from: u64, head: u64) -> Result<Batch, ApiError> {
    let log = state.runtime().log();
    let mut batch = Batch {
        events: Vec::new(),
        reached: head,
        next_seq: None,
    };
    match source {
        Source::Tenant { tenant, env, team } => {
            // Scanned, not only kept: a busy other env must not make one read unbounded.
            for (scanned, stored) in log.tenant(tenant).events(from..=head).enumerate() {
                let stored = stored?;
                let seq = stored.event.tenant_seq;
                let ours = stored.event.env == *env
                    && team.as_ref().is_none_or(|t| stored.event.team == *t);
                if ours {
                    batch.events.push(stored);
                }
                if scanned + 1 == STREAM_READ_EVENTS_MAX {
                    batch.reached = seq;
                    break;
                }
            }
        }
        Source::Session {
            ctx,
            session,
            next_seq,
        } => {
            let mut next = *next_seq;
            for stored in log.scope(ctx).session_events(session, next..=u64::MAX) {
                let stored = stored?;
                if stored.event.tenant_seq > head {
                    // Durable since `head` was read: the next read takes it.
                    break;
                }
                next = stored.event.seq + 1;
                batch.events.push(stored);
                if batch.events.len() == STREAM_READ_EVENTS_MAX {
                    batch.reached = batch.events.last().map_or(from, |e| e.event.tenant_seq);
                    break;
                }
            }
            batch.next_seq = Some(next);
        }
    }
    Ok(batch)
}
