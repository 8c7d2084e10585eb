//! Snapshot store (being written).
