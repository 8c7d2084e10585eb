//! Secrets (docs/secrets.md): an encrypted-at-rest store with platform, tenant and team namespaces, the
//! master key that protects it, and the minting of the HS256 JWTs the HTTP edge accepts.
//!
//! - `consts`: the env variable names and the value size bound that `error`, `key` and `store`
//!   share.
//! - `value`: [`value::SecretValue`], a value that never prints and is wiped on drop.
//! - `name`: [`name::SecretName`] and [`name::Namespace`], the validated address of a secret.
//! - `key`: the master key (env `TENANTRY_MASTER_KEY`, else `{data_dir}/master.key`).
//! - `store`: [`store::SecretStore`], one encrypted file per secret under `{data_dir}/secrets/`.
//! - `kids`: the HS256 keys named by a `kid` (`global/signing_key.{kid}`), for rotation.
//! - `token`: JWT [`token::Claims`] and [`token::mint`].
//! - (the `tenantry secrets`, `token` and `keygen` subcommands are in `crate::cli::secrets`.)
//!
//! Invariants:
//! - A value is on disk only as XChaCha20-Poly1305 ciphertext whose associated data binds it to
//!   its namespace and name: a file copied to another namespace or name fails to decrypt.
//! - File paths are built only from validated ids and validated secret names.
//! - A tenant-scoped lookup ([`store::SecretStore::lookup`]) reads its team's namespace, then its
//!   tenant's; never `global/`, never another tenant's.
//! - No error, `Debug` or `Display` output contains a secret value or key.

// STYLE: every public item is documented; the compiler holds this module to it.
#![warn(missing_docs)]

pub mod consts;
pub mod error;
pub mod key;
pub mod kids;
pub mod name;
pub mod store;
pub mod token;
pub mod value;

#[cfg(test)]
mod tests;
