//! Integration tests of `sotto-client` against the real stack in-process (one binary): membership
//! service, message service (the embedded broker behind its front, or Mosquitto when installed),
//! real TLS, real SQLCipher, started through `sotto_testkit::TestStack`.

mod cluster;
mod deletion;
mod delivery;
mod faults;
mod groups;
mod handover;
mod identity;
mod inbox_limit;
mod maintenance;
mod names;
mod pin;
mod receiving;
mod restart;
mod session;
mod year;
