//! Files that are not (or no longer) a good store give typed errors, never a panic.

use std::fs;

use sotto_store::{KdfParams, Store, StoreError, header_path, schema};

use crate::common::*;

#[test]
fn create_refuses_an_existing_file() {
    let mut r = rng(30);
    let alice = device(&mut r);
    let dir = tmp();
    let path = dir.path().join("a.db");
    fs::write(&path, b"precious").unwrap();
    assert!(matches!(
        Store::create_with_params(&path, PASS, &alice, T0, KdfParams::INSECURE_FOR_TESTS),
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(fs::read(&path).unwrap(), b"precious");
    assert!(!header_path(&path).exists());
    let (s, path) = create(dir.path(), "b.db", &alice);
    s.close().unwrap();
    assert!(matches!(
        Store::create_with_params(&path, PASS, &alice, T0, KdfParams::INSECURE_FOR_TESTS),
        Err(StoreError::AlreadyExists)
    ));
    Store::open(&path, PASS).unwrap();
}

#[test]
fn missing_files_and_headers_are_typed() {
    let mut r = rng(31);
    let alice = device(&mut r);
    let dir = tmp();
    assert!(matches!(
        Store::open(dir.path().join("none.db"), PASS),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        Store::open(dir.path(), PASS),
        Err(StoreError::NotAStore(_))
    ));
    let (s, path) = create(dir.path(), "a.db", &alice);
    s.close().unwrap();
    let header = fs::read(header_path(&path)).unwrap();
    fs::remove_file(header_path(&path)).unwrap();
    assert!(matches!(
        Store::open(&path, PASS),
        Err(StoreError::MissingHeader)
    ));
    for bad in [
        &b""[..],
        b"sotto-store 1\n",
        &header[..header.len() - 3],
        &[0xff; 40],
    ] {
        fs::write(header_path(&path), bad).unwrap();
        assert!(
            matches!(Store::open(&path, PASS), Err(StoreError::BadHeader(_))),
            "{bad:?}"
        );
    }
    // A header of absurd cost is refused before any memory is allocated for it.
    let greedy = String::from_utf8(header.clone())
        .unwrap()
        .replace("m 8\n", "m 4000000\n");
    fs::write(header_path(&path), greedy).unwrap();
    assert!(matches!(
        Store::open(&path, PASS),
        Err(StoreError::BadHeader(_))
    ));
    fs::write(header_path(&path), &header).unwrap();
    Store::open(&path, PASS).unwrap();
}

#[test]
fn files_that_are_not_stores_are_typed() {
    let mut r = rng(32);
    let alice = device(&mut r);
    let dir = tmp();
    let (s, good) = create(dir.path(), "good.db", &alice);
    s.close().unwrap();
    let header = fs::read(header_path(&good)).unwrap();
    let put = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        fs::write(header_path(&p), &header).unwrap();
        p
    };
    // A plaintext SQLite database.
    let plain = dir.path().join("plain.db");
    rusqlite::Connection::open(&plain)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES ('hello');")
        .unwrap();
    fs::write(header_path(&plain), &header).unwrap();
    assert!(matches!(
        Store::open(&plain, PASS),
        Err(StoreError::NotAStore(_))
    ));
    // Empty, ragged, random.
    let empty = put("empty.db", b"");
    assert!(matches!(
        Store::open(&empty, PASS),
        Err(StoreError::NotAStore(_))
    ));
    let ragged = put("ragged.db", &[7; 1000]);
    assert!(matches!(
        Store::open(&ragged, PASS),
        Err(StoreError::NotAStore(_))
    ));
    // Random pages fail authentication like a wrong passphrase (they cannot be told apart).
    let mut noise = vec![0u8; 8192];
    rand_core::RngCore::fill_bytes(&mut r, &mut noise);
    let random = put("random.db", &noise);
    assert!(matches!(
        Store::open(&random, PASS),
        Err(StoreError::WrongPassphrase)
    ));
    // The right key on a database this crate did not lay out.
    let foreign = dir.path().join("foreign.db");
    fs::write(header_path(&foreign), &header).unwrap();
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA key = \"{}\"; CREATE TABLE t (x);",
        raw_key(&good, PASS)
    ))
    .unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&foreign, PASS),
        Err(StoreError::NotAStore(_))
    ));
}

#[test]
fn damaged_pages_are_corrupt_not_a_panic() {
    let mut r = rng(33);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let (mut s, path) = create(dir.path(), "a.db", &alice);
    for i in 0..20 {
        let out = send(
            &mut alice,
            &mut r,
            T0 + i,
            bob.user_id(),
            "filler filler filler",
        );
        s.commit_outgoing(&mut alice, &out, &text("filler"), T0 + i)
            .unwrap();
    }
    s.close().unwrap();
    let good = fs::read(&path).unwrap();
    // One byte flipped in every page but the first: the schema opens, the data does not.
    let mut bad = good.clone();
    for page in (4096..bad.len()).step_by(4096) {
        bad[page + 100] ^= 0x01;
    }
    fs::write(&path, &bad).unwrap();
    let err = Store::open(&path, PASS).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    // Truncated to its first page.
    fs::write(&path, &good[..4096]).unwrap();
    let res = Store::open(&path, PASS).and_then(|s| s.load_device());
    assert!(res.is_err());
}

#[test]
fn a_newer_schema_is_refused() {
    let mut r = rng(34);
    let alice = device(&mut r);
    let dir = tmp();
    let (s, path) = create(dir.path(), "a.db", &alice);
    s.close().unwrap();
    raw_open(&path, PASS)
        .pragma_update(None, "user_version", schema::LATEST + 1)
        .unwrap();
    match Store::open(&path, PASS) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (schema::LATEST + 1, schema::LATEST));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_store_is_used_by_one_connection_at_a_time_store_4() {
    let mut r = rng(36);
    let alice = device(&mut r);
    let dir = tmp();
    let (first, path) = create(dir.path(), "a.db", &alice);
    // A second opener is refused at once, and the first keeps working.
    let refused = Store::open(&path, PASS);
    assert!(matches!(refused, Err(StoreError::InUse)), "{refused:?}");
    assert_eq!(first.load_device().unwrap().user_id(), alice.user_id());
    // The log's index lives in the owner's memory: no shared-memory file beside the store.
    assert!(!dir.path().join("a.db-shm").exists());
    first.close().unwrap();
    // Closed, the store opens again (and again refuses a second opener).
    let again = Store::open(&path, PASS).unwrap();
    assert!(matches!(Store::open(&path, PASS), Err(StoreError::InUse)));
    again.close().unwrap();
    Store::open(&path, PASS).unwrap().close().unwrap();
}
