//! Key changes people can act on (RX-9) and blocks (RX-11), over the real stack: a first message
//! that claims another identity for a contact (an account holder sealing the contact's user id
//! with its own keys, which the broker cannot see) is held unopened, shown with both safety
//! numbers, and opens only when the person accepts it; a blocked user's messages are neither
//! opened nor answered, and nothing is sent to them.

use rand_core::OsRng;
use sotto_client::{Chat, ClientError, ClientEvent, Fault, MessageState, Trust};
use sotto_core::{Content, Device, UserId};

use sotto_testkit::{
    PASSPHRASE, TestStack, exchange_cards, raw_publish, sync, test_config_resending, texts,
};

/// A first message to `to` under `claimed`'s user id but with fresh keys of its own: what an
/// account holder, or a directory that substitutes keys, can make.
async fn impersonate(
    stack: &TestStack,
    mallory: &mut sotto_client::Client,
    claimed: UserId,
    to: &mut sotto_client::Client,
    text: &str,
) {
    let bundle = mallory.fetch_bundle(&to.user_id()).await.expect("bundle");
    let mut forged = Device::new(&mut OsRng, claimed);
    forged.add_contact_from_bundle(&bundle).expect("contact");
    let out = forged
        .send(
            &mut OsRng,
            to.now(),
            &to.user_id(),
            &Content::Text(text.to_owned()),
        )
        .expect("seal");
    raw_publish(stack, &to.user_id(), &[out.envelope]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_new_identity_waits_for_the_person_rx_9() {
    let stack = TestStack::embedded().await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let mut mallory = stack.signup("mallory").await;
    let alice_id = alice.user_id();

    impersonate(
        &stack,
        &mut mallory,
        alice_id,
        &mut bob,
        "new phone, it's me",
    )
    .await;
    let got = sync(&mut bob).await;
    assert!(texts(&got).is_empty(), "nothing opened: {:?}", got.events);
    assert!(
        got.events.contains(&ClientEvent::IdentityChanged {
            contact: alice_id,
            was_verified: true
        }),
        "{:?}",
        got.events
    );
    let claims = bob.identity_claims().expect("claims");
    assert_eq!(claims.len(), 1, "{claims:?}");
    let claim = &claims[0];
    assert_eq!(
        (claim.user, claim.messages, claim.was_verified),
        (alice_id, 1, true)
    );
    assert_eq!(
        claim.known_safety_number,
        bob.safety_number(&alice_id).expect("number")
    );
    assert_ne!(claim.claimed_safety_number, claim.known_safety_number);
    // Held across a sync and a restart, not shown twice.
    let again = sync(&mut bob).await;
    assert!(
        !again
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::IdentityChanged { .. })),
        "{:?}",
        again.events
    );
    let path = stack.store_path("bob");
    bob.close().expect("close");
    let mut bob = sotto_client::Client::open_with(&path, PASSPHRASE, sotto_testkit::test_config())
        .await
        .expect("reopen");
    assert_eq!(bob.identity_claims().expect("claims"), claims);

    // Refused: dropped unopened; Alice keeps her verified identity.
    assert_eq!(bob.reject_identity_claim(claim).expect("reject"), 1);
    assert!(bob.identity_claims().expect("claims").is_empty());
    assert_eq!(bob.trust(&alice_id), Some(Trust::Verified));
    assert!(
        bob.messages(&Chat::User(alice_id))
            .expect("messages")
            .is_empty()
    );

    // Another claim, accepted: the held message opens, from an unverified contact.
    impersonate(&stack, &mut mallory, alice_id, &mut bob, "really, it's me").await;
    sync(&mut bob).await;
    let claims = bob.identity_claims().expect("claims");
    assert_eq!(claims.len(), 1);
    let events = bob.accept_identity_claim(&claims[0]).expect("accept");
    assert!(
        events.iter().any(|e| matches!(
            e,
            ClientEvent::Message(m) if m.text == "really, it's me"
        )),
        "{events:?}"
    );
    assert_eq!(bob.trust(&alice_id), Some(Trust::Unverified));
    assert_eq!(
        bob.safety_number(&alice_id).expect("number"),
        claims[0].claimed_safety_number
    );
    assert!(bob.identity_claims().expect("claims").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_user_is_neither_read_nor_answered_rx_11() {
    let stack = TestStack::embedded().await;
    let config = test_config_resending(2_000, 2_000);
    let mut alice = stack.signup_with("alice", config.clone()).await;
    let mut bob = stack.signup_with("bob", config).await;
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());

    bob.block(&alice_id).expect("block");
    assert!(bob.is_blocked(&alice_id));
    assert_eq!(bob.blocked(), vec![alice_id]);
    let id = alice.send(&bob_id, "can you read this?").expect("send");
    sync(&mut alice).await;
    let got = sync(&mut bob).await;
    assert!(texts(&got).is_empty(), "{:?}", got.events);
    assert!(
        got.events
            .iter()
            .any(|e| matches!(e, ClientEvent::Refused(r) if r.code() == "blocked")),
        "{:?}",
        got.events
    );
    sync(&mut alice).await;
    assert_ne!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Delivered),
        "no receipt goes to a blocked user"
    );
    let err = bob.send(&alice_id, "hi").expect_err("blocked");
    assert!(
        matches!(err, ClientError::Protocol(e) if e.code() == "blocked"),
        "{err:?}"
    );
    assert_eq!(err.fault(), Fault::Caller);
    let err = bob.block(&bob_id).expect_err("self");
    assert_eq!(err.fault(), Fault::Caller);

    // Lifted: Alice's resend (RX-6) opens, and her message is delivered.
    assert!(bob.unblock(&alice_id).expect("unblock"));
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    sync(&mut alice).await;
    let got = sync(&mut bob).await;
    assert_eq!(texts(&got), ["can you read this?"]);
    sync(&mut alice).await;
    assert_eq!(
        alice.outgoing_state(&id).expect("state"),
        Some(MessageState::Delivered)
    );
}
