//! What tests do with people on a [`crate::TestStack`]: sync with bounds, exchange cards, go
//! online and collect what the app would show, and assert exactly-once delivery.

use std::collections::HashMap;
use std::time::Duration;

use sotto_client::{Client, ClientEvent, MessageId, MessageState, Online, SyncReport};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::WAIT;
use crate::stack::TestStack;

/// One sync with the test bounds.
pub async fn sync(client: &mut Client) -> SyncReport {
    let report = client.sync(WAIT).await.expect("sync");
    assert!(report.complete, "sync did not finish within {WAIT:?}");
    report
}

/// The texts of the message events ([`SyncReport::texts`]).
pub fn texts(report: &SyncReport) -> Vec<String> {
    report.texts()
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
pub async fn raw_publish(stack: &TestStack, to: &sotto_client::UserId, payloads: &[Vec<u8>]) {
    use rumqttc::{AsyncClient, Event, Packet, QoS};

    let id =
        crate::mqtt::Identity::issue(stack.service.pki(), sotto_client::UserId([7; 10]).to_text());
    let opts = crate::mqtt::options(&id, stack.broker_addr(), stack.ca_pem(), true);
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

/// The envelopes waiting in a client's outbox, oldest first (through `test-utils`).
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
    match client.sync(WAIT).await {
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

/// What a client online showed its user.
#[derive(Default)]
pub struct Shown {
    /// The texts of the message events.
    pub texts: Vec<String>,
    /// How many times the connection was lost.
    pub disconnections: usize,
}

/// A user online: the handle of its loop and the task collecting its events.
pub struct LiveClient {
    /// The online loop's handle.
    pub handle: Online,
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

/// Connects a client and waits for its inbox subscription.
pub async fn go_online(client: Client) -> LiveClient {
    let (handle, events) = client.connect();
    let (tx, rx) = oneshot::channel();
    let collector = tokio::spawn(collect(events, tx));
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("connected within the wait")
        .expect("the online loop stopped before connecting");
    LiveClient { handle, collector }
}

/// Stops a client's online loop; returns the account and what the loop showed.
pub async fn go_offline(online: LiveClient) -> (Client, Shown) {
    let client = tokio::time::timeout(WAIT, online.handle.shutdown())
        .await
        .expect("the online loop stops within the wait")
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
    receiver: &LiveClient,
    within: Duration,
) -> bool {
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
            .handle
            .call(move |c| received_texts(c, from).len())
            .await
            .expect("the receiver's online loop runs");
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
