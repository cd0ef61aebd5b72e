//! Leaving a group (GRP-11) and handing its admin role over (GRP-12), through bursts
//! ([`Inbound`]) as a shell drives them: the admin removes a member that left, and the new admin
//! issues the next epoch, in the burst that brought the leave or the handover.

use rand_chacha::ChaCha20Rng;
use sotto_core::error::{CryptoError, Error, GroupError, MisuseError};
use sotto_core::group::handover::Handover;
use sotto_core::group::membership::Member;
use sotto_core::inner::GroupKey;
use sotto_core::{Content, Device, Event, GroupId, Inbound, Outgoing, Reply, UserId, Verdict};

use crate::common::*;

/// Admin (1), Bob (2), Carol (3) and Dave (4): everyone holds everyone's card.
fn four() -> (ChaCha20Rng, Vec<Device>) {
    let mut r = rng(41);
    let mut ds: Vec<Device> = (1..=4).map(|n| device(&mut r, n)).collect();
    let cards: Vec<_> = ds.iter().map(|d| d.card().unwrap()).collect();
    for (i, d) in ds.iter_mut().enumerate() {
        for (j, c) in cards.iter().enumerate() {
            if i != j {
                d.add_contact_from_card(c);
            }
        }
    }
    (r, ds)
}

/// One envelope through a burst of one at `d`: its verdict and what the burst owes.
fn post(d: &mut Device, r: &mut ChaCha20Rng, envelope: &[u8]) -> (Verdict, Reply) {
    let mut burst = Inbound::new(T0 + 1000);
    let v = d.receive_into(&mut burst, envelope);
    (v, burst.finish(d, r))
}

fn events(v: &Verdict) -> Vec<Event> {
    match v {
        Verdict::Opened(i) => i.events.clone(),
        other => panic!("not opened: {other:?}"),
    }
}

/// Delivers `out` to its recipients among `ds`, then what their bursts owe, until nothing is
/// left; returns every event each device saw, by device index.
fn flood(ds: &mut [Device], r: &mut ChaCha20Rng, out: Vec<Outgoing>) -> Vec<Vec<Event>> {
    let mut seen = vec![Vec::new(); ds.len()];
    let mut queue = out;
    while let Some(o) = queue.pop() {
        for to in &o.to {
            let Some(i) = ds.iter().position(|d| d.user_id() == to) else {
                continue;
            };
            let (v, reply) = post(&mut ds[i], r, &o.envelope);
            if let Verdict::Opened(inc) = &v {
                seen[i].extend(inc.events.clone());
            }
            for (group, epoch) in &reply.took_over {
                seen[i].push(Event::GroupKey {
                    group: *group,
                    epoch: *epoch,
                });
            }
            queue.extend(reply.owed);
            queue.extend(reply.group_changes);
        }
    }
    seen
}

fn ids(ds: &[Device]) -> Vec<UserId> {
    ds.iter().map(|d| *d.user_id()).collect()
}

fn group_of_four(r: &mut ChaCha20Rng, ds: &mut [Device]) -> GroupId {
    let members = [*ds[1].user_id(), *ds[2].user_id(), *ds[3].user_id()];
    let (gid, out) = ds[0].create_group(r, T0, &members).unwrap();
    flood(ds, r, out);
    for d in ds.iter() {
        assert_eq!(d.group_members(&gid).unwrap().0, 0);
    }
    gid
}

#[test]
fn a_member_that_leaves_is_removed_by_the_admin_and_reads_nothing_after_grp_11() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let carol = u[2];
    let leave = ds[2].leave_group(&mut r, T0, &gid).unwrap().unwrap();
    assert_eq!(leave.to, vec![u[0]]);
    // The keys are gone at once.
    assert_eq!(ds[2].group_members(&gid), None);
    // The admin removes her in the burst that brought the leave: epoch 1, without her.
    let (v, reply) = post(&mut ds[0], &mut r, &leave.envelope);
    assert!(events(&v).contains(&Event::MemberLeft {
        group: gid,
        user: carol
    }));
    let (epoch, members) = ds[0].group_members(&gid).unwrap();
    assert_eq!(epoch, 1);
    assert!(!members.contains(&carol));
    assert!(reply.group_changes.iter().any(|o| o.to == vec![carol]));
    flood(&mut ds, &mut r, reply.group_changes);
    assert_eq!(ds[1].group_members(&gid).unwrap().0, 1);
    assert_eq!(ds[3].group_members(&gid).unwrap().0, 1);
    let secret = ds[1]
        .send_group(T0 + 2000, &gid, &text("after carol left"))
        .unwrap();
    assert!(!secret.to.contains(&carol));
    assert!(ds[2].receive(T0 + 3000, &secret.envelope).is_err());
    // After the removal notice, a new invitation (a later epoch) is accepted again.
    let out = ds[0].add_to_group(&mut r, T0, &gid, &carol).unwrap();
    flood(&mut ds, &mut r, out);
    assert_eq!(ds[2].group_members(&gid).unwrap().0, 2);
}

#[test]
fn a_key_the_admin_sent_before_it_learned_of_the_leave_does_not_bring_the_group_back_grp_11() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let members = [u[1], u[2]];
    let (gid, out) = ds[0].create_group(&mut r, T0, &members).unwrap();
    flood(&mut ds, &mut r, out);
    let carol = u[2];
    let leave = ds[2].leave_group(&mut r, T0, &gid).unwrap().unwrap();
    // Meanwhile the admin adds Dave: epoch 1 still lists Carol.
    let add = ds[0].add_to_group(&mut r, T0, &gid, &u[3]).unwrap();
    let to_carol = add.iter().find(|o| o.to == vec![carol]).unwrap();
    let (v, _) = post(&mut ds[2], &mut r, &to_carol.envelope);
    assert_eq!(
        events(&v),
        vec![Event::Rejected(Error::Group(GroupError::StaleGroupEpoch))]
    );
    assert_eq!(ds[2].group_members(&gid), None);
    // The admin acts on the leave: the removal notice reaches Carol and settles it.
    let (_, reply) = post(&mut ds[0], &mut r, &leave.envelope);
    assert_eq!(ds[0].group_members(&gid).unwrap().0, 2);
    let notice = reply
        .group_changes
        .iter()
        .find(|o| o.to == vec![carol])
        .unwrap();
    let (v, _) = post(&mut ds[2], &mut r, &notice.envelope);
    assert_eq!(events(&v), vec![]);
    assert_eq!(ds[2].group_members(&gid), None);
}

#[test]
fn the_admin_hands_over_before_it_can_leave_grp_11_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let bob = u[1];
    assert_eq!(
        ds[0].leave_group(&mut r, T0, &gid).unwrap_err(),
        Error::Misuse(MisuseError::AdminMustHandOver)
    );
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &bob).unwrap();
    assert_eq!(h.to, vec![bob]);
    // From now on the old admin changes nothing and still cannot leave.
    assert_eq!(
        ds[0].add_to_group(&mut r, T0, &gid, &u[3]).unwrap_err(),
        Error::Group(GroupError::NotGroupAdmin)
    );
    assert_eq!(
        ds[0]
            .remove_from_group(&mut r, T0, &gid, &u[2])
            .unwrap_err(),
        Error::Group(GroupError::NotGroupAdmin)
    );
    assert_eq!(
        ds[0].leave_group(&mut r, T0, &gid).unwrap_err(),
        Error::Misuse(MisuseError::AdminMustHandOver)
    );
    // Bob takes over in the burst that brought the handover: epoch 1, Bob first.
    let (v, reply) = post(&mut ds[1], &mut r, &h.envelope);
    assert_eq!(
        events(&v),
        vec![Event::HandoverReceived {
            group: gid,
            epoch: 1
        }]
    );
    assert_eq!(reply.took_over, vec![(gid, 1)]);
    assert!(ds[1].pending_takeovers().is_empty());
    let (_, members) = ds[1].group_members(&gid).unwrap();
    assert_eq!(members[0], bob);
    assert_eq!(members[1], u[0]);
    // Every member (the old admin too) gets the handed-over key (kind 9), kept until receipted;
    // the handover's receipt is owed once.
    assert_eq!(reply.group_changes.len(), 3);
    assert_eq!(reply.owed.len(), 1);
    flood(&mut ds, &mut r, reply.group_changes);
    for d in &ds {
        assert_eq!(d.group_members(&gid).unwrap(), (1, members.clone()));
    }
    // The new admin changes members; its later keys carry the handover.
    let out = ds[1].remove_from_group(&mut r, T0, &gid, &u[3]).unwrap();
    flood(&mut ds, &mut r, out);
    assert_eq!(ds[2].group_members(&gid).unwrap().0, 2);
    assert_eq!(ds[3].group_members(&gid), None);
    // The old admin is a member now and may leave; the new admin removes it.
    let leave = ds[0].leave_group(&mut r, T0, &gid).unwrap().unwrap();
    assert_eq!(leave.to, vec![bob]);
    flood(&mut ds, &mut r, vec![leave]);
    assert_eq!(ds[1].group_members(&gid).unwrap(), (3, vec![bob, u[2]]));
    assert_eq!(ds[2].group_members(&gid).unwrap().0, 3);
    // An admin alone may leave: the group is just deleted.
    let out = ds[1].remove_from_group(&mut r, T0, &gid, &u[2]).unwrap();
    flood(&mut ds, &mut r, out);
    assert!(ds[1].leave_group(&mut r, T0, &gid).unwrap().is_none());
    assert_eq!(ds[1].group_members(&gid), None);
}

#[test]
fn a_member_out_of_order_takes_the_new_admins_later_key_first_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let bob = u[1];
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &bob).unwrap();
    let (_, reply) = post(&mut ds[1], &mut r, &h.envelope);
    let carol = u[2];
    let first = reply
        .group_changes
        .into_iter()
        .find(|o| o.to == vec![carol])
        .unwrap();
    let second = ds[1]
        .remove_from_group(&mut r, T0, &gid, &u[3])
        .unwrap()
        .into_iter()
        .find(|o| o.to == vec![carol])
        .unwrap();
    // Epoch 2 first: it carries the handover, so Carol takes the new admin from it.
    post(&mut ds[2], &mut r, &second.envelope);
    assert_eq!(ds[2].group_members(&gid).unwrap().0, 2);
    post(&mut ds[2], &mut r, &first.envelope);
    let m = ds[1].send_group(T0, &gid, &text("epoch 2")).unwrap();
    assert_eq!(text_of(&ds[2].receive(T0, &m.envelope).unwrap()), "epoch 2");
}

#[test]
fn a_handover_only_from_the_admin_for_the_next_epoch_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let bob = u[1];
    let bob_member = Member {
        user: bob,
        iks: *ds[1].public_identity().iks(),
    };
    // Carol, a member, forges a handover to Bob with her own key.
    let forged = Handover::sign(ds[2].identity(), gid, 1, &bob_member);
    let o = ds[2]
        .send(&mut r, T0, &bob, &Content::GroupHandover(forged))
        .unwrap();
    let (v, reply) = post(&mut ds[1], &mut r, &o.envelope);
    assert_eq!(
        events(&v),
        vec![Event::Rejected(Error::Group(GroupError::NotGroupAdmin))]
    );
    assert!(reply.took_over.is_empty());
    // The admin's handover naming another epoch, or another member, is refused too.
    for (epoch, to, expected) in [
        (0, bob_member, Error::Group(GroupError::StaleGroupEpoch)),
        (
            1,
            Member {
                user: u[2],
                iks: *ds[2].public_identity().iks(),
            },
            Error::Group(GroupError::NotAMember),
        ),
    ] {
        let h = Handover::sign(ds[0].identity(), gid, epoch, &to);
        let o = ds[0]
            .send(&mut r, T0, &bob, &Content::GroupHandover(h))
            .unwrap();
        let (v, _) = post(&mut ds[1], &mut r, &o.envelope);
        assert_eq!(events(&v), vec![Event::Rejected(expected)]);
    }
    // A handover whose signature does not name Bob's key.
    let mut h = Handover::sign(ds[0].identity(), gid, 1, &bob_member);
    h.sig[0] ^= 1;
    let o = ds[0]
        .send(&mut r, T0, &bob, &Content::GroupHandover(h))
        .unwrap();
    let (v, _) = post(&mut ds[1], &mut r, &o.envelope);
    assert_eq!(
        events(&v),
        vec![Event::Rejected(Error::Crypto(CryptoError::BadSignature))]
    );
    assert_eq!(ds[1].group_members(&gid).unwrap().0, 0);
}

#[test]
fn a_handed_over_key_needs_the_held_admins_signature_and_a_fresh_epoch_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let (bob, carol) = (u[1], u[2]);
    // The role goes to Bob (epoch 1), then back to the admin (epoch 2).
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &bob).unwrap();
    flood(&mut ds, &mut r, vec![h]);
    let back = ds[1].hand_over_group(&mut r, T0, &gid, &u[0]).unwrap();
    flood(&mut ds, &mut r, vec![back]);
    for d in &ds {
        assert_eq!(d.group_members(&gid).unwrap().1[0], u[0]);
    }
    // Bob replays the admin's first handover to issue epoch 5 as admin: refused, it is not above
    // the epochs Carol holds.
    let old = Handover::sign(
        ds[0].identity(),
        gid,
        1,
        &Member {
            user: bob,
            iks: *ds[1].public_identity().iks(),
        },
    );
    let (_, members) = ds[0].group_members(&gid).unwrap();
    let mut list: Vec<Member> = members
        .iter()
        .map(|u| Member {
            user: *u,
            iks: *ds
                .iter()
                .find(|d| d.user_id() == u)
                .unwrap()
                .public_identity()
                .iks(),
        })
        .collect();
    let at = list.iter().position(|m| m.user == bob).unwrap();
    list.swap(0, at);
    let membership =
        sotto_core::group::membership::Membership::sign(ds[1].identity(), gid, 5, list).unwrap();
    let key = Content::GroupKey(Box::new(GroupKey {
        membership,
        keys: sotto_core::keyshare::KeyShare::random(&mut r, T0),
        handover: Some(old),
    }));
    let o = ds[1].send(&mut r, T0, &carol, &key).unwrap();
    let (v, _) = post(&mut ds[2], &mut r, &o.envelope);
    assert_eq!(
        events(&v),
        vec![Event::Rejected(Error::Group(GroupError::NotGroupAdmin))]
    );
    assert_eq!(ds[2].group_members(&gid).unwrap().0, 2);
}

#[test]
fn a_new_admin_without_a_session_with_a_member_waits_for_its_bundle_grp_12() {
    let mut r = rng(42);
    let mut ds: Vec<Device> = (1..=3).map(|n| device(&mut r, n)).collect();
    let u = ids(&ds);
    // The admin knows everyone; Bob and Carol do not know each other.
    for (a, b) in [(0, 1), (1, 0), (0, 2), (2, 0)] {
        let card = ds[b].card().unwrap();
        ds[a].add_contact_from_card(&card);
    }
    let (bob, carol) = (u[1], u[2]);
    let (gid, out) = ds[0].create_group(&mut r, T0, &[bob, carol]).unwrap();
    flood(&mut ds, &mut r, out);
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &bob).unwrap();
    let (_, reply) = post(&mut ds[1], &mut r, &h.envelope);
    assert!(reply.took_over.is_empty());
    assert!(
        reply.failed.is_empty(),
        "a missing session waits: {:?}",
        reply.failed
    );
    let pending = ds[1].pending_takeovers();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0, gid);
    assert_eq!(
        pending[0].1.iter().map(|m| m.user).collect::<Vec<_>>(),
        vec![carol]
    );
    assert_eq!(
        ds[1].take_over_group(&mut r, T0, &gid).unwrap_err(),
        Error::Misuse(MisuseError::UnknownPeer)
    );
    // The state survives a restart while it waits.
    let mut bob_again = Device::import(&ds[1].export()).unwrap();
    assert_eq!(bob_again.pending_takeovers(), pending);
    // Carol's bundle (from the directory, unverified) completes it.
    let bundle = ds[2].bundle(None).unwrap();
    bob_again.add_contact_from_bundle(&bundle).unwrap();
    let out = bob_again.take_over_group(&mut r, T0, &gid).unwrap();
    assert_eq!(out.len(), 2);
    ds[1] = bob_again;
    assert!(ds[1].pending_takeovers().is_empty());
    flood(&mut ds, &mut r, out);
    assert_eq!(ds[2].group_members(&gid).unwrap().1[0], bob);
    assert_eq!(ds[0].group_members(&gid).unwrap().1[0], bob);
}

#[test]
fn only_a_notice_of_a_later_epoch_ends_a_leave_grp_11() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let carol = u[2];
    // The admin removes Carol (epoch 1) and adds her back (epoch 2); she has seen neither.
    let removal = ds[0].remove_from_group(&mut r, T0, &gid, &carol).unwrap();
    let notice_1 = removal.into_iter().find(|o| o.to == vec![carol]).unwrap();
    let add = ds[0].add_to_group(&mut r, T0, &gid, &carol).unwrap();
    let key_2 = add.into_iter().find(|o| o.to == vec![carol]).unwrap();
    // Carol leaves at epoch 0.
    let leave = ds[2].leave_group(&mut r, T0, &gid).unwrap().unwrap();
    let (v, _) = post(&mut ds[2], &mut r, &key_2.envelope);
    assert_eq!(
        events(&v),
        vec![Event::Rejected(Error::Group(GroupError::StaleGroupEpoch))]
    );
    // The admin's removal of epoch 1, already on its way, is a notice of a later epoch: it ends
    // the wait (GRP-11 cannot tell it from the answer).
    let (v, _) = post(&mut ds[2], &mut r, &notice_1.envelope);
    assert_eq!(events(&v), vec![]);
    // The admin acts on her leave: she is not listed (the epoch-2 key she refused listed her,
    // so the admin removes her again at epoch 3), and what follows never reaches her.
    let (_, reply) = post(&mut ds[0], &mut r, &leave.envelope);
    let (epoch, members) = ds[0].group_members(&gid).unwrap();
    assert_eq!(epoch, 3);
    assert!(!members.contains(&carol));
    flood(&mut ds, &mut r, reply.group_changes);
    assert_eq!(ds[2].group_members(&gid), None);
    // A new invitation (epoch 4) is accepted.
    let out = ds[0].add_to_group(&mut r, T0, &gid, &carol).unwrap();
    flood(&mut ds, &mut r, out);
    assert_eq!(ds[2].group_members(&gid).unwrap().0, 4);
}

#[test]
fn a_handover_that_overtakes_the_key_before_it_waits_for_it_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let bob = u[1];
    // The admin adds nobody new but removes Dave (epoch 1), then hands over (epoch 2).
    let removal = ds[0].remove_from_group(&mut r, T0, &gid, &u[3]).unwrap();
    let key_1 = removal.into_iter().find(|o| o.to == vec![bob]).unwrap();
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &bob).unwrap();
    // The handover reaches Bob first: it is kept, nothing is issued yet.
    let (v, reply) = post(&mut ds[1], &mut r, &h.envelope);
    assert_eq!(
        events(&v),
        vec![Event::HandoverReceived {
            group: gid,
            epoch: 2
        }]
    );
    assert!(reply.took_over.is_empty() && reply.group_changes.is_empty());
    assert!(ds[1].pending_takeovers().is_empty());
    // Epoch 1's key arrives: Bob takes over in that burst, and owes no ack to himself.
    let (_, reply) = post(&mut ds[1], &mut r, &key_1.envelope);
    assert_eq!(reply.took_over, vec![(gid, 2)]);
    assert!(reply.failed.is_empty(), "{:?}", reply.failed);
    assert_eq!(reply.owed.len(), 1, "the receipt of the key only");
    flood(&mut ds, &mut r, reply.group_changes);
    assert_eq!(ds[0].group_members(&gid).unwrap().1[0], bob);
}

#[test]
fn a_leave_counts_only_from_the_identity_the_group_lists_grp_11() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    // Carol's user id under a new identity (a reinstalled phone the admin accepted): the group
    // still lists her old `IKs`, so her leave is refused until the admin re-adds her.
    let mut carol2 = device(&mut r, 3);
    scan(&mut carol2, &ds[0]);
    let first = send(&mut carol2, &mut r, T0, &ds[0], "new phone");
    let mut burst = Inbound::new(T0);
    let Verdict::Hold(claim) = ds[0].receive_into(&mut burst, &first.envelope) else {
        panic!("held")
    };
    ds[0].accept_identity_claim(&claim).unwrap();
    ds[0].receive(T0, &first.envelope).unwrap();
    let leave = carol2
        .send(
            &mut r,
            T0,
            &u[0],
            &Content::GroupLeave(sotto_core::group::handover::Leave {
                group: gid,
                epoch: 0,
            }),
        )
        .unwrap();
    let (v, reply) = post(&mut ds[0], &mut r, &leave.envelope);
    assert_eq!(
        events(&v),
        vec![Event::Rejected(Error::Group(GroupError::NotAMember))]
    );
    assert!(reply.group_changes.is_empty());
    assert_eq!(ds[0].group_members(&gid).unwrap().0, 0);
}

#[test]
fn the_same_leave_twice_in_a_burst_removes_once_grp_11() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    let leave = || {
        Content::GroupLeave(sotto_core::group::handover::Leave {
            group: gid,
            epoch: 0,
        })
    };
    let a = ds[2].send(&mut r, T0, &u[0], &leave()).unwrap();
    let b = ds[2].send(&mut r, T0, &u[0], &leave()).unwrap();
    let mut burst = Inbound::new(T0 + 1000);
    ds[0].receive_into(&mut burst, &a.envelope);
    ds[0].receive_into(&mut burst, &b.envelope);
    let reply = burst.finish(&mut ds[0], &mut r);
    assert!(reply.failed.is_empty(), "{:?}", reply.failed);
    assert_eq!(ds[0].group_members(&gid).unwrap().0, 1, "one new epoch");
    assert_eq!(
        reply.group_changes.len(),
        3,
        "keys for 2, notice for the leaver"
    );
}

#[test]
fn the_admin_hands_over_to_the_member_it_names_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    assert_eq!(
        ds[0].hand_over_group(&mut r, T0, &gid, &u[0]).unwrap_err(),
        Error::Group(GroupError::NotAMember)
    );
    // Dave is the last member: the handover names him, not the first one.
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &u[3]).unwrap();
    assert_eq!(h.to, vec![u[3]]);
    flood(&mut ds, &mut r, vec![h]);
    for d in &ds {
        let (epoch, members) = d.group_members(&gid).unwrap();
        assert_eq!((epoch, members[0], members[3]), (1, u[3], u[0]));
    }
}

#[test]
fn a_handover_from_the_admins_key_under_another_user_id_is_refused_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    // The same `IKs` under another user id (GRP-2 allows it) is not the group's admin.
    let spk = ds[0].identity().new_signed_prekey(&mut r, 1);
    let mut twin = Device::from_keys(UserId([9; 10]), ds[0].identity().clone(), spk);
    scan(&mut twin, &ds[1]);
    let bob = Member {
        user: u[1],
        iks: *ds[1].public_identity().iks(),
    };
    let h = Handover::sign(twin.identity(), gid, 1, &bob);
    let o = twin
        .send(&mut r, T0, &u[1], &Content::GroupHandover(h))
        .unwrap();
    let (v, reply) = post(&mut ds[1], &mut r, &o.envelope);
    let evs = match &v {
        Verdict::Opened(i) => i.events.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        evs.contains(&Event::Rejected(Error::Group(GroupError::NotGroupAdmin))),
        "{evs:?}"
    );
    assert!(reply.took_over.is_empty());
}

#[test]
fn a_takeover_that_fails_for_another_reason_than_a_missing_session_is_reported_grp_12() {
    let (mut r, mut ds) = four();
    let u = ids(&ds);
    let gid = group_of_four(&mut r, &mut ds);
    // Bob holds Carol's user id under another identity than the one the group lists.
    let carol2 = device(&mut r, 3);
    ds[1].remove_contact(&u[2]).unwrap();
    scan(&mut ds[1], &carol2);
    let h = ds[0].hand_over_group(&mut r, T0, &gid, &u[1]).unwrap();
    let (_, reply) = post(&mut ds[1], &mut r, &h.envelope);
    assert!(reply.took_over.is_empty());
    assert_eq!(
        reply.failed,
        vec![Error::Session(
            sotto_core::error::SessionError::IdentityChanged
        )]
    );
    // A device named by a handover, admin or about to be, cannot leave.
    assert_eq!(
        ds[1].leave_group(&mut r, T0, &gid).unwrap_err(),
        Error::Misuse(MisuseError::AdminMustHandOver)
    );
}

#[test]
fn a_device_remembers_at_most_lim_groups_it_is_leaving() {
    let mut r = rng(43);
    let mut admin = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut admin, &bob);
    scan(&mut bob, &admin);
    let limit = sotto_core::limits::MAX_GROUPS;
    for _ in 0..=limit {
        let (gid, out) = admin.create_group(&mut r, T0, &[*bob.user_id()]).unwrap();
        for o in out {
            bob.receive(T0, &o.envelope).unwrap();
        }
        let leave = bob.leave_group(&mut r, T0, &gid).unwrap().unwrap();
        // The admin removes Bob (its notice is not delivered: Bob keeps waiting), then, alone,
        // deletes the group.
        post(&mut admin, &mut r, &leave.envelope);
        assert!(admin.leave_group(&mut r, T0, &gid).unwrap().is_none());
    }
    let leaving = bob
        .records()
        .iter()
        .filter(|rec| rec.id.kind == sotto_core::records::RecordKind::Leaving)
        .count();
    assert_eq!(leaving, limit);
}
