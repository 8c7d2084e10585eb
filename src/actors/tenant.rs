//! `TenantActor`: one per configured tenant. Starts an `EnvActor` per environment of the tenant
//! and forwards each message to the right one.
//!
//! Runs under a `Supervisor` (see `supervise`): a panic in a handler restarts this actor, with
//! its env actors (separate actors) untouched and still its own.
//!
//! Invariant: holds its own tenant's config and nothing of any other tenant.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use actix::prelude::*;

use super::env::EnvActor;
use super::messages::{Deliver, ResetSession, RuntimeError, Shutdown, Sweep};
use super::shared::{EnvShared, Shared, TENANT_MAILBOX};
use super::supervise::guard;
use crate::config::TenantConfig;
use crate::tenancy::EnvId;

pub(super) struct TenantActor {
    shared: Arc<Shared>,
    tenant: Arc<TenantConfig>,
    envs: HashMap<EnvId, Addr<EnvActor>>,
}

impl TenantActor {
    pub(super) fn new(shared: Arc<Shared>, tenant: Arc<TenantConfig>) -> TenantActor {
        TenantActor {
            shared,
            tenant,
            envs: HashMap::new(),
        }
    }
}

impl Actor for TenantActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(TENANT_MAILBOX);
        if !self.envs.is_empty() {
            // A restart: the env actors outlived the panic and keep serving.
            return;
        }
        let sessions = Arc::new(AtomicUsize::new(0));
        for env in &self.tenant.environments {
            let env_shared = Arc::new(EnvShared {
                runtime: self.shared.clone(),
                tenant: self.tenant.clone(),
                env: env.id.clone(),
                tenant_sessions: sessions.clone(),
            });
            // Env actors live on the tenant's arbiter (this thread); their sessions are spread
            // over all arbiters.
            let addr = Supervisor::start(|ctx| EnvActor::new(env_shared, ctx));
            self.envs.insert(env.id.clone(), addr);
        }
    }
}

impl Supervised for TenantActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(tenant = %self.tenant.id, "tenant actor restarting after a panic");
    }
}

impl Handler<Deliver> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        guard(self, ctx, "deliver", |act, _ctx| act.forward(msg));
    }
}

impl TenantActor {
    fn forward(&mut self, msg: Deliver) {
        #[cfg(test)]
        if msg.inbound.text == super::supervise::TENANT_PANIC_PROBE {
            panic!("injected tenant actor panic");
        }
        let Some(env) = self.envs.get(&msg.ctx.env) else {
            let err = RuntimeError::UnknownEnv {
                tenant: msg.ctx.tenant.clone(),
                env: msg.ctx.env.clone(),
            };
            msg.answer(Err(err));
            return;
        };
        match env.try_send(msg) {
            Ok(()) => {}
            Err(SendError::Full(msg)) => msg.answer(Err(RuntimeError::Overloaded)),
            Err(SendError::Closed(msg)) => msg.answer(Err(RuntimeError::ShuttingDown)),
        }
    }
}

impl TenantActor {
    /// Sends the message `make` builds to every env actor; resolves once all have handled it.
    fn to_every_env<M>(&self, make: impl Fn() -> M) -> ResponseFuture<()>
    where
        M: Message<Result = ()> + Send + 'static,
        EnvActor: Handler<M>,
    {
        let pending: Vec<_> = self.envs.values().map(|env| env.send(make())).collect();
        Box::pin(async move {
            for done in pending {
                let _ = done.await;
            }
        })
    }
}

impl Handler<Shutdown> for TenantActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        self.to_every_env(|| Shutdown)
    }
}

/// Forwarded to the env actor that owns the session.
impl Handler<ResetSession> for TenantActor {
    type Result = ();

    fn handle(&mut self, msg: ResetSession, _ctx: &mut Self::Context) {
        let Some(env) = self.envs.get(&msg.env) else {
            // No such env: no such session, so nothing is quarantined.
            return msg.answer(Ok(()));
        };
        match env.try_send(msg) {
            Ok(()) => {}
            Err(SendError::Full(msg)) => msg.answer(Err(RuntimeError::Overloaded)),
            Err(SendError::Closed(msg)) => msg.answer(Err(RuntimeError::ShuttingDown)),
        }
    }
}

/// Forwarded to every env actor; tests and operators use it to trigger passivation now.
impl Handler<Sweep> for TenantActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: Sweep, _ctx: &mut Self::Context) -> Self::Result {
        self.to_every_env(|| Sweep)
    }
}
