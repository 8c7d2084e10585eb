//! [`SecretError`]: everything the secret store, the master key and token minting can fail with.
//!
//! Invariant: no variant holds a secret value or key bytes, only namespaces, names, paths, sizes
//! and fixed problem descriptions, so an error can be printed and logged as it is.

use std::path::PathBuf;

use chacha20poly1305::aead::rand_core;

use super::consts::{MASTER_KEY_ENV, SECRET_VALUE_BYTES_MAX, SIGNING_KEY_ENV};
use super::name::{Namespace, SecretName};
use crate::edge::auth::SIGNING_KEY_BYTES_MIN;
use crate::tenancy::{EnvId, TeamId, TenantId};

/// A secret-store or token failure. Each variant says who is at fault and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `tenantry token --scope` names an unknown word (or nothing). Caller's fault: use the
    /// words listed.
    #[error("invalid --scope: {0}")]
    InvalidScope(crate::edge::auth::ScopeError),
    /// `tenantry token --scope connector` without `--connector` and `--team`, or `--connector`
    /// with another scope. Caller's fault: a connector token names its connector and team.
    #[error(
        "a connector token needs --scope connector, --connector ID and --team TEAM together \
         ({0})"
    )]
    ConnectorToken(&'static str),
    /// Env `TENANTRY_MASTER_KEY` is set but is not a key. Operator's fault: fix or unset the
    /// variable; retrying will not help.
    #[error(
        "env {MASTER_KEY_ENV} is invalid: {problem}; it must be exactly 64 hex characters (32 \
         bytes), e.g. the output of `openssl rand -hex 32`"
    )]
    MasterKeyEnv {
        /// What is wrong, without the value.
        problem: &'static str,
    },
    /// The master key file exists but does not hold a key. Restore the file from a backup (the
    /// secrets written under it are unreadable without it).
    #[error(
        "master key file {} is invalid: {problem}; it must hold exactly 64 hex characters (32 \
         bytes)",
        path.display()
    )]
    MasterKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong, without the content.
        problem: &'static str,
    },
    /// The master key file is accessible to group or others. Operator's fault: `chmod 600` it
    /// (and consider the key exposed); retrying will not help.
    #[error(
        "refusing to use master key file {path}: its mode is {mode:04o}, which lets group or \
         others access it; run `chmod 600 {path}`",
        path = path.display()
    )]
    MasterKeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret was written under another master key. Use the key it was written with (env
    /// `TENANTRY_MASTER_KEY` or the key file), or set the secret again.
    #[error(
        "secret `{name}` in `{namespace}` was encrypted under a different master key than the \
         one in use ({key_source}); use the master key it was written with, or set the secret \
         again"
    )]
    WrongMasterKey {
        /// Namespace of the secret.
        namespace: Namespace,
        /// Name of the secret.
        name: SecretName,
        /// Where the key in use came from (the env variable or the key file's path).
        key_source: String,
    },
    /// The file does not authenticate for this namespace and name under the right key: it was
    /// copied or renamed from elsewhere, or altered. Never retry; set the secret again.
    #[error(
        "secret `{name}` in `{namespace}` does not decrypt: {} was copied or moved from another \
         namespace or name, or altered; set the secret again",
        path.display()
    )]
    Undecryptable {
        /// Namespace of the secret.
        namespace: Namespace,
        /// Name of the secret.
        name: SecretName,
        /// The file that failed.
        path: PathBuf,
    },
    /// The file is not a secret file this version can read. Restore it or set the secret again.
    #[error("secret file {} is unreadable: {problem}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// The value is empty or longer than [`SECRET_VALUE_BYTES_MAX`]. Caller's fault.
    #[error(
        "value of secret `{name}` in `{namespace}` is {bytes} bytes; it must be 1 to \
         {SECRET_VALUE_BYTES_MAX} bytes"
    )]
    ValueSize {
        /// Namespace of the secret.
        namespace: Namespace,
        /// Name of the secret.
        name: SecretName,
        /// The value's length (at least `SECRET_VALUE_BYTES_MAX + 1` when it was cut off).
        bytes: usize,
    },
    /// An operation that needs the secret found none. Set it first.
    #[error(
        "secret `{name}` not found in `{namespace}`; set it with `tenantry secrets set` (value \
         on stdin)"
    )]
    NotFound {
        /// Namespace searched.
        namespace: Namespace,
        /// Name searched.
        name: SecretName,
    },
    /// A namespace holds more secrets than one listing returns. Split the secrets over teams.
    #[error("namespace `{namespace}` holds more than {max} secrets; refusing to list them all")]
    TooManySecrets {
        /// The namespace.
        namespace: Namespace,
        /// The listing limit.
        max: usize,
    },
    /// Env `TENANTRY_SIGNING_KEY` is set but unusable. Operator's fault: fix or unset it.
    #[error("env {SIGNING_KEY_ENV} is invalid: {problem}")]
    SigningKeyEnv {
        /// What is wrong, without the value.
        problem: &'static str,
    },
    /// No JWT signing key anywhere. Operator's fault: provide one as the message says.
    #[error(
        "no JWT signing key: set env {SIGNING_KEY_ENV} (e.g. `export \
         {SIGNING_KEY_ENV}=$(tenantry keygen)`), or store one with `tenantry keygen | tenantry \
         secrets set --global signing_key`"
    )]
    NoSigningKey,
    /// The signing key is shorter than [`SIGNING_KEY_BYTES_MIN`]: anyone holding one token
    /// could brute-force it offline and forge tokens for every tenant. Operator's fault: replace
    /// it with the output of `tenantry keygen`.
    #[error(
        "the JWT signing key in {source_name} is {bytes} bytes; HS256 needs at least \
         {SIGNING_KEY_BYTES_MIN} bytes (RFC 7518 §3.2), or one token is enough to brute-force it; \
         make one with `tenantry keygen`: `export {SIGNING_KEY_ENV}=$(tenantry keygen)`, or \
         `tenantry keygen | tenantry secrets set --global signing_key`"
    )]
    WeakSigningKey {
        /// Where the key came from: the env variable or the secret's name.
        source_name: String,
        /// The key's length.
        bytes: usize,
    },
    /// A `kid` that cannot name a key secret (`signing_key.{kid}`). Caller's fault.
    #[error(
        "kid {kid:?} cannot name an HS256 key: a kid is 1 to 116 characters of a-z, 0-9, `_`,          `.`, `-` (the key is the secret global/signing_key.{{kid}})"
    )]
    InvalidKid {
        /// The kid as given (at most 64 characters).
        kid: String,
    },
    /// No key is stored for this `kid`. Operator's fault: store one.
    #[error(
        "no HS256 key for kid {kid:?}: store one with `tenantry keygen | tenantry secrets set \
         --global signing_key.{kid}`"
    )]
    NoKidKey {
        /// The kid asked for.
        kid: String,
    },
    /// A token was asked for a tenant this config does not serve. Caller's fault.
    #[error("tenant `{tenant}` is not configured (configured: {configured})")]
    UnknownTenant {
        /// The tenant asked for.
        tenant: TenantId,
        /// The configured tenants, comma-separated.
        configured: String,
    },
    /// A token was asked for an env the tenant does not have. Caller's fault.
    #[error("tenant `{tenant}` has no environment `{env}` (its environments: {configured})")]
    UnknownEnv {
        /// The tenant.
        tenant: TenantId,
        /// The env asked for.
        env: EnvId,
        /// The tenant's envs, comma-separated.
        configured: String,
    },
    /// A token was asked for a team the tenant does not have. Caller's fault.
    #[error("tenant `{tenant}` has no team `{team}` (its teams: {configured})")]
    UnknownTeam {
        /// The tenant.
        tenant: TenantId,
        /// The team asked for.
        team: TeamId,
        /// The tenant's teams, comma-separated.
        configured: String,
    },
    /// The token lifetime is zero or too long. Caller's fault.
    #[error("token lifetime {ttl} is out of range: {problem}")]
    TokenTtl {
        /// The lifetime asked for, as humantime prints it.
        ttl: String,
        /// The allowed range.
        problem: String,
    },
    /// The `sub` claim is empty, too long or has control characters. Caller's fault.
    #[error("invalid token subject: {problem}")]
    TokenSubject {
        /// What is wrong.
        problem: String,
    },
    /// The system clock reads before 1970. Fix the clock.
    #[error("the system clock is before the Unix epoch")]
    Clock,
    /// JWT encoding failed (a bug or an unusable key). Report it; retrying will not help.
    #[error("cannot sign the token")]
    Mint(#[source] jsonwebtoken::errors::Error),
    /// Encryption failed; with values bounded by [`SECRET_VALUE_BYTES_MAX`] this is a bug.
    #[error("cannot encrypt secret `{name}` in `{namespace}`")]
    Encrypt {
        /// Namespace of the secret.
        namespace: Namespace,
        /// Name of the secret.
        name: SecretName,
    },
    /// The OS random number generator failed. Nothing was written; retry later.
    #[error("the OS random number generator failed")]
    Random(#[source] rand_core::Error),
    /// A file system operation failed. Check the path's permissions and free space, then retry.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the value from stdin or writing output failed.
    #[error("cannot {action}")]
    Stdio {
        /// What was being done, e.g. "read the value from stdin".
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SecretError {
    /// Builds a [`SecretError::Io`]; for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> SecretError {
        let path = path.to_owned();
        move |source| SecretError::Io {
            action,
            path,
            source,
        }
    }
}
