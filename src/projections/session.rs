//! Session state (being written).
