//! The authorizing MQTT front's packet filter on a stream of client packets; whatever passes must
//! be a packet the policy allows, by an independent MQTT parser (BROKER-1..3).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sotto_fuzz_harness::server_checks::filter(data);
});
