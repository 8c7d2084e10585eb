//! Events: the on-disk contract (`schema`), its byte formats (`codec`, `keys`), the sealing of
//! personal fields (`seal`) and its keys (`keyring`), and the durable, tenant-prefixed log on
//! sled (`log`).
//!
//! Invariant: only this module touches sled.

pub mod codec;
pub mod keyring;
pub(crate) mod keys;
pub mod log;
pub(crate) mod msgpack;
pub mod projection;
pub mod schema;
pub mod seal;
