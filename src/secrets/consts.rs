//! The secret store's named constants that its errors quote too: where keys come from, and how
//! large a value may be. Here, below `error`, `key` and `store`, so that all three can name them
//! and none imports another for it.

/// Env variable holding the master key as 64 hex characters; overrides the key file.
pub const MASTER_KEY_ENV: &str = "TENANTRY_MASTER_KEY";
/// Env variable holding the JWT signing key (its UTF-8 bytes); overrides `global/signing_key`.
pub const SIGNING_KEY_ENV: &str = "TENANTRY_SIGNING_KEY";
/// Largest secret value, in bytes: room for keys, tokens and certificates, small enough to read
/// whole.
pub const SECRET_VALUE_BYTES_MAX: usize = 64 * 1024;
