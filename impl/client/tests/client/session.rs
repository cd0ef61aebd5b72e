//! The connected session across a broker restart (reconnect with backoff, resubscribe on every
//! CONNACK), and contacts from the directory (CARD-4, RX-9, SAFE-1).

use std::time::Duration;

use sotto_client::{Chat, ClientEvent, Trust};
use tokio::sync::mpsc;

use sotto_server::BrokerStop;
use sotto_testkit::{TestStack, WAIT, exchange_cards, sync, test_config, texts};

async fn wait_for<T>(
    events: &mut mpsc::Receiver<ClientEvent>,
    mut pred: impl FnMut(&ClientEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let Some(t) = pred(&e) {
                return Some(t);
            }
        }
        None
    })
    .await
    .expect("event within the wait")
    .expect("session still running")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reconnects_and_resubscribes_after_a_broker_restart() {
    let mut stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let bob_id = bob.user_id();

    let (session, mut events) = bob.connect();
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Connected { .. }).then_some(())
    })
    .await;

    // The embedded broker loses its sessions on restart; the front gives each known inbox its
    // session back (BROKER-4), and Bob's loop must reconnect and subscribe again by itself
    // (rumqttc does not resubscribe).
    stack.restart_broker(BrokerStop::Graceful).await;
    wait_for(&mut events, |e| {
        matches!(e, ClientEvent::Disconnected { .. }).then_some(())
    })
    .await;
    let present = wait_for(&mut events, |e| match e {
        ClientEvent::Connected { session_present } => Some(*session_present),
        _ => None,
    })
    .await;
    assert!(
        present,
        "the front restored Bob's inbox session on the fresh broker"
    );

    alice.send(&bob_id, "after the restart").expect("send");
    sync(&mut alice).await;
    let text = wait_for(&mut events, |e| match e {
        ClientEvent::Message(m) => Some(m.text.clone()),
        _ => None,
    })
    .await;
    assert_eq!(text, "after the restart");
    session.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_contacts_are_unverified_until_compared_card_4_safe_1() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());

    alice.add_from_directory(&bob_id).await.expect("directory");
    assert_eq!(alice.trust(&bob_id), Some(Trust::Unverified));
    alice.send(&bob_id, "found you").expect("send");
    sync(&mut alice).await;

    let got = sync(&mut bob).await;
    assert!(
        got.events
            .iter()
            .any(|e| matches!(e, ClientEvent::NewContact(u) if *u == alice_id)),
        "{:?}",
        got.events
    );
    let msg = got
        .events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .expect("message");
    assert_eq!(msg.text, "found you");
    assert_eq!(msg.trust, Trust::Unverified);
    assert_eq!(bob.trust(&alice_id), Some(Trust::Unverified));

    // SAFE-1: both sides compute the same number; comparing it verifies the contact.
    assert_eq!(
        alice.safety_number(&bob_id).expect("number"),
        bob.safety_number(&alice_id).expect("number")
    );
    bob.verify(&alice_id).expect("verify");
    alice.verify(&bob_id).expect("verify");
    assert_eq!(bob.trust(&alice_id), Some(Trust::Verified));

    // A connected session adds contacts from the directory too.
    let mut carol = stack.signup("carol").await;
    let carol_id = carol.user_id();
    let (session, _events) = bob.connect();
    session
        .add_from_directory(carol_id)
        .await
        .expect("directory through the session");
    session
        .send(carol_id, "hello carol".to_owned())
        .await
        .expect("send");
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let r = sync(&mut carol).await;
            if !texts(&r).is_empty() {
                return texts(&r);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("message within the wait");
    assert_eq!(got, ["hello carol"]);
    let bob = session.shutdown().await.expect("shutdown");
    assert_eq!(bob.trust(&carol_id), Some(Trust::Unverified));
    assert_eq!(
        carol
            .messages(&Chat::User(bob.user_id()))
            .expect("messages")
            .len(),
        1
    );
}

/// Prekey maintenance over mutual TLS: one-time prekeys refilled below the low-water mark,
/// the signed prekey rotated and served by the directory, the server clock refreshed (TIME-1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekeys_are_refilled_and_rotated_key_3_key_4_time_1() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    let alice_id = alice.user_id();

    // Signed up with 10 one-time prekeys: below the low-water mark, so 90 more go up.
    let left = alice
        .refill_prekeys(test_config().prekey_low_water)
        .await
        .expect("refill");
    assert_eq!(left, 100);
    assert_eq!(
        alice
            .refill_prekeys(test_config().prekey_low_water)
            .await
            .expect("no refill needed"),
        100
    );
    alice.refresh_time().await.expect("time");
    alice.rotate_signed_prekey().await.expect("rotate");

    let bundle = bob.fetch_bundle(&alice_id).await.expect("bundle");
    assert_eq!(
        bundle.signed_prekey().id(),
        2,
        "the directory serves the new one"
    );
    assert!(bundle.one_time_prekey().is_some());
    bob.add_bundle(&bundle).expect("add");
    bob.send(&alice_id, "to the new prekey").expect("send");
    sync(&mut bob).await;
    assert_eq!(texts(&sync(&mut alice).await), ["to the new prekey"]);
}
