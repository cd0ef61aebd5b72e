//! Unit tests that need the store's insides: faults injected between the statements of a commit
//! (STORE-3).

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
