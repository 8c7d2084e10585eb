//! An `Authorization` header or bare JWT, or the claims of a correctly signed one.
//! Panics only if a decoder panics or an accepted value does not round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::fuzzing::Target;

fuzz_target!(|data: &[u8]| {
    Target::Jwt.check(data);
});
