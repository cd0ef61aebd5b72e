//! Groups: the admin's group master key, rekey on add and remove, per-member signatures (GRP-*).

use sotto_core::error::{Error, GroupError, SessionError};
use sotto_core::group::membership::{Member, Membership};
use sotto_core::inner::GroupKey;
use sotto_core::keyshare::KeyShare;
use sotto_core::{Content, Device, Event, GroupId, Outgoing};

use crate::common::*;

struct Three {
    r: rand_chacha::ChaCha20Rng,
    admin: Device,
    bob: Device,
    carol: Device,
}

fn three() -> Three {
    let mut r = rng(30);
    let mut admin = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let mut carol = device(&mut r, 3);
    for (x, y) in [(0, 1), (0, 2), (1, 2)] {
        let devices = [&admin, &bob, &carol];
        let (cx, cy) = (devices[x].card().unwrap(), devices[y].card().unwrap());
        let (dx, dy): (&mut Device, &mut Device) = match (x, y) {
            (0, 1) => (&mut admin, &mut bob),
            (0, 2) => (&mut admin, &mut carol),
            _ => (&mut bob, &mut carol),
        };
        dx.add_contact_from_card(&cy);
        dy.add_contact_from_card(&cx);
    }
    Three {
        r,
        admin,
        bob,
        carol,
    }
}

fn deliver_all(out: &[Outgoing], devices: &mut [&mut Device]) -> Vec<sotto_core::Incoming> {
    let mut got = Vec::new();
    for o in out {
        for to in &o.to {
            if let Some(d) = devices.iter_mut().find(|d| d.user_id() == to) {
                got.push(d.receive(T0, &o.envelope).unwrap());
            }
        }
    }
    got
}

fn create(t: &mut Three) -> GroupId {
    let members = [*t.bob.user_id(), *t.carol.user_id()];
    let (gid, out) = t.admin.create_group(&mut t.r, T0, &members).unwrap();
    assert_eq!(out.len(), 2);
    let got = deliver_all(&out, &mut [&mut t.bob, &mut t.carol]);
    for g in &got {
        assert_eq!(
            g.events,
            vec![Event::GroupKey {
                group: gid,
                epoch: 0
            }]
        );
    }
    gid
}

#[test]
fn members_exchange_signed_group_messages_grp_7() {
    let mut t = three();
    let gid = create(&mut t);
    let m = t
        .bob
        .send_group(T0 + 5000, &gid, &text("hello group"))
        .unwrap();
    assert_eq!(m.envelope[0], 0x14);
    assert_eq!(m.to.len(), 2);
    for d in [&mut t.admin, &mut t.carol] {
        let got = d.receive(T0 + 6000, &m.envelope).unwrap();
        assert_eq!(text_of(&got), "hello group");
        assert_eq!(got.from, *t.bob.user_id());
        assert_eq!(got.group, Some(gid));
        assert_eq!(got.sent_at, T0 + 5000);
        assert_eq!(
            d.receive(T0, &m.envelope).unwrap_err(),
            Error::Session(SessionError::Duplicate)
        );
    }
    // A member's own message echoed back is not delivered to itself.
    assert!(t.bob.receive(T0, &m.envelope).is_err());
}

#[test]
fn removed_member_cannot_read_later_messages_grp_6() {
    let mut t = three();
    let gid = create(&mut t);
    let out = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &t.carol.user_id().clone())
        .unwrap();
    // Bob gets the new key; Carol gets the removal notice.
    let got = deliver_all(&out, &mut [&mut t.bob, &mut t.carol]);
    assert!(got.iter().any(|g| g.events
        == vec![Event::GroupKey {
            group: gid,
            epoch: 1
        }]));
    assert!(
        got.iter()
            .any(|g| g.events == vec![Event::RemovedFromGroup(gid)])
    );
    assert_eq!(t.carol.group_members(&gid), None);
    let secret = t
        .admin
        .send_group(T0, &gid, &text("carol can't see this"))
        .unwrap();
    assert_eq!(secret.to, vec![*t.bob.user_id()]);
    assert_eq!(
        text_of(&t.bob.receive(T0, &secret.envelope).unwrap()),
        "carol can't see this"
    );
    assert_eq!(
        t.carol.receive(T0, &secret.envelope).unwrap_err(),
        Error::Group(GroupError::UnknownGroup)
    );
}

#[test]
fn removed_member_cannot_read_even_if_it_kept_the_old_keys_grp_6() {
    let mut t = three();
    let gid = create(&mut t);
    let carol_before = t.carol.clone();
    let out = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &t.carol.user_id().clone())
        .unwrap();
    deliver_all(&out, &mut [&mut t.bob]);
    let secret = t
        .admin
        .send_group(T0, &gid, &text("after removal"))
        .unwrap();
    // Carol ignores the removal notice and keeps epoch 0: the new epoch's tag is unknown to her.
    let mut carol = carol_before;
    assert_eq!(
        carol.receive(T0, &secret.envelope).unwrap_err(),
        Error::Group(GroupError::UnknownGroup)
    );
    // And a message she sends in the old epoch is refused by the remaining members.
    let from_carol = carol.send_group(T0, &gid, &text("still here?")).unwrap();
    assert_eq!(
        t.bob.receive(T0, &from_carol.envelope).unwrap_err(),
        Error::Group(GroupError::NotAMember)
    );
}

#[test]
fn offline_member_catches_up_after_add_grp_3() {
    let mut t = three();
    let members = [*t.bob.user_id()];
    let (gid, out) = t.admin.create_group(&mut t.r, T0, &members).unwrap();
    deliver_all(&out, &mut [&mut t.bob]);
    // Carol is added while offline; messages pile up in her inbox before she reads the group key.
    let out = t
        .admin
        .add_to_group(&mut t.r, T0, &gid, &t.carol.user_id().clone())
        .unwrap();
    let bob_msg = {
        deliver_all(&out, &mut [&mut t.bob]);
        t.bob
            .send_group(T0 + 1000, &gid, &text("welcome carol"))
            .unwrap()
    };
    let e = t.carol.receive(T0, &bob_msg.envelope).unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let carol_id = *t.carol.user_id();
    for o in out.iter().filter(|o| o.to.contains(&carol_id)) {
        t.carol.receive(T0, &o.envelope).unwrap();
    }
    assert_eq!(
        text_of(&t.carol.receive(T0, &bob_msg.envelope).unwrap()),
        "welcome carol"
    );
    assert_eq!(t.carol.group_members(&gid).unwrap().0, 1);
    // Carol confirms the epoch to the admin (GRP-9).
    let ack = t.carol.group_ack(&mut t.r, T0, &gid).unwrap();
    let got = t.admin.receive(T0, &ack.envelope).unwrap();
    assert_eq!(
        got.events,
        vec![Event::MemberConfirmed {
            group: gid,
            epoch: 1,
            index: 2
        }]
    );
}

#[test]
fn only_the_admin_can_rekey_grp_4() {
    let mut t = three();
    let gid = create(&mut t);
    assert_eq!(
        t.bob
            .remove_from_group(&mut t.r, T0, &gid, &t.carol.user_id().clone())
            .unwrap_err(),
        Error::Group(GroupError::NotGroupAdmin)
    );
    // Bob signs his own membership of the group, naming himself admin, and sends it to Carol.
    let members = vec![
        Member {
            user: *t.bob.user_id(),
            iks: *t.bob.identity().public().iks(),
        },
        Member {
            user: *t.carol.user_id(),
            iks: *t.carol.identity().public().iks(),
        },
    ];
    let forged = Membership::sign(t.bob.identity(), gid, 7, members).unwrap();
    let content = Content::GroupKey(Box::new(GroupKey {
        membership: forged,
        keys: KeyShare::random(&mut t.r, T0),
        handover: None,
    }));
    let o = t
        .bob
        .send(&mut t.r, T0, &t.carol.user_id().clone(), &content)
        .unwrap();
    let got = t.carol.receive(T0, &o.envelope).unwrap();
    assert_eq!(
        got.events,
        vec![Event::Rejected(Error::Group(GroupError::NotGroupAdmin))]
    );
    assert_eq!(t.carol.group_members(&gid).unwrap().0, 0);
    // A membership naming the real admin first but signed by Bob does not even decode.
    let admin_first = vec![
        Member {
            user: *t.admin.user_id(),
            iks: *t.admin.identity().public().iks(),
        },
        Member {
            user: *t.carol.user_id(),
            iks: *t.carol.identity().public().iks(),
        },
    ];
    assert_eq!(
        Membership::sign(t.bob.identity(), gid, 8, admin_first).unwrap_err(),
        Error::Group(GroupError::NotGroupAdmin)
    );
}

#[test]
fn late_removal_notice_does_not_undo_a_later_add_grp_6() {
    // Found by the `group` fuzz target: remove (epoch 1), add back (epoch 2), and the epoch-2 key
    // reaches the member before the epoch-1 removal notice.
    let mut t = three();
    let gid = create(&mut t);
    let carol_id = *t.carol.user_id();
    let removal = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &carol_id)
        .unwrap();
    let add_back = t.admin.add_to_group(&mut t.r, T0, &gid, &carol_id).unwrap();
    for o in add_back.iter().filter(|o| o.to.contains(&carol_id)) {
        // The pairwise chain lets the later message open first (its key is derived ahead).
        t.carol.receive(T0, &o.envelope).unwrap();
    }
    for o in removal.iter().filter(|o| o.to.contains(&carol_id)) {
        let got = t.carol.receive(T0, &o.envelope).unwrap();
        assert_eq!(
            got.events,
            vec![Event::Rejected(Error::Group(GroupError::StaleGroupEpoch))]
        );
    }
    assert_eq!(t.carol.group_members(&gid).unwrap().0, 2);
    let m = t
        .admin
        .send_group(T0, &gid, &text("still with us"))
        .unwrap();
    assert_eq!(
        text_of(&t.carol.receive(T0, &m.envelope).unwrap()),
        "still with us"
    );
}

#[test]
fn late_old_group_key_does_not_readmit_a_removed_member_grp_6() {
    let mut t = three();
    let (bob_id, carol_id) = (*t.bob.user_id(), *t.carol.user_id());
    let (gid, e0) = t
        .admin
        .create_group(&mut t.r, T0, &[bob_id, carol_id])
        .unwrap();
    let e1 = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &bob_id)
        .unwrap();
    let e2 = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &carol_id)
        .unwrap();
    let to_carol = |out: &[Outgoing]| -> Vec<Vec<u8>> {
        out.iter()
            .filter(|o| o.to.contains(&carol_id))
            .map(|o| o.envelope.clone())
            .collect()
    };
    // Carol holds epoch 0, reads her removal (epoch 2), and only then the epoch-1 key.
    for env in to_carol(&e0) {
        t.carol.receive(T0, &env).unwrap();
    }
    let late_key = to_carol(&e1);
    for env in to_carol(&e2) {
        let got = t.carol.receive(T0, &env).unwrap();
        assert_eq!(got.events, vec![Event::RemovedFromGroup(gid)]);
    }
    for env in late_key {
        let got = t.carol.receive(T0, &env).unwrap();
        assert_eq!(
            got.events,
            vec![Event::Rejected(Error::Group(GroupError::StaleGroupEpoch))]
        );
    }
    assert_eq!(t.carol.group_members(&gid), None);
}

fn rejected(i: &sotto_core::Incoming) -> Vec<&'static str> {
    i.events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected(err) => Some(err.code()),
            _ => None,
        })
        .collect()
}

/// GRP-9: the admin takes a member's ack; an ack for another member's index, with a wrong
/// confirmation, or sent to a member who is not the admin is refused (the message is committed,
/// the control is not applied).
#[test]
fn acks_are_taken_by_the_admin_only_from_their_member_grp_9() {
    let mut t = three();
    let gid = create(&mut t);
    let ack = t.bob.group_ack(&mut t.r, T0, &gid).unwrap();
    let got = t.admin.receive(T0, &ack.envelope).unwrap();
    let Content::GroupAck(bobs) = got.content else {
        panic!("not an ack: {:?}", got.content);
    };
    assert!(
        matches!(got.events[..], [Event::MemberConfirmed { group, index, .. }] if group == gid && index == bobs.index)
    );
    // Carol claims Bob's index.
    let as_bob = Content::GroupAck(bobs);
    let admin_id = *t.admin.user_id();
    let forged = t.carol.send(&mut t.r, T0, &admin_id, &as_bob).unwrap();
    assert_eq!(
        rejected(&t.admin.receive(T0, &forged.envelope).unwrap()),
        ["not_a_member"]
    );
    // Bob's own index with a wrong confirmation.
    let mut wrong = bobs;
    wrong.confirm[0] ^= 1;
    let forged = t
        .bob
        .send(&mut t.r, T0, &admin_id, &Content::GroupAck(wrong))
        .unwrap();
    assert_eq!(
        rejected(&t.admin.receive(T0, &forged.envelope).unwrap()),
        ["not_a_member"]
    );
    // Carol's genuine ack sent to Bob, who is not the admin.
    let carols = t.carol.group_ack(&mut t.r, T0, &gid).unwrap();
    let Content::GroupAck(carols) = t.admin.receive(T0, &carols.envelope).unwrap().content else {
        panic!("not an ack");
    };
    let bob_id = *t.bob.user_id();
    let misdirected = t
        .carol
        .send(&mut t.r, T0, &bob_id, &Content::GroupAck(carols))
        .unwrap();
    assert_eq!(
        rejected(&t.bob.receive(T0, &misdirected.envelope).unwrap()),
        ["not_a_member"]
    );
}

/// GRP-6: a removal notice whose membership still lists the receiver is refused, and the
/// receiver stays in the group; one signed by someone other than the admin likewise (GRP-4).
#[test]
fn a_removal_notice_listing_the_receiver_or_not_from_the_admin_is_refused_grp_6_grp_4() {
    let mut t = three();
    let gid = create(&mut t);
    let member = |d: &Device| Member {
        user: *d.user_id(),
        iks: *d.identity().public().iks(),
    };
    let all = vec![member(&t.admin), member(&t.bob), member(&t.carol)];
    let listing_bob = Membership::sign(t.admin.identity(), gid, 1, all.clone()).unwrap();
    let bob_id = *t.bob.user_id();
    let notice = Content::GroupRemoved(Box::new(listing_bob));
    let out = t.admin.send(&mut t.r, T0, &bob_id, &notice).unwrap();
    assert_eq!(
        rejected(&t.bob.receive(T0, &out.envelope).unwrap()),
        ["not_a_member"]
    );
    assert!(t.bob.group_members(&gid).is_some());
    // Carol signs a notice for the admin's group without Bob and sends it herself.
    let by_carol = Membership::sign(
        t.carol.identity(),
        gid,
        1,
        vec![member(&t.carol), member(&t.admin)],
    )
    .unwrap();
    let out = t
        .carol
        .send(
            &mut t.r,
            T0,
            &bob_id,
            &Content::GroupRemoved(Box::new(by_carol)),
        )
        .unwrap();
    assert_eq!(
        rejected(&t.bob.receive(T0, &out.envelope).unwrap()),
        ["not_group_admin"]
    );
    assert!(t.bob.group_members(&gid).is_some());
    assert_eq!(t.bob.groups().collect::<Vec<_>>(), [&gid]);
}

/// Changing one group leaves the routing of the device's other groups alone: after Carol is
/// removed from one group (Bob rekeys it, Carol leaves it), both still open the other's messages.
#[test]
fn a_change_to_one_group_keeps_the_other_groups_tags() {
    let mut t = three();
    let first = create(&mut t);
    let second = create(&mut t);
    let carol_id = *t.carol.user_id();
    let out = t
        .admin
        .remove_from_group(&mut t.r, T0, &first, &carol_id)
        .unwrap();
    deliver_all(&out, &mut [&mut t.bob, &mut t.carol]);
    let m = t
        .admin
        .send_group(T0, &second, &text("still here"))
        .unwrap();
    assert_eq!(
        text_of(&t.bob.receive(T0, &m.envelope).unwrap()),
        "still here"
    );
    assert_eq!(
        text_of(&t.carol.receive(T0, &m.envelope).unwrap()),
        "still here"
    );
}

/// LIM-18: a device holds at most 256 groups; a group key that would add one more is refused.
#[test]
fn a_device_holds_at_most_lim_18_groups() {
    let mut t = three();
    let bob_id = *t.bob.user_id();
    for _ in 0..sotto_core::limits::MAX_GROUPS {
        let (_, out) = t.admin.create_group(&mut t.r, T0, &[bob_id]).unwrap();
        deliver_all(&out, &mut [&mut t.bob]);
    }
    assert_eq!(t.bob.groups().count(), sotto_core::limits::MAX_GROUPS);
    let admin_id = *t.admin.user_id();
    let (_, out) = t
        .carol
        .create_group(&mut t.r, T0, &[admin_id, *t.bob.user_id()])
        .unwrap();
    let to_bob = out.iter().find(|o| o.to == [*t.bob.user_id()]).unwrap();
    assert_eq!(
        rejected(&t.bob.receive(T0, &to_bob.envelope).unwrap()),
        ["limit_reached"]
    );
    assert_eq!(t.bob.groups().count(), sotto_core::limits::MAX_GROUPS);
}

/// GRP-4: a group key for a new group whose membership someone other than its sender signed is
/// refused (`not_group_admin`) and installs nothing.
#[test]
fn a_group_key_signed_by_someone_else_than_its_sender_is_refused_grp_4() {
    let mut t = three();
    let member = |d: &Device| Member {
        user: *d.user_id(),
        iks: *d.identity().public().iks(),
    };
    let carols = Membership::sign(
        t.carol.identity(),
        GroupId([7; 16]),
        0,
        vec![member(&t.carol), member(&t.bob)],
    )
    .unwrap();
    let key = Content::GroupKey(Box::new(GroupKey {
        membership: carols,
        keys: KeyShare::random(&mut t.r, T0),
        handover: None,
    }));
    let bob_id = *t.bob.user_id();
    let out = t.admin.send(&mut t.r, T0, &bob_id, &key).unwrap();
    assert_eq!(
        rejected(&t.bob.receive(T0, &out.envelope).unwrap()),
        ["not_group_admin"]
    );
    assert_eq!(t.bob.groups().count(), 0);
}

/// GRP-2, CARD-4: a group message carries the trust of its sender as a contact when the key the
/// admin signed into the membership is the contact's key: Carol, whose card Bob scanned, is
/// verified in the group too.
#[test]
fn a_group_message_from_a_verified_contact_is_verified() {
    let mut t = three();
    let gid = create(&mut t);
    let m = t.carol.send_group(T0, &gid, &text("from carol")).unwrap();
    let got = t.bob.receive(T0, &m.envelope).unwrap();
    assert_eq!(text_of(&got), "from carol");
    assert_eq!(got.trust, sotto_core::Trust::Verified);
    assert_eq!(got.identity, *t.carol.identity().public().iks());
}

/// GRP-2, CARD-4: a group member is known by the key the admin signed into the membership. When
/// that key is not the one Bob holds for the same user id (here a second identity under Carol's
/// user id, which the admin added), the message is from that key and unverified, whatever Bob's
/// trust in his contact Carol.
#[test]
fn a_group_member_whose_key_is_not_the_contacts_is_unverified_grp_2() {
    let mut t = three();
    let other = sotto_core::Identity::generate(&mut t.r);
    let spk = other.new_signed_prekey(&mut t.r, 1);
    let mut carol2 = Device::from_keys(*t.carol.user_id(), other, spk);
    // The admin knows only the second identity under Carol's user id.
    t.admin.replace_contact(&carol2.card().unwrap().bundle());
    carol2.add_contact_from_card(&t.admin.card().unwrap());
    let members = [*t.bob.user_id(), *carol2.user_id()];
    let (gid, out) = t.admin.create_group(&mut t.r, T0, &members).unwrap();
    deliver_all(&out, &mut [&mut t.bob, &mut carol2]);
    let m = carol2
        .send_group(T0, &gid, &text("from the other key"))
        .unwrap();
    let got = t.bob.receive(T0, &m.envelope).unwrap();
    assert_eq!(text_of(&got), "from the other key");
    assert_eq!(got.from, *t.carol.user_id());
    assert_eq!(got.identity, *carol2.identity().public().iks());
    assert_ne!(got.identity, *t.carol.identity().public().iks());
    assert_eq!(got.trust, sotto_core::Trust::Unverified);
    t.bob.check_routing_index().unwrap();
}

/// LIM-18: a device remembers at most 256 removals; a 257th forgets one, whose late group key
/// then installs the group again, while the 256 remembered ones stay refused
/// (`stale_group_epoch`, GRP-6).
#[test]
fn a_device_remembers_at_most_lim_18_removals() {
    let mut t = three();
    let (bob_id, carol_id) = (*t.bob.user_id(), *t.carol.user_id());
    let to_bob = |out: &[Outgoing]| -> Vec<Vec<u8>> {
        out.iter()
            .filter(|o| o.to.contains(&bob_id))
            .map(|o| o.envelope.clone())
            .collect()
    };
    let mut late_keys = Vec::new();
    // An admin holds at most LIM-18 groups too: a new admin for every 128 groups.
    let mut admin = Device::new(&mut t.r, sotto_core::UserId([9; 10]));
    for i in 0..=sotto_core::limits::MAX_GROUPS {
        if i % 128 == 0 {
            admin = device(&mut t.r, 10 + (i / 128) as u8);
            scan(&mut admin, &t.bob);
            scan(&mut admin, &t.carol);
            scan(&mut t.bob, &admin);
        }
        let (gid, e0) = admin
            .create_group(&mut t.r, T0, &[bob_id, carol_id])
            .unwrap();
        let e1 = admin
            .remove_from_group(&mut t.r, T0, &gid, &carol_id)
            .unwrap();
        let e2 = admin
            .remove_from_group(&mut t.r, T0, &gid, &bob_id)
            .unwrap();
        for env in to_bob(&e0) {
            t.bob.receive(T0, &env).unwrap();
        }
        for env in to_bob(&e2) {
            let got = t.bob.receive(T0, &env).unwrap();
            assert_eq!(got.events, vec![Event::RemovedFromGroup(gid)]);
        }
        late_keys.extend(to_bob(&e1));
    }
    assert_eq!(t.bob.groups().count(), 0);
    let mut installed = 0;
    for env in late_keys {
        let got = t.bob.receive(T0, &env).unwrap();
        match got.events.as_slice() {
            [Event::GroupKey { epoch: 1, .. }] => installed += 1,
            [Event::Rejected(Error::Group(GroupError::StaleGroupEpoch))] => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        installed, 1,
        "exactly the forgotten removal's group comes back"
    );
    t.bob.check_routing_index().unwrap();
}

fn skipped_keys_held(d: &Device) -> usize {
    d.held_secrets()
        .iter()
        .filter(|s| s.label.contains("skipped message key"))
        .count()
}

/// What the wiretap searches for (`held_secrets`, feature `test-utils`) follows the state: every
/// class of secret while a session and a group run, a skipped key of each while its message is
/// missing, none once the message came, and none of a group epoch the device no longer keeps.
#[test]
fn held_secrets_follow_the_state() {
    use sotto_core::device::SecretClass;
    let mut t = three();
    let gid = create(&mut t);
    let c1 = send(&mut t.carol, &mut t.r, T0, &t.bob, "one");
    let c2 = send(&mut t.carol, &mut t.r, T0, &t.bob, "two");
    let g1 = t.carol.send_group(T0, &gid, &text("g one")).unwrap();
    let g2 = t.carol.send_group(T0, &gid, &text("g two")).unwrap();
    assert_eq!(skipped_keys_held(&t.bob), 0);
    t.bob.receive(T0, &c2.envelope).unwrap();
    t.bob.receive(T0, &g2.envelope).unwrap();
    // Bob's answer starts his epoch: its ratchet secret is held until Carol answers it.
    send(&mut t.bob, &mut t.r, T0, &t.carol, "answer");
    let held = t.bob.held_secrets();
    let classes: std::collections::BTreeSet<SecretClass> = held.iter().map(|s| s.class).collect();
    assert_eq!(classes, SecretClass::ALL.into_iter().collect());
    assert!(
        held.iter()
            .all(|s| s.bytes.len() >= 16 && s.bytes.iter().any(|b| *b != 0))
    );
    assert_eq!(skipped_keys_held(&t.bob), 2);
    t.bob.receive(T0, &c1.envelope).unwrap();
    t.bob.receive(T0, &g1.envelope).unwrap();
    assert_eq!(skipped_keys_held(&t.bob), 0);
    // A skipped group key of epoch 0 goes with the epoch (two epochs are kept).
    let _g3 = t.carol.send_group(T0, &gid, &text("g three")).unwrap();
    let g4 = t.carol.send_group(T0, &gid, &text("g four")).unwrap();
    t.bob.receive(T0, &g4.envelope).unwrap();
    assert_eq!(skipped_keys_held(&t.bob), 1);
    let carol_id = *t.carol.user_id();
    let e1 = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &carol_id)
        .unwrap();
    deliver_all(&e1, &mut [&mut t.bob]);
    assert_eq!(skipped_keys_held(&t.bob), 1, "epoch 0 is still kept");
    let e2 = t.admin.add_to_group(&mut t.r, T0, &gid, &carol_id).unwrap();
    deliver_all(&e2, &mut [&mut t.bob]);
    assert_eq!(skipped_keys_held(&t.bob), 0, "epoch 0 is gone");
}

/// LIM-1, IN-4: a group message is 11 header bytes, the 64-byte signature, the inner plaintext
/// and the 16-byte tag; padded to 8101 bytes it is exactly 8192 and goes, padded to 8102 it is
/// `too_large` and the chain does not move.
#[test]
fn a_group_message_of_exactly_lim_1_bytes_goes_one_more_is_too_large_lim_1() {
    let mut t = three();
    let gid = create(&mut t);
    t.carol.set_padding(8102);
    assert_eq!(
        t.carol
            .send_group(T0, &gid, &text("too big"))
            .unwrap_err()
            .code(),
        "too_large"
    );
    t.carol.set_padding(8101);
    let m = t.carol.send_group(T0, &gid, &text("just fits")).unwrap();
    assert_eq!(m.envelope.len(), sotto_core::limits::MAX_ENVELOPE);
    assert_eq!(
        text_of(&t.bob.receive(T0, &m.envelope).unwrap()),
        "just fits"
    );
    assert_eq!(
        skipped_keys_held(&t.bob),
        0,
        "the refused message used no counter"
    );
}

/// GRP-4: a device keeps two group epochs; a key for an epoch older than both, arriving late, is
/// `stale_group_epoch` and changes nothing.
#[test]
fn a_key_older_than_the_epochs_kept_is_stale_grp_4() {
    let mut t = three();
    let (bob_id, carol_id) = (*t.bob.user_id(), *t.carol.user_id());
    let (gid, e0) = t
        .admin
        .create_group(&mut t.r, T0, &[bob_id, carol_id])
        .unwrap();
    let e1 = t
        .admin
        .remove_from_group(&mut t.r, T0, &gid, &carol_id)
        .unwrap();
    let e2 = t.admin.add_to_group(&mut t.r, T0, &gid, &carol_id).unwrap();
    // Bob reads epochs 1 and 2 first, then the key of epoch 0.
    deliver_all(&e1, &mut [&mut t.bob]);
    deliver_all(&e2, &mut [&mut t.bob]);
    assert_eq!(t.bob.group_members(&gid).unwrap().0, 2);
    let late = deliver_all(&e0, &mut [&mut t.bob]);
    assert_eq!(late.len(), 1);
    assert_eq!(
        late[0].events,
        vec![Event::Rejected(Error::Group(GroupError::StaleGroupEpoch))]
    );
    assert_eq!(t.bob.group_members(&gid).unwrap().0, 2);
    t.bob.check_routing_index().unwrap();
}

/// STORE-1: a device with groups (held, and left) restores from its exported state to the same
/// state, and its group conversations go on.
#[test]
fn a_device_with_groups_restores_and_goes_on() {
    let mut t = three();
    let gid = create(&mut t);
    let bob_id = *t.bob.user_id();
    let (left, out) = t.admin.create_group(&mut t.r, T0, &[bob_id]).unwrap();
    deliver_all(&out, &mut [&mut t.bob]);
    let removal = t
        .admin
        .remove_from_group(&mut t.r, T0, &left, &bob_id)
        .unwrap();
    deliver_all(&removal, &mut [&mut t.bob]);
    let g1 = t.carol.send_group(T0, &gid, &text("before")).unwrap();
    let _skipped = t.carol.send_group(T0, &gid, &text("skipped")).unwrap();
    let g3 = t.carol.send_group(T0, &gid, &text("after")).unwrap();
    t.bob.receive(T0, &g1.envelope).unwrap();
    // And an unverified contact: a stranger's first message.
    let mut stranger = device(&mut t.r, 9);
    scan(&mut stranger, &t.bob);
    let hello = send(&mut stranger, &mut t.r, T0, &t.bob, "hello");
    assert_eq!(
        t.bob.receive(T0, &hello.envelope).unwrap().trust,
        sotto_core::Trust::Unverified
    );
    let state = t.bob.export();
    let mut restored = Device::import(&state).unwrap();
    assert_eq!(restored.export().as_slice(), state.as_slice());
    assert_eq!(
        restored.groups().collect::<Vec<_>>(),
        t.bob.groups().collect::<Vec<_>>()
    );
    assert_eq!(restored.group_members(&gid), t.bob.group_members(&gid));
    restored.check_routing_index().unwrap();
    assert_eq!(
        text_of(&restored.receive(T0, &g3.envelope).unwrap()),
        "after"
    );
    assert_eq!(skipped_keys_held(&restored), 1);
    let m = restored
        .send_group(T0, &gid, &text("from restored bob"))
        .unwrap();
    assert_eq!(
        text_of(&t.carol.receive(T0, &m.envelope).unwrap()),
        "from restored bob"
    );
}
