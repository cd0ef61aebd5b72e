//! BROKER-5 end to end: an offline inbox filled past its limit loses nothing. The front refuses
//! the surplus with a refusal notice, the sender keeps those envelopes in its outbox and can tell
//! why they wait, the broker's own state returns to empty once the inbox is drained, and the
//! held envelopes go out later: every message arrives exactly once. On both brokers behind the
//! front.

use sotto_client::{ClientEvent, RefusalReason};
use sotto_server::{Broker, InboxLimits};
use sotto_testkit::{
    TestStack, assert_exactly_once, exchange_cards, sync, test_config_resending, texts,
};

const LIMIT: usize = 5;
const SENT: usize = 8;

async fn fill_past_the_limit(broker: Broker) {
    let stack = TestStack::with_inbox_limits(
        broker,
        InboxLimits {
            max_envelopes: LIMIT,
            max_bytes: 1 << 20,
        },
    )
    .await;
    let messages = stack.service.message_service();
    // Held envelopes are due again 300 ms later (the resend backoff).
    let mut alice = stack
        .signup_with("alice", test_config_resending(300, 600))
        .await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let bob_id = bob.user_id().to_text();

    let expected: Vec<String> = (0..SENT).map(|i| format!("message {i}")).collect();
    for text in &expected {
        alice.send(&bob.user_id(), text).expect("send");
    }
    let report = sync(&mut alice).await;
    let held: Vec<_> = report
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Held { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(report.published, LIMIT, "{:?}", report.events);
    assert_eq!(held, vec![RefusalReason::InboxFull; SENT - LIMIT]);
    let waiting = alice.held_outbox().expect("outbox");
    assert_eq!(
        waiting.len(),
        SENT - LIMIT,
        "the sender can tell what waits"
    );
    assert!(
        waiting
            .iter()
            .all(|h| h.reason == RefusalReason::InboxFull && h.recipient == bob.user_id())
    );
    assert_eq!(messages.ledger_count(&bob_id).0, LIMIT);
    if let Some(h) = messages.embedded_holdings() {
        assert_eq!(h.envelopes, LIMIT, "the broker holds exactly what it took");
    }

    // Bob drains his inbox; the broker forgets each envelope at his PUBACK.
    let mut got = texts(&sync(&mut bob).await);
    assert_eq!(got.len(), LIMIT);
    assert_eq!(messages.ledger_count(&bob_id), (0, 0));
    // Alice takes Bob's receipts (and may resend what has none yet): the broker holds exactly
    // what the ledger counts.
    sync(&mut alice).await;
    if let Some(h) = messages.embedded_holdings() {
        assert_eq!(h.envelopes, messages.ledger_count(&bob_id).0);
    }

    // The held envelopes go out after their backoff and arrive; nothing was lost.
    let deadline = tokio::time::Instant::now() + sotto_testkit::WAIT;
    while got.len() < SENT && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        sync(&mut alice).await;
        got.extend(texts(&sync(&mut bob).await));
    }
    assert_exactly_once("bob", &got, &expected);
    assert!(alice.held_outbox().expect("outbox").is_empty());

    // Every receipt in and both inboxes drained (a duplicate resend draws a receipt again): the
    // broker holds nothing (its memory is back to its baseline) and the ledger agrees.
    let alice_id = alice.user_id().to_text();
    let drained = || {
        messages.ledger_count(&bob_id) == (0, 0)
            && messages.ledger_count(&alice_id) == (0, 0)
            && messages
                .embedded_holdings()
                .is_none_or(|h| h == Default::default())
    };
    while !(alice.outbox_len().expect("outbox") == 0 && drained())
        && tokio::time::Instant::now() < deadline
    {
        sync(&mut alice).await;
        assert!(texts(&sync(&mut bob).await).is_empty(), "no message twice");
    }
    assert_eq!(alice.outbox_len().expect("outbox"), 0, "every receipt in");
    assert_eq!(messages.ledger_count(&bob_id), (0, 0));
    assert_eq!(messages.ledger_count(&alice_id), (0, 0));
    if let Some(h) = messages.embedded_holdings() {
        assert_eq!(h, Default::default(), "drained: the broker holds nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_inbox_past_its_limit_loses_nothing() {
    fill_past_the_limit(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_inbox_past_its_limit_loses_nothing() {
    if !Broker::Mosquitto.is_available() {
        eprintln!("skipped: mosquitto is not installed");
        return;
    }
    fill_past_the_limit(Broker::Mosquitto).await;
}
