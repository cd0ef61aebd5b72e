//! Req7: nothing readable on disk. Distinctive texts, names, settings, the user ids and the
//! identity's secret keys are written through the store; then every byte of every file in the
//! store's folder (the database, its header, and the rollback journal caught in the middle of a
//! transaction) is searched for them in several encodings.

use std::path::Path;

use sotto_core::Content;
use sotto_store::{KdfHeader, Setting, ToSend, header_path};

use crate::common::*;

const TEXT_OUT: &str = "Quokka-Saxophone-9038 meets at the old mill";
const TEXT_IN: &str = "Marmalade-Zeppelin-4417 confirms";
const NAME: &str = "Ulysses Brightwater";
const URL: &str = "https://hidden-host-7781.example";
const PEM: &str = "PRIVATE-KEY-MATERIAL-5521";

/// The forms a string may take in a file: UTF-8, UTF-16 both ways, hex both cases.
fn forms_of_text(s: &str) -> Vec<Vec<u8>> {
    let le: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let be: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let mut out = vec![s.as_bytes().to_vec(), le, be];
    out.extend(forms_of_bytes(s.as_bytes()).into_iter().skip(1));
    out
}

/// Raw, hex lower and upper (as text and as UTF-16).
fn forms_of_bytes(b: &[u8]) -> Vec<Vec<u8>> {
    let lower = hex::encode(b);
    let upper = hex::encode_upper(b);
    let mut out = vec![b.to_vec()];
    for h in [lower, upper] {
        out.push(h.as_bytes().to_vec());
        out.push(h.encode_utf16().flat_map(u16::to_le_bytes).collect());
    }
    out
}

/// The first needle found in a file of `dir`, and how many files were searched.
fn find(dir: &Path, needles: &[(String, Vec<Vec<u8>>)]) -> (Option<String>, usize) {
    let files = files(dir);
    for (path, bytes) in &files {
        for (what, forms) in needles {
            for form in forms {
                if bytes.windows(form.len()).any(|w| w == form.as_slice()) {
                    return (Some(format!("{what} in {}", path.display())), files.len());
                }
            }
        }
    }
    (None, files.len())
}

fn assert_absent(dir: &Path, needles: &[(String, Vec<Vec<u8>>)]) -> usize {
    let (found, n) = find(dir, needles);
    assert_eq!(found, None);
    n
}

/// The search works: an unencrypted SQLite file with the same content gives every needle away.
#[test]
fn the_search_finds_plaintext_in_a_plain_database() {
    let dir = tmp();
    let conn = rusqlite::Connection::open(dir.path().join("plain.db")).unwrap();
    conn.execute_batch("CREATE TABLE t (x)").unwrap();
    for s in [TEXT_OUT, TEXT_IN, NAME] {
        conn.execute("DELETE FROM t", []).unwrap();
        conn.execute("INSERT INTO t VALUES (?1)", [s]).unwrap();
        let (found, _) = find(dir.path(), &[(s.into(), forms_of_text(s))]);
        assert!(found.is_some(), "{s}");
    }
    conn.execute("DELETE FROM t", []).unwrap();
    let key = [0x42_u8; 32];
    conn.execute("INSERT INTO t VALUES (?1)", [&key[..]])
        .unwrap();
    let (found, _) = find(dir.path(), &[("key".into(), forms_of_bytes(&key))]);
    assert!(found.is_some());
}

#[test]
fn no_plaintext_in_any_file_req7() {
    let mut r = rng(60);
    let (mut alice, mut bob) = pair(&mut r);
    let dir = tmp();
    let (mut s, path) = create(dir.path(), "alice.db", &alice);

    let out = send(&mut alice, &mut r, T0, bob.user_id(), TEXT_OUT);
    s.commit_outgoing(&mut alice, &out, &Content::Text(TEXT_OUT.into()), T0)
        .unwrap();
    let (_, _) = receive(&mut bob, &mut r, T0 + 1, &out);
    let reply = send(&mut bob, &mut r, T0 + 2, alice.user_id(), TEXT_IN);
    let (inc, receipt) = receive(&mut alice, &mut r, T0 + 3, &reply);
    s.commit_incoming(
        &mut alice,
        &reply.envelope,
        &inc,
        T0 + 3,
        &[ToSend::once(&receipt)],
    )
    .unwrap();
    s.set_contact_name(bob.user_id(), Some(NAME)).unwrap();
    s.set_setting(Setting::ServerUrl, URL.as_bytes()).unwrap();
    s.set_setting(Setting::TlsKeyPem, PEM.as_bytes()).unwrap();
    s.park(TEXT_IN.as_bytes(), T0).unwrap();
    assert_eq!(
        s.messages_with(&sotto_store::Chat::User(*bob.user_id()))
            .unwrap()
            .len(),
        2
    );

    let header = KdfHeader::read(&header_path(&path)).unwrap();
    let store_key = argon2id(&header, PASS);
    let mut needles: Vec<(String, Vec<Vec<u8>>)> = vec![
        ("outgoing text".into(), forms_of_text(TEXT_OUT)),
        ("incoming text".into(), forms_of_text(TEXT_IN)),
        ("contact name".into(), forms_of_text(NAME)),
        ("server url".into(), forms_of_text(URL)),
        ("tls key".into(), forms_of_text(PEM)),
        ("passphrase".into(), forms_of_bytes(PASS)),
        ("store key".into(), forms_of_bytes(&store_key)),
        (
            "identity signing seed".into(),
            forms_of_bytes(alice.identity().signing().to_seed().expose()),
        ),
        (
            "identity DH secret".into(),
            forms_of_bytes(alice.identity().dh().to_bytes().expose()),
        ),
    ];
    for (who, id) in [("alice", alice.user_id()), ("bob", bob.user_id())] {
        let mut forms = forms_of_bytes(&id.0);
        forms.extend(forms_of_text(&id.to_text()));
        needles.push((format!("{who}'s user id"), forms));
    }

    // With the store open, between transactions: the database, its header and the write-ahead
    // log (the log's index is in the owner's memory, STORE-4).
    assert!(dir.path().join("alice.db-wal").exists());
    assert_eq!(assert_absent(dir.path(), &needles), 3);
    s.close().unwrap();
    assert_eq!(assert_absent(dir.path(), &needles), 2, "no side files");

    // In the middle of a transaction: the write-ahead log holds the new pages, encrypted.
    let conn = raw_open(&path, PASS);
    conn.execute_batch("PRAGMA cache_size = 2; BEGIN IMMEDIATE;")
        .unwrap();
    conn.execute("UPDATE messages SET body = 'x'", []).unwrap();
    conn.execute("UPDATE contacts SET name = 'y'", []).unwrap();
    conn.execute("UPDATE device SET state = zeroblob(100000)", [])
        .unwrap();
    let wal = dir.path().join("alice.db-wal");
    assert!(
        std::fs::metadata(&wal).unwrap().len() > 0,
        "pages spilled to the log"
    );
    assert_eq!(assert_absent(dir.path(), &needles), 4);
}
