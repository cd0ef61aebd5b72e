//! Pairwise sessions through the device engine: setup, epochs, loss, reordering, duplicates, replay.

use proptest::prelude::*;
use sotto_core::error::{Error, SessionError};
use sotto_core::{Content, Trust};

use crate::common::*;

#[test]
fn offline_first_message_and_reply_x3dh_5_req4() {
    let mut r = rng(1);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    // Bob is offline: Alice's messages wait in his inbox (here: a Vec). Each carries the first-message
    // header with the key share until Bob acknowledges one (EPOCH-3).
    let m1 = send(&mut alice, &mut r, T0, &bob, "hi bob");
    let m2 = send(&mut alice, &mut r, T0 + 1000, &bob, "are you there?");
    assert_eq!(
        m1.envelope[0], 0x12,
        "the first message carries the key share"
    );
    assert_eq!(
        m2.envelope[0], 0x12,
        "so does every message until Bob acknowledges one"
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
    // Bob's receipt starts his first epoch (he has no chain yet) and confirms Alice's key share.
    let receipt = bob
        .send(
            &mut r,
            T0 + 60_500,
            alice.user_id(),
            &Content::Receipt(vec![got1.id, got2.id]),
        )
        .unwrap();
    assert_eq!(receipt.envelope[0], 0x13);
    alice.receive(T0 + 61_000, &receipt.envelope).unwrap();
    // Now Alice knows Bob has epoch 0: her next message there would be a plain data message, but
    // Bob's epoch is the newest, so her next text turns the epoch (EPOCH-2).
    let a3 = send(&mut alice, &mut r, T0 + 63_000, &bob, "great");
    assert_eq!(a3.envelope[0], 0x13);
    let got3 = bob.receive(T0 + 63_500, &a3.envelope).unwrap();
    assert_eq!(text_of(&got3), "great");
    // Bob's receipt rides his current chain (it does not turn the epoch) and acknowledges epoch 2.
    let receipt = bob
        .send(
            &mut r,
            T0 + 63_600,
            alice.user_id(),
            &Content::Receipt(vec![got3.id]),
        )
        .unwrap();
    assert_eq!(receipt.envelope[0], 0x11);
    alice.receive(T0 + 63_700, &receipt.envelope).unwrap();
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
fn any_message_of_an_unacknowledged_epoch_sets_it_up_epoch_3() {
    let mut r = rng(5);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "first");
    let m2 = send(&mut alice, &mut r, T0, &bob, "second");
    // The first message is lost for now: the second carries the same header and opens on its own.
    assert_eq!(text_of(&bob.receive(T0, &m2.envelope).unwrap()), "second");
    assert_eq!(text_of(&bob.receive(T0, &m1.envelope).unwrap()), "first");
    // Bob's first receipt starts his epoch; it is lost. His second receipt carries the header again,
    // so Alice can open it (a receipt is never resent, so it must not need its predecessor).
    let lost = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![m1.id]))
        .unwrap();
    assert_eq!(lost.envelope[0], 0x13);
    let again = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![m2.id]))
        .unwrap();
    assert_eq!(again.envelope[0], 0x13);
    assert_eq!(
        alice.receive(T0, &again.envelope).unwrap().content,
        Content::Receipt(vec![m2.id])
    );
    assert_eq!(
        alice.receive(T0, &lost.envelope).unwrap().content,
        Content::Receipt(vec![m1.id])
    );
}

#[test]
fn a_data_message_without_its_epoch_is_retryable_rx_8() {
    // After an acknowledgement, data messages carry no header; one that reaches a device which lost
    // the epoch (here: a stale copy of Bob restored from before) finds no routing tag.
    let mut r = rng(6);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "first");
    let stale_bob = bob.clone();
    let got = bob.receive(T0, &m1.envelope).unwrap();
    let receipt = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![got.id]))
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    let reply = send(&mut alice, &mut r, T0, &bob, "new epoch");
    let got = bob.receive(T0, &reply.envelope).unwrap();
    let receipt = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![got.id]))
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0, &bob, "plain");
    assert_eq!(data.envelope[0], 0x11);
    let mut stale_bob = stale_bob;
    let e = stale_bob.receive(T0, &data.envelope).unwrap_err();
    assert_eq!(e, Error::Session(SessionError::UnknownRoutingTag));
    assert!(e.is_retryable());
    assert_eq!(text_of(&bob.receive(T0, &data.envelope).unwrap()), "plain");
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
    AliceReceipts,
    BobReceipts,
    ToBob(usize),
    ToAlice(usize),
    Duplicate(bool),
    Lose(bool),
}

fn arb_net() -> impl Strategy<Value = Net> {
    prop_oneof![
        2 => Just(Net::AliceSends),
        2 => Just(Net::BobSends),
        1 => Just(Net::AliceReceipts),
        1 => Just(Net::BobReceipts),
        3 => any::<usize>().prop_map(Net::ToBob),
        3 => any::<usize>().prop_map(Net::ToAlice),
        1 => any::<bool>().prop_map(Net::Duplicate),
        1 => any::<bool>().prop_map(Net::Lose),
    ]
}

/// What travels: an envelope and, for a text, its body (receipts may be lost; texts are resent).
type Queue = Vec<(Vec<u8>, Option<String>)>;

struct Side {
    device: sotto_core::Device,
    inbox: Queue,
    got: std::collections::BTreeSet<String>,
    unreceipted: Vec<sotto_core::MessageId>,
    sent: Vec<(Vec<u8>, String)>,
}

fn deliver(rx: &mut Side, i: usize, now: u64, keep: bool) {
    if rx.inbox.is_empty() {
        return;
    }
    let i = i % rx.inbox.len();
    let (env, body) = rx.inbox.remove(i);
    match rx.device.receive(now, &env) {
        Ok(inc) => {
            match (&inc.content, &body) {
                (Content::Text(t), Some(b)) => {
                    assert_eq!(t, b);
                    assert!(rx.got.insert(b.clone()), "twice: {b}");
                    rx.unreceipted.push(inc.id);
                }
                (Content::Receipt(_), None) => {}
                (c, b) => panic!("{c:?} delivered for {b:?}"),
            }
            if keep {
                rx.inbox.push((env, body));
            }
        }
        Err(e) if e.is_retryable() => rx.inbox.push((env, body)),
        Err(Error::Session(SessionError::Duplicate)) => {
            if let Some(b) = &body {
                assert!(rx.got.contains(b), "{b} refused as duplicate");
            }
        }
        Err(e) => panic!("{e:?} for {body:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]
    /// Both sides send texts and receipts whenever they like; the network delivers in any order,
    /// duplicates, and loses messages (a lost text is resent as the same envelope, RX-6; a lost receipt
    /// is gone). In the end every text is delivered exactly once with its own body (RX-2, RX-8,
    /// EPOCH-3, EPOCH-5).
    #[test]
    fn interleaved_sends_any_order_exactly_once(actions in proptest::collection::vec(arb_net(), 1..80)) {
        let mut r = rng(7);
        let mut a = Side { device: device(&mut r, 1), inbox: Vec::new(), got: Default::default(), unreceipted: Vec::new(), sent: Vec::new() };
        let mut b = Side { device: device(&mut r, 2), inbox: Vec::new(), got: Default::default(), unreceipted: Vec::new(), sent: Vec::new() };
        scan(&mut a.device, &b.device);
        scan(&mut b.device, &a.device);
        let mut count = 0usize;
        let mut now = T0;
        for act in &actions {
            now += 500;
            match act {
                Net::AliceSends | Net::BobSends => {
                    count += 1;
                    let (tx, rx) = if matches!(act, Net::AliceSends) { (&mut a, &mut b) } else { (&mut b, &mut a) };
                    let body = format!("m{count}");
                    let env = tx.device.send(&mut r, now, rx.device.user_id(), &text(&body)).unwrap().envelope;
                    tx.sent.push((env.clone(), body.clone()));
                    rx.inbox.push((env, Some(body)));
                }
                Net::AliceReceipts | Net::BobReceipts => {
                    let (tx, rx) = if matches!(act, Net::AliceReceipts) { (&mut a, &mut b) } else { (&mut b, &mut a) };
                    if !tx.unreceipted.is_empty() {
                        let ids = std::mem::take(&mut tx.unreceipted);
                        let env = tx.device.send(&mut r, now, rx.device.user_id(), &Content::Receipt(ids)).unwrap().envelope;
                        rx.inbox.push((env, None));
                    }
                }
                Net::ToBob(i) => deliver(&mut b, *i, now, false),
                Net::ToAlice(i) => deliver(&mut a, *i, now, false),
                Net::Duplicate(to_bob) => if *to_bob { deliver(&mut b, 0, now, true) } else { deliver(&mut a, 0, now, true) },
                Net::Lose(to_bob) => { let q = if *to_bob { &mut b.inbox } else { &mut a.inbox }; if !q.is_empty() { q.remove(0); } }
            }
        }
        // Outboxes resend every text not yet delivered (the same envelope); then everything drains.
        let (a_sent, b_sent) = (a.sent.clone(), b.sent.clone());
        for (side_sent, rx) in [(a_sent, &mut b), (b_sent, &mut a)] {
            for (env, body) in side_sent {
                if !rx.got.contains(&body) {
                    rx.inbox.push((env, Some(body)));
                }
            }
        }
        for _ in 0..400 {
            if a.inbox.is_empty() && b.inbox.is_empty() { break; }
            deliver(&mut b, 0, now, false);
            deliver(&mut a, 0, now, false);
        }
        prop_assert!(a.inbox.is_empty() && b.inbox.is_empty(), "stuck: {} {}", a.inbox.len(), b.inbox.len());
        prop_assert_eq!(a.got.len() + b.got.len(), count);
    }
}

/// Found by `interleaved_sends_any_order_exactly_once`: a lost first-epoch message, resent after the
/// conversation turned the epoch three times, must still open: the epoch start that closes the peer's
/// epoch says how many messages it had (`pn`), and their keys are kept (EPOCH-5).
#[test]
fn late_message_of_a_closed_epoch_opens_epoch_5() {
    use Net::*;
    let actions = [
        AliceSends,
        ToBob(0),
        AliceSends,
        Lose(true),
        BobSends,
        ToAlice(0),
        AliceSends,
        Duplicate(true),
        ToBob(0),
        BobSends,
        ToAlice(0),
        AliceSends,
        ToBob(0),
        BobSends,
        ToAlice(0),
        AliceSends,
    ];
    let mut r = rng(7);
    let mut a = Side {
        device: device(&mut r, 1),
        inbox: Vec::new(),
        got: Default::default(),
        unreceipted: Vec::new(),
        sent: Vec::new(),
    };
    let mut b = Side {
        device: device(&mut r, 2),
        inbox: Vec::new(),
        got: Default::default(),
        unreceipted: Vec::new(),
        sent: Vec::new(),
    };
    scan(&mut a.device, &b.device);
    scan(&mut b.device, &a.device);
    let mut count = 0;
    for act in &actions {
        match act {
            AliceSends | BobSends => {
                count += 1;
                let (tx, rx) = if matches!(act, AliceSends) {
                    (&mut a, &mut b)
                } else {
                    (&mut b, &mut a)
                };
                let body = format!("m{count}");
                let env = tx
                    .device
                    .send(&mut r, T0, rx.device.user_id(), &text(&body))
                    .unwrap()
                    .envelope;
                tx.sent.push((env.clone(), body.clone()));
                rx.inbox.push((env, Some(body)));
            }
            ToBob(i) => deliver(&mut b, *i, T0, false),
            ToAlice(i) => deliver(&mut a, *i, T0, false),
            Duplicate(to_bob) => deliver(if *to_bob { &mut b } else { &mut a }, 0, T0, true),
            Lose(_) => {
                b.inbox.remove(0);
            }
            _ => {}
        }
    }
    // Alice's newest message (a fourth epoch) arrives before her resent second one (epoch 0).
    let m2 = a.sent[1].clone();
    assert_eq!(m2.1, "m2");
    b.inbox.push((m2.0.clone(), Some(m2.1)));
    while !b.inbox.is_empty() {
        deliver(&mut b, 0, T0, false);
    }
    assert!(b.got.contains("m2") && b.got.contains("m8"));
    // A resend of a message of the closed epoch that was received is a duplicate, not an error.
    assert_eq!(
        b.device.receive(T0, &a.sent[0].0).unwrap_err(),
        Error::Session(SessionError::Duplicate)
    );
    assert_eq!(
        b.device.receive(T0, &m2.0).unwrap_err(),
        Error::Session(SessionError::Duplicate)
    );
}

#[test]
fn envelopes_for_someone_else_are_typed_errors_and_change_nothing_rx_3() {
    let mut r = rng(40);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let mut carol = device(&mut r, 3);
    scan(&mut alice, &bob);
    scan(&mut carol, &alice);
    // Alice's first message to Bob, then (after Bob answers) a data message of the session.
    let first = send(&mut alice, &mut r, T0, &bob, "for bob only");
    assert_eq!(
        text_of(&bob.receive(T0, &first.envelope).unwrap()),
        "for bob only"
    );
    let reply = send(&mut bob, &mut r, T0, &alice, "hi alice");
    alice.receive(T0, &reply.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0, &bob, "still for bob");
    // Carol, who knows Alice, is handed both: neither opens, each is a typed error of the
    // session layer, and her state is unchanged (its Debug form shows every table and counter).
    let before = format!("{carol:?}");
    let codes: Vec<&str> = [&first.envelope, &data.envelope]
        .iter()
        .map(|env| carol.receive(T0, env).expect_err("not Carol's").code())
        .collect();
    assert_eq!(codes, ["decrypt_failed", "unknown_routing_tag"]);
    assert_eq!(format!("{carol:?}"), before);
    assert_eq!(
        text_of(&bob.receive(T0, &data.envelope).unwrap()),
        "still for bob"
    );
}

/// EPOCH-5, LIM-6, LIM-11: a lost epoch start still opens after its epoch was retired (more than
/// LIM-6 epochs later: its skipped key is kept), until the session forgets the retired epoch's tags
/// (LIM-11); then it is an unknown routing tag (RX-8), never a crash or a wrong opening. A copy
/// with another ratchet key is `expired_epoch` while the answered epoch's tag is remembered.
#[test]
fn a_lost_epoch_start_opens_late_until_its_tags_are_forgotten_epoch_5_lim_11() {
    for (turns, opens) in [(8, true), (63, true), (64, false), (70, false)] {
        let mut r = rng(41);
        let mut alice = device(&mut r, 1);
        let mut bob = device(&mut r, 2);
        scan(&mut alice, &bob);
        scan(&mut bob, &alice);
        let first = send(&mut alice, &mut r, T0, &bob, "m0");
        bob.receive(T0, &first.envelope).unwrap();
        let reply = send(&mut bob, &mut r, T0, &alice, "r0");
        alice.receive(T0, &reply.envelope).unwrap();
        // Alice's epoch 2: its start is lost, the next message carries the header again.
        let lost = send(&mut alice, &mut r, T0, &bob, "lost start");
        let again = send(&mut alice, &mut r, T0, &bob, "second of epoch 2");
        assert_eq!(
            text_of(&bob.receive(T0, &again.envelope).unwrap()),
            "second of epoch 2"
        );
        for i in 0..turns {
            let b = send(&mut bob, &mut r, T0, &alice, &format!("b{i}"));
            alice.receive(T0, &b.envelope).unwrap();
            let a = send(&mut alice, &mut r, T0, &bob, &format!("a{i}"));
            bob.receive(T0, &a.envelope).unwrap();
        }
        // The same epoch start with another ratchet key `E` (a forgery; the header is checked
        // before anything is decrypted): it answers an own epoch Bob no longer keeps but still
        // remembers, so it is `expired_epoch` (RX-8), until LIM-11 forgets the tag.
        let mut other_e = lost.envelope.clone();
        other_e[1 + 8 + 3] ^= 0x01;
        let before = format!("{bob:?}");
        let forged = bob.receive(T0, &other_e).unwrap_err().code();
        assert_eq!(
            forged,
            if opens {
                "expired_epoch"
            } else {
                "unknown_routing_tag"
            }
        );
        assert_eq!(
            format!("{bob:?}"),
            before,
            "a refusal changes nothing (RX-3)"
        );
        let got = bob.receive(T0, &lost.envelope);
        if opens {
            assert_eq!(text_of(&got.unwrap()), "lost start");
        } else {
            assert_eq!(got.unwrap_err().code(), "unknown_routing_tag");
        }
    }
}

/// LIM-13, X3DH-8: a device keeps three sessions per peer; a fourth drops the oldest, whose first
/// message is then refused as a replay. Each session here is a copy of Alice's device (same keys)
/// starting afresh, as after a reinstall.
#[test]
fn three_sessions_per_peer_are_kept_and_a_dropped_ones_first_message_is_a_replay_lim_13() {
    let mut r = rng(42);
    let alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let mut firsts = Vec::new();
    for i in 0..4 {
        let spk = alice.identity().new_signed_prekey(&mut r, 1);
        let mut copy =
            sotto_core::Device::from_keys(*alice.user_id(), alice.identity().clone(), spk);
        scan(&mut copy, &bob);
        firsts.push(send(&mut copy, &mut r, T0, &bob, &format!("session {i}")).envelope);
    }
    for (i, env) in firsts.iter().take(3).enumerate() {
        assert_eq!(
            text_of(&bob.receive(T0, env).unwrap()),
            format!("session {i}")
        );
    }
    // At the bound, the first session is kept: its first message again is a duplicate.
    assert_eq!(bob.receive(T0, &firsts[0]).unwrap_err().code(), "duplicate");
    bob.receive(T0, &firsts[3]).unwrap();
    assert_eq!(
        bob.receive(T0, &firsts[0]).unwrap_err().code(),
        "replayed_first_message"
    );
    assert_eq!(bob.receive(T0, &firsts[1]).unwrap_err().code(), "duplicate");
}

/// LIM-13: when a fourth session drops the oldest, the routes of the sessions kept stay and only
/// the dropped one's go; the kept sessions' messages still open, the dropped one's first message
/// is a replay (X3DH-8).
#[test]
fn dropping_the_oldest_session_keeps_the_others_routes_lim_13() {
    let mut r = rng(43);
    let alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let mut copies = Vec::new();
    for i in 0..4 {
        let spk = alice.identity().new_signed_prekey(&mut r, 1);
        let mut copy =
            sotto_core::Device::from_keys(*alice.user_id(), alice.identity().clone(), spk);
        scan(&mut copy, &bob);
        let first = send(&mut copy, &mut r, T0, &bob, &format!("first {i}")).envelope;
        // A second message of the same session, held back until after the eviction.
        let later = send(&mut copy, &mut r, T0, &bob, &format!("later {i}")).envelope;
        copies.push((copy, first, later));
    }
    for (_, first, _) in &copies {
        bob.receive(T0, first).unwrap();
        bob.check_routing_index().unwrap();
    }
    assert_eq!(
        bob.receive(T0, &copies[0].2).unwrap_err().code(),
        "replayed_first_message"
    );
    for (i, (_, _, later)) in copies.iter().enumerate().skip(1) {
        assert_eq!(
            text_of(&bob.receive(T0, later).unwrap()),
            format!("later {i}")
        );
    }
    bob.check_routing_index().unwrap();
}

/// RX-9, CARD-4: accepting a changed identity (a new bundle for the contact) drops the old
/// identity's sessions with their routes: a late data message of the old session routes nothing.
#[test]
fn replacing_a_contact_drops_its_sessions_and_their_routes_rx_9() {
    let (mut r, mut alice, mut bob) = acquainted(44);
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    bob.receive(T0, &first.envelope).unwrap();
    let answer = send(&mut bob, &mut r, T0, &alice, "hi");
    alice.receive(T0, &answer.envelope).unwrap();
    // Alice has heard from Bob: her next message is routed by tag, not by the first message.
    let late = send(&mut alice, &mut r, T0, &bob, "late");
    assert_ne!(late.envelope[0], 0x12);
    let mut reinstalled = device(&mut r, 1);
    bob.replace_contact(&reinstalled.card().unwrap().bundle());
    bob.check_routing_index().unwrap();
    assert_eq!(
        bob.receive(T0, &late.envelope).unwrap_err().code(),
        "unknown_routing_tag"
    );
    scan(&mut reinstalled, &bob);
    let again = send(&mut reinstalled, &mut r, T0, &bob, "new device");
    assert_eq!(
        text_of(&bob.receive(T0, &again.envelope).unwrap()),
        "new device"
    );
    bob.check_routing_index().unwrap();
}

/// RX-10: only a session this side initiated and has not heard on yet competes with a peer's new
/// first message. One it has heard on (the peer answered it) gives way: after the peer
/// reinstalled (same identity, fresh state) and wrote first, the answer goes on the new session,
/// whatever the order of the identity keys.
#[test]
fn a_session_heard_from_gives_way_to_the_peers_new_first_message_rx_10() {
    let mut r = rng(45);
    let a = device(&mut r, 1);
    let b = device(&mut r, 2);
    // The tie-break would keep the session of the smaller IKs: give that side the old session.
    let (mut x, mut y) = if a.identity().public().iks() < b.identity().public().iks() {
        (a, b)
    } else {
        (b, a)
    };
    scan(&mut x, &y);
    scan(&mut y, &x);
    let first = send(&mut x, &mut r, T0, &y, "first");
    y.receive(T0, &first.envelope).unwrap();
    let answer = send(&mut y, &mut r, T0, &x, "answer");
    x.receive(T0, &answer.envelope).unwrap();
    // y reinstalls with the same identity and writes first.
    let spk = y.identity().new_signed_prekey(&mut r, 2);
    let mut y2 = sotto_core::Device::from_keys(*y.user_id(), y.identity().clone(), spk);
    scan(&mut y2, &x);
    let hello = send(&mut y2, &mut r, T0, &x, "after reinstall");
    assert_eq!(
        text_of(&x.receive(T0, &hello.envelope).unwrap()),
        "after reinstall"
    );
    let reply = send(&mut x, &mut r, T0, &y2, "welcome back");
    assert_eq!(
        text_of(&y2.receive(T0, &reply.envelope).unwrap()),
        "welcome back"
    );
}

/// LIM-1, IN-4: the sender's bound is the exact envelope length. With padding to B bytes, a data
/// message is 10 header bytes, B, and the 16-byte tag: B = 8166 gives an envelope of exactly 8192
/// bytes, which goes; B = 8167 would give 8193 and is `too_large`, which changes nothing.
#[test]
fn a_data_message_of_exactly_lim_1_bytes_goes_one_more_is_too_large_lim_1() {
    let (mut r, mut alice, mut bob) = acquainted(46);
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    bob.receive(T0, &first.envelope).unwrap();
    let answer = send(&mut bob, &mut r, T0, &alice, "hi");
    alice.receive(T0, &answer.envelope).unwrap();
    // Alice's answer starts her epoch; Bob's receipt acknowledges it (EPOCH-3).
    let start = send(&mut alice, &mut r, T0, &bob, "epoch");
    let got = bob.receive(T0, &start.envelope).unwrap();
    let receipt = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![got.id]))
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    let next = send(&mut alice, &mut r, T0, &bob, "data");
    assert_eq!(next.envelope[0], 0x11);
    bob.receive(T0, &next.envelope).unwrap();
    alice.set_padding(8167);
    assert_eq!(
        alice
            .send(&mut r, T0, bob.user_id(), &text("too big"))
            .unwrap_err()
            .code(),
        "too_large"
    );
    alice.set_padding(8166);
    let full = send(&mut alice, &mut r, T0, &bob, "just fits");
    assert_eq!(full.envelope.len(), sotto_core::limits::MAX_ENVELOPE);
    // The refused send consumed no counter: nothing is skipped.
    assert_eq!(
        text_of(&bob.receive(T0, &full.envelope).unwrap()),
        "just fits"
    );
    assert!(
        bob.held_secrets()
            .iter()
            .all(|s| !s.label.contains("skipped message key"))
    );
    alice.set_padding(0);
    let small = send(&mut alice, &mut r, T0, &bob, "small");
    assert!(small.envelope.len() < 100);
}

/// EPOCH-3: a receipt naming a message of an unacknowledged epoch acknowledges it. The sender
/// remembers the ids of the epoch's first 256 messages for that; a receipt naming only a later
/// one does not acknowledge the epoch (the next message still starts it), and once acknowledged
/// no more ids are kept (the state does not grow with the messages sent).
#[test]
fn an_epoch_is_acknowledged_by_a_receipt_for_one_of_its_first_256_messages_epoch_3() {
    let (mut r, mut alice, mut bob) = acquainted(47);
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    bob.receive(T0, &first.envelope).unwrap();
    let answer = send(&mut bob, &mut r, T0, &alice, "hi");
    alice.receive(T0, &answer.envelope).unwrap();
    // Alice's epoch 1: 257 messages, none acknowledged yet.
    let mut sent = Vec::new();
    for i in 0..257 {
        sent.push(send(&mut alice, &mut r, T0, &bob, &format!("m{i}")));
    }
    assert!(sent.iter().all(|o| o.envelope[0] == 0x13));
    let last = bob.receive(T0, &sent[256].envelope).unwrap();
    let receipt = |bob: &mut sotto_core::Device, r: &mut _, ids| {
        bob.send(r, T0, &sotto_core::UserId([1; 10]), &Content::Receipt(ids))
            .unwrap()
    };
    let late = receipt(&mut bob, &mut r, vec![last.id]);
    alice.receive(T0, &late.envelope).unwrap();
    assert_eq!(
        send(&mut alice, &mut r, T0, &bob, "still starting").envelope[0],
        0x13
    );
    let got = bob.receive(T0, &sent[255].envelope).unwrap();
    let acked = receipt(&mut bob, &mut r, vec![got.id]);
    alice.receive(T0, &acked.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0, &bob, "data");
    assert_eq!(data.envelope[0], 0x11);
    let size = alice.export().len();
    for i in 0..20 {
        send(&mut alice, &mut r, T0, &bob, &format!("more {i}"));
    }
    assert_eq!(alice.export().len(), size);
}

/// RX-8, RX-2: in an epoch the receiver has dropped (LIM-6) but whose tag it remembers, a
/// message without a kept key is a `duplicate` below the epoch's end (it was received already)
/// and `expired_epoch` from its end on (a counter the sender never used in that epoch: here a
/// stale copy of the sender's state writes it).
#[test]
fn a_dropped_epochs_messages_are_duplicate_below_its_end_and_expired_from_it_rx_8() {
    let (mut r, mut alice, mut bob) = acquainted(48);
    let first = send(&mut alice, &mut r, T0, &bob, "m0");
    bob.receive(T0, &first.envelope).unwrap();
    let reply = send(&mut bob, &mut r, T0, &alice, "r0");
    alice.receive(T0, &reply.envelope).unwrap();
    // Alice's epoch 2, acknowledged by a receipt: its messages are data messages.
    let start = send(&mut alice, &mut r, T0, &bob, "start");
    let got = bob.receive(T0, &start.envelope).unwrap();
    let receipt = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![got.id]))
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0, &bob, "data");
    assert_eq!(data.envelope[0], 0x11);
    bob.receive(T0, &data.envelope).unwrap();
    // A copy of Alice's state now: its next message is epoch 2's counter 2, its end.
    let mut stale = alice.clone();
    for i in 0..4 {
        let b = send(&mut bob, &mut r, T0, &alice, &format!("b{i}"));
        alice.receive(T0, &b.envelope).unwrap();
        let a = send(&mut alice, &mut r, T0, &bob, &format!("a{i}"));
        bob.receive(T0, &a.envelope).unwrap();
    }
    assert_eq!(
        bob.receive(T0, &data.envelope).unwrap_err().code(),
        "duplicate"
    );
    let past_end = send(&mut stale, &mut r, T0, &bob, "past the end");
    assert_eq!(past_end.envelope[0], 0x11);
    assert_eq!(
        bob.receive(T0, &past_end.envelope).unwrap_err().code(),
        "expired_epoch"
    );
}

/// What a leaked copy of Bob's state lets an attacker send Bob (`forge_data_as`, test-utils, the
/// conformance replay's `Inject DataAs`): a data message as Alice on her newest epoch, which Bob
/// opens as hers, with the time it claims.
#[test]
fn a_leaked_state_forges_data_as_the_peer() {
    let (mut r, mut alice, mut bob) = acquainted(49);
    let first = send(&mut alice, &mut r, T0, &bob, "m0");
    bob.receive(T0, &first.envelope).unwrap();
    let overview = bob.sessions_overview();
    assert_eq!(overview.len(), 1);
    assert_eq!(overview[0].0, *alice.user_id());
    assert!(!overview[0].1.initiator);
    let forged = bob
        .forge_data_as(alice.user_id(), T0 + 5_000, &text("forged"))
        .unwrap();
    let got = bob.receive(T0 + 6_000, &forged).unwrap();
    assert_eq!(text_of(&got), "forged");
    assert_eq!(got.from, *alice.user_id());
    assert_eq!(got.sent_at, T0 + 5_000);
}

/// STORE-1, EPOCH-3: a device restored while its epoch start is unacknowledged restores that
/// header too: its next message starts the epoch again and opens at the peer.
#[test]
fn an_unacknowledged_epoch_start_survives_a_restore() {
    let (mut r, mut alice, mut bob) = acquainted(50);
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    bob.receive(T0, &first.envelope).unwrap();
    let answer = send(&mut bob, &mut r, T0, &alice, "answer");
    assert_eq!(answer.envelope[0], 0x13);
    let state = bob.export();
    let mut bob = sotto_core::Device::import(&state).unwrap();
    assert_eq!(bob.export().as_slice(), state.as_slice());
    let again = send(&mut bob, &mut r, T0, &alice, "again");
    assert_eq!(again.envelope[0], 0x13);
    assert_eq!(
        text_of(&alice.receive(T0, &again.envelope).unwrap()),
        "again"
    );
    assert_eq!(
        text_of(&alice.receive(T0, &answer.envelope).unwrap()),
        "answer"
    );
}

/// RX-8 at the session: an epoch start whose `prev_tag` names no own epoch of this session, kept
/// or remembered, is `unknown_routing_tag` (retryable), not `expired_epoch`. (A device routes by
/// tag first, so only a caller of `Session::open` meets this branch.)
#[test]
fn an_epoch_start_answering_no_own_epoch_is_unknown_rx_8() {
    use sotto_core::envelope::Envelope;
    use sotto_core::session::Session;
    let mut r = rng(51);
    let alice = device(&mut r, 1);
    let bob_id = sotto_core::Identity::generate(&mut r);
    let spk = bob_id.new_signed_prekey(&mut r, 1);
    let bob_card =
        sotto_core::ContactCard::new(sotto_core::UserId([2; 10]), *bob_id.public(), *spk.public());
    let mut a = Session::initiate(
        &mut r,
        T0,
        alice.user_id(),
        alice.identity(),
        &bob_card.bundle(),
    )
    .unwrap();
    let first = a.seal(&mut r, T0, &text("hello"), 0).unwrap();
    let (mut b, _) = Session::accept_first(
        T0,
        &bob_id,
        &spk,
        None,
        &Envelope::decode(&first.bytes).unwrap(),
    )
    .unwrap();
    let answer = b.seal(&mut r, T0, &text("answer"), 0).unwrap();
    a.open(T0, &Envelope::decode(&answer.bytes).unwrap())
        .unwrap();
    let start = a.seal(&mut r, T0, &text("epoch 2"), 0).unwrap();
    assert_eq!(start.bytes[0], 0x13);
    let mut forged = start.bytes.clone();
    for byte in &mut forged[1..9] {
        *byte ^= 0xff;
    }
    assert_eq!(
        b.open(T0, &Envelope::decode(&forged).unwrap())
            .unwrap_err()
            .code(),
        "unknown_routing_tag"
    );
    let opened = b
        .open(T0, &Envelope::decode(&start.bytes).unwrap())
        .unwrap();
    assert_eq!(opened.inner.content, text("epoch 2"));
}

/// RX-8, EPOCH-5: an epoch start answering an own epoch still kept, whose answering epoch the
/// receiver has already closed, is `expired_epoch` (here Bob's epoch 1 start with another `E`,
/// after epochs 2, 3 and 4), never a second epoch 1.
#[test]
fn a_new_start_of_a_closed_epoch_answering_a_kept_own_epoch_is_expired_rx_8() {
    let (mut r, mut alice, mut bob) = acquainted(52);
    let a0 = send(&mut alice, &mut r, T0, &bob, "a0");
    bob.receive(T0, &a0.envelope).unwrap();
    let b1 = send(&mut bob, &mut r, T0, &alice, "b1");
    assert_eq!(b1.envelope[0], 0x13);
    alice.receive(T0, &b1.envelope).unwrap();
    for i in 0..2 {
        let a = send(&mut alice, &mut r, T0, &bob, &format!("a{i}"));
        bob.receive(T0, &a.envelope).unwrap();
        let b = send(&mut bob, &mut r, T0, &alice, &format!("b{i}"));
        alice.receive(T0, &b.envelope).unwrap();
    }
    let mut other_e = b1.envelope.clone();
    other_e[1 + 8 + 3] ^= 0x01;
    assert_eq!(
        alice.receive(T0, &other_e).unwrap_err().code(),
        "expired_epoch"
    );
    assert_eq!(
        alice.receive(T0, &b1.envelope).unwrap_err().code(),
        "duplicate"
    );
}
