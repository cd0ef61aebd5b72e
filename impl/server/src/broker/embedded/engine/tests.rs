//! The engine's rules, packet by packet.

use super::*;
use sotto_wire::mqtt::{encode_connect, encode_publish, encode_subscribe, puback};

const SECRET: &[u8] = b"internal secret";
const A: &str = "aaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbb";

fn limits() -> Limits {
    Limits {
        max_envelopes: 3,
        max_bytes: 1000,
        window: 2,
    }
}

fn connect(e: &mut Engine, conn: ConnId, user: &str, clean: bool) -> Vec<Out> {
    let mut out = Vec::new();
    e.packet(
        conn,
        &encode_connect(user, 30, clean, user, SECRET),
        &mut out,
    )
    .expect("CONNECT accepted");
    out
}

fn send(e: &mut Engine, conn: ConnId, packet: &[u8]) -> Result<Vec<Out>, EngineError> {
    let mut out = Vec::new();
    e.packet(conn, packet, &mut out).map(|()| out)
}

fn publish_to(user: &str, pkid: u16, payload: &[u8]) -> Vec<u8> {
    encode_publish(&format!("i/{user}"), Some(pkid), false, payload)
}

/// The (pkid, dup, payload) of each PUBLISH sent to `conn`.
fn deliveries(out: &[Out], conn: ConnId) -> Vec<(u16, bool, Vec<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            Out::Send(c, p) if *c == conn => match mqtt::parse(p) {
                Ok(Packet::Publish(h)) => Some((
                    h.pkid.unwrap_or(0),
                    h.dup,
                    mqtt::publish_payload(p).unwrap_or_default().to_vec(),
                )),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[test]
fn only_the_secret_connects() {
    let mut e = Engine::new(SECRET, limits());
    let mut out = Vec::new();
    assert_eq!(
        e.packet(1, &encode_connect(A, 30, false, A, b"wrong"), &mut out),
        Err(EngineError::NotAuthorized)
    );
    assert_eq!(
        out,
        [Out::Send(1, mqtt::connack(mqtt::CONNACK_NOT_AUTHORIZED))]
    );
    assert_eq!(
        send(&mut e, 2, &encode_connect(A, 30, false, B, SECRET)),
        Err(EngineError::NotAuthorized)
    );
    assert_eq!(
        send(&mut e, 3, &puback(1)),
        Err(EngineError::Unexpected(Some(PacketType::PubAck)))
    );
    assert_eq!(
        connect(&mut e, 4, A, false),
        [Out::Send(4, mqtt::connack_accepted(false))]
    );
    assert!(e.is_connected(4));
}

#[test]
fn an_envelope_is_held_until_the_recipients_puback_then_forgotten() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, false);
    // B never connected: the envelope is queued for B all the same.
    let out = send(&mut e, 1, &publish_to(B, 7, b"ciphertext-1")).expect("taken");
    assert_eq!(out, [Out::Send(1, puback(7))]);
    assert_eq!(
        e.holdings(),
        Holdings {
            envelopes: 1,
            bytes: 12,
            inboxes: 1
        }
    );
    assert_eq!(e.held_envelopes(), [b"ciphertext-1".to_vec()]);

    // B connects and subscribes: the envelope is delivered, still held until B's PUBACK.
    connect(&mut e, 2, B, false);
    let out = send(&mut e, 2, &encode_subscribe(1, &format!("i/{B}"))).expect("subscribed");
    assert_eq!(out[0], Out::Send(2, mqtt::suback(1, &[1])));
    let got = deliveries(&out, 2);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2, b"ciphertext-1");
    assert_eq!(e.holdings().envelopes, 1);

    send(&mut e, 2, &puback(got[0].0)).expect("ack");
    assert_eq!(e.holdings(), Holdings::default());
    assert!(e.held_envelopes().is_empty());
}

#[test]
fn a_full_inbox_refuses_and_never_overwrites() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, false);
    for i in 0..3u16 {
        send(&mut e, 1, &publish_to(B, i + 1, &[i as u8; 10])).expect("room");
    }
    assert_eq!(
        send(&mut e, 1, &publish_to(B, 9, b"fourth")),
        Err(EngineError::InboxFull)
    );
    // The byte limit too, on another inbox.
    send(&mut e, 1, &publish_to(A, 1, &[0; 600])).expect("room");
    assert_eq!(
        send(&mut e, 1, &publish_to(A, 2, &[0; 401])),
        Err(EngineError::InboxFull)
    );
    // The three first envelopes are all there, in order.
    connect(&mut e, 2, B, false);
    let mut out = send(&mut e, 2, &encode_subscribe(1, &format!("i/{B}"))).expect("sub");
    let mut got = Vec::new();
    while !deliveries(&out, 2).is_empty() {
        let d = deliveries(&out, 2);
        got.extend(d.iter().map(|(_, _, p)| p[0]));
        out = Vec::new();
        for (pkid, _, _) in d {
            out.extend(send(&mut e, 2, &puback(pkid)).expect("ack"));
        }
    }
    assert_eq!(got, [0, 1, 2]);
}

#[test]
fn the_window_bounds_deliveries_in_flight_and_a_resumed_session_gets_them_again() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, false);
    connect(&mut e, 2, B, false);
    send(&mut e, 2, &encode_subscribe(1, &format!("i/{B}"))).expect("sub");
    let mut delivered = Vec::new();
    for i in 0..3u16 {
        let out = send(&mut e, 1, &publish_to(B, i + 1, &[i as u8])).expect("room");
        delivered.extend(deliveries(&out, 2));
    }
    assert_eq!(delivered.len(), 2, "window of 2");
    // B's connection drops; on the next CONNECT the two in flight come again with DUP.
    e.closed(2);
    let out = connect(&mut e, 3, B, false);
    assert_eq!(out[0], Out::Send(3, mqtt::connack_accepted(true)));
    let again = deliveries(&out, 3);
    assert_eq!(
        again,
        delivered
            .iter()
            .map(|(p, _, d)| (*p, true, d.clone()))
            .collect::<Vec<_>>()
    );
    let out = send(&mut e, 3, &puback(again[0].0)).expect("ack");
    assert_eq!(deliveries(&out, 3)[0].2, [2]);
}

#[test]
fn a_second_connect_takes_the_session_over() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, B, false);
    send(&mut e, 1, &encode_subscribe(1, &format!("i/{B}"))).expect("sub");
    let out = connect(&mut e, 2, B, false);
    assert_eq!(out[0], Out::Close(1));
    assert!(!e.is_connected(1));
    // The old connection's close changes nothing for the new one.
    e.closed(1);
    assert!(e.is_connected(2));
}

#[test]
fn clean_sessions_keep_the_inbox_but_not_the_subscription() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, false);
    send(&mut e, 1, &publish_to(B, 1, b"x")).expect("room");
    let out = connect(&mut e, 2, B, true);
    assert_eq!(out, [Out::Send(2, mqtt::connack_accepted(false))]);
    e.closed(2);
    assert_eq!(e.holdings().envelopes, 1, "what others sent is kept");
    let out = connect(&mut e, 3, B, false);
    assert_eq!(out, [Out::Send(3, mqtt::connack_accepted(false))]);
}

#[test]
fn only_the_own_inbox_is_granted_and_publishes_follow_the_rules() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, false);
    let out = send(&mut e, 1, &encode_subscribe(4, &format!("i/{B}"))).expect("answered");
    assert_eq!(out, [Out::Send(1, mqtt::suback(4, &[0x80]))]);
    for bad in [
        encode_publish("x/y", Some(1), false, b"p"),
        encode_publish(&format!("i/{B}"), None, false, b"p"),
        encode_publish("i/short", Some(1), false, b"p"),
    ] {
        assert_eq!(send(&mut e, 1, &bad), Err(EngineError::Publish));
    }
    assert_eq!(e.holdings(), Holdings::default());
    assert!(matches!(
        send(&mut e, 1, &[0x10, 0x00]),
        Err(EngineError::Malformed(_))
    ));
    let out = send(&mut e, 1, &[0xe0, 0x00]).expect("DISCONNECT");
    assert_eq!(out, [Out::Close(1)]);
}

#[test]
fn emptied_inboxes_are_removed() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, true);
    send(&mut e, 1, &publish_to(B, 1, b"x")).expect("room");
    connect(&mut e, 2, B, false);
    let out = send(&mut e, 2, &encode_subscribe(1, &format!("i/{B}"))).expect("sub");
    let pkid = deliveries(&out, 2)[0].0;
    send(&mut e, 2, &puback(pkid)).expect("ack");
    e.closed(1);
    assert_eq!(
        e.inboxes.len(),
        1,
        "B's session stays, A's clean one is gone"
    );
    assert_eq!(e.inboxes[B].queue.capacity(), 0);
}

/// A session whose owner stays away for `after` sweeps goes with its queue; one whose owner
/// connects in between, or is online at the sweep, stays.
#[test]
fn idle_sessions_expire_after_their_sweeps() {
    let mut e = Engine::new(SECRET, limits());
    // B subscribes persistently and leaves; A queues one envelope for B.
    connect(&mut e, 1, B, false);
    send(&mut e, 1, &encode_subscribe(1, &format!("i/{B}"))).expect("subscribed");
    e.closed(1);
    connect(&mut e, 2, A, false);
    send(&mut e, 2, &publish_to(B, 1, b"for b")).expect("taken");
    assert_eq!(e.expire_idle(3), 0);
    assert_eq!(e.expire_idle(3), 0);
    // B comes back (and goes again) before the third sweep: its count starts over.
    connect(&mut e, 3, B, false);
    e.closed(3);
    assert_eq!(e.expire_idle(3), 0);
    assert_eq!(e.expire_idle(3), 0);
    assert_eq!(e.holdings().envelopes, 1, "still queued");
    // A stays online through every sweep; B's third idle sweep takes its session and queue.
    assert_eq!(e.expire_idle(3), 1);
    assert_eq!(e.holdings(), Holdings::default());
    assert!(e.held_envelopes().is_empty());
    assert_eq!(e.expire_idle(3), 0, "A is online");
    let out = connect(&mut e, 4, B, false);
    assert_eq!(
        out,
        [Out::Send(4, mqtt::connack_accepted(false))],
        "no session"
    );
}

/// A departed account: its queue and session go at once, its connection is closed, a late
/// PUBLISH to it is acknowledged but not held; another inbox is untouched.
#[test]
fn a_forgotten_user_loses_session_and_queue_at_once() {
    let mut e = Engine::new(SECRET, limits());
    connect(&mut e, 1, A, false);
    send(&mut e, 1, &encode_subscribe(1, &format!("i/{A}"))).expect("subscribe");
    connect(&mut e, 2, B, false);
    send(&mut e, 2, &publish_to(A, 1, b"one")).expect("queued");
    send(&mut e, 2, &publish_to(B, 2, b"own")).expect("queued");
    assert_eq!(e.holdings().envelopes, 2);
    let mut out = Vec::new();
    assert_eq!(e.forget(A, &mut out), 1);
    assert_eq!(out, vec![Out::Close(1)]);
    assert!(!e.is_connected(1));
    assert_eq!(e.holdings().envelopes, 1, "B's envelope stays");
    let late = send(&mut e, 2, &publish_to(A, 3, b"late")).expect("acknowledged");
    assert_eq!(late, vec![Out::Send(2, puback(3))]);
    assert_eq!(e.holdings().envelopes, 1, "nothing held for A");
    e.closed(1);
    assert_eq!(e.forget(B, &mut Vec::new()), 1);
    assert_eq!(e.holdings(), Holdings::default());
}
