//! Mosquitto as the internal broker behind the authorizing front ([`InternalMosquitto`]), as a
//! component (the whole service with it is `Service::builder(..).broker(Broker::Mosquitto)`): the
//! `%u` ACL applies to the username the front sends (no password file), offline delivery to a
//! persistent session works through the front with real mutual-TLS rumqttc clients, and a restart
//! keeps or loses the queue as asked; it listens on its Unix socket only, which no other user can
//! reach, and never runs as root. Skipped with a printed notice if `mosquitto` is missing.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::MqttOptions;
use sotto_server::broker::front::Front;
use sotto_server::broker::mosquitto::{self, InternalMosquitto};
use sotto_server::ca::Pki;
use sotto_testkit::QUIET;
use sotto_testkit::mqtt::{
    Identity, RawClient as Client, WAIT, identity, inbox, options, random_user_id, start,
};

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Mosquitto, or `None` after printing why the test is skipped.
async fn internal(dir: &tempfile::TempDir) -> Option<InternalMosquitto> {
    if !mosquitto::mosquitto_available() {
        println!("SKIPPED: `mosquitto` binary not found (apt-get install mosquitto)");
        return None;
    }
    Some(
        InternalMosquitto::start(
            &dir.path().join("mosquitto"),
            sotto_server::InboxLimits::DEFAULT,
            64,
        )
        .await
        .expect("internal mosquitto"),
    )
}

/// A loopback TCP port forwarding each connection to Mosquitto's Unix socket, so that the plain
/// clients below reach it as the front does (the test itself runs as the service's user).
async fn socket_proxy(mosq: &InternalMosquitto) -> SocketAddr {
    let socket = mosq.files().socket_path();
    let listener = tokio::net::TcpListener::bind(loopback())
        .await
        .expect("proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&socket).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    addr
}

/// A plain client straight to Mosquitto (through [`socket_proxy`]), as the front connects:
/// client id = username = `user`, any password.
fn plain(addr: SocketAddr, user: &str, clean_session: bool) -> Client {
    let mut opts = MqttOptions::new(user.to_owned(), addr.ip().to_string(), addr.port());
    opts.set_credentials(user.to_owned(), "not checked");
    opts.set_clean_session(clean_session);
    opts.set_keep_alive(Duration::from_secs(30));
    start(opts)
}

/// The front on a free port with the PKI's MQTT TLS configuration, relaying to `mosq`.
async fn front(pki: &Pki, mosq: &InternalMosquitto) -> Front {
    Front::bind(
        loopback(),
        pki.mqtt_server_config().expect("tls"),
        Some(mosq.upstream()),
        sotto_server::InboxLimits::DEFAULT,
        sotto_server::admission::AdmissionLimits::FRONT,
        sotto_server::revocation::Revocations::new(),
        sotto_server::departure::Departures::new(),
        std::sync::Arc::new(sotto_server::metrics::Metrics::new()),
    )
    .await
    .expect("front")
}

async fn connect(front: &Front, pki: &Pki, id: &Identity, clean_session: bool) -> (Client, bool) {
    let mut c = start(options(id, front.local_addr(), pki.ca_pem(), clean_session));
    let present = c.connack().await.expect("CONNACK through the front");
    (c, present)
}

#[tokio::test]
async fn internal_mosquitto_acl_uses_the_front_username() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mosq) = internal(&dir).await else {
        return;
    };
    let (x, y) = (random_user_id(), random_user_id());

    // X subscribes to its own inbox and to Y's: Mosquitto 2.0 grants both (the ACL file is not
    // checked on SUBSCRIBE) but must deliver only i/X.
    let addr = socket_proxy(&mosq).await;
    let mut cx = plain(addr, &x, true);
    // A client without a username (not the front) reads nothing: `%u` patterns do not apply.
    let mut nobody = {
        let mut opts = MqttOptions::new(random_user_id(), addr.ip().to_string(), addr.port());
        opts.set_keep_alive(Duration::from_secs(30));
        start(opts)
    };
    nobody.connack().await.expect("anonymous connection");
    assert!(nobody.subscribe("i/#").await.is_some());
    cx.connack().await.expect("anonymous listener accepts X");
    assert!(cx.subscribe(&inbox(&x)).await.is_some());
    assert!(cx.subscribe(&inbox(&y)).await.is_some());

    let mut sender = plain(addr, &random_user_id(), true);
    sender.connack().await.expect("sender");
    assert!(sender.publish(&inbox(&y), b"for y".to_vec(), false).await);
    assert!(sender.publish(&inbox(&x), b"for x".to_vec(), false).await);

    // The positive control arrives; the message for Y never does.
    let got = cx.next_message(WAIT).await.expect("own inbox delivered");
    assert_eq!(got, (inbox(&x), b"for x".to_vec()));
    assert_eq!(
        cx.next_message(QUIET).await,
        None,
        "X received a message for Y"
    );
    assert_eq!(
        nobody.next_message(QUIET).await,
        None,
        "a client without a username read an inbox"
    );

    // Y itself receives it when subscribed before the publish (the ACL reads `%u` = Y).
    let mut cy = plain(addr, &y, true);
    cy.connack().await.expect("Y");
    assert!(cy.subscribe(&inbox(&y)).await.is_some());
    assert!(
        sender
            .publish(&inbox(&y), b"for y again".to_vec(), false)
            .await
    );
    assert_eq!(
        cy.next_message(WAIT).await,
        Some((inbox(&y), b"for y again".to_vec()))
    );
    // A write outside i/+ is PUBACKed and dropped (ACL `pattern write i/+`).
    assert!(cy.subscribe("x/#").await.is_some());
    assert!(sender.publish("x/y", b"not an inbox".to_vec(), false).await);
    assert_eq!(cy.next_message(QUIET).await, None, "write outside i/+");
}

/// Bob's persistent session subscribes, goes offline; Alice publishes; Bob comes back.
async fn queue_for_offline_bob(front: &Front, pki: &Pki, alice: &Identity, bob: &Identity) {
    let (mut b, _) = connect(front, pki, bob, false).await;
    assert_eq!(
        b.subscribe(&inbox(&bob.user_id))
            .await
            .expect("SUBACK")
            .len(),
        1
    );
    b.disconnect().await;
    let (mut a, _) = connect(front, pki, alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), b"while offline".to_vec(), false)
            .await
    );
    a.disconnect().await;
}

#[tokio::test]
async fn internal_mosquitto_offline_delivery_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let Some(mut mosq) = internal(&dir).await else {
        return;
    };
    let pki = Pki::load_or_create(&dir.path().join("pki")).expect("pki");
    let front = front(&pki, &mosq).await;
    let alice = identity(&pki);

    // Offline delivery through the front.
    let bob = identity(&pki);
    queue_for_offline_bob(&front, &pki, &alice, &bob).await;
    let (mut b, present) = connect(&front, &pki, &bob, false).await;
    assert!(present, "persistent session kept");
    assert_eq!(
        b.next_message(WAIT).await,
        Some((inbox(&bob.user_id), b"while offline".to_vec()))
    );
    b.disconnect().await;

    // A restart that keeps the queues: the session and the message survive.
    let bob = identity(&pki);
    queue_for_offline_bob(&front, &pki, &alice, &bob).await;
    mosq.restart(true).await.expect("restart keeping queues");
    assert!(mosq.persistence_file().exists());
    let (mut b, present) = connect(&front, &pki, &bob, false).await;
    assert!(present, "session lost across a restart with keep_queues");
    assert_eq!(
        b.next_message(WAIT).await,
        Some((inbox(&bob.user_id), b"while offline".to_vec()))
    );
    b.disconnect().await;

    // A restart that drops the queues: nothing is left.
    let bob = identity(&pki);
    queue_for_offline_bob(&front, &pki, &alice, &bob).await;
    mosq.restart(false).await.expect("restart dropping queues");
    let (mut b, present) = connect(&front, &pki, &bob, false).await;
    assert!(!present, "session kept although the queues were dropped");
    assert_eq!(b.next_message(QUIET).await, None, "message kept");
    b.disconnect().await;

    // Stopped: the front cannot reach it; Drop after a stop is fine.
    mosq.stop().await.expect("stop");
    assert!(!mosq.is_running());
    front.shutdown().await;
}
