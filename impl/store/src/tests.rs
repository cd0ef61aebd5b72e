//! Unit tests that need the store's insides: faults injected between the statements of a commit
//! (STORE-3), the trimming of `received` (RX-6), and the write-ahead log's restart (Req7).

#![allow(clippy::unwrap_used)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::{Content, Device, UserId};

use crate::{Chat, KdfParams, Store, StoreError, ToSend};

const T0: u64 = 1_767_225_600_000;

fn setup() -> (tempfile::TempDir, Store, Device, Device, ChaCha20Rng) {
    let mut r = ChaCha20Rng::seed_from_u64(7);
    let (a, b) = (UserId::random(&mut r), UserId::random(&mut r));
    let mut alice = Device::new(&mut r, a);
    let mut bob = Device::new(&mut r, b);
    bob.generate_one_time_prekeys(&mut r, 2).unwrap();
    alice
        .add_contact_from_bundle(&bob.bundle(Some(1)).unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create_with_params(
        dir.path().join("b.db"),
        b"pw",
        &bob,
        T0,
        KdfParams::INSECURE_FOR_TESTS,
    )
    .unwrap();
    (dir, store, alice, bob, r)
}

#[test]
fn a_fault_anywhere_in_commit_incoming_rolls_everything_back_store_3() {
    for at in ["incoming:after-device", "incoming:before-queue"] {
        let (_dir, mut store, mut alice, mut bob, mut r) = setup();
        let before = store.load_device().unwrap().export();
        let out = alice
            .send(&mut r, T0, bob.user_id(), &Content::Text("hello".into()))
            .unwrap();
        let inc = bob.receive(T0, &out.envelope).unwrap();
        let receipt = bob
            .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![inc.id]))
            .unwrap();
        store.fail_at = Some(at);
        let err = store
            .commit_incoming(&mut bob, &out.envelope, &inc, T0, &[ToSend::once(&receipt)])
            .unwrap_err();
        assert!(matches!(err, StoreError::Invalid("injected fault")), "{at}");
        // Nothing of it is in the store: not the state, the message, the contact, the receipt.
        assert_eq!(*store.load_device().unwrap().export(), *before, "{at}");
        assert!(
            store
                .messages_with(&Chat::User(*alice.user_id()))
                .unwrap()
                .is_empty()
        );
        assert!(store.contacts().unwrap().is_empty());
        assert_eq!(store.outbox_len().unwrap(), 0);
        assert_eq!(store.received_by_envelope(&out.envelope).unwrap(), None);
        // The shell reloads its device and the redelivered envelope commits normally (RX-4).
        store.fail_at = None;
        let mut bob = store.load_device().unwrap();
        let inc = bob.receive(T0 + 1, &out.envelope).unwrap();
        assert!(
            store
                .commit_incoming(&mut bob, &out.envelope, &inc, T0 + 1, &[])
                .unwrap()
        );
        assert_eq!(
            store
                .messages_with(&Chat::User(*alice.user_id()))
                .unwrap()
                .len(),
            1
        );
    }
}

#[test]
fn a_store_can_move_to_another_thread() {
    fn is_send<T: Send>() {}
    is_send::<Store>();
}

/// RX-6: `received` keeps the newest LIM-7 rows at least; the oldest go once LIM-7 + TRIM_BATCH
/// are exceeded, all of the excess at once.
#[test]
fn received_drops_its_oldest_rows_in_batches_rx_6() {
    use sotto_core::limits::MAX_DELIVERED_IDS;

    use crate::received::{TRIM_BATCH, trim_in};
    let (_dir, mut store, ..) = setup();
    let mut next = 0_u32;
    let mut add = |store: &mut Store, n: usize| {
        let tx = store.conn.transaction().unwrap();
        for _ in 0..n {
            let hash = sotto_core::crypto::sha256(&[&next.to_be_bytes()]);
            tx.execute(
                "INSERT INTO received VALUES (?1, zeroblob(16), zeroblob(10), NULL, 0)",
                [&hash[..]],
            )
            .unwrap();
            next += 1;
        }
        trim_in(&tx).unwrap();
        tx.commit().unwrap();
    };
    let span = |store: &Store| -> (i64, i64, i64) {
        store
            .conn
            .query_row(
                "SELECT count(*), min(rowid), max(rowid) FROM received",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
    };
    let full = MAX_DELIVERED_IDS + TRIM_BATCH;
    add(&mut store, full);
    assert_eq!(span(&store), (full as i64, 1, full as i64), "not over yet");
    add(&mut store, 1);
    let kept = MAX_DELIVERED_IDS as i64;
    assert_eq!(
        span(&store),
        (kept, full as i64 + 2 - kept, full as i64 + 1)
    );
    add(&mut store, 10);
    assert_eq!(span(&store).0, kept + 10, "the next batch waits");
}

/// The write-ahead log is copied into the database once it holds `WAL_CHECKPOINT_PAGES` pages,
/// and the next commit starts it again from nothing: superseded pages (old device states) do not
/// stay in it beyond a checkpoint (Req7).
#[test]
fn the_log_restarts_from_nothing_after_a_checkpoint() {
    let (dir, store, ..) = setup();
    let wal = dir.path().join("b.db-wal");
    let big = 5 * 1024 * 1024;
    store
        .conn
        .execute("INSERT INTO kv VALUES ('big', zeroblob(?1))", [big])
        .unwrap();
    let after_big = std::fs::metadata(&wal).unwrap().len();
    assert!(
        after_big > big as u64,
        "the big commit went through the log"
    );
    store
        .conn
        .execute("INSERT INTO kv VALUES ('small', x'01')", [])
        .unwrap();
    let after_small = std::fs::metadata(&wal).unwrap().len();
    assert!(
        after_small < 64 * 1024,
        "the log started again: {after_small} bytes after {after_big}"
    );
}

/// BROKER-5, reason 2: a row refused for good is never due again and says why; a receipt-less
/// row just leaves; destroying the store leaves no file of it behind.
#[test]
fn a_row_given_up_is_never_due_and_destroy_leaves_nothing() {
    let (dir, mut store, mut alice, mut bob, mut r) = setup();
    // Bob needs Alice as a contact to send to her.
    let first = alice
        .send(&mut r, T0, bob.user_id(), &Content::Text("hi".into()))
        .unwrap();
    let inc = bob.receive(T0, &first.envelope).unwrap();
    store
        .commit_incoming(&mut bob, &first.envelope, &inc, T0, &[])
        .unwrap();
    let text = Content::Text("are you there?".into());
    let out = bob.send(&mut r, T0, alice.user_id(), &text).unwrap();
    store.commit_outgoing(&mut bob, &out, &text, T0).unwrap();
    let receipt = bob
        .send(&mut r, T0, alice.user_id(), &Content::Receipt(vec![inc.id]))
        .unwrap();
    store
        .commit_device(&mut bob, T0, &[ToSend::once(&receipt)])
        .unwrap();
    assert_eq!(store.outbox_len().unwrap(), 2);
    let a = *alice.user_id();
    assert!(store.give_up(&out.id, &a, 2).unwrap());
    assert!(store.give_up(&receipt.id, &a, 2).unwrap());
    assert!(!store.give_up(&receipt.id, &a, 2).unwrap(), "gone already");
    assert_eq!(store.outbox_len().unwrap(), 1, "the receipt left");
    let decade = 3_650 * 86_400_000;
    assert!(store.due_outbox(T0 + decade, 10).unwrap().is_empty());
    assert_eq!(store.next_attempt_at().unwrap(), None);
    let held = store.held_outbox().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].message_id, held[0].held), (out.id, 2));
    assert_eq!(held[0].next_attempt_at, crate::NEVER_DUE);
    let path = store.path().to_owned();
    store.destroy().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!path.exists());
}
