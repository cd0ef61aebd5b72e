//! The real stack in-process: a test PKI, the membership service and the message service (the
//! embedded rumqttd behind its front, or Mosquitto) on loopback with free ports, real TLS and real
//! SQLCipher stores. Every wait is bounded by [`WAIT`]; nothing asserts on speed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sotto_client::{
    Client, ClientEvent, KdfParams, MessageId, MessageState, SessionHandle, SignupOptions,
    SyncReport,
};
use sotto_server::broker::MessageService;
use sotto_server::broker::mosquitto::{MosquittoProcess, MosquittoProfile};
use sotto_server::ca::Pki;
use sotto_server::membership::{Membership, MembershipConfig, MembershipHandle};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

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
    /// The broker address the membership service tells devices at signup (the broker's own
    /// address, or a proxy in front of it).
    pub advertised: SocketAddr,
}

/// A stack whose membership service is stopped ([`Stack::stop_membership`]): the broker runs,
/// the membership service's port is closed, its database and the PKI stay on disk.
pub struct MembershipDown {
    pub dir: tempfile::TempDir,
    pub pki: Arc<Pki>,
    pub broker: Broker,
    /// Where the membership service listened, and listens again after [`MembershipDown::start`].
    pub listen: SocketAddr,
    pub advertised: SocketAddr,
}

impl MembershipDown {
    /// Makes the service, once started again, tell devices `addr` as the broker address.
    pub fn advertise(self, addr: SocketAddr) -> MembershipDown {
        MembershipDown {
            advertised: addr,
            ..self
        }
    }

    /// Starts the membership service again on the same address (devices keep its URL), with the
    /// PKI loaded again from disk (the same CA; asserted) and the same database.
    pub async fn start(self) -> Stack {
        let pki = Arc::new(Pki::load_or_create(&self.dir.path().join("pki")).expect("pki again"));
        assert_eq!(pki.ca_pem(), self.pki.ca_pem(), "the CA survives a restart");
        let membership = start_membership(&self.dir, &pki, self.listen, self.advertised).await;
        assert_eq!(membership.local_addr(), self.listen, "same address");
        Stack {
            dir: self.dir,
            pki,
            membership,
            broker: self.broker,
            advertised: self.advertised,
        }
    }
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
        let membership = start_membership(&dir, &pki, loopback(), broker_addr).await;
        Stack {
            dir,
            pki,
            membership,
            broker: Broker::Embedded(service),
            advertised: broker_addr,
        }
    }

    /// PKI + Mosquitto (the external profile) + membership service.
    pub async fn mosquitto() -> Stack {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Arc::new(Pki::load_or_create(&dir.path().join("pki")).expect("pki"));
        let profile = MosquittoProfile::write(&pki, &dir.path().join("mosquitto"), loopback())
            .expect("mosquitto profile");
        let process = MosquittoProcess::spawn(&profile).await.expect("mosquitto");
        let membership = start_membership(&dir, &pki, loopback(), process.addr()).await;
        Stack {
            dir,
            pki,
            membership,
            advertised: process.addr(),
            broker: Broker::Mosquitto(process),
        }
    }

    /// The broker's own address (not a proxy's).
    pub fn broker_addr(&self) -> SocketAddr {
        match &self.broker {
            Broker::Embedded(s) => s.local_addr(),
            Broker::Mosquitto(m) => m.addr(),
        }
    }

    /// Stops the membership service (closing its connections and waiting for that); the broker
    /// keeps running.
    pub async fn stop_membership(self) -> MembershipDown {
        let listen = self.membership.local_addr();
        self.membership.shutdown().await;
        MembershipDown {
            dir: self.dir,
            pki: self.pki,
            broker: self.broker,
            listen,
            advertised: self.advertised,
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
    listen: SocketAddr,
    broker: SocketAddr,
) -> MembershipHandle {
    Membership::start(
        MembershipConfig {
            data_dir: dir.path().join("membership"),
            listen,
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
    let addr = stack.broker_addr();
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

/// What Alice's syncs did, summed ([`try_sync`]).
#[derive(Default)]
pub struct Tally {
    /// Envelopes published (messages, resends).
    pub published: usize,
    /// Envelopes received (receipts).
    pub received: usize,
    /// Syncs that failed as a whole.
    pub failed: usize,
}

/// One sync that may fail or end early (the broker may be down): what happened is in the store.
pub async fn try_sync(client: &mut Client, tally: &mut Tally) {
    match client.sync_with(WAIT, QUIET).await {
        Ok(report) => {
            if !report.complete {
                eprintln!("sync incomplete: {} events", report.events.len());
            }
            tally.published += report.published;
            tally.received += report.received;
        }
        Err(e) => {
            eprintln!("sync failed: {e}");
            tally.failed += 1;
        }
    }
}

/// What a connected session showed its user.
#[derive(Default)]
pub struct Shown {
    pub texts: Vec<String>,
    pub disconnections: usize,
}

/// A user connected: the session and the task collecting its events.
pub struct Online {
    pub session: SessionHandle,
    collector: JoinHandle<Shown>,
}

/// Collects the texts of the message events, and counts the disconnections, until the session
/// ends; tells `connected` about the first inbox subscription.
async fn collect(mut events: mpsc::Receiver<ClientEvent>, connected: oneshot::Sender<()>) -> Shown {
    let mut connected = Some(connected);
    let mut shown = Shown::default();
    while let Some(e) = events.recv().await {
        match e {
            // With a persistent session, the broker may deliver queued messages before the SUBACK.
            ClientEvent::Message(m) => shown.texts.push(m.text),
            ClientEvent::Connected { .. } => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                }
            }
            ClientEvent::Disconnected { .. } => shown.disconnections += 1,
            _ => {}
        }
    }
    shown
}

/// Connects a session and waits for its inbox subscription.
pub async fn go_online(client: Client) -> Online {
    let (session, events) = client.connect();
    let (tx, rx) = oneshot::channel();
    let collector = tokio::spawn(collect(events, tx));
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("connected within the wait")
        .expect("the session stopped before connecting");
    Online { session, collector }
}

/// Stops a session; returns the account and what the session showed.
pub async fn go_offline(online: Online) -> (Client, Shown) {
    let client = tokio::time::timeout(WAIT, online.session.shutdown())
        .await
        .expect("the session stops within the wait")
        .expect("shutdown");
    let shown = tokio::time::timeout(WAIT, online.collector)
        .await
        .expect("event channel closed")
        .expect("collector");
    (client, shown)
}

/// Every message of `ids` is `Delivered` at `sender` (its receipt arrived) and nothing is left in
/// its outbox.
pub fn assert_all_delivered(sender: &Client, ids: &[MessageId]) {
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            sender.outgoing_state(id).expect("state"),
            Some(MessageState::Delivered),
            "message {i}"
        );
    }
    assert_eq!(sender.outbox_len().expect("outbox"), 0);
}

/// `texts` holds each of `expected` exactly once, and nothing else.
pub fn assert_exactly_once(what: &str, texts: &[String], expected: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in texts {
        *counts.entry(t.as_str()).or_insert(0) += 1;
    }
    for t in expected {
        assert_eq!(
            counts.get(t.as_str()).copied().unwrap_or(0),
            1,
            "{what}: {t:.40?} must be there exactly once (counts of {} texts)",
            texts.len()
        );
    }
    assert_eq!(texts.len(), expected.len(), "{what}: nothing else");
}

/// The texts `client` received from `peer`, as in its store.
pub fn received_texts(client: &Client, peer: sotto_client::UserId) -> Vec<String> {
    client
        .messages(&sotto_client::Chat::User(peer))
        .expect("messages")
        .into_iter()
        .filter(|m| m.sender == Some(peer))
        .map(|m| m.text)
        .collect()
}

/// Keeps `sender` syncing (at most `within`) until every one of `ids` is delivered, its outbox is
/// empty and the connected `receiver` holds at least `ids.len()` messages from it. `false` if
/// that did not happen in time (the caller's assertions then say what is missing).
pub async fn settle(
    sender: &mut Client,
    ids: &[sotto_client::MessageId],
    tally: &mut Tally,
    receiver: &Online,
    within: Duration,
) -> bool {
    use sotto_client::MessageState;
    let from = sender.user_id();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        try_sync(sender, tally).await;
        let delivered = ids
            .iter()
            .filter(|id| sender.outgoing_state(id).expect("state") == Some(MessageState::Delivered))
            .count();
        let outbox = sender.outbox_len().expect("outbox");
        let arrived = receiver
            .session
            .call(move |c| received_texts(c, from).len())
            .await
            .expect("the receiver's session runs");
        if delivered == ids.len() && outbox == 0 && arrived >= ids.len() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "not settled: {delivered} delivered, {outbox} in the outbox, {arrived} arrived"
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
