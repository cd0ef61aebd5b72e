//! The real stack in-process: a test PKI, the membership service and the message service (the
//! embedded rumqttd behind its front, or Mosquitto) on loopback with free ports, real TLS and real
//! SQLCipher stores. Every wait is bounded by [`WAIT`]; nothing asserts on speed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sotto_client::{Client, ClientEvent, KdfParams, SignupOptions, SyncReport};
use sotto_server::broker::MessageService;
use sotto_server::broker::mosquitto::{MosquittoProcess, MosquittoProfile};
use sotto_server::ca::Pki;
use sotto_server::membership::{Membership, MembershipConfig, MembershipHandle};

/// Upper bound of every sync in the tests.
pub const WAIT: Duration = Duration::from_secs(20);
/// Quiet period of the test syncs.
pub const QUIET: Duration = Duration::from_millis(700);
/// Proof-of-work difficulty of the test service (small, but the work path runs).
pub const DIFFICULTY: u8 = 4;

/// Which message service runs.
pub enum Broker {
    Embedded(MessageService),
    Mosquitto(MosquittoProcess),
}

/// A running stack and the directory of its files.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub pki: Arc<Pki>,
    pub membership: MembershipHandle,
    pub broker: Broker,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Stack {
    /// PKI + embedded message service + membership service.
    pub async fn embedded() -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Arc::new(Pki::load_or_create(&dir.path().join("pki")).expect("pki"));
        let service = MessageService::start_embedded(&pki, loopback())
            .await
            .expect("message service");
        let broker_addr = service.local_addr();
        let membership = start_membership(&dir, &pki, broker_addr).await;
        Stack {
            dir,
            pki,
            membership,
            broker: Broker::Embedded(service),
        }
    }

    /// PKI + Mosquitto (the external profile) + membership service.
    pub async fn mosquitto() -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Arc::new(Pki::load_or_create(&dir.path().join("pki")).expect("pki"));
        let profile = MosquittoProfile::write(&pki, &dir.path().join("mosquitto"), loopback())
            .expect("mosquitto profile");
        let process = MosquittoProcess::spawn(&profile).await.expect("mosquitto");
        let membership = start_membership(&dir, &pki, process.addr()).await;
        Stack {
            dir,
            pki,
            membership,
            broker: Broker::Mosquitto(process),
        }
    }

    /// The store path of a user called `name`.
    pub fn store_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.db"))
    }

    /// Signs up a user (cheap Argon2 parameters, the inbox session established).
    pub async fn signup(&self, name: &str) -> Client {
        let options = SignupOptions {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            one_time_prekeys: 10,
            establish_inbox: Some(WAIT),
        };
        Client::signup_with(
            &self.membership.url(),
            self.pki.ca_pem(),
            self.store_path(name),
            PASSPHRASE,
            &options,
        )
        .await
        .expect("signup")
    }
}

/// The passphrase of every test store.
pub const PASSPHRASE: &[u8] = b"correct horse battery staple";

async fn start_membership(
    dir: &tempfile::TempDir,
    pki: &Arc<Pki>,
    broker: SocketAddr,
) -> MembershipHandle {
    Membership::start(
        MembershipConfig {
            data_dir: dir.path().join("membership"),
            listen: loopback(),
            difficulty: DIFFICULTY,
            broker_addr: broker.to_string(),
        },
        pki.clone(),
    )
    .await
    .expect("membership service")
}

/// One sync with the test bounds.
pub async fn sync(client: &mut Client) -> SyncReport {
    let report = client.sync_with(WAIT, QUIET).await.expect("sync");
    assert!(report.complete, "sync did not finish within {WAIT:?}");
    report
}

/// The texts of the message events.
pub fn texts(report: &SyncReport) -> Vec<String> {
    report
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

/// Alice and Bob scan each other's cards (CARD-4: verified both ways).
pub fn exchange_cards(a: &mut Client, b: &mut Client) {
    let card_a = a.card().expect("card");
    let card_b = b.card().expect("card");
    a.add_card(&card_b).expect("scan");
    b.add_card(&card_a).expect("scan");
}

/// Publishes raw bytes to `to`'s inbox as a separate, certified client of the stack (the
/// attacker with a valid account: the broker accepts it, the envelope names no sender). Waits for
/// the PUBACK.
pub async fn raw_publish(stack: &Stack, to: &sotto_client::UserId, payloads: &[Vec<u8>]) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

    let user = sotto_client::UserId([7; 10]).to_text();
    let key = sotto_server::ca::generate_device_key().expect("device key");
    let cert = stack
        .pki
        .issue_client_cert(&user, &key.spki_der)
        .expect("certificate");
    let addr = match &stack.broker {
        Broker::Embedded(s) => s.local_addr(),
        Broker::Mosquitto(m) => m.addr(),
    };
    let mut opts = MqttOptions::new(user, addr.ip().to_string(), addr.port());
    let tls = sotto_server::ca::client_config(stack.pki.ca_pem(), Some((&cert, &key.key_pem)))
        .expect("tls");
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    for p in payloads {
        client
            .publish(to.inbox_topic(), QoS::AtLeastOnce, false, p.clone())
            .await
            .expect("request");
    }
    let mut acked = 0;
    tokio::time::timeout(WAIT, async {
        while acked < payloads.len() {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(e) => panic!("raw client: {e}"),
            }
        }
    })
    .await
    .expect("PUBACKs within the wait");
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
}

/// The envelopes waiting in a client's outbox, oldest first.
pub fn outbox(client: &Client) -> Vec<sotto_store::OutboxEntry> {
    client
        .store()
        .due_outbox(u64::MAX / 2, 1_000)
        .expect("outbox")
}
