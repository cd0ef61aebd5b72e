//! Fault injection against the real stack in-process (issue 6, item 2), each scenario against the
//! embedded broker (behind the authorizing front) and against Mosquitto (the external
//! profile). Afterwards every message is in its recipient's store exactly once, every sent message
//! ends `Delivered` at its sender with an empty outbox, and every failure on the way was a typed
//! error or a reconnection the test names.
//!
//! 1. **The membership service restarts mid-use** (`membership_restart_*`). Bob is connected,
//!    Alice is syncing, and the service stops under her. While it is down, everything that needs
//!    it fails at once with `ClientError::Network { service: Membership, failure: Connect, .. }`,
//!    the network's fault and worth a retry: `refresh_time`, `refill_prekeys`,
//!    `add_from_directory` (and `Online::add_from_directory`), and no contact is created.
//!    Messaging over the broker does not need it and goes on. The service starts again on the
//!    same address (devices keep its URL) from the same database and the PKI reloaded from disk
//!    (same CA): the same calls succeed with the old client certificates (mutual TLS), Carol,
//!    signed up before the restart, is found in the directory and reached with a first message.
//! 2. **The connection is cut in the middle of a frame** (`cut_mid_frame_*`). Every device
//!    reaches the broker through a loopback TCP proxy (`sotto_testkit::proxy`; the membership service
//!    advertises the proxy's port, the TLS bytes pass unchanged and the broker certificate names
//!    127.0.0.1, so the port change is invisible to TLS). The proxy cuts, once each:
//!    - (a) half of Alice's ~4 KB PUBLISH record, device to broker: the broker drops the
//!      truncated record, Alice reconnects within the same sync and publishes the row again from
//!      the outbox (RX-6);
//!    - (b) half of that PUBLISH on its way to Bob: Bob reconnects within his sync, the broker
//!      delivers the unacknowledged message again, Bob commits it once (RX-4);
//!    - (c) the whole of Alice's next PUBLISH, then the connection before the PUBACK: Alice
//!      publishes it again, Bob receives both copies, commits one and receipts both (RX-6);
//!    - (d) the whole of a PUBLISH to Bob, then the connection before Bob's ack reaches the
//!      broker: Bob committed it, the broker delivers it again, Bob recognises the duplicate
//!      (RX-4, RX-7), shows it once and receipts it again;
//!    - (e) half of a PUBLISH to Bob's online loop (`Client::connect`): the loop reports
//!      `Disconnected` on its channel, reconnects by itself and shows the message once.
//!
//!    Observed on both brokers: no call fails; each cut shows in the sync's (or the online loop's)
//!    events as one `ClientEvent::Disconnected` with fault `Network`, retryable, whose reason is
//!    rumqttc's error ("... peer closed connection without sending TLS close_notify": the
//!    proxy closes the TCP connection without a TLS alert), followed by a new `Connected` after
//!    the 0.5 s reconnection delay, and the sync completes. (Before the fix in
//!    `Connection::stop_reason`, a cut that landed right after Mosquitto's CONNACK was reported
//!    as rumqttc's "Failed to send mqtt requests to eventloop", the failed SUBSCRIBE, hiding the
//!    real cause.)
//! 3. **The broker is killed mid-traffic and restarted** (`exactly_once_across_*_kills_*`): the
//!    scenario of `restart.rs` with [`BrokerStop::Kill`]: Mosquitto gets SIGKILL (nothing written since
//!    its last autosave survives: queues, sessions) and the embedded message service (front and
//!    broker) goes away as a whole, as when the server process dies, forgetting every session;
//!    then each starts again on the same port. Alice resends from
//!    her outbox until Bob's receipt arrives (RX-6).
//! 4. **The client is killed inside a batch** (`killed_inside_a_burst_*`): Alice queues
//!    [`BURST_TEXTS`] texts for Bob while he is offline; Bob's online loop runs on a runtime of
//!    its own, which is dropped as soon as a first burst is committed and shown (the loop dies
//!    wherever it is: with the next burst delivered but not committed, acks not yet written,
//!    receipts unsent). Bob then opens his store again and syncs:
//!    every text is in his store exactly once, none he had already committed is shown again, and
//!    every message ends delivered at Alice's (RX-4, RX-6, RX-7).
//!
//! Every wait is bounded ([`WAIT`], [`QUIET`], a settle deadline); nothing asserts on speed.

use std::time::Duration;

use sotto_client::{
    Chat, Client, ClientError, ClientEvent, Config, Fault, MessageId, MessageState, NetworkFailure,
    Service, Trust,
};
use sotto_server::{Broker, BrokerStop};
use sotto_testkit::proxy::{Cut, Dir, Proxy};
use sotto_testkit::{
    PASSPHRASE, Tally, TestStack, WAIT, assert_all_delivered, assert_exactly_once, exchange_cards,
    go_offline, go_online, received_texts, settle, test_config, test_config_resending, texts,
    try_sync,
};

use crate::restart::exactly_once_across_restarts;

/// How long a scenario waits, at most, for everything to settle at the end.
const SETTLE: Duration = Duration::from_secs(40);

/// A short resend schedule (RX-6), so that a lost message is resent within the test's waits.
fn short_backoff() -> Config {
    test_config_resending(1_000, 2_000)
}

fn skip_without_mosquitto() -> bool {
    if Broker::Mosquitto.is_available() {
        return false;
    }
    eprintln!("SKIPPED: mosquitto not installed");
    true
}

// ---------------------------------------------------------------------------------------------
// 1. The membership service restarts

/// `result` is the typed error of an unreachable membership service: a connection failure, on
/// the network, worth a retry.
#[track_caller]
fn assert_unreachable<T: std::fmt::Debug>(what: &str, result: Result<T, ClientError>) {
    match result {
        Err(
            e @ ClientError::Network {
                service: Service::Membership,
                failure: NetworkFailure::Connect,
                ..
            },
        ) => {
            assert_eq!(e.fault(), Fault::Network, "{what}");
            assert!(e.is_retryable(), "{what}: {e}");
        }
        other => panic!("{what}: expected the membership service to be unreachable, got {other:?}"),
    }
}

async fn membership_restart(mut stack: TestStack) {
    let mut alice = stack.signup_with("alice", short_backoff()).await;
    let mut bob = stack.signup("bob").await;
    let mut carol = stack.signup("carol").await;
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id, carol_id) = (alice.user_id(), bob.user_id(), carol.user_id());
    let url = stack.url();
    let online = go_online(bob).await;
    let mut tally = Tally::default();
    let mut ids: Vec<MessageId> = Vec::new();
    let mut expected: Vec<String> = Vec::new();
    let mut send = |alice: &mut Client, phase: &str| {
        for i in 0..3 {
            let t = format!("{phase} {i}");
            ids.push(alice.send(&bob_id, &t).expect("send"));
            expected.push(t);
        }
    };

    // Alice syncs while the service stops under her.
    send(&mut alice, "before the stop");
    let stop = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stack.stop_membership().await
    };
    tokio::join!(try_sync(&mut alice, &mut tally), stop);

    // Down: whatever needs the service fails with a typed connection error, changing nothing.
    assert_unreachable("refresh_time", alice.refresh_time().await);
    assert_unreachable("refill_prekeys", alice.refill_prekeys(1).await);
    assert_unreachable(
        "add_from_directory",
        alice.add_from_directory(&carol_id).await,
    );
    assert_eq!(
        alice.trust(&carol_id),
        None,
        "no contact from a failed fetch"
    );
    assert_unreachable(
        "Online::add_from_directory",
        online.handle.add_from_directory(carol_id).await,
    );
    // Messaging over the broker goes on.
    send(&mut alice, "while the membership service is down");
    let sent = alice.sync(WAIT).await.expect("sync while down");
    assert!(sent.complete, "the sync needs no membership service");
    assert!(sent.published >= 3, "published {}", sent.published);

    // Up again, same address, same database and CA (asserted by `start`).
    stack.start_membership(None).await;
    assert_eq!(stack.url(), url, "devices keep the URL");
    let offset = alice.refresh_time().await.expect("refresh_time again");
    eprintln!("clock offset after the restart: {offset} ms");
    let left = alice
        .refill_prekeys(1)
        .await
        .expect("the old certificate is accepted (mutual TLS)");
    assert!(left >= 1, "prekeys in the directory: {left}");
    alice
        .add_from_directory(&carol_id)
        .await
        .expect("Carol in the directory");
    assert_eq!(alice.trust(&carol_id), Some(Trust::Unverified));
    online
        .handle
        .add_from_directory(carol_id)
        .await
        .expect("Carol in the directory, through Bob's session");
    let to_carol = alice.send(&carol_id, "hello carol").expect("send to Carol");
    send(&mut alice, "after the restart");

    try_sync(&mut alice, &mut tally).await;
    // Carol opens the first message with the key share from the bundle fetched after the
    // restart; Alice learns of it from Carol's receipt.
    let got = sotto_testkit::sync(&mut carol).await;
    assert_eq!(texts(&got), ["hello carol"]);
    assert_eq!(received_texts(&carol, alice_id), ["hello carol"]);

    let settled = settle(&mut alice, &ids, &mut tally, &online, SETTLE).await;
    assert_eq!(
        alice.outgoing_state(&to_carol).expect("state"),
        Some(MessageState::Delivered)
    );

    let (bob, shown) = go_offline(online).await;
    assert_exactly_once("Bob's store", &received_texts(&bob, alice_id), &expected);
    assert_exactly_once("Bob's message events", &shown.texts, &expected);
    assert_all_delivered(&alice, &ids);
    assert!(settled, "settled within {SETTLE:?}");
    assert_eq!(tally.failed, 0, "no sync failed as a whole");
    drop(stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_restart_embedded_key_5_time_1_rx_4_rx_6() {
    membership_restart(TestStack::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_restart_mosquitto_key_5_time_1_rx_4_rx_6_broker_4() {
    if skip_without_mosquitto() {
        return;
    }
    membership_restart(TestStack::mosquitto().await).await;
}

// ---------------------------------------------------------------------------------------------
// 2. The connection is cut in the middle of a frame

/// A chunk at least this long is a large PUBLISH: a text of [`big_text`] seals into a TLS record
/// of about 4.1 KB, while the TLS handshake flights (certificates included), acks and receipts
/// stay below it (the fired chunk's length is printed).
const BIG_CHUNK: usize = 3_000;

/// A text close to LIM-1's 4,000 bytes, distinct per `tag`.
fn big_text(tag: &str) -> String {
    let mut t = format!("{tag}: ");
    while t.len() < 3_900 {
        t.push_str(tag);
    }
    t.truncate(3_900);
    t
}

/// Arms `cut`, runs one sync of `client`, and checks that the cut fired and that the sync got
/// over it: it reported the lost connection as `ClientEvent::Disconnected`, reconnected and
/// completed. Returns the report.
async fn sync_through_cut(
    proxy: &Proxy,
    cut: Cut,
    client: &mut Client,
) -> sotto_client::SyncReport {
    let mut fired = proxy.arm(cut);
    let report = client.sync(WAIT).await.expect("the sync survives the cut");
    let len = fired.try_recv();
    proxy.disarm();
    let len = len.unwrap_or_else(|_| panic!("{cut:?} fired during the sync"));
    let reasons: Vec<&str> = report
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Disconnected {
                fault,
                retryable,
                reason,
            } => {
                // The connection error rumqttc saw: the network, worth reconnecting.
                assert_eq!(*fault, Fault::Network, "{cut:?}: {reason}");
                assert!(*retryable, "{cut:?}: {reason}");
                Some(reason.as_str())
            }
            _ => None,
        })
        .collect();
    eprintln!("{cut:?} fired on a chunk of {len} bytes; the sync saw: {reasons:?}");
    assert!(
        !reasons.is_empty(),
        "{cut:?}: the sync reports the lost connection"
    );
    for r in &reasons {
        // Not a follow-up failure of the request channel.
        assert!(
            !r.contains("Failed to send mqtt requests"),
            "{cut:?}: the reason is the lost connection: {r}"
        );
    }
    let connects = report
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Connected { .. }))
        .count();
    assert!(connects >= 1, "{cut:?}: reconnected within the sync");
    assert!(report.complete, "{cut:?}: the sync completed after the cut");
    report
}

async fn cut_mid_frame(mut stack: TestStack) {
    // Every device goes through the proxy: the service advertises it from now on.
    let proxy = Proxy::start(stack.broker_addr()).await;
    stack.start_membership(Some(proxy.addr())).await;
    let mut alice = stack.signup_with("alice", short_backoff()).await;
    let mut bob = stack.signup("bob").await;
    assert_eq!(alice.broker_address(), proxy.addr().to_string());
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());
    let mut ids = Vec::new();
    let mut expected = Vec::new();

    // a. Half of Alice's PUBLISH reaches the broker.
    let a = big_text("a: cut on the way up");
    ids.push(alice.send(&bob_id, &a).expect("send"));
    expected.push(a.clone());
    let up = Cut::MidChunk {
        dir: Dir::Up,
        min: BIG_CHUNK,
    };
    let report = sync_through_cut(&proxy, up, &mut alice).await;
    assert!(report.published >= 1, "published again after the cut");
    assert_eq!(
        alice.outgoing_state(&ids[0]).expect("state"),
        Some(MessageState::Sent)
    );

    // b. Half of it reaches Bob.
    let down = Cut::MidChunk {
        dir: Dir::Down,
        min: BIG_CHUNK,
    };
    let report = sync_through_cut(&proxy, down, &mut bob).await;
    assert_eq!(texts(&report), [a.as_str()], "delivered again, shown once");
    assert_eq!(received_texts(&bob, alice_id), [a.as_str()]);

    // c. Alice's next PUBLISH arrives whole, its PUBACK does not.
    let c = big_text("c: the PUBACK is lost");
    ids.push(alice.send(&bob_id, &c).expect("send"));
    expected.push(c.clone());
    let after_up = Cut::AfterChunk {
        dir: Dir::Up,
        min: BIG_CHUNK,
    };
    let report = sync_through_cut(&proxy, after_up, &mut alice).await;
    assert!(report.published >= 1, "published again after the cut");
    let got = sotto_testkit::sync(&mut bob).await;
    eprintln!("c: Bob received {} envelopes", got.received);
    assert!(got.received >= 2, "both copies reached Bob");
    assert_eq!(texts(&got), [c.as_str()], "two copies, shown once");

    // d. A PUBLISH reaches Bob whole, his ack does not reach the broker.
    let d = big_text("d: Bob's ack is lost");
    ids.push(alice.send(&bob_id, &d).expect("send"));
    expected.push(d.clone());
    sotto_testkit::sync(&mut alice).await;
    let after_down = Cut::AfterChunk {
        dir: Dir::Down,
        min: BIG_CHUNK,
    };
    let report = sync_through_cut(&proxy, after_down, &mut bob).await;
    eprintln!("d: Bob received {} envelopes", report.received);
    assert!(report.received >= 2, "committed, then delivered again");
    assert_eq!(texts(&report), [d.as_str()], "committed once");

    // e. Half of a PUBLISH reaches Bob's connected session: it reconnects by itself.
    let online = go_online(bob).await;
    let e = big_text("e: cut on the way to a session");
    ids.push(alice.send(&bob_id, &e).expect("send"));
    expected.push(e.clone());
    let fired = proxy.arm(Cut::MidChunk {
        dir: Dir::Down,
        min: BIG_CHUNK,
    });
    sotto_testkit::sync(&mut alice).await;
    let len = tokio::time::timeout(WAIT, fired)
        .await
        .expect("the cut fires within the wait")
        .expect("the cut fired");
    eprintln!("e: the cut fired on a chunk of {len} bytes");

    // Receipts back to Alice, through the proxy (no cut armed).
    let mut tally = Tally::default();
    let settled = settle(&mut alice, &ids, &mut tally, &online, SETTLE).await;
    let (bob, shown) = go_offline(online).await;
    assert_eq!(shown.texts, [e.as_str()], "the session showed (e) once");
    assert!(
        shown.disconnections >= 1,
        "the session reported the lost connection"
    );
    assert_exactly_once("Bob's store", &received_texts(&bob, alice_id), &expected);
    assert_all_delivered(&alice, &ids);
    assert!(settled, "settled within {SETTLE:?}");
    drop(stack);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_frame_embedded_rx_4_rx_6_rx_7() {
    cut_mid_frame(TestStack::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_frame_mosquitto_rx_4_rx_6_rx_7_broker_4() {
    if skip_without_mosquitto() {
        return;
    }
    cut_mid_frame(TestStack::mosquitto().await).await;
}

// ---------------------------------------------------------------------------------------------
// 3. The broker is killed mid-traffic

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_embedded_service_kills_rx_4_rx_6() {
    exactly_once_across_restarts(TestStack::embedded().await, BrokerStop::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_mosquitto_kills_rx_4_rx_6_broker_4() {
    if skip_without_mosquitto() {
        return;
    }
    exactly_once_across_restarts(TestStack::mosquitto().await, BrokerStop::Kill).await;
}

// ---------------------------------------------------------------------------------------------
// 4. The client is killed inside a batch

/// Texts queued for Bob before his loop is killed: several bursts' worth (a burst is at most 512
/// envelopes, and the broker delivers at most its window unacknowledged).
const BURST_TEXTS: usize = 4000;

async fn killed_inside_a_burst(stack: TestStack) {
    // No resend within the test: each text is queued once, and only Bob's receipts end it.
    let mut alice = stack
        .signup_with("alice", test_config_resending(600_000, 600_000))
        .await;
    let mut bob = stack.signup("bob").await;
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());
    let expected: Vec<String> = (0..BURST_TEXTS).map(|i| format!("burst {i:04}")).collect();
    let mut ids = Vec::new();
    for chunk in expected.chunks(256) {
        let texts: Vec<(Chat, String)> = chunk
            .iter()
            .map(|t| (Chat::User(bob_id), t.clone()))
            .collect();
        for r in alice.send_many(&texts).expect("send_many") {
            ids.push(r.expect("sealed"));
        }
    }
    let mut published = 0;
    let deadline = tokio::time::Instant::now() + SETTLE;
    while published < BURST_TEXTS && tokio::time::Instant::now() < deadline {
        published += alice.sync(WAIT).await.expect("sync").published;
    }
    assert_eq!(published, BURST_TEXTS, "every text queued for Bob, once");

    // Bob's loop on a runtime of its own, torn down after the first committed burst.
    let store = stack.store_path("bob");
    let first_burst = tokio::task::spawn_blocking(move || {
        // A current-thread runtime: its tasks run only inside `block_on`, so once that returns
        // the loop is frozen wherever it was, and dropping the runtime drops it there.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let seen = rt.block_on(async move {
            let (online, mut events) = bob.connect();
            let mut seen = 0;
            let wait = tokio::time::sleep(WAIT);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(ClientEvent::Message(_)) => seen += 1,
                        Some(_) => {}
                        None => break,
                    },
                    _ = &mut wait => break,
                }
                if seen > 0 {
                    break;
                }
            }
            // No shutdown: the loop dies with the runtime, wherever it is.
            std::mem::forget(online);
            seen
        });
        drop(rt);
        seen
    })
    .await
    .expect("Bob's runtime");
    assert!(
        first_burst > 0,
        "Bob committed a first burst before the kill"
    );

    let mut bob = Client::open_with(&store, PASSPHRASE, test_config())
        .await
        .expect("Bob's store opens after the kill");
    let before = received_texts(&bob, alice_id);
    eprintln!(
        "killed inside a burst: {} of {BURST_TEXTS} committed before the kill ({first_burst} shown)",
        before.len()
    );
    assert!(
        before.len() < BURST_TEXTS,
        "the kill landed before the end of the drain"
    );
    let mut shown = Vec::new();
    let deadline = tokio::time::Instant::now() + SETTLE;
    while received_texts(&bob, alice_id).len() < BURST_TEXTS
        && tokio::time::Instant::now() < deadline
    {
        shown.extend(texts(&bob.sync(WAIT).await.expect("Bob's sync")));
    }
    assert_exactly_once("Bob's store", &received_texts(&bob, alice_id), &expected);
    for t in &shown {
        assert!(
            !before.contains(t),
            "{t:?} was committed before the kill and shown again"
        );
    }
    // Bob's receipts (committed before the kill or after) reach Alice.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let _ = alice.sync(WAIT).await;
        let delivered = ids
            .iter()
            .all(|id| matches!(alice.outgoing_state(id), Ok(Some(MessageState::Delivered))));
        if delivered || tokio::time::Instant::now() >= deadline {
            break;
        }
        let _ = bob.sync(WAIT).await;
    }
    assert_all_delivered(&alice, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_a_burst_embedded_rx_4_rx_6_rx_7() {
    killed_inside_a_burst(TestStack::embedded().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_a_burst_mosquitto_rx_4_rx_6_rx_7_broker_4() {
    if skip_without_mosquitto() {
        return;
    }
    killed_inside_a_burst(TestStack::mosquitto().await).await;
}
