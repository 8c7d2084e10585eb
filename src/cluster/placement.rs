//! Which node handles a tenant's messages, in a cluster.
//!
//! With `[cluster]` (and the JetStream backend), each tenant is owned by one node at a time;
//! the others forward its messages to the owner. [`Placement`] is what the runtime asks.

use crate::tenancy::TenantId;

/// Where a tenant's messages go from this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// This node owns the tenant (or there is no cluster): handle it here.
    Local,
    /// The named node owns the tenant: forward to it.
    Remote(String),
    /// No node owns the tenant right now (a failover in progress): retry shortly.
    Unowned,
}

/// Answers "who handles this tenant?" from this node's view of the leases.
pub trait Placement: Send + Sync {
    fn route(&self, tenant: &TenantId) -> Route;
    /// This node's name.
    fn node(&self) -> &str;
}
