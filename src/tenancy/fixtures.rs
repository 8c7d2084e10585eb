//! Test fixtures: ids parsed from literals that are known to be valid.

use std::str::FromStr;

use super::{ChannelId, TeamId, TenantId};

/// Any id (or other `FromStr` value) from a literal.
pub(crate) fn id<T: FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

pub(crate) fn tenant(s: &str) -> TenantId {
    id(s)
}

pub(crate) fn team(s: &str) -> TeamId {
    id(s)
}

pub(crate) fn channel(s: &str) -> ChannelId {
    id(s)
}
