//! Typed errors of the store, split by who is at fault: the person (passphrase), the files on disk
//! (missing, damaged, too new), the caller (API misuse) and the environment (I/O, SQLite).
//!
//! No variant carries user data: messages, names, keys and passphrases never reach `Display`.

use rusqlite::ErrorCode;

/// Result of every store operation.
pub type Result<T, E = StoreError> = core::result::Result<T, E>;

/// Why a store operation failed. Nothing was changed when an operation fails (STORE-2, STORE-3):
/// every write runs in one transaction that is rolled back on any error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    // ---------------------------------------------------------------- the person
    /// The passphrase does not open the store (STORE-2). Nothing in the files was touched.
    ///
    /// SQLCipher authenticates every page; a store whose first page was damaged cannot be told
    /// apart from a wrong passphrase and reports this too.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// An empty passphrase was given to create a store or to change its passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,

    // ---------------------------------------------------------------- the files
    /// `create` found a file at the path.
    #[error("a file already exists at the store path")]
    AlreadyExists,
    /// `open` found no file at the path.
    #[error("no store at this path")]
    NotFound,
    /// The key-derivation header beside the store (`<db>.salt`, STORE-1) is missing.
    #[error("the key-derivation header (<db>.salt) is missing")]
    MissingHeader,
    /// The key-derivation header is malformed or has parameters out of range.
    #[error("the key-derivation header (<db>.salt) is malformed: {0}")]
    BadHeader(&'static str),
    /// The file is not an encrypted Sotto store (a plaintext SQLite file, an empty file, a
    /// database without the store's tables).
    #[error("not an encrypted Sotto store: {0}")]
    NotAStore(&'static str),
    /// The store opened with the right key, but its contents are damaged.
    #[error("the store is corrupted: {0}")]
    Corrupt(&'static str),
    /// The store was written by a newer program (schema version above the supported one).
    #[error("store schema version {found} is newer than the supported {supported}")]
    TooNew {
        /// The version found in the file (`PRAGMA user_version`).
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// The saved device state does not import (`Device::import`).
    #[error("device state: {0}")]
    DeviceState(sotto_core::Error),

    // ---------------------------------------------------------------- the caller
    /// A device state of another user id was passed to a store made for a different device.
    #[error("the device state belongs to another user id than the store's")]
    WrongDevice,
    /// Another connection holds the store: each store is opened by one process at a time
    /// (SQLite's exclusive locking mode, held from open to close), because two processes sharing
    /// one device's chains would reuse message keys. Retrying helps once the other closes it.
    #[error("the store is open in another process")]
    InUse,
    /// An argument is out of range (an empty recipient list, an envelope above LIM-1, a time that
    /// does not fit the store, ...).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),

    // ---------------------------------------------------------------- the environment
    /// A file operation failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite (SQLCipher) failed.
    #[error("SQLite: {0}")]
    Sqlite(rusqlite::Error),
    /// Argon2id refused its parameters or failed.
    #[error("key derivation: {0}")]
    Kdf(argon2::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt) => {
                StoreError::Corrupt("SQLite reports a damaged page")
            }
            Some(ErrorCode::NotADatabase) => {
                StoreError::Corrupt("a page failed its authentication check")
            }
            Some(ErrorCode::DatabaseBusy) => StoreError::InUse,
            _ => StoreError::Sqlite(e),
        }
    }
}

impl From<argon2::Error> for StoreError {
    fn from(e: argon2::Error) -> Self {
        StoreError::Kdf(e)
    }
}

impl From<sotto_core::Error> for StoreError {
    fn from(e: sotto_core::Error) -> Self {
        StoreError::DeviceState(e)
    }
}
