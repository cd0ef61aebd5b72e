//! The membership directory behind one interface, [`Directory`], with two backends:
//!
//! - **SQLite** ([`super::store`], the embedded default): `membership.db` in the data directory,
//!   one membership instance (one process) at a time.
//! - **PostgreSQL** ([`super::postgres`]): any number of membership instances serving one
//!   database through a pool of connections each (`sotto serve --directory postgres://...`).
//!   Every operation is one transaction whose row locks keep it correct under concurrent
//!   instances (a one-time prekey is handed out once, KEY-4; see that module).
//!
//! Both keep the same tables and columns (Req1: nothing that could hold personal data; the
//! table in [`super::store`]), decode every row they read and verify its signatures again
//! (PRIM-2), and report failures as [`StoreError`]. The handlers only ever see this interface.
//!
//! What lives here besides: the records both backends share ([`NewUser`], [`CertRecord`],
//! [`UploadRefusal`]), the limits ([`MAX_STORED_OPKS`], [`ACCOUNT_GRACE_DAYS`]), and the row codecs.

use std::path::Path;
use std::sync::Arc;

use sotto_core::codec::{Reader, Writer};
use sotto_core::keys::{OneTimePreKey, SignedPreKey};
use sotto_core::{PreKeyBundle, PublicIdentity, UserId};

use super::error::StoreError;
use super::postgres::PgDirectory;
use super::store::Store;

/// Days after its certificate's expiry that an account not renewed is kept
/// ([`Directory::expire_accounts`]); the same as a Mosquitto session's expiry without a
/// connection.
pub const ACCOUNT_GRACE_DAYS: u64 = 90;

/// Most one-time prekeys the directory keeps per user (uploads beyond it are refused).
pub const MAX_STORED_OPKS: usize = 1000;

/// Milliseconds in a day: the finest time the directory keeps (`created_day`, `departed.day`).
pub(crate) const MS_PER_DAY: u64 = 24 * 3600 * 1000;

/// Which database holds the directory.
#[derive(Clone, PartialEq, Eq)]
pub enum DirectoryBackend {
    /// `membership.db` in the service's data directory (the embedded default).
    Sqlite,
    /// A PostgreSQL database shared by every membership instance.
    Postgres {
        /// libpq-style connection settings: a URL (`postgresql://user@host:port/db`, with
        /// `?host=/path` for a Unix socket) or `key=value` pairs.
        url: String,
        /// Connections this instance keeps open at most.
        pool_size: usize,
    },
}

impl std::fmt::Debug for DirectoryBackend {
    // The URL may carry a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DirectoryBackend::Sqlite => f.write_str("Sqlite"),
            DirectoryBackend::Postgres { pool_size, .. } => f
                .debug_struct("Postgres")
                .field("pool_size", pool_size)
                .finish_non_exhaustive(),
        }
    }
}

impl DirectoryBackend {
    /// Connections a PostgreSQL membership instance keeps by default.
    pub const DEFAULT_POOL_SIZE: usize = 8;

    /// The backend a `--directory` value names: `sqlite`, or a `postgres://` /
    /// `postgresql://` URL (pool of [`DirectoryBackend::DEFAULT_POOL_SIZE`]).
    pub fn parse(text: &str) -> Option<DirectoryBackend> {
        if text == "sqlite" {
            return Some(DirectoryBackend::Sqlite);
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Some(DirectoryBackend::Postgres {
                url: text.to_owned(),
                pool_size: DirectoryBackend::DEFAULT_POOL_SIZE,
            });
        }
        None
    }
}

/// What the service records about an issued client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertRecord {
    /// The certificate's serial number, hex.
    pub serial: String,
    /// Its `notAfter`, in milliseconds since the Unix epoch.
    pub not_after_ms: u64,
}

/// A new user, as accepted from a verified signup request.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// The id the service chose (ID-1).
    pub user_id: UserId,
    /// The device's public identity (KEY-2).
    pub identity: PublicIdentity,
    /// The TLS key the certificate was issued for.
    pub tls_spki: Vec<u8>,
    /// The signed prekey (KEY-3).
    pub signed_prekey: SignedPreKey,
    /// The one-time prekeys (KEY-4).
    pub one_time_prekeys: Vec<OneTimePreKey>,
    /// The certificate issued.
    pub cert: CertRecord,
    /// Server time of the signup, in milliseconds (stored rounded down to the day).
    pub now_ms: u64,
}

/// Why an upload of prekeys was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadRefusal {
    /// No such user.
    UnknownUser,
    /// The signed prekey's id is not newer than the current one (and not an identical retry).
    StaleSignedPrekey,
    /// The upload would take the user beyond [`MAX_STORED_OPKS`].
    TooManyPrekeys,
}

/// The directory, on one of its backends. Cloning it is cheap (a shared handle).
#[derive(Clone, Debug)]
pub enum Directory {
    /// `membership.db` ([`super::store`]); each call runs on the blocking pool.
    Sqlite(Arc<Store>),
    /// PostgreSQL ([`super::postgres`]).
    Postgres(PgDirectory),
}

/// Runs a call of the SQLite store on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|_| StoreError::Task)?
}

impl Directory {
    /// Opens the directory on `backend` (SQLite: in `data_dir`), creating or migrating its
    /// schema.
    pub async fn open(backend: &DirectoryBackend, data_dir: &Path) -> Result<Self, StoreError> {
        match backend {
            DirectoryBackend::Sqlite => {
                let dir = data_dir.to_owned();
                let store = tokio::task::spawn_blocking(move || Store::open(&dir))
                    .await
                    .map_err(|_| StoreError::Task)??;
                Ok(Directory::Sqlite(Arc::new(store)))
            }
            DirectoryBackend::Postgres { url, pool_size } => Ok(Directory::Postgres(
                PgDirectory::connect(url, *pool_size).await?,
            )),
        }
    }

    /// A signup challenge this instance issued (SIGNUP-3), and those its bounds `dropped`: on
    /// PostgreSQL shared with the other instances until `expires_ms` (a failure is logged: the
    /// challenge still works here); on SQLite, with one instance, nothing to do.
    pub async fn offer_challenge(
        &self,
        value: [u8; 32],
        dropped: Vec<[u8; 32]>,
        now_ms: u64,
        expires_ms: u64,
    ) {
        if let Directory::Postgres(p) = self {
            if let Err(e) = p
                .offer_challenge(&value, &dropped, now_ms, expires_ms)
                .await
            {
                tracing::warn!(error = %e, "sharing a signup challenge");
            }
        }
    }

    /// Redeems a signup challenge: on PostgreSQL `Some(true)` once for a challenge any instance
    /// issued and has not expired, `Some(false)` otherwise; on SQLite `None` (the instance's own
    /// [`super::challenge::Challenges`] decide).
    pub async fn redeem_challenge(
        &self,
        value: &[u8],
        now_ms: u64,
    ) -> Result<Option<bool>, StoreError> {
        match self {
            Directory::Sqlite(_) => Ok(None),
            Directory::Postgres(p) => p.redeem_challenge(value, now_ms).await.map(Some),
        }
    }

    /// How many accounts the directory holds.
    pub async fn count_users(&self) -> Result<usize, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, |s| s.count_users()).await,
            Directory::Postgres(p) => p.count_users().await,
        }
    }

    /// Whether `user` exists.
    pub async fn user_exists(&self, user: UserId) -> Result<bool, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.user_exists(&user)).await,
            Directory::Postgres(p) => p.user_exists(&user).await,
        }
    }

    /// Inserts a new user with its prekeys in one transaction; false if the user id is taken
    /// (or departed: a departed id is never given again).
    pub async fn insert_user(&self, user: NewUser) -> Result<bool, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.insert_user(&user)).await,
            Directory::Postgres(p) => p.insert_user(&user).await,
        }
    }

    /// The stored public identity of `user`.
    pub async fn identity(&self, user: UserId) -> Result<Option<PublicIdentity>, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.identity(&user)).await,
            Directory::Postgres(p) => p.identity(&user).await,
        }
    }

    /// Records a renewed certificate for a new TLS key and revokes the one it replaces, in one
    /// transaction. Returns the revoked serial, `None` for an unknown user.
    pub async fn update_certificate(
        &self,
        user: UserId,
        tls_spki: Vec<u8>,
        cert: CertRecord,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Directory::Sqlite(s) => {
                blocking(s, move |s| s.update_certificate(&user, &tls_spki, &cert)).await
            }
            Directory::Postgres(p) => p.update_certificate(&user, &tls_spki, &cert).await,
        }
    }

    /// The serials of revoked certificates that have not expired at `now_ms`; the expired ones
    /// are deleted.
    pub async fn revoked_serials(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.revoked_serials(now_ms)).await,
            Directory::Postgres(p) => p.revoked_serials(now_ms).await,
        }
    }

    /// Deletes every account whose certificate expired more than [`ACCOUNT_GRACE_DAYS`] before
    /// `now_ms` and was never renewed since, records each as departed, and returns their ids.
    pub async fn expire_accounts(&self, now_ms: u64) -> Result<Vec<UserId>, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.expire_accounts(now_ms)).await,
            Directory::Postgres(p) => p.expire_accounts(now_ms).await,
        }
    }

    /// Deletes `user`'s account at its owner's request (row, prekeys; serial into `revoked`, id
    /// into `departed`), in one transaction. Returns the revoked serial, `None` for an unknown
    /// user.
    pub async fn delete_account(
        &self,
        user: UserId,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.delete_account(&user, now_ms)).await,
            Directory::Postgres(p) => p.delete_account(&user, now_ms).await,
        }
    }

    /// Every departed user id (deleted or expired accounts).
    pub async fn departed_users(&self) -> Result<Vec<UserId>, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, |s| s.departed_users()).await,
            Directory::Postgres(p) => p.departed_users().await,
        }
    }

    /// Stores uploaded prekeys (KEY-3, KEY-4) in one transaction: a signed prekey must be newer
    /// than the current one (an identical re-upload is a retry), the newest LIM-9 are kept; a
    /// one-time prekey replaces a stored one of the same id; beyond [`MAX_STORED_OPKS`] the
    /// whole upload is refused.
    pub async fn add_prekeys(
        &self,
        user: UserId,
        spk: Option<SignedPreKey>,
        opks: Vec<OneTimePreKey>,
    ) -> Result<Result<(), UploadRefusal>, StoreError> {
        match self {
            Directory::Sqlite(s) => {
                blocking(s, move |s| s.add_prekeys(&user, spk.as_ref(), &opks)).await
            }
            Directory::Postgres(p) => p.add_prekeys(&user, spk.as_ref(), &opks).await,
        }
    }

    /// How many one-time prekeys `user` has left.
    pub async fn one_time_prekey_count(&self, user: UserId) -> Result<usize, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.one_time_prekey_count(&user)).await,
            Directory::Postgres(p) => p.one_time_prekey_count(&user).await,
        }
    }

    /// The bundle of `user` (KEY-5) with its newest signed prekey and, if `with_opk` and one is
    /// left, a one-time prekey, deleted in the same transaction (KEY-4: handed out at most once,
    /// by any instance).
    pub async fn take_bundle(
        &self,
        user: UserId,
        with_opk: bool,
    ) -> Result<Option<PreKeyBundle>, StoreError> {
        match self {
            Directory::Sqlite(s) => blocking(s, move |s| s.take_bundle(&user, with_opk)).await,
            Directory::Postgres(p) => p.take_bundle(&user, with_opk).await,
        }
    }
}

// ------------------------------------------------------------------------------- row codecs

/// A user id column.
pub(crate) fn user_id_of(bytes: &[u8]) -> Option<UserId> {
    Some(UserId(<[u8; 10]>::try_from(bytes).ok()?))
}

/// The UTC midnight of `ms`, in ms: the finest time `created_day` and `departed` keep.
pub(crate) fn day_of(ms: u64) -> i64 {
    to_sql_int(ms - ms % MS_PER_DAY)
}

/// Database integers are i64; times in ms fit until the year 292 million.
pub(crate) fn to_sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A signed prekey's column bytes.
pub(crate) fn spk_bytes(spk: &SignedPreKey) -> Vec<u8> {
    let mut w = Writer::with_capacity(SignedPreKey::LEN);
    spk.encode(&mut w);
    w.into_vec()
}

/// A one-time prekey's column bytes.
pub(crate) fn opk_bytes(opk: &OneTimePreKey) -> Vec<u8> {
    let mut w = Writer::with_capacity(OneTimePreKey::LEN);
    opk.encode(&mut w);
    w.into_vec()
}

/// A stored identity, decoded and verified again.
pub(crate) fn decode_identity(bytes: &[u8]) -> Result<PublicIdentity, StoreError> {
    let mut r = Reader::new(bytes);
    PublicIdentity::decode(&mut r)
        .ok()
        .filter(|_| r.remaining() == 0)
        .ok_or(StoreError::Corrupt("users"))
}

/// A stored signed prekey, decoded and its signature by `identity` verified again.
pub(crate) fn decode_spk(
    bytes: &[u8],
    identity: &PublicIdentity,
) -> Result<SignedPreKey, StoreError> {
    let mut r = Reader::new(bytes);
    SignedPreKey::decode(&mut r, identity)
        .ok()
        .filter(|_| r.remaining() == 0)
        .ok_or(StoreError::Corrupt("signed_prekeys"))
}

/// A stored one-time prekey, decoded; its id must be the row's.
pub(crate) fn decode_opk(bytes: &[u8], id: u32) -> Result<OneTimePreKey, StoreError> {
    let mut r = Reader::new(bytes);
    OneTimePreKey::decode(&mut r)
        .ok()
        .filter(|o| o.id() == id && r.remaining() == 0)
        .ok_or(StoreError::Corrupt("one_time_prekeys"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_value_names_its_backend() {
        assert_eq!(
            DirectoryBackend::parse("sqlite"),
            Some(DirectoryBackend::Sqlite)
        );
        assert!(matches!(
            DirectoryBackend::parse("postgresql://sotto@127.0.0.1:5432/sotto"),
            Some(DirectoryBackend::Postgres { pool_size: 8, .. })
        ));
        assert_eq!(DirectoryBackend::parse("mysql://x"), None);
        let debug = format!(
            "{:?}",
            DirectoryBackend::parse("postgres://u:secret@h/db").unwrap_or(DirectoryBackend::Sqlite)
        );
        assert!(!debug.contains("secret"), "{debug}");
    }
}
