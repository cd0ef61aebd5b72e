//! The wiretap's scenario on the real stack: three people sign up; A and B scan each other's
//! cards (verified), A adds C from the directory (unverified); messages go both ways pairwise, one
//! to a connected recipient and others to offline ones (with Mosquitto, the broker is restarted
//! while one is queued, so its persistence file holds it), then a group of three with a message
//! from each. Every text carries a fresh random canary.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use sotto_client::{
    Chat, Client, ClientEvent, Config, GroupId, KdfParams, MessageState, SyncReport, UserId,
};
use sotto_core::device::SecretClass;
use sotto_server::broker::front::{TapDirection, TapRecord};
use sotto_server::{BrokerStop, Service};
use sotto_wire::mqtt::{self, Packet};
use tokio::sync::mpsc::UnboundedReceiver;

use super::needles::offsets;
use super::{QUIET, WAIT, WiretapError};

/// What the scenario leaves: the people (their stores still open), what was sent, the group, the
/// MQTT packets recorded until the broker restart, and the files read mid-run.
pub(super) struct Played {
    pub(super) people: Vec<Person>,
    pub(super) sent: Vec<Sent>,
    pub(super) group: GroupId,
    pub(super) frames: Vec<TapRecord>,
    pub(super) snapshots: Vec<(String, Vec<u8>)>,
}

/// The people's indexes.
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Plays the whole scenario; stores go to `stores`.
pub(super) async fn play(
    service: &mut Service,
    mqtt_tap: &mut UnboundedReceiver<TapRecord>,
    stores: &Path,
) -> Result<Played, WiretapError> {
    let mut people = sign_up(service, stores).await?;
    let mut sent = Vec::new();
    online_exchange(&mut people, &mut sent).await?;
    let (frames, snapshots) = offline_exchange(service, mqtt_tap, &mut people, &mut sent).await?;
    let group = group_exchange(&mut people, &mut sent).await?;
    Ok(Played {
        people,
        sent,
        group,
        frames,
        snapshots,
    })
}

/// Signup (the taps are attached: nothing has happened yet); cards and the directory.
async fn sign_up(service: &Service, stores: &Path) -> Result<Vec<Person>, WiretapError> {
    let config = Config {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        signup_one_time_prekeys: 10,
        establish_inbox: Some(WAIT),
        sync_quiet: QUIET,
        ..Config::default()
    };
    let mut people = Vec::new();
    for name in ["A", "B", "C"] {
        let passphrase = format!("wiretap passphrase {}", random_hex(16)?);
        let client = Client::signup_with(
            &service.membership_url(),
            service.pki().ca_pem(),
            stores.join(format!("{name}.db")),
            passphrase.as_bytes(),
            config.clone(),
        )
        .await?;
        let mut p = Person {
            name,
            client,
            passphrase,
            secrets: Secrets::new(),
        };
        p.remember_secrets();
        people.push(p);
    }
    let (a, b, c) = (A, B, C);
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
    Ok(people)
}

/// A -> B while B is connected; B answers through its online loop.
async fn online_exchange(
    people: &mut Vec<Person>,
    sent: &mut Vec<Sent>,
) -> Result<(), WiretapError> {
    let (a, b) = (A, B);
    let a_id = person(people, a)?.id();
    let b_id = person(people, b)?.id();
    let bob = people.remove(b);
    let (online, mut events) = bob.client.connect();
    let bob_passphrase = bob.passphrase;
    let bob_secrets = bob.secrets;
    wait_event(&mut events, "connection of B's online loop", |e| {
        matches!(e, ClientEvent::Connected { .. }).then_some(())
    })
    .await?;
    let canary = random_hex(12)?;
    let text = format!("A to B, B online: {canary}");
    let alice = person(people, a)?;
    alice.client.send(&b_id, &text)?;
    sync(alice).await?;
    let got = wait_event(&mut events, "message to B's online loop", |e| match e {
        ClientEvent::Message(m) => Some(m.text.clone()),
        _ => None,
    })
    .await?;
    if got != text {
        return Err(WiretapError::Scenario(
            "B's online loop received another message".to_owned(),
        ));
    }
    sent.push(Sent {
        label: "A to B, B online".to_owned(),
        canary,
        text,
        recipients: vec![(b, Chat::User(a_id))],
    });
    let canary = random_hex(12)?;
    let text = format!("B to A, from the online loop: {canary}");
    let id = online.send(a_id, text.clone()).await?;
    // Wait until the broker acknowledged it (its state leaves Queued).
    let published = tokio::time::timeout(WAIT, async {
        loop {
            let state = online
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
            "B's online loop did not publish its answer".to_owned(),
        ));
    }
    let client = online.shutdown().await?;
    let mut bob = Person {
        name: "B",
        client,
        passphrase: bob_passphrase,
        secrets: bob_secrets,
    };
    bob.remember_secrets();
    people.insert(b, bob);
    sent.push(Sent {
        label: "B to A, from the online loop".to_owned(),
        canary,
        text,
        recipients: vec![(a, Chat::User(b_id))],
    });
    receive_last(people, sent, &[a]).await?;
    Ok(())
}

/// A -> B while B is offline (with Mosquitto the broker restarts while it is queued, and its
/// persistence file is read then); B -> A; A -> C (from the directory: unverified, a first
/// message with the key share) and C's answer. Returns the MQTT packets recorded until the
/// restart and the files read.
async fn offline_exchange(
    service: &mut Service,
    mqtt_tap: &mut UnboundedReceiver<TapRecord>,
    people: &mut [Person],
    sent: &mut Vec<Sent>,
) -> Result<(Vec<TapRecord>, Vec<(String, Vec<u8>)>), WiretapError> {
    let (a, b, c) = (A, B, C);
    let b_id = person(people, b)?.id();
    send_direct(people, sent, a, b, "A to B, B offline").await?;
    let frames = drain(mqtt_tap);
    let mut snapshots: Vec<(String, Vec<u8>)> = Vec::new();
    let queued = last_publish_to(&frames, &b_id.inbox_topic())
        .ok_or_else(|| WiretapError::Scenario("no PUBLISH to B's inbox recorded".to_owned()))?;
    if let Some(file) = service.mosquitto_persistence_file() {
        service.restart_broker(BrokerStop::Graceful).await?;
        let bytes = std::fs::read(&file)?;
        // Control: the queued envelope (ciphertext) is in the file, so the file is a real
        // haystack.
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
    } else if !super::retention::holds(service, &queued, std::time::SystemTime::now()).await? {
        // Control of the broker-side Req6 check: the same reading finds a queued envelope.
        return Err(WiretapError::Scenario(
            "the queued envelope is not in the embedded broker's inboxes".to_owned(),
        ));
    }
    receive_last(people, sent, &[b]).await?;
    send_direct(people, sent, b, a, "B to A").await?;
    receive_last(people, sent, &[a]).await?;

    // A -> C (from the directory: unverified, a first message with the key share), C answers.
    send_direct(people, sent, a, c, "A to C, C offline").await?;
    receive_last(people, sent, &[c]).await?;
    send_direct(people, sent, c, a, "C to A").await?;
    receive_last(people, sent, &[a]).await?;

    Ok((frames, snapshots))
}

/// A group of three, a message from each; receipts and group acks settle.
async fn group_exchange(
    people: &mut [Person],
    sent: &mut Vec<Sent>,
) -> Result<GroupId, WiretapError> {
    let (a, b, c) = (A, B, C);
    let b_id = person(people, b)?.id();
    let c_id = person(people, c)?.id();
    let group = person(people, a)?.client.create_group(&[b_id, c_id])?;
    sync(person(people, a)?).await?;
    for i in [b, c] {
        sync(person(people, i)?).await?;
    }
    send_group(people, sent, group, a, "group, from A").await?;
    receive_last(people, sent, &[b, c]).await?;
    send_group(people, sent, group, b, "group, from B").await?;
    receive_last(people, sent, &[a, c]).await?;
    send_group(people, sent, group, c, "group, from C").await?;
    receive_last(people, sent, &[a, b]).await?;
    // Receipts and group acks settle.
    for i in [a, b, c, a] {
        sync(person(people, i)?).await?;
    }
    Ok(group)
}

/// One person of the scenario: a name, the account, the store's passphrase.
pub(super) struct Person {
    pub(super) name: &'static str,
    pub(super) client: Client,
    pub(super) passphrase: String,
    /// Every secret the device held at any sync of the scenario, by bytes (chain and message
    /// keys move on: each sync adds the current ones).
    pub(super) secrets: Secrets,
}

/// Secrets by their bytes: class and where the device held them.
pub(super) type Secrets = BTreeMap<Vec<u8>, (SecretClass, String)>;

impl Person {
    pub(super) fn id(&self) -> UserId {
        self.client.user_id()
    }

    /// Adds what the device holds now to [`Person::secrets`].
    pub(super) fn remember_secrets(&mut self) {
        for s in self.client.device().held_secrets() {
            self.secrets.entry(s.bytes).or_insert((s.class, s.label));
        }
    }
}

/// A message of the scenario: its text (with the canary), who got it, in which chat.
pub(super) struct Sent {
    pub(super) label: String,
    pub(super) canary: String,
    pub(super) text: String,
    /// Indexes into the people, with the chat as the recipient files it.
    pub(super) recipients: Vec<(usize, Chat)>,
}

fn random_hex(bytes: usize) -> Result<String, WiretapError> {
    let mut b = vec![0u8; bytes];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|_| WiretapError::Random)?;
    Ok(hex::encode(b))
}

pub(super) async fn sync(p: &mut Person) -> Result<SyncReport, WiretapError> {
    p.remember_secrets();
    let report = p.client.sync(WAIT).await?;
    p.remember_secrets();
    if !report.complete {
        return Err(WiretapError::Scenario(format!(
            "{}'s sync did not finish within {WAIT:?}",
            p.name
        )));
    }
    Ok(report)
}

pub(super) fn person(people: &mut [Person], i: usize) -> Result<&mut Person, WiretapError> {
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
        if !got.texts().contains(&last.text) {
            return Err(WiretapError::Scenario(format!(
                "{} did not receive {:?} in its next sync",
                p.name, last.label
            )));
        }
    }
    Ok(())
}

/// Waits for an event of a client online.
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

pub(super) fn drain<T>(rx: &mut UnboundedReceiver<T>) -> Vec<T> {
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    out
}

/// The chats of a person (each contact and each group).
pub(super) fn chats(p: &Person, group: GroupId) -> Result<Vec<Chat>, WiretapError> {
    let mut chats: Vec<Chat> = p
        .client
        .contacts()?
        .into_iter()
        .map(|c| Chat::User(c.user))
        .collect();
    chats.push(Chat::Group(group));
    Ok(chats)
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
        match mqtt::parse(&r.packet) {
            Ok(Packet::Publish(p)) if p.topic == topic => {
                let start = r.packet.len().checked_sub(p.payload_len)?;
                Some(r.packet.get(start..)?.to_vec())
            }
            _ => None,
        }
    })
}
