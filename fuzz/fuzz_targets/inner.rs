//! Inner::decode, and decode(encode(x)) == x; unpadded inputs re-encode byte for byte (IN-1..IN-4).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::checks::inner(data);
});
