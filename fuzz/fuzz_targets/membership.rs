//! The membership API's binary request bodies (renew, prekey upload); whatever decodes re-encodes to
//! the input (KEY-3, KEY-4, LIM-15, LIM-16).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::server_checks::membership(data);
});
