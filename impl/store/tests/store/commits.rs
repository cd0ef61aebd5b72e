//! One transaction per state change and what it concerns (STORE-3, RX-4), receipts (RX-5, RX-6),
//! duplicates, and what a failed or interrupted commit leaves behind.

use sotto_core::{Content, Outgoing, Trust};
use sotto_store::{
    Burst, Chat, Direction, MessageState, Opened, ReceivedRef, Store, StoreError, ToSend,
};

use crate::common::*;

#[test]
fn conversation_commits_state_message_and_receipt_together_rx_4_rx_5() {
    let mut r = rng(10);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut sa, _) = create(dir.path(), "alice.db", &alice);
    let (mut sb, _) = create(dir.path(), "bob.db", &bob);

    let out = send(&mut alice, &mut r, T0, bob.user_id(), "hi bob");
    sa.commit_outgoing(&mut alice, &out, &text("hi bob"), T0)
        .unwrap();
    assert_eq!(
        sa.outgoing_state(&out.id).unwrap(),
        Some(MessageState::Queued)
    );
    assert!(sa.mark_published(&out.id, bob.user_id(), T0 + 1).unwrap());
    assert_eq!(
        sa.outgoing_state(&out.id).unwrap(),
        Some(MessageState::Sent)
    );

    // Bob: the message, his new state and the receipt in one commit.
    let (inc, receipt) = receive(&mut bob, &mut r, T0 + 2, &out);
    assert!(
        sb.commit_incoming(
            &mut bob,
            &out.envelope,
            &inc,
            T0 + 3,
            &[ToSend::once(&receipt)]
        )
        .unwrap()
    );
    assert_eq!(*sb.load_device().unwrap().export(), *bob.export());
    let msgs = sb.messages_with(&Chat::User(*alice.user_id())).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].text, "hi bob");
    assert_eq!(msgs[0].direction, Direction::In);
    assert_eq!(msgs[0].sender, Some(*alice.user_id()));
    assert_eq!(msgs[0].received_at, Some(T0 + 3));
    assert_eq!(msgs[0].state, MessageState::Received);
    // RX-9: Alice became an unverified contact of Bob, listed from that commit on.
    let contacts = sb.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        (contacts[0].user, contacts[0].trust, contacts[0].added_at),
        (*alice.user_id(), Trust::Unverified, T0 + 3)
    );
    // The receipt waits in Bob's outbox until published once, then leaves (RX-5).
    let due = sb.due_outbox(T0 + 3, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].envelope, receipt.envelope);
    assert!(!due[0].until_receipt);
    assert!(
        sb.mark_published(&receipt.id, alice.user_id(), T0 + 4)
            .unwrap()
    );
    assert_eq!(sb.outbox_len().unwrap(), 0);

    assert_eq!(sb.unread().unwrap().len(), 1);
    assert_eq!(sb.mark_read(&Chat::User(*alice.user_id())).unwrap(), 1);
    assert_eq!(sb.unread().unwrap().len(), 0);
    assert_eq!(
        sb.messages_with(&Chat::User(*alice.user_id())).unwrap()[0].state,
        MessageState::Read
    );

    // Alice: the receipt removes the outbox row and marks the message delivered.
    let rinc = alice.receive(T0 + 5, &receipt.envelope).unwrap();
    assert!(matches!(rinc.content, Content::Receipt(_)));
    sa.commit_incoming(&mut alice, &receipt.envelope, &rinc, T0 + 5, &[])
        .unwrap();
    assert_eq!(sa.outbox_len().unwrap(), 0);
    assert_eq!(
        sa.outgoing_state(&out.id).unwrap(),
        Some(MessageState::Delivered)
    );
    // A receipt is not a message.
    assert_eq!(
        sa.messages_with(&Chat::User(*bob.user_id())).unwrap().len(),
        1
    );
    // A second copy of the receipt changes nothing.
    assert!(!sa.mark_delivered(&out.id, bob.user_id()).unwrap());
}

/// A loop turn: what arrived (a message and the PUBACK of a row) and what the app sent meanwhile
/// (a reply) are one transaction; a failed one writes none of them.
#[test]
fn a_burst_commits_the_texts_sent_in_its_turn_rx_4_rx_6() {
    let mut r = rng(11);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut sb, _) = create(dir.path(), "bob.db", &bob);
    let hello = send(&mut alice, &mut r, T0, bob.user_id(), "hello");
    let (inc, _) = receive(&mut bob, &mut r, T0, &hello);
    sb.commit_incoming(&mut bob, &hello.envelope, &inc, T0, &[])
        .unwrap();
    let first = send(&mut bob, &mut r, T0, alice.user_id(), "are you there");
    sb.commit_outgoing(&mut bob, &first, &text("are you there"), T0)
        .unwrap();

    let out = send(&mut alice, &mut r, T0, bob.user_id(), "hi bob");
    let (inc, receipt) = receive(&mut bob, &mut r, T0 + 1, &out);
    let reply = send(&mut bob, &mut r, T0 + 1, alice.user_id(), "hi alice");
    let (reply_text, receipt_to) = (text("hi alice"), alice.user_id());
    let burst = Burst {
        opened: vec![Opened {
            envelope: &out.envelope,
            incoming: &inc,
        }],
        queue: vec![ToSend::once(&receipt)],
        published: vec![(first.id, *receipt_to)],
        sent: vec![(&reply, &reply_text)],
        ..Burst::default()
    };
    assert_eq!(
        sb.commit_burst(&mut bob, &burst, T0 + 2).unwrap().fresh,
        [true]
    );

    let chat = sb.messages_with(&Chat::User(*alice.user_id())).unwrap();
    let texts: Vec<(&str, MessageState)> = chat.iter().map(|m| (&m.text[..], m.state)).collect();
    assert_eq!(
        texts,
        [
            ("hello", MessageState::Received),
            ("are you there", MessageState::Sent),
            ("hi bob", MessageState::Received),
            ("hi alice", MessageState::Queued),
        ]
    );
    let due = sb.due_outbox(T0 + 2, 10).unwrap();
    let ids: Vec<_> = due
        .iter()
        .map(|e| (e.message_id, e.until_receipt))
        .collect();
    assert_eq!(ids, [(receipt.id, false), (reply.id, true)]);
    assert_eq!(*sb.load_device().unwrap().export(), *bob.export());

    // A burst whose sent text names no recipient fails whole: nothing of it is written.
    let mut bad = send(&mut bob, &mut r, T0 + 3, alice.user_id(), "lost");
    bad.to.clear();
    let burst = Burst {
        published: vec![(reply.id, *receipt_to)],
        sent: vec![(&bad, &reply_text)],
        ..Burst::default()
    };
    assert!(sb.commit_burst(&mut bob, &burst, T0 + 3).is_err());
    assert_eq!(
        sb.messages_with(&Chat::User(*alice.user_id()))
            .unwrap()
            .len(),
        4
    );
    assert_eq!(
        sb.outgoing_state(&reply.id).unwrap(),
        Some(MessageState::Queued)
    );
}

#[test]
fn duplicate_incoming_is_a_no_op_rx_4() {
    let mut r = rng(11);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut sb, _) = create(dir.path(), "bob.db", &bob);
    let out = send(&mut alice, &mut r, T0, bob.user_id(), "once only");
    let (inc, receipt) = receive(&mut bob, &mut r, T0 + 1, &out);
    assert!(
        sb.commit_incoming(
            &mut bob,
            &out.envelope,
            &inc,
            T0 + 1,
            &[ToSend::once(&receipt)]
        )
        .unwrap()
    );
    // The same message committed again (a restored state, or a shell retrying its commit).
    let again = bob
        .send(
            &mut r,
            T0 + 2,
            alice.user_id(),
            &Content::Receipt(vec![inc.id]),
        )
        .unwrap();
    assert!(
        !sb.commit_incoming(
            &mut bob,
            &out.envelope,
            &inc,
            T0 + 2,
            &[ToSend::once(&again)]
        )
        .unwrap()
    );
    assert_eq!(
        sb.messages_with(&Chat::User(*alice.user_id()))
            .unwrap()
            .len(),
        1
    );
    // The state and the repeated receipt were still saved (RX-3, RX-6).
    assert_eq!(*sb.load_device().unwrap().export(), *bob.export());
    assert_eq!(sb.outbox_len().unwrap(), 2);

    // RX-6: the sender resends the identical envelope; the core calls it a duplicate and the
    // store says which message it was, so the receipt can be sent again.
    let err = bob.receive(T0 + 3, &out.envelope).unwrap_err();
    assert_eq!(err.code(), "duplicate");
    assert_eq!(
        sb.received_by_envelope(&out.envelope).unwrap(),
        Some(ReceivedRef {
            id: out.id,
            from: *alice.user_id(),
            group: None
        })
    );
    assert_eq!(sb.received_by_envelope(b"something else").unwrap(), None);
}

#[test]
fn failed_commit_leaves_the_previous_state_store_3() {
    let mut r = rng(12);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut sa, path) = create(dir.path(), "alice.db", &alice);
    let first = send(&mut alice, &mut r, T0, bob.user_id(), "first");
    sa.commit_outgoing(&mut alice, &first, &text("first"), T0)
        .unwrap();
    let committed = alice.export();

    // The next commit fails at its last statement: the second outbox row repeats the first's
    // (message id, recipient), after the device state and the message row were written.
    let mut second = send(&mut alice, &mut r, T0 + 1, bob.user_id(), "second");
    assert_ne!(*alice.export(), *committed);
    second.to = vec![*bob.user_id(), *bob.user_id()];
    let group_like = Outgoing {
        group: Some(sotto_core::GroupId([9; 16])),
        ..second
    };
    let err = sa
        .commit_outgoing(&mut alice, &group_like, &text("second"), T0 + 1)
        .unwrap_err();
    assert!(matches!(err, StoreError::Sqlite(_)), "{err:?}");
    assert_eq!(*sa.load_device().unwrap().export(), *committed);
    assert_eq!(
        sa.messages_with(&Chat::User(*bob.user_id())).unwrap().len(),
        1
    );
    assert!(
        sa.messages_with(&Chat::Group(sotto_core::GroupId([9; 16])))
            .unwrap()
            .is_empty()
    );
    assert_eq!(sa.outbox_len().unwrap(), 1);
    sa.close().unwrap();
    let sa = Store::open(&path, PASS).unwrap();
    assert_eq!(*sa.load_device().unwrap().export(), *committed);
}

#[test]
fn misuse_is_refused_before_anything_is_written() {
    let mut r = rng(13);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut sa, _) = create(dir.path(), "alice.db", &alice);
    let out = send(&mut alice, &mut r, T0, bob.user_id(), "x");
    // Another device's state.
    assert!(matches!(
        sa.commit_outgoing(&mut bob, &out, &text("x"), T0),
        Err(StoreError::WrongDevice)
    ));
    // Envelopes above LIM-1, empty envelopes.
    for len in [0, 8193] {
        let bad = Outgoing {
            envelope: vec![0; len],
            ..out.clone()
        };
        assert!(matches!(
            sa.commit_outgoing(&mut alice, &bad, &text("x"), T0),
            Err(StoreError::Invalid(_))
        ));
    }
    // A pairwise message to nobody.
    let nobody = Outgoing {
        to: vec![],
        ..out.clone()
    };
    assert!(matches!(
        sa.commit_outgoing(&mut alice, &nobody, &text("x"), T0),
        Err(StoreError::Invalid(_))
    ));
    // A time the store cannot hold.
    assert!(matches!(
        sa.commit_device(&mut alice, u64::MAX, &[]),
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(sa.outbox_len().unwrap(), 0);
    assert!(
        sa.messages_with(&Chat::User(*bob.user_id()))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn commit_device_saves_state_changes_and_mirrors_trust() {
    let mut r = rng(14);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut sa, _) = create(dir.path(), "alice.db", &alice);
    sa.set_contact_name(bob.user_id(), Some("B")).unwrap();
    alice.mark_verified(bob.user_id()).unwrap();
    sa.commit_device(&mut alice, T0 + 10, &[]).unwrap();
    let c = sa.contact(bob.user_id()).unwrap().unwrap();
    assert_eq!(c.trust, Trust::Verified);
    assert_eq!(
        c.name.as_deref(),
        Some("B"),
        "the name survives the trust change"
    );
    assert_eq!(
        c.added_at, T0,
        "added_at is the first commit that listed the contact"
    );
    assert_eq!(*sa.load_device().unwrap().export(), *alice.export());
    assert!(
        !sa.set_contact_name(&sotto_core::UserId([0; 10]), Some("x"))
            .unwrap()
    );
    assert!(matches!(
        sa.set_contact_name(bob.user_id(), Some(&"n".repeat(257))),
        Err(StoreError::Invalid(_))
    ));
}

/// A different envelope that repeats a delivered id (a sender reusing one; the core reports it,
/// RX-7) saves no second message and no `received` row, but the state is still committed.
#[test]
fn a_repeated_id_is_not_saved_again_rx_7() {
    let mut r = rng(16);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut sb, _) = create(dir.path(), "bob.db", &bob);
    let first = send(&mut alice, &mut r, T0, bob.user_id(), "first");
    let (inc, _) = receive(&mut bob, &mut r, T0 + 1, &first);
    assert!(!inc.repeats_a_delivered_id());
    assert!(
        sb.commit_incoming(&mut bob, &first.envelope, &inc, T0 + 1, &[])
            .unwrap()
    );
    let second = send(&mut alice, &mut r, T0 + 2, bob.user_id(), "second");
    let (mut repeat, _) = receive(&mut bob, &mut r, T0 + 3, &second);
    repeat.id = inc.id;
    repeat.events.push(sotto_core::Event::Rejected(
        sotto_core::error::SessionError::Duplicate.into(),
    ));
    assert!(repeat.repeats_a_delivered_id());
    assert!(
        !sb.commit_incoming(&mut bob, &second.envelope, &repeat, T0 + 3, &[])
            .unwrap()
    );
    let texts: Vec<String> = sb
        .messages_with(&Chat::User(*alice.user_id()))
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["first"]);
    assert_eq!(sb.received_by_envelope(&second.envelope).unwrap(), None);
    assert_eq!(*sb.load_device().unwrap().export(), *bob.export());
}

/// A crash in the middle of a commit: the files as they are while a transaction has written (and
/// spilled) uncommitted pages to the write-ahead log, after a committed one that is only in the
/// log. Opening that image keeps the committed transaction and ignores the rest: the store is as
/// it was before the interrupted transaction (STORE-3).
#[test]
fn crash_during_a_commit_rolls_back_on_open_store_3() {
    let mut r = rng(15);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut sa, path) = create(dir.path(), "alice.db", &alice);
    let out = send(&mut alice, &mut r, T0, bob.user_id(), "kept");
    sa.commit_outgoing(&mut alice, &out, &text("kept"), T0)
        .unwrap();
    sa.close().unwrap();
    let before = std::fs::read(&path).unwrap();

    let conn = raw_open(&path, PASS);
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = 2;")
        .unwrap();
    conn.execute("INSERT INTO kv VALUES ('committed', x'01')", [])
        .unwrap();
    conn.execute_batch("BEGIN IMMEDIATE;").unwrap();
    conn.execute("UPDATE device SET state = ?1", [vec![0xab_u8; 200_000]])
        .unwrap();
    conn.execute("DELETE FROM messages", []).unwrap();
    conn.execute("DELETE FROM outbox", []).unwrap();
    // The crash image.
    let image = tmp();
    for (p, bytes) in files(dir.path()) {
        std::fs::write(image.path().join(p.file_name().unwrap()), bytes).unwrap();
    }
    drop(conn);
    let crashed = image.path().join("alice.db");
    assert_eq!(
        std::fs::read(&crashed).unwrap(),
        before,
        "the database file is as the last checkpoint left it"
    );
    let wal = std::fs::metadata(image.path().join("alice.db-wal")).unwrap();
    assert!(wal.len() > 200_000, "uncommitted pages spilled to the log");

    let sa = Store::open(&crashed, PASS).unwrap();
    assert_eq!(*sa.load_device().unwrap().export(), *alice.export());
    assert_eq!(
        sa.messages_with(&Chat::User(*bob.user_id())).unwrap().len(),
        1
    );
    assert_eq!(sa.outbox_len().unwrap(), 1);
    sa.close().unwrap();
    let conn = raw_open(&crashed, PASS);
    let committed: Vec<u8> = conn
        .query_row("SELECT value FROM kv WHERE key = 'committed'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(committed, [1]);
    drop(conn);
    assert!(
        !image.path().join("alice.db-wal").exists(),
        "no log after close"
    );
}
