//! The wiretap run (Req8: the server can never read a chat).
//!
//! The real stack runs in-process in a temporary directory, and everything the server side
//! handles is recorded in plaintext, after TLS:
//!
//! ```text
//!  A, B, C: sotto_client::Client (SQLCipher stores, fast test KDF)
//!     |  HTTPS                          |  MQTT over mutual TLS
//!     v                                 v
//!  membership --wiretap(): HttpTapRecord   front --wiretap(): TapRecord (both directions)
//!     |  <tmp>/server (membership.db, CA)   |  plain MQTT, loopback
//!     v                                     v
//!  files searched                        embedded rumqttd | InternalMosquitto (<tmp>/mosquitto)
//! ```
//!
//! Both taps are attached before any client exists. Three people sign up; A and B scan each
//! other's cards (verified), A adds C from the directory (unverified); messages go both ways
//! pairwise, one to a connected recipient and others to offline ones (with Mosquitto, the broker
//! is restarted while one is queued, so its persistence file holds it), then a group of three
//! with a message from each member. Every text carries a fresh random canary.
//!
//! Then every needle ([`Needle`]: each canary, each whole text, each client's identity private
//! keys, TLS private key (PEM and DER) and store passphrase, each message id; binary ones also in
//! hex) is searched for at every byte offset of every recorded MQTT packet, every HTTP request
//! (target and body) and response body, and every file the server side wrote (the membership data
//! directory; with Mosquitto its directory, persistence file included). Each hit is a finding
//! (`"<kind> <which> in <where> at offset N"`; the secret itself is never printed). So that the
//! search cannot pass vacuously, every canary must be found by the same search in its recipients'
//! decrypted messages, or the run fails.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use sotto_client::{
    Chat, Client, ClientError, ClientEvent, GroupId, KdfParams, MessageState, SignupOptions,
    SyncReport, UserId,
};
use sotto_server::broker::BrokerError;
use sotto_server::broker::embedded::EmbeddedBroker;
use sotto_server::broker::filter::{self, Packet};
use sotto_server::broker::front::{Front, TapDirection, TapRecord};
use sotto_server::broker::mosquitto::{self, InternalMosquitto};
use sotto_server::ca::{CaError, Pki};
use sotto_server::membership::{HttpTapRecord, Membership, MembershipConfig, MembershipError};
use sotto_store::Setting;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::evidence::WiretapEvidence;

/// Upper bound of every sync and wait of the run.
pub const WAIT: Duration = Duration::from_secs(20);
/// Quiet period of the syncs.
const QUIET: Duration = Duration::from_millis(500);
/// Proof-of-work difficulty of the run's membership service (small, but the work path runs).
const DIFFICULTY: u8 = 4;

/// Which broker runs behind the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerKind {
    /// The embedded rumqttd ([`EmbeddedBroker`]).
    Embedded,
    /// Mosquitto behind the front ([`InternalMosquitto`]).
    Mosquitto,
}

impl BrokerKind {
    /// `embedded` or `mosquitto` (as [`WiretapEvidence::broker`] names it).
    pub fn name(self) -> &'static str {
        match self {
            BrokerKind::Embedded => "embedded",
            BrokerKind::Mosquitto => "mosquitto",
        }
    }
}

/// Why the run could not produce evidence (findings are evidence, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WiretapError {
    /// File or socket I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The message service failed.
    #[error("message service: {0}")]
    Broker(#[from] BrokerError),
    /// The service CA failed.
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    /// The membership service failed.
    #[error("membership service: {0}")]
    Membership(#[from] MembershipError),
    /// A client failed.
    #[error("client: {0}")]
    Client(#[from] ClientError),
    /// A client's store failed.
    #[error("store: {0}")]
    Store(#[from] sotto_store::StoreError),
    /// [`BrokerKind::Mosquitto`] was asked for but no `mosquitto` binary is installed.
    #[error("`mosquitto` is not installed")]
    MosquittoMissing,
    /// The OS random source failed.
    #[error("random source failed")]
    Random,
    /// A step of the scenario did not happen as expected (no secret in the text).
    #[error("scenario: {0}")]
    Scenario(String),
}

// ------------------------------------------------------------------------------------ search

/// A secret searched for: what it is, whose it is, and its byte forms (raw, and hex for binary
/// secrets). `Debug` never shows the bytes.
#[derive(Clone)]
pub struct Needle {
    kind: String,
    which: String,
    forms: Vec<(&'static str, Vec<u8>)>,
}

impl std::fmt::Debug for Needle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Needle")
            .field("kind", &self.kind)
            .field("which", &self.which)
            .field(
                "forms",
                &self.forms.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Needle {
    /// A text secret (canary, message text, passphrase, PEM): searched as it is.
    pub fn text(kind: &str, which: &str, bytes: impl Into<Vec<u8>>) -> Needle {
        Needle {
            kind: kind.to_owned(),
            which: which.to_owned(),
            forms: vec![("", bytes.into())],
        }
    }

    /// A binary secret (key, message id): searched raw and as lowercase hex.
    pub fn binary(kind: &str, which: &str, bytes: &[u8]) -> Needle {
        Needle {
            kind: kind.to_owned(),
            which: which.to_owned(),
            forms: vec![
                ("", bytes.to_vec()),
                (" (hex)", hex::encode(bytes).into_bytes()),
            ],
        }
    }

    /// What it is (`canary`, `text`, `identity-key`, ...).
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Whose or which (`message 3 A->B`, `A signing`, ...).
    pub fn which(&self) -> &str {
        &self.which
    }
}

/// Every offset of `needle` in `haystack` (every byte offset is tried).
fn offsets(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let Some(&first) = needle.first() else {
        return Vec::new();
    };
    if needle.len() > haystack.len() {
        return Vec::new();
    }
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| w.first() == Some(&first) && *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// Searches `haystack` (described by `place`) for every form of every needle: one finding
/// `"<kind> <which> in <place> at offset N"` per hit.
pub fn search(needles: &[Needle], place: &str, haystack: &[u8]) -> Vec<String> {
    let mut findings = Vec::new();
    for n in needles {
        for (form, bytes) in &n.forms {
            for at in offsets(haystack, bytes) {
                findings.push(format!(
                    "{}{form} {} in {place} at offset {at}",
                    n.kind, n.which
                ));
            }
        }
    }
    findings
}

/// Where a recorded packet was: `mqtt packet <i> (conn <c>, <direction>)`.
fn frame_place(index: usize, r: &TapRecord) -> String {
    let direction = match r.direction {
        TapDirection::ClientToBroker { forwarded: true } => "client->broker",
        TapDirection::ClientToBroker { forwarded: false } => "client->front (refused)",
        TapDirection::BrokerToClient => "broker->client",
    };
    format!("mqtt packet {index} (conn {}, {direction})", r.conn)
}

/// Searches every recorded MQTT packet (both directions).
pub fn search_frames(needles: &[Needle], frames: &[TapRecord]) -> Vec<String> {
    frames
        .iter()
        .enumerate()
        .flat_map(|(i, r)| search(needles, &frame_place(i, r), &r.packet))
        .collect()
}

/// Searches every recorded HTTP request (target and body) and response body.
pub fn search_http(needles: &[Needle], records: &[HttpTapRecord]) -> Vec<String> {
    let mut findings = Vec::new();
    for r in records {
        match r {
            HttpTapRecord::Request {
                exchange,
                method,
                path,
                body,
            } => {
                findings.extend(search(
                    needles,
                    &format!("http request {exchange} ({method}) target"),
                    path.as_bytes(),
                ));
                findings.extend(search(
                    needles,
                    &format!("http request {exchange} ({method}) body"),
                    body,
                ));
            }
            HttpTapRecord::Response {
                exchange,
                status,
                body,
            } => findings.extend(search(
                needles,
                &format!("http response {exchange} ({status}) body"),
                body,
            )),
        }
    }
    findings
}

/// The payload of the last client PUBLISH to `topic` among `frames`.
fn last_publish_to(frames: &[TapRecord], topic: &str) -> Option<Vec<u8>> {
    frames.iter().rev().find_map(|r| {
        if !matches!(
            r.direction,
            TapDirection::ClientToBroker { forwarded: true }
        ) {
            return None;
        }
        match filter::parse(&r.packet) {
            Ok(Packet::Publish(p)) if p.topic == topic => {
                let start = r.packet.len().checked_sub(p.payload_len)?;
                Some(r.packet.get(start..)?.to_vec())
            }
            _ => None,
        }
    })
}

/// Every regular file under `dir`, recursively, sorted.
fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                todo.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

// ------------------------------------------------------------------------------------ the run

/// The broker behind the front.
enum Backend {
    Embedded(EmbeddedBroker),
    Mosquitto(InternalMosquitto),
}

struct Person {
    name: &'static str,
    client: Client,
    passphrase: String,
}

impl Person {
    fn id(&self) -> UserId {
        self.client.user_id()
    }
}

/// A message of the scenario: its text (with the canary), who got it, in which chat.
struct Sent {
    label: String,
    canary: String,
    text: String,
    /// Indexes into the people, with the chat as the recipient files it.
    recipients: Vec<(usize, Chat)>,
}

fn random_hex(bytes: usize) -> Result<String, WiretapError> {
    let mut b = vec![0u8; bytes];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|_| WiretapError::Random)?;
    Ok(hex::encode(b))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

async fn sync(p: &mut Person) -> Result<SyncReport, WiretapError> {
    let report = p.client.sync_with(WAIT, QUIET).await?;
    if !report.complete {
        return Err(WiretapError::Scenario(format!(
            "{}'s sync did not finish within {WAIT:?}",
            p.name
        )));
    }
    Ok(report)
}

fn person(people: &mut [Person], i: usize) -> Result<&mut Person, WiretapError> {
    people
        .get_mut(i)
        .ok_or_else(|| WiretapError::Scenario(format!("no person {i}")))
}

/// Sends `text` pairwise from `from` to `to` and syncs the sender.
async fn send_direct(
    people: &mut [Person],
    sent: &mut Vec<Sent>,
    from: usize,
    to: usize,
    label: &str,
) -> Result<(), WiretapError> {
    let canary = random_hex(12)?;
    let text = format!("{label}: {canary}");
    let to_id = person(people, to)?.id();
    let from_id = person(people, from)?.id();
    let p = person(people, from)?;
    p.client.send(&to_id, &text)?;
    sync(p).await?;
    sent.push(Sent {
        label: label.to_owned(),
        canary,
        text,
        recipients: vec![(to, Chat::User(from_id))],
    });
    Ok(())
}

/// Sends `text` to the group from `from` and syncs the sender.
async fn send_group(
    people: &mut [Person],
    sent: &mut Vec<Sent>,
    group: GroupId,
    from: usize,
    label: &str,
) -> Result<(), WiretapError> {
    let canary = random_hex(12)?;
    let text = format!("{label}: {canary}");
    let p = person(people, from)?;
    p.client.send_group(&group, &text)?;
    sync(p).await?;
    let recipients = (0..people.len())
        .filter(|i| *i != from)
        .map(|i| (i, Chat::Group(group)))
        .collect();
    sent.push(Sent {
        label: label.to_owned(),
        canary,
        text,
        recipients,
    });
    Ok(())
}

fn texts(report: &SyncReport) -> Vec<String> {
    report
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

/// Syncs each of `who` and checks that the last message sent reached them in that sync.
async fn receive_last(
    people: &mut [Person],
    sent: &[Sent],
    who: &[usize],
) -> Result<(), WiretapError> {
    let last = sent
        .last()
        .ok_or_else(|| WiretapError::Scenario("nothing sent".to_owned()))?;
    for &i in who {
        let p = person(people, i)?;
        let got = sync(p).await?;
        if !texts(&got).contains(&last.text) {
            return Err(WiretapError::Scenario(format!(
                "{} did not receive {:?} in its next sync",
                p.name, last.label
            )));
        }
    }
    Ok(())
}

/// Waits for an event of a connected session.
async fn wait_event<T>(
    events: &mut tokio::sync::mpsc::Receiver<ClientEvent>,
    what: &str,
    mut pred: impl FnMut(&ClientEvent) -> Option<T>,
) -> Result<T, WiretapError> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let Some(t) = pred(&e) {
                return Some(t);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    found.ok_or_else(|| WiretapError::Scenario(format!("no {what} within {WAIT:?}")))
}

fn drain<T>(rx: &mut UnboundedReceiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    out
}

/// Every secret of a person the run can know: identity private keys, TLS private key (PEM and
/// DER), store passphrase.
fn key_needles(p: &Person) -> Result<Vec<Needle>, WiretapError> {
    let identity = p.client.device().identity();
    let mut needles = vec![
        Needle::binary(
            "identity-key",
            &format!("{} signing seed", p.name),
            identity.signing().to_seed().expose(),
        ),
        Needle::binary(
            "identity-key",
            &format!("{} DH secret", p.name),
            identity.dh().to_bytes().expose(),
        ),
        Needle::text(
            "passphrase",
            &format!("{} store", p.name),
            p.passphrase.as_bytes(),
        ),
    ];
    let pem = p
        .client
        .store()
        .setting_text(Setting::TlsKeyPem)?
        .ok_or_else(|| WiretapError::Scenario(format!("{} has no TLS key", p.name)))?;
    needles.push(Needle::text(
        "tls-key",
        &format!("{} PEM", p.name),
        pem.as_bytes(),
    ));
    let der = pem_body(&pem)
        .filter(|der| der.first() == Some(&0x30))
        .ok_or_else(|| WiretapError::Scenario(format!("{}'s TLS key is not PEM", p.name)))?;
    needles.push(Needle::binary("tls-key", &format!("{} DER", p.name), &der));
    Ok(needles)
}

/// The decoded base64 body of a one-block PEM text.
fn pem_body(pem: &str) -> Option<Vec<u8>> {
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.trim().chars())
        .collect();
    base64_decode(&b64)
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The chats of a person (each contact and each group).
fn chats(p: &Person, group: GroupId) -> Result<Vec<Chat>, WiretapError> {
    let mut chats: Vec<Chat> = p
        .client
        .contacts()?
        .into_iter()
        .map(|c| Chat::User(c.user))
        .collect();
    chats.push(Chat::Group(group));
    Ok(chats)
}

/// Runs the scenario on the real stack with `broker` behind the front and searches everything
/// the server side saw and wrote. `findings` is empty when Req8 holds.
pub async fn run(broker: BrokerKind) -> Result<WiretapEvidence, WiretapError> {
    if broker == BrokerKind::Mosquitto && !mosquitto::mosquitto_available() {
        return Err(WiretapError::MosquittoMissing);
    }
    let dir = tempfile::tempdir()?;
    let server_dir = dir.path().join("server");
    let mosquitto_dir = dir.path().join("mosquitto");
    let pki = Arc::new(Pki::load_or_create(&server_dir)?);
    let mut backend = match broker {
        BrokerKind::Embedded => Backend::Embedded(EmbeddedBroker::start().await?),
        BrokerKind::Mosquitto => {
            Backend::Mosquitto(InternalMosquitto::start(&mosquitto_dir).await?)
        }
    };
    let upstream = match &backend {
        Backend::Embedded(b) => b.upstream(),
        Backend::Mosquitto(m) => m.upstream(),
    };
    let front = Front::bind(loopback(), pki.mqtt_server_config()?, Some(upstream)).await?;
    let mut mqtt_tap = front.wiretap();
    let membership = Membership::start(
        MembershipConfig {
            data_dir: server_dir.clone(),
            listen: loopback(),
            difficulty: DIFFICULTY,
            broker_addr: front.local_addr().to_string(),
        },
        pki.clone(),
    )
    .await?;
    let mut http_tap = membership.wiretap();

    // Signup (the taps are attached: nothing has happened yet).
    let options = SignupOptions {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        one_time_prekeys: 10,
        establish_inbox: Some(WAIT),
    };
    let mut people = Vec::new();
    for name in ["A", "B", "C"] {
        let passphrase = format!("wiretap passphrase {}", random_hex(16)?);
        let client = Client::signup_with(
            &membership.url(),
            pki.ca_pem(),
            dir.path().join(format!("{name}.db")),
            passphrase.as_bytes(),
            &options,
        )
        .await?;
        people.push(Person {
            name,
            client,
            passphrase,
        });
    }
    let (a, b, c) = (0usize, 1usize, 2usize);
    let a_id = person(&mut people, a)?.id();
    let b_id = person(&mut people, b)?.id();
    let c_id = person(&mut people, c)?.id();

    // A and B scan each other's cards; A adds C from the directory.
    let card_a = person(&mut people, a)?.client.card()?;
    let card_b = person(&mut people, b)?.client.card()?;
    person(&mut people, a)?.client.add_card(&card_b)?;
    person(&mut people, b)?.client.add_card(&card_a)?;
    person(&mut people, a)?
        .client
        .add_from_directory(&c_id)
        .await?;

    let mut sent: Vec<Sent> = Vec::new();

    // A -> B while B is connected; B answers through its session.
    {
        let bob = people.remove(b);
        let (session, mut events) = bob.client.connect();
        let bob_passphrase = bob.passphrase;
        wait_event(&mut events, "connection of B's session", |e| {
            matches!(e, ClientEvent::Connected { .. }).then_some(())
        })
        .await?;
        let canary = random_hex(12)?;
        let text = format!("A to B, B online: {canary}");
        let alice = person(&mut people, a)?;
        alice.client.send(&b_id, &text)?;
        sync(alice).await?;
        let got = wait_event(&mut events, "message to B's session", |e| match e {
            ClientEvent::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .await?;
        if got != text {
            return Err(WiretapError::Scenario(
                "B's session received another message".to_owned(),
            ));
        }
        sent.push(Sent {
            label: "A to B, B online".to_owned(),
            canary,
            text,
            recipients: vec![(b, Chat::User(a_id))],
        });
        let canary = random_hex(12)?;
        let text = format!("B to A, from a session: {canary}");
        let id = session.send(a_id, text.clone()).await?;
        // Wait until the broker acknowledged it (its state leaves Queued).
        let published = tokio::time::timeout(WAIT, async {
            loop {
                let state = session
                    .call(move |c: &mut Client| c.outgoing_state(&id).ok().flatten())
                    .await;
                if matches!(
                    state,
                    Ok(Some(
                        MessageState::Sent | MessageState::Delivered | MessageState::Read
                    ))
                ) {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or(false);
        if !published {
            return Err(WiretapError::Scenario(
                "B's session did not publish its answer".to_owned(),
            ));
        }
        let client = session.shutdown().await?;
        people.insert(
            b,
            Person {
                name: "B",
                client,
                passphrase: bob_passphrase,
            },
        );
        sent.push(Sent {
            label: "B to A, from a session".to_owned(),
            canary,
            text,
            recipients: vec![(a, Chat::User(b_id))],
        });
        receive_last(&mut people, &sent, &[a]).await?;
    }

    // A -> B while B is offline; with Mosquitto the broker restarts while it is queued.
    send_direct(&mut people, &mut sent, a, b, "A to B, B offline").await?;
    let mut frames = drain(&mut mqtt_tap);
    let mut snapshots: Vec<(String, Vec<u8>)> = Vec::new();
    if let Backend::Mosquitto(m) = &mut backend {
        m.restart(true).await?;
        let file = m.persistence_file();
        let bytes = std::fs::read(&file)?;
        // Control: the queued envelope (ciphertext) is in the file, so the file is a real
        // haystack.
        let queued = last_publish_to(&frames, &b_id.inbox_topic())
            .ok_or_else(|| WiretapError::Scenario("no PUBLISH to B's inbox recorded".to_owned()))?;
        if offsets(&bytes, &queued).is_empty() {
            return Err(WiretapError::Scenario(
                "the queued envelope is not in Mosquitto's persistence file".to_owned(),
            ));
        }
        snapshots.push((
            format!(
                "mosquitto persistence file {} (while a message was queued)",
                file.display()
            ),
            bytes,
        ));
    }
    receive_last(&mut people, &sent, &[b]).await?;
    send_direct(&mut people, &mut sent, b, a, "B to A").await?;
    receive_last(&mut people, &sent, &[a]).await?;

    // A -> C (from the directory: unverified, a first message with the key share), C answers.
    send_direct(&mut people, &mut sent, a, c, "A to C, C offline").await?;
    receive_last(&mut people, &sent, &[c]).await?;
    send_direct(&mut people, &mut sent, c, a, "C to A").await?;
    receive_last(&mut people, &sent, &[a]).await?;

    // A group of three, a message from each.
    let group = person(&mut people, a)?.client.create_group(&[b_id, c_id])?;
    sync(person(&mut people, a)?).await?;
    for i in [b, c] {
        sync(person(&mut people, i)?).await?;
    }
    send_group(&mut people, &mut sent, group, a, "group, from A").await?;
    receive_last(&mut people, &sent, &[b, c]).await?;
    send_group(&mut people, &mut sent, group, b, "group, from B").await?;
    receive_last(&mut people, &sent, &[a, c]).await?;
    send_group(&mut people, &mut sent, group, c, "group, from C").await?;
    receive_last(&mut people, &sent, &[a, b]).await?;
    // Receipts and group acks settle.
    for i in [a, b, c, a] {
        sync(person(&mut people, i)?).await?;
    }

    // Every canary reached each of its recipients: found by the same search in their decrypted
    // messages (so the needles are real).
    let mut needles = Vec::new();
    for (n, s) in sent.iter().enumerate() {
        let canary = Needle::text(
            "canary",
            &format!("of message {n} ({})", s.label),
            s.canary.clone(),
        );
        for (i, chat) in &s.recipients {
            let p = person(&mut people, *i)?;
            let decrypted: Vec<u8> = p
                .client
                .messages(chat)?
                .into_iter()
                .flat_map(|m| m.text.into_bytes())
                .collect();
            if search(std::slice::from_ref(&canary), "decrypted", &decrypted).is_empty() {
                return Err(WiretapError::Scenario(format!(
                    "the canary of message {n} ({}) is not in {}'s decrypted messages",
                    s.label, p.name
                )));
            }
        }
        needles.push(canary);
        needles.push(Needle::text(
            "text",
            &format!("of message {n} ({})", s.label),
            s.text.clone(),
        ));
    }

    // Every secret of every person, and every message id in their stores.
    let mut ids = BTreeSet::new();
    for p in &people {
        needles.extend(key_needles(p)?);
        for chat in chats(p, group)? {
            for m in p.client.messages(&chat)? {
                ids.insert(m.id.0);
            }
        }
    }
    if ids.len() < sent.len() {
        return Err(WiretapError::Scenario(format!(
            "{} message ids in the stores for {} messages",
            ids.len(),
            sent.len()
        )));
    }
    for (n, id) in ids.iter().enumerate() {
        needles.push(Needle::binary("message-id", &format!("#{n}"), id));
    }

    let public_keys: Vec<(String, [u8; 32], String)> = people
        .iter()
        .map(|p| {
            (
                p.name.to_owned(),
                p.client.device().identity().public().iks().0,
                p.id().inbox_topic(),
            )
        })
        .collect();

    // Stop everything so that every file is written, then collect.
    for p in people {
        p.client.close()?;
    }
    membership.shutdown().await;
    front.shutdown().await;
    match &mut backend {
        Backend::Mosquitto(m) => m.stop().await?,
        Backend::Embedded(b) => b.stop(),
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    frames.extend(drain(&mut mqtt_tap));
    let http = drain(&mut http_tap);

    let mut findings = search_frames(&needles, &frames);
    findings.extend(search_http(&needles, &http));
    let mut files = 0;
    let mut roots = vec![server_dir];
    if broker == BrokerKind::Mosquitto {
        roots.push(mosquitto_dir);
    }
    let mut server_files = Vec::new();
    for root in &roots {
        for file in files_under(root)? {
            let bytes = std::fs::read(&file)?;
            findings.extend(search(
                &needles,
                &format!("file {}", file.display()),
                &bytes,
            ));
            server_files.extend_from_slice(&bytes);
            files += 1;
        }
    }
    // Controls: what the server must see is found by the same search: each inbox topic in the
    // MQTT packets, each public identity key (sent at signup) in the HTTP records and in the
    // server's files.
    for (name, key, topic) in &public_keys {
        let inbox = [Needle::text("inbox topic", name, topic.as_bytes())];
        if search_frames(&inbox, &frames).is_empty() {
            return Err(WiretapError::Scenario(format!(
                "{name}'s inbox topic is in no recorded MQTT packet"
            )));
        }
        let needle = [Needle::binary("public-key", name, key)];
        if search_http(&needle, &http).is_empty() {
            return Err(WiretapError::Scenario(format!(
                "{name}'s public identity key is in no recorded HTTP body"
            )));
        }
        if search(&needle, "server files", &server_files).is_empty() {
            return Err(WiretapError::Scenario(format!(
                "{name}'s public identity key is in no server file"
            )));
        }
    }
    for (place, bytes) in &snapshots {
        findings.extend(search(&needles, place, bytes));
        files += 1;
    }
    let exchanges: BTreeSet<u64> = http
        .iter()
        .filter_map(|r| match r {
            HttpTapRecord::Request { exchange, .. } => Some(*exchange),
            _ => None,
        })
        .collect();
    let evidence = WiretapEvidence {
        broker: broker.name().to_owned(),
        frames: frames.len(),
        bytes: frames.iter().map(|r| r.packet.len()).sum(),
        http_exchanges: exchanges.len(),
        files,
        needles: needles.len(),
        findings,
    };
    tracing::info!(
        broker = evidence.broker,
        frames = evidence.frames,
        http = evidence.http_exchanges,
        files = evidence.files,
        needles = evidence.needles,
        findings = evidence.findings.len(),
        "wiretap run finished"
    );
    Ok(evidence)
}

#[cfg(test)]
mod tests {
    use super::{base64_decode, offsets, pem_body};

    #[test]
    fn base64_and_pem_decode() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(base64_decode("a?=="), None);
        let pem = "-----BEGIN PRIVATE KEY-----\nMAECAw==\n-----END PRIVATE KEY-----\n";
        assert_eq!(pem_body(pem), Some(vec![0x30, 0x01, 0x02, 0x03]));
    }

    #[test]
    fn every_offset_is_found() {
        assert_eq!(offsets(b"abababa", b"aba"), [0, 2, 4]);
        assert!(offsets(b"ab", b"abc").is_empty());
        assert!(offsets(b"abc", b"").is_empty());
    }
}
