//! ContactCard::from_uri (UTF-8 inputs) and ContactCard::from_bytes; accepted cards round-trip (CARD-1..CARD-3).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::checks::card(data);
});
