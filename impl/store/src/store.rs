//! The store itself: creating and opening the encrypted file (STORE-1, STORE-2), the passphrase
//! change, and the one-transaction commits that keep the device state and the messages it concerns
//! together (STORE-3, RX-4).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior, params};
use sotto_core::limits::{MAX_DELIVERED_IDS, MAX_ENVELOPE};
use sotto_core::{Content, Device, Incoming, Outgoing, Trust, UserId};

use crate::error::{Result, StoreError};
use crate::kdf::{KdfHeader, KdfParams, RawKey, sync_parent, with_suffix};
use crate::messages::{Chat, MessageState};
use crate::outbox::{Backoff, ToSend};
use crate::schema;

/// SQLite's plaintext file header: an unencrypted database starts with it, a SQLCipher one does not.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The encrypted device store (Req7). One per device; one process at a time.
///
/// Every method that writes runs one transaction: on `Err` nothing changed.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    user_id: UserId,
    pub(crate) backoff: Backoff,
    #[cfg(test)]
    pub(crate) fail_at: Option<&'static str>,
}

impl core::fmt::Debug for Store {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// The key-derivation header of the store at `path`: `<path>.salt` (STORE-1).
pub fn header_path(path: &Path) -> PathBuf {
    with_suffix(path, ".salt")
}

/// The header of a passphrase change in progress: `<path>.salt.next`.
fn next_header_path(path: &Path) -> PathBuf {
    with_suffix(path, ".salt.next")
}

/// A time in ms from the caller's clock, as SQLite stores it.
pub(crate) fn ms(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid("time beyond i64 milliseconds"))
}

/// A time that came from a peer or was computed: clamped rather than refused, so that no value a
/// peer chooses can make a commit fail.
pub(crate) fn ms_clamped(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A time read back from the store.
pub(crate) fn from_ms(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("negative time"))
}

/// A user id read back from the store.
pub(crate) fn user_from(b: &[u8]) -> Result<UserId> {
    Ok(UserId(
        b.try_into()
            .map_err(|_| StoreError::Corrupt("user id length"))?,
    ))
}

pub(crate) fn trust_code(t: Trust) -> i64 {
    match t {
        Trust::Verified => 1,
        Trust::Unverified => 0,
    }
}

impl Store {
    // ------------------------------------------------------------------ create, open, close

    /// Creates a store at `path` holding `device`, keyed from `passphrase` with the default
    /// (OWASP) Argon2id parameters. Fails with `AlreadyExists` if any file is at `path`.
    /// `now` (ms, server-corrected) stamps the contacts the device already has.
    pub fn create(
        path: impl AsRef<Path>,
        passphrase: &[u8],
        device: &Device,
        now: u64,
    ) -> Result<Store> {
        Store::create_with_params(path, passphrase, device, now, KdfParams::default())
    }

    /// [`Store::create`] with chosen Argon2id parameters, recorded in the header so that
    /// [`Store::open`] uses them (STORE-1).
    pub fn create_with_params(
        path: impl AsRef<Path>,
        passphrase: &[u8],
        device: &Device,
        now: u64,
        params: KdfParams,
    ) -> Result<Store> {
        let path = path.as_ref();
        if passphrase.is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        let now = ms(now)?;
        let header = KdfHeader::generate(params)?;
        let key = header.derive(passphrase)?;
        // Claim the path atomically: nothing that is there is ever overwritten.
        match OpenOptions::new().write(true).create_new(true).open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists);
            }
            Err(e) => return Err(e.into()),
        }
        let made = Store::initialize(path, &header, &key, device, now);
        if made.is_err() {
            // Best effort: leave nothing half made behind.
            let _ = fs::remove_file(path);
            let _ = fs::remove_file(header_path(path));
            let _ = fs::remove_file(with_suffix(path, "-journal"));
        }
        made
    }

    fn initialize(
        path: &Path,
        header: &KdfHeader,
        key: &RawKey,
        device: &Device,
        now: i64,
    ) -> Result<Store> {
        header.write(&header_path(path))?;
        let _ = fs::remove_file(next_header_path(path));
        let mut conn = connect(path, key)?;
        {
            // The schema and the device row in one transaction: a store is complete or absent.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for sql in schema::MIGRATIONS {
                tx.execute_batch(sql)?;
            }
            tx.pragma_update(None, "user_version", schema::LATEST)?;
            let state = device.export();
            tx.execute(
                "INSERT INTO device (id, user_id, state) VALUES (1, ?1, ?2)",
                params![&device.user_id().0[..], &state[..]],
            )?;
            sync_contacts(&tx, device, now)?;
            tx.commit()?;
        }
        Ok(Store::from_parts(conn, path, *device.user_id()))
    }

    /// Opens the store at `path` with `passphrase`, applying any pending schema migrations.
    ///
    /// A wrong passphrase is [`StoreError::WrongPassphrase`] and writes nothing (STORE-2); a file
    /// that is not a SQLCipher store is [`StoreError::NotAStore`]; a newer schema is
    /// [`StoreError::TooNew`].
    pub fn open(path: impl AsRef<Path>, passphrase: &[u8]) -> Result<Store> {
        let path = path.as_ref();
        check_file_shape(path)?;
        let header_file = header_path(path);
        let next_file = next_header_path(path);
        let header = KdfHeader::read(&header_file)?;
        let conn = match connect(path, &header.derive(passphrase)?) {
            Ok(conn) => {
                if next_file.exists() {
                    // A passphrase change that never reached the database: forget it.
                    fs::remove_file(&next_file)?;
                    sync_parent(&next_file)?;
                }
                conn
            }
            Err(StoreError::WrongPassphrase) if next_file.exists() => {
                // A passphrase change interrupted after the rekey: the new header opens it.
                let next = KdfHeader::read(&next_file)?;
                let conn = connect(path, &next.derive(passphrase)?)?;
                fs::rename(&next_file, &header_file)?;
                sync_parent(&header_file)?;
                conn
            }
            Err(e) => return Err(e),
        };
        Store::finish_open(conn, path)
    }

    fn finish_open(mut conn: Connection, path: &Path) -> Result<Store> {
        schema::migrate(&mut conn)?;
        let user: Vec<u8> =
            match conn.query_row("SELECT user_id FROM device WHERE id = 1", [], |r| r.get(0)) {
                Ok(u) => u,
                Err(rusqlite::Error::QueryReturnedNoRows) => {
                    return Err(StoreError::Corrupt("no device row"));
                }
                Err(e) => return Err(e.into()),
            };
        Ok(Store::from_parts(conn, path, user_from(&user)?))
    }

    fn from_parts(conn: Connection, path: &Path, user_id: UserId) -> Store {
        Store {
            conn,
            path: path.to_owned(),
            user_id,
            backoff: Backoff::default(),
            #[cfg(test)]
            fail_at: None,
        }
    }

    /// Closes the store, reporting any error SQLite has on closing.
    pub fn close(self) -> Result<()> {
        self.conn.close().map_err(|(_, e)| e.into())
    }

    /// Changes the passphrase: a new salt, the key from `params`, and SQLCipher's rekey, which
    /// re-encrypts every page in one transaction.
    ///
    /// Crash safety: the new header is written to `<db>.salt.next` first; after the rekey it
    /// replaces `<db>.salt`. [`Store::open`] finishes (or forgets) a change that was interrupted.
    pub fn change_passphrase(&mut self, new_passphrase: &[u8], params: KdfParams) -> Result<()> {
        if new_passphrase.is_empty() {
            return Err(StoreError::EmptyPassphrase);
        }
        let header = KdfHeader::generate(params)?;
        let key = header.derive(new_passphrase)?;
        let next_file = next_header_path(&self.path);
        header.write(&next_file)?;
        if let Err(e) = self.conn.key(rusqlite::DEFAULT_NAME, key.as_bytes(), true) {
            let _ = fs::remove_file(&next_file);
            return Err(e.into());
        }
        let header_file = header_path(&self.path);
        fs::rename(&next_file, &header_file)?;
        sync_parent(&header_file)
    }

    // ------------------------------------------------------------------ accessors

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The user id of the device this store belongs to.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32> {
        schema::version(&self.conn)
    }

    /// The resend schedule of the outbox (RX-6).
    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    /// Sets the resend schedule of the outbox (RX-6); it applies from the next attempt on.
    pub fn set_backoff(&mut self, backoff: Backoff) {
        self.backoff = backoff;
    }

    /// The device as last committed.
    pub fn load_device(&self) -> Result<Device> {
        let device = self
            .conn
            .query_row("SELECT state FROM device WHERE id = 1", [], |r| {
                let state = r.get_ref(0)?.as_blob()?;
                Ok(Device::import(state))
            })
            .map_err(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => StoreError::Corrupt("no device row"),
                e => e.into(),
            })??;
        if *device.user_id() != self.user_id {
            return Err(StoreError::Corrupt("device state of another user id"));
        }
        Ok(device)
    }

    // ------------------------------------------------------------------ commits (STORE-3)

    /// Commits a received message with the device state that opened it (RX-4), and queues
    /// `queue` (typically the receipt, RX-5) in the same transaction. The shell acknowledges the
    /// PUBLISH only after this returns `Ok`.
    ///
    /// - Text is saved as a message; every receipted content also records the envelope's hash and
    ///   id, so that a resend of the same envelope is answered with the receipt again (RX-6, see
    ///   [`Store::received_by_envelope`]).
    /// - A receipt (kind 2) marks the messages it names delivered to the sender
    ///   ([`Store::mark_delivered`]).
    /// - A message already committed (same sender and id) inserts nothing and returns `Ok(false)`.
    ///   The device state and `queue` are still saved: the core consumed the message's keys
    ///   (RX-3), and a duplicate deserves its receipt again (RX-6).
    pub fn commit_incoming(
        &mut self,
        device: &Device,
        envelope: &[u8],
        incoming: &Incoming,
        received_at: u64,
        queue: &[ToSend<'_>],
    ) -> Result<bool> {
        self.check_device(device)?;
        check_queue(queue)?;
        let now = ms(received_at)?;
        let hash = sotto_core::crypto::sha256(&[envelope]);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_device(&tx, device, now)?;
        #[cfg(test)]
        fault(self.fail_at, "incoming:after-device")?;
        let fresh = match &incoming.content {
            Content::Receipt(ids) => {
                for id in ids {
                    crate::outbox::apply_receipt(&tx, id, &incoming.from)?;
                }
                true
            }
            content => {
                let mut fresh = true;
                if content.wants_receipt() {
                    fresh = tx.execute(
                        "INSERT OR IGNORE INTO received
                             (envelope_hash, message_id, sender, group_id, received_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            &hash[..],
                            &incoming.id.0[..],
                            &incoming.from.0[..],
                            incoming.group.as_ref().map(|g| &g.0[..]),
                            now
                        ],
                    )? == 1;
                    tx.execute(
                        "DELETE FROM received WHERE rowid <= (SELECT max(rowid) FROM received) - ?1",
                        [MAX_DELIVERED_IDS as i64],
                    )?;
                }
                if let (true, Content::Text(text)) = (fresh, content) {
                    let chat = match incoming.group {
                        Some(g) => Chat::Group(g),
                        None => Chat::User(incoming.from),
                    };
                    fresh = tx.execute(
                        "INSERT OR IGNORE INTO messages (message_id, chat, is_group, sender,
                             outgoing, kind, body, sent_at, received_at, state)
                         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            &incoming.id.0[..],
                            chat.as_bytes(),
                            chat.is_group(),
                            &incoming.from.0[..],
                            content.kind(),
                            text,
                            ms_clamped(incoming.sent_at),
                            now,
                            MessageState::Received.code()
                        ],
                    )? == 1;
                }
                fresh
            }
        };
        #[cfg(test)]
        fault(self.fail_at, "incoming:before-queue")?;
        enqueue(&tx, queue, now)?;
        tx.commit()?;
        Ok(fresh)
    }

    /// Commits a message being sent: the device state after `Device::send` (or `send_group`), the
    /// message (for text), and one outbox row per recipient (GRP-8), all in one transaction
    /// (STORE-3). The rows wait for a receipt if the content wants one (RX-5, RX-6).
    pub fn commit_outgoing(
        &mut self,
        device: &Device,
        out: &Outgoing,
        content: &Content,
        now: u64,
    ) -> Result<()> {
        self.check_device(device)?;
        let item = ToSend {
            outgoing: out,
            until_receipt: content.wants_receipt(),
        };
        check_queue(&[item])?;
        let chat = match (out.group, out.to.first()) {
            (Some(g), _) => Chat::Group(g),
            (None, Some(u)) if out.to.len() == 1 => Chat::User(*u),
            (None, _) => {
                return Err(StoreError::Invalid(
                    "a pairwise message has exactly one recipient",
                ));
            }
        };
        let now = ms(now)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_device(&tx, device, now)?;
        if let Content::Text(text) = content {
            let state = if out.to.is_empty() {
                MessageState::Delivered
            } else {
                MessageState::Queued
            };
            tx.execute(
                "INSERT INTO messages (message_id, chat, is_group, sender, outgoing, kind, body,
                     sent_at, received_at, state)
                 VALUES (?1, ?2, ?3, NULL, 1, ?4, ?5, ?6, NULL, ?7)",
                params![
                    &out.id.0[..],
                    chat.as_bytes(),
                    chat.is_group(),
                    content.kind(),
                    text,
                    now,
                    state.code()
                ],
            )?;
        }
        enqueue(&tx, &[item], now)?;
        tx.commit()?;
        Ok(())
    }

    /// Commits a state-only change (a contact added or verified, a group created or changed, a
    /// prekey rotated) with the envelopes it produced (group keys, removal notices, receipts).
    pub fn commit_device(&mut self, device: &Device, now: u64, queue: &[ToSend<'_>]) -> Result<()> {
        self.check_device(device)?;
        check_queue(queue)?;
        let now = ms(now)?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_device(&tx, device, now)?;
        enqueue(&tx, queue, now)?;
        tx.commit()?;
        Ok(())
    }

    fn check_device(&self, device: &Device) -> Result<()> {
        if *device.user_id() != self.user_id {
            return Err(StoreError::WrongDevice);
        }
        Ok(())
    }
}

/// Opens the file, gives SQLCipher the key and proves it on the schema table: a wrong key fails
/// the first page's authentication (`SQLITE_NOTADB`) before anything is written (STORE-2).
fn connect(path: &Path, key: &RawKey) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    // SQLCipher logs a failed page authentication to stderr; here that is an expected outcome
    // (a wrong passphrase), reported as a typed error instead.
    conn.pragma_update(None, "cipher_log_level", "NONE")?;
    conn.key(rusqlite::DEFAULT_NAME, key.as_bytes(), false)?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(StoreError::WrongPassphrase);
        }
        Err(e) => return Err(e.into()),
    }
    // Rollback journal (deleted after each commit): PRAGMA rekey needs it, and a store leaves no
    // side files behind between transactions. Freed pages are overwritten (old device states hold
    // old chain keys: forward secrecy needs them gone), temporary tables stay in memory.
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(StoreError::Corrupt("journal mode cannot be set"));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Refuses what cannot be an encrypted store before any key is tried.
fn check_file_shape(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(StoreError::NotFound),
        Err(e) => return Err(e.into()),
    };
    if !meta.is_file() {
        return Err(StoreError::NotAStore("not a file"));
    }
    if meta.len() == 0 {
        return Err(StoreError::NotAStore("an empty file"));
    }
    // SQLite page sizes are multiples of 512.
    if meta.len() % 512 != 0 {
        return Err(StoreError::NotAStore("not a whole number of pages"));
    }
    let mut head = [0u8; 16];
    File::open(path)?.read_exact(&mut head)?;
    if &head == SQLITE_MAGIC {
        return Err(StoreError::NotAStore("a plaintext SQLite database"));
    }
    Ok(())
}

fn check_queue(queue: &[ToSend<'_>]) -> Result<()> {
    for item in queue {
        let n = item.outgoing.envelope.len();
        if n == 0 || n > MAX_ENVELOPE {
            return Err(StoreError::Invalid("envelope size out of range (LIM-1)"));
        }
    }
    Ok(())
}

/// Saves the device state and mirrors its contacts into the `contacts` list.
fn save_device(tx: &Transaction<'_>, device: &Device, now: i64) -> Result<()> {
    let state = device.export();
    let n = tx.execute("UPDATE device SET state = ?1 WHERE id = 1", [&state[..]])?;
    if n != 1 {
        return Err(StoreError::Corrupt("no device row"));
    }
    sync_contacts(tx, device, now)
}

/// The `contacts` table lists the device's contacts with what only the person knows (names); the
/// device state is the authority on trust, mirrored here at every commit.
fn sync_contacts(tx: &Transaction<'_>, device: &Device, now: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO contacts (user_id, trust, name, added_at) VALUES (?1, ?2, NULL, ?3)
         ON CONFLICT (user_id) DO UPDATE SET trust = excluded.trust
         WHERE trust <> excluded.trust",
    )?;
    for user in device.contacts() {
        if let Some((trust, _)) = device.contact(user) {
            stmt.execute(params![&user.0[..], trust_code(trust), now])?;
        }
    }
    Ok(())
}

/// Adds one outbox row per recipient of each item, due at once.
fn enqueue(tx: &Transaction<'_>, queue: &[ToSend<'_>], now: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (message_id, recipient, envelope, until_receipt, attempts,
             next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
    )?;
    for item in queue {
        let out = item.outgoing;
        for to in &out.to {
            stmt.execute(params![
                &out.id.0[..],
                &to.0[..],
                &out.envelope[..],
                item.until_receipt,
                now
            ])?;
        }
    }
    Ok(())
}

#[cfg(test)]
fn fault(fail_at: Option<&'static str>, here: &'static str) -> Result<()> {
    if fail_at == Some(here) {
        return Err(StoreError::Invalid("injected fault"));
    }
    Ok(())
}
