//! Deleting an account end to end (issue 16, item 4), on both brokers behind the front: the
//! directory forgets the user (no row, no prekeys, bundle 404), its certificate no longer
//! connects and a live connection of it is closed, what was queued for it is gone from the
//! broker, nothing is left of its store, and a contact writing to it gets the permanent "the
//! recipient deleted their account" failure (BROKER-5, reason 2) and stops retrying, while
//! messages to a live user go on as before.

use std::time::Duration;

use sotto_client::{ApiCode, Client, ClientError, ClientEvent, RefusalReason, UserId};
use sotto_server::Broker;
use sotto_server::membership::store::Store as SqliteDirectory;
use sotto_store::{NEVER_DUE, Setting};
use sotto_testkit::mqtt::{Identity, WAIT, options, start};
use sotto_testkit::{TestStack, available_brokers, exchange_cards, sync};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The device certificate and key of `client`, as a raw MQTT identity.
fn mqtt_identity(client: &Client) -> Identity {
    let store = client.store();
    let text = |s| {
        store
            .setting_text(s)
            .expect("setting")
            .expect("set")
            .to_string()
    };
    Identity {
        user_id: client.user_id().to_text(),
        cert_pem: text(Setting::CertificatePem),
        key_pem: text(Setting::TlsKeyPem),
    }
}

/// Whether the broker behind the front still has a persistent session of `user` with something
/// queued: connects to the broker's internal address as `user` (clean session 0, subscribes) and
/// reports (session present, envelopes delivered within a short wait). Mosquitto only (the
/// embedded broker takes only the front's secret; its holdings are read directly).
async fn mosquitto_session(stack: &TestStack, user: &UserId) -> (bool, usize) {
    use sotto_wire::mqtt::{encode_connect, encode_subscribe};
    let user = user.to_text();
    let (mut rd, mut wr) = stack
        .service
        .internal_broker_addr()
        .connect()
        .await
        .expect("internal socket");
    wr.write_all(&encode_connect(&user, 30, false, &user, b"test"))
        .await
        .expect("CONNECT");
    let mut connack = [0u8; 4];
    tokio::time::timeout(WAIT, rd.read_exact(&mut connack))
        .await
        .expect("CONNACK in time")
        .expect("CONNACK");
    assert_eq!(connack[3], 0, "accepted");
    let present = connack[2] & 1 == 1;
    wr.write_all(&encode_subscribe(1, &format!("i/{user}")))
        .await
        .expect("SUBSCRIBE");
    // Count PUBLISH packet headers (0x3?) in what arrives within a second (no PUBACK is sent:
    // whatever is delivered stays queued).
    let mut seen = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let mut publishes = 0;
    let mut at = 0;
    while let Some(&first) = seen.get(at) {
        if first >> 4 == 3 {
            publishes += 1;
        }
        // Remaining length (one to four bytes).
        let (mut len, mut shift, mut i) = (0usize, 0, at + 1);
        while let Some(&b) = seen.get(i) {
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        at = i + len;
    }
    (present, publishes)
}

/// How many envelopes the broker holds for everyone (embedded), or whether `user` still has a
/// session with something queued (Mosquitto): one number, 0 = nothing.
async fn held_for(stack: &TestStack, user: &UserId) -> usize {
    match stack.service.message_service().embedded_holdings() {
        Some(h) => h.envelopes,
        None => {
            let (present, publishes) = mosquitto_session(stack, user).await;
            usize::from(present) + publishes
        }
    }
}

async fn delete_an_account(broker: Broker) {
    let stack = TestStack::start(broker).await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    let mut carol = stack.signup("carol").await;
    exchange_cards(&mut alice, &mut bob);
    exchange_cards(&mut alice, &mut carol);
    let (bob_id, carol_id) = (bob.user_id(), carol.user_id());
    // Both have their persistent inbox sessions (BROKER-4).
    sync(&mut bob).await;
    sync(&mut carol).await;
    let bob_tls = mqtt_identity(&bob);
    // Control: the certificate connects before the deletion (as a persistent session: a clean
    // one would make the broker discard the inbox itself).
    let mut before = start(options(
        &bob_tls,
        stack.broker_addr(),
        stack.ca_pem(),
        false,
    ));
    before.connack().await.expect("bob's certificate connects");
    before.disconnect().await;

    // Two messages queue for bob while he is offline.
    for text in ["one", "two"] {
        alice.send(&bob_id, text).expect("send");
    }
    let report = sync(&mut alice).await;
    assert_eq!(report.published, 2, "{:?}", report.events);
    if broker == Broker::Embedded {
        assert_eq!(held_for(&stack, &bob_id).await, 2);
    } else {
        // The check sees a queued session (so its 0 below means something); reading it
        // acknowledges nothing.
        assert_eq!(held_for(&stack, &bob_id).await, 3, "session + 2 envelopes");
    }

    let dir = stack.dir.path().join("server");
    let directory = SqliteDirectory::open(&dir).expect("directory");
    assert!(directory.user_exists(&bob_id).expect("read"));
    let bob_store = stack.store_path("bob");
    assert!(bob_store.exists());

    bob.delete_account().await.expect("deleted");

    // (a) The directory has no row and no prekeys for him; his bundle is 404.
    assert!(!directory.user_exists(&bob_id).expect("read"));
    assert_eq!(directory.one_time_prekey_count(&bob_id).expect("read"), 0);
    assert!(directory.departed_users().expect("read").contains(&bob_id));
    match alice.fetch_bundle(&bob_id).await {
        Err(ClientError::Refused {
            status: 404,
            code: ApiCode::UnknownUser,
        }) => {}
        other => panic!("bundle of a deleted account: {other:?}"),
    }
    // (b) His certificate no longer connects to the message service.
    let mut after = start(options(&bob_tls, stack.broker_addr(), stack.ca_pem(), true));
    assert!(after.connack().await.is_err(), "revoked certificate");
    // (c) Nothing is held for him any more.
    assert_eq!(held_for(&stack, &bob_id).await, 0, "the inbox is dropped");
    // Nothing of his store is left on the device.
    let left: Vec<_> = std::fs::read_dir(stack.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("bob.db"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // (d) A contact writing to him gets the permanent failure and stops retrying; a message to
    // a live contact goes out as before.
    let gone = alice.send(&bob_id, "are you there?").expect("send");
    let live = alice.send(&carol_id, "hello carol").expect("send");
    let report = sync(&mut alice).await;
    let undeliverable: Vec<_> = report
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Undeliverable {
                id,
                recipient,
                reason,
            } => Some((*id, *recipient, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        undeliverable,
        vec![(gone, bob_id, RefusalReason::NoSuchRecipient)],
        "{:?}",
        report.events
    );
    assert_eq!(report.published, 1, "only carol's message was queued");
    let held = alice.held_outbox().expect("outbox");
    let row = held.iter().find(|h| h.id == gone).expect("listed");
    assert!(row.is_undeliverable() && row.next_attempt_at == NEVER_DUE);
    assert!(!held.iter().any(|h| h.id == live));
    // Not tried again: a later sync publishes nothing for it.
    let again = sync(&mut alice).await;
    assert!(
        !again
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Undeliverable { id, .. } if *id == gone)),
        "{:?}",
        again.events
    );
    // Carol gets hers.
    let report = sync(&mut carol).await;
    assert!(
        report
            .events
            .iter()
            .any(|e| matches!(e, ClientEvent::Message(m) if m.text == "hello carol"))
    );

    // A live connection of an account being deleted is closed.
    let dave = stack.signup("dave").await;
    let mut live_conn = start(options(
        &mqtt_identity(&dave),
        stack.broker_addr(),
        stack.ca_pem(),
        true,
    ));
    live_conn.connack().await.expect("dave connects");
    dave.delete_account().await.expect("deleted");
    assert!(live_conn.closed_within(WAIT).await, "closed at deletion");
    // The service counted both.
    assert_eq!(stack.service.metrics().accounts_deleted.get(), 2);
    assert_eq!(stack.service.metrics().mqtt_no_recipient.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_forgets_it_everywhere_and_refuses_later_messages() {
    for broker in available_brokers() {
        tokio::time::timeout(Duration::from_secs(120), delete_an_account(broker))
            .await
            .expect("within two minutes");
    }
}

/// A failed deletion (the service unreachable) changes nothing: the store opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_the_service_did_not_answer_keeps_the_store() {
    let mut stack = TestStack::start(Broker::Embedded).await;
    let bob = stack.signup("bob").await;
    stack.service.stop_membership().await;
    let err = bob.delete_account().await.expect_err("no service");
    assert!(err.is_retryable(), "{err:?}");
    let bob = Client::open(stack.store_path("bob"), sotto_testkit::PASSPHRASE)
        .await
        .expect("the store is intact");
    bob.close().expect("close");
}

/// An account whose certificate expired 90 days ago without a renewal departs like a deleted
/// one when the service's sweep runs (at start, then daily): what was queued for it is dropped
/// from the broker and a contact that renewed its own certificate gets the permanent failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_account_departs_like_a_deleted_one() {
    use sotto_server::clock::Clock;
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let clock = Clock::skewed();
    let mut stack = TestStack::build(Broker::Embedded, |b| b.clock(clock.clone())).await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let bob_id = bob.user_id();
    bob.close().expect("close");
    alice.send(&bob_id, "queued for bob").expect("send");
    sync(&mut alice).await;
    assert_eq!(held_for(&stack, &bob_id).await, 1, "queued for bob");

    // Alice keeps her account: 350 days on (within the renewal window), her device renews its
    // certificate.
    clock.advance(350 * DAY);
    alice.advance_local_clock(350 * DAY);
    sync(&mut alice).await;
    // Bob never comes back: a year and 91 days after signup his account expired.
    clock.advance(106 * DAY);
    alice.advance_local_clock(106 * DAY);
    stack.stop_membership().await;
    stack.start_membership(None).await;
    let swept = tokio::time::timeout(WAIT, async {
        while held_for(&stack, &bob_id).await != 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(swept.is_ok(), "bob's inbox dropped by the sweep");
    let gone = alice.send(&bob_id, "are you there?").expect("send");
    let report = sync(&mut alice).await;
    assert!(
        report.events.iter().any(|e| matches!(
            e,
            ClientEvent::Undeliverable { id, reason: RefusalReason::NoSuchRecipient, .. }
                if *id == gone
        )),
        "{:?}",
        report.events
    );
}
