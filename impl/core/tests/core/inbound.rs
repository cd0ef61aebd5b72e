//! A burst of received envelopes (RX-4..RX-8, GRP-9, GRP-10), driven without any I/O: what the
//! core says to do with each envelope and what the burst owes, coalesced.

use sotto_core::limits::MAX_RECEIPT_IDS;
use sotto_core::{Content, Device, Inbound, MessageId, Verdict};

use crate::common::*;

fn receipt_ids(d: &mut Device, envelope: &[u8]) -> Vec<MessageId> {
    match d.receive(T0, envelope).unwrap().content {
        Content::Receipt(ids) => ids,
        other => panic!("not a receipt: {other:?}"),
    }
}

fn opened(v: &Verdict) -> &sotto_core::Incoming {
    match v {
        Verdict::Opened(i) => i,
        other => panic!("not opened: {other:?}"),
    }
}

/// Three messages from one sender in a burst owe one receipt naming all three (RX-5, LIM-10); a
/// copy of one of them is a duplicate that changes nothing and owes nothing more.
#[test]
fn a_burst_owes_one_receipt_per_sender_rx_5() {
    let (mut r, mut alice, mut bob) = acquainted(50);
    let m: Vec<_> = (0..3)
        .map(|i| send(&mut alice, &mut r, T0 + i, &bob, "x"))
        .collect();
    let mut burst = Inbound::new(T0 + 10);
    assert_eq!(burst.now(), T0 + 10);
    assert!(burst.owes_nothing());
    let v: Vec<Verdict> = [&m[0], &m[1], &m[2], &m[1]]
        .iter()
        .map(|o| bob.receive_into(&mut burst, &o.envelope))
        .collect();
    assert!(matches!(v[3], Verdict::Duplicate));
    assert!(!burst.owes_nothing());
    assert!(burst.new_keys(), "the first message made a session");
    assert!(opened(&v[0]).new_keys && !opened(&v[1]).new_keys);
    // The resend of m[1] the store remembers owes its receipt again: still one id.
    burst.receipt_again(m[1].id, *alice.user_id(), None);
    let reply = burst.finish(&mut bob, &mut r);
    assert!(reply.failed.is_empty());
    assert_eq!(reply.owed.len(), 1);
    assert_eq!(reply.owed[0].to, [*alice.user_id()]);
    assert_eq!(
        receipt_ids(&mut alice, &reply.owed[0].envelope),
        [m[0].id, m[1].id, m[2].id]
    );
}

/// More than LIM-10 messages owe as many receipts as LIM-10 requires, each full but the last.
#[test]
fn receipts_split_at_lim_10() {
    let (mut r, mut alice, mut bob) = acquainted(51);
    let n = MAX_RECEIPT_IDS + 1;
    let mut burst = Inbound::new(T0);
    let mut ids = Vec::new();
    for i in 0..n {
        let m = send(&mut alice, &mut r, T0 + i as u64, &bob, "x");
        ids.push(m.id);
        opened(&bob.receive_into(&mut burst, &m.envelope));
    }
    let reply = burst.finish(&mut bob, &mut r);
    assert_eq!(reply.owed.len(), 2);
    let first = receipt_ids(&mut alice, &reply.owed[0].envelope);
    let second = receipt_ids(&mut alice, &reply.owed[1].envelope);
    assert_eq!(first.len(), MAX_RECEIPT_IDS);
    assert_eq!([first, second].concat(), ids);
}

/// Receipts want no receipt; an envelope of no known session is parked (RX-8); garbage is refused
/// for good; none of them owes anything.
#[test]
fn receipts_owe_nothing_unknown_tags_park_garbage_is_refused_rx_8() {
    let (mut r, mut alice, mut bob) = acquainted(52);
    let m = send(&mut alice, &mut r, T0, &bob, "x");
    let got = bob.receive(T0, &m.envelope).unwrap();
    let receipt = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![got.id]))
        .unwrap();
    let mut burst = Inbound::new(T0);
    let v = alice.receive_into(&mut burst, &receipt.envelope);
    assert_eq!(opened(&v).content, Content::Receipt(vec![m.id]));
    assert!(burst.owes_nothing());

    // Bob's later message in an epoch Carol never saw: Carol does not know its tag.
    let mut carol = device(&mut r, 3);
    scan(&mut carol, &bob);
    let later = send(&mut bob, &mut r, T0, &alice, "later");
    let mut burst = Inbound::new(T0);
    match carol.receive_into(&mut burst, &later.envelope) {
        Verdict::Park(e) => assert!(e.is_retryable(), "{e:?}"),
        other => panic!("not parked: {other:?}"),
    }
    match carol.receive_into(&mut burst, &[0xff; 40]) {
        Verdict::Refused(e) => assert!(!e.is_retryable()),
        other => panic!("not refused: {other:?}"),
    }
    assert!(burst.owes_nothing() && !burst.new_keys());
    let reply = burst.finish(&mut carol, &mut r);
    assert!(reply.owed.is_empty() && reply.failed.is_empty());
}

/// A group key owes a group ack to the admin (GRP-9) and a receipt; group messages owe one
/// receipt to the group (GRP-10); a group receipt that cannot go to the group goes pairwise.
#[test]
fn group_keys_owe_an_ack_and_group_messages_one_group_receipt_grp_9_grp_10() {
    let mut r = rng(53);
    let mut admin = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut admin, &bob);
    scan(&mut bob, &admin);
    let (gid, out) = admin.create_group(&mut r, T0, &[*bob.user_id()]).unwrap();
    let mut burst = Inbound::new(T0);
    for o in &out {
        let v = bob.receive_into(&mut burst, &o.envelope);
        assert!(opened(&v).new_keys, "a group key is a new key");
    }
    let reply = burst.finish(&mut bob, &mut r);
    // The key's receipt (pairwise, to the admin) and the group ack.
    assert_eq!(reply.owed.len(), 2, "{:?}", reply.owed);
    assert!(reply.owed.iter().all(|o| o.to == [*admin.user_id()]));

    let g: Vec<_> = (0..2)
        .map(|i| {
            admin
                .send_group(T0 + i, &gid, &Content::Text(format!("g{i}")))
                .unwrap()
        })
        .collect();
    let mut burst = Inbound::new(T0);
    for o in &g {
        opened(&bob.receive_into(&mut burst, &o.envelope));
    }
    let reply = burst.finish(&mut bob, &mut r);
    assert_eq!(reply.owed.len(), 1);
    assert_eq!(reply.owed[0].group, Some(gid));
    let got = admin.receive(T0, &reply.owed[0].envelope).unwrap();
    assert_eq!(got.content, Content::Receipt(vec![g[0].id, g[1].id]));

    // Owed to a group this device no longer has: pairwise to the sender instead.
    let mut burst = Inbound::new(T0);
    burst.receipt_again(
        g[0].id,
        *admin.user_id(),
        Some(sotto_core::GroupId([9; 16])),
    );
    let reply = burst.finish(&mut bob, &mut r);
    assert_eq!(reply.owed.len(), 1);
    assert_eq!(
        (reply.owed[0].group, reply.owed[0].to.clone()),
        (None, vec![*admin.user_id()])
    );
    assert_eq!(receipt_ids(&mut admin, &reply.owed[0].envelope), [g[0].id]);
}

/// A group receipt owed where no other member is left (the admin removed everyone since) goes
/// pairwise to the message's sender instead of to nobody (GRP-10).
#[test]
fn a_group_receipt_with_no_member_left_goes_pairwise_grp_10() {
    let mut r = rng(55);
    let mut admin = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut admin, &bob);
    scan(&mut bob, &admin);
    let (gid, out) = admin.create_group(&mut r, T0, &[*bob.user_id()]).unwrap();
    for o in &out {
        bob.receive(T0, &o.envelope).unwrap();
    }
    let m = bob
        .send_group(T0, &gid, &Content::Text("hi".into()))
        .unwrap();
    admin.receive(T0, &m.envelope).unwrap();
    admin
        .remove_from_group(&mut r, T0, &gid, bob.user_id())
        .unwrap();
    let mut burst = Inbound::new(T0);
    burst.receipt_again(m.id, *bob.user_id(), Some(gid));
    let reply = burst.finish(&mut admin, &mut r);
    assert_eq!(reply.owed.len(), 1, "{:?}", reply.owed);
    assert_eq!(
        (reply.owed[0].group, reply.owed[0].to.clone()),
        (None, vec![*bob.user_id()])
    );
}

/// What cannot be sealed is reported, not lost silently: a receipt owed to a user id that is not a
/// contact.
#[test]
fn what_cannot_be_sealed_is_reported() {
    let (mut r, _, mut bob) = acquainted(54);
    let mut burst = Inbound::new(T0);
    burst.receipt_again(MessageId([1; 16]), sotto_core::UserId([7; 10]), None);
    let reply = burst.finish(&mut bob, &mut r);
    assert!(reply.owed.is_empty());
    assert_eq!(reply.failed.len(), 1);
}
