//! An admin and two members run a group through a lossy, reordering, tampering broker, with a member
//! removed and added back (see `sotto_fuzz_harness::group` for the input layout and the invariants).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::group::run(data);
});
