//! Flow engine (being written).
