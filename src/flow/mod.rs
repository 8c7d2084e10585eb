//! Running flows: the deterministic flow engine (`engine`) that turns one inbound message and a
//! session's state into the events to append.
//!
//! Invariant: no clock, randomness or I/O inside; a flow run is a function of its inputs, so a
//! session can be re-executed from its events.

pub mod engine;
