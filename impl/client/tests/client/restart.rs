//! Exactly-once across broker restarts in the middle of traffic (issue 4, item 5): Alice sends
//! a bounded series of messages, syncing every few, while the broker restarts twice under her
//! sync: once with Bob's session connected (it reconnects by itself), once while Bob is offline
//! and messages and receipts wait in the broker's queues. Every text reaches Bob's store exactly
//! once, Bob is shown each once, and every message ends delivered at Alice's.
//!
//! - embedded rumqttd: a restart loses every queue and session, so what was queued or in flight
//!   is resent from Alice's outbox until Bob's receipt arrives (RX-6; a short resend backoff
//!   keeps the test short), and Bob answers the duplicates with the receipt again;
//! - Mosquitto: stopped with SIGTERM (persistence written) and started again from the same
//!   profile on the same port, so queued messages survive, and resends that race them arrive as
//!   duplicates.
//!
//! Every wait is bounded; nothing asserts on speed.

use std::collections::HashMap;
use std::time::Duration;

use sotto_client::{Backoff, Chat, Client, ClientEvent, MessageId, MessageState, SessionHandle};
use sotto_server::broker::mosquitto::{MosquittoProcess, MosquittoProfile};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::common::{Broker, QUIET, Stack, WAIT, exchange_cards};

/// Messages Alice sends.
const COUNT: usize = 30;
/// After sending message `i` (0-based), Alice syncs when `i % SYNC_EVERY == SYNC_EVERY - 1`:
/// several messages per sync, so that some are in flight together.
const SYNC_EVERY: usize = 3;
/// After sending this message, Alice's sync runs while the broker restarts; Bob is connected.
const FIRST_RESTART: usize = 9;
/// After sending this message (and before the sync), Bob's session stops.
const BOB_OFFLINE: usize = 14;
/// After sending this message, Alice's sync runs while the broker restarts again; Bob is
/// offline, the messages of the syncs since [`BOB_OFFLINE`] wait in the broker for him.
const SECOND_RESTART: usize = 19;
/// After sending this message, Bob connects again.
const BOB_ONLINE: usize = 24;
/// How long the test waits, at most, for everything to settle after the last send.
const SETTLE: Duration = Duration::from_secs(60);

fn text(i: usize) -> String {
    format!("message {i:02} across the restarts")
}

/// Restarts the message service shortly after the call (which runs alongside a sync): the
/// embedded rumqttd loses its queues; Mosquitto is stopped gracefully and spawned again from the
/// same profile (same port, same persistence directory).
async fn restart(stack: Stack) -> Stack {
    // Let the sync running alongside connect and publish first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match stack.broker {
        Broker::Embedded(mut service) => {
            service.restart_broker().await.expect("restart rumqttd");
            Stack {
                broker: Broker::Embedded(service),
                ..stack
            }
        }
        Broker::Mosquitto(process) => {
            let addr = process.addr();
            process.stop().await.expect("stop mosquitto");
            // Writing the profile again with the same address yields the same configuration;
            // the persistence directory stays as the stopped broker wrote it.
            let profile =
                MosquittoProfile::write(&stack.pki, &stack.dir.path().join("mosquitto"), addr)
                    .expect("mosquitto profile");
            let process = MosquittoProcess::spawn(&profile)
                .await
                .expect("mosquitto again");
            Stack {
                broker: Broker::Mosquitto(process),
                ..stack
            }
        }
    }
}

/// What Alice's syncs did, summed.
#[derive(Default)]
struct Tally {
    /// Envelopes published (messages, resends).
    published: usize,
    /// Envelopes received (receipts).
    received: usize,
}

/// One sync that may fail or end early (the broker may be down): what happened is in the store.
async fn try_sync(client: &mut Client, tally: &mut Tally) {
    match client.sync_with(WAIT, QUIET).await {
        Ok(report) => {
            if !report.complete {
                eprintln!("sync incomplete: {} events", report.events.len());
            }
            tally.published += report.published;
            tally.received += report.received;
        }
        Err(e) => eprintln!("sync failed: {e}"),
    }
}

/// What Bob's session showed him.
#[derive(Default)]
struct Shown {
    texts: Vec<String>,
    disconnections: usize,
}

/// Bob connected: his session and the task collecting its events.
struct Online {
    session: SessionHandle,
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

/// Connects Bob and waits for his inbox subscription.
async fn go_online(bob: Client) -> Online {
    let (session, events) = bob.connect();
    let (tx, rx) = oneshot::channel();
    let collector = tokio::spawn(collect(events, tx));
    tokio::time::timeout(WAIT, rx)
        .await
        .expect("Bob connected within the wait")
        .expect("Bob's session stopped before connecting");
    Online { session, collector }
}

/// Stops Bob's session; returns his account and what the session showed.
async fn go_offline(online: Online) -> (Client, Shown) {
    let bob = tokio::time::timeout(WAIT, online.session.shutdown())
        .await
        .expect("Bob's session stops within the wait")
        .expect("shutdown");
    let shown = tokio::time::timeout(WAIT, online.collector)
        .await
        .expect("event channel closed")
        .expect("collector");
    (bob, shown)
}

fn assert_exactly_once(what: &str, texts: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in texts {
        *counts.entry(t.as_str()).or_insert(0) += 1;
    }
    for i in 0..COUNT {
        let t = text(i);
        assert_eq!(
            counts.get(t.as_str()).copied().unwrap_or(0),
            1,
            "{what}: {t:?} must be there exactly once (counts: {counts:?})"
        );
    }
    assert_eq!(texts.len(), COUNT, "{what}: nothing else ({counts:?})");
}

async fn exactly_once_across_restarts(mut stack: Stack) {
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());
    // Resend a message whose receipt has not come after 1 s (2 s at most), not after 30 s.
    alice.set_resend_backoff(Backoff {
        first_ms: 1_000,
        max_ms: 2_000,
    });

    let mut online = Some(go_online(bob).await);
    let mut offline: Option<Client> = None;
    let mut shown = Shown::default();
    let mut tally = Tally::default();
    let mut ids: Vec<MessageId> = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        ids.push(alice.send(&bob_id, &text(i)).expect("send"));
        match i {
            FIRST_RESTART | SECOND_RESTART => {
                let (_, restarted) = tokio::join!(try_sync(&mut alice, &mut tally), restart(stack));
                stack = restarted;
            }
            BOB_OFFLINE => {
                let (bob, seen) = go_offline(online.take().expect("Bob online")).await;
                assert!(
                    seen.disconnections >= 1,
                    "the first restart closed Bob's connection"
                );
                shown.texts.extend(seen.texts);
                offline = Some(bob);
                try_sync(&mut alice, &mut tally).await;
            }
            BOB_ONLINE => {
                online = Some(go_online(offline.take().expect("Bob offline")).await);
                try_sync(&mut alice, &mut tally).await;
            }
            _ if i % SYNC_EVERY == SYNC_EVERY - 1 => try_sync(&mut alice, &mut tally).await,
            _ => {}
        }
    }
    let online = online.expect("Bob online at the end");

    // Keep both sides going until every message is delivered and Bob has all of them.
    let deadline = Instant::now() + SETTLE;
    let settled = loop {
        try_sync(&mut alice, &mut tally).await;
        let delivered = ids
            .iter()
            .filter(|id| alice.outgoing_state(id).expect("state") == Some(MessageState::Delivered))
            .count();
        let outbox = alice.outbox_len().expect("outbox");
        let at_bob = online
            .session
            .call(move |c| c.messages(&Chat::User(alice_id)).map(|m| m.len()))
            .await
            .expect("Bob's session runs")
            .expect("Bob's messages");
        if delivered == COUNT && outbox == 0 && at_bob >= COUNT {
            break true;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "not settled: {delivered} delivered, {outbox} in the outbox, {at_bob} at Bob"
            );
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (bob, seen) = go_offline(online).await;
    shown.texts.extend(seen.texts);
    eprintln!(
        "Alice published {} envelopes for {COUNT} messages and received {}",
        tally.published, tally.received
    );

    // No loss, no duplicate: in Bob's store and in what he was shown.
    let stored: Vec<String> = bob
        .messages(&Chat::User(alice_id))
        .expect("messages")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_exactly_once("Bob's store", &stored);
    assert_exactly_once("Bob's message events", &shown.texts);
    // Every message delivered at Alice's, nothing left to resend.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            alice.outgoing_state(id).expect("state"),
            Some(MessageState::Delivered),
            "message {i}"
        );
    }
    assert_eq!(alice.outbox_len().expect("outbox"), 0);
    assert!(settled, "settled within {SETTLE:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_embedded_broker_restarts_rx_4_rx_6() {
    exactly_once_across_restarts(Stack::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_mosquitto_restarts_rx_4_rx_6_broker_4() {
    if !sotto_server::broker::mosquitto::mosquitto_available() {
        eprintln!("SKIPPED: mosquitto not installed");
        return;
    }
    exactly_once_across_restarts(Stack::mosquitto().await).await;
}
