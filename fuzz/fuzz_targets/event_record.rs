//! A log frame or a single event body (MessagePack in a CRC32C frame).
//! Panics only if a decoder panics or an accepted value does not round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenantry::fuzzing::Target;

fuzz_target!(|data: &[u8]| {
    Target::EventRecord.check(data);
});
