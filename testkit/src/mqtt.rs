//! Raw MQTT clients for tests that speak to the message service without `sotto-client`: device
//! identities issued by the service PKI (a fresh TLS key, a certificate, CN = user id) and rumqttc
//! clients over mutual TLS whose events a test waits for. Every wait is bounded by [`WAIT`].

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, TlsConfiguration,
    Transport,
};
use sotto_server::ca::Pki;
use tokio::sync::mpsc;

/// Upper bound of every wait of a raw client (never an assertion about speed).
pub const WAIT: Duration = Duration::from_secs(10);

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

/// A device before signup: its protocol keys (from a seed), a TLS key, and its signup request
/// bytes (SIGNUP-1..3) for `challenge` at `difficulty`, with `opks` one-time prekeys. The device
/// learns its user id only from the signup response.
pub struct NewDevice {
    /// The device (user id all zero until signup).
    pub device: sotto_core::Device,
    /// Its TLS key.
    pub tls: DeviceTlsKey,
    /// The signup request.
    pub request: Vec<u8>,
}

impl NewDevice {
    /// A new device from `seed`, and its signup request.
    pub fn new(seed: u64, opks: usize, challenge: &[u8], difficulty: u8) -> NewDevice {
        use rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        let mut device = sotto_core::Device::new(&mut rng, sotto_core::UserId([0; 10]));
        let tls = DeviceTlsKey::generate();
        let request = device
            .signup_request(&mut rng, &tls.spki_der, opks, challenge, difficulty)
            .expect("a signup request")
            .to_bytes();
        NewDevice {
            device,
            tls,
            request,
        }
    }
}

/// A device's TLS key pair (ECDSA P-256, KEY-6), as a client makes it before signup.
pub struct DeviceTlsKey {
    /// The private key, PKCS#8 PEM (secret: never logged).
    pub key_pem: String,
    /// The DER SubjectPublicKeyInfo sent in the signup request.
    pub spki_der: Vec<u8>,
}

impl std::fmt::Debug for DeviceTlsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTlsKey").finish_non_exhaustive()
    }
}

impl DeviceTlsKey {
    /// A fresh key pair.
    pub fn generate() -> DeviceTlsKey {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key pair");
        DeviceTlsKey {
            key_pem: key.serialize_pem(),
            spki_der: rcgen::PublicKeyData::subject_public_key_info(&key),
        }
    }

    /// A self-signed certificate of this key, PEM: what a device presents at signup and renewal
    /// to prove it holds the key (`sotto_client::tls::key_proof_pem`).
    pub fn proof_pem(&self) -> String {
        sotto_client::tls::key_proof_pem(&self.key_pem).expect("self-signed certificate")
    }
}

/// A device identity: user id, certificate (CN = user id) and TLS key.
#[derive(Clone)]
pub struct Identity {
    /// The user id (ID-1).
    pub user_id: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The TLS private key, PEM.
    pub key_pem: String,
}

impl Identity {
    /// A certificate from `pki` for `user_id` and a fresh TLS key.
    pub fn issue(pki: &Pki, user_id: String) -> Identity {
        let device = DeviceTlsKey::generate();
        let cert_pem = pki
            .issue_client_cert(&user_id, &device.spki_der)
            .expect("issue");
        Identity {
            user_id,
            cert_pem,
            key_pem: device.key_pem,
        }
    }
}

/// Issues a certificate from `pki` for a new random user id.
pub fn identity(pki: &Pki) -> Identity {
    Identity::issue(pki, random_user_id())
}

/// rumqttc options for `id` at `addr`, trusting `ca_pem`, client id = user id.
pub fn options(id: &Identity, addr: SocketAddr, ca_pem: &str, clean_session: bool) -> MqttOptions {
    let mut opts = MqttOptions::new(id.user_id.clone(), addr.ip().to_string(), addr.port());
    let tls = sotto_client::tls::client_config(ca_pem, Some((&id.cert_pem, &id.key_pem)))
        .expect("client config");
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    opts.set_clean_session(clean_session);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_max_packet_size(64 * 1024, 64 * 1024);
    opts
}

/// A connected-or-failed raw client: its handle and the stream of its event-loop events. The
/// event loop stops at the first error (no automatic reconnection).
pub struct RawClient {
    /// The rumqttc handle.
    pub client: AsyncClient,
    /// Every event of the loop, the error it stopped with last.
    pub events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
}

/// Starts the event loop of `opts` on a task.
pub fn start(opts: MqttOptions) -> RawClient {
    let (client, eventloop) = AsyncClient::new(opts, 64);
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(drive(eventloop, tx));
    RawClient { client, events }
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

impl RawClient {
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
