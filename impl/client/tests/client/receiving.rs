//! Receiving what the broker (or an attacker with an account) injects: refused envelopes are
//! acknowledged and change nothing (RX-3); envelopes that cannot open yet are parked and opened
//! once their keys arrive (RX-8).

use sotto_client::{Chat, ClientEvent, MessageState};

use sotto_testkit::{TestStack, exchange_cards, outbox, raw_publish, sync, texts};

/// Types of ENV-1.
const GROUP_MESSAGE: u8 = 0x14;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_envelopes_are_acked_and_change_nothing_rx_3() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);

    let id = alice.send(&bob.user_id(), "the real one").expect("send");
    let real = outbox(&alice)
        .into_iter()
        .find(|e| e.message_id == id)
        .expect("queued")
        .envelope;
    let mut tampered = real.clone();
    if let Some(b) = tampered.last_mut() {
        *b ^= 1;
    }
    raw_publish(&stack, &bob.user_id(), &[vec![0xff; 40], tampered]).await;
    sync(&mut alice).await;

    let got = sync(&mut bob).await;
    let codes: Vec<&str> = got
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Refused(r) => Some(r.code()),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        ["unknown_version", "decrypt_failed"],
        "{:?}",
        got.events
    );
    assert_eq!(texts(&got), ["the real one"]);
    assert_eq!(got.received, 3);
    // Everything was acknowledged: nothing comes again.
    let again = sync(&mut bob).await;
    assert_eq!(again.received, 0, "{:?}", again.events);
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_group_message_is_parked_until_its_key_rx_8() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);

    let group = alice.create_group(&[bob.user_id()]).expect("create");
    let id = alice.send_group(&group, "early").expect("send");
    let early = outbox(&alice)
        .into_iter()
        .find(|e| e.envelope.first() == Some(&GROUP_MESSAGE))
        .expect("group message queued")
        .envelope;
    // The group message overtakes its key.
    raw_publish(&stack, &bob.user_id(), &[early]).await;
    sync(&mut alice).await;

    let got = sync(&mut bob).await;
    let parked = got
        .events
        .iter()
        .position(|e| matches!(e, ClientEvent::Parked))
        .expect("parked");
    let key = got
        .events
        .iter()
        .position(|e| matches!(e, ClientEvent::GroupKey { .. }))
        .expect("group key");
    assert!(parked < key, "{:?}", got.events);
    assert_eq!(texts(&got), ["early"], "opened once, from the parking");
    assert!(bob.store().parked().expect("parked").is_empty());
    assert_eq!(
        bob.messages(&Chat::Group(group)).expect("messages").len(),
        1
    );

    sync(&mut alice).await;
    assert_eq!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Delivered)
    );
}
