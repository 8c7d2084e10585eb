//! The single integration-test binary: drives the real `tenantry` binary and the library's
//! public API the way users and operators do.

// Test code may panic on unexpected data: that is how a test fails.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
// A test may be one long scenario; the limit on function length is for the code under test.
#![allow(clippy::too_many_lines)]

mod anchor;
mod audit;
mod check_config;
mod cli_server;
mod cluster;
mod cluster_forward;
mod connectors;
mod console;
mod corruption;
mod corruption_large;
mod corruption_snapshots;
mod crash;
mod crash_writer;
mod debug_api;
mod erase;
mod erase_cluster;
mod http;
mod jetstream;
mod jwks;
mod limits;
mod migrate;
mod nats;
mod offboard;
mod offboard_jetstream;
mod outbox;
mod overload;
mod projections;
mod readiness;
mod registry;
mod reports;
mod retention;
mod route_matrix;
mod scopes;
mod secrets;
mod serve;
mod server_crash;
mod sessions_list;
mod snapshots;
mod streams;
mod support;
mod webhook;
mod webhook_delivery;
