//! The actor runtime: one `TenantActor` per tenant, one `EnvActor` per environment of it, one
//! `SessionActor` per active session, on a few arbiters (threads); and the [`runtime::Runtime`]
//! handle that the edges (HTTP, NATS) and tests call.
//!
//! Imports run one way: `runtime` → `tenant` → `env` → `session` (and `runtime` → `lane`);
//! each uses `shared` (options, metrics, the handles every actor shares) and `messages` (what
//! the actors send each other and the runtime's callers), which import no actor (a message
//! carries its `lane::Running` place, which holds the tenant actor only as a `Recipient`).
//!
//! ```text
//! Runtime::send ──lane──▶ TenantActor ──▶ EnvActor ──resolve session──▶ SessionActor
//!                                                                    │ dedup, run flow,
//!   ◀───────────── Ack (after the durable append) ──────────────────┘ append, apply, snapshot
//! ```
//!
//! Invariants:
//! - actors share no mutable memory; they exchange messages (the log handle is the shared,
//!   internally synchronised exception);
//! - a tenant's admitted messages start in the order they were admitted, at most its share of
//!   `running_max` at once (`lane`);
//! - one session actor per session at a time, and it handles one message at a time, so a
//!   session's order is its arrival order and the log's seq check never fires in normal running;
//! - every mailbox is bounded and filled with `try_send`: a full one is `Overloaded` for that
//!   caller, never unbounded memory;
//! - a tenant or env actor holds only its own tenant's config;
//! - tenant and env actors are supervised: a panic in one restarts that actor alone.

pub mod clock;
mod env;
mod lane;
pub mod messages;
pub mod retention;
pub mod runtime;
mod session;
pub mod shared;
mod slots;
mod supervise;
mod tenant;

#[cfg(test)]
mod idle_tests;
#[cfg(test)]
mod operator_tests;
#[cfg(test)]
mod pause_tests;
#[cfg(test)]
mod record_tests;
#[cfg(test)]
mod resilience_tests;
#[cfg(test)]
mod tests;
