//! The outbox (RX-6): queue order, backoff, one-shot receipts (RX-5), one row per group member
//! (GRP-8) and delivery once every member's receipt is in (GRP-10); parked envelopes (RX-8).

use sotto_core::MessageId;
use sotto_core::{Content, UserId};
use sotto_store::{Backoff, Chat, Hold, MessageState, Store, ToSend};

use crate::common::*;

fn ids(s: &Store, now: u64, limit: usize) -> Vec<MessageId> {
    s.due_outbox(now, limit)
        .unwrap()
        .iter()
        .map(|e| e.message_id)
        .collect()
}

#[test]
fn outbox_is_fifo_and_backs_off_rx_6() {
    let mut r = rng(50);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut s, _) = create(dir.path(), "a.db", &alice);
    let backoff = Backoff {
        first_ms: 1_000,
        max_ms: 4_000,
    };
    s.set_backoff(backoff);
    assert_eq!(s.backoff(), backoff);
    let b = *bob.user_id();
    let m: Vec<_> = (0..3)
        .map(|i| {
            let out = send(&mut alice, &mut r, T0 + i, &b, "m");
            s.commit_outgoing(&mut alice, &out, &text("m"), T0 + i)
                .unwrap();
            out
        })
        .collect();
    assert_eq!(ids(&s, T0 + 2, 10), [m[0].id, m[1].id, m[2].id]);
    assert_eq!(ids(&s, T0, 10), [m[0].id]);
    assert_eq!(ids(&s, T0 + 2, 2), [m[0].id, m[1].id]);
    assert!(ids(&s, T0 - 1, 10).is_empty());
    assert_eq!(s.next_attempt_at().unwrap(), Some(T0));
    let e = &s.due_outbox(T0, 1).unwrap()[0];
    assert_eq!(
        (
            e.recipient,
            &e.envelope,
            e.attempts,
            e.created_at,
            e.until_receipt
        ),
        (b, &m[0].envelope, 0, T0, true)
    );

    // Published: due again after the backoff, behind the rows already waiting.
    assert!(s.mark_published(&m[0].id, &b, T0 + 10).unwrap());
    assert_eq!(
        s.outgoing_state(&m[0].id).unwrap(),
        Some(MessageState::Sent)
    );
    assert_eq!(
        s.outgoing_state(&m[1].id).unwrap(),
        Some(MessageState::Queued)
    );
    assert_eq!(ids(&s, T0 + 10, 10), [m[1].id, m[2].id]);
    assert_eq!(ids(&s, T0 + 1_010, 10), [m[1].id, m[2].id, m[0].id]);
    // A failed publish counts as an attempt too, and stays Queued.
    assert_eq!(
        s.bump_attempt(&m[1].id, &b, T0 + 20).unwrap(),
        Some(T0 + 1_020)
    );
    assert_eq!(
        s.outgoing_state(&m[1].id).unwrap(),
        Some(MessageState::Queued)
    );
    // Doubling up to the cap.
    let mut dues = Vec::new();
    for now in [T0 + 1_010, T0 + 5_000, T0 + 10_000, T0 + 20_000] {
        s.mark_published(&m[0].id, &b, now).unwrap();
        dues.push(
            s.due_outbox(u64::MAX >> 2, 10)
                .unwrap()
                .into_iter()
                .find(|e| e.message_id == m[0].id)
                .unwrap()
                .next_attempt_at
                - now,
        );
    }
    assert_eq!(dues, [2_000, 4_000, 4_000, 4_000]);
    // Refused by the service (BROKER-5): the row stays, is due after the backoff, and says why
    // until a publish is accepted.
    assert!(s.held_outbox().unwrap().is_empty());
    let due = s.hold(&m[2].id, &b, 1, T0 + 30).unwrap();
    assert_eq!(due, Some(Hold::Held { due: T0 + 1_030 }));
    let held = s.held_outbox().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].message_id, held[0].held), (m[2].id, 1));
    assert_eq!(
        s.outgoing_state(&m[2].id).unwrap(),
        Some(MessageState::Queued)
    );
    s.bump_attempt(&m[2].id, &b, T0 + 40).unwrap();
    assert_eq!(
        s.held_outbox().unwrap().len(),
        1,
        "a lost connection keeps the reason"
    );
    s.mark_published(&m[2].id, &b, T0 + 50).unwrap();
    assert!(
        s.held_outbox().unwrap().is_empty(),
        "accepted: no reason left"
    );
    // A resend of an envelope the broker holds, refused: nothing waits on the service.
    assert!(matches!(
        s.hold(&m[2].id, &b, 1, T0 + 60).unwrap(),
        Some(Hold::Resend { .. })
    ));
    assert!(s.held_outbox().unwrap().is_empty());
    // Unknown rows.
    let nobody = UserId([0; 10]);
    assert!(!s.mark_published(&m[0].id, &nobody, T0).unwrap());
    assert_eq!(s.bump_attempt(&m[0].id, &nobody, T0).unwrap(), None);
    assert_eq!(s.hold(&m[0].id, &nobody, 1, T0).unwrap(), None);
    assert_eq!(s.outbox_len().unwrap(), 3);
    // A receipt ends the resending.
    assert!(s.mark_delivered(&m[0].id, &b).unwrap());
    assert_eq!(
        s.outgoing_state(&m[0].id).unwrap(),
        Some(MessageState::Delivered)
    );
    // m[2] was published last (T0 + 50, third attempt): it now waits behind m[1].
    assert_eq!(ids(&s, u64::MAX >> 2, 10), [m[1].id, m[2].id]);
}

#[test]
fn receipts_are_published_once_rx_5() {
    let mut r = rng(51);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut s, _) = create(dir.path(), "a.db", &alice);
    let receipt_content = Content::Receipt(vec![sotto_core::MessageId([3; 16])]);
    let receipt = alice
        .send(&mut r, T0, bob.user_id(), &receipt_content)
        .unwrap();
    s.commit_device(
        &mut alice,
        T0,
        &[ToSend::for_content(&receipt, &receipt_content)],
    )
    .unwrap();
    let due = s.due_outbox(T0, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert!(!due[0].until_receipt);
    // A failed publish keeps it; a successful one removes it.
    s.bump_attempt(&receipt.id, bob.user_id(), T0).unwrap();
    assert_eq!(s.outbox_len().unwrap(), 1);
    s.mark_published(&receipt.id, bob.user_id(), T0 + 1)
        .unwrap();
    assert_eq!(s.outbox_len().unwrap(), 0);
    assert_eq!(s.next_attempt_at().unwrap(), None);
}

#[test]
fn group_message_waits_for_every_members_receipt_grp_8_grp_10() {
    let mut r = rng(52);
    let mut alice = device(&mut r);
    let mut bob = device(&mut r);
    let mut carol = device(&mut r);
    for d in [&bob, &carol] {
        alice
            .add_contact_from_bundle(&d.bundle(Some(1)).unwrap())
            .unwrap();
    }
    let dir = tmp();
    let (mut s, _) = create(dir.path(), "a.db", &alice);
    let (b, c) = (*bob.user_id(), *carol.user_id());
    let (gid, keys) = alice.create_group(&mut r, T0, &[b, c]).unwrap();
    let queue: Vec<_> = keys.iter().map(ToSend::until_receipt).collect();
    s.commit_device(&mut alice, T0, &queue).unwrap();
    assert_eq!(s.outbox_len().unwrap(), 2);
    for k in &keys {
        let member = if k.to == [b] { &mut bob } else { &mut carol };
        member.receive(T0, &k.envelope).unwrap();
    }

    let msg = alice
        .send_group(T0 + 1, &gid, &text("hello group"))
        .unwrap();
    s.commit_outgoing(&mut alice, &msg, &text("hello group"), T0 + 1)
        .unwrap();
    assert_eq!(s.outbox_len().unwrap(), 4, "one row per member");
    assert_eq!(s.pending_recipients(&msg.id).unwrap(), [b, c]);
    s.mark_published(&msg.id, &b, T0 + 2).unwrap();
    assert_eq!(
        s.outgoing_state(&msg.id).unwrap(),
        Some(MessageState::Queued)
    );
    s.mark_published(&msg.id, &c, T0 + 2).unwrap();
    assert_eq!(s.outgoing_state(&msg.id).unwrap(), Some(MessageState::Sent));

    for (i, member) in [&mut bob, &mut carol].into_iter().enumerate() {
        let inc = member.receive(T0 + 3, &msg.envelope).unwrap();
        assert_eq!(inc.group, Some(gid));
        let receipt = member
            .send_group(T0 + 3, &gid, &Content::Receipt(vec![msg.id]))
            .unwrap();
        let rinc = alice.receive(T0 + 4, &receipt.envelope).unwrap();
        assert_eq!(rinc.group, Some(gid));
        s.commit_incoming(&mut alice, &receipt.envelope, &rinc, T0 + 4, &[])
            .unwrap();
        let state = s.outgoing_state(&msg.id).unwrap();
        if i == 0 {
            assert_eq!(s.pending_recipients(&msg.id).unwrap(), [c]);
            assert_eq!(state, Some(MessageState::Sent));
        } else {
            assert!(s.pending_recipients(&msg.id).unwrap().is_empty());
            assert_eq!(state, Some(MessageState::Delivered));
        }
    }
    let shown = s.messages_with(&Chat::Group(gid)).unwrap();
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].text, "hello group");
    // The group keys still wait for their receipts.
    assert_eq!(s.outbox_len().unwrap(), 2);
}

#[test]
fn parked_envelopes_are_bounded_rx_8() {
    let mut r = rng(41);
    let alice = device(&mut r);
    let dir = tmp();
    let (s, path) = create(dir.path(), "a.db", &alice);
    s.close().unwrap();
    // 999 parked already (in one transaction: a thousand fsyncs would make a slow test).
    let limit = sotto_core::limits::MAX_PENDING as u64;
    {
        let mut conn = raw_open(&path, PASS);
        let tx = conn.transaction().unwrap();
        for i in 0..limit - 1 {
            tx.execute(
                "INSERT INTO parked (envelope, parked_at) VALUES (?1, ?2)",
                rusqlite::params![&i.to_be_bytes()[..], (T0 + i) as i64],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut s = sotto_store::Store::open(&path, PASS).unwrap();
    for i in limit - 1..limit + 5 {
        s.park(&i.to_be_bytes(), T0 + i).unwrap();
    }
    // The same envelope again is kept once, under the same handle.
    let again = limit + 4;
    let id = s.parked().unwrap().last().unwrap().id;
    assert_eq!(s.park(&again.to_be_bytes(), T0 + again + 1).unwrap(), id);
    let parked = s.parked().unwrap();
    assert_eq!(parked.len(), sotto_core::limits::MAX_PENDING);
    assert_eq!(
        parked[0].envelope,
        5_u64.to_be_bytes(),
        "the oldest went first"
    );
    assert_eq!(parked[0].parked_at, T0 + 5);
    assert_eq!(parked[999].envelope, (limit + 4).to_be_bytes());
    assert!(s.unpark(parked[0].id).unwrap());
    assert!(!s.unpark(parked[0].id).unwrap());
    assert_eq!(s.parked().unwrap().len(), 999);
    assert!(matches!(
        s.park(&[], T0),
        Err(sotto_store::StoreError::Invalid(_))
    ));
}
