//! Pairwise sessions through the device engine: setup, epochs, loss, reordering, duplicates, replay.

use proptest::prelude::*;
use sotto_core::Trust;
use sotto_core::error::{Error, SessionError};

use crate::common::*;

#[test]
fn offline_first_message_and_reply_x3dh_5_req4() {
    let mut r = rng(1);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    // Bob is offline: Alice's messages wait in his inbox (here: a Vec).
    let m1 = send(&mut alice, &mut r, T0, &bob, "hi bob");
    let m2 = send(&mut alice, &mut r, T0 + 1000, &bob, "are you there?");
    assert_eq!(
        m1.envelope[0], 0x12,
        "the first message carries the key share"
    );
    assert_eq!(
        m2.envelope[0], 0x11,
        "later messages of the epoch are data messages"
    );
    let got1 = bob.receive(T0 + 60_000, &m1.envelope).unwrap();
    assert_eq!(text_of(&got1), "hi bob");
    assert_eq!(got1.from, *alice.user_id());
    assert_eq!(
        got1.trust,
        Trust::Unverified,
        "Bob never scanned Alice's card"
    );
    assert_eq!(got1.id, m1.id);
    assert_eq!(got1.sent_at, T0);
    let got2 = bob.receive(T0 + 60_000, &m2.envelope).unwrap();
    assert_eq!(text_of(&got2), "are you there?");
    assert_eq!(got2.sent_at, T0 + 1000);
    // Bob replies: a new epoch (EPOCH-2) that confirms Alice's key share (EPOCH-4).
    let reply = send(&mut bob, &mut r, T0 + 61_000, &alice, "yes!");
    assert_eq!(reply.envelope[0], 0x13);
    let got = alice.receive(T0 + 62_000, &reply.envelope).unwrap();
    assert_eq!(text_of(&got), "yes!");
    assert_eq!(got.trust, Trust::Verified);
    // Alice answers in a new epoch; Bob keeps chatting.
    let a3 = send(&mut alice, &mut r, T0 + 63_000, &bob, "great");
    assert_eq!(a3.envelope[0], 0x13);
    assert_eq!(
        text_of(&bob.receive(T0 + 63_500, &a3.envelope).unwrap()),
        "great"
    );
    let a4 = send(&mut alice, &mut r, T0 + 64_000, &bob, "x");
    assert_eq!(a4.envelope[0], 0x11);
    assert_eq!(a4.envelope.len(), 1 + 8 + 1 + 1 + 1 + 1 + 16);
    assert_eq!(
        text_of(&bob.receive(T0 + 64_500, &a4.envelope).unwrap()),
        "x"
    );
    let s = alice.session_summary(bob.user_id()).unwrap();
    assert_eq!(s.latest_epoch, 2);
    assert_eq!(s.sending, Some((2, 2)));
}

#[test]
fn duplicates_and_replays_are_refused_rx_2_x3dh_8() {
    let mut r = rng(2);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "one");
    let m2 = send(&mut alice, &mut r, T0, &bob, "two");
    bob.receive(T0, &m1.envelope).unwrap();
    bob.receive(T0, &m2.envelope).unwrap();
    for env in [&m1.envelope, &m2.envelope] {
        assert_eq!(
            bob.receive(T0, env).unwrap_err(),
            Error::Session(SessionError::Duplicate)
        );
    }
    // After Bob's reply and Alice's new epoch, the old first message is still a duplicate.
    let b1 = send(&mut bob, &mut r, T0, &alice, "ok");
    alice.receive(T0, &b1.envelope).unwrap();
    assert_eq!(
        alice.receive(T0, &b1.envelope).unwrap_err(),
        Error::Session(SessionError::Duplicate)
    );
    assert_eq!(
        bob.receive(T0, &m1.envelope).unwrap_err(),
        Error::Session(SessionError::Duplicate)
    );
}

#[test]
fn replayed_first_message_without_its_session_is_rejected_x3dh_8() {
    let mut r = rng(3);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "one");
    bob.receive(T0, &m1.envelope).unwrap();
    // Bob accepts a new identity for Alice's user id in person: the old session is dropped, but the
    // replay cache remembers EK_A for as long as the signed prekey lives.
    let impostor = device(&mut r, 1);
    bob.add_contact_from_card(&impostor.card().unwrap());
    assert_eq!(
        bob.receive(T0, &m1.envelope).unwrap_err(),
        Error::Session(SessionError::ReplayedFirstMessage)
    );
}

#[test]
fn tampering_is_a_typed_error_and_changes_nothing_rx_3() {
    let mut r = rng(4);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "hello");
    for i in 0..m1.envelope.len() {
        let mut b = m1.envelope.clone();
        b[i] ^= 0x20;
        assert!(bob.receive(T0, &b).is_err(), "byte {i}");
    }
    assert_eq!(text_of(&bob.receive(T0, &m1.envelope).unwrap()), "hello");
    let b1 = send(&mut bob, &mut r, T0, &alice, "epoch start");
    for i in 0..b1.envelope.len() {
        let mut b = b1.envelope.clone();
        b[i] ^= 0x01;
        assert!(alice.receive(T0, &b).is_err(), "byte {i}");
    }
    assert_eq!(
        text_of(&alice.receive(T0, &b1.envelope).unwrap()),
        "epoch start"
    );
}

#[test]
fn message_before_its_epoch_start_is_retryable_rx_8() {
    let mut r = rng(5);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "first");
    let m2 = send(&mut alice, &mut r, T0, &bob, "second");
    let e = bob.receive(T0, &m2.envelope).unwrap_err();
    assert_eq!(e, Error::Session(SessionError::UnknownRoutingTag));
    assert!(e.is_retryable());
    bob.receive(T0, &m1.envelope).unwrap();
    assert_eq!(text_of(&bob.receive(T0, &m2.envelope).unwrap()), "second");
}

#[test]
fn too_far_ahead_is_refused_rx_2() {
    let mut r = rng(6);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let first = send(&mut alice, &mut r, T0, &bob, "0");
    bob.receive(T0, &first.envelope).unwrap();
    let mut last = None;
    for i in 0..1002 {
        last = Some(send(&mut alice, &mut r, T0, &bob, &i.to_string()));
    }
    assert_eq!(
        bob.receive(T0, &last.unwrap().envelope).unwrap_err(),
        Error::Session(SessionError::TooManySkipped)
    );
}

/// A conversation of `n` turns, each a burst of messages, delivered in an arbitrary order within each
/// burst, with duplicates: everything is delivered exactly once (RX-2, RX-6).
fn run_conversation(script: &[(bool, u8)], order_seed: u64, dup_every: usize) {
    let mut r = rng(100 + order_seed);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let mut shuffle = rng(order_seed);
    let mut now = T0;
    let mut count = 0usize;
    // The first burst must reach Bob with its first message, which the first turn guarantees below.
    for (turn, (from_alice, burst)) in script.iter().enumerate() {
        let burst = usize::from(*burst % 6) + 1;
        let (tx, rx) = if *from_alice || turn == 0 {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        let mut sent = Vec::new();
        for i in 0..burst {
            now += 1000;
            let body = format!("t{turn}m{i}");
            let o = tx.send(&mut r, now, rx.user_id(), &text(&body)).unwrap();
            sent.push((o.envelope, body));
        }
        // Deliver in a random order; anything that arrives before its epoch start is retried.
        let mut queue: Vec<(Vec<u8>, String)> = sent.clone();
        let mut delivered = std::collections::BTreeSet::new();
        let mut rounds = 0;
        while !queue.is_empty() {
            rounds += 1;
            assert!(rounds < 100, "delivery did not converge");
            let i = (rand_core::RngCore::next_u32(&mut shuffle) as usize) % queue.len();
            let (env, body) = queue.remove(i);
            match rx.receive(now, &env) {
                Ok(inc) => {
                    assert_eq!(text_of(&inc), body);
                    assert!(delivered.insert(body.clone()), "delivered twice: {body}");
                    count += 1;
                    if dup_every > 0 && count % dup_every == 0 {
                        assert_eq!(
                            rx.receive(now, &env).unwrap_err(),
                            Error::Session(SessionError::Duplicate)
                        );
                    }
                }
                Err(e) if e.is_retryable() => queue.push((env, body)),
                Err(e) => panic!("unexpected {e:?} for {body}"),
            }
        }
        assert_eq!(delivered.len(), burst);
    }
}

#[test]
fn conversation_in_order() {
    run_conversation(
        &[(true, 2), (false, 1), (true, 0), (false, 3), (false, 0)],
        1,
        0,
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn any_delivery_order_decrypts_once(
        script in proptest::collection::vec((any::<bool>(), any::<u8>()), 1..8),
        seed in any::<u64>(),
        dup in 0usize..4,
    ) {
        run_conversation(&script, seed, dup);
    }
}

#[derive(Debug, Clone)]
enum Net {
    AliceSends,
    BobSends,
    ToBob(usize),
    ToAlice(usize),
    Duplicate(bool),
}

fn arb_net() -> impl Strategy<Value = Net> {
    prop_oneof![
        2 => Just(Net::AliceSends),
        2 => Just(Net::BobSends),
        3 => any::<usize>().prop_map(Net::ToBob),
        3 => any::<usize>().prop_map(Net::ToAlice),
        1 => any::<bool>().prop_map(Net::Duplicate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
    /// Both sides send whenever they like; the network delivers in any order and duplicates. In the
    /// end, every message is delivered exactly once with its own text (RX-2, RX-8, EPOCH-5).
    #[test]
    fn interleaved_sends_any_order_exactly_once(actions in proptest::collection::vec(arb_net(), 1..60)) {
        let mut r = rng(7);
        let mut alice = device(&mut r, 1);
        let mut bob = device(&mut r, 2);
        scan(&mut alice, &bob);
        scan(&mut bob, &alice);
        // Alice speaks first so both sides have a session; Bob's sends before he received anything
        // start a second session (RX-10), which is fine too.
        let mut to_bob: Vec<(Vec<u8>, String)> = Vec::new();
        let mut to_alice: Vec<(Vec<u8>, String)> = Vec::new();
        let mut got_bob = std::collections::BTreeSet::new();
        let mut got_alice = std::collections::BTreeSet::new();
        let mut sent = 0usize;
        let mut now = T0;
        let deliver = |rx: &mut sotto_core::Device, q: &mut Vec<(Vec<u8>, String)>, i: usize, got: &mut std::collections::BTreeSet<String>, now: u64, keep: bool| {
            if q.is_empty() { return; }
            let i = i % q.len();
            let (env, body) = q.remove(i);
            match rx.receive(now, &env) {
                Ok(inc) => {
                    assert_eq!(text_of(&inc), body);
                    assert!(got.insert(body.clone()), "twice: {body}");
                    if keep { q.push((env, body)); }
                }
                Err(e) if e.is_retryable() => q.push((env, body)),
                Err(Error::Session(SessionError::Duplicate)) => assert!(got.contains(&body), "{body} refused as duplicate"),
                Err(e) => panic!("{e:?} for {body}"),
            }
        };
        for a in &actions {
            now += 500;
            match a {
                Net::AliceSends => { sent += 1; let b = format!("a{sent}"); to_bob.push((send(&mut alice, &mut r, now, &bob, &b).envelope, b)); }
                Net::BobSends => { sent += 1; let b = format!("b{sent}"); to_alice.push((send(&mut bob, &mut r, now, &alice, &b).envelope, b)); }
                Net::ToBob(i) => deliver(&mut bob, &mut to_bob, *i, &mut got_bob, now, false),
                Net::ToAlice(i) => deliver(&mut alice, &mut to_alice, *i, &mut got_alice, now, false),
                Net::Duplicate(b) => if *b { deliver(&mut bob, &mut to_bob, 0, &mut got_bob, now, true) } else { deliver(&mut alice, &mut to_alice, 0, &mut got_alice, now, true) },
            }
        }
        // Drain: everything still queued arrives, in order, duplicates dropped.
        for _ in 0..200 {
            if to_bob.is_empty() && to_alice.is_empty() { break; }
            deliver(&mut bob, &mut to_bob, 0, &mut got_bob, now, false);
            deliver(&mut alice, &mut to_alice, 0, &mut got_alice, now, false);
        }
        prop_assert!(to_bob.is_empty() && to_alice.is_empty(), "stuck: {} {}", to_bob.len(), to_alice.len());
        prop_assert_eq!(got_bob.len() + got_alice.len(), sent);
    }
}
