//! sotto-store integration tests: one binary (STYLE), one module per concern. Requirement ids
//! (Req7, STORE-n, RX-n) are in the test names. Every store here uses the cheapest Argon2
//! parameters, so the whole binary runs in seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod commits;
mod files;
mod migrate;
mod outbox;
mod passphrase;
mod plaintext;
mod roundtrip;
