//! The message service: MQTT 3.1.1 over mutual TLS, with the rules BROKER-1..4 enforced.
//!
//! Two profiles:
//! - **embedded** ([`MessageService::start_embedded`]): an in-process rumqttd on an internal
//!   loopback port ([`embedded`]) behind the authorizing TLS front ([`front`]), which applies the
//!   sans-IO [`filter`] to every client packet.
//! - **Mosquitto** ([`mosquitto`]): the same rules as a Mosquitto 2.0 configuration (mTLS, CN as
//!   username and client id, ACL), optionally run as a child process.
//!
//! ```text
//!  device --mTLS (CN = user id)--> front --filter--> rumqttd (127.0.0.1:<internal>)
//!                                    ^ SUBACK 0x80 / CONNACK refusals / close
//! ```
//!
//! Offline messages of the embedded profile live in memory: a restart of rumqttd
//! ([`MessageService::restart_broker`]) loses them; Mosquitto's persistence keeps them.

pub mod embedded;
pub mod filter;
pub mod front;
pub mod mosquitto;
pub mod port;

use std::net::SocketAddr;

use crate::ca::{CaError, Pki};
use embedded::EmbeddedBroker;
use front::Front;

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
    /// The broker did not answer on its port in time.
    #[error("broker at {0} not ready")]
    NotReady(SocketAddr),
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
    /// The `mosquitto` binary could not be started.
    #[error("cannot start mosquitto: {0}")]
    MosquittoMissing(#[source] std::io::Error),
    /// Mosquitto exited during startup.
    #[error("mosquitto exited ({status}): {log}")]
    MosquittoExited {
        /// Exit status.
        status: String,
        /// Its stderr and log file.
        log: String,
    },
}

/// The embedded message service: the TLS front and the internal rumqttd.
#[derive(Debug)]
pub struct MessageService {
    front: Front,
    broker: Option<EmbeddedBroker>,
}

impl MessageService {
    /// Starts rumqttd on an internal loopback port and the front on `listen` (port 0: any free
    /// port; see [`MessageService::local_addr`]), with the MQTT TLS configuration of `pki`.
    pub async fn start_embedded(
        pki: &Pki,
        listen: SocketAddr,
    ) -> Result<MessageService, BrokerError> {
        let tls = pki.mqtt_server_config()?;
        let broker = EmbeddedBroker::start().await?;
        let front = Front::bind(listen, tls, Some(broker.upstream())).await?;
        Ok(MessageService {
            front,
            broker: Some(broker),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.front.local_addr()
    }

    /// Starts a wiretap on the front (see [`Front::wiretap`]): every MQTT packet of every
    /// connection from now on, in plaintext, for the conformance wiretap (Req8).
    pub fn wiretap(&self) -> tokio::sync::mpsc::UnboundedReceiver<front::TapRecord> {
        self.front.wiretap()
    }

    /// The internal rumqttd address, if running (plain TCP; it accepts only the front's CONNECT).
    pub fn internal_addr(&self) -> Option<SocketAddr> {
        self.broker.as_ref().map(|b| b.upstream().addr)
    }

    /// Stops rumqttd: every connection is closed, new CONNECTs get "server unavailable", queued
    /// messages are lost.
    pub fn stop_broker(&mut self) {
        self.front.set_upstream(None);
        if let Some(broker) = self.broker.take() {
            broker.stop();
        }
    }

    /// Stops rumqttd and starts a fresh one: queued messages are lost; the inbox session of every
    /// user the front has relayed is restored ([`front::restore_sessions`]), so that messages to
    /// offline users are queued again from now on (BROKER-4).
    pub async fn restart_broker(&mut self) -> Result<(), BrokerError> {
        self.stop_broker();
        let broker = EmbeddedBroker::start().await?;
        front::restore_sessions(&broker.upstream(), &self.front.seen_users()).await?;
        self.front.set_upstream(Some(broker.upstream()));
        self.broker = Some(broker);
        Ok(())
    }

    /// Stops the front and the broker.
    pub async fn shutdown(mut self) {
        self.stop_broker();
        self.front.shutdown().await;
    }
}
