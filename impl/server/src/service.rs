//! The whole service started in one place: the PKI, the membership service and the message
//! service, as `sotto serve`, the demo, the conformance replay and wiretap, the soak and the tests
//! all run it. [`Service::builder`] takes a data directory and what to change from the defaults;
//! [`Broker`] is the one word for which broker carries the messages.
//!
//! ```text
//!  <data>/ca.pem ca.key server.pem server.key   Pki (created on first start, TLS-1)
//!  <data>/membership.db                         membership service, HTTPS   (membership_listen)
//!  message service on mqtt_listen:
//!    Embedded                 front (BROKER-1..6) -> [hop] -> embedded broker in-process
//!    Mosquitto                front (BROKER-1..6) -> [hop] -> mosquitto child, <data>/mosquitto/
//!    Mosquitto, external      front (BROKER-1..6) -> [hop] -> a Mosquitto the operator runs with
//!                             <data>/mosquitto/mosquitto.conf
//! ```
//!
//! Hooks for what tests and conformance runs need sit on [`Service`]: the wiretaps (HTTP and, with
//! the front, MQTT), a [`Hop`] between front and broker (the replay's relay), broker restarts of
//! each kind ([`BrokerStop`]), and stopping and starting the membership service on its address.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sotto_server::service::ServiceError> {
//! use sotto_server::service::{Broker, Service};
//! let service = Service::builder("server-data")
//!     .broker(Broker::Embedded)
//!     .start()
//!     .await?;
//! println!("sign up at {} with the CA {}", service.membership_url(), service.ca_file().display());
//! service.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::admission::AdmissionLimits;
use crate::broker::front::TapRecord;
use crate::broker::mosquitto::{self, MosquittoFiles};
use crate::broker::nats::NatsCluster;
use crate::broker::upstream::InternalAddr;
use crate::broker::{BrokerError, Hop, InboxLimits, MessageService, MosquittoRun};
use crate::ca::{CaError, Pki};
use crate::clock::Clock;
use crate::departure::Departures;
use crate::gate;
use crate::membership::quota::QuotaLimits;
use crate::membership::{
    DEFAULT_DIFFICULTY, HttpTapRecord, Membership, MembershipConfig, MembershipError,
    MembershipHandle,
};
use crate::metrics::{Metrics, MetricsServer};
use crate::revocation::Revocations;

/// Which broker carries the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Broker {
    /// Sotto's own broker in-process, behind the authorizing front (the default: nothing to install).
    Embedded,
    /// Mosquitto 2 as a child process (`apt-get install mosquitto`).
    Mosquitto,
    /// A NATS cluster the operator runs (JetStream and the MQTT listener on each node), shared by
    /// any number of services ([`ServiceBuilder::nats`], `deploy/cluster/`).
    Nats,
}

impl Broker {
    /// The two a service runs itself on one machine, embedded first (the conformance runs, the
    /// benchmarks and the tests go through both).
    pub const ALL: [Broker; 2] = [Broker::Embedded, Broker::Mosquitto];

    /// `embedded`, `mosquitto` or `nats`, as the command line and the reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Broker::Embedded => "embedded",
            Broker::Mosquitto => "mosquitto",
            Broker::Nats => "nats",
        }
    }

    /// Whether this broker can run here (Mosquitto: the `mosquitto` binary is installed; NATS:
    /// the `nats-server` binary).
    pub fn is_available(self) -> bool {
        match self {
            Broker::Embedded => true,
            Broker::Mosquitto => mosquitto::mosquitto_available(),
            Broker::Nats => crate::broker::nats::nats_server_available(),
        }
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Broker {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Broker::Embedded, Broker::Mosquitto, Broker::Nats]
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or(ServiceError::Config(
                "the broker is `embedded`, `mosquitto` or `nats`",
            ))
    }
}

/// How the broker stops in [`Service::restart_broker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerStop {
    /// A clean stop and start. The embedded broker restarts behind the running front and loses its queues,
    /// the front gives every user it has relayed the inbox session back; Mosquitto gets SIGTERM
    /// (its persistence file is written) and keeps its queues.
    Graceful,
    /// As [`BrokerStop::Graceful`], and the broker starts with no queues and no sessions
    /// (Mosquitto's persistence file is deleted); the front restores the inbox sessions.
    Fresh,
    /// As if the server process died: the broker is killed (Mosquitto: SIGKILL, what changed
    /// since its last autosave is lost) and the front, if any, is a new one on the same address
    /// that knows nobody.
    Kill,
}

/// Why the service could not start or change. Each variant names the part that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The builder's settings do not fit together.
    #[error("invalid service configuration: {0}")]
    Config(&'static str),
    /// The data directory could not be created or read.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The CA could not be loaded or created in the data directory.
    #[error("CA in the data directory: {0}")]
    Pki(#[from] CaError),
    /// The membership service failed.
    #[error("membership service: {0}")]
    Membership(#[from] MembershipError),
    /// The message service (front or broker) failed.
    #[error("message service: {0}")]
    Broker(#[from] BrokerError),
    /// The metrics listener could not start (`metrics_listen`).
    #[error("metrics listener: {0}")]
    Metrics(#[source] std::io::Error),
}

/// What [`Service::builder`] starts; see the module documentation.
#[derive(Clone, Debug)]
pub struct ServiceBuilder {
    data_dir: PathBuf,
    broker: Broker,
    mosquitto: MosquittoRun,
    nats: Option<NatsCluster>,
    membership_listen: SocketAddr,
    mqtt_listen: SocketAddr,
    difficulty: u8,
    advertise: Option<String>,
    inbox_limits: InboxLimits,
    front_admission: Option<AdmissionLimits>,
    membership_admission: AdmissionLimits,
    membership_quotas: QuotaLimits,
    directory: crate::membership::DirectoryBackend,
    server_names: Vec<String>,
    metrics_listen: Option<SocketAddr>,
    clock: Clock,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl ServiceBuilder {
    /// The broker (default [`Broker::Embedded`]).
    pub fn broker(mut self, broker: Broker) -> Self {
        self.broker = broker;
        self
    }

    /// With [`Broker::Mosquitto`]: the operator runs Mosquitto with the configuration the
    /// service writes (`mosquitto -c <data>/mosquitto/mosquitto.conf`), behind the front as
    /// always; the service does not start, stop or restart it.
    pub fn mosquitto_external(mut self) -> Self {
        self.mosquitto = MosquittoRun::External;
        self
    }

    /// The broker is the NATS cluster `cluster` ([`Broker::Nats`]): the front relays to its
    /// nodes, which keep the sessions and queues; other services may share it.
    pub fn nats(mut self, cluster: NatsCluster) -> Self {
        self.broker = Broker::Nats;
        self.nats = Some(cluster);
        self
    }

    /// Where the membership service listens (default `127.0.0.1:0`, a free port).
    pub fn membership_listen(mut self, addr: SocketAddr) -> Self {
        self.membership_listen = addr;
        self
    }

    /// Where the message service listens (default `127.0.0.1:0`, a free port).
    pub fn mqtt_listen(mut self, addr: SocketAddr) -> Self {
        self.mqtt_listen = addr;
        self
    }

    /// The signup proof-of-work difficulty in bits, 0..=32 (default
    /// [`DEFAULT_DIFFICULTY`]; SIGNUP-3).
    pub fn difficulty(mut self, bits: u8) -> Self {
        self.difficulty = bits;
        self
    }

    /// What one inbox holds at most (BROKER-5; default [`InboxLimits::DEFAULT`]): the front
    /// refuses a PUBLISH beyond it with a refusal notice. Only with the front.
    pub fn inbox_limits(mut self, limits: InboxLimits) -> Self {
        self.inbox_limits = limits;
        self
    }

    /// How many connections the front takes, per source and in all (default
    /// [`AdmissionLimits::FRONT`], capped by the open-file limit, which the service raises to
    /// its hard maximum: see [`crate::gate::within_open_files`]).
    pub fn front_admission(mut self, limits: AdmissionLimits) -> Self {
        self.front_admission = Some(limits);
        self
    }

    /// How many connections the membership service takes, per source and in all (default
    /// [`AdmissionLimits::MEMBERSHIP`]).
    pub fn membership_admission(mut self, limits: AdmissionLimits) -> Self {
        self.membership_admission = limits;
        self
    }

    /// The membership service's rate limits: signups per source and in all, one-time prekeys per
    /// requester and target (default [`QuotaLimits::DEFAULT`]).
    pub fn membership_quotas(mut self, limits: QuotaLimits) -> Self {
        self.membership_quotas = limits;
        self
    }

    /// Which database holds the membership directory (default
    /// [`DirectoryBackend::Sqlite`](crate::membership::DirectoryBackend::Sqlite), in the data
    /// directory).
    pub fn directory(mut self, backend: crate::membership::DirectoryBackend) -> Self {
        self.directory = backend;
        self
    }

    /// The names and addresses devices reach the service by (DNS names or IP addresses), besides
    /// `localhost`, `127.0.0.1` and `::1`: the server certificate carries them all (TLS-1; a
    /// certificate with other names is replaced at start, the CA stays). The first one is the
    /// host of [`Service::membership_url`] and of the advertised broker address (unless
    /// [`ServiceBuilder::advertise_broker`] says otherwise).
    pub fn server_names(mut self, names: Vec<String>) -> Self {
        self.server_names = names;
        self
    }

    /// The service's wall clock ([`crate::clock`]; default the system's). Tests move a
    /// `Clock::skewed` one ahead to live through months (feature `test-utils`).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Serves the operator's metrics and health check (`GET /metrics`, `GET /health`, plain
    /// HTTP; [`crate::metrics`]) on `addr` (port 0: a free port, see [`Service::metrics_addr`]).
    /// Default: not served (the counters are kept all the same, [`Service::metrics`]).
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics_listen = Some(addr);
        self
    }

    /// The broker address devices are told at signup, `host:port` (default: the first server
    /// name, or else the message service's own address with `localhost` for an unspecified IP,
    /// and the message service's port).
    pub fn advertise_broker(mut self, addr: impl Into<String>) -> Self {
        self.advertise = Some(addr.into());
        self
    }

    /// Loads or creates the PKI, starts the message service, then the membership service.
    /// Returns once both accept connections.
    pub async fn start(self) -> Result<Service, ServiceError> {
        if self.broker != Broker::Mosquitto && self.mosquitto != MosquittoRun::Child {
            return Err(ServiceError::Config(
                "an external Mosquitto needs the Mosquitto broker",
            ));
        }
        if (self.broker == Broker::Nats) != self.nats.is_some() {
            return Err(ServiceError::Config(
                "the NATS broker needs its cluster (ServiceBuilder::nats), and only it",
            ));
        }
        crate::private::private_dir(&self.data_dir)?;
        let dir = self.data_dir.clone();
        let names = self.server_names.clone();
        let pki = tokio::task::spawn_blocking(move || Pki::load_or_create_for(&dir, &names))
            .await
            .map_err(|_| ServiceError::Config("the PKI task failed"))??;
        let pki = Arc::new(pki.with_clock(self.clock.clone()));
        let mosquitto_dir = self.data_dir.join("mosquitto");
        // Open files per front connection in this process: the client's socket and the front's
        // two to the broker, plus the embedded broker's two ends of those.
        let files = match self.broker {
            Broker::Embedded => 5,
            Broker::Mosquitto | Broker::Nats => 3,
        };
        let membership_files = self.membership_admission.total as u64;
        let front_admission = self.front_admission.unwrap_or_else(|| {
            gate::within_open_files(AdmissionLimits::FRONT, files, membership_files)
        });
        // Certificates a renewal replaced: the membership service fills it, the front reads it.
        let revocations = Revocations::new();
        // Deleted and expired accounts: the membership service fills it, the front reads it.
        let departures = Departures::new();
        let metrics = Arc::new(Metrics::new());
        let messages = Box::new(
            MessageService::start(
                &pki,
                self.mqtt_listen,
                self.broker,
                (&mosquitto_dir, self.mosquitto),
                self.nats.as_ref(),
                self.inbox_limits,
                front_admission,
                revocations.clone(),
                departures.clone(),
                metrics.clone(),
            )
            .await?,
        );
        let advertised =
            self.advertise
                .clone()
                .unwrap_or_else(|| match self.server_names.first() {
                    Some(name) => host_port(name, messages.local_addr().port()),
                    None => advertised(messages.local_addr()),
                });
        let membership_config = MembershipConfig {
            data_dir: self.data_dir.clone(),
            directory: self.directory.clone(),
            listen: self.membership_listen,
            difficulty: self.difficulty,
            broker_addr: advertised.clone(),
            admission: self.membership_admission,
            quotas: self.membership_quotas,
            revocations,
            departures,
            metrics: metrics.clone(),
        };
        let membership = Membership::start(membership_config.clone(), pki.clone()).await?;
        // Port 0: keep the port it got, so that a restart comes back where devices look.
        let membership_config = MembershipConfig {
            listen: membership.local_addr(),
            ..membership_config
        };
        let metrics_server = match self.metrics_listen {
            Some(addr) => Some(
                MetricsServer::start(addr, metrics.clone())
                    .await
                    .map_err(ServiceError::Metrics)?,
            ),
            None => None,
        };
        Ok(Service {
            data_dir: self.data_dir,
            broker: self.broker,
            pki,
            membership: Some(membership),
            membership_config,
            messages,
            server_names: self.server_names,
            metrics,
            metrics_server,
        })
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address devices are told, `host:port`: `localhost` stands in for an unspecified IP.
fn advertised(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// A running service. Dropping it stops everything without waiting; [`Service::shutdown`] waits.
#[derive(Debug)]
pub struct Service {
    data_dir: PathBuf,
    broker: Broker,
    pki: Arc<Pki>,
    membership: Option<MembershipHandle>,
    membership_config: MembershipConfig,
    messages: Box<MessageService>,
    server_names: Vec<String>,
    metrics: Arc<Metrics>,
    metrics_server: Option<MetricsServer>,
}

impl Service {
    /// A builder for a service keeping its files in `data_dir` (created if missing).
    pub fn builder(data_dir: impl Into<PathBuf>) -> ServiceBuilder {
        ServiceBuilder {
            data_dir: data_dir.into(),
            broker: Broker::Embedded,
            mosquitto: MosquittoRun::Child,
            nats: None,
            membership_listen: loopback(),
            mqtt_listen: loopback(),
            difficulty: DEFAULT_DIFFICULTY,
            advertise: None,
            inbox_limits: InboxLimits::DEFAULT,
            front_admission: None,
            membership_admission: AdmissionLimits::MEMBERSHIP,
            membership_quotas: QuotaLimits::DEFAULT,
            directory: crate::membership::DirectoryBackend::Sqlite,
            server_names: Vec::new(),
            metrics_listen: None,
            clock: Clock::system(),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Which broker carries the messages.
    pub fn broker(&self) -> Broker {
        self.broker
    }

    /// The operator's counters and gauges ([`crate::metrics`]).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `GET /metrics` and `GET /health` are served, if they are
    /// ([`ServiceBuilder::metrics_listen`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// The service CA and the certificates it issues.
    pub fn pki(&self) -> &Arc<Pki> {
        &self.pki
    }

    /// The CA certificate file operators hand out (`<data>/ca.pem`).
    pub fn ca_file(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    /// The membership service's address (also while it is stopped: it starts again there).
    pub fn membership_addr(&self) -> SocketAddr {
        self.membership
            .as_ref()
            .map_or(self.membership_config.listen, MembershipHandle::local_addr)
    }

    /// The membership service's base URL, `https://<first server name, or localhost>:<port>`.
    pub fn membership_url(&self) -> String {
        let host = self
            .server_names
            .first()
            .map_or("localhost", String::as_str);
        format!("https://{}", host_port(host, self.membership_addr().port()))
    }

    /// The address the message service (the front) listens on for devices.
    pub fn broker_addr(&self) -> SocketAddr {
        self.messages.local_addr()
    }

    /// The broker address devices are told at signup.
    pub fn advertised_broker(&self) -> &str {
        &self.membership_config.broker_addr
    }

    /// The broker's internal address behind the front (the embedded broker's loopback port,
    /// which accepts only the front's CONNECT; Mosquitto's Unix socket).
    pub fn internal_broker_addr(&self) -> InternalAddr {
        self.messages.internal_addr()
    }

    /// Mosquitto's files (configuration, ACL, `run/` with its socket, log and persistence file),
    /// if Mosquitto is the broker.
    pub fn mosquitto_files(&self) -> Option<&MosquittoFiles> {
        self.messages.mosquitto_files()
    }

    /// Mosquitto's directory (configuration, ACL, `run/`), if Mosquitto is the broker.
    pub fn mosquitto_dir(&self) -> Option<&Path> {
        self.mosquitto_files().map(MosquittoFiles::dir)
    }

    /// Mosquitto's persistence file (written on a graceful stop and every autosave interval), if
    /// Mosquitto is the broker.
    pub fn mosquitto_persistence_file(&self) -> Option<PathBuf> {
        self.mosquitto_files().map(MosquittoFiles::persistence_file)
    }

    /// The Mosquitto configuration file, if Mosquitto is the broker (what an operator starts an
    /// external Mosquitto with).
    pub fn mosquitto_conf(&self) -> Option<PathBuf> {
        self.mosquitto_files().map(MosquittoFiles::conf_path)
    }

    /// The Mosquitto child process's id, when the service runs Mosquitto.
    pub fn mosquitto_pid(&self) -> Option<u32> {
        self.messages.mosquitto_pid()
    }

    /// Starts the Mosquitto child again if it exited by itself (see
    /// [`MessageService::revive_broker`]); returns whether it did.
    pub async fn revive_broker(&mut self) -> Result<bool, ServiceError> {
        Ok(self.messages.revive_broker().await?)
    }

    /// Starts a wiretap on the membership service: every HTTP exchange from now on, in
    /// plaintext (Req8 evidence; see [`MembershipHandle::wiretap`]). `None` while it is stopped.
    pub fn http_wiretap(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<HttpTapRecord>> {
        self.membership.as_ref().map(MembershipHandle::wiretap)
    }

    /// Starts a wiretap on the front: every MQTT packet of every connection from now on, in
    /// plaintext.
    pub fn mqtt_wiretap(&self) -> tokio::sync::mpsc::UnboundedReceiver<TapRecord> {
        self.messages.wiretap()
    }

    /// The message service, to read its state (the broker-side Req6 check, the inbox ledger).
    pub fn message_service(&self) -> &MessageService {
        &self.messages
    }

    /// Puts `hop` between the front and the broker (see [`Hop`]).
    pub fn interpose(&mut self, hop: Arc<dyn Hop>) {
        self.messages.interpose(hop);
    }

    /// Stops the broker behind the front: connections close and CONNECTs are answered "server
    /// unavailable" until [`Service::restart_broker`]. Not for an external Mosquitto.
    pub async fn stop_broker(&mut self) -> Result<(), ServiceError> {
        Ok(self.messages.stop_broker().await?)
    }

    /// Restarts the broker as `stop` says, on the same addresses. Not for an external
    /// Mosquitto.
    pub async fn restart_broker(&mut self, stop: BrokerStop) -> Result<(), ServiceError> {
        Ok(self.messages.restart_broker(stop).await?)
    }

    /// Stops the membership service (closing its connections and waiting for that); the message
    /// service runs on. Its database and the PKI stay on disk.
    pub async fn stop_membership(&mut self) {
        if let Some(m) = self.membership.take() {
            m.shutdown().await;
        }
    }

    /// Starts the membership service again on the address it had, with the PKI loaded again from
    /// the data directory (as a restarted process would) and the same database. `advertise`
    /// changes the broker address devices are told from now on.
    pub async fn start_membership(
        &mut self,
        advertise: Option<String>,
    ) -> Result<(), ServiceError> {
        self.stop_membership().await;
        if let Some(addr) = advertise {
            self.membership_config.broker_addr = addr;
        }
        let dir = self.data_dir.clone();
        let names = self.server_names.clone();
        let pki = tokio::task::spawn_blocking(move || Pki::load_or_create_for(&dir, &names))
            .await
            .map_err(|_| ServiceError::Config("the PKI task failed"))??;
        if pki.ca_pem() != self.pki.ca_pem() {
            return Err(ServiceError::Config("the CA in the data directory changed"));
        }
        self.pki = Arc::new(pki.with_clock(self.pki.clock().clone()));
        let handle = Membership::start(self.membership_config.clone(), self.pki.clone()).await?;
        self.membership = Some(handle);
        Ok(())
    }

    /// Stops the membership service and the message service (Mosquitto gracefully: its
    /// persistence file is written) and waits for both.
    pub async fn shutdown(mut self) {
        self.stop_membership().await;
        self.messages.shutdown().await;
    }
}
