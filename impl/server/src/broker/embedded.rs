//! The embedded rumqttd 0.20 on an internal loopback port, reachable only through the front.
//!
//! rumqttd has no topic authorization and lets a client id take over another's session, so it
//! never faces clients directly: it listens in plain TCP on `127.0.0.1:<free port>` and accepts
//! only CONNECTs carrying a per-start random secret as password (the front's, see
//! [`sotto_wire::mqtt::encode_connect`]). Sessions are persistent (`clean_session = false`, BROKER-4)
//! and queued messages live in rumqttd's in-memory per-topic commit log: sized so that 10,000
//! queued LIM-1 envelopes per inbox survive, and lost when the process (or this broker) stops.
//!
//! `Broker::start` blocks forever and rumqttd has no shutdown: [`EmbeddedBroker::stop`] makes it
//! refuse every CONNECT (the front closes the relayed connections), and its threads stay parked
//! until the process exits. A restart is a new rumqttd with an empty store on a new port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rumqttd::{Config, ConnectionSettings, RouterConfig, ServerSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BrokerError;
use super::front::Upstream;
use super::port::PortReservation;
use sotto_wire::filter::MAX_CLIENT_REMAINING;
use sotto_wire::mqtt;

/// Bytes per commit-log segment (per topic).
pub const SEGMENT_SIZE: usize = 16 * 1024 * 1024;
/// Segments kept per topic: 8 x 16 MiB = 128 MiB, above 10,000 x (8,192 + topic) bytes.
pub const SEGMENT_COUNT: usize = 8;
/// Largest packet rumqttd reads (above the front's limit; the front enforces LIM-1).
const MAX_PACKET: usize = 4 * MAX_CLIENT_REMAINING;
/// How long to wait for rumqttd to answer on its port.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running embedded rumqttd.
pub struct EmbeddedBroker {
    upstream: Upstream,
    enabled: Arc<AtomicBool>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.upstream.addr)
            .finish_non_exhaustive()
    }
}

/// The rumqttd configuration: one v4 (MQTT 3.1.1) listener on `listen`, persistent sessions,
/// generous limits, and the secret checked by `auth`.
pub fn config(
    listen: SocketAddr,
    auth: impl Fn(&str, &str, &str) -> bool + Send + Sync + 'static,
) -> Config {
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        std::future::ready(auth(&client_id, &user, &pass))
    });
    let server = ServerSettings {
        name: "sotto-internal".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let router = RouterConfig {
        max_connections: 10_010,
        max_outgoing_packet_count: 200,
        max_segment_size: SEGMENT_SIZE,
        max_segment_count: SEGMENT_COUNT,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Config::default()
    }
}

impl EmbeddedBroker {
    /// Starts rumqttd on a free `127.0.0.1` port, on its own thread, and waits until it answers a
    /// CONNECT with the secret.
    pub async fn start() -> Result<EmbeddedBroker, BrokerError> {
        let secret: Arc<str> = random_secret()?.into();
        // A free port, held until rumqttd listens on it (see `port`).
        let reserved = PortReservation::loopback()?;
        let addr = reserved.addr();

        let enabled = Arc::new(AtomicBool::new(true));
        let auth = {
            let enabled = enabled.clone();
            let secret = secret.clone();
            move |client_id: &str, user: &str, pass: &str| {
                enabled.load(Ordering::SeqCst)
                    && user == client_id
                    && constant_time_eq(pass.as_bytes(), secret.as_bytes())
            }
        };
        let config = config(addr, auth);
        std::thread::Builder::new()
            .name("sotto-rumqttd".to_owned())
            .spawn(move || {
                let mut broker = rumqttd::Broker::new(config);
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded rumqttd stopped");
                }
            })?;

        let upstream = Upstream { addr, secret };
        wait_ready(&upstream).await?;
        drop(reserved);
        tracing::info!(%addr, "embedded rumqttd ready");
        Ok(EmbeddedBroker { upstream, enabled })
    }

    /// Where the front connects, and with which secret.
    pub fn upstream(&self) -> Upstream {
        self.upstream.clone()
    }

    /// Refuses every further CONNECT. Queued messages become unreachable (rumqttd has no
    /// shutdown; its threads idle until the process exits).
    pub fn stop(&self) {
        self.enabled.store(false, Ordering::SeqCst);
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects, sends a CONNECT with the secret, expects CONNACK accepted, closes.
async fn wait_ready(upstream: &Upstream) -> Result<(), BrokerError> {
    let attempt = async {
        loop {
            if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(2), probe(upstream)).await
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(READY_TIMEOUT, attempt)
        .await
        .map_err(|_| BrokerError::NotReady(upstream.addr))
}

async fn probe(upstream: &Upstream) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect(upstream.addr).await?;
    let id = "sotto-probe";
    tcp.write_all(&mqtt::encode_connect(
        id,
        30,
        true,
        id,
        upstream.secret.as_bytes(),
    ))
    .await?;
    let mut connack = [0u8; 4];
    tcp.read_exact(&mut connack).await?;
    if connack != [0x20, 0x02, 0x00, 0x00] {
        return Err(std::io::Error::other("CONNACK not accepted"));
    }
    // Closed without a DISCONNECT packet: rumqttd would free the probe's connection id twice and
    // could close the next client given that id (see the front's `is_disconnect`).
    tcp.shutdown().await
}

fn random_secret() -> Result<String, BrokerError> {
    let mut bytes = [0u8; 32];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| BrokerError::Random)?;
    Ok(hex::encode(bytes))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
