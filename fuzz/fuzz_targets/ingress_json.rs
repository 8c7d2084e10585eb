//! The inbound message JSON of HTTP (`POST /api/v1/messages`) and NATS ingress.
//! Panics only if a decoder panics or an accepted value does not round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::fuzzing::Target;

fuzz_target!(|data: &[u8]| {
    Target::IngressJson.check(data);
});
