//! The outbox's writes on the [`Registry`]: reads hand out cursors ([`Registry::outbox_read`]),
//! acks move a connector's cursor ([`Registry::ack`], an `OutboxAcked` event), and the
//! dead-letter sweep gives up replies older than `connectors.outbox_ttl`
//! ([`Registry::dead_letter`], an `OutboxDeadLettered` event). Docs: docs/connectors.md "Outbox".
//!
//! Invariants: a cursor moves only forward and only after its event is durable; an ack may not
//! pass the highest cursor an outbox read handed out on this node (a restarted node hands the
//! same replies out again first).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::outbox::{self, Page};
use super::{Connector, ConnectorError, Registry};
use crate::events::schema::EventKind;
use crate::tenancy::{ConnectorId, EnvId, TenantId};

impl Registry {
    /// The pending replies of `connector` of `tenant` after its cursor, or after `after` or the
    /// point up to which an earlier read found none of its replies (the connector's `skipped`,
    /// in memory) when further, at most `limit`; notes the page's cursor as handed out (and as
    /// skipped, when it found none). Blocking: call it on the blocking pool.
    pub fn outbox_read(
        &self,
        tenant: &TenantId,
        connector: &Connector,
        after: u64,
        limit: usize,
    ) -> Result<Page, ConnectorError> {
        // The cursor now, not the caller's copy: an ack may have moved it meanwhile.
        let (acked, skipped) = self
            .get(tenant, &connector.env, &connector.id)
            .map_or((connector.acked(), 0), |c| (c.acked(), c.skipped));
        let from = acked.max(after).max(skipped);
        let page = outbox::read(self.runtime().log(), tenant, connector, from, limit)
            .map_err(|e| ConnectorError::Read(e.to_string()))?;
        let key = (tenant.clone(), connector.env.clone(), connector.id.clone());
        let cursor = page.cursor;
        let none = page.items.is_empty();
        self.update(&key, |c| {
            c.delivered = c.delivered.max(cursor);
            if none {
                c.skipped = c.skipped.max(cursor);
            }
        });
        Ok(page)
    }

    /// Events of `tenant`'s log past `connector`'s outbox cursor (an upper bound of its
    /// pending replies), for the metrics.
    pub fn outbox_lag(&self, tenant: &TenantId, connector: &Connector) -> u64 {
        let frontier = self.runtime().log().durable_frontier(tenant);
        frontier.saturating_sub(connector.acked())
    }

    /// Acknowledges connector `id`'s outbox up to `tenant_seq` `up_to`: recorded as
    /// `OutboxAcked` and the cursor moved there. `up_to` equal to the cursor changes nothing
    /// (a retried ack); behind it is [`ConnectorError::AckBehind`], past the last handed-out
    /// cursor [`ConnectorError::AckAhead`]. Returns the cursor.
    pub async fn ack(
        &self,
        (tenant, env, id): (&TenantId, &EnvId, &ConnectorId),
        up_to: u64,
    ) -> Result<u64, ConnectorError> {
        let _write = self.writes().lock().await;
        let connector = self
            .get(tenant, env, id)
            .ok_or_else(|| ConnectorError::NotFound(id.clone()))?;
        let acked = connector.acked();
        if up_to < acked {
            let connector = id.clone();
            return Err(ConnectorError::AckBehind {
                connector,
                up_to,
                acked,
            });
        }
        if up_to == acked {
            return Ok(acked);
        }
        let delivered = connector.delivered;
        if up_to > delivered {
            let connector = id.clone();
            return Err(ConnectorError::AckAhead {
                connector,
                up_to,
                delivered,
            });
        }
        let kind = EventKind::OutboxAcked {
            connector: id.to_string(),
            up_to,
        };
        self.append(tenant, &connector, vec![kind]).await?;
        let key = (tenant.clone(), env.clone(), id.clone());
        self.update(&key, |c| c.acked = c.acked.max(up_to));
        Ok(up_to)
    }

    /// Gives up the replies older than `ttl` of every connector of the tenants this node
    /// handles: each connector's run of expired replies after its cursor becomes one
    /// `OutboxDeadLettered` event and the cursor moves past it. Returns `(tenant, connector,
    /// count)` of each recorded dead letter. A failed read or append is logged and retried at
    /// the next sweep. The reads run on the blocking pool.
    pub async fn dead_letter(&self, ttl: Duration) -> Vec<(TenantId, Connector, u64)> {
        let _write = self.writes().lock().await;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let cutoff_ms = now_ms.saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let mine: Vec<(TenantId, Connector)> = self
            .all()
            .into_iter()
            .filter(|(tenant, _)| self.runtime().handles_here(tenant))
            .collect();
        let mut recorded = Vec::new();
        for (tenant, connector) in mine {
            let log = self.runtime().log().clone();
            let (t, c) = (tenant.clone(), connector.clone());
            let found = tokio::task::spawn_blocking(move || {
                outbox::expired(&log, &t, &c, c.acked(), cutoff_ms)
            })
            .await;
            let expired = match found {
                Ok(Ok(Some(expired))) => expired,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    tracing::warn!(tenant = %tenant, connector = %connector.id, error = %e,
                        "outbox dead-letter check failed; retried at the next sweep");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox dead-letter check did not finish");
                    continue;
                }
            };
            let kind = EventKind::OutboxDeadLettered {
                connector: connector.id.to_string(),
                from: expired.from,
                up_to: expired.up_to,
                count: expired.count,
            };
            if let Err(e) = self.append(&tenant, &connector, vec![kind]).await {
                tracing::warn!(tenant = %tenant, connector = %connector.id, error = %e,
                    "outbox dead letter not recorded; retried at the next sweep");
                continue;
            }
            let key = (tenant.clone(), connector.env.clone(), connector.id.clone());
            self.update(&key, |c| {
                c.acked = c.acked.max(expired.up_to);
                c.delivered = c.delivered.max(c.acked);
            });
            recorded.push((tenant, connector, expired.count));
        }
        recorded
    }
}
