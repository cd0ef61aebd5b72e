//! The service beyond one machine (issue 17): two services, each a front and a membership
//! instance, share one membership directory on PostgreSQL and one 3-node NATS cluster
//! (`sotto_testkit::nats`, JetStream with R3 MQTT streams). Alice reaches front A directly; Bob
//! reaches his front through a TCP balancer (`sotto_testkit::proxy`), as devices reach several
//! fronts behind one address.
//!
//! `exactly_once_across_node_and_front_kills_on_a_cluster`: Alice sends [`COUNT`] texts to Bob
//! while, in turn, a NATS node is SIGKILLed (connections through it drop, the others elect new
//! leaders), Bob's front B goes away (the balancer moves him to front A), the node comes back,
//! Bob goes offline (the engine then holds his queued envelopes: read from NATS's own state,
//! `STREAM.INFO`), service B starts again on its data and Bob comes back through it. Afterwards
//! every text is in Bob's store and events exactly once, every message is `Delivered` at Alice's,
//! and the engine holds nothing for either inbox once the acks are in (Req6 on the cluster's
//! own state).
//!
//! Skips where PostgreSQL or `nats-server` is not installed; CI installs both and sets
//! `SOTTO_REQUIRE_POSTGRES=1` and `SOTTO_REQUIRE_NATS=1`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use sotto_client::{Chat, Client, MessageId};
use sotto_server::broker::nats::NatsCluster;
use sotto_server::membership::DirectoryBackend;
use sotto_server::{InboxLimits, Service};
use sotto_testkit::nats::TestNats;
use sotto_testkit::postgres::TestPostgres;
use sotto_testkit::proxy::Proxy;
use sotto_testkit::{
    PASSPHRASE, Shown, Tally, TestStack, assert_all_delivered, assert_exactly_once, exchange_cards,
    free_loopback, go_offline, go_online, settle, test_config_resending, try_sync,
};

/// Texts Alice sends.
const COUNT: usize = 30;
/// When things happen, by the index of the text just queued.
const KILL_NODE: usize = 5;
const FRONT_B_GOES: usize = 10;
const NODE_BACK: usize = 15;
const BOB_OFFLINE: usize = 18;
const FRONT_B_BACK: usize = 22;
/// How long everything may take to settle at the end (NATS resends an unacknowledged delivery
/// only after its `ack_wait`).
const SETTLE: Duration = Duration::from_secs(60);

fn text(i: usize) -> String {
    format!("cluster message {i}")
}

fn directory(pg: &TestPostgres) -> DirectoryBackend {
    DirectoryBackend::Postgres {
        url: pg.url(),
        pool_size: 4,
    }
}

/// A service on the cluster with its data in `data` (holding the shared CA files), its
/// membership service on `listen`, telling devices `advertise` as the broker (default: its own
/// front), with `limits` (BROKER-5).
async fn service_b(
    data: &Path,
    cluster: NatsCluster,
    pg: &TestPostgres,
    listen: SocketAddr,
    advertise: Option<SocketAddr>,
    limits: InboxLimits,
) -> Service {
    let builder = Service::builder(data)
        .nats(cluster)
        .directory(directory(pg))
        .difficulty(sotto_testkit::stack::DIFFICULTY)
        .membership_listen(listen)
        .inbox_limits(limits);
    match advertise {
        Some(addr) => builder.advertise_broker(addr.to_string()),
        None => builder,
    }
    .start()
    .await
    .expect("service B")
}

/// B's data directory beside A's, with A's CA files (shared, docs/operations.md).
fn data_b(stack: &TestStack) -> std::path::PathBuf {
    let data_b = stack.dir.path().join("server-b");
    std::fs::create_dir_all(&data_b).expect("B's data directory");
    for f in ["ca.pem", "ca.key"] {
        std::fs::copy(stack.dir.path().join("server").join(f), data_b.join(f)).expect("CA files");
    }
    data_b
}

/// Signs `name` up at `service` (with the test configuration), the store beside `stack`'s.
async fn signup_at(service: &Service, stack: &TestStack, name: &str) -> Client {
    Client::signup_with(
        &service.membership_url(),
        stack.ca_pem(),
        stack.store_path(name),
        PASSPHRASE,
        sotto_testkit::test_config(),
    )
    .await
    .expect("signup at the other service")
}

/// Polls what the engine holds for `user` until `done` says so (at most `within`); returns the
/// last count read.
async fn engine_count(
    cluster: &NatsCluster,
    user: &str,
    within: Duration,
    done: impl Fn(u64) -> bool,
) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = cluster.inbox_count(user).await.expect("STREAM.INFO");
        if done(n) || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_across_node_and_front_kills_on_a_cluster() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let Some(mut nats) = TestNats::start().await else {
        return;
    };
    let cluster = nats.cluster();

    // Service A: front A and a membership instance; devices reach front A directly.
    let stack = TestStack::build(sotto_server::Broker::Nats, |b| {
        b.nats(cluster.clone()).directory(directory(&pg))
    })
    .await;
    // Service B, with A's CA, behind the balancer.
    let data_b = data_b(&stack);
    let balancer = Proxy::start(free_loopback()).await;
    let listen_b = free_loopback();
    let limits = InboxLimits::DEFAULT;
    // B starts here and again after it went away: same data, ports and settings.
    let start_b = || {
        service_b(
            &data_b,
            cluster.clone(),
            &pg,
            listen_b,
            Some(balancer.addr()),
            limits,
        )
    };
    let mut front_b = Some(start_b().await);
    balancer.retarget(front_b.as_ref().expect("B").broker_addr());

    let mut alice = stack
        .signup_with("alice", test_config_resending(1_000, 2_000))
        .await;
    let mut bob = signup_at(front_b.as_ref().expect("B"), &stack, "bob").await;
    exchange_cards(&mut alice, &mut bob);
    let (alice_id, bob_id) = (alice.user_id(), bob.user_id());

    let mut online = Some(go_online(bob).await);
    let mut offline: Option<Client> = None;
    let mut shown = Shown::default();
    let mut tally = Tally::default();
    let mut ids: Vec<MessageId> = Vec::with_capacity(COUNT);
    let mut held_for_offline_bob = 0;
    for i in 0..COUNT {
        ids.push(alice.send(&bob_id, &text(i)).expect("send"));
        match i {
            KILL_NODE => {
                let (_, ()) = tokio::join!(try_sync(&mut alice, &mut tally), async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    nats.kill_node(0);
                });
            }
            FRONT_B_GOES => {
                balancer.retarget(stack.broker_addr());
                let (_, ()) = tokio::join!(try_sync(&mut alice, &mut tally), async {
                    front_b.take().expect("B").shutdown().await;
                });
            }
            NODE_BACK => {
                nats.start_node(0).await;
                try_sync(&mut alice, &mut tally).await;
            }
            BOB_OFFLINE => {
                let (bob, seen) = go_offline(online.take().expect("Bob online")).await;
                shown.texts.extend(seen.texts);
                offline = Some(bob);
                try_sync(&mut alice, &mut tally).await;
            }
            FRONT_B_BACK => {
                // Bob is offline: what Alice sent since is held by the engine, for his inbox.
                held_for_offline_bob =
                    engine_count(&cluster, &bob_id.to_text(), Duration::from_secs(10), |n| {
                        n > 0
                    })
                    .await;
                let b = start_b().await;
                balancer.retarget(b.broker_addr());
                front_b = Some(b);
                online = Some(go_online(offline.take().expect("Bob offline")).await);
                try_sync(&mut alice, &mut tally).await;
            }
            _ if i % 3 == 2 => try_sync(&mut alice, &mut tally).await,
            _ => {}
        }
    }
    let online = online.expect("Bob online at the end");
    let settled = settle(&mut alice, &ids, &mut tally, &online, SETTLE).await;
    let (bob, seen) = go_offline(online).await;
    shown.texts.extend(seen.texts);
    eprintln!(
        "Alice published {} envelopes for {COUNT} messages and received {}; the engine held {} for offline Bob",
        tally.published, tally.received, held_for_offline_bob
    );

    let expected: Vec<String> = (0..COUNT).map(text).collect();
    let stored: Vec<String> = bob
        .messages(&Chat::User(alice_id))
        .expect("messages")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_exactly_once("Bob's store", &stored, &expected);
    assert_exactly_once("Bob's message events", &shown.texts, &expected);
    assert_all_delivered(&alice, &ids);
    assert!(settled, "settled within {SETTLE:?}");
    assert!(
        held_for_offline_bob > 0,
        "the engine's own state showed envelopes queued for offline Bob"
    );

    // Req6 on the engine's own state: once every ack is in, nothing is held for either inbox.
    let wait = sotto_testkit::nats::ACK_WAIT * 3;
    for (who, id) in [("Bob", bob_id), ("Alice", alice_id)] {
        let n = engine_count(&cluster, &id.to_text(), wait, |n| n == 0).await;
        assert_eq!(n, 0, "NATS still holds {n} envelopes for {who}'s inbox");
    }
    let held = cluster.held().await.expect("STREAM.INFO");
    assert_eq!(held.messages, 0, "NATS holds {held:?}");
    if let Some(b) = front_b {
        b.shutdown().await;
    }
}

/// BROKER-5 across fronts: Bob's inbox (limit [`LIMIT`]) is filled through front A and drained
/// through front B, whose acks front A never sees. Front A refuses the surplus only once the
/// engine confirms the inbox is full, and takes new messages once the engine says it was drained
/// (before, front A's own count stayed full for ever). Every message arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_drained_through_another_front_takes_messages_again_broker_5() {
    const LIMIT: usize = 3;
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let Some(nats) = TestNats::start().await else {
        return;
    };
    let cluster = nats.cluster();
    let limits = InboxLimits {
        max_envelopes: LIMIT,
        max_bytes: 1 << 20,
    };
    let stack = TestStack::build(sotto_server::Broker::Nats, |b| {
        b.nats(cluster.clone())
            .directory(directory(&pg))
            .inbox_limits(limits)
    })
    .await;
    let front_b = service_b(
        &data_b(&stack),
        cluster.clone(),
        &pg,
        free_loopback(),
        None,
        limits,
    )
    .await;
    let mut alice = stack
        .signup_with("alice", test_config_resending(300, 600))
        .await;
    let mut bob = signup_at(&front_b, &stack, "bob").await;
    exchange_cards(&mut alice, &mut bob);
    let bob_id = bob.user_id();

    // LIMIT + 1 texts while Bob is offline: the last is refused, the engine holds LIMIT.
    let mut expected: Vec<String> = (0..=LIMIT).map(|i| format!("first {i}")).collect();
    for t in &expected {
        alice.send(&bob_id, t).expect("send");
    }
    let report = sotto_testkit::sync(&mut alice).await;
    assert_eq!(report.published, LIMIT, "{:?}", report.events);
    assert_eq!(alice.held_outbox().expect("outbox").len(), 1);
    assert_eq!(
        cluster.inbox_count(&bob_id.to_text()).await.expect("count"),
        LIMIT as u64
    );

    // Bob drains through B; then Alice, through A, sends LIMIT more.
    let mut got = sotto_testkit::texts(&sotto_testkit::sync(&mut bob).await);
    let more: Vec<String> = (0..LIMIT).map(|i| format!("then {i}")).collect();
    for t in &more {
        alice.send(&bob_id, t).expect("send");
    }
    expected.extend(more);
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < expected.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(400)).await;
        sotto_testkit::sync(&mut alice).await;
        got.extend(sotto_testkit::texts(&sotto_testkit::sync(&mut bob).await));
    }
    assert_exactly_once("Bob's texts", &got, &expected);
    assert!(alice.held_outbox().expect("outbox").is_empty());
    front_b.shutdown().await;
}
