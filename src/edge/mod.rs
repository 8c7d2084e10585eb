//! The HTTP edge (DESIGN §5): actix-web server, authentication, quotas, error mapping, metrics.
//!
//! Files, one concept each: `http` (server lifecycle, routes, handlers), `auth` (token and
//! tenancy headers → `Caller`), `error` (`ApiError` → status, code, JSON body: the one place
//! statuses are decided), `quota` (per-tenant rate limits), `metrics` (Prometheus families),
//! `dto` (the API's JSON shapes), `observe` (the per-request log line, bounded), `reports`
//! (usage and the audit export), `export_slots` (how many exports may run at once).
//!
//! Invariants:
//! - Every `/api/v1` handler takes a `Caller`, so no handler runs before the token, the tenancy
//!   headers and the tenant's quota have been checked, and no body is read before that.
//! - Every id from a request is parsed into its newtype here; storage is reached only through
//!   `TenantCtx`-scoped handles built from the caller's token, so another tenant's, env's or
//!   team's data is unreachable, and absent data looks the same whoever owns it (404).
//! - Request bodies are counted on the stream (chunked ones too) and bounded before parsing.

pub mod auth;
pub mod dto;
pub mod error;
pub mod export_slots;
pub mod http;
pub mod metrics;
pub mod observe;
pub mod quota;
mod reports;
