//! Per-tenant request quotas: one GCRA limiter (governor) per served tenant,
//! `rate_limit_per_s` requests per second with a burst of `rate_limit_burst` (the rate unless
//! set: a smaller burst keeps a flooding tenant's first moment short). One [`Quotas`] serves
//! both edges: an HTTP request and a NATS ingress message each charge their tenant once, so a
//! tenant's rate limit is the same whichever way its traffic comes.
//!
//! Invariants:
//! - The set of limiters is fixed at start (one per tenant of the config), so a caller can never
//!   grow it: memory does not depend on input.
//! - A tenant's limiter is charged only by that tenant's authenticated requests and its NATS
//!   messages (subject parsed, tenant served); one tenant over quota never delays another.
//! - A refusal always says when to retry, in whole seconds, at least 1.

use std::collections::HashMap;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Config;
use crate::tenancy::TenantId;

/// The tenant is over its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tenant request quota exceeded; retry after {retry_after_s} s")]
pub struct OverQuota {
    /// Whole seconds until a request would be admitted; at least 1.
    pub retry_after_s: u64,
}

/// One rate limiter per tenant.
pub struct Quotas {
    limiters: HashMap<TenantId, DefaultDirectRateLimiter>,
    clock: DefaultClock,
}

impl Quotas {
    /// Limiters for `tenants`, each with its rate (requests per second) and burst.
    pub fn new<'a>(
        tenants: impl IntoIterator<Item = (&'a TenantId, NonZeroU32, NonZeroU32)>,
    ) -> Quotas {
        let limiters = tenants
            .into_iter()
            .map(|(tenant, rate, burst)| {
                (
                    tenant.clone(),
                    RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
                )
            })
            .collect();
        Quotas {
            limiters,
            clock: DefaultClock::default(),
        }
    }

    /// Limiters for the tenants `config` serves, each at its `rate_limit_per_s` and
    /// `rate_limit_burst`.
    pub fn for_config(config: &Config) -> Quotas {
        Quotas::new(
            config
                .tenants()
                .iter()
                .map(|(id, tenant)| (id, tenant.rate_limit_per_s, tenant.rate_limit_burst)),
        )
    }

    /// Charges one request to `tenant`. A tenant without a limiter is not served here and is
    /// refused by authentication before this is called, so it is let through.
    pub fn check(&self, tenant: &TenantId) -> Result<(), OverQuota> {
        let Some(limiter) = self.limiters.get(tenant) else {
            return Ok(());
        };
        limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Round up: a client that waits the advertised seconds must be admitted.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            OverQuota {
                retry_after_s: seconds.max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests;
