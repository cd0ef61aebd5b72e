//! Pairwise delivery: offline delivery with the key share (Req4), receipts (RX-5), exactly-once
//! under redelivery (RX-4, RX-6), the connected session, and the Mosquitto profile.

use std::time::Duration;

use sotto_client::{Chat, Client, ClientEvent, MessageState, Trust};

use sotto_testkit::{
    self as common, PASSPHRASE, TestStack, WAIT, exchange_cards, sync, test_config_resending, texts,
};

/// Alice writes while Bob is offline; Bob connects later and opens the first message with the
/// key share it carries; Alice learns of the delivery from Bob's receipt.
async fn offline_delivery(stack: &TestStack) {
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);

    let id = alice.send(&bob.user_id(), "hello bob").expect("send");
    assert_eq!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Queued)
    );
    let sent = sync(&mut alice).await;
    assert!(sent.published >= 1, "the envelope was published");
    assert_eq!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Sent)
    );

    let got = sync(&mut bob).await;
    assert_eq!(texts(&got), ["hello bob"]);
    let msg = got
        .events
        .iter()
        .find_map(|e| match e {
            ClientEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .expect("message event");
    assert_eq!(msg.from, alice.user_id());
    assert_eq!(msg.trust, Trust::Verified);
    assert_eq!(msg.id, id, "both ends derive the same message id (ID-3)");
    let stored = bob
        .messages(&Chat::User(alice.user_id()))
        .expect("messages");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].text, "hello bob");

    let receipts = sync(&mut alice).await;
    assert!(
        receipts.events.iter().any(|e| matches!(
            e,
            ClientEvent::Delivered { id: d, complete: true, .. } if *d == id
        )),
        "Alice learns of the delivery: {:?}",
        receipts.events
    );
    assert_eq!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Delivered)
    );
    assert_eq!(alice.outbox_len().expect("outbox"), 0);

    // Bob answers over the session the first message created.
    let reply = bob.send(&alice.user_id(), "hi alice").expect("reply");
    sync(&mut bob).await;
    assert_eq!(texts(&sync(&mut alice).await), ["hi alice"]);
    sync(&mut bob).await;
    assert_eq!(
        bob.outgoing_state(&reply).expect("state"),
        Some(MessageState::Delivered)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_delivery_with_key_share_req4_rx_5() {
    let stack = TestStack::embedded().await;
    offline_delivery(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_delivery_through_mosquitto_req4_broker_4() {
    if !sotto_server::Broker::Mosquitto.is_available() {
        eprintln!("mosquitto not installed: skipped");
        return;
    }
    let stack = TestStack::mosquitto().await;
    offline_delivery(&stack).await;
}

/// The same envelope reaches Bob twice (Alice resends before the receipt arrives): Bob commits
/// it once, answers both copies with a receipt, and Alice's message ends delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_envelope_twice_is_committed_once_rx_4_rx_6() {
    let stack = TestStack::embedded().await;
    // Resend after 2 s; the syncs end after a 0.7 s quiet period.
    let mut alice = stack
        .signup_with("alice", test_config_resending(2_000, 2_000))
        .await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);

    let id = alice.send(&bob.user_id(), "only once").expect("send");
    let first = sync(&mut alice).await;
    assert!(first.published >= 1);
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let second = sync(&mut alice).await;
    assert!(second.published >= 1, "the identical envelope was resent");

    let got = sync(&mut bob).await;
    assert!(got.received >= 2, "Bob saw both copies ({})", got.received);
    assert_eq!(texts(&got), ["only once"]);
    assert_eq!(
        bob.messages(&Chat::User(alice.user_id()))
            .expect("messages")
            .len(),
        1
    );

    sync(&mut alice).await;
    assert_eq!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Delivered)
    );
    assert_eq!(alice.outbox_len().expect("outbox"), 0);
}

/// The connected session: events on the channel, sending through the handle, shutdown returns
/// the account, and reopening the store shows what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_session_delivers_events_and_sends() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let bob_id = bob.user_id();
    let alice_id = alice.user_id();

    let (session, mut events) = bob.connect();
    let connected = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if matches!(e, ClientEvent::Connected { .. }) {
                return true;
            }
        }
        false
    })
    .await
    .expect("connected within the wait");
    assert!(connected);

    alice.send(&bob_id, "are you there?").expect("send");
    sync(&mut alice).await;
    let text = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let ClientEvent::Message(m) = e {
                return Some(m.text);
            }
        }
        None
    })
    .await
    .expect("message within the wait");
    assert_eq!(text.as_deref(), Some("are you there?"));

    let reply = session
        .send(alice_id, "yes".to_owned())
        .await
        .expect("send through the session");
    // Bob's session publishes at once; Alice picks it up.
    let got = tokio::time::timeout(WAIT, async {
        loop {
            let r = common::sync(&mut alice).await;
            if !texts(&r).is_empty() {
                return texts(&r);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("reply within the wait");
    assert_eq!(got, ["yes"]);
    let delivered = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if let ClientEvent::Delivered { id, .. } = e {
                if id == reply {
                    return true;
                }
            }
        }
        false
    })
    .await
    .expect("receipt within the wait");
    assert!(delivered);

    let bob = session.shutdown().await.expect("shutdown");
    let path = stack.store_path("bob");
    bob.close().expect("close");
    let bob = Client::open(&path, PASSPHRASE).await.expect("reopen");
    assert_eq!(
        bob.messages(&Chat::User(alice_id)).expect("messages").len(),
        2
    );
    assert_eq!(
        bob.outgoing_state(&reply).expect("state"),
        Some(MessageState::Delivered)
    );
}

/// STORE-2 through the client: a wrong passphrase is a typed error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_is_a_typed_error_store_2() {
    let stack = TestStack::embedded().await;
    let alice = stack.signup("alice").await;
    alice.close().expect("close");
    let err = Client::open(stack.store_path("alice"), b"wrong")
        .await
        .expect_err("wrong passphrase");
    assert!(
        matches!(
            err,
            sotto_client::ClientError::Store(sotto_store::StoreError::WrongPassphrase)
        ),
        "{err}"
    );
}
