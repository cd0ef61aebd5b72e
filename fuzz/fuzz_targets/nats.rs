//! The NATS client protocol frames the service reads from a cluster: taken one at a time, a MSG
//! written back parses the same (sotto_wire::nats).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::server_checks::nats(data);
});
