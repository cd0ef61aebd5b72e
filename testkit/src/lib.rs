//! # sotto-testkit: what the tests, the benchmarks and the fault runs share
//!
//! Test support, never part of a product build: it starts the real service through its one
//! builder and gives tests people with real encrypted stores, raw MQTT clients and a TCP proxy
//! that cuts connections. It depends on everything below it; nothing but tests and benchmarks
//! depends on it.
//!
//! ```text
//!  tests of sotto-client, sotto-server; benches/e2e/
//!      └── sotto-testkit ── TestStack (sotto_server::Service in a temp dir)
//!                        ├─ people: signup, sync, online/offline, exactly-once assertions
//!                        ├─ mqtt:   DeviceTlsKey, Identity (issued by the PKI), RawClient
//!                        ├─ proxy:  Proxy (cuts a connection mid-record on command, retargets)
//!                        ├─ postgres: TestPostgres (a throwaway PostgreSQL for the directory)
//!                        ├─ nats:   TestNats (a throwaway 3-node NATS cluster, nodes killable)
//!                        └─ chromium: headless Chromium over the DevTools pipe (console errors,
//!                                     the DOM after scripts ran, screenshots)
//! ```
//!
//! Every wait is bounded ([`WAIT`]); nothing asserts on speed.

#![forbid(unsafe_code)]

pub mod chromium;
pub mod mqtt;
pub mod nats;
pub mod people;
pub mod postgres;
pub mod proxy;
pub mod stack;

pub use people::{
    LiveClient, Shown, Tally, assert_all_delivered, assert_exactly_once, exchange_cards,
    go_offline, go_online, outbox, raw_publish, received_texts, settle, sync, texts, try_sync,
};
pub use stack::{
    DIFFICULTY, PASSPHRASE, TestStack, available_brokers, test_config, test_config_resending,
};

use std::time::Duration;

/// Upper bound of every sync and wait of a test (never an assertion about speed).
pub const WAIT: Duration = Duration::from_secs(20);
/// Quiet period of the test syncs, and how long a negative check ("nothing arrives") waits
/// after a positive control arrived.
pub const QUIET: Duration = Duration::from_millis(700);

/// A loopback address on a port free now (bound, read and released: a test that needs a fixed
/// address before it starts something there).
pub fn free_loopback() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

/// Waits until `addr` accepts TCP connections; `false` after `wait`.
pub fn wait_for_port(addr: std::net::SocketAddr, wait: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        let probe = std::time::Duration::from_millis(200);
        if std::net::TcpStream::connect_timeout(&addr, probe).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Sends the server's and the client's `tracing` events to the test output, filtered by
/// `SOTTO_TEST_LOG` (for example `SOTTO_TEST_LOG=debug`); silent when it is unset.
pub fn log_to_test_output() {
    if let Ok(filter) = std::env::var("SOTTO_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
