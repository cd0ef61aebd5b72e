//! Two devices exchange messages through a lossy, reordering, tampering broker (see
//! `sotto_fuzz_harness::two_party` for the input layout and the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::two_party::run(data);
});
