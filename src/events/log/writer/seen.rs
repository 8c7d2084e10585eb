//! The stager's memory of the idempotency keys in the log: per tenant, a Bloom filter over the
//! keys of its idempotency records, so that a message id never seen before (nearly every one)
//! is told apart without a sled read on the stager thread, the log's busiest.
//!
//! A filter says "absent" or "maybe", never "present". sled stays the source of truth: a
//! "maybe" is answered by reading the record (a false positive, about 1 % of new ids at
//! capacity, costs the read every check made before), and "absent" is said only by a
//! *complete* filter.
//!
//! A tenant's filter is built from the tree when the tenant first appends with a message id
//! (after the log opened, or after the filter was forgotten, below): a scan of the tenant's
//! idempotency records, at most [`SCAN_KEYS_PER_STEP`] keys between two batches, so that a
//! tenant with millions of records never stalls the stager. Until the scan reaches the end of
//! the tenant's records, every check of the tenant reads sled, as before. Every key the stager
//! stages is added at once, to the filter and to a scan in progress. A scan whose filter fills
//! up starts again with one sized for twice the keys seen so far; a complete filter that fills
//! up is rebuilt the same way, sized for twice its keys, and goes on answering meanwhile
//! (fuller: more false positives, never a false negative).
//!
//! Memory: [`BITS_PER_KEY`] bits per key of capacity. A filter is sized for twice the keys
//! known when its scan starts (or starts again), and a completed filter sized for over four
//! times the keys it found is scanned again at the right size: 10 to 40 bits (1.25 to 5 bytes)
//! per idempotency record, at least [`KEYS_MIN`] keys' worth (1.25 KiB) per tenant
//! that appends with message ids, twice that while a rebuild runs. The purge bounds the
//! records; keys it removed stay in a filter until its next rebuild.
//!
//! Invariant: a complete filter holds the key of every idempotency record of its tenant in the
//! tree. For a tenant this node appends for, the stager is the only writer of its keys, except
//! where keys come from elsewhere, and there the filter is forgotten: an adoption (another
//! owner's records applied from the stream), a recovery (every filter: batches undone, the cache
//! reconciled with the stream), a tenant's deletion. The purge only removes keys, which a filter
//! may go on holding.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use crate::events::keys;
use crate::events::log::read::next_key;
use crate::tenancy::TenantId;

/// Bits of filter per key of capacity: about 1 % false positives at capacity.
pub(super) const BITS_PER_KEY: u64 = 10;

/// The capacity of a tenant's first filter, in keys.
pub(super) const KEYS_MIN: u64 = 1024;

/// Most keys scanned between two batches, over all tenants whose filter is being built.
pub(super) const SCAN_KEYS_PER_STEP: usize = 4096;

/// A filter is split into blocks of one cache line; all bits of a key are in one block.
const BLOCK_BITS: u64 = 512;

/// Bits set per key (inside its block), each chosen by 9 bits of the key's hash.
const PROBES: u32 = 7;

const _: () = assert!(PROBES * BLOCK_BITS.trailing_zeros() <= u64::BITS);

/// A blocked Bloom filter over byte strings.
pub(super) struct Bloom {
    blocks: Vec<[u64; 8]>,
    /// The keys it is sized for.
    capacity: u64,
    /// The keys inserted (repeats counted).
    len: u64,
    /// Random keys per filter: ids a client picks cannot be aimed at one filter's blocks.
    hasher: RandomState,
}

impl Bloom {
    /// An empty filter for `capacity` keys (at least one).
    pub(super) fn with_capacity(capacity: u64) -> Bloom {
        let capacity = capacity.max(1);
        let blocks = capacity.saturating_mul(BITS_PER_KEY).div_ceil(BLOCK_BITS);
        let blocks = usize::try_from(blocks).unwrap_or(usize::MAX);
        Bloom {
            blocks: vec![[0; 8]; blocks],
            capacity,
            len: 0,
            hasher: RandomState::new(),
        }
    }

    pub(super) fn insert(&mut self, key: &[u8]) {
        let (block, bits) = self.locate(key);
        let block = &mut self.blocks[block];
        for (word, mask) in bits {
            block[word] |= mask;
        }
        self.len += 1;
    }

    /// `false`: the key was never inserted. `true`: it may have been.
    pub(super) fn may_contain(&self, key: &[u8]) -> bool {
        let (block, bits) = self.locate(key);
        let block = &self.blocks[block];
        bits.iter().all(|&(word, mask)| block[word] & mask != 0)
    }

    /// Whether more keys went in than it is sized for.
    pub(super) fn is_over(&self) -> bool {
        self.len > self.capacity
    }

    /// The bytes its bits take.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<[u64; 8]>()
    }

    /// The key's block, and its bits there as (word, mask).
    fn locate(&self, key: &[u8]) -> (usize, [(usize, u64); PROBES as usize]) {
        let hash = self.hasher.hash_one(key);
        let blocks = self.blocks.len() as u64;
        // The high bits of the hash pick the block (multiply-shift: no division).
        let block = (u128::from(hash) * u128::from(blocks)) >> 64;
        let block = usize::try_from(block).expect("below the block count");
        // A bijective mix of the hash gives the bits inside the block, independent of the block.
        let mut mixed = fmix64(hash);
        let mut bits = [(0, 0); PROBES as usize];
        for bit in &mut bits {
            let at = mixed % BLOCK_BITS;
            mixed /= BLOCK_BITS;
            *bit = (
                usize::try_from(at / 64).expect("below 8"),
                1u64 << (at % 64),
            );
        }
        (block, bits)
    }
}

/// MurmurHash3's 64-bit finaliser.
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// What the stager knows of one tenant's keys.
struct TenantSeen {
    /// A filter holding every key of the tenant's records (see the module's invariant).
    complete: Option<Bloom>,
    /// A scan in progress: a new filter, complete once the scan reaches the end.
    scan: Option<Scan>,
}

/// A stepwise scan of a tenant's idempotency records into a new filter.
struct Scan {
    bloom: Bloom,
    /// The first key not scanned yet.
    next: Vec<u8>,
    /// The end of the tenant's records (exclusive).
    end: Vec<u8>,
}

impl Scan {
    fn new(tenant: &TenantId, capacity: u64) -> Scan {
        let (start, end) = keys::idempotency_range(tenant);
        Scan {
            bloom: Bloom::with_capacity(capacity),
            next: start,
            end,
        }
    }

    /// Scans up to `budget` keys; returns how many and whether the scan reached the end.
    fn step(&mut self, tree: &sled::Tree, budget: usize) -> Result<(usize, bool), sled::Error> {
        let mut scanned = 0;
        for key in tree.range(self.next.as_slice()..self.end.as_slice()).keys() {
            let key = key?;
            self.bloom.insert(&key);
            scanned += 1;
            if scanned >= budget {
                self.next = next_key(&key);
                return Ok((scanned, false));
            }
        }
        Ok((scanned, true))
    }
}

/// Per tenant, the filter of its idempotency keys (see the module docs).
pub(in crate::events::log) struct Seen {
    tenants: HashMap<TenantId, TenantSeen>,
    /// Tenants with a scan in progress, stepped in turn.
    scanning: VecDeque<TenantId>,
    keys_min: u64,
    scan_keys_per_step: usize,
}

impl Seen {
    /// With the log's limits ([`KEYS_MIN`], [`SCAN_KEYS_PER_STEP`]).
    pub(super) fn new() -> Seen {
        Seen::with_limits(KEYS_MIN, SCAN_KEYS_PER_STEP)
    }

    /// With other limits (tests use small ones to reach every state with few keys).
    pub(super) fn with_limits(keys_min: u64, scan_keys_per_step: usize) -> Seen {
        Seen {
            tenants: HashMap::new(),
            scanning: VecDeque::new(),
            keys_min,
            scan_keys_per_step: scan_keys_per_step.max(1),
        }
    }

    /// `false` only if `key` (one of `tenant`'s idempotency keys) is certainly not in the tree.
    /// The first question about a tenant starts building its filter.
    pub(super) fn may_contain(&mut self, tenant: &TenantId, key: &[u8]) -> bool {
        match self.tenants.get(tenant) {
            Some(seen) => seen.complete.as_ref().is_none_or(|b| b.may_contain(key)),
            None => {
                let seen = TenantSeen {
                    complete: None,
                    scan: Some(Scan::new(tenant, self.keys_min)),
                };
                self.tenants.insert(tenant.clone(), seen);
                self.scanning.push_back(tenant.clone());
                true
            }
        }
    }

    /// The stager staged `key` for `tenant`: the filters hold it from now on.
    pub(super) fn insert(&mut self, tenant: &TenantId, key: &[u8]) {
        let Some(seen) = self.tenants.get_mut(tenant) else {
            // No filter: one built later scans the key in the tree.
            return;
        };
        if let Some(scan) = &mut seen.scan {
            scan.bloom.insert(key);
        }
        let Some(complete) = &mut seen.complete else {
            return;
        };
        complete.insert(key);
        if complete.is_over() && seen.scan.is_none() {
            let scan = Scan::new(tenant, complete.len.saturating_mul(2));
            seen.scan = Some(scan);
            self.scanning.push_back(tenant.clone());
        }
    }

    /// Between batches: scans up to the step's budget of keys, for the tenants in turn.
    pub(super) fn step(&mut self, tree: &sled::Tree) {
        let mut budget = self.scan_keys_per_step;
        while budget > 0 {
            let Some(tenant) = self.scanning.pop_front() else {
                return;
            };
            let Some(seen) = self.tenants.get_mut(&tenant) else {
                continue;
            };
            let Some(scan) = &mut seen.scan else {
                continue;
            };
            match scan.step(tree, budget) {
                Ok((scanned, done)) => {
                    budget = budget.saturating_sub(scanned.max(1));
                    if scan.bloom.is_over() {
                        // Too small (a tenant with more records than guessed): start again,
                        // twice as large. Every key staged meanwhile is in the tree by now.
                        let capacity = scan.bloom.len.saturating_mul(2);
                        *scan = Scan::new(&tenant, capacity);
                        self.scanning.push_back(tenant);
                    } else if done {
                        let bloom = std::mem::replace(&mut scan.bloom, Bloom::with_capacity(1));
                        // Far too large (the purge removed most keys since it was sized):
                        // complete all the same, and scanned again into one of the right size.
                        let capacity = bloom.len.saturating_mul(2).max(self.keys_min);
                        if bloom.len.saturating_mul(4) < bloom.capacity && capacity < bloom.capacity
                        {
                            *scan = Scan::new(&tenant, capacity);
                            self.scanning.push_back(tenant);
                        } else {
                            seen.scan = None;
                        }
                        seen.complete = Some(bloom);
                    } else {
                        self.scanning.push_back(tenant);
                    }
                }
                Err(e) => {
                    // Without a complete filter every check reads sled, as before the filter.
                    tracing::warn!(tenant = %tenant, error = %e, "scanning the tenant's idempotency records failed; its checks read the log");
                    seen.scan = None;
                }
            }
        }
    }

    /// Whether a scan waits for its next step.
    pub(super) fn scanning(&self) -> bool {
        !self.scanning.is_empty()
    }

    /// The tenant's keys changed outside the stager: its filter is no longer complete.
    pub(super) fn forget(&mut self, tenant: &TenantId) {
        self.tenants.remove(tenant);
        self.scanning.retain(|t| t != tenant);
    }

    /// Every tenant's keys may have changed (a recovery).
    pub(in crate::events::log) fn clear(&mut self) {
        self.tenants.clear();
        self.scanning.clear();
    }

    /// Whether the tenant's filter is complete (answers "absent" without sled).
    #[cfg(test)]
    pub(super) fn is_complete(&self, tenant: &TenantId) -> bool {
        self.tenants
            .get(tenant)
            .is_some_and(|s| s.complete.is_some())
    }

    /// The bytes all filters take.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.tenants
            .values()
            .flat_map(|s| {
                let scan = s.scan.as_ref().map(|s| &s.bloom);
                s.complete.iter().chain(scan)
            })
            .map(Bloom::bytes)
            .sum()
    }
}

#[cfg(test)]
mod tests;
