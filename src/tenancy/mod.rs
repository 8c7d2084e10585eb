//! Tenancy identifiers and the `TenantCtx` that bounds every operation.
//!
//! Ids are validated once, at the boundary (config, HTTP headers, NATS subject tokens, CLI args),
//! into newtypes whose only constructor is `parse`. Code past the boundary cannot hold an
//! unvalidated id, so every id is also a safe NATS subject token and a safe path segment:
//! no `.`, `*`, `>`, `/`, whitespace, NUL, `..` or non-ASCII can get in.
//!
//! Invariant: there is no way to build an id without passing its validation rule.
//!
//! An id holds its text in an `Arc<str>`: a clone shares it instead of copying it, so the many
//! holders of one tenant's, env's or team's id (every live session actor, every event in
//! flight) cost a pointer each, and a session keeps one copy of its own id however many places
//! hold it. Serialized, an id is its plain string, as before.

use std::fmt;
use std::sync::{Arc, LazyLock};

/// Which id failed validation; named in every [`InvalidId`] so the caller knows which field to fix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdField {
    Tenant,
    Env,
    Team,
    Channel,
    Session,
    Connector,
}

impl IdField {
    /// The field's name as users write it (config keys, headers, CLI flags).
    pub fn name(self) -> &'static str {
        match self {
            IdField::Tenant => "tenant",
            IdField::Env => "env",
            IdField::Team => "team",
            IdField::Channel => "channel",
            IdField::Session => "session",
            IdField::Connector => "connector",
        }
    }

    fn rule(self) -> &'static str {
        match self {
            IdField::Session => "1-128 chars of [A-Za-z0-9_-], starting with a letter or digit",
            _ => "1-63 chars of [a-z0-9_-], starting with a lowercase letter or digit",
        }
    }
}

/// An id that does not match its rule. Caller's fault: report it (HTTP 400, config error), never
/// retry with the same input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} id {value:?}: must be {}", field.name(), field.rule())]
pub struct InvalidId {
    pub field: IdField,
    /// The rejected input, truncated to a printable prefix so that hostile input stays short.
    pub value: String,
}

impl InvalidId {
    fn new(field: IdField, raw: &str) -> InvalidId {
        const SHOWN_CHARS_MAX: usize = 80;
        InvalidId {
            field,
            value: raw.chars().take(SHOWN_CHARS_MAX).collect(),
        }
    }
}

/// Rule for tenant, env, team, channel and connector ids: `^[a-z0-9][a-z0-9_-]{0,62}$`.
fn is_scope_id(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    (1..=SCOPE_ID_LEN_MAX).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// Rule for session ids: `^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`.
fn is_session_id(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    (1..=SessionId::LEN_MAX).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Longest tenant, env, team or channel id, in bytes.
pub const SCOPE_ID_LEN_MAX: usize = 63;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $field:expr, $rule:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `raw`; the only way to obtain this id.
            pub fn parse(raw: &str) -> Result<$name, InvalidId> {
                if $rule(raw) {
                    Ok($name(Arc::from(raw)))
                } else {
                    Err(InvalidId::new($field, raw))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Whether `raw` is a valid id of this kind, checked without building one (for
            /// reads that borrow ids from stored bytes).
            pub fn is_valid(raw: &str) -> bool {
                $rule(raw)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(raw: &str) -> Result<$name, InvalidId> {
                $name::parse(raw)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        /// Deserializing validates too, so ids read from disk or the wire keep the invariant.
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_newtype!(
    /// An organisation. Invariant: matches `[a-z0-9][a-z0-9_-]{0,62}`.
    TenantId, IdField::Tenant, is_scope_id
);
id_newtype!(
    /// An environment of a tenant (`prod`, `staging`, ...). Same rule as [`TenantId`].
    EnvId, IdField::Env, is_scope_id
);
id_newtype!(
    /// A team of a tenant. Same rule as [`TenantId`].
    TeamId, IdField::Team, is_scope_id
);
id_newtype!(
    /// A messaging provider instance of a team (`slack`, `webchat`, ...). Same rule as [`TenantId`].
    ChannelId, IdField::Channel, is_scope_id
);
id_newtype!(
    /// A connector (the process bridging a channel's provider to the runtime), named in a
    /// connector token's `connector` claim. Same rule as [`TenantId`].
    ConnectorId, IdField::Connector, is_scope_id
);
id_newtype!(
    /// One user conversation. Invariant: matches `[A-Za-z0-9][A-Za-z0-9_-]{0,127}`.
    SessionId, IdField::Session, is_session_id
);

/// The text of [`DEFAULT_SCOPE`] ids, allocated once: every default env and team shares it.
static DEFAULT_SCOPE_TEXT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(DEFAULT_SCOPE));

impl EnvId {
    /// The environment used when none is given.
    pub fn default_env() -> EnvId {
        EnvId(DEFAULT_SCOPE_TEXT.clone())
    }
}

impl TeamId {
    /// The team used when none is given.
    pub fn default_team() -> TeamId {
        TeamId(DEFAULT_SCOPE_TEXT.clone())
    }
}

impl SessionId {
    /// Longest session id, in bytes.
    pub const LEN_MAX: usize = 128;

    /// A fresh session id (UUID v7, hyphenated), for messages that name no session.
    pub fn generate() -> SessionId {
        let mut text = uuid::Uuid::encode_buffer();
        SessionId(Arc::from(
            &*uuid::Uuid::now_v7().hyphenated().encode_lower(&mut text),
        ))
    }
}

/// The name of the default env and team.
pub const DEFAULT_SCOPE: &str = "default";

/// The scope of every operation: one tenant, one of its environments, and optionally one team.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TenantCtx {
    pub tenant: TenantId,
    pub env: EnvId,
    pub team: Option<TeamId>,
}

impl TenantCtx {
    pub fn new(tenant: TenantId, env: EnvId, team: Option<TeamId>) -> TenantCtx {
        TenantCtx { tenant, env, team }
    }

    /// The team this context writes under: its own, or `default` when it has none.
    pub fn team_or_default(&self) -> TeamId {
        self.team.clone().unwrap_or_else(TeamId::default_team)
    }

    /// The seed's state key: `state:{tenant}:{env}:{team|default}:{session}`.
    pub fn state_key(&self, session: &SessionId) -> String {
        let team = self.team.as_ref().map_or(DEFAULT_SCOPE, TeamId::as_str);
        format!("state:{}:{}:{}:{}", self.tenant, self.env, team, session)
    }
}

impl fmt::Display for TenantCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let team = self.team.as_ref().map_or(DEFAULT_SCOPE, TeamId::as_str);
        write!(f, "{}/{}/{}", self.tenant, self.env, team)
    }
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
