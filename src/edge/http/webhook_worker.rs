//! The webhook delivery worker (docs/connectors.md#webhook-delivery): one task per node delivers the
//! replies of every webhook channel (`provider = "webhook"`, `config.url`) of every env of the
//! tenants this node handles (in a cluster: the tenants it owns).
//!
//! Each (env, team, channel) is an internal connector of the registry
//! (`connectors::webhook::webhook_connector_id`, provider `webhook`), registered at the first
//! round and kept live by the worker; it reads that connector's outbox, POSTs each reply signed
//! with the `webhook_secret` the TenantCtx lookup finds (team, then tenant), and acknowledges
//! the replies delivered in order (`OutboxAcked`), so a restart resumes after the last
//! acknowledged one and a reply is delivered at least once. A failed request (not 2xx, or no
//! answer within `WEBHOOK_TIMEOUT`) stops that channel's round; it is retried after an
//! exponential backoff (`WEBHOOK_BACKOFF_BASE` doubled per failure, at most
//! `WEBHOOK_BACKOFF_MAX`), and the registry's sweep dead-letters replies older than
//! `[connectors] outbox_ttl` as for any connector.
//!
//! Invariants: requests and log reads run on the blocking pool, never on the event loop; the
//! worker waits on the tenants' frontier watches or a due retry, no polling; it stops with the
//! server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::web;
use tokio::time::Instant;

use super::state::EdgeState;
use crate::connectors::webhook::{self, WEBHOOK_BATCH_MAX, WEBHOOK_PROVIDER, WEBHOOK_SECRET_NAME};
use crate::connectors::{Connector, ConnectorError, Registration};
use crate::secrets::name::SecretName;
use crate::secrets::store::SecretStore;
use crate::tenancy::{ChannelId, ConnectorId, EnvId, TeamId, TenantCtx, TenantId};

/// One webhook channel of one env.
#[derive(Clone)]
struct Target {
    tenant: TenantId,
    env: EnvId,
    team: TeamId,
    channel: ChannelId,
    url: String,
    id: ConnectorId,
}

/// Where a target's retries stand on this node (where its outbox stands is the registry's).
#[derive(Default)]
struct Progress {
    failures: u32,
    retry_at: Option<Instant>,
}

/// The webhook channels of the tenants `state`'s runtime serves.
fn targets(state: &EdgeState) -> Vec<Target> {
    let runtime = state.runtime();
    let mut out = Vec::new();
    for tenant in runtime.tenants() {
        let Some(config) = runtime.tenant_config(tenant) else {
            continue;
        };
        for (team, team_config) in &config.teams {
            for (channel, c) in &team_config.channels {
                let Some(url) = c
                    .config
                    .get("url")
                    .filter(|_| c.provider == WEBHOOK_PROVIDER)
                else {
                    continue;
                };
                for env in &config.environments {
                    out.push(Target {
                        tenant: tenant.clone(),
                        env: env.id.clone(),
                        team: team.clone(),
                        channel: channel.clone(),
                        url: url.clone(),
                        id: webhook::webhook_connector_id(team, channel),
                    });
                }
            }
        }
    }
    out
}

/// Runs until the server stops; returns at once when no tenant has a webhook channel.
pub(super) async fn run(state: web::Data<EdgeState>) {
    let all = targets(&state);
    if all.is_empty() {
        return;
    }
    let data_dir = state.config().server().data_dir.clone();
    let secrets = match web::block(move || SecretStore::open(&data_dir)).await {
        Ok(Ok(store)) => Arc::new(store),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "webhook delivery off: the secret store cannot be opened");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery off: opening the secret store failed");
            return;
        }
    };
    let agent = webhook::agent();
    let mut shutdown = state.shutdown_signal();
    let mut watches: Vec<_> = {
        let mut tenants: Vec<&TenantId> = all.iter().map(|t| &t.tenant).collect();
        tenants.dedup();
        let log = state.runtime().log();
        tenants.into_iter().map(|t| log.watch_frontier(t)).collect()
    };
    let mut progress: HashMap<(TenantId, EnvId, ConnectorId), Progress> = HashMap::new();
    loop {
        for w in &mut watches {
            w.borrow_and_update();
        }
        // At least once per heartbeat interval: each round heartbeats the internal connectors,
        // so they stay live.
        let mut wake = Instant::now() + state.connectors().interval();
        for target in all
            .iter()
            .filter(|t| state.runtime().handles_here(&t.tenant))
        {
            let key = (target.tenant.clone(), target.env.clone(), target.id.clone());
            let p = progress.entry(key).or_default();
            if p.retry_at.is_some_and(|at| at > Instant::now()) {
                wake = wake.min(p.retry_at.unwrap_or(wake));
                continue;
            }
            deliver(&state, &secrets, &agent, target, p).await;
            if let Some(at) = p.retry_at {
                wake = wake.min(at);
            }
        }
        if *shutdown.borrow() {
            return;
        }
        let changed =
            futures_util::future::select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            () = tokio::time::sleep_until(wake) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The target's internal connector, registered (or kept live) now.
async fn connector(state: &EdgeState, t: &Target) -> Result<Connector, ConnectorError> {
    let registration = || Registration {
        tenant: t.tenant.clone(),
        env: t.env.clone(),
        team: t.team.clone(),
        channel: t.channel.clone(),
        id: t.id.clone(),
        provider: WEBHOOK_PROVIDER.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        capabilities: Vec::new(),
    };
    let key = (&t.tenant, &t.env, &t.id);
    let (c, _) = state
        .connectors()
        .heartbeat(key, &t.team, || Ok(registration()))
        .await?;
    Ok(c)
}

/// One delivery round of `target`: reads its outbox, POSTs the replies in order until one
/// fails, acknowledges those delivered, and sets the retry after a failure.
async fn deliver(
    state: &web::Data<EdgeState>,
    secrets: &Arc<SecretStore>,
    agent: &ureq::Agent,
    target: &Target,
    p: &mut Progress,
) {
    let failed = |p: &mut Progress, what: String| {
        p.failures = p.failures.saturating_add(1);
        let delay = webhook::backoff(p.failures);
        p.retry_at = Some(Instant::now() + delay);
        tracing::warn!(tenant = %target.tenant, env = %target.env, team = %target.team,
            channel = %target.channel, failures = p.failures, retry_in = ?delay,
            "webhook delivery failed: {what}");
    };
    // Bounded: the registry's writes wait for it (its sweep and dead letters included).
    let kept = tokio::time::timeout(webhook::WEBHOOK_TIMEOUT, connector(state, target)).await;
    let connector = match kept {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return failed(p, e.to_string()),
        Err(_) => return failed(p, "registering its connector timed out".to_owned()),
    };
    loop {
        let (s, t, c) = (state.clone(), target.tenant.clone(), connector.clone());
        let page =
            web::block(move || s.connectors().outbox_read(&t, &c, 0, WEBHOOK_BATCH_MAX)).await;
        let page = match page {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => return failed(p, e.to_string()),
            Err(e) => return failed(p, e.to_string()),
        };
        if page.items.is_empty() {
            return;
        }
        let ctx = TenantCtx::new(
            target.tenant.clone(),
            target.env.clone(),
            Some(target.team.clone()),
        );
        let (store, agent, url, items) = (
            secrets.clone(),
            agent.clone(),
            target.url.clone(),
            page.items.clone(),
        );
        let meta = serde_json::json!({
            "tenant": target.tenant.as_str(), "env": target.env.as_str(),
            "team": target.team.as_str(), "channel": target.channel.as_str(),
        });
        let sent = web::block(move || send_all(&store, &ctx, &agent, &url, &meta, &items)).await;
        let (delivered, error) = match sent {
            Ok(result) => result,
            Err(e) => (None, Some(e.to_string())),
        };
        if let Some(up_to) = delivered {
            let key = (&target.tenant, &target.env, &target.id);
            match state.connectors().ack(key, up_to).await {
                Ok(_) => {
                    let count = page.items.iter().filter(|i| i.tenant_seq <= up_to).count();
                    state.metrics().webhook_delivered(
                        &target.tenant,
                        &target.env,
                        &target.id,
                        count as u64,
                    );
                }
                Err(e) => return failed(p, format!("acknowledging: {e}")),
            }
        }
        if let Some(error) = error {
            state
                .metrics()
                .webhook_failed(&target.tenant, &target.env, &target.id);
            return failed(p, error);
        }
        p.failures = 0;
        p.retry_at = None;
    }
}

/// POSTs `items` in order (blocking); returns the last delivered `tenant_seq` and the error
/// that stopped it, if any.
fn send_all(
    store: &SecretStore,
    ctx: &TenantCtx,
    agent: &ureq::Agent,
    url: &str,
    meta: &serde_json::Value,
    items: &[crate::connectors::outbox::OutboxItem],
) -> (Option<u64>, Option<String>) {
    let name = SecretName::parse(WEBHOOK_SECRET_NAME).expect("a valid secret name");
    let secret = match store.lookup(ctx, &name) {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return (
                None,
                Some(format!(
                    "no secret {WEBHOOK_SECRET_NAME} for team {} or tenant {}; set one with \
                     `tenantry secrets set`",
                    ctx.team_or_default(),
                    ctx.tenant
                )),
            )
        }
        Err(e) => return (None, Some(format!("reading {WEBHOOK_SECRET_NAME}: {e}"))),
    };
    let mut delivered = None;
    for item in items {
        let mut body = meta.clone();
        body["tenant_seq"] = item.tenant_seq.into();
        body["session"] = item.session.clone().into();
        body["seq"] = item.seq.into();
        body["at"] = item.at_ms.into();
        body["node"] = item.node.clone().into();
        body["text"] = item.text.clone().into();
        if let Some(reply_to) = &item.reply_to {
            body["reply_to"] = reply_to.clone().into();
        }
        let bytes = body.to_string().into_bytes();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(e) = webhook::post(agent, url, &bytes, secret.expose(), now) {
            return (delivered, Some(e.to_string()));
        }
        delivered = Some(item.tenant_seq);
    }
    (delivered, None)
}
