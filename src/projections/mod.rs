//! Read models folded from the log: session state (`session`) and its CBOR snapshots
//! (`snapshot`).
//!
//! Invariant: every projection is a pure fold of events; deleting it and replaying the log gives
//! the same result.

pub mod load;
pub mod projector;
pub mod session;
pub mod snapshot;
