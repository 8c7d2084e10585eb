//! The HTTP edge (docs/http.md): the actix-web API server and its metrics listener.
//!
//! Files, one concept each: `server` (lifecycle: start, wait, stop, and the per-request
//! middleware), `routes` (the route table and the message and session handlers), `reports`
//! (`/usage` and the streamed `/audit/export`), `body` (body reading and draining), `state`
//! (what handlers share, and the `Caller` extractor), `listener` (timeouts and lifecycle both
//! listeners share), `metrics_listener` (`/metrics` on its own address), `metrics` (the HTTP
//! metric families), `error` (`ApiError` → status, code, JSON body: the one place statuses are
//! decided), `dto` (the API's JSON shapes), `observe` (the per-request log line, bounded),
//! `export_slots` (how many exports may run at once), `debug` (the online debugging routes:
//! point-in-time state, what-if, close/reset, verify), `stream` (the live event streams, SSE),
//! `sessions` (the sessions list: filters, order, cursor), `console` (the operator console's
//! embedded files under `/console/` and the OpenAPI document, served without auth), `admin`
//! (the admin routes: deleting the caller's tenant), `connectors` (the connector registry's
//! routes, and the check holding a connector token's messages to its channel).
//!
//! Invariants:
//! - Every `/api/v1` handler takes a `Caller`, so no handler runs before the token, the tenancy
//!   headers and the tenant's quota have been checked, and no body is read before that.
//! - Every id from a request is parsed into its newtype here; storage is reached only through
//!   `TenantCtx`-scoped handles built from the caller's token, so another tenant's, env's or
//!   team's data is unreachable, and absent data looks the same whoever owns it (404).
//! - Request bodies are counted on the stream (chunked ones too) and bounded before parsing.

mod admin;
mod body;
mod connectors;
pub mod console;
mod debug;
pub mod dto;
pub mod error;
pub mod export_slots;
pub mod listener;
pub mod metrics;
mod metrics_listener;
pub mod observe;
mod outbox;
mod reports;
mod routes;
pub mod server;
mod sessions;
mod state;
mod stream;
mod webhook;
mod webhook_worker;

pub use self::listener::HttpError;
pub use self::routes::ROUTES;
pub use self::server::ApiServer;
