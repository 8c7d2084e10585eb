//! `serve`'s head signing: every tenant it serves gets its durable chain head signed and stored
//! once `audit.head_sign_every_events` events were appended since its last signed head, or
//! `audit.head_sign_interval` after it if the head moved at all, and once more when `serve`
//! stops (so a drained tail is anchored).
//!
//! It runs on a thread of its own, waking every [`SIGN_TICK`]; a failure is logged and retried at
//! the next tick, never fatal (appends do not depend on it).

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{sign_and_store, stored_heads, HeadSigner};
use crate::config::audit::AuditConfig;
use crate::events::log::EventLog;
use crate::tenancy::TenantId;

/// How often the signing thread looks at the tenants' heads.
pub const SIGN_TICK: Duration = Duration::from_secs(1);

/// The running signer; stopping it (or dropping it) signs the final heads.
pub struct HeadSigning {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Per tenant: the last signed `tenant_seq` and when it was signed.
struct Last {
    tenant_seq: u64,
    at: Instant,
}

impl HeadSigning {
    /// Starts signing the heads of `tenants`.
    pub fn start(
        log: EventLog,
        signer: Arc<HeadSigner>,
        tenants: Vec<TenantId>,
        config: AuditConfig,
    ) -> std::io::Result<HeadSigning> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tenantry-head-sign".into())
            .spawn(move || {
                let mut last: HashMap<TenantId, Last> = HashMap::new();
                for tenant in &tenants {
                    let newest = stored_heads(&log, tenant, u64::MAX, 1).ok();
                    let tenant_seq = newest.and_then(|h| h.last().map(|h| h.tenant_seq));
                    last.insert(
                        tenant.clone(),
                        Last {
                            tenant_seq: tenant_seq.unwrap_or(0),
                            at: Instant::now(),
                        },
                    );
                }
                loop {
                    let final_round = match stopped.recv_timeout(SIGN_TICK) {
                        Err(RecvTimeoutError::Timeout) => false,
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                    };
                    for tenant in &tenants {
                        tick(&log, &signer, tenant, &config, &mut last, final_round);
                    }
                    if final_round {
                        return;
                    }
                }
            })?;
        Ok(HeadSigning {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Signs the final heads and stops the thread.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HeadSigning {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signs `tenant`'s head when it is due (or moved at all, in the final round).
fn tick(
    log: &EventLog,
    signer: &HeadSigner,
    tenant: &TenantId,
    config: &AuditConfig,
    last: &mut HashMap<TenantId, Last>,
    final_round: bool,
) {
    let durable = log.durable_frontier(tenant);
    let Some(prev) = last.get(tenant) else {
        return;
    };
    if durable <= prev.tenant_seq {
        return;
    }
    let due = final_round
        || durable - prev.tenant_seq >= config.head_sign_every_events
        || prev.at.elapsed() >= config.head_sign_interval;
    if !due {
        return;
    }
    match sign_and_store(log, signer, tenant, now_ms()) {
        Ok(Some(head)) => {
            tracing::debug!(tenant = %tenant, tenant_seq = head.tenant_seq, "chain head signed");
            last.insert(
                tenant.clone(),
                Last {
                    tenant_seq: head.tenant_seq,
                    at: Instant::now(),
                },
            );
        }
        Ok(None) => {}
        Err(e) => tracing::error!(tenant = %tenant, error = %e, "signing the chain head failed"),
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}
