//! Blocked user ids (RX-11): nothing from a blocked user id opens, before any state changes, and
//! nothing is sent to it; the block is kept with the device state; unblocking lets the sender's
//! resends (RX-6) through.

use sotto_core::error::{Error, SessionError};
use sotto_core::records::RecordKind;
use sotto_core::{Device, Inbound, Verdict};

use crate::common::*;

const BLOCKED: Error = Error::Session(SessionError::Blocked);

#[test]
fn nothing_from_a_blocked_contact_opens_and_nothing_changes_rx_11() {
    let (mut r, mut alice, mut bob) = acquainted(110);
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    bob.receive(T0, &first.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0 + 1, &bob, "are you there?");
    bob.block(alice.user_id());
    assert!(bob.is_blocked(alice.user_id()));
    assert_eq!(bob.blocked().collect::<Vec<_>>(), vec![alice.user_id()]);
    let before = bob.export();
    // A data message, a resend of the first message, and a burst: all `blocked`, nothing changed.
    assert_eq!(bob.receive(T0 + 2, &data.envelope).unwrap_err(), BLOCKED);
    assert_eq!(bob.receive(T0 + 2, &first.envelope).unwrap_err(), BLOCKED);
    let mut burst = Inbound::new(T0 + 2);
    assert!(matches!(
        bob.receive_into(&mut burst, &data.envelope),
        Verdict::Refused(e) if e == BLOCKED
    ));
    assert!(burst.owes_nothing(), "no receipt goes to a blocked user");
    assert_eq!(
        *bob.export(),
        *before,
        "a blocked message changes nothing (RX-3)"
    );
    // Nothing is sent to it either.
    assert_eq!(
        bob.send(&mut r, T0 + 3, alice.user_id(), &text("hi"))
            .unwrap_err(),
        BLOCKED
    );
    // Unblocked, the sender's resend of the same envelope (RX-6) opens.
    assert!(bob.unblock(alice.user_id()));
    assert!(!bob.unblock(alice.user_id()));
    assert_eq!(
        text_of(&bob.receive(T0 + 4, &data.envelope).unwrap()),
        "are you there?"
    );
    bob.send(&mut r, T0 + 5, alice.user_id(), &text("yes"))
        .unwrap();
}

#[test]
fn a_first_message_from_a_blocked_user_id_keeps_its_one_time_prekey_rx_11() {
    let mut r = rng(111);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    // Bob never met Alice: he blocks her user id before she writes.
    bob.block(alice.user_id());
    let first = send(&mut alice, &mut r, T0, &bob, "hello stranger");
    let unused = bob.unused_one_time_prekeys().count();
    assert_eq!(bob.receive(T0, &first.envelope).unwrap_err(), BLOCKED);
    assert_eq!(bob.unused_one_time_prekeys().count(), unused);
    assert!(
        bob.contact(alice.user_id()).is_none(),
        "no contact was made"
    );
}

#[test]
fn a_blocked_members_group_messages_do_not_open_rx_11() {
    let (mut r, mut alice, mut bob) = acquainted(112);
    let mut carol = device(&mut r, 3);
    scan(&mut alice, &carol);
    scan(&mut carol, &alice);
    scan(&mut bob, &carol);
    scan(&mut carol, &bob);
    let (gid, keys) = alice
        .create_group(&mut r, T0, &[*bob.user_id(), *carol.user_id()])
        .unwrap();
    for k in &keys {
        for d in [&mut bob, &mut carol] {
            if k.to.contains(d.user_id()) {
                d.receive(T0, &k.envelope).unwrap();
            }
        }
    }
    carol.block(bob.user_id());
    let from_bob = bob.send_group(T0 + 1, &gid, &text("hi all")).unwrap();
    assert_eq!(
        carol.receive(T0 + 2, &from_bob.envelope).unwrap_err(),
        BLOCKED
    );
    // The admin's messages still open.
    let from_alice = alice.send_group(T0 + 3, &gid, &text("hello")).unwrap();
    assert_eq!(
        text_of(&carol.receive(T0 + 4, &from_alice.envelope).unwrap()),
        "hello"
    );
}

#[test]
fn the_block_list_is_kept_with_the_device_state_rx_11() {
    let (_, _, mut bob) = acquainted(113);
    let alice_id = sotto_core::UserId([1; 10]);
    bob.mark_committed();
    bob.block(&alice_id);
    let changes = bob.changes();
    assert_eq!(
        changes
            .put
            .iter()
            .filter(|rec| rec.id.kind == RecordKind::Blocked)
            .count(),
        1,
        "blocking writes one record"
    );
    let records = bob.records();
    let back = Device::from_records(
        records
            .iter()
            .map(|rec| (rec.id.kind.code(), &rec.id.key[..], &rec.value[..])),
    )
    .unwrap();
    assert!(back.is_blocked(&alice_id));
    assert!(Device::import(&bob.export()).unwrap().is_blocked(&alice_id));
    // States of version 2 (before group handovers and leaves) and 1 (before blocked user ids) still
    // import, with none handed over and none blocked; the version byte is what says so, not the
    // length.
    let mut fresh = bob.clone();
    fresh.unblock(&alice_id);
    let v3 = fresh.export().to_vec();
    let end = v3.len() - 12;
    assert_eq!(
        (v3[0], &v3[end..]),
        (3, &[0u8; 12][..]),
        "version 3 ends with three empty lists"
    );
    let mut v2 = v3[..end + 4].to_vec();
    v2[0] = 2;
    assert_eq!(Device::import(&v2).unwrap().blocked().count(), 0);
    let mut v1 = v3[..end].to_vec();
    v1[0] = 1;
    assert_eq!(Device::import(&v1).unwrap().blocked().count(), 0);
    assert_eq!(
        Device::import(&v3[..v2.len()]).unwrap_err().code(),
        "truncated"
    );
    v1[0] = 4;
    assert_eq!(Device::import(&v1).unwrap_err().code(), "unknown_version");
    bob.mark_committed();
    bob.unblock(&alice_id);
    assert_eq!(
        bob.changes().delete.len(),
        1,
        "unblocking deletes the record"
    );
}

#[test]
fn a_blocked_user_ids_claim_of_a_new_identity_is_refused_not_held_rx_11() {
    let mut r = rng(114);
    let alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut bob, &alice);
    bob.block(alice.user_id());
    // Someone writes under Alice's user id with other keys: for a blocked user id there is
    // nothing to decide, so it is refused, not held for the person (RX-9 does not apply).
    let mut other = device(&mut r, 1);
    scan(&mut other, &bob);
    let first = send(&mut other, &mut r, T0, &bob, "it's me");
    let mut burst = Inbound::new(T0);
    assert!(matches!(
        bob.receive_into(&mut burst, &first.envelope),
        Verdict::Refused(e) if e == BLOCKED
    ));
    bob.unblock(alice.user_id());
    assert!(matches!(
        bob.receive_into(&mut burst, &first.envelope),
        Verdict::Hold(_)
    ));
}
