//! Tokens verified lately. A client sends the same token with every request, and checking its
//! signature and decoding its header and claims is most of what admitting a request costs
//! (perf of the server under a noisy tenant: ~11% of the HTTP workers' samples, the largest part
//! of a refusal). A hit answers the claims without either.
//!
//! Invariants:
//! - Only tokens that passed every check of [`super::Authenticator::verify`] are kept, keyed by
//!   the token's exact text: the same bytes, checked with the same keys, issuer and audience,
//!   get the same answer, so a hit answers only what the full check would.
//! - What depends on the time is checked again on every hit, more strictly than the full check
//!   does (no leeway: `exp` still ahead, `nbf` passed; the lifetime bound as before). A token
//!   failing that goes through the full check again, whose answer, error included, is the one
//!   returned.
//! - A token checked with a key of the JWKS file is answered only while the file's key set is
//!   the one it was checked with (the set is replaced whenever the file changes, so a removed
//!   key stops its tokens as it did before this cache). HS256 keys are fixed for an
//!   authenticator's life.
//! - Bounded: at most [`TOKENS_MAX`] tokens of at most [`TOKEN_BYTES_MAX`] bytes each; a full
//!   cache is emptied (a lost hit costs one full check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::jwks::KeysByKid;
use super::Claims;

/// Most tokens kept.
pub const TOKENS_MAX: usize = 4096;
/// Longest token kept, in bytes (ours are ~250): a few large tokens cannot pin much memory.
pub const TOKEN_BYTES_MAX: usize = 1024;

/// A token that passed every check, and what a hit must check again.
#[derive(Debug)]
pub(super) struct Verified {
    pub claims: Claims,
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    /// The JWKS key set its key came from; `None` for an HS256 key.
    pub jwks_keys: Option<Arc<KeysByKid>>,
    /// False when a claim the re-check needs could not be read (an `nbf` that is not a whole
    /// number): such a token is checked in full every time.
    pub cacheable: bool,
}

/// The cache: token text → its verification.
#[derive(Default)]
pub(super) struct VerifiedTokens {
    map: Mutex<HashMap<Box<str>, Arc<Verified>>>,
}

impl VerifiedTokens {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<Verified>>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, token: &str) -> Option<Arc<Verified>> {
        self.map().get(token).cloned()
    }

    /// Keeps `verified` for `token` unless the token is longer than [`TOKEN_BYTES_MAX`]; a full
    /// cache is emptied first.
    pub fn insert(&self, token: &str, verified: Verified) {
        if token.len() > TOKEN_BYTES_MAX {
            return;
        }
        let mut map = self.map();
        if map.len() >= TOKENS_MAX {
            map.clear();
        }
        map.insert(token.into(), Arc::new(verified));
    }

    pub fn remove(&self, token: &str) {
        self.map().remove(token);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::auth::Scopes;
    use crate::tenancy::{EnvId, TenantId};

    fn verified() -> Verified {
        Verified {
            claims: Claims {
                tenant: TenantId::parse("acme").unwrap(),
                env: EnvId::parse("prod").unwrap(),
                team: None,
                scope: Scopes::DEFAULT,
                connector: None,
            },
            exp: u64::MAX,
            nbf: None,
            iat: None,
            jwks_keys: None,
            cacheable: true,
        }
    }

    #[test]
    fn the_cache_holds_at_most_its_bound_and_no_long_token() {
        let cache = VerifiedTokens::default();
        for i in 0..TOKENS_MAX {
            cache.insert(&format!("token-{i}"), verified());
        }
        assert_eq!(cache.len(), TOKENS_MAX);
        assert!(cache.get("token-0").is_some());
        // Full: emptied, then the new one kept.
        cache.insert("one-more", verified());
        assert_eq!(cache.len(), 1);
        assert!(cache.get("token-0").is_none() && cache.get("one-more").is_some());
        cache.insert(&"t".repeat(TOKEN_BYTES_MAX + 1), verified());
        assert_eq!(cache.len(), 1);
        cache.remove("one-more");
        assert_eq!(cache.len(), 0);
    }
}
