//! tenantry: a multi-tenant, event-sourced conversation runtime.
//!
//! Modules in reading order: `tenancy` (validated ids, `TenantCtx`), `config` (config.toml, seed
//! YAML, flows), `events` (schema, codec, the sled log, projection storage), `flow` (the flow
//! engine), `projections` (session state, snapshots, usage and session read models), `actors`
//! (the runtime), `edge` (the HTTP and NATS edges), `secrets` (encrypted secrets, tokens),
//! `audit` (export, verify, replay), `cluster` (which log backend, and opening it), `offboard` (deleting a tenant's data), `cli` (the command line), `fuzzing` (entry points of the fuzz targets and the
//! decoders' property tests), `private_fs` (owner-only modes of what is stored). The benchmark
//! driver is its own crate (`bench/`, `tenantry-bench`) over this public API.

// A test may be one long scenario; the limit on function length is for the code under test.
#![cfg_attr(test, allow(clippy::too_many_lines))]

pub mod actors;
pub mod audit;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod connectors;
pub mod edge;
pub mod erase;
pub mod events;
pub mod flow;
pub mod fuzzing;
pub mod offboard;
pub mod private_fs;
pub mod projections;
pub mod secrets;
pub mod tenancy;

/// This library's version (the package version), e.g. for reports of tools built on it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
