//! Where a secret lives: its [`Namespace`] and its [`SecretName`].
//!
//! Invariants:
//! - A [`SecretName`] matches `^[a-z0-9][a-z0-9_.-]{0,127}$` and contains no `..`, so it is a safe
//!   file name (no `/`, no leading `.`, never `.` or `..`).
//! - A [`Namespace`] holds only validated ids, so the directory built from it stays under the
//!   secrets root, and distinct namespaces map to distinct directories and distinct associated
//!   data (a tenant named `global` does not alias the platform namespace).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::tenancy::{TeamId, TenantId};

/// A secret's name. Invariant: matches `^[a-z0-9][a-z0-9_.-]{0,127}$` without `..`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

/// A secret name that breaks the rule. Caller's fault: fix the name; retrying will not help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid secret name {value:?}: must be 1-128 chars of [a-z0-9_.-], starting with a \
     lowercase letter or digit, without `..`"
)]
pub struct InvalidSecretName {
    /// The rejected name, truncated to a printable prefix so that hostile input stays short.
    pub value: String,
}

impl SecretName {
    /// Longest name, in bytes.
    pub const LEN_MAX: usize = 128;

    /// Validates `raw`; the only way to obtain a name.
    pub fn parse(raw: &str) -> Result<SecretName, InvalidSecretName> {
        let bytes = raw.as_bytes();
        let len_ok = (1..=Self::LEN_MAX).contains(&bytes.len());
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'));
        if len_ok && first_ok && rest_ok && !raw.contains("..") {
            Ok(SecretName(raw.to_owned()))
        } else {
            const SHOWN_CHARS_MAX: usize = 80;
            Err(InvalidSecretName {
                value: raw.chars().take(SHOWN_CHARS_MAX).collect(),
            })
        }
    }

    /// The JWT signing key's name in `global/` (docs/secrets.md#signing-key).
    pub fn signing_key() -> SecretName {
        SecretName(SIGNING_KEY_NAME.to_owned())
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Name of the JWT signing key in `global/`.
pub const SIGNING_KEY_NAME: &str = "signing_key";

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for SecretName {
    type Err = InvalidSecretName;
    fn from_str(raw: &str) -> Result<SecretName, InvalidSecretName> {
        SecretName::parse(raw)
    }
}

/// A set of secrets: the platform's, a tenant's, or one team's of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// `global/`: platform secrets (the JWT signing key). Never reached from a `TenantCtx`.
    Global,
    /// `{tenant}/`: shared by all of a tenant's teams.
    Tenant(TenantId),
    /// `{tenant}/teams/{team}/`: one team's; a lookup tries it before the tenant's.
    Team(TenantId, TeamId),
}

impl Namespace {
    /// The namespace's directory under the secrets root. Tenants live under `tenants/` so that a
    /// tenant named `global` cannot share a directory with the platform namespace.
    pub(crate) fn dir(&self, root: &Path) -> PathBuf {
        match self {
            Namespace::Global => root.join("global"),
            Namespace::Tenant(tenant) => root.join("tenants").join(tenant.as_str()),
            Namespace::Team(tenant, team) => root
                .join("tenants")
                .join(tenant.as_str())
                .join("teams")
                .join(team.as_str()),
        }
    }

    /// Unambiguous bytes naming the namespace, for the ciphertext's associated data. Ids contain
    /// no NUL, so the NUL separators cannot be forged by an id.
    pub(crate) fn associated_data(&self, out: &mut Vec<u8>) {
        match self {
            Namespace::Global => out.extend_from_slice(b"global"),
            Namespace::Tenant(tenant) => {
                out.extend_from_slice(b"tenant\0");
                out.extend_from_slice(tenant.as_str().as_bytes());
            }
            Namespace::Team(tenant, team) => {
                out.extend_from_slice(b"team\0");
                out.extend_from_slice(tenant.as_str().as_bytes());
                out.push(0);
                out.extend_from_slice(team.as_str().as_bytes());
            }
        }
    }
}

/// As docs/secrets.md writes namespaces: `global/`, `acme/`, `acme/teams/support/`.
impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Namespace::Global => f.write_str("global/"),
            Namespace::Tenant(tenant) => write!(f, "{tenant}/"),
            Namespace::Team(tenant, team) => write!(f, "{tenant}/teams/{team}/"),
        }
    }
}
