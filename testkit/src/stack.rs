//! [`TestStack`]: the real service in-process for a test, through the one builder
//! (`sotto_server::Service`), in a temporary directory that lives as long as the stack: free
//! loopback ports, real TLS, real SQLCipher stores for its people.

use std::net::SocketAddr;
use std::path::PathBuf;

use sotto_client::{Client, Config, KdfParams};
use sotto_server::admission::AdmissionLimits;
use sotto_server::ca::Pki;
use sotto_server::membership::quota::QuotaLimits;
use sotto_server::membership::{Membership, MembershipConfig, MembershipHandle};
use sotto_server::{Broker, BrokerStop, InboxLimits, Service, ServiceBuilder};

use crate::WAIT;

/// The membership service alone, on SQLite in `dir` and a free loopback port, with its CA (made
/// in `dir` or loaded from it), at `difficulty`, under `quotas`; it names `localhost:8883` as the
/// broker (nothing listens there: the tests of the membership API alone).
pub async fn start_membership(
    dir: &std::path::Path,
    difficulty: u8,
    quotas: QuotaLimits,
) -> (MembershipHandle, std::sync::Arc<Pki>) {
    let pki = std::sync::Arc::new(Pki::load_or_create(dir).expect("CA"));
    let handle = Membership::start(
        MembershipConfig {
            data_dir: dir.to_path_buf(),
            directory: sotto_server::membership::DirectoryBackend::Sqlite,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            difficulty,
            broker_addr: "localhost:8883".to_owned(),
            admission: AdmissionLimits::MEMBERSHIP,
            quotas,
            revocations: sotto_server::revocation::Revocations::new(),
            departures: sotto_server::departure::Departures::new(),
            metrics: std::sync::Arc::new(sotto_server::metrics::Metrics::new()),
        },
        pki.clone(),
    )
    .await
    .expect("membership service starts");
    (handle, pki)
}

/// Proof-of-work difficulty of the test services (small, but the work path runs).
pub const DIFFICULTY: u8 = 4;

/// The passphrase of every test store.
pub const PASSPHRASE: &[u8] = b"correct horse battery staple";

/// The client configuration of the tests: cheap Argon2 parameters, ten one-time prekeys, the
/// inbox session established at signup (BROKER-4), a short quiet period for syncs.
pub fn test_config() -> Config {
    Config {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        signup_one_time_prekeys: 10,
        establish_inbox: Some(WAIT),
        sync_quiet: crate::QUIET,
        ..Config::default()
    }
}

/// [`test_config`] with a short resend schedule (RX-6): a message whose receipt has not come is
/// published again after `first_ms`, doubling up to `max_ms`, so that a lost one is resent within
/// a test's waits.
pub fn test_config_resending(first_ms: u64, max_ms: u64) -> Config {
    Config {
        resend: sotto_client::Backoff { first_ms, max_ms },
        ..test_config()
    }
}

/// The brokers that can run here, embedded first: Mosquitto only when its binary is installed
/// (otherwise the skip is printed, so a test run says what it did not cover).
pub fn available_brokers() -> Vec<Broker> {
    let mut out = vec![Broker::Embedded];
    if Broker::Mosquitto.is_available() {
        out.push(Broker::Mosquitto);
    } else {
        println!("SKIPPED for Mosquitto: `mosquitto` binary not found (apt-get install mosquitto)");
    }
    out
}

/// A running service and the directory of its files and of its people's stores.
pub struct TestStack {
    /// The temporary directory: `server/` for the service, `<name>.db` for the stores.
    pub dir: tempfile::TempDir,
    /// The service.
    pub service: Service,
}

impl TestStack {
    /// The embedded broker behind the front, the membership service, a test PKI.
    pub async fn embedded() -> TestStack {
        TestStack::start(Broker::Embedded).await
    }

    /// Mosquitto (a child process) behind the front, the membership service, a test PKI.
    pub async fn mosquitto() -> TestStack {
        TestStack::start(Broker::Mosquitto).await
    }

    /// `broker` behind the front.
    pub async fn start(broker: Broker) -> TestStack {
        TestStack::with_inbox_limits(broker, InboxLimits::DEFAULT).await
    }

    /// `broker` behind the front, whose ledger refuses beyond `limits` (BROKER-5).
    pub async fn with_inbox_limits(broker: Broker, limits: InboxLimits) -> TestStack {
        TestStack::build(broker, |b| b.inbox_limits(limits)).await
    }

    /// `broker` behind the front, with the test difficulty and whatever `configure` sets.
    pub async fn build(
        broker: Broker,
        configure: impl FnOnce(ServiceBuilder) -> ServiceBuilder,
    ) -> TestStack {
        crate::log_to_test_output();
        let dir = tempfile::tempdir().expect("temp dir");
        let builder = Service::builder(dir.path().join("server"))
            .broker(broker)
            .difficulty(DIFFICULTY);
        let service = configure(builder).start().await.expect("service");
        TestStack { dir, service }
    }

    /// The membership service's URL.
    pub fn url(&self) -> String {
        self.service.membership_url()
    }

    /// The CA devices pin at signup.
    pub fn ca_pem(&self) -> &str {
        self.service.pki().ca_pem()
    }

    /// The address the message service listens on (not a proxy's).
    pub fn broker_addr(&self) -> SocketAddr {
        self.service.broker_addr()
    }

    /// The store path of a user called `name`.
    pub fn store_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// Signs up a user with [`test_config`].
    pub async fn signup(&self, name: &str) -> Client {
        self.signup_with(name, test_config()).await
    }

    /// Signs up a user with `config`.
    pub async fn signup_with(&self, name: &str, config: Config) -> Client {
        Client::signup_with(
            &self.url(),
            self.ca_pem(),
            self.store_path(name),
            PASSPHRASE,
            config,
        )
        .await
        .expect("signup")
    }

    /// Restarts the broker (see [`BrokerStop`]).
    pub async fn restart_broker(&mut self, stop: BrokerStop) {
        self.service
            .restart_broker(stop)
            .await
            .expect("broker restart");
    }

    /// Stops the membership service; the broker keeps running.
    pub async fn stop_membership(&mut self) {
        self.service.stop_membership().await;
    }

    /// Starts the membership service again on its address, with the same CA (checked) and
    /// database; `advertise` changes the broker address devices are told.
    pub async fn start_membership(&mut self, advertise: Option<SocketAddr>) {
        self.service
            .start_membership(advertise.map(|a| a.to_string()))
            .await
            .expect("membership service again");
    }
}
