//! The device engine: trust on first use, identity changes, prekeys, receipts, simultaneous setup.

use sotto_core::error::{Error, MisuseError, SessionError};
use sotto_core::{Content, Event, Trust, UserId, Verdict};

use crate::common::*;

#[test]
fn directory_contacts_are_unverified_and_identity_changes_are_explicit_card_4_rx_9() {
    let mut r = rng(10);
    let mut alice = device(&mut r, 1);
    let bob = device(&mut r, 2);
    let bundle = bob.bundle(Some(1)).unwrap();
    alice.add_contact_from_bundle(&bundle).unwrap();
    assert_eq!(alice.contact(bob.user_id()).unwrap().0, Trust::Unverified);
    // Same user id, new identity from the directory: refused until accepted.
    let bob2 = device(&mut r, 2);
    let changed = bob2.bundle(None).unwrap();
    assert_eq!(
        alice.add_contact_from_bundle(&changed).unwrap_err(),
        Error::Session(SessionError::IdentityChanged)
    );
    alice.replace_contact(&changed);
    assert_eq!(
        alice.contact(bob.user_id()).unwrap().1.iks(),
        bob2.identity().public().iks()
    );
    // Safety numbers match on both sides; comparing them verifies the contact.
    let mut bob2 = bob2;
    scan(&mut bob2, &alice);
    assert_eq!(
        alice.safety_number(bob2.user_id()).unwrap(),
        bob2.safety_number(alice.user_id()).unwrap()
    );
    alice.mark_verified(bob2.user_id()).unwrap();
    assert_eq!(alice.contact(bob2.user_id()).unwrap().0, Trust::Verified);
}

#[test]
fn first_message_with_changed_identity_is_refused_rx_9() {
    let mut r = rng(11);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut bob, &alice);
    // Someone else claims Alice's user id.
    let mut mallory = device(&mut r, 1);
    scan(&mut mallory, &bob);
    let forged = send(&mut mallory, &mut r, T0, &bob, "it's me, alice");
    assert_eq!(
        bob.receive(T0, &forged.envelope).unwrap_err(),
        Error::Session(SessionError::IdentityChanged)
    );
    // The real Alice is accepted, and verified because Bob scanned her card.
    scan(&mut alice, &bob);
    let real = send(&mut alice, &mut r, T0, &bob, "hi");
    let got = bob.receive(T0, &real.envelope).unwrap();
    assert_eq!(got.trust, Trust::Verified);
    assert!(got.events.is_empty());
}

#[test]
fn a_claimed_identity_waits_for_the_person_and_opens_once_accepted_rx_9() {
    let mut r = rng(14);
    let alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut bob, &alice);
    // Alice reinstalled: a new identity under her user id writes first.
    let mut alice2 = device(&mut r, 1);
    scan(&mut alice2, &bob);
    let first = send(&mut alice2, &mut r, T0, &bob, "new phone, same me");
    let before = bob.export();
    let mut burst = sotto_core::Inbound::new(T0);
    let Verdict::Hold(claim) = bob.receive_into(&mut burst, &first.envelope) else {
        panic!("a changed identity is held for the person")
    };
    assert_eq!(*bob.export(), *before, "holding changes nothing (RX-3)");
    assert_eq!(claim.user, *alice.user_id());
    assert_eq!(claim.known, *alice.identity().public());
    assert_eq!(claim.known_trust, Trust::Verified);
    assert_eq!(claim.claimed, *alice2.identity().public());
    assert_eq!(
        bob.identity_claim(T0, &first.envelope).unwrap(),
        Some(*claim)
    );
    // The safety numbers the person compares: the old one is Bob's with Alice, the new one the
    // one Alice's new phone shows.
    assert_eq!(
        bob.safety_number_with(&claim.user, &claim.known),
        bob.safety_number(alice.user_id()).unwrap()
    );
    assert_eq!(
        bob.safety_number_with(&claim.user, &claim.claimed),
        alice2.safety_number(bob.user_id()).unwrap()
    );
    // Accepted: the held message opens, from an unverified contact.
    bob.accept_identity_claim(&claim).unwrap();
    bob.accept_identity_claim(&claim).unwrap();
    let got = bob.receive(T0 + 1, &first.envelope).unwrap();
    assert_eq!(text_of(&got), "new phone, same me");
    assert_eq!(got.trust, Trust::Unverified);
    // The old identity's claim is now the stale one: accepting it back is refused.
    let back = sotto_core::IdentityClaim {
        user: claim.user,
        known: claim.known,
        known_trust: Trust::Verified,
        claimed: claim.known,
    };
    assert_eq!(
        bob.accept_identity_claim(&back).unwrap_err(),
        Error::Session(SessionError::IdentityChanged)
    );
    // Other bytes are no claim.
    let reply = send(&mut bob, &mut r, T0 + 2, &alice2, "welcome back");
    assert_eq!(alice2.identity_claim(T0, &reply.envelope).unwrap(), None);
}

#[test]
fn unknown_sender_becomes_an_unverified_contact_rx_9() {
    let mut r = rng(12);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m = send(&mut alice, &mut r, T0, &bob, "hello stranger");
    let got = bob.receive(T0, &m.envelope).unwrap();
    assert_eq!(got.events, vec![Event::NewContact(*alice.user_id())]);
    assert_eq!(bob.contact(alice.user_id()).unwrap().0, Trust::Unverified);
    // Bob can answer without ever fetching Alice's bundle.
    let back = send(&mut bob, &mut r, T0, &alice, "hello");
    assert_eq!(
        text_of(&alice.receive(T0, &back.envelope).unwrap()),
        "hello"
    );
}

#[test]
fn one_time_prekeys_are_used_once_x3dh_9() {
    let mut r = rng(13);
    let mut bob = device(&mut r, 2);
    let bundle = bob.bundle(Some(3)).unwrap();
    let mut a1 = device(&mut r, 1);
    let mut a2 = device(&mut r, 3);
    a1.add_contact_from_bundle(&bundle).unwrap();
    // The directory misbehaves and hands the same one-time prekey out twice.
    a2.add_contact_from_bundle(&bundle).unwrap();
    let m1 = send(&mut a1, &mut r, T0, &bob, "one");
    let m2 = send(&mut a2, &mut r, T0, &bob, "two");
    bob.receive(T0, &m1.envelope).unwrap();
    assert!(!bob.unused_one_time_prekeys().any(|id| id == 3));
    assert_eq!(
        bob.receive(T0, &m2.envelope).unwrap_err(),
        Error::Session(SessionError::UnknownOneTimePrekey)
    );
}

#[test]
fn rotated_signed_prekeys_keep_a_grace_period_key_3() {
    let mut r = rng(14);
    let mut alice = device(&mut r, 1);
    let mut late = device(&mut r, 4);
    let mut bob = device(&mut r, 2);
    let first_card = bob.card().unwrap();
    scan(&mut alice, &bob);
    late.add_contact_from_card(&first_card);
    let m = send(&mut alice, &mut r, T0, &bob, "in flight");
    // Two rotations: prekey 1 is still within LIM-9 (3 kept).
    bob.rotate_signed_prekey(&mut r).unwrap();
    bob.rotate_signed_prekey(&mut r).unwrap();
    assert_eq!(text_of(&bob.receive(T0, &m.envelope).unwrap()), "in flight");
    // A third rotation retires prekey 1: a first message naming it is refused.
    bob.rotate_signed_prekey(&mut r).unwrap();
    let stale = send(&mut late, &mut r, T0, &bob, "too late");
    assert_eq!(
        bob.receive(T0, &stale.envelope).unwrap_err(),
        Error::Session(SessionError::UnknownSignedPrekey)
    );
    let mut carol = device(&mut r, 3);
    scan(&mut carol, &bob);
    let fresh = send(&mut carol, &mut r, T0, &bob, "fresh");
    assert_eq!(text_of(&bob.receive(T0, &fresh.envelope).unwrap()), "fresh");
}

#[test]
fn receipts_name_message_ids_rx_5() {
    let mut r = rng(15);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m1 = send(&mut alice, &mut r, T0, &bob, "a");
    let m2 = send(&mut alice, &mut r, T0, &bob, "b");
    let i1 = bob.receive(T0, &m1.envelope).unwrap();
    let i2 = bob.receive(T0, &m2.envelope).unwrap();
    assert!(i1.content.wants_receipt());
    let receipt = bob
        .send(
            &mut r,
            T0,
            alice.user_id(),
            &Content::Receipt(vec![i1.id, i2.id]),
        )
        .unwrap();
    let got = alice.receive(T0, &receipt.envelope).unwrap();
    assert_eq!(got.content, Content::Receipt(vec![m1.id, m2.id]));
    assert!(!got.content.wants_receipt());
}

/// RX-7: an opened message whose id was delivered before carries a `Rejected(Duplicate)` event,
/// which `repeats_a_delivered_id` reports (the shell then saves and shows nothing); any other
/// refusal of the content does not count.
#[test]
fn a_repeated_id_is_reported_rx_7() {
    let mut r = rng(16);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m = send(&mut alice, &mut r, T0, &bob, "a");
    let mut got = bob.receive(T0, &m.envelope).unwrap();
    assert!(!got.repeats_a_delivered_id());
    got.events
        .push(Event::Rejected(MisuseError::UnknownPeer.into()));
    assert!(!got.repeats_a_delivered_id());
    got.events
        .push(Event::Rejected(SessionError::Duplicate.into()));
    assert!(got.repeats_a_delivered_id());
}

#[test]
fn key_update_turns_the_epoch_epoch_2() {
    let mut r = rng(16);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let m = send(&mut alice, &mut r, T0, &bob, "hi");
    bob.receive(T0, &m.envelope).unwrap();
    let ku = bob
        .send(&mut r, T0, alice.user_id(), &Content::KeyUpdate)
        .unwrap();
    assert_eq!(ku.envelope[0], 0x13);
    assert_eq!(
        alice.receive(T0, &ku.envelope).unwrap().content,
        Content::KeyUpdate
    );
    assert_eq!(
        alice.session_summary(bob.user_id()).unwrap().latest_epoch,
        1
    );
}

#[test]
fn simultaneous_initiation_converges_rx_10() {
    let mut r = rng(17);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    scan(&mut bob, &alice);
    let a1 = send(&mut alice, &mut r, T0, &bob, "from alice");
    let b1 = send(&mut bob, &mut r, T0, &alice, "from bob");
    assert_eq!(a1.envelope[0], 0x12);
    assert_eq!(b1.envelope[0], 0x12);
    assert_eq!(
        text_of(&bob.receive(T0, &a1.envelope).unwrap()),
        "from alice"
    );
    assert_eq!(
        text_of(&alice.receive(T0, &b1.envelope).unwrap()),
        "from bob"
    );
    // Both now send on the session initiated by the smaller IKs; the conversation goes on.
    let a_is_smaller = alice.identity().public().iks() < bob.identity().public().iks();
    let a2 = send(&mut alice, &mut r, T0, &bob, "a2");
    let b2 = send(&mut bob, &mut r, T0, &alice, "b2");
    assert_eq!(text_of(&bob.receive(T0, &a2.envelope).unwrap()), "a2");
    assert_eq!(text_of(&alice.receive(T0, &b2.envelope).unwrap()), "b2");
    let sa = alice.session_summary(bob.user_id()).unwrap();
    let sb = bob.session_summary(alice.user_id()).unwrap();
    assert_eq!(sa.initiator, a_is_smaller);
    assert_eq!(sb.initiator, !a_is_smaller);
}

#[test]
fn misuse_is_typed() {
    let mut r = rng(18);
    let mut alice = device(&mut r, 1);
    assert_eq!(
        alice
            .send(&mut r, T0, &UserId([7; 10]), &Content::Text("x".into()))
            .unwrap_err(),
        Error::Misuse(MisuseError::UnknownPeer)
    );
    let bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    assert_eq!(
        alice
            .send(&mut r, T0, bob.user_id(), &Content::Text("x".repeat(5000)))
            .unwrap_err(),
        Error::Misuse(MisuseError::TooLarge)
    );
    assert_eq!(
        alice.generate_one_time_prekeys(&mut r, 101).unwrap_err(),
        Error::Misuse(MisuseError::LimitReached)
    );
}

#[test]
fn signup_request_carries_keys_only_req1_signup_1() {
    let mut r = rng(19);
    let mut d = device(&mut r, 1);
    let req = d
        .signup_request(&mut r, &[0x30; 44], 5, b"challenge", 4)
        .unwrap();
    let bytes = req.to_bytes();
    let back = sotto_core::signup::SignupRequest::from_bytes(&bytes, 4).unwrap();
    assert_eq!(back.identity(), d.identity().public());
    assert_eq!(back.one_time_prekeys().len(), 5);
    assert_eq!(
        bytes.len(),
        1 + 2 + 44 + 128 + 100 + 2 + 5 * 36 + 1 + 9 + 8 + 64
    );
}

#[test]
fn exported_state_continues_the_conversation_store_3() {
    let mut r = rng(20);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let carol = device(&mut r, 3);
    scan(&mut alice, &bob);
    scan(&mut alice, &carol);
    scan(&mut bob, &alice);
    let m1 = send(&mut alice, &mut r, T0, &bob, "one");
    let m2 = send(&mut alice, &mut r, T0, &bob, "two");
    let m3 = send(&mut alice, &mut r, T0, &bob, "three");
    bob.receive(T0, &m1.envelope).unwrap();
    bob.receive(T0, &m3.envelope).unwrap(); // m2's key is now a skipped key
    let (gid, outs) = alice
        .create_group(&mut r, T0, &[*bob.user_id(), *carol.user_id()])
        .unwrap();
    let bob_id = *bob.user_id();
    for o in outs.iter().filter(|o| o.to.contains(&bob_id)) {
        bob.receive(T0, &o.envelope).unwrap();
    }
    // Both devices restart from their stored state.
    let mut alice = sotto_core::Device::import(&alice.export()).unwrap();
    let mut bob = sotto_core::Device::import(&bob.export()).unwrap();
    assert_eq!(
        bob.export().as_slice(),
        sotto_core::Device::import(&bob.export())
            .unwrap()
            .export()
            .as_slice()
    );
    assert_eq!(text_of(&bob.receive(T0, &m2.envelope).unwrap()), "two");
    assert_eq!(
        bob.receive(T0, &m1.envelope).unwrap_err(),
        Error::Session(SessionError::Duplicate)
    );
    let reply = send(&mut bob, &mut r, T0, &alice, "back");
    assert_eq!(
        text_of(&alice.receive(T0, &reply.envelope).unwrap()),
        "back"
    );
    let g = bob
        .send_group(T0, &gid, &Content::Text("group after restart".into()))
        .unwrap();
    assert_eq!(
        text_of(&alice.receive(T0, &g.envelope).unwrap()),
        "group after restart"
    );
    assert_eq!(alice.contact(bob.user_id()).unwrap().0, Trust::Verified);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, .. Default::default() })]
    /// A corrupted or truncated state is a typed error or a valid device, never a panic.
    #[test]
    fn corrupted_state_never_panics_store_3(at in proptest::prelude::any::<usize>(), mask in 1u8.., cut in proptest::prelude::any::<bool>()) {
        let mut r = rng(21);
        let mut alice = device(&mut r, 1);
        let mut bob = device(&mut r, 2);
        scan(&mut alice, &bob);
        let m = send(&mut alice, &mut r, T0, &bob, "x");
        bob.receive(T0, &m.envelope).unwrap();
        let mut state = bob.export().to_vec();
        let i = at % state.len();
        if cut {
            state.truncate(i);
            proptest::prop_assert!(sotto_core::Device::import(&state).is_err());
        } else {
            state[i] ^= mask;
            let _ = sotto_core::Device::import(&state);
        }
    }
}

/// CARD-4: scanning the card of a contact known from the directory verifies it; a directory
/// answer with the same identity neither verifies a contact nor takes a verification away; the
/// device lists its contacts.
#[test]
fn scanning_verifies_a_known_contact_and_the_directory_never_changes_trust_card_4() {
    let mut r = rng(12);
    let mut alice = device(&mut r, 1);
    let bob = device(&mut r, 2);
    let bundle = bob.bundle(None).unwrap();
    alice.add_contact_from_bundle(&bundle).unwrap();
    alice.add_contact_from_bundle(&bundle).unwrap();
    assert_eq!(alice.contact(bob.user_id()).unwrap().0, Trust::Unverified);
    scan(&mut alice, &bob);
    assert_eq!(alice.contact(bob.user_id()).unwrap().0, Trust::Verified);
    alice
        .add_contact_from_bundle(&bob.bundle(None).unwrap())
        .unwrap();
    assert_eq!(alice.contact(bob.user_id()).unwrap().0, Trust::Verified);
    assert_eq!(alice.contacts().collect::<Vec<_>>(), [bob.user_id()]);
}

/// LIM-15 when making prekeys, and the bookkeeping of unused ones (X3DH-9): 100 at once is the
/// bound; a first message that uses one removes it from the unused ones.
#[test]
fn one_time_prekeys_are_made_up_to_lim_15_and_used_once_x3dh_9() {
    let mut r = rng(19);
    let mut bob = sotto_core::Device::new(&mut r, UserId([2; 10]));
    assert_eq!(
        bob.generate_one_time_prekeys(&mut r, 100).unwrap().len(),
        100
    );
    assert_eq!(
        bob.unused_one_time_prekeys().collect::<Vec<_>>(),
        (1..=100).collect::<Vec<u32>>()
    );
    let mut alice = device(&mut r, 1);
    alice
        .add_contact_from_bundle(&bob.bundle(Some(7)).unwrap())
        .unwrap();
    let first = alice
        .send(&mut r, T0, bob.user_id(), &Content::Text("hi".into()))
        .unwrap();
    bob.receive(T0, &first.envelope).unwrap();
    let unused: Vec<u32> = bob.unused_one_time_prekeys().collect();
    assert_eq!(unused.len(), 99);
    assert!(!unused.contains(&7));
}

/// What the wiretap reads (feature `test-utils`): class names, and a `Debug` that shows where a
/// secret sits but never its bytes.
#[test]
fn held_secrets_are_named_and_debug_hides_their_bytes() {
    use sotto_core::device::SecretClass;
    let names: Vec<&str> = SecretClass::ALL.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        [
            "identity-key",
            "prekey-secret",
            "root-key",
            "ratchet-secret",
            "chain-key",
            "message-key",
            "nonce-seed",
            "confirm-key",
            "key-share"
        ]
    );
    let mut r = rng(20);
    let d = device(&mut r, 1);
    let held = d.held_secrets();
    assert_eq!(
        format!("{:?}", held[0]),
        "HeldSecret { class: IdentityKey, label: \"identity signing seed\", .. }"
    );
}

/// A certificate renewal is signed by the device's identity key under the renewal's own context,
/// and only over the part given: what the membership service checks (docs/operations.md,
/// `POST /v1/renew`).
#[test]
fn a_renewal_is_signed_by_the_identity_key_under_its_own_context() {
    let mut r = rng(40);
    let alice = device(&mut r, 1);
    let part = b"user id, key and time";
    let sig = alice.sign_renewal(part);
    let iks = alice.public_identity().iks();
    iks.verify(sotto_core::kdf::SIG_RENEW, &[part], &sig)
        .expect("verifies with IKs under SIG_RENEW");
    assert!(
        iks.verify(sotto_core::kdf::SIG_SIGNUP, &[part], &sig)
            .is_err()
    );
    assert!(
        iks.verify(sotto_core::kdf::SIG_RENEW, &[b"other"], &sig)
            .is_err()
    );
    let bob = device(&mut r, 2);
    assert!(
        bob.public_identity()
            .iks()
            .verify(sotto_core::kdf::SIG_RENEW, &[part], &sig)
            .is_err()
    );
}

/// A removed contact is gone with its sessions: a message on the old session no longer opens,
/// nothing can be sent to it, and a new first message from that user id makes a new, unverified
/// contact (RX-9).
#[test]
fn a_removed_contact_is_forgotten_with_its_sessions() {
    let mut r = rng(41);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    scan(&mut bob, &alice);
    let first = send(&mut alice, &mut r, T0, &bob, "one");
    assert_eq!(text_of(&bob.receive(T0, &first.envelope).unwrap()), "one");
    let answer = send(&mut bob, &mut r, T0, &alice, "two");
    assert_eq!(
        text_of(&alice.receive(T0, &answer.envelope).unwrap()),
        "two"
    );
    let later = send(&mut alice, &mut r, T0, &bob, "three");

    bob.remove_contact(alice.user_id()).unwrap();
    assert!(bob.contact(alice.user_id()).is_none());
    assert!(!bob.contacts().any(|u| u == alice.user_id()));
    assert_eq!(
        bob.remove_contact(alice.user_id()).unwrap_err(),
        Error::Misuse(MisuseError::UnknownPeer)
    );
    assert!(
        bob.receive(T0, &later.envelope).is_err(),
        "the session is gone"
    );
    bob.check_routing_index().unwrap();

    // Alice starts over from Bob's card: a new first message makes an unverified contact.
    alice.remove_contact(bob.user_id()).unwrap();
    scan(&mut alice, &bob);
    let again = send(&mut alice, &mut r, T0, &bob, "again");
    let got = bob.receive(T0, &again.envelope).unwrap();
    assert_eq!(text_of(&got), "again");
    assert_eq!(bob.contact(alice.user_id()).unwrap().0, Trust::Unverified);
}
