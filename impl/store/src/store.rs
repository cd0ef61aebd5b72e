//! The store itself: creating and opening the encrypted file (STORE-1, STORE-2), the passphrase
//! change, and the one-transaction commits that keep the device state and the messages it concerns
//! together (STORE-3, RX-4).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior, params};
use sotto_core::{Device, UserId};

use crate::backoff::Backoff;
use crate::error::{Result, StoreError};
use crate::kdf::{KdfHeader, KdfParams, RawKey, sync_parent, with_suffix};
use crate::rows::{ms, user_from};
use crate::schema;
use crate::state;

/// Pages the write-ahead log takes before it is copied into the database (SQLite's default).
const WAL_CHECKPOINT_PAGES: i64 = 1000;

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

/// Deletes the files of a closed store at `path` ([`Store::destroy`]); files already absent are
/// fine.
pub fn destroy_files(path: &Path) -> Result<()> {
    let files = [
        path.to_owned(),
        header_path(path),
        next_header_path(path),
        with_suffix(path, "-wal"),
        with_suffix(path, "-shm"),
        with_suffix(path, "-journal"),
    ];
    for file in files {
        match fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    // The unlinks survive a power loss.
    sync_parent(path)
}

/// The key-derivation header of the store at `path`: `<path>.salt` (STORE-1).
pub fn header_path(path: &Path) -> PathBuf {
    with_suffix(path, ".salt")
}

/// The header of a passphrase change in progress: `<path>.salt.next`.
fn next_header_path(path: &Path) -> PathBuf {
    with_suffix(path, ".salt.next")
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
            for side in ["-journal", "-wal", "-shm"] {
                let _ = fs::remove_file(with_suffix(path, side));
            }
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
            tx.execute(
                "INSERT INTO device (id, user_id, state) VALUES (1, ?1, x'')",
                params![&device.user_id().0[..]],
            )?;
            state::save_changes(&tx, device, &state::all_records(device), now)?;
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

    /// Closes the store and deletes its files: the database, its key-derivation header (and one
    /// of a passphrase change in progress), the write-ahead log and the other side files.
    /// Nothing of the account is left at the path (an account deleted at the service).
    pub fn destroy(self) -> Result<()> {
        let path = self.path.clone();
        self.close()?;
        destroy_files(&path)
    }

    /// Changes the passphrase: a new salt, the key from `params`, and SQLCipher's rekey, which
    /// re-encrypts every page in one transaction (on the rollback journal: the write-ahead log is
    /// copied into the database and removed first, and comes back after).
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
        // SQLCipher rekeys with a rollback journal: the log is emptied into the database first,
        // and comes back after.
        let rekeyed = set_journal_mode(&self.conn, "DELETE").and_then(|()| {
            self.conn
                .key(rusqlite::DEFAULT_NAME, key.as_bytes(), true)
                .map_err(StoreError::from)
        });
        let back = set_journal_mode(&self.conn, "WAL");
        if let Err(e) = rekeyed {
            let _ = fs::remove_file(&next_file);
            return Err(e);
        }
        let header_file = header_path(&self.path);
        fs::rename(&next_file, &header_file)?;
        sync_parent(&header_file)?;
        // Rekeyed either way; a store left on the rollback journal gets its log back on open.
        back
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
        let device = state::load(&self.conn)?;
        if *device.user_id() != self.user_id {
            return Err(StoreError::Corrupt("device state of another user id"));
        }
        Ok(device)
    }
}

/// Opens the file, gives SQLCipher the key and proves it on the schema table: a wrong key fails
/// the first page's authentication (`SQLITE_NOTADB`) before anything is written (STORE-2).
fn connect(path: &Path, key: &RawKey) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    // No waiting for a lock: the only holder is another connection that owns the store until it
    // closes (STORE-4), so the answer is `InUse` at once.
    conn.busy_timeout(Duration::ZERO)?;
    // SQLCipher logs a failed page authentication to stderr; here that is an expected outcome
    // (a wrong passphrase), reported as a typed error instead.
    conn.pragma_update(None, "cipher_log_level", "NONE")?;
    conn.key(rusqlite::DEFAULT_NAME, key.as_bytes(), false)?;
    // One connection owns the store from the first read below to its close (STORE-4): two
    // processes sharing one device's chains would reuse message keys, so a second opener is
    // refused (`InUse`) instead. Exclusive locking also keeps the log's index in this process's
    // memory (no `<db>-shm` file) and spares every transaction its file-lock calls.
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => {}
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            return Err(StoreError::WrongPassphrase);
        }
        Err(e) => return Err(e.into()),
    }
    // Write-ahead log: a commit appends the pages it changed (encrypted, like every page) to
    // `<db>-wal` and syncs that one file (`synchronous = FULL`: a commit survives a power loss,
    // which RX-4 needs before the acknowledgement). The log is copied into the database every
    // `WAL_CHECKPOINT_PAGES` pages and truncated to nothing then and on close, so the superseded
    // pages it holds (old chain keys) do not outlive the next checkpoint. Freed pages of the
    // database are overwritten (`secure_delete`: forward secrecy needs old device states gone),
    // temporary tables stay in memory.
    set_journal_mode(&conn, "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    conn.pragma_update(None, "journal_size_limit", 0)?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The statements of one burst's commit, and the reads between commits, stay prepared.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Sets the journal mode, or says the store cannot have it.
fn set_journal_mode(conn: &Connection, mode: &str) -> Result<()> {
    let now: String = conn.pragma_update_and_check(None, "journal_mode", mode, |r| r.get(0))?;
    if !now.eq_ignore_ascii_case(mode) {
        return Err(StoreError::Corrupt("journal mode cannot be set"));
    }
    Ok(())
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
