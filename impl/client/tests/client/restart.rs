//! Exactly-once across broker restarts in the middle of traffic (issue 4, item 5): Alice sends
//! a bounded series of messages, syncing every few, while the broker restarts twice under her
//! sync: once with Bob's session connected (it reconnects by itself), once while Bob is offline
//! and messages and receipts wait in the broker's queues. Every text reaches Bob's store exactly
//! once, Bob is shown each once, and every message ends delivered at Alice's.
//!
//! - embedded broker: a restart loses every queue and session, so what was queued or in flight
//!   is resent from Alice's outbox until Bob's receipt arrives (RX-6; a short resend backoff
//!   keeps the test short), and Bob answers the duplicates with the receipt again;
//! - Mosquitto: stopped with SIGTERM (persistence written) and started again from the same
//!   profile on the same port, so queued messages survive, and resends that race them arrive as
//!   duplicates.
//!
//! The hard-kill variant ([`BrokerStop::Kill`]: Mosquitto SIGKILLed, the embedded service dropped as a
//! whole) runs the same scenario from `faults.rs` (issue 6, item 2).
//!
//! Every wait is bounded; nothing asserts on speed.

use std::time::Duration;

use sotto_client::{Chat, Client, MessageId};
use sotto_server::{Broker, BrokerStop};

use sotto_testkit::{
    Shown, Tally, TestStack, assert_all_delivered, assert_exactly_once, exchange_cards, go_offline,
    go_online, settle, test_config_resending, try_sync,
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

/// Restarts the message service shortly after the call (which runs alongside a sync), on the
/// same addresses, as `stop` says: gracefully (embedded: the broker restarts behind the running
/// front, which gives every user it has seen the inbox session back; Mosquitto: SIGTERM, its
/// persistence file written) or as a crash ([`BrokerStop::Kill`]: the embedded front and broker
/// go away at once and new ones know nobody, queues and sessions lost until each user connects
/// again; Mosquitto: SIGKILL, whatever changed since its last autosave is lost). Mosquitto starts
/// again from the same profile and persistence directory.
async fn restart(stack: &mut TestStack, stop: BrokerStop) {
    // Let the sync running alongside connect and publish first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stack.restart_broker(stop).await;
}

fn expected() -> Vec<String> {
    (0..COUNT).map(text).collect()
}

/// The scenario of the module documentation, with the broker stopped as `stop` says.
pub async fn exactly_once_across_restarts(mut stack: TestStack, stop: BrokerStop) {
    // Resend a message whose receipt has not come after 1 s (2 s at most), not after 30 s.
    let mut alice = stack
        .signup_with("alice", test_config_resending(1_000, 2_000))
        .await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());

    let mut online = Some(go_online(bob).await);
    let mut offline: Option<Client> = None;
    let mut shown = Shown::default();
    let mut tally = Tally::default();
    let mut ids: Vec<MessageId> = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        ids.push(alice.send(&bob_id, &text(i)).expect("send"));
        match i {
            FIRST_RESTART | SECOND_RESTART => {
                tokio::join!(try_sync(&mut alice, &mut tally), restart(&mut stack, stop));
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
    exactly_once_across_restarts(TestStack::embedded().await, BrokerStop::Graceful).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_mosquitto_restarts_rx_4_rx_6_broker_4() {
    if !Broker::Mosquitto.is_available() {
        eprintln!("SKIPPED: mosquitto not installed");
        return;
    }
    exactly_once_across_restarts(TestStack::mosquitto().await, BrokerStop::Graceful).await;
}
