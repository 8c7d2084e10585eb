//! What the HTTP edge knows of an edge served beside it by the same process (the NATS edge),
//! without importing it: its metric families join the one [`MetricsRegistry`] that `/metrics`
//! renders, and its [`Link`] to its broker is one of `/readyz`'s reasons.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::metrics::MetricsRegistry;
use crate::tenancy::TenantId;

/// Removes every metrics series of a tenant from an edge's families (offboarding); returns how
/// many were removed.
pub type ForgetTenant = Arc<dyn Fn(&TenantId) -> u64 + Send + Sync>;

/// An edge served beside the HTTP API.
pub trait PeerEdge {
    /// The edge's name in `/readyz` reasons (`nats`).
    const NAME: &'static str;

    /// Adds the edge's families to the shared registry.
    fn register(&self, registry: &mut MetricsRegistry);

    /// The edge's connection state, as its client reports it.
    fn link(&self) -> Link;

    /// What removes a tenant's series from the edge's families.
    fn forget_tenant(&self) -> ForgetTenant;
}

/// Whether an edge's client is connected to its broker right now. Cheap to clone; false until
/// the client reports its first connection.
#[derive(Clone, Debug, Default)]
pub struct Link(Arc<AtomicBool>);

impl Link {
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Records a connection change reported by the client.
    pub fn set(&self, connected: bool) {
        self.0.store(connected, Ordering::SeqCst);
    }
}
