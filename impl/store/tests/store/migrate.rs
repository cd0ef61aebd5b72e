//! Schema migrations. The version-1 store here is made without the crate: the v1 schema as it was
//! released, the header written by hand and the key derived independently. So this also pins the
//! on-disk format: the header layout, Argon2id, SQLCipher's raw key (STORE-1).

use sotto_core::{Content, MessageId};
use sotto_store::{Chat, MessageState, Setting, Store, ToSend, schema};

use crate::common::*;

/// Migration 1 exactly as released (do not edit: it stands for the files in the field).
const V1: &str = "
CREATE TABLE device (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    user_id BLOB NOT NULL CHECK (length(user_id) = 10),
    state   BLOB NOT NULL
) STRICT;
CREATE TABLE contacts (
    user_id  BLOB PRIMARY KEY CHECK (length(user_id) = 10),
    trust    INTEGER NOT NULL CHECK (trust IN (0, 1)),
    name     TEXT,
    added_at INTEGER NOT NULL
) STRICT;
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    message_id  BLOB NOT NULL CHECK (length(message_id) = 16),
    chat        BLOB NOT NULL,
    is_group    INTEGER NOT NULL CHECK (is_group IN (0, 1)),
    sender      BLOB CHECK (sender IS NULL OR length(sender) = 10),
    outgoing    INTEGER NOT NULL CHECK (outgoing IN (0, 1)),
    kind        INTEGER NOT NULL,
    body        TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    received_at INTEGER,
    state       INTEGER NOT NULL CHECK (state BETWEEN 0 AND 4),
    CHECK (length(chat) = CASE is_group WHEN 1 THEN 16 ELSE 10 END),
    UNIQUE (chat, outgoing, message_id)
) STRICT;
CREATE INDEX messages_by_chat ON messages (chat, sent_at, id);
CREATE INDEX messages_by_id ON messages (message_id);
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    message_id      BLOB NOT NULL CHECK (length(message_id) = 16),
    recipient       BLOB NOT NULL CHECK (length(recipient) = 10),
    envelope        BLOB NOT NULL CHECK (length(envelope) BETWEEN 1 AND 8192),
    until_receipt   INTEGER NOT NULL CHECK (until_receipt IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    UNIQUE (message_id, recipient)
) STRICT;
CREATE INDEX outbox_due ON outbox (next_attempt_at, id);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;
PRAGMA user_version = 1;
";

#[test]
fn the_first_migration_is_as_released() {
    assert_eq!(
        squash(schema::V1),
        squash(V1.replace("PRAGMA user_version = 1;", "").as_str())
    );
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn a_version_1_store_migrates_on_open() {
    let mut r = rng(40);
    let (mut alice, bob) = pair(&mut r);
    let dir = tmp();
    let path = dir.path().join("v1.db");

    // The header, by hand.
    let salt = [0x5a_u8; 16];
    std::fs::write(
        dir.path().join("v1.db.salt"),
        format!(
            "sotto-store 1\nkdf argon2id\nversion 19\nm 8\nt 1\np 1\nsalt {}\n",
            hex::encode(salt)
        ),
    )
    .unwrap();
    let out = send(&mut alice, &mut r, T0, bob.user_id(), "from the old days");
    {
        let conn = raw_open(&path, PASS);
        conn.execute_batch(V1).unwrap();
        conn.execute(
            "INSERT INTO device (id, user_id, state) VALUES (1, ?1, ?2)",
            rusqlite::params![&alice.user_id().0[..], &alice.export()[..]],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO contacts VALUES (?1, 0, 'Bob', ?2)",
            rusqlite::params![&bob.user_id().0[..], T0 as i64],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO messages (message_id, chat, is_group, sender, outgoing, kind, body,
                 sent_at, received_at, state)
             VALUES (?1, ?2, 0, NULL, 1, 1, 'from the old days', ?3, NULL, 1)",
            rusqlite::params![&out.id.0[..], &bob.user_id().0[..], T0 as i64],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO outbox (message_id, recipient, envelope, until_receipt, attempts,
                 next_attempt_at, created_at) VALUES (?1, ?2, ?3, 1, 1, ?4, ?5)",
            rusqlite::params![
                &out.id.0[..],
                &bob.user_id().0[..],
                &out.envelope[..],
                (T0 + 30_000) as i64,
                T0 as i64
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO kv VALUES ('server_url', CAST('https://old.test' AS BLOB))",
            [],
        )
        .unwrap();
    }

    let mut s = Store::open(&path, PASS).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::LATEST);
    assert_eq!(*s.load_device().unwrap().export(), *alice.export());
    let msgs = s.messages_with(&Chat::User(*bob.user_id())).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].text, "from the old days");
    assert_eq!(msgs[0].state, MessageState::Sent);
    assert_eq!(s.outgoing_state(&out.id).unwrap(), Some(MessageState::Sent));
    assert_eq!(s.contacts().unwrap()[0].name.as_deref(), Some("Bob"));
    assert_eq!(s.due_outbox(T0 + 30_000, 10).unwrap()[0].attempts, 1);
    assert_eq!(
        s.setting_text(Setting::ServerUrl)
            .unwrap()
            .as_deref()
            .map(String::as_str),
        Some("https://old.test")
    );
    // Version 2's tables work.
    let id = s.park(b"an envelope", T0).unwrap();
    assert_eq!(s.parked().unwrap()[0].id, id);
    let receipt = alice
        .send(
            &mut r,
            T0,
            bob.user_id(),
            &Content::Receipt(vec![MessageId([1; 16])]),
        )
        .unwrap();
    s.commit_device(&mut alice, T0, &[ToSend::once(&receipt)])
        .unwrap();
    s.close().unwrap();
    // Version 4: the state blob became records and is gone; the records read back to the
    // device as last committed.
    {
        let conn = raw_open(&path, PASS);
        let blob: i64 = conn
            .query_row("SELECT length(state) FROM device", [], |r| r.get(0))
            .unwrap();
        assert_eq!(blob, 0);
        let kinds: i64 = conn
            .query_row("SELECT count(DISTINCT kind) FROM records", [], |r| r.get(0))
            .unwrap();
        assert!(
            kinds >= 4,
            "meta, one-time prekeys, contacts, sessions: {kinds}"
        );
        // Version 5: no index of every message id, no unique (sender, id) in `received`.
        let indexes = |table: &str| -> Vec<String> {
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 ORDER BY name")
                .unwrap();
            stmt.query_map([table], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        // Version 6: no index of sent ids either; the outbox row names its message's row.
        assert_eq!(indexes("messages"), ["messages_by_chat"]);
        assert_eq!(indexes("received"), ["sqlite_autoindex_received_1"]);
        let (row, message): (Option<i64>, i64) = conn
            .query_row(
                "SELECT o.message_row, m.id FROM outbox o, messages m
                 WHERE o.message_id = m.message_id",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(row, Some(message));
    }
    // Opening again finds nothing to do.
    let s = Store::open(&path, PASS).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::LATEST);
    assert_eq!(*s.load_device().unwrap().export(), *alice.export());
}

/// A version-6 store holds each session with its skipped keys inside one record: opening it
/// rewrites them as records of today's kinds, each skipped key a record of its own, in the
/// migration's transaction; the device reads back unchanged and its late messages still open.
#[test]
fn a_version_6_store_splits_skipped_keys_on_open() {
    use sotto_core::records::RecordKind;
    let mut r = rng(41);
    let (mut alice, mut bob) = pair(&mut r);
    let late: Vec<_> = (0..4)
        .map(|i| send(&mut alice, &mut r, T0, bob.user_id(), &format!("late {i}")))
        .collect();
    let ahead = send(&mut alice, &mut r, T0, bob.user_id(), "ahead");
    bob.receive(T0, &ahead.envelope).unwrap();
    let dir = tmp();
    let (s, path) = create(dir.path(), "v6.db", &bob);
    s.close().unwrap();
    let count = |conn: &rusqlite::Connection, kind: RecordKind| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM records WHERE kind = ?1",
            [kind.code()],
            |r| r.get(0),
        )
        .unwrap()
    };
    {
        // Back to version 6 as it was written: the old records, no skipped-key records.
        let conn = raw_open(&path, PASS);
        assert_eq!(count(&conn, RecordKind::SessionSkippedKey), 4);
        conn.execute("DELETE FROM records", []).unwrap();
        for rec in bob.legacy_records() {
            conn.execute(
                "INSERT INTO records (kind, key, value) VALUES (?1, ?2, ?3)",
                rusqlite::params![rec.id.kind.code(), &rec.id.key[..], &rec.value[..]],
            )
            .unwrap();
        }
        conn.pragma_update(None, "user_version", 6).unwrap();
        assert_eq!(count(&conn, RecordKind::LegacySession), 1);
    }
    let s = Store::open(&path, PASS).unwrap();
    assert_eq!(s.schema_version().unwrap(), schema::LATEST);
    let mut back = s.load_device().unwrap();
    assert_eq!(*back.export(), *bob.export());
    assert!(back.changes().is_empty(), "the migration left work to do");
    s.close().unwrap();
    {
        let conn = raw_open(&path, PASS);
        assert_eq!(count(&conn, RecordKind::LegacySession), 0);
        assert_eq!(count(&conn, RecordKind::Session), 1);
        assert_eq!(count(&conn, RecordKind::SessionSkippedKey), 4);
    }
    for m in &late {
        back.receive(T0, &m.envelope).unwrap();
    }
    assert!(back.session_summary(alice.user_id()).unwrap().skipped == 0);
}
