//! tenantry: a multi-tenant, event-sourced conversation runtime.
//!
//! Modules in reading order: `tenancy` (validated ids, `TenantCtx`), `config` (config.toml, seed
//! YAML, flows), `events` (schema, codec, the sled log), `projections` (session state,
//! snapshots), `flow` (the flow engine), `bench` (measurement drivers).

pub mod actors;
pub mod audit;
pub mod bench;
pub mod config;
pub mod edge;
pub mod events;
pub mod flow;
pub mod nats;
pub mod projections;
pub mod secrets;
pub mod tenancy;
