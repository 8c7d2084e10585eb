//! Measurement drivers behind `tenantry bench`, and the load driver of the crash test.
//!
//! Nothing here is used by the server; it only drives the public APIs of the other modules.

pub mod crash_writer;
pub mod edge;
pub mod history;
pub mod log;
pub mod overload;
pub mod runtime;
pub mod suite;
