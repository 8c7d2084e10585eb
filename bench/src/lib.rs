//! The benchmark driver of tenantry, built on the library's public API only.
//!
//! Modules: `harness` (the flow and config files, the child `serve` and `nats-server`
//! launchers, percentile, pacing, /proc readings), the scenarios `log` (durable append vs raw
//! sled), `cluster` (the log on sled, JetStream 1 node and JetStream 3 nodes R3, and a
//! leader's failover), `runtime` (in process end to end), `edge` (the real server over HTTP and NATS),
//! `history` (a long history read back), `overload` (3× capacity, a noisy neighbour), and
//! `suite` (runs them in one go and makes the table). The `tenantry-bench` binary (main.rs) is
//! the command line over `suite`.

pub mod cluster;
pub mod edge;
pub mod harness;
pub mod history;
pub mod log;
pub mod overload;
pub mod runtime;
pub mod suite;
