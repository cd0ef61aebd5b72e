//! What goes in comes back out, across close and open (STORE-1).

use sotto_store::{Chat, Direction, KdfParams, MessageState, Setting, Store, schema};

use crate::common::*;

#[test]
fn create_then_open_round_trips_store_1() {
    let mut r = rng(1);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut store, path) = create(dir.path(), "alice.db", &alice);
    let out = send(&mut alice, &mut r, T0 + 1, bob.user_id(), "hello bob");
    store
        .commit_outgoing(&mut alice, &out, &text("hello bob"), T0 + 1)
        .unwrap();
    assert!(store.set_contact_name(bob.user_id(), Some("Bob")).unwrap());
    store
        .set_setting(Setting::ServerUrl, b"https://sotto.test")
        .unwrap();
    store
        .set_setting(Setting::TlsKeyPem, b"-----BEGIN PRIVATE KEY-----")
        .unwrap();
    store.set_time_offset(-1234).unwrap();
    store.close().unwrap();

    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.user_id(), alice.user_id());
    assert_eq!(store.schema_version().unwrap(), schema::LATEST);
    assert_eq!(*store.load_device().unwrap().export(), *alice.export());

    let msgs = store.messages_with(&Chat::User(*bob.user_id())).unwrap();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(
        (m.id, m.direction, m.kind, m.text.as_str(), m.sent_at),
        (out.id, Direction::Out, 1, "hello bob", T0 + 1)
    );
    assert_eq!(
        (m.sender, m.received_at, m.state),
        (None, None, MessageState::Queued)
    );
    assert!(
        !format!("{m:?}").contains("hello bob"),
        "Debug hides the text"
    );

    let contacts = store.contacts().unwrap();
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(c.user, *bob.user_id());
    assert_eq!(c.trust, sotto_core::Trust::Unverified);
    assert_eq!(c.name.as_deref(), Some("Bob"));
    assert_eq!(c.added_at, T0);
    assert!(!format!("{c:?}").contains("Bob"), "Debug hides the name");

    assert_eq!(
        store
            .setting_text(Setting::ServerUrl)
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("https://sotto.test")
    );
    assert_eq!(
        store
            .setting(Setting::TlsKeyPem)
            .unwrap()
            .as_deref()
            .map(Vec::as_slice),
        Some(&b"-----BEGIN PRIVATE KEY-----"[..])
    );
    assert_eq!(store.time_offset().unwrap(), Some(-1234));
    assert_eq!(store.setting(Setting::CaPem).unwrap(), None);
}

#[test]
fn restored_device_continues_the_conversation() {
    let mut r = rng(2);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut store, path) = create(dir.path(), "alice.db", &alice);
    let m1 = send(&mut alice, &mut r, T0, bob.user_id(), "one");
    store
        .commit_outgoing(&mut alice, &m1, &text("one"), T0)
        .unwrap();
    store.close().unwrap();
    drop(alice);

    let store = Store::open(&path, PASS).unwrap();
    let mut alice = store.load_device().unwrap();
    let m2 = send(&mut alice, &mut r, T0 + 5, bob.user_id(), "two");
    bob.receive(T0 + 6, &m1.envelope).unwrap();
    let i2 = bob.receive(T0 + 6, &m2.envelope).unwrap();
    assert_eq!(i2.content, text("two"));
}

#[test]
fn open_uses_the_recorded_parameters_store_1() {
    let mut r = rng(3);
    let alice = device(&mut r);
    let dir = tmp();
    let path = dir.path().join("a.db");
    let params = KdfParams {
        m_kib: 64,
        t: 3,
        p: 2,
        version: 0x10,
    };
    Store::create_with_params(&path, PASS, &alice, T0, params)
        .unwrap()
        .close()
        .unwrap();
    let header = std::fs::read_to_string(sotto_store::header_path(&path)).unwrap();
    assert!(
        header.contains("\nversion 16\nm 64\nt 3\np 2\nsalt "),
        "{header}"
    );
    let store = Store::open(&path, PASS).unwrap();
    assert_eq!(store.user_id(), alice.user_id());
}

#[test]
fn opening_and_closing_writes_nothing() {
    let mut r = rng(4);
    let alice = device(&mut r);
    let dir = tmp();
    let (store, path) = create(dir.path(), "a.db", &alice);
    store.close().unwrap();
    let before = files(dir.path());
    let store = Store::open(&path, PASS).unwrap();
    store.load_device().unwrap();
    store.close().unwrap();
    assert_eq!(files(dir.path()), before);
}
