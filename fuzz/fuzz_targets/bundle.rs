//! PreKeyBundle::from_bytes and Membership::from_bytes round trips (KEY-5, GRP-2).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::checks::bundle(data);
});
