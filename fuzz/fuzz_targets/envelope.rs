//! Envelope::decode, and a decoded envelope re-assembles to exactly the input (ENV-1..ENV-6).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::checks::envelope(data);
});
