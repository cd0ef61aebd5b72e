//! The message service: MQTT 3.1.1 over mutual TLS, with the rules BROKER-1..6 enforced.
//!
//! [`MessageService`]: the authorizing TLS front ([`front`]), which applies the sans-IO filter
//! of `sotto_wire::filter` to every client packet, with a broker behind it ([`upstream`]):
//! Sotto's own in-process broker ([`embedded`], on a loopback port that accepts only the front's
//! secret), Mosquitto ([`mosquitto`], on a Unix socket in a private directory; a child process,
//! or one the operator runs), or a NATS cluster the operator runs and other services share
//! ([`nats`]). The front is the one enforcement point for all: no broker faces a device.
//! Something may sit between the two ([`Hop`]: the conformance replay's controllable relay).
//!
//! ```text
//!  device --mTLS (CN = user id)--> front --filter--> [hop] --> embedded (127.0.0.1:<internal>)
//!                                    ^ SUBACK 0x80 / CONNACK        | Mosquitto (unix:<dir>/run/mqtt.sock)
//!                                      refusals / close
//! ```
//!
//! Offline messages of the embedded broker live in memory, each until its recipient's PUBACK: a
//! restart of it ([`MessageService::restart_broker`]) loses them; Mosquitto's persistence keeps
//! them. The front's [`ledger`] bounds every inbox ([`InboxLimits`], BROKER-5) on both.
//!
//! The whole service (PKI, membership, message service) is started by
//! [`crate::service::Service`].

pub mod embedded;
pub mod front;
pub mod ledger;
pub mod mosquitto;
pub mod nats;
pub mod port;
pub mod upstream;

pub use embedded::engine::Holdings;
pub use ledger::InboxLimits;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::admission::AdmissionLimits;
use crate::ca::{CaError, Pki};
use crate::departure::{Departures, Purge};
use crate::metrics::Metrics;
use crate::revocation::Revocations;
use crate::service::{Broker, BrokerStop};
use embedded::EmbeddedBroker;
use front::{Front, Upstream};
use mosquitto::InternalMosquitto;
use nats::NatsCluster;
use upstream::InternalAddr;

/// Days a persistent session (a device's inbox and what is queued in it) is kept without a
/// connection, on both brokers: Mosquitto's `persistent_client_expiration`, the embedded
/// engine's [`embedded::engine::Engine::expire_idle`] once a day.
pub const SESSION_EXPIRY_DAYS: u32 = 90;

/// Errors of the message service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// Socket or file I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Building the TLS configuration failed.
    #[error("TLS: {0}")]
    Tls(#[from] CaError),
    /// The broker did not answer on its port or socket in time.
    #[error("broker at {0} not ready")]
    NotReady(InternalAddr),
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
    /// The `mosquitto` binary could not be started.
    #[error("cannot start mosquitto: {0}")]
    MosquittoMissing(#[source] std::io::Error),
    /// The session restore after a broker restart failed (BROKER-4).
    #[error("restoring the inbox sessions: {0}")]
    Restore(#[source] std::io::Error),
    /// Mosquitto's socket path is longer than a Unix socket allows: choose a shorter data
    /// directory.
    #[error("Mosquitto's socket path {} is too long (at most 107 bytes): use a shorter data directory", .0.display())]
    SocketPath(std::path::PathBuf),
    /// The service runs as root and there is no `mosquitto` user for Mosquitto to run as.
    #[error(
        "Mosquitto must not run as root and there is no `mosquitto` user: install the Debian package (it creates one) or run the service as another user"
    )]
    MosquittoUser,
    /// The operator runs this broker (a Mosquitto started with `--mosquitto-external`, a NATS
    /// cluster): the service cannot stop or restart it.
    #[error("the operator runs this broker, not the service")]
    NotManaged,
    /// A NATS cluster was given without any node.
    #[error("a NATS cluster needs at least one node's MQTT address")]
    NoNodes,
    /// Mosquitto exited during startup.
    #[error("mosquitto exited ({status}): {log}")]
    MosquittoExited {
        /// Exit status.
        status: String,
        /// Its stderr and log file.
        log: String,
    },
}

/// Something between the front and the broker: the front connects to [`Hop::local_addr`], which
/// forwards to the broker (the conformance replay's relay, which holds and releases deliveries).
/// A test harness: its loopback port reaches the broker as the front does.
pub trait Hop: Send + Sync {
    /// Where the front connects instead of the broker.
    fn local_addr(&self) -> SocketAddr;
    /// The broker restarted at `broker`: forward there from now on.
    fn retarget(&self, broker: InternalAddr);
}

/// Who runs Mosquitto when it is the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MosquittoRun {
    /// The service, as a child process (restarted if it dies: [`MessageService::revive_broker`]).
    Child,
    /// The operator (`mosquitto -c <dir>/mosquitto.conf`); the service only writes the files.
    External,
}

/// The broker behind the front.
#[derive(Debug)]
enum Backend {
    Embedded(EmbeddedBroker),
    Mosquitto(InternalMosquitto),
    Nats(NatsCluster),
}

impl Backend {
    async fn start(
        broker: Broker,
        mosquitto: (&Path, MosquittoRun),
        nats: Option<&NatsCluster>,
        limits: InboxLimits,
        admission: AdmissionLimits,
    ) -> Result<Backend, BrokerError> {
        // Two broker connections per front connection, and the session restores.
        let max_connections = admission.total.saturating_mul(2).saturating_add(64);
        let (dir, run) = mosquitto;
        Ok(match (broker, run) {
            (Broker::Embedded, _) => Backend::Embedded(EmbeddedBroker::start(limits).await?),
            (Broker::Nats, _) => {
                let cluster = nats.ok_or(BrokerError::NoNodes)?.clone();
                cluster.wait_ready().await?;
                Backend::Nats(cluster)
            }
            (Broker::Mosquitto, MosquittoRun::Child) => {
                Backend::Mosquitto(InternalMosquitto::start(dir, limits, max_connections).await?)
            }
            (Broker::Mosquitto, MosquittoRun::External) => {
                Backend::Mosquitto(InternalMosquitto::external(dir, limits, max_connections)?)
            }
        })
    }

    fn upstream(&self) -> Upstream {
        match self {
            Backend::Embedded(b) => b.upstream(),
            Backend::Mosquitto(m) => m.upstream(),
            Backend::Nats(n) => n.upstream(),
        }
    }

    /// What drops a departed user's session and queue from this broker ([`crate::departure`]):
    /// the embedded engine forgets it; Mosquitto discards it at a clean-session CONNECT
    /// ([`front::purge_session`]), and so does NATS.
    fn purge(&self) -> Purge {
        match self {
            Backend::Embedded(b) => b.purge(),
            Backend::Mosquitto(_) | Backend::Nats(_) => {
                let upstream = self.upstream();
                Arc::new(move |user: String| {
                    let upstream = upstream.clone();
                    Box::pin(async move {
                        if let Err(e) = front::purge_session(&upstream, &user).await {
                            tracing::warn!(error = %e, "dropping a departed inbox from the broker");
                        }
                    })
                })
            }
        }
    }
}

/// The message service: the authorizing front and the broker behind it.
pub struct MessageService {
    front: Front,
    backend: Backend,
    broker: Broker,
    tls: Arc<rustls::ServerConfig>,
    hop: Option<Arc<dyn Hop>>,
    limits: InboxLimits,
    admission: AdmissionLimits,
    revocations: Revocations,
    departures: Departures,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for MessageService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageService")
            .field("front", &self.front)
            .field("backend", &self.backend)
            .field("hop", &self.hop.as_ref().map(|h| h.local_addr()))
            .finish_non_exhaustive()
    }
}

impl MessageService {
    /// Starts `broker` behind the front (Mosquitto keeps its files in the directory of
    /// `mosquitto` and is run as it says; NATS is the cluster `nats`, waited for) and the front
    /// on `listen` (port 0: any free port; see [`MessageService::local_addr`]), with the MQTT TLS configuration of `pki`; the front takes
    /// connections within `admission`, checks `revocations` and `departures` and counts into
    /// `metrics`. The broker's purge of departed inboxes is set on `departures`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        pki: &Pki,
        listen: SocketAddr,
        broker: Broker,
        mosquitto: (&Path, MosquittoRun),
        nats: Option<&NatsCluster>,
        limits: InboxLimits,
        admission: AdmissionLimits,
        revocations: Revocations,
        departures: Departures,
        metrics: Arc<Metrics>,
    ) -> Result<MessageService, BrokerError> {
        let tls = pki.mqtt_server_config()?;
        let backend = Backend::start(broker, mosquitto, nats, limits, admission).await?;
        let up = Some(backend.upstream());
        let front = Front::bind(
            listen,
            tls.clone(),
            up,
            limits,
            admission,
            revocations.clone(),
            departures.clone(),
            metrics.clone(),
        )
        .await?;
        departures.set_purge(Some(backend.purge()));
        Ok(MessageService {
            front,
            backend,
            broker,
            tls,
            hop: None,
            limits,
            admission,
            revocations,
            departures,
            metrics,
        })
    }

    /// The inbox limits the front applies (BROKER-5).
    pub fn inbox_limits(&self) -> InboxLimits {
        self.limits
    }

    /// What the embedded broker holds now, read from its own state (`None` for Mosquitto, whose
    /// state [`mosquitto::InternalMosquitto`] reads from its persistence file and `$SYS`).
    pub fn embedded_holdings(&self) -> Option<Holdings> {
        match &self.backend {
            Backend::Embedded(b) => Some(b.holdings()),
            Backend::Mosquitto(_) | Backend::Nats(_) => None,
        }
    }

    /// A copy of every envelope the embedded broker holds (`None` for Mosquitto): the
    /// broker-side Req6 check looks for delivered ciphertexts among them.
    pub fn embedded_held_envelopes(&self) -> Option<Vec<Vec<u8>>> {
        match &self.backend {
            Backend::Embedded(b) => Some(b.held_envelopes()),
            Backend::Mosquitto(_) | Backend::Nats(_) => None,
        }
    }

    /// Envelopes and bytes the front's ledger counts for `user`'s inbox (BROKER-5).
    pub fn ledger_count(&self, user: &str) -> (usize, usize) {
        self.front.ledger_count(user)
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.front.local_addr()
    }

    /// Which broker runs behind the front.
    pub fn broker(&self) -> Broker {
        self.broker
    }

    /// Starts a wiretap on the front (see [`Front::wiretap`]): every MQTT packet of every
    /// connection from now on, in plaintext, for the conformance wiretap (Req8).
    pub fn wiretap(&self) -> tokio::sync::mpsc::UnboundedReceiver<front::TapRecord> {
        self.front.wiretap()
    }

    /// The broker's internal address (the embedded broker's loopback port, which accepts only
    /// the front's CONNECT; Mosquitto's Unix socket).
    pub fn internal_addr(&self) -> InternalAddr {
        self.backend.upstream().addr
    }

    /// The Mosquitto child process's id, when the service runs Mosquitto.
    pub fn mosquitto_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Mosquitto(m) => m.pid(),
            Backend::Embedded(_) | Backend::Nats(_) => None,
        }
    }

    /// Starts the Mosquitto child again if it has exited by itself (a crash, or a kill from
    /// outside); returns whether it did. Its persistence file keeps what it had saved; the front
    /// then gives every inbox it has relayed its session back (BROKER-4), as after
    /// [`BrokerStop::Kill`]. `sotto serve` calls this every second.
    pub async fn revive_broker(&mut self) -> Result<bool, BrokerError> {
        let Backend::Mosquitto(m) = &mut self.backend else {
            return Ok(false);
        };
        if !m.revive().await? {
            return Ok(false);
        }
        front::restore_sessions(&self.backend.upstream(), &self.front.seen_users())
            .await
            .map_err(BrokerError::Restore)?;
        let up = self.front_upstream();
        self.front.set_upstream(Some(up));
        Ok(true)
    }

    /// Mosquitto's files (configuration, ACL, `run/` with its socket, log and persistence), if
    /// Mosquitto is the broker.
    pub fn mosquitto_files(&self) -> Option<&mosquitto::MosquittoFiles> {
        match &self.backend {
            Backend::Mosquitto(m) => Some(m.files()),
            Backend::Embedded(_) | Backend::Nats(_) => None,
        }
    }

    /// The NATS cluster, if NATS is the broker (what it holds is read from it:
    /// [`NatsCluster::held`]).
    pub fn nats(&self) -> Option<&NatsCluster> {
        match &self.backend {
            Backend::Nats(n) => Some(n),
            Backend::Embedded(_) | Backend::Mosquitto(_) => None,
        }
    }

    /// Puts `hop` between the front and the broker: connections made from now on go through it,
    /// and [`MessageService::restart_broker`] tells it where the broker went.
    pub fn interpose(&mut self, hop: Arc<dyn Hop>) {
        let up = self.backend.upstream();
        self.front.set_upstream(Some(Upstream {
            addr: InternalAddr::Tcp(hop.local_addr()),
            ..up
        }));
        self.hop = Some(hop);
    }

    /// The front's upstream for the current broker: through the hop if there is one.
    fn front_upstream(&self) -> Upstream {
        let up = self.backend.upstream();
        match &self.hop {
            Some(hop) => {
                hop.retarget(up.addr);
                Upstream {
                    addr: InternalAddr::Tcp(hop.local_addr()),
                    ..up
                }
            }
            None => up,
        }
    }

    /// Stops the broker: relayed connections close and new CONNECTs are answered "server
    /// unavailable" until [`MessageService::restart_broker`] (the embedded broker's queues are lost;
    /// Mosquitto writes its persistence file).
    pub async fn stop_broker(&mut self) -> Result<(), BrokerError> {
        if let Backend::Nats(_) = self.backend {
            return Err(BrokerError::NotManaged);
        }
        self.front.set_upstream(None);
        match &mut self.backend {
            Backend::Embedded(b) => b.stop(),
            Backend::Mosquitto(m) => m.stop().await?,
            Backend::Nats(_) => {}
        }
        Ok(())
    }

    /// Restarts the broker as `stop` says ([`BrokerStop`]). After a graceful restart that lost
    /// the sessions (the embedded broker always, Mosquitto with [`BrokerStop::Fresh`]), the inbox session of
    /// every user the front has relayed is restored ([`front::restore_sessions`]), so that
    /// messages to offline users are queued again from then on (BROKER-4). After
    /// [`BrokerStop::Kill`] the front is a new one too, on the same address, knowing nobody.
    pub async fn restart_broker(&mut self, stop: BrokerStop) -> Result<(), BrokerError> {
        if let Backend::Nats(_) = self.backend {
            return Err(BrokerError::NotManaged);
        }
        // New CONNECTs get "server unavailable" meanwhile; relayed connections close.
        self.front.set_upstream(None);
        match stop {
            BrokerStop::Graceful | BrokerStop::Fresh => {
                let lost_sessions = match &mut self.backend {
                    Backend::Embedded(b) => {
                        b.stop();
                        *b = EmbeddedBroker::start(self.limits).await?;
                        true
                    }
                    Backend::Mosquitto(m) => {
                        let keep = stop == BrokerStop::Graceful;
                        m.restart(keep).await?;
                        !keep
                    }
                    Backend::Nats(_) => false,
                };
                if lost_sessions {
                    self.front.reset_ledger();
                    front::restore_sessions(&self.backend.upstream(), &self.front.seen_users())
                        .await
                        .map_err(BrokerError::Restore)?;
                }
            }
            BrokerStop::Kill => {
                let addr = self.front.local_addr();
                self.front.close().await;
                match &mut self.backend {
                    Backend::Embedded(b) => {
                        b.stop();
                        *b = EmbeddedBroker::start(self.limits).await?;
                    }
                    Backend::Mosquitto(m) => m.kill_and_restart().await?,
                    Backend::Nats(_) => {}
                }
                self.front = Front::bind(
                    addr,
                    self.tls.clone(),
                    None,
                    self.limits,
                    self.admission,
                    self.revocations.clone(),
                    self.departures.clone(),
                    self.metrics.clone(),
                )
                .await?;
            }
        }
        // A new embedded broker is a new engine: the purge goes to it from now on.
        self.departures.set_purge(Some(self.backend.purge()));
        let up = self.front_upstream();
        self.front.set_upstream(Some(up));
        Ok(())
    }

    /// Stops the front and the broker (Mosquitto gracefully: its persistence file is written).
    pub async fn shutdown(mut self) {
        self.departures.set_purge(None);
        self.front.set_upstream(None);
        match &mut self.backend {
            Backend::Embedded(b) => b.stop(),
            Backend::Mosquitto(m) if m.is_running() => {
                if let Err(e) = m.stop().await {
                    tracing::warn!(error = %e, "stopping mosquitto");
                }
            }
            Backend::Mosquitto(_) | Backend::Nats(_) => {}
        }
        self.front.shutdown().await;
    }
}

/// 32 random bytes, hex: the password the front sends to the internal broker (embedded or
/// Mosquitto), new at each start.
pub(crate) fn random_secret() -> Result<String, BrokerError> {
    random_hex::<32>()
}

/// `N` bytes from the system's secure random source, hex (secrets and unlinkable ids).
pub(crate) fn random_hex<const N: usize>() -> Result<String, BrokerError> {
    let bytes = crate::random::random_bytes::<N>().ok_or(BrokerError::Random)?;
    Ok(hex::encode(&bytes[..]))
}
