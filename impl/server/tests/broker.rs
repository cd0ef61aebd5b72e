//! The message service against real brokers, both behind the authorizing front (the one
//! enforcement point): the embedded broker, and a real Mosquitto (skipped with a printed notice
//! if the `mosquitto` binary is missing). Every rule (TLS-1, BROKER-1..4) holds identically on
//! both; only what a restart keeps differs. Clients are rumqttc over mutual TLS with certificates
//! issued by the service PKI, or raw bytes over the same TLS for what rumqttc cannot send. Every
//! wait is bounded; no assertion is about speed.

use std::net::SocketAddr;

use rumqttc::SubscribeReasonCode;
use sotto_server::ca::Pki;
use sotto_server::{Broker, BrokerStop, Service};
use sotto_testkit::QUIET;
use sotto_testkit::mqtt::{Identity, RawClient, WAIT, identity, inbox, options, start};
use tempfile::TempDir;

const LIM1: usize = 8192;

/// A running service with either broker behind the front.
struct Backend {
    kind: Broker,
    service: Service,
    _dir: TempDir,
}

impl Backend {
    /// `None` (after printing why) when Mosquitto is requested but not installed.
    async fn start(kind: Broker) -> Option<Backend> {
        sotto_testkit::log_to_test_output();
        if !kind.is_available() {
            println!("SKIPPED: `mosquitto` binary not found (apt-get install mosquitto)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let service = Service::builder(dir.path().join("server"))
            .broker(kind)
            .start()
            .await
            .expect("service");
        Some(Backend {
            kind,
            service,
            _dir: dir,
        })
    }

    fn pki(&self) -> &Pki {
        self.service.pki()
    }

    fn addr(&self) -> SocketAddr {
        self.service.broker_addr()
    }

    /// Restarts the broker process (embedded: a fresh broker; Mosquitto: SIGTERM and respawn).
    async fn restart(&mut self) {
        self.service
            .restart_broker(BrokerStop::Graceful)
            .await
            .expect("restart");
    }

    fn identity(&self) -> Identity {
        identity(self.pki())
    }

    /// Connects `id` (client id = its user id) and waits for the CONNACK.
    async fn connect(&self, id: &Identity, clean_session: bool) -> (RawClient, bool) {
        let mut client = start(options(id, self.addr(), self.pki().ca_pem(), clean_session));
        let session_present = client.connack().await.expect("CONNACK accepted");
        (client, session_present)
    }

    /// Connects `id` and subscribes to its own inbox (SUBACK success required).
    async fn subscriber(&self, id: &Identity, clean_session: bool) -> RawClient {
        let (mut client, _) = self.connect(id, clean_session).await;
        let codes = client.subscribe(&inbox(&id.user_id)).await.expect("SUBACK");
        assert!(
            matches!(codes[..], [SubscribeReasonCode::Success(_)]),
            "own inbox: {codes:?}"
        );
        client
    }
}

/// Runs one scenario against both profiles.
macro_rules! both {
    ($scenario:ident, $embedded:ident, $mosquitto:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $embedded() {
            let backend = Backend::start(Broker::Embedded)
                .await
                .expect("embedded backend");
            $scenario(backend).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $mosquitto() {
            if let Some(backend) = Backend::start(Broker::Mosquitto).await {
                $scenario(backend).await;
            }
        }
    };
}

/// BROKER-4: a message to an offline persistent session is delivered when it reconnects.
async fn offline_delivery(b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    b.subscriber(&bob, false).await.disconnect().await;

    let (mut a, _) = b.connect(&alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), b"while you were away".to_vec(), false)
            .await,
        "PUBACK"
    );

    let (mut bob_again, session_present) = b.connect(&bob, false).await;
    assert!(session_present, "persistent session kept");
    let (topic, payload) = bob_again
        .next_message(WAIT)
        .await
        .expect("queued message delivered");
    assert_eq!(topic, inbox(&bob.user_id));
    assert_eq!(payload, b"while you were away");
}
both!(
    offline_delivery,
    broker4_offline_delivery_embedded,
    broker4_offline_delivery_mosquitto
);

/// BROKER-2: subscribing to another inbox (or a wildcard) gets a SUBACK failure and nothing
/// (Mosquitto's own ACL file would answer success: the front answers first).
async fn foreign_subscription_refused(b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    let eve = b.identity();
    let mut bob_c = b.subscriber(&bob, false).await;
    let (mut eve_c, _) = b.connect(&eve, true).await;
    for filter in [inbox(&bob.user_id), "#".to_owned(), "i/+".to_owned()] {
        let codes = eve_c.subscribe(&filter).await.expect("SUBACK");
        assert_eq!(codes, vec![SubscribeReasonCode::Failure], "filter {filter}");
    }

    let (mut a, _) = b.connect(&alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), b"for bob".to_vec(), false)
            .await
    );
    assert_eq!(
        bob_c.next_message(WAIT).await.expect("bob gets it").1,
        b"for bob"
    );
    assert_eq!(
        eve_c.next_message(QUIET).await,
        None,
        "eve received bob's message"
    );
}
both!(
    foreign_subscription_refused,
    broker2_foreign_subscription_refused_embedded,
    broker2_foreign_subscription_refused_mosquitto
);

/// BROKER-1: a CONNECT with another user's client id is refused (CONNACK 0x02) and cannot take
/// over that user's session (Mosquitto alone would replace the client id with the CN).
async fn client_id_takeover_refused(b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    let eve = b.identity();
    let mut bob_c = b.subscriber(&bob, false).await;

    let mut opts = options(&eve, b.addr(), b.pki().ca_pem(), false);
    opts.set_client_id(bob.user_id.clone());
    let mut eve_c = start(opts);
    let err = eve_c
        .connack()
        .await
        .expect_err("foreign client id refused");
    assert!(
        err.contains("BadClientId") || err.contains("refused"),
        "{err}"
    );

    let (mut a, _) = b.connect(&alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), b"still mine".to_vec(), false)
            .await
    );
    let (_, payload) = bob_c
        .next_message(WAIT)
        .await
        .expect("victim's connection and session intact");
    assert_eq!(payload, b"still mine");
    assert_eq!(
        eve_c.next_message(QUIET).await,
        None,
        "attacker received the victim's message"
    );
}
both!(
    client_id_takeover_refused,
    broker1_client_id_takeover_refused_embedded,
    broker1_client_id_takeover_refused_mosquitto
);

/// TLS-1: a certificate from another CA, or none, fails the handshake: no CONNACK.
async fn foreign_ca_refused(b: Backend) {
    let other_dir = tempfile::tempdir().expect("tempdir");
    let other = Pki::load_or_create(other_dir.path()).expect("other pki");
    let mallory = identity(&other);
    // Mallory trusts the right server CA but presents a certificate of another CA.
    let mut c = start(options(&mallory, b.addr(), b.pki().ca_pem(), true));
    assert!(
        c.connack().await.is_err(),
        "certificate of another CA accepted"
    );

    // No client certificate at all.
    let mut opts = rumqttc::MqttOptions::new(mallory.user_id.clone(), "127.0.0.1", b.addr().port());
    let tls = sotto_client::tls::client_config(b.pki().ca_pem(), None).expect("config");
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(tls),
    ));
    let mut c = start(opts);
    assert!(
        c.connack().await.is_err(),
        "connection without a certificate accepted"
    );
}
both!(
    foreign_ca_refused,
    tls1_foreign_ca_refused_embedded,
    tls1_foreign_ca_refused_mosquitto
);

/// BROKER-3 / LIM-1: a payload of 8,192 bytes passes, 8,193 bytes closes the connection and is
/// not delivered.
async fn oversize_payload_refused(b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    let mut bob_c = b.subscriber(&bob, false).await;
    let (mut a, _) = b.connect(&alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), vec![1u8; LIM1], false)
            .await,
        "LIM-1 payload accepted"
    );
    assert_eq!(
        bob_c.next_message(WAIT).await.expect("delivered").1.len(),
        LIM1
    );

    let _ = a
        .client
        .publish(
            inbox(&bob.user_id),
            rumqttc::QoS::AtLeastOnce,
            false,
            vec![2u8; LIM1 + 1],
        )
        .await;
    assert!(
        a.closed_within(WAIT).await,
        "oversize publish did not close the connection"
    );
    assert_eq!(
        bob_c.next_message(QUIET).await,
        None,
        "oversize payload delivered"
    );
}
both!(
    oversize_payload_refused,
    broker3_oversize_payload_refused_embedded,
    broker3_oversize_payload_refused_mosquitto
);

/// BROKER-3: a retained publish closes the connection; nothing is retained or delivered.
async fn retain_refused(b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    let mut bob_c = b.subscriber(&bob, true).await;
    let (mut a, _) = b.connect(&alice, true).await;
    let _ = a
        .client
        .publish(
            inbox(&bob.user_id),
            rumqttc::QoS::AtLeastOnce,
            true,
            b"kept?".to_vec(),
        )
        .await;
    assert!(
        a.closed_within(WAIT).await,
        "retained publish did not close the connection"
    );
    assert_eq!(
        bob_c.next_message(QUIET).await,
        None,
        "retained publish delivered"
    );
    bob_c.disconnect().await;
    // A new subscription gets no retained message.
    let mut bob_again = b.subscriber(&bob, true).await;
    assert_eq!(
        bob_again.next_message(QUIET).await,
        None,
        "message was retained"
    );
}
both!(
    retain_refused,
    broker3_retain_refused_embedded,
    broker3_retain_refused_mosquitto
);

/// BROKER-3: a publish outside the inbox topics closes the connection and is not delivered
/// (Mosquitto alone would PUBACK and drop it).
async fn non_inbox_publish_refused(b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    let mut bob_c = b.subscriber(&bob, false).await;
    let (mut a, _) = b.connect(&alice, true).await;
    let _ = a
        .client
        .publish(
            "x/y",
            rumqttc::QoS::AtLeastOnce,
            false,
            b"side channel".to_vec(),
        )
        .await;
    assert!(
        a.closed_within(WAIT).await,
        "non-inbox publish did not close the connection"
    );
    let (a2, _) = b.connect(&alice, true).await;
    a = a2;
    assert!(
        a.publish(&inbox(&bob.user_id), b"control".to_vec(), false)
            .await
    );
    assert_eq!(
        bob_c.next_message(WAIT).await.expect("control delivered").1,
        b"control"
    );
    assert_eq!(bob_c.next_message(QUIET).await, None);
}
both!(
    non_inbox_publish_refused,
    broker3_non_inbox_publish_refused_embedded,
    broker3_non_inbox_publish_refused_mosquitto
);

/// A mutual-TLS connection for `id` that sends `bytes` as they are and returns what comes back
/// until the server closes or [`WAIT`] passes: for the CONNECTs rumqttc will not send.
async fn raw_exchange(b: &Backend, id: &Identity, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = sotto_client::tls::client_config(b.pki().ca_pem(), Some((&id.cert_pem, &id.key_pem)))
        .expect("client config");
    let tcp = tokio::net::TcpStream::connect(b.addr()).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    stream.write_all(bytes).await.expect("write");
    // Until a CONNACK's 4 bytes, the close, or WAIT.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 64];
        while got.len() < 4 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

/// One CONNECT packet: protocol name and level, flags, keep-alive, then `properties` (MQTT 5
/// only, already length-prefixed) and `payload` as given.
fn connect_packet(name: &str, level: u8, flags: u8, keep_alive: u16, rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&(name.len() as u16).to_be_bytes());
    body.extend_from_slice(name.as_bytes());
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    body.extend_from_slice(rest);
    sotto_wire::mqtt::frame(0x10, &body)
}

fn utf8(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// The CONNECT variants Mosquitto alone accepts are refused at the front: MQTT 5 (with a topic
/// alias maximum), MQTT 3.1, a will addressed to another user's inbox, keep-alive 0. Each gets
/// no accepting CONNACK and a closed connection; the will is never delivered; the same CONNECT
/// as MQTT 3.1.1 with keep-alive 30 and no will is accepted (the control).
async fn connect_variants_refused(b: Backend) {
    let bob = b.identity();
    let mut bob_c = b.subscriber(&bob, false).await;
    let eve = b.identity();
    let clean = 0x02;
    let accepted = [0x20, 0x02, 0x00, 0x00];
    // MQTT 5: properties (topic alias maximum 10), then the client id.
    let mut v5 = vec![3, 0x22, 0, 10];
    v5.extend(utf8(&eve.user_id));
    let mut will = utf8(&eve.user_id);
    will.extend(utf8(&inbox(&bob.user_id)));
    will.extend(utf8("will for bob"));
    let cases: [(&str, Vec<u8>); 4] = [
        ("MQTT 5", connect_packet("MQTT", 5, clean, 30, &v5)),
        (
            "MQTT 3.1",
            connect_packet("MQIsdp", 3, clean, 30, &utf8(&eve.user_id)),
        ),
        (
            "a will to another inbox",
            connect_packet("MQTT", 4, clean | 0x04 | 0x08, 30, &will),
        ),
        (
            "keep-alive 0",
            connect_packet("MQTT", 4, clean, 0, &utf8(&eve.user_id)),
        ),
    ];
    for (what, packet) in cases {
        let got = raw_exchange(&b, &eve, &packet).await;
        assert!(
            !got.starts_with(&accepted),
            "{what}: the CONNECT was accepted ({got:02x?})"
        );
    }
    let control = connect_packet("MQTT", 4, clean, 30, &utf8(&eve.user_id));
    assert!(
        raw_exchange(&b, &eve, &control)
            .await
            .starts_with(&accepted),
        "the control CONNECT (MQTT 3.1.1) was refused"
    );
    assert_eq!(
        bob_c.next_message(QUIET).await,
        None,
        "a will reached another user's inbox"
    );
}
both!(
    connect_variants_refused,
    broker1_connect_variants_refused_embedded,
    broker1_connect_variants_refused_mosquitto
);

/// The documented difference: a restart of the embedded broker loses queued messages (memory),
/// though the front gives every inbox its session back; Mosquitto's persistence keeps both.
async fn restart_and_queue(mut b: Backend) {
    let alice = b.identity();
    let bob = b.identity();
    b.subscriber(&bob, false).await.disconnect().await;
    let (mut a, _) = b.connect(&alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), b"before restart".to_vec(), false)
            .await
    );
    a.disconnect().await;

    b.restart().await;

    let (mut bob_again, session_present) = b.connect(&bob, false).await;
    let got = bob_again
        .next_message(if b.kind == Broker::Mosquitto {
            WAIT
        } else {
            QUIET
        })
        .await;
    match b.kind {
        Broker::Embedded => {
            // The queue is gone; the session is back: the front restored it (BROKER-4).
            assert!(session_present, "the front restores the inbox session");
            assert_eq!(
                got, None,
                "the embedded broker kept a message across a restart"
            );
            // So a message to Bob while he is offline after the restart is queued, not dropped.
            bob_again.disconnect().await;
            let (mut a, _) = b.connect(&alice, true).await;
            assert!(
                a.publish(&inbox(&bob.user_id), b"after restart".to_vec(), false)
                    .await
            );
            a.disconnect().await;
            let (mut bob_later, _) = b.connect(&bob, false).await;
            assert_eq!(
                bob_later
                    .next_message(WAIT)
                    .await
                    .expect("queued after the restart")
                    .1,
                b"after restart"
            );
        }
        Broker::Mosquitto => {
            assert!(session_present, "mosquitto lost the session");
            assert_eq!(got.expect("queued message survives").1, b"before restart");
        }
        Broker::Nats => unreachable!("this test runs the brokers a service restarts"),
    }
}
both!(
    restart_and_queue,
    broker4_restart_loses_queue_embedded,
    broker4_restart_keeps_queue_mosquitto
);

/// A Mosquitto child that dies (SIGKILL from outside, as a crash) is started again by
/// `revive_broker` (what `sotto serve` calls every second), with what it had autosaved: a message
/// queued for an offline user before the crash is still delivered, and the front relays again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_killed_is_revived_with_its_queues() {
    let Some(mut b) = Backend::start(Broker::Mosquitto).await else {
        return;
    };
    assert!(
        !b.service.revive_broker().await.expect("revive"),
        "a running Mosquitto is left alone"
    );
    let alice = b.identity();
    let bob = b.identity();
    b.subscriber(&bob, false).await.disconnect().await;
    let (mut a, _) = b.connect(&alice, true).await;
    assert!(
        a.publish(&inbox(&bob.user_id), b"before the crash".to_vec(), false)
            .await
    );
    a.disconnect().await;
    // Past the autosave interval: the message is in the persistence file.
    tokio::time::sleep(std::time::Duration::from_secs(
        2 * sotto_server::broker::mosquitto::AUTOSAVE_INTERVAL_S + 1,
    ))
    .await;
    let pid = b.service.mosquitto_pid().expect("a child");
    sotto_server::process::signal(pid, "KILL").expect("kill");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !b.service.revive_broker().await.expect("revive") {
        assert!(tokio::time::Instant::now() < deadline, "not revived");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_ne!(b.service.mosquitto_pid(), Some(pid), "a new process");
    let (mut bob_c, present) = b.connect(&bob, false).await;
    assert!(present, "the session survived the crash");
    assert_eq!(
        bob_c.next_message(WAIT).await.expect("queued message").1,
        b"before the crash"
    );
}

/// The embedded broker's internal port refuses a CONNECT without the front's secret (so local processes
/// cannot bypass the front).
#[tokio::test]
async fn embedded_internal_port_requires_the_front_secret() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b = Backend::start(Broker::Embedded).await.expect("embedded");
    let sotto_server::broker::upstream::InternalAddr::Tcp(internal) =
        b.service.internal_broker_addr()
    else {
        panic!("the embedded broker listens on a loopback port");
    };
    let id = sotto_testkit::mqtt::random_user_id();
    let connect = sotto_wire::mqtt::encode_connect(&id, 30, true, &id, b"guess");
    let mut tcp = tokio::net::TcpStream::connect(internal).await.expect("tcp");
    tcp.write_all(&connect).await.expect("write");
    let mut buf = [0u8; 4];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .expect("bounded");
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => assert_ne!(
            &buf[..n],
            &[0x20, 0x02, 0x00, 0x00][..n.min(4)],
            "CONNACK accepted"
        ),
    }
}

/// A stopped embedded broker answers CONNECT with "server unavailable" and a restart serves again.
#[tokio::test]
async fn embedded_stop_and_restart() {
    let mut b = Backend::start(Broker::Embedded).await.expect("embedded");
    let alice = b.identity();
    let (mut a, _) = b.connect(&alice, true).await;
    b.service.stop_broker().await.expect("stop");
    assert!(
        a.closed_within(WAIT).await,
        "relayed connection closed on stop"
    );
    let mut c = start(options(&alice, b.addr(), b.pki().ca_pem(), true));
    assert!(c.connack().await.is_err(), "CONNACK accepted while stopped");
    b.restart().await;
    b.connect(&alice, true).await;
}

/// The front's wiretap sees each packet in both directions (for the conformance wiretap, Req8).
#[tokio::test]
async fn embedded_wiretap_sees_both_directions() {
    use sotto_server::broker::front::TapDirection;
    let b = Backend::start(Broker::Embedded).await.expect("embedded");
    let mut tap = b.service.mqtt_wiretap();
    let alice = b.identity();
    let bob = b.identity();
    let mut bob_c = b.subscriber(&bob, false).await;
    let (mut a, _) = b.connect(&alice, true).await;
    let marker = b"tap-marker-0123456789".to_vec();
    assert!(a.publish(&inbox(&bob.user_id), marker.clone(), false).await);
    assert_eq!(bob_c.next_message(WAIT).await.expect("delivered").1, marker);

    let contains = |p: &[u8]| p.windows(marker.len()).any(|w| w == marker);
    let (mut sent, mut delivered) = (false, false);
    while let Ok(Some(record)) = tokio::time::timeout(QUIET, tap.recv()).await {
        if contains(&record.packet) {
            match record.direction {
                TapDirection::ClientToBroker { forwarded } => sent |= forwarded,
                TapDirection::BrokerToClient => delivered = true,
                TapDirection::FrontToClient => {}
            }
        }
    }
    assert!(sent && delivered, "sent {sent}, delivered {delivered}");
}

/// A client's DISCONNECT ends the relay and is not passed on to rumqttd (which would free the
/// connection's id twice and could close the next client given it; see the front's
/// `is_disconnect`). Rounds of one client disconnecting while the next connects, subscribes and
/// is delivered to: every next client keeps its connection, and the tap shows every DISCONNECT
/// kept from the broker. (The race itself showed only under load, about once in 30 runs of this
/// file with six test threads; the tap assertion pins the mechanism on every run.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_disconnect_does_not_close_the_next_connection() {
    use sotto_server::broker::front::TapDirection;
    const ROUNDS: usize = 30;
    let b = Backend::start(Broker::Embedded).await.expect("embedded");
    let mut tap = b.service.mqtt_wiretap();
    let sender = b.identity();
    let (mut s, _) = b.connect(&sender, true).await;
    for round in 0..ROUNDS {
        let leaving = b.identity();
        let (gone, _) = b.connect(&leaving, round % 2 == 0).await;
        let next = b.identity();
        let ((), (mut next_c, _)) = tokio::join!(gone.disconnect(), b.connect(&next, false));
        let codes = next_c.subscribe(&inbox(&next.user_id)).await;
        assert!(
            matches!(codes.as_deref(), Some([SubscribeReasonCode::Success(_)])),
            "round {round}: {codes:?}"
        );
        let payload = format!("round {round}").into_bytes();
        assert!(
            s.publish(&inbox(&next.user_id), payload.clone(), false)
                .await
        );
        let got = next_c.next_message(WAIT).await;
        assert_eq!(got.map(|m| m.1), Some(payload), "round {round}");
    }
    // Every DISCONNECT the tap saw was kept from the broker.
    let mut disconnects = 0;
    while let Ok(Some(record)) = tokio::time::timeout(QUIET, tap.recv()).await {
        if record.packet.first() == Some(&0xe0) {
            disconnects += 1;
            assert!(
                matches!(
                    record.direction,
                    TapDirection::ClientToBroker { forwarded: false }
                ),
                "{:?}",
                record.direction
            );
        }
    }
    assert_eq!(disconnects, ROUNDS);
}

/// BROKER-4: 10,000 messages queued for an offline persistent session all arrive.
async fn ten_thousand_queued(b: Backend) {
    const N: usize = 10_000;
    let bound = std::time::Duration::from_secs(120);
    let alice = b.identity();
    let bob = b.identity();
    b.subscriber(&bob, false).await.disconnect().await;

    let (mut a, _) = b.connect(&alice, true).await;
    let topic = inbox(&bob.user_id);
    let publisher = a.client.clone();
    let sending = tokio::spawn(async move {
        for i in 0..N {
            let payload = format!("{i:08}").into_bytes();
            publisher
                .publish(topic.as_str(), rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .expect("request queue");
        }
    });
    let mut acked = 0;
    let all_acked = a
        .wait_for(bound, |e| match e {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                acked += 1;
                (acked == N).then_some(true)
            }
            Err(_) => Some(false),
            _ => None,
        })
        .await;
    assert_eq!(all_acked, Some(true), "{acked} of {N} PUBACKs");
    sending.await.expect("publisher task");

    let (mut bob_again, session_present) = b.connect(&bob, false).await;
    assert!(session_present);
    let mut seen = std::collections::BTreeSet::new();
    let done = bob_again
        .wait_for(bound, |e| match e {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                seen.insert(p.payload.to_vec());
                (seen.len() == N).then_some(true)
            }
            Err(_) => Some(false),
            _ => None,
        })
        .await;
    assert_eq!(
        done,
        Some(true),
        "{} of {N} queued messages delivered",
        seen.len()
    );
}
both!(
    ten_thousand_queued,
    broker4_ten_thousand_queued_embedded,
    broker4_ten_thousand_queued_mosquitto
);
