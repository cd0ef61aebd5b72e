//! The passphrase: a wrong one is a clear error that changes nothing (STORE-2); changing it
//! re-encrypts the store and survives an interruption.

use std::fs;

use sotto_store::{KdfHeader, KdfParams, Store, StoreError, header_path};

use crate::common::*;

fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
    files(dir)
        .into_iter()
        .map(|(p, b)| {
            let mtime = fs::metadata(&p).unwrap().modified().unwrap();
            (p, b, mtime)
        })
        .collect()
}

#[test]
fn wrong_passphrase_is_typed_and_changes_nothing_store_2() {
    let mut r = rng(20);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut sa, path) = create(dir.path(), "alice.db", &alice);
    let out = send(&mut alice, &mut r, T0, bob.user_id(), "secret");
    sa.commit_outgoing(&mut alice, &out, &text("secret"), T0)
        .unwrap();
    sa.close().unwrap();

    let before = snapshot(dir.path());
    assert_eq!(
        before.len(),
        2,
        "the database and its header, no side files"
    );
    for wrong in [
        &b"correct horse battery stapler"[..],
        b"",
        b"\0",
        PASS.split_at(5).0,
    ] {
        assert!(
            matches!(Store::open(&path, wrong), Err(StoreError::WrongPassphrase)),
            "{wrong:?}"
        );
    }
    assert_eq!(
        snapshot(dir.path()),
        before,
        "bytes, mtimes and the file list are unchanged"
    );
    // The right one still works.
    let sa = Store::open(&path, PASS).unwrap();
    assert_eq!(*sa.load_device().unwrap().export(), *alice.export());
}

#[test]
fn empty_passphrase_is_refused() {
    let mut r = rng(21);
    let alice = device(&mut r);
    let dir = tmp();
    let path = dir.path().join("a.db");
    assert!(matches!(
        Store::create_with_params(&path, b"", &alice, T0, KdfParams::INSECURE_FOR_TESTS),
        Err(StoreError::EmptyPassphrase)
    ));
    assert!(!path.exists());
    let (mut sa, _) = create(dir.path(), "b.db", &alice);
    assert!(matches!(
        sa.change_passphrase(b"", KdfParams::INSECURE_FOR_TESTS),
        Err(StoreError::EmptyPassphrase)
    ));
}

#[test]
fn change_passphrase_rekeys_the_store() {
    let mut r = rng(22);
    let mut alice = device(&mut r);
    let dir = tmp();
    let (mut sa, path) = create(dir.path(), "a.db", &alice);
    let old_header = KdfHeader::read(&header_path(&path)).unwrap();
    let new_params = KdfParams {
        m_kib: 16,
        ..KdfParams::INSECURE_FOR_TESTS
    };
    sa.change_passphrase(b"new passphrase", new_params).unwrap();
    // The open connection goes on working, on its write-ahead log again (the rekey ran on the
    // rollback journal).
    sa.commit_device(&mut alice, T0 + 1, &[]).unwrap();
    assert!(dir.path().join("a.db-wal").exists());
    sa.close().unwrap();

    let new_header = KdfHeader::read(&header_path(&path)).unwrap();
    assert_ne!(new_header.salt, old_header.salt, "a new salt");
    assert_eq!(new_header.params, new_params);
    assert!(matches!(
        Store::open(&path, PASS),
        Err(StoreError::WrongPassphrase)
    ));
    let sa = Store::open(&path, b"new passphrase").unwrap();
    assert_eq!(*sa.load_device().unwrap().export(), *alice.export());
    sa.close().unwrap();
    assert_eq!(files(dir.path()).len(), 2);
}

/// `change_passphrase` writes `<db>.salt.next`, rekeys, then renames it over `<db>.salt`. Open
/// finishes a change interrupted after the rekey and forgets one interrupted before it.
#[test]
fn interrupted_passphrase_change_is_finished_or_forgotten() {
    let mut r = rng(23);
    let alice = device(&mut r);
    let dir = tmp();
    let (sa, path) = create(dir.path(), "a.db", &alice);
    let header = header_path(&path);
    let next = dir.path().join("a.db.salt.next");
    let old = fs::read(&header).unwrap();

    // Interrupted before the rekey: a next header exists, the database still has the old key.
    sa.close().unwrap();
    KdfHeader::generate(KdfParams::INSECURE_FOR_TESTS)
        .unwrap()
        .write(&next)
        .unwrap();
    let sa = Store::open(&path, PASS).unwrap();
    assert!(
        !next.exists(),
        "the change that never happened is forgotten"
    );
    assert_eq!(fs::read(&header).unwrap(), old);

    // Interrupted after the rekey, before the rename.
    let mut sa = sa;
    sa.change_passphrase(b"second", KdfParams::INSECURE_FOR_TESTS)
        .unwrap();
    sa.close().unwrap();
    fs::rename(&header, &next).unwrap();
    fs::write(&header, &old).unwrap();
    // The old passphrase no longer opens it, and the new header is not consumed by trying.
    assert!(matches!(
        Store::open(&path, PASS),
        Err(StoreError::WrongPassphrase)
    ));
    assert!(next.exists());
    let sa = Store::open(&path, b"second").unwrap();
    assert!(!next.exists(), "the change is finished");
    assert_ne!(fs::read(&header).unwrap(), old);
    sa.close().unwrap();
    Store::open(&path, b"second").unwrap();
}
