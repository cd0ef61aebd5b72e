//! Shared helpers of the server integration tests: identities issued by a test PKI and rumqttc
//! clients over mutual TLS. Every wait is bounded by [`WAIT`].
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, TlsConfiguration,
    Transport,
};
use sotto_server::ca::{self, Pki};
use tokio::sync::mpsc;

/// Upper bound of every wait in the tests (never an assertion about speed).
pub const WAIT: Duration = Duration::from_secs(10);
/// How long a negative check ("nothing arrives") waits after a positive control arrived.
pub const QUIET: Duration = Duration::from_millis(700);

/// Sends the server's and rumqttd's `tracing` events to the test output, filtered by
/// `SOTTO_TEST_LOG` (for example `SOTTO_TEST_LOG=debug`); silent when it is unset.
pub fn log_to_test_output() {
    if let Ok(filter) = std::env::var("SOTTO_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A fresh random user id (ID-1: 16 characters of `[a-z2-7]`).
pub fn random_user_id() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("OS random source");
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
        .collect()
}

/// ID-5.
pub fn inbox(user_id: &str) -> String {
    format!("i/{user_id}")
}

/// A device identity: user id, certificate (CN = user id) and TLS key.
#[derive(Clone)]
pub struct Identity {
    pub user_id: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Issues a certificate from `pki` for a new random user id.
pub fn identity(pki: &Pki) -> Identity {
    let user_id = random_user_id();
    let device = ca::generate_device_key().expect("device key");
    let cert_pem = pki
        .issue_client_cert(&user_id, &device.spki_der)
        .expect("issue");
    Identity {
        user_id,
        cert_pem,
        key_pem: device.key_pem,
    }
}

/// rumqttc options for `id` at `addr`, trusting `ca_pem`, client id = user id.
pub fn options(id: &Identity, addr: SocketAddr, ca_pem: &str, clean_session: bool) -> MqttOptions {
    let mut opts = MqttOptions::new(id.user_id.clone(), addr.ip().to_string(), addr.port());
    let tls = ca::client_config(ca_pem, Some((&id.cert_pem, &id.key_pem))).expect("client config");
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    opts.set_clean_session(clean_session);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    opts
}

/// A connected-or-failed client: its handle and the stream of its event-loop events. The event
/// loop stops at the first error (no automatic reconnection).
pub struct Client {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
}

/// Starts the event loop of `opts` on a task.
pub fn start(opts: MqttOptions) -> Client {
    let (client, eventloop) = AsyncClient::new(opts, 64);
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, tx));
    Client { client, events }
}

async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<Result<Event, ConnectionError>>,
) {
    loop {
        let event = eventloop.poll().await;
        let stop = matches!(
            event,
            Err(_) | Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
        );
        if tx.send(event).is_err() || stop {
            break;
        }
    }
}

impl Client {
    /// The next event matching `pred`, skipping others; `None` on timeout or end of the loop.
    pub async fn wait_for<T>(
        &mut self,
        within: Duration,
        mut pred: impl FnMut(&Result<Event, ConnectionError>) -> Option<T>,
    ) -> Option<T> {
        tokio::time::timeout(within, async {
            while let Some(event) = self.events.recv().await {
                if let Some(t) = pred(&event) {
                    return Some(t);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Waits for the CONNACK; returns `session_present`, or the connection error.
    pub async fn connack(&mut self) -> Result<bool, String> {
        self.wait_for(WAIT, |e| match e {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => Some(Ok(ack.session_present)),
            Err(e) => Some(Err(e.to_string())),
            _ => None,
        })
        .await
        .unwrap_or_else(|| Err("no CONNACK within the wait".to_owned()))
    }

    /// Why the event loop stopped: the error it ended with (for a panic message when a request
    /// can no longer be queued).
    pub fn ended(&mut self) -> String {
        let mut last = String::from("event loop ended without an error event");
        while let Ok(event) = self.events.try_recv() {
            match event {
                Err(e) => return format!("connection ended: {e} ({e:?})"),
                Ok(e) => last = format!("event loop ended; last event {e:?}"),
            }
        }
        last
    }

    /// Subscribes to `filter` at QoS 1 and returns the SUBACK return codes.
    pub async fn subscribe(&mut self, filter: &str) -> Option<Vec<rumqttc::SubscribeReasonCode>> {
        if self
            .client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .await
            .is_err()
        {
            panic!("SUBSCRIBE {filter}: {}", self.ended());
        }
        self.wait_for(WAIT, |e| match e {
            Ok(Event::Incoming(Packet::SubAck(ack))) => Some(Some(ack.return_codes.clone())),
            Err(_) => Some(None),
            _ => None,
        })
        .await
        .flatten()
    }

    /// Publishes at QoS 1 and waits for the PUBACK (`false` if the connection ends first).
    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        if self
            .client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retain, payload)
            .await
            .is_err()
        {
            panic!("PUBLISH {topic}: {}", self.ended());
        }
        self.wait_for(WAIT, |e| match e {
            Ok(Event::Incoming(Packet::PubAck(_))) => Some(true),
            Err(_) => Some(false),
            _ => None,
        })
        .await
        .unwrap_or(false)
    }

    /// The next PUBLISH received within `within` (topic, payload).
    pub async fn next_message(&mut self, within: Duration) -> Option<(String, Vec<u8>)> {
        self.wait_for(within, |e| match e {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                Some(Some((p.topic.clone(), p.payload.to_vec())))
            }
            Err(_) => Some(None),
            _ => None,
        })
        .await
        .flatten()
    }

    /// Whether the connection ends (an error from the event loop) within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        self.wait_for(within, |e| e.is_err().then_some(()))
            .await
            .is_some()
            || self.events.is_closed()
    }

    /// Sends DISCONNECT and waits until the event loop has sent it.
    pub async fn disconnect(mut self) {
        let _ = self.client.disconnect().await;
        let _ = self
            .wait_for(WAIT, |e| {
                matches!(
                    e,
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) | Err(_)
                )
                .then_some(())
            })
            .await;
    }
}
