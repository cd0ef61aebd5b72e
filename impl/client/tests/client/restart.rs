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
//! The hard-kill variant ([`Stop::Kill`]: Mosquitto SIGKILLed, the embedded service dropped as a
//! whole) runs the same scenario from `faults.rs` (issue 6, item 2).
//!
//! Every wait is bounded; nothing asserts on speed.

use std::time::Duration;

use sotto_client::{Backoff, Chat, Client, MessageId};
use sotto_server::broker::MessageService;
use sotto_server::broker::mosquitto::{MosquittoProcess, MosquittoProfile};

use crate::common::{
    Broker, Shown, Stack, Tally, assert_all_delivered, assert_exactly_once, exchange_cards,
    go_offline, go_online, settle, try_sync,
};

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

/// How the message service stops before it starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Embedded: rumqttd restarts behind the running front, which gives every user it has seen
    /// the inbox session back. Mosquitto: SIGTERM, its persistence file written.
    Graceful,
    /// Embedded: the whole message service (front and rumqttd) goes away at once, as when the
    /// server process dies, and a new one starts on the same port knowing nobody: queues and
    /// sessions are lost until each user connects again. Mosquitto: SIGKILL, so whatever changed
    /// since its last autosave (10 s) is lost, sessions included.
    Kill,
}

/// Restarts the message service shortly after the call (which runs alongside a sync), on the
/// same port: see [`Stop`]. Mosquitto starts again from the same profile (same persistence
/// directory).
async fn restart(stack: Stack, stop: Stop) -> Stack {
    // Let the sync running alongside connect and publish first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    match stack.broker {
        Broker::Embedded(mut service) => {
            let service = match stop {
                Stop::Graceful => {
                    service.restart_broker().await.expect("restart rumqttd");
                    service
                }
                Stop::Kill => {
                    let addr = service.local_addr();
                    service.shutdown().await;
                    MessageService::start_embedded(&stack.pki, addr)
                        .await
                        .expect("message service again on the same port")
                }
            };
            Stack {
                broker: Broker::Embedded(service),
                ..stack
            }
        }
        Broker::Mosquitto(process) => {
            let addr = process.addr();
            match stop {
                Stop::Graceful => process.stop().await.expect("stop mosquitto"),
                Stop::Kill => process.kill().expect("kill mosquitto"),
            }
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

fn expected() -> Vec<String> {
    (0..COUNT).map(text).collect()
}

/// The scenario of the module documentation, with the broker stopped as `stop` says.
pub async fn exactly_once_across_restarts(mut stack: Stack, stop: Stop) {
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
                let (_, restarted) =
                    tokio::join!(try_sync(&mut alice, &mut tally), restart(stack, stop));
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
    let settled = settle(&mut alice, &ids, &mut tally, &online, SETTLE).await;
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
    assert_exactly_once("Bob's store", &stored, &expected());
    assert_exactly_once("Bob's message events", &shown.texts, &expected());
    // Every message delivered at Alice's, nothing left to resend.
    assert_all_delivered(&alice, &ids);
    assert!(settled, "settled within {SETTLE:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_embedded_broker_restarts_rx_4_rx_6() {
    exactly_once_across_restarts(Stack::embedded().await, Stop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_mosquitto_restarts_rx_4_rx_6_broker_4() {
    if !sotto_server::broker::mosquitto::mosquitto_available() {
        eprintln!("SKIPPED: mosquitto not installed");
        return;
    }
    exactly_once_across_restarts(Stack::mosquitto().await, Stop::Graceful).await;
}
