//! A fixed responder device receives the input; KeyShare::open and KeyShare::from_plaintext parse it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::checks::first_message(data);
});
