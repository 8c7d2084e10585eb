//! The edges: where requests from outside enter, are authenticated or validated, charged to their
//! tenant's quota and handed to the runtime.
//!
//! - `http`: the HTTP API (actix-web, JWT), its metrics listener, `/healthz` and `/readyz`.
//! - `nats`: the NATS ingress and egress (async-nats).
//! - Shared by both: `auth` (token and tenancy headers → `Caller`; signing-key rules), `quota`
//!   (per-tenant rate limits, one per tenant whichever edge a message comes by), `metrics` (the
//!   one registry both edges register their families into), `peer` (what the HTTP edge knows of
//!   the edge beside it: its families and its connection state, without importing it).
//!
//! Invariants: neither edge imports the other; a runtime error's code and client-safe message
//! come from `RuntimeError::public` on both.

pub mod auth;
pub mod http;
pub mod metrics;
pub mod nats;
pub mod peer;
pub mod quota;
