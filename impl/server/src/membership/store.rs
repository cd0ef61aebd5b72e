//! The directory's SQLite backend, the embedded default ([`super::directory`]): `membership.db`, a
//! plain SQLite file (rusqlite, no SQLCipher key: it holds public keys only) in the service's
//! data directory. The PostgreSQL backend ([`super::postgres`]) keeps the same tables.
//!
//! Req1: the schema has no column that could hold personal data. It stores, per user:
//!
//! | table | columns |
//! |---|---|
//! | `users` | `user_id` (10 random bytes, ID-1), `identity` (public identity, KEY-2, 128 bytes), `tls_spki` (DER SubjectPublicKeyInfo of the current client certificate), `created_day` (signup day, UTC midnight in ms: deliberately coarse), `cert_serial` (hex), `cert_not_after_ms` (a UTC midnight, like the certificate's dates) |
//! | `signed_prekeys` | `user_id`, `prekey_id`, `body` (KEY-3, 100 bytes); the newest LIM-9 = 3 kept (current + grace) |
//! | `one_time_prekeys` | `user_id`, `prekey_id`, `body` (KEY-4, 36 bytes); deleted in the transaction that serves it |
//! | `revoked` | `serial`, `not_after_ms`: certificates a renewal replaced or an account deletion revoked, until they expire |
//! | `departed` | `user_id`, `day` (UTC midnight in ms, deliberately coarse): accounts deleted by their owner or expired; messages to them are refused (BROKER-5, reason 2) |
//!
//! An account not renewed goes [`ACCOUNT_GRACE_DAYS`] after its certificate expired
//! ([`Store::expire_accounts`]); an owner deletes theirs at once ([`Store::delete_account`]).
//! Either way its id stays in `departed`: ids are random and never reused (ID-1), and the id is
//! all that is kept.
//!
//! No IP address, name, contact, timestamp of use, or anything else about a person is written; nor is
//! anything logged per request. `secure_delete` is on, so a served one-time prekey is overwritten in
//! the file, not just unlinked. The schema version is SQLite's `user_version` ([`SCHEMA_VERSION`]).
//!
//! Rows are decoded (and their signatures verified again, PRIM-2) every time they are read, so a
//! file altered outside the service yields [`StoreError::Corrupt`], never a forged bundle.
//!
//! The store is synchronous; [`super::directory::Directory`] calls it from `spawn_blocking`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sotto_core::keys::{OneTimePreKey, SignedPreKey};
use sotto_core::limits::MAX_SIGNED_PREKEYS;
use sotto_core::{PreKeyBundle, PublicIdentity, UserId};

use super::directory::{
    ACCOUNT_GRACE_DAYS, CertRecord, MAX_STORED_OPKS, MS_PER_DAY, NewUser, UploadRefusal, day_of,
    decode_identity, decode_opk, decode_spk, opk_bytes, spk_bytes, to_sql_int, user_id_of,
};
use super::error::StoreError;

/// The file name inside the data directory.
pub const FILE_NAME: &str = "membership.db";

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i64 = 4;

/// How long a statement waits for a lock held by another connection to the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA_V1: &str = "
CREATE TABLE users (
    user_id           BLOB PRIMARY KEY CHECK (length(user_id) = 10),
    identity          BLOB NOT NULL CHECK (length(identity) = 128),
    tls_spki          BLOB NOT NULL CHECK (length(tls_spki) BETWEEN 1 AND 512),
    created_day       INTEGER NOT NULL,
    cert_serial       TEXT NOT NULL,
    cert_not_after_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE signed_prekeys (
    user_id   BLOB NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    prekey_id INTEGER NOT NULL,
    body      BLOB NOT NULL CHECK (length(body) = 100),
    PRIMARY KEY (user_id, prekey_id)
) WITHOUT ROWID;
CREATE TABLE one_time_prekeys (
    user_id   BLOB NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    prekey_id INTEGER NOT NULL,
    body      BLOB NOT NULL CHECK (length(body) = 36),
    PRIMARY KEY (user_id, prekey_id)
) WITHOUT ROWID;
";

/// Version 2: certificates are issued with day-granular dates (`ca`), and what version 1 recorded
/// of an earlier certificate's `notAfter` (to the second: the moment of the signup or renewal, a
/// year later) is rounded down to its day.
const SCHEMA_V2: &str = "
UPDATE users SET cert_not_after_ms = cert_not_after_ms - cert_not_after_ms % 86400000;
";

/// Version 3: the serials of certificates a renewal replaced (revoked at once, `revocation`), each
/// until the certificate would have expired anyway.
const SCHEMA_V3: &str = "
CREATE TABLE revoked (
    serial       TEXT PRIMARY KEY,
    not_after_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 4: the accounts that are gone (deleted by their owner or expired), by user id and
/// the day they went; nothing else (`departure`).
const SCHEMA_V4: &str = "
CREATE TABLE departed (
    user_id BLOB PRIMARY KEY CHECK (length(user_id) = 10),
    day     INTEGER NOT NULL CHECK (day % 86400000 = 0)
) WITHOUT ROWID;
";

/// The directory's database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating if needed) `membership.db` in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join(FILE_NAME);
        // Created private before SQLite opens it (and its journal takes the same mode).
        crate::private::private_file(&path).map_err(StoreError::Io)?;
        Store::from_connection(Connection::open(path)?)
    }

    /// A throwaway in-memory store (unit tests).
    pub fn in_memory() -> Result<Store, StoreError> {
        Store::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Store, StoreError> {
        // Another process (an old instance still shutting down) may hold the file briefly.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA synchronous = FULL;",
        )?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let steps = match version {
            0 => Some(format!("{SCHEMA_V1} {SCHEMA_V3} {SCHEMA_V4}")),
            1 => Some(format!("{SCHEMA_V2} {SCHEMA_V3} {SCHEMA_V4}")),
            2 => Some(format!("{SCHEMA_V3} {SCHEMA_V4}")),
            3 => Some(SCHEMA_V4.to_owned()),
            SCHEMA_VERSION => None,
            other => return Err(StoreError::UnsupportedSchema(other)),
        };
        if let Some(steps) = steps {
            conn.execute_batch(&format!(
                "BEGIN; {steps} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back an unfinished transaction when its guard drops, so a poisoned lock still
        // guards a consistent database.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many accounts the directory holds.
    pub fn count_users(&self) -> Result<usize, StoreError> {
        let conn = self.lock();
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Whether `user` exists.
    pub fn user_exists(&self, user: &UserId) -> Result<bool, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                "SELECT 1 FROM users WHERE user_id = ?1",
                [&user.0[..]],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Inserts a new user with its prekeys in one transaction; false if the user id is taken.
    pub fn insert_user(&self, user: &NewUser) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // A departed id is never given again (messages to it are refused).
        if is_departed(&tx, &user.user_id)? {
            return Ok(false);
        }
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO users
                 (user_id, identity, tls_spki, created_day, cert_serial, cert_not_after_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                &user.user_id.0[..],
                user.identity.to_bytes(),
                user.tls_spki,
                day_of(user.now_ms),
                user.cert.serial,
                to_sql_int(user.cert.not_after_ms),
            ],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO signed_prekeys (user_id, prekey_id, body) VALUES (?1, ?2, ?3)",
            params![
                &user.user_id.0[..],
                user.signed_prekey.id(),
                spk_bytes(&user.signed_prekey)
            ],
        )?;
        insert_opks(&tx, &user.user_id, &user.one_time_prekeys)?;
        tx.commit()?;
        Ok(true)
    }

    /// The stored public identity of `user`.
    pub fn identity(&self, user: &UserId) -> Result<Option<PublicIdentity>, StoreError> {
        let conn = self.lock();
        load_identity(&conn, user)
    }

    /// Records a renewed certificate for a new TLS key and revokes the one it replaces (into
    /// `revoked`, in the same transaction). Returns the revoked serial, `None` for an unknown
    /// user.
    pub fn update_certificate(
        &self,
        user: &UserId,
        tls_spki: &[u8],
        cert: &CertRecord,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(old_serial) = revoke_current_in(&tx, user)? else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE users SET tls_spki = ?2, cert_serial = ?3, cert_not_after_ms = ?4
             WHERE user_id = ?1",
            params![
                &user.0[..],
                tls_spki,
                cert.serial,
                to_sql_int(cert.not_after_ms)
            ],
        )?;
        tx.commit()?;
        Ok(Some(old_serial))
    }

    /// The serials of revoked certificates that have not expired at `now_ms`; the expired ones
    /// are deleted.
    pub fn revoked_serials(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let conn = self.lock();
        conn.execute(
            "DELETE FROM revoked WHERE not_after_ms < ?1",
            [to_sql_int(now_ms)],
        )?;
        let mut stmt = conn.prepare("SELECT serial FROM revoked")?;
        let serials = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(serials)
    }

    /// Deletes every account whose certificate expired more than [`ACCOUNT_GRACE_DAYS`] before
    /// `now_ms` and was never renewed since (with its prekeys), and records each as departed
    /// (messages to it are refused from then on); returns the ids that went. Such a device
    /// cannot connect to the message service any more, and its inbox session has expired there
    /// too (Mosquitto: `persistent_client_expiration`), so nothing of the account is left.
    pub fn expire_accounts(&self, now_ms: u64) -> Result<Vec<UserId>, StoreError> {
        let cutoff = now_ms.saturating_sub(ACCOUNT_GRACE_DAYS * MS_PER_DAY);
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let expired = "SELECT user_id FROM users WHERE cert_not_after_ms < ?1";
        let cutoff = to_sql_int(cutoff);
        let gone = {
            let mut stmt = tx.prepare(expired)?;
            stmt.query_map([cutoff], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            &format!(
                "INSERT OR IGNORE INTO departed (user_id, day) SELECT user_id, ?2 FROM users
                 WHERE user_id IN ({expired})"
            ),
            params![cutoff, day_of(now_ms)],
        )?;
        for table in ["one_time_prekeys", "signed_prekeys"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id IN ({expired})"),
                [cutoff],
            )?;
        }
        tx.execute("DELETE FROM users WHERE cert_not_after_ms < ?1", [cutoff])?;
        tx.commit()?;
        gone.iter()
            .map(|b| user_id_of(b).ok_or(StoreError::Corrupt("users")))
            .collect()
    }

    /// Deletes the account of `user` at its owner's request, in one transaction: its directory
    /// row, signed and one-time prekeys; its certificate's serial into `revoked` (until the
    /// certificate would have expired); its id into `departed` with the day. Returns the revoked
    /// serial, `None` for an unknown user.
    pub fn delete_account(&self, user: &UserId, now_ms: u64) -> Result<Option<String>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(serial) = revoke_current_in(&tx, user)? else {
            return Ok(None);
        };
        for table in ["one_time_prekeys", "signed_prekeys", "users"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id = ?1"),
                [&user.0[..]],
            )?;
        }
        tx.execute(
            "INSERT OR IGNORE INTO departed (user_id, day) VALUES (?1, ?2)",
            params![&user.0[..], day_of(now_ms)],
        )?;
        tx.commit()?;
        Ok(Some(serial))
    }

    /// Every departed user id (deleted or expired accounts).
    pub fn departed_users(&self) -> Result<Vec<UserId>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT user_id FROM departed")?;
        let raw = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        raw.iter()
            .map(|b| user_id_of(b).ok_or(StoreError::Corrupt("departed")))
            .collect()
    }

    /// Stores uploaded prekeys (KEY-3, KEY-4) in one transaction.
    ///
    /// A signed prekey must have a higher id than the current one (an identical re-upload of the
    /// current one is accepted as a retry); the newest LIM-9 are kept. A one-time prekey with the id
    /// of one still stored replaces it (the device's latest key for that id is the one it holds).
    pub fn add_prekeys(
        &self,
        user: &UserId,
        spk: Option<&SignedPreKey>,
        opks: &[OneTimePreKey],
    ) -> Result<Result<(), UploadRefusal>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if load_identity(&tx, user)?.is_none() {
            return Ok(Err(UploadRefusal::UnknownUser));
        }
        if let Some(spk) = spk {
            let current: Option<(u32, Vec<u8>)> = tx
                .query_row(
                    "SELECT prekey_id, body FROM signed_prekeys WHERE user_id = ?1
                     ORDER BY prekey_id DESC LIMIT 1",
                    [&user.0[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let body = spk_bytes(spk);
            match current {
                Some((id, ref old)) if id == spk.id() && *old == body => {}
                Some((id, _)) if id >= spk.id() => {
                    return Ok(Err(UploadRefusal::StaleSignedPrekey));
                }
                _ => {
                    tx.execute(
                        "INSERT INTO signed_prekeys (user_id, prekey_id, body) VALUES (?1, ?2, ?3)",
                        params![&user.0[..], spk.id(), body],
                    )?;
                    tx.execute(
                        "DELETE FROM signed_prekeys WHERE user_id = ?1 AND prekey_id NOT IN
                         (SELECT prekey_id FROM signed_prekeys WHERE user_id = ?1
                          ORDER BY prekey_id DESC LIMIT ?2)",
                        params![&user.0[..], to_sql_int(MAX_SIGNED_PREKEYS as u64)],
                    )?;
                }
            }
        }
        insert_opks(&tx, user, opks)?;
        if count_opks(&tx, user)? > MAX_STORED_OPKS {
            // Dropping the transaction rolls the whole upload back.
            return Ok(Err(UploadRefusal::TooManyPrekeys));
        }
        tx.commit()?;
        Ok(Ok(()))
    }

    /// How many one-time prekeys `user` has left.
    pub fn one_time_prekey_count(&self, user: &UserId) -> Result<usize, StoreError> {
        let conn = self.lock();
        count_opks(&conn, user)
    }

    /// The bundle of `user` (KEY-5) with its newest signed prekey and, if `with_opk` and one is
    /// left, a one-time prekey, which is deleted in the same transaction (KEY-4: handed out at
    /// most once). `with_opk` false: the rate limits withhold it (`quota`).
    pub fn take_bundle(
        &self,
        user: &UserId,
        with_opk: bool,
    ) -> Result<Option<PreKeyBundle>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let Some(identity) = load_identity(&tx, user)? else {
            return Ok(None);
        };
        let spk_body: Vec<u8> = tx
            .query_row(
                "SELECT body FROM signed_prekeys WHERE user_id = ?1
                 ORDER BY prekey_id DESC LIMIT 1",
                [&user.0[..]],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::Corrupt("signed_prekeys"))?;
        let spk = decode_spk(&spk_body, &identity)?;
        let opk_row: Option<(u32, Vec<u8>)> = if !with_opk {
            None
        } else {
            tx.query_row(
                "SELECT prekey_id, body FROM one_time_prekeys WHERE user_id = ?1
                 ORDER BY prekey_id LIMIT 1",
                [&user.0[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        };
        let opk = match opk_row {
            None => None,
            Some((id, body)) => {
                tx.execute(
                    "DELETE FROM one_time_prekeys WHERE user_id = ?1 AND prekey_id = ?2",
                    params![&user.0[..], id],
                )?;
                Some(decode_opk(&body, id)?)
            }
        };
        tx.commit()?;
        Ok(Some(PreKeyBundle::new(*user, identity, spk, opk)))
    }
}

fn is_departed(conn: &Connection, user: &UserId) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM departed WHERE user_id = ?1",
            [&user.0[..]],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn load_identity(conn: &Connection, user: &UserId) -> Result<Option<PublicIdentity>, StoreError> {
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT identity FROM users WHERE user_id = ?1",
            [&user.0[..]],
            |r| r.get(0),
        )
        .optional()?;
    bytes.map(|b| decode_identity(&b)).transpose()
}

fn insert_opks(conn: &Connection, user: &UserId, opks: &[OneTimePreKey]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "INSERT OR REPLACE INTO one_time_prekeys (user_id, prekey_id, body) VALUES (?1, ?2, ?3)",
    )?;
    for opk in opks {
        stmt.execute(params![&user.0[..], opk.id(), opk_bytes(opk)])?;
    }
    Ok(())
}

fn count_opks(conn: &Connection, user: &UserId) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM one_time_prekeys WHERE user_id = ?1",
        [&user.0[..]],
        |r| r.get(0),
    )?;
    usize::try_from(n).map_err(|_| StoreError::Corrupt("one_time_prekeys"))
}

/// Moves `user`'s current certificate serial into `revoked` (kept until the certificate would
/// have expired) in the transaction `tx`; returns the serial, `None` for an unknown user.
fn revoke_current_in(
    tx: &rusqlite::Transaction<'_>,
    user: &UserId,
) -> Result<Option<String>, StoreError> {
    let cert: Option<(String, i64)> = tx
        .query_row(
            "SELECT cert_serial, cert_not_after_ms FROM users WHERE user_id = ?1",
            [&user.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((serial, not_after)) = cert else {
        return Ok(None);
    };
    tx.execute(
        "INSERT OR REPLACE INTO revoked (serial, not_after_ms) VALUES (?1, ?2)",
        params![serial, not_after],
    )?;
    Ok(Some(serial))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use sotto_core::Identity;
    use sotto_core::keys::OneTimePreKeyPair;

    struct Fixture {
        id: Identity,
        user: UserId,
        store: Store,
    }

    fn fixture(opks: u32) -> Fixture {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let id = Identity::generate(&mut rng);
        let spk = *id.new_signed_prekey(&mut rng, 1).public();
        let opks: Vec<_> = (1..=opks)
            .map(|i| *OneTimePreKeyPair::generate(&mut rng, i).unwrap().public())
            .collect();
        let store = Store::in_memory().unwrap();
        let user = UserId([1; 10]);
        let new = NewUser {
            user_id: user,
            identity: *id.public(),
            tls_spki: vec![0x30, 0x00],
            signed_prekey: spk,
            one_time_prekeys: opks,
            cert: CertRecord {
                serial: "01".into(),
                not_after_ms: 1,
            },
            now_ms: 1_700_000_123_456,
        };
        assert!(store.insert_user(&new).unwrap());
        assert!(!store.insert_user(&new).unwrap(), "the id is taken");
        Fixture { id, user, store }
    }

    #[test]
    fn each_one_time_prekey_is_served_once_key_4() {
        let f = fixture(3);
        let without = f.store.take_bundle(&f.user, false).unwrap().unwrap();
        assert!(without.one_time_prekey().is_none(), "asked without one");
        assert_eq!(
            f.store.one_time_prekey_count(&f.user).unwrap(),
            3,
            "none taken"
        );
        let mut seen = Vec::new();
        for _ in 0..3 {
            let b = f.store.take_bundle(&f.user, true).unwrap().unwrap();
            seen.push(b.one_time_prekey().unwrap().id());
        }
        assert_eq!(seen, vec![1, 2, 3]);
        let last = f.store.take_bundle(&f.user, true).unwrap().unwrap();
        assert!(last.one_time_prekey().is_none());
        assert_eq!(last.to_bytes().len(), 240);
        assert!(
            f.store
                .take_bundle(&UserId([2; 10]), true)
                .unwrap()
                .is_none()
        );
    }

    /// An account whose certificate expired more than 90 days ago goes with its prekeys; one
    /// renewed in time stays.
    #[test]
    fn accounts_expire_90_days_after_their_certificate() {
        let f = fixture(3);
        let expiry = 1; // the fixture's certificate notAfter
        let day = MS_PER_DAY;
        assert!(
            f.store
                .expire_accounts(expiry + 89 * day)
                .unwrap()
                .is_empty()
        );
        assert!(f.store.user_exists(&f.user).unwrap());
        // Renewed: a new certificate a year later keeps the account past the old cutoff.
        let renewed = CertRecord {
            serial: "02".into(),
            not_after_ms: expiry + 365 * day,
        };
        f.store
            .update_certificate(&f.user, &[0x30, 0x00], &renewed)
            .unwrap();
        assert!(
            f.store
                .expire_accounts(expiry + 91 * day)
                .unwrap()
                .is_empty()
        );
        assert!(f.store.user_exists(&f.user).unwrap());
        // Not renewed again: gone 90 days after that certificate, prekeys with it.
        assert_eq!(
            f.store
                .expire_accounts(renewed.not_after_ms + 90 * day + 1)
                .unwrap(),
            vec![f.user]
        );
        assert!(!f.store.user_exists(&f.user).unwrap());
        // An expired account is departed too: messages to it are refused.
        assert_eq!(f.store.departed_users().unwrap(), vec![f.user]);
        assert_eq!(f.store.one_time_prekey_count(&f.user).unwrap(), 0);
        assert!(f.store.take_bundle(&f.user, true).unwrap().is_none());
        let _ = &f.id;
    }

    #[test]
    fn signed_prekeys_rotate_and_keep_grace_lim_9() {
        let f = fixture(0);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        for id in 2..=5 {
            let spk = *f.id.new_signed_prekey(&mut rng, id).public();
            f.store
                .add_prekeys(&f.user, Some(&spk), &[])
                .unwrap()
                .unwrap();
            // An identical retry is fine; an older or reused id is not.
            f.store
                .add_prekeys(&f.user, Some(&spk), &[])
                .unwrap()
                .unwrap();
            let other = *f.id.new_signed_prekey(&mut rng, id).public();
            assert_eq!(
                f.store.add_prekeys(&f.user, Some(&other), &[]).unwrap(),
                Err(UploadRefusal::StaleSignedPrekey)
            );
        }
        let b = f.store.take_bundle(&f.user, true).unwrap().unwrap();
        assert_eq!(b.signed_prekey().id(), 5);
        let conn = f.store.lock();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM signed_prekeys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn opk_cap_rolls_back() {
        let f = fixture(0);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut next = 1;
        for _ in 0..10 {
            let batch: Vec<_> = (next..next + 100)
                .map(|i| *OneTimePreKeyPair::generate(&mut rng, i).unwrap().public())
                .collect();
            next += 100;
            f.store.add_prekeys(&f.user, None, &batch).unwrap().unwrap();
        }
        assert_eq!(f.store.one_time_prekey_count(&f.user).unwrap(), 1000);
        let one = [*OneTimePreKeyPair::generate(&mut rng, next)
            .unwrap()
            .public()];
        assert_eq!(
            f.store.add_prekeys(&f.user, None, &one).unwrap(),
            Err(UploadRefusal::TooManyPrekeys)
        );
        assert_eq!(f.store.one_time_prekey_count(&f.user).unwrap(), 1000);
        assert_eq!(
            f.store.add_prekeys(&UserId([9; 10]), None, &one).unwrap(),
            Err(UploadRefusal::UnknownUser)
        );
    }

    #[test]
    fn version_1_rounds_recorded_certificate_dates_to_days_req1() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;"))
            .unwrap();
        conn.execute(
            "INSERT INTO users VALUES (?1, ?2, X'3000', 1699920000000, '01', 1731542523456)",
            rusqlite::params![&[1u8; 10][..], &[0u8; 128][..]],
        )
        .unwrap();
        let store = Store::from_connection(conn).unwrap();
        let conn = store.lock();
        let (version, not_after): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), cert_not_after_ms FROM users",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(not_after, 1731542523456 - 1731542523456 % 86_400_000);
    }

    /// A deletion takes the row and every prekey, revokes the certificate and remembers the id
    /// with a day only; the id is never given again; a second deletion finds nothing.
    #[test]
    fn a_deleted_account_leaves_only_its_id_and_a_day_req1() {
        let f = fixture(3);
        let now = 1_700_000_123_456;
        assert_eq!(
            f.store.delete_account(&f.user, now).unwrap(),
            Some("01".to_owned())
        );
        assert!(!f.store.user_exists(&f.user).unwrap());
        assert!(f.store.take_bundle(&f.user, true).unwrap().is_none());
        assert_eq!(f.store.revoked_serials(0).unwrap(), vec!["01".to_owned()]);
        assert_eq!(f.store.departed_users().unwrap(), vec![f.user]);
        {
            let conn = f.store.lock();
            for table in ["one_time_prekeys", "signed_prekeys", "users"] {
                let n: i64 = conn
                    .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .unwrap();
                assert_eq!(n, 0, "{table}");
            }
            let day: i64 = conn
                .query_row("SELECT day FROM departed", [], |r| r.get(0))
                .unwrap();
            assert_eq!(day % (MS_PER_DAY as i64), 0);
        }
        assert_eq!(f.store.delete_account(&f.user, now).unwrap(), None);
        // The id is not signed up again.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let spk = *f.id.new_signed_prekey(&mut rng, 1).public();
        let again = NewUser {
            user_id: f.user,
            identity: *f.id.public(),
            tls_spki: vec![0x30, 0x00],
            signed_prekey: spk,
            one_time_prekeys: Vec::new(),
            cert: CertRecord {
                serial: "02".into(),
                not_after_ms: 1,
            },
            now_ms: now,
        };
        assert!(!f.store.insert_user(&again).unwrap());
    }

    #[test]
    fn version_3_gains_the_departed_table() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("{SCHEMA_V1} {SCHEMA_V3} PRAGMA user_version = 3;"))
            .unwrap();
        let store = Store::from_connection(conn).unwrap();
        assert!(store.departed_users().unwrap().is_empty());
        let conn = store.lock();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn created_day_is_coarse_req1() {
        let f = fixture(0);
        let conn = f.store.lock();
        let day: i64 = conn
            .query_row("SELECT created_day FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(day % (MS_PER_DAY as i64), 0);
    }
}
