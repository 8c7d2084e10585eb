//! A CBOR snapshot file, and arbitrary state bytes behind a valid envelope.
//! Panics only if a decoder panics or an accepted value does not round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::fuzzing::Target;

fuzz_target!(|data: &[u8]| {
    Target::Snapshot.check(data);
});
