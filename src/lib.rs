//! tenantry: a multi-tenant, event-sourced conversation runtime.
//!
//! Modules in reading order: `tenancy` (validated ids, `TenantCtx`), `config` (config.toml, seed
//! YAML, flows), `events` (schema, codec, the sled log), `projections` (session state,
//! snapshots), `flow` (the flow engine), `bench` (measurement drivers).

pub mod actors;
pub mod bench;
pub mod config;
pub mod events;
pub mod flow;
pub mod projections;
pub mod tenancy;
