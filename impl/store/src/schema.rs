//! The schema and its migrations. `PRAGMA user_version` is the number of migrations applied; `open`
//! applies the missing ones in order, all in one transaction, so a store is always at one version.
//!
//! A migration, once released, never changes: a store written by an older program must still be
//! read. Add a new one at the end instead.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};

/// Migration 1: the device state, the contacts list, messages, the outbox and settings.
pub const V1: &str = "
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
";

/// Migration 2: what the shell keeps for RX-6 (the hash and id of each committed envelope, to
/// repeat a lost receipt when the sender resends) and RX-8 (envelopes parked for a retry, LIM-12).
pub const V2: &str = "
CREATE TABLE received (
    envelope_hash BLOB PRIMARY KEY CHECK (length(envelope_hash) = 32),
    message_id    BLOB NOT NULL CHECK (length(message_id) = 16),
    sender        BLOB NOT NULL CHECK (length(sender) = 10),
    group_id      BLOB CHECK (group_id IS NULL OR length(group_id) = 16),
    received_at   INTEGER NOT NULL,
    UNIQUE (sender, message_id)
) STRICT;

CREATE TABLE parked (
    id        INTEGER PRIMARY KEY,
    envelope  BLOB NOT NULL CHECK (length(envelope) BETWEEN 1 AND 8192),
    parked_at INTEGER NOT NULL
) STRICT;
";

/// Migration 3: why an outbox row waits (BROKER-5): `held` 0 = nothing known, else the reason
/// code of the service's last refusal notice for it (1 = the recipient's inbox is full);
/// `published` 1 once the broker accepted the envelope (a refused resend of it holds nothing).
pub const V3: &str = "
ALTER TABLE outbox ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held BETWEEN 0 AND 255);
ALTER TABLE outbox ADD COLUMN published INTEGER NOT NULL DEFAULT 0 CHECK (published IN (0, 1));
";

/// Migration 4: the device state as records (issue 14): one row per record of the core
/// (`sotto_core::records`), so that a commit writes only what the step changed. The state blob of
/// `device` moves into `records` when an older store is opened (`Store::open`), and stays empty.
pub const V4: &str = "
CREATE TABLE records (
    kind  INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 255),
    key   BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) STRICT, WITHOUT ROWID;
";

/// Migration 5: fewer index entries at random places per message (issue 14). A message's id is
/// random, so every index that starts with it puts each new message on its own page of the index,
/// and a commit writes (and encrypts) every page it touched. `messages` loses its unique
/// (chat, outgoing, message_id) index and its index of every id: a received message is new when
/// its row in `received` is (the same sender and id, RX-6), and only the ids of sent messages
/// are looked up (receipts, PUBACKs), so only they are indexed. `received` loses its unique
/// (sender, message_id) index: the core reports a repeated id itself (RX-7,
/// `Incoming::repeats_a_delivered_id`), and the envelope's hash still makes each envelope new
/// once.
pub const V5: &str = "
CREATE TABLE messages_v5 (
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
    CHECK (length(chat) = CASE is_group WHEN 1 THEN 16 ELSE 10 END)
) STRICT;
INSERT INTO messages_v5 (id, message_id, chat, is_group, sender, outgoing, kind, body, sent_at,
                         received_at, state)
    SELECT id, message_id, chat, is_group, sender, outgoing, kind, body, sent_at, received_at, state
    FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v5 RENAME TO messages;
CREATE INDEX messages_by_chat ON messages (chat, sent_at, id);
CREATE INDEX messages_sent_by_id ON messages (message_id) WHERE outgoing = 1;

CREATE TABLE received_v5 (
    envelope_hash BLOB PRIMARY KEY CHECK (length(envelope_hash) = 32),
    message_id    BLOB NOT NULL CHECK (length(message_id) = 16),
    sender        BLOB NOT NULL CHECK (length(sender) = 10),
    group_id      BLOB CHECK (group_id IS NULL OR length(group_id) = 16),
    received_at   INTEGER NOT NULL
) STRICT;
INSERT INTO received_v5 (rowid, envelope_hash, message_id, sender, group_id, received_at)
    SELECT rowid, envelope_hash, message_id, sender, group_id, received_at FROM received
    ORDER BY rowid;
DROP TABLE received;
ALTER TABLE received_v5 RENAME TO received;
";

/// Migration 6: no index of sent messages' ids either (issue 14). Each outbox row of a sent text
/// names the text's row in `messages` (`message_row`), so a PUBACK or a receipt, which find the
/// outbox row by its small index, update the message by its row id. The index of every sent id
/// put each sent message on a random page of it; the outbox only holds what is not yet receipted.
pub const V6: &str = "
ALTER TABLE outbox ADD COLUMN message_row INTEGER;
UPDATE outbox SET message_row = (
    SELECT max(m.id) FROM messages m WHERE m.message_id = outbox.message_id AND m.outgoing = 1
);
DROP INDEX messages_sent_by_id;
";

/// Migration 7: no change of tables (issue 14). The records of sessions and groups that held their
/// skipped keys are rewritten without them, each skipped key a record of its own, so that a
/// commit writes the skipped keys that came or went, not all those kept (done in code after the
/// SQL: `state::split_skipped_keys`).
pub const V7: &str = "";

/// Every migration, in order; migration `i` (0-based) takes a store from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// The schema version this build writes.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

/// The store's schema version.
pub(crate) fn version(conn: &Connection) -> Result<u32> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings an existing store to [`LATEST`] in one transaction and returns the version it had
/// (the schema; from a version below 4 the device state's blob split into records; from a
/// version below 7 the skipped keys split from their sessions' and groups' records). A
/// database at version 0 was not made by this crate (`create` writes the schema and the device in
/// one transaction) and is `NotAStore`.
pub(crate) fn migrate(conn: &mut Connection) -> Result<u32> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > LATEST {
        return Err(StoreError::TooNew {
            found,
            supported: LATEST,
        });
    }
    if found == 0 {
        return Err(StoreError::NotAStore("a database without a schema version"));
    }
    if found == LATEST {
        return Ok(found);
    }
    for sql in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(sql)?;
    }
    if found < 4 {
        crate::state::move_state_to_records(&tx)?;
    }
    if found < 7 {
        crate::state::split_skipped_keys(&tx)?;
    }
    tx.pragma_update(None, "user_version", LATEST)?;
    tx.commit()?;
    Ok(found)
}
