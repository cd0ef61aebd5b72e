//! The directory's PostgreSQL backend ([`super::directory`]): one database that any number of
//! membership instances serve at once, each through its own pool of connections
//! (tokio-postgres, deadpool-postgres).
//!
//! **Schema.** The tables and columns of the SQLite backend ([`super::store`]; Req1: nothing
//! that could hold personal data), with PostgreSQL types (`bytea`, `bigint`), and with the
//! coarse-time rules as `CHECK`s (`created_day` and `departed.day` are UTC midnights). Its
//! version is the one row of `sotto_schema`; [`MIGRATIONS`] are applied in order in one
//! transaction under a transaction-level advisory lock ([`MIGRATION_LOCK`]), so instances that
//! start together migrate once. A migration, once released, never changes.
//!
//! **Concurrency.** Every operation is one transaction at PostgreSQL's default isolation (read
//! committed) with row locks where a decision reads before it writes:
//! - a one-time prekey is taken with `FOR UPDATE SKIP LOCKED` and deleted in the transaction that
//!   serves it: two instances serving bundles of one user at the same moment each take a
//!   different key, and none is ever handed out twice (KEY-4);
//! - an upload, a renewal and an account deletion lock the user's row (`FOR UPDATE`), so the
//!   checks they make (the current signed prekey, the number of one-time prekeys, the current
//!   certificate) still hold when they commit; a bundle served meanwhile locks it `FOR SHARE`;
//! - a signup inserts with `ON CONFLICT DO NOTHING` (an id drawn twice, never expected, is drawn
//!   again) after checking `departed`;
//! - a signup challenge (SIGNUP-3) issued by one instance is a row of `challenges` until it is
//!   redeemed: the redeeming `DELETE ... RETURNING` succeeds once, at whichever instance.
//!
//! **Instances learn from each other.** A renewal or an account deletion revokes a certificate
//! and an account deletion or expiry departs a user id; the instance that commits it updates its
//! own [`Revocations`] and [`Departures`] (which its front shares) at once, and the transaction
//! announces it (`NOTIFY` [`REVOKED_CHANNEL`] with the serial, [`DEPARTED_CHANNEL`] with the user
//! id, delivered when it commits). Every instance follows both channels on a connection of its
//! own ([`PgDirectory::follow`]) and applies what the others committed: their old certificates
//! are refused, their departed users' messages refused and connections closed, here too. After
//! each (re)connection of that follower it reloads both sets from the tables, so nothing
//! committed while it was away is missed.
//!
//! **Connection.** Settings in libpq's form ([`super::directory::DirectoryBackend::Postgres`]).
//! The connection is not encrypted: PostgreSQL must be reached over a Unix socket or loopback
//! (docs/operations.md, "Several membership instances on PostgreSQL"); the database holds public keys only, but its integrity matters.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use sotto_core::keys::{OneTimePreKey, SignedPreKey};
use sotto_core::limits::MAX_SIGNED_PREKEYS;
use sotto_core::{PreKeyBundle, PublicIdentity, UserId};
use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_postgres::NoTls;

use super::directory::{
    ACCOUNT_GRACE_DAYS, CertRecord, MAX_STORED_OPKS, MS_PER_DAY, NewUser, UploadRefusal, day_of,
    decode_identity, decode_opk, decode_spk, opk_bytes, spk_bytes, to_sql_int, user_id_of,
};
use super::error::StoreError;
use crate::clock::Clock;
use crate::departure::Departures;
use crate::revocation::Revocations;

/// The channel a revoked certificate's serial is announced on.
pub const REVOKED_CHANNEL: &str = "sotto_revoked";

/// The channel a departed user id (text) is announced on.
pub const DEPARTED_CHANNEL: &str = "sotto_departed";

/// How long [`PgDirectory::follow`] waits before connecting again after losing its connection.
const FOLLOW_RETRY: Duration = Duration::from_secs(1);

/// The schema version this code writes and reads.
pub const SCHEMA_VERSION: i32 = 2;

/// The key of the advisory lock migrations run under (any constant of this program's own).
pub const MIGRATION_LOCK: i64 = 0x736f_7474_6f5f_6469; // "sotto_di"

/// How long a request waits for a free connection of the pool, or for a new one.
const POOL_WAIT: Duration = Duration::from_secs(5);

/// Migration 1: the directory, as the SQLite backend's schema version 4.
const MIGRATION_1: &str = "
CREATE TABLE users (
    user_id           bytea PRIMARY KEY CHECK (length(user_id) = 10),
    identity          bytea NOT NULL CHECK (length(identity) = 128),
    tls_spki          bytea NOT NULL CHECK (length(tls_spki) BETWEEN 1 AND 512),
    created_day       bigint NOT NULL CHECK (created_day % 86400000 = 0),
    cert_serial       text NOT NULL,
    cert_not_after_ms bigint NOT NULL
);
CREATE TABLE signed_prekeys (
    user_id   bytea NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    prekey_id bigint NOT NULL CHECK (prekey_id BETWEEN 0 AND 4294967295),
    body      bytea NOT NULL CHECK (length(body) = 100),
    PRIMARY KEY (user_id, prekey_id)
);
CREATE TABLE one_time_prekeys (
    user_id   bytea NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    prekey_id bigint NOT NULL CHECK (prekey_id BETWEEN 0 AND 4294967295),
    body      bytea NOT NULL CHECK (length(body) = 36),
    PRIMARY KEY (user_id, prekey_id)
);
CREATE TABLE revoked (
    serial       text PRIMARY KEY,
    not_after_ms bigint NOT NULL
);
CREATE TABLE departed (
    user_id bytea PRIMARY KEY CHECK (length(user_id) = 10),
    day     bigint NOT NULL CHECK (day % 86400000 = 0)
);
";

/// Migration 2: the signup challenges the instances share (SIGNUP-3): a random value and when it
/// expires, nothing about who asked; a row goes when it is redeemed, when its issuing instance
/// drops it for its bounds, or once expired.
const MIGRATION_2: &str = "
CREATE TABLE challenges (
    value      bytea PRIMARY KEY CHECK (length(value) = 32),
    expires_ms bigint NOT NULL
);
CREATE INDEX challenges_by_expiry ON challenges (expires_ms);
";

/// Every migration, in order; migration `i` (0-based) takes the schema from version `i` to
/// `i + 1`.
pub const MIGRATIONS: &[&str] = &[MIGRATION_1, MIGRATION_2];

/// The directory on PostgreSQL: a pool of connections.
#[derive(Clone)]
pub struct PgDirectory {
    pool: Pool,
    /// For the follower's own connection.
    config: std::sync::Arc<tokio_postgres::Config>,
}

impl std::fmt::Debug for PgDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgDirectory")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .finish()
    }
}

fn pool_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Pool(e.to_string())
}

fn u32_of(v: i64, table: &'static str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(table))
}

impl PgDirectory {
    /// Connects a pool of at most `pool_size` connections with `url` and brings the schema to
    /// [`SCHEMA_VERSION`] (creating it in an empty database).
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Config(e.to_string()))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(pool_error)?;
        let dir = PgDirectory {
            pool,
            config: std::sync::Arc::new(config),
        };
        dir.migrate().await?;
        Ok(dir)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Applies the missing migrations in one transaction, under [`MIGRATION_LOCK`].
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS sotto_schema (version integer NOT NULL)")
            .await?;
        let found: i32 = match tx
            .query_opt("SELECT version FROM sotto_schema", &[])
            .await?
        {
            Some(row) => row.try_get(0)?,
            None => {
                tx.execute("INSERT INTO sotto_schema (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::UnsupportedSchema(i64::from(found)));
        }
        for sql in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
            tx.batch_execute(sql).await?;
        }
        tx.execute("UPDATE sotto_schema SET version = $1", &[&SCHEMA_VERSION])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Shares a challenge issued at this instance until `expires_ms`, forgets those the
    /// instance `dropped` for its bounds, and deletes the expired ones.
    pub async fn offer_challenge(
        &self,
        value: &[u8],
        dropped: &[[u8; 32]],
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO challenges (value, expires_ms) VALUES ($1, $2)
                 ON CONFLICT (value) DO NOTHING",
                &[&value, &to_sql_int(expires_ms)],
            )
            .await?;
        let dropped: Vec<&[u8]> = dropped.iter().map(|d| &d[..]).collect();
        client
            .execute(
                "DELETE FROM challenges WHERE value = ANY($1) OR expires_ms <= $2",
                &[&dropped, &to_sql_int(now_ms)],
            )
            .await?;
        Ok(())
    }

    /// Redeems a challenge any instance issued: true once, if it has not expired at `now_ms`.
    pub async fn redeem_challenge(&self, value: &[u8], now_ms: u64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "DELETE FROM challenges WHERE value = $1 RETURNING expires_ms",
                &[&value],
            )
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<_, i64>(0)? > to_sql_int(now_ms),
            None => false,
        })
    }

    /// How many accounts the directory holds.
    pub async fn count_users(&self) -> Result<usize, StoreError> {
        let client = self.client().await?;
        let n: i64 = client
            .query_one("SELECT count(*) FROM users", &[])
            .await?
            .try_get(0)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Whether `user` exists.
    pub async fn user_exists(&self, user: &UserId) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_opt("SELECT 1 FROM users WHERE user_id = $1", &[&&user.0[..]])
            .await?
            .is_some())
    }

    /// See [`super::directory::Directory::insert_user`].
    pub async fn insert_user(&self, user: &NewUser) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = &user.user_id.0[..];
        if tx
            .query_opt("SELECT 1 FROM departed WHERE user_id = $1", &[&id])
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let inserted = tx
            .execute(
                "INSERT INTO users
                     (user_id, identity, tls_spki, created_day, cert_serial, cert_not_after_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO NOTHING",
                &[
                    &id,
                    &&user.identity.to_bytes()[..],
                    &user.tls_spki,
                    &day_of(user.now_ms),
                    &user.cert.serial,
                    &to_sql_int(user.cert.not_after_ms),
                ],
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO signed_prekeys (user_id, prekey_id, body) VALUES ($1, $2, $3)",
            &[
                &id,
                &i64::from(user.signed_prekey.id()),
                &spk_bytes(&user.signed_prekey),
            ],
        )
        .await?;
        insert_opks(&tx, &user.user_id, &user.one_time_prekeys).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The stored public identity of `user`.
    pub async fn identity(&self, user: &UserId) -> Result<Option<PublicIdentity>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT identity FROM users WHERE user_id = $1",
                &[&&user.0[..]],
            )
            .await?;
        row.map(|r| decode_identity(r.try_get::<_, &[u8]>(0)?))
            .transpose()
    }

    /// See [`super::directory::Directory::update_certificate`].
    pub async fn update_certificate(
        &self,
        user: &UserId,
        tls_spki: &[u8],
        cert: &CertRecord,
    ) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(old) = revoke_current_in(&tx, user).await? else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE users SET tls_spki = $2, cert_serial = $3, cert_not_after_ms = $4
             WHERE user_id = $1",
            &[
                &&user.0[..],
                &tls_spki,
                &cert.serial,
                &to_sql_int(cert.not_after_ms),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(old))
    }

    /// See [`super::directory::Directory::revoked_serials`].
    pub async fn revoked_serials(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "DELETE FROM revoked WHERE not_after_ms < $1",
                &[&to_sql_int(now_ms)],
            )
            .await?;
        let rows = client.query("SELECT serial FROM revoked", &[]).await?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0).map_err(StoreError::from))
            .collect()
    }

    /// See [`super::directory::Directory::expire_accounts`]. The prekeys go with the users'
    /// rows (`ON DELETE CASCADE`).
    pub async fn expire_accounts(&self, now_ms: u64) -> Result<Vec<UserId>, StoreError> {
        let cutoff = to_sql_int(now_ms.saturating_sub(ACCOUNT_GRACE_DAYS * MS_PER_DAY));
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let gone = tx
            .query(
                "DELETE FROM users WHERE cert_not_after_ms < $1 RETURNING user_id",
                &[&cutoff],
            )
            .await?;
        let mut ids = Vec::with_capacity(gone.len());
        for row in &gone {
            let user = user_id_of(row.try_get(0)?).ok_or(StoreError::Corrupt("users"))?;
            depart_in(&tx, &user, now_ms).await?;
            ids.push(user);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// See [`super::directory::Directory::delete_account`].
    pub async fn delete_account(
        &self,
        user: &UserId,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let Some(serial) = revoke_current_in(&tx, user).await? else {
            return Ok(None);
        };
        tx.execute("DELETE FROM users WHERE user_id = $1", &[&&user.0[..]])
            .await?;
        depart_in(&tx, user, now_ms).await?;
        tx.commit().await?;
        Ok(Some(serial))
    }

    /// Every departed user id.
    pub async fn departed_users(&self) -> Result<Vec<UserId>, StoreError> {
        let client = self.client().await?;
        let rows = client.query("SELECT user_id FROM departed", &[]).await?;
        rows.iter()
            .map(|r| {
                let bytes: &[u8] = r.try_get(0)?;
                user_id_of(bytes).ok_or(StoreError::Corrupt("departed"))
            })
            .collect()
    }

    /// See [`super::directory::Directory::add_prekeys`].
    pub async fn add_prekeys(
        &self,
        user: &UserId,
        spk: Option<&SignedPreKey>,
        opks: &[OneTimePreKey],
    ) -> Result<Result<(), UploadRefusal>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = &user.0[..];
        if tx
            .query_opt("SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE", &[&id])
            .await?
            .is_none()
        {
            return Ok(Err(UploadRefusal::UnknownUser));
        }
        if let Some(spk) = spk {
            let current = tx
                .query_opt(
                    "SELECT prekey_id, body FROM signed_prekeys WHERE user_id = $1
                     ORDER BY prekey_id DESC LIMIT 1",
                    &[&id],
                )
                .await?;
            let body = spk_bytes(spk);
            let new_id = i64::from(spk.id());
            let same = match &current {
                Some(row) => {
                    let old_id: i64 = row.try_get(0)?;
                    let old_body: &[u8] = row.try_get(1)?;
                    if old_id == new_id && old_body == &body[..] {
                        true
                    } else if old_id >= new_id {
                        return Ok(Err(UploadRefusal::StaleSignedPrekey));
                    } else {
                        false
                    }
                }
                None => false,
            };
            if !same {
                tx.execute(
                    "INSERT INTO signed_prekeys (user_id, prekey_id, body) VALUES ($1, $2, $3)",
                    &[&id, &new_id, &body],
                )
                .await?;
                tx.execute(
                    "DELETE FROM signed_prekeys WHERE user_id = $1 AND prekey_id NOT IN
                     (SELECT prekey_id FROM signed_prekeys WHERE user_id = $1
                      ORDER BY prekey_id DESC LIMIT $2)",
                    &[&id, &to_sql_int(MAX_SIGNED_PREKEYS as u64)],
                )
                .await?;
            }
        }
        insert_opks(&tx, user, opks).await?;
        if count_opks(&tx, user).await? > MAX_STORED_OPKS {
            // Dropping the transaction rolls the whole upload back.
            return Ok(Err(UploadRefusal::TooManyPrekeys));
        }
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// How many one-time prekeys `user` has left.
    pub async fn one_time_prekey_count(&self, user: &UserId) -> Result<usize, StoreError> {
        let client = self.client().await?;
        count_opks(&client, user).await
    }

    /// See [`super::directory::Directory::take_bundle`].
    pub async fn take_bundle(
        &self,
        user: &UserId,
        with_opk: bool,
    ) -> Result<Option<PreKeyBundle>, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let id = &user.0[..];
        let Some(row) = tx
            .query_opt(
                "SELECT identity FROM users WHERE user_id = $1 FOR SHARE",
                &[&id],
            )
            .await?
        else {
            return Ok(None);
        };
        let identity = decode_identity(row.try_get(0)?)?;
        let spk_row = tx
            .query_opt(
                "SELECT body FROM signed_prekeys WHERE user_id = $1
                 ORDER BY prekey_id DESC LIMIT 1",
                &[&id],
            )
            .await?
            .ok_or(StoreError::Corrupt("signed_prekeys"))?;
        let spk = decode_spk(spk_row.try_get(0)?, &identity)?;
        let opk = if with_opk {
            // KEY-4: the key this transaction locks is deleted with it; a concurrent fetch of
            // the same user (here or on another instance) skips it and takes the next one.
            let taken = tx
                .query_opt(
                    "DELETE FROM one_time_prekeys WHERE (user_id, prekey_id) IN (
                         SELECT user_id, prekey_id FROM one_time_prekeys WHERE user_id = $1
                         ORDER BY prekey_id LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING prekey_id, body",
                    &[&id],
                )
                .await?;
            match taken {
                Some(row) => {
                    let prekey_id = u32_of(row.try_get(0)?, "one_time_prekeys")?;
                    Some(decode_opk(row.try_get(1)?, prekey_id)?)
                }
                None => None,
            }
        } else {
            None
        };
        tx.commit().await?;
        Ok(Some(PreKeyBundle::new(*user, identity, spk, opk)))
    }
}

impl PgDirectory {
    /// Applies what the other instances commit (module documentation) to `revocations` and
    /// `departures`, for as long as the task runs: connects, listens, reloads both sets, then
    /// applies each announcement; after a lost connection, again from the start.
    pub async fn follow(self, revocations: Revocations, departures: Departures, clock: Clock) {
        loop {
            if let Err(e) = self.follow_once(&revocations, &departures, &clock).await {
                tracing::warn!(error = %e, "following the directory's announcements");
            }
            tokio::time::sleep(FOLLOW_RETRY).await;
        }
    }

    async fn follow_once(
        &self,
        revocations: &Revocations,
        departures: &Departures,
        clock: &Clock,
    ) -> Result<(), StoreError> {
        let (client, mut connection) = self.config.connect(NoTls).await?;
        // The connection's messages: the notifications go to the loop below (a full channel
        // waits; PostgreSQL queues them meanwhile), an error ends the round.
        let (tx, mut rx) = mpsc::channel::<(String, String)>(1024);
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let item = (n.channel().to_owned(), n.payload().to_owned());
                        if tx.send(item).await.is_err() {
                            return Ok(());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                }
            }
        });
        let listened = client
            .batch_execute(&format!(
                "LISTEN {REVOKED_CHANNEL}; LISTEN {DEPARTED_CHANNEL}"
            ))
            .await;
        if let Err(e) = listened {
            driver.abort();
            return Err(e.into());
        }
        // Listening first, then reading: whatever commits from here on is announced.
        revocations.replace(self.revoked_serials(clock.now_ms()).await?);
        for user in self.departed_users().await? {
            let text = user.to_text();
            if !departures.is_departed(&text) {
                departures.depart(&text).await;
            }
        }
        while let Some((channel, payload)) = rx.recv().await {
            if channel == REVOKED_CHANNEL {
                revocations.revoke(&payload);
            } else if channel == DEPARTED_CHANNEL && !departures.is_departed(&payload) {
                departures.depart(&payload).await;
            }
        }
        drop(client);
        match driver.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(StoreError::Task),
        }
    }
}

async fn insert_opks(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
    opks: &[OneTimePreKey],
) -> Result<(), StoreError> {
    if opks.is_empty() {
        return Ok(());
    }
    let stmt = tx
        .prepare_cached(
            "INSERT INTO one_time_prekeys (user_id, prekey_id, body) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, prekey_id) DO UPDATE SET body = EXCLUDED.body",
        )
        .await?;
    for opk in opks {
        tx.execute(
            &stmt,
            &[&&user.0[..], &i64::from(opk.id()), &opk_bytes(opk)],
        )
        .await?;
    }
    Ok(())
}

async fn count_opks(
    client: &impl deadpool_postgres::GenericClient,
    user: &UserId,
) -> Result<usize, StoreError> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM one_time_prekeys WHERE user_id = $1",
            &[&&user.0[..]],
        )
        .await?
        .try_get(0)?;
    usize::try_from(n).map_err(|_| StoreError::Corrupt("one_time_prekeys"))
}

/// Locks `user`'s row and moves its current certificate serial into `revoked` (kept until the
/// certificate would have expired); the serial, `None` for an unknown user.
async fn revoke_current_in(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
) -> Result<Option<String>, StoreError> {
    let Some(row) = tx
        .query_opt(
            "SELECT cert_serial, cert_not_after_ms FROM users WHERE user_id = $1 FOR UPDATE",
            &[&&user.0[..]],
        )
        .await?
    else {
        return Ok(None);
    };
    let serial: String = row.try_get(0)?;
    let not_after: i64 = row.try_get(1)?;
    tx.execute(
        "INSERT INTO revoked (serial, not_after_ms) VALUES ($1, $2)
         ON CONFLICT (serial) DO UPDATE SET not_after_ms = EXCLUDED.not_after_ms",
        &[&serial, &not_after],
    )
    .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&REVOKED_CHANNEL, &serial])
        .await?;
    Ok(Some(serial))
}

/// Records `user` as departed on the day of `now_ms` in `tx`, and announces it to every instance
/// when `tx` commits.
async fn depart_in(
    tx: &deadpool_postgres::Transaction<'_>,
    user: &UserId,
    now_ms: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO departed (user_id, day) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&&user.0[..], &day_of(now_ms)],
    )
    .await?;
    tx.execute(
        "SELECT pg_notify($1, $2)",
        &[&DEPARTED_CHANNEL, &user.to_text()],
    )
    .await?;
    Ok(())
}
