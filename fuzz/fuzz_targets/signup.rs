//! SignupRequest::from_bytes (difficulty 0); an accepted request re-encodes to the input (SIGNUP-1, SIGNUP-2).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::checks::signup(data);
});
