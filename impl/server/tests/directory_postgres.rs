//! The membership directory on PostgreSQL (issue 17): the same behaviour as the SQLite backend,
//! driven through the one interface both implement; two membership instances serving one
//! database, a one-time prekey still handed out once under concurrent fetches across them
//! (KEY-4); migrations run once when instances start together (over TCP and the Unix socket);
//! and Req1 read off the database
//! itself. Each test starts its own throwaway PostgreSQL (`sotto_testkit::postgres`) and skips
//! where PostgreSQL is not installed (CI installs it and sets `SOTTO_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_client::membership::MembershipClient;
use sotto_core::keys::{OneTimePreKey, OneTimePreKeyPair, SignedPreKey};
use sotto_core::{Device, Identity, PreKeyBundle, UserId};
use sotto_server::admission::AdmissionLimits;
use sotto_server::ca::Pki;
use sotto_server::departure::Departures;
use sotto_server::membership::directory::{CertRecord, NewUser, UploadRefusal};
use sotto_server::membership::postgres::PgDirectory;
use sotto_server::membership::quota::{QuotaLimits, Rate};
use sotto_server::membership::{
    Directory, DirectoryBackend, Membership, MembershipConfig, MembershipHandle,
};
use sotto_server::revocation::Revocations;
use sotto_testkit::mqtt::DeviceTlsKey;
use sotto_testkit::postgres::TestPostgres;

const DAY: u64 = 86_400_000;

fn backend(pg: &TestPostgres) -> DirectoryBackend {
    DirectoryBackend::Postgres {
        url: pg.url(),
        pool_size: 4,
    }
}

// ------------------------------------------------------------------- the interface, both ways

struct Keys {
    identity: Identity,
    spk: SignedPreKey,
    opks: Vec<OneTimePreKey>,
}

fn keys(seed: u64, opks: u32) -> Keys {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let identity = Identity::generate(&mut rng);
    let spk = *identity.new_signed_prekey(&mut rng, 1).public();
    let opks = (1..=opks)
        .map(|i| *OneTimePreKeyPair::generate(&mut rng, i).unwrap().public())
        .collect();
    Keys {
        identity,
        spk,
        opks,
    }
}

fn new_user(user: UserId, k: &Keys, serial: &str, now_ms: u64) -> NewUser {
    NewUser {
        user_id: user,
        identity: *k.identity.public(),
        tls_spki: vec![0x30, 0x00],
        signed_prekey: k.spk,
        one_time_prekeys: k.opks.clone(),
        cert: CertRecord {
            serial: serial.to_owned(),
            not_after_ms: now_ms + 365 * DAY,
        },
        now_ms,
    }
}

/// One scripted run through every operation; returns what each step answered, so that the two
/// backends can be compared line by line.
async fn script(dir: &Directory) -> Vec<String> {
    let mut out = Vec::new();
    let now = 1_700_000_123_456;
    let (alice, bob) = (UserId([1; 10]), UserId([2; 10]));
    let (ka, kb) = (keys(1, 3), keys(2, 0));
    out.push(format!(
        "insert alice {:?}",
        dir.insert_user(new_user(alice, &ka, "0a", now)).await
    ));
    out.push(format!(
        "insert again {:?}",
        dir.insert_user(new_user(alice, &ka, "0b", now)).await
    ));
    out.push(format!(
        "insert bob {:?}",
        dir.insert_user(new_user(bob, &kb, "0c", now)).await
    ));
    out.push(format!("count {:?}", dir.count_users().await));
    out.push(format!("exists {:?}", dir.user_exists(alice).await));
    out.push(format!(
        "identity {:?}",
        dir.identity(alice).await.map(|i| i.is_some())
    ));
    out.push(format!("opks {:?}", dir.one_time_prekey_count(alice).await));
    for i in 0..5 {
        let b = dir.take_bundle(alice, i != 0).await.unwrap().unwrap();
        out.push(format!(
            "bundle {i}: opk {:?}, {} bytes",
            b.one_time_prekey().map(|o| o.id()),
            b.to_bytes().len()
        ));
    }
    out.push(format!(
        "unknown bundle {:?}",
        dir.take_bundle(UserId([9; 10]), true)
            .await
            .map(|b| b.is_some())
    ));
    // A stale signed prekey, a retry of the current one, a newer one with keys.
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let newer = *ka.identity.new_signed_prekey(&mut rng, 2).public();
    out.push(format!(
        "retry spk {:?}",
        dir.add_prekeys(alice, Some(ka.spk), Vec::new()).await
    ));
    out.push(format!(
        "newer spk + 2 opks {:?}",
        dir.add_prekeys(alice, Some(newer), keys(4, 2).opks).await
    ));
    out.push(format!(
        "stale spk {:?}",
        dir.add_prekeys(alice, Some(ka.spk), Vec::new()).await
    ));
    out.push(format!(
        "opks after {:?}",
        dir.one_time_prekey_count(alice).await
    ));
    let b = dir.take_bundle(alice, false).await.unwrap().unwrap();
    out.push(format!("served spk {}", b.signed_prekey().id()));
    // Beyond the cap the whole upload rolls back.
    let many: Vec<OneTimePreKey> = keys(5, 1001).opks;
    out.push(format!(
        "too many {:?}",
        dir.add_prekeys(alice, None, many).await
    ));
    out.push(format!(
        "opks unchanged {:?}",
        dir.one_time_prekey_count(alice).await
    ));
    out.push(format!(
        "unknown upload {:?}",
        dir.add_prekeys(UserId([9; 10]), None, Vec::new()).await
    ));
    // A renewal revokes the old serial; a deletion revokes the current one and departs the id.
    out.push(format!(
        "renew {:?}",
        dir.update_certificate(
            alice,
            vec![0x30, 0x01],
            CertRecord {
                serial: "1a".into(),
                not_after_ms: now + 365 * DAY
            }
        )
        .await
    ));
    out.push(format!(
        "revoked {:?}",
        sorted(dir.revoked_serials(now).await.unwrap())
    ));
    out.push(format!(
        "delete bob {:?}",
        dir.delete_account(bob, now).await
    ));
    out.push(format!(
        "delete bob again {:?}",
        dir.delete_account(bob, now).await
    ));
    out.push(format!("departed {:?}", dir.departed_users().await));
    out.push(format!(
        "bob back {:?}",
        dir.insert_user(new_user(bob, &kb, "0d", now)).await
    ));
    out.push(format!(
        "bob bundle {:?}",
        dir.take_bundle(bob, true).await.map(|b| b.is_some())
    ));
    // Expiry: nothing before 90 days past the certificate, alice then.
    let expiry = now + 365 * DAY;
    out.push(format!(
        "expire early {:?}",
        dir.expire_accounts(expiry + 89 * DAY).await
    ));
    out.push(format!(
        "expire {:?}",
        dir.expire_accounts(expiry + 91 * DAY).await
    ));
    out.push(format!("count at the end {:?}", dir.count_users().await));
    out.push(format!(
        "departed at the end {:?}",
        dir.departed_users().await.map(sorted)
    ));
    // Revoked serials go once their certificate would have expired.
    out.push(format!(
        "revoked later {:?}",
        dir.revoked_serials(expiry + DAY).await
    ));
    out
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[tokio::test]
async fn the_directory_answers_alike_on_sqlite_and_postgresql() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sqlite = Directory::open(&DirectoryBackend::Sqlite, tmp.path())
        .await
        .unwrap();
    let postgres = Directory::open(&backend(&pg), tmp.path()).await.unwrap();
    assert!(matches!(postgres, Directory::Postgres(_)));
    let a = script(&sqlite).await;
    let b = script(&postgres).await;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "SQLite and PostgreSQL answer differently");
    }
    assert_eq!(a.len(), b.len());
    // The script saw what the rules say, not just the same thing twice.
    let text = a.join("\n");
    for expected in [
        "insert alice Ok(true)",
        "insert again Ok(false)",
        "bundle 0: opk None",
        "bundle 1: opk Some(1)",
        "bundle 3: opk Some(3)",
        "bundle 4: opk None",
        "retry spk Ok(Ok(()))",
        &format!("stale spk Ok(Err({:?}))", UploadRefusal::StaleSignedPrekey),
        "served spk 2",
        &format!("too many Ok(Err({:?}))", UploadRefusal::TooManyPrekeys),
        "opks unchanged Ok(2)",
        "renew Ok(Some(\"0a\"))",
        "delete bob again Ok(None)",
        "bob back Ok(false)",
        "expire early Ok([])",
        "count at the end Ok(0)",
        "revoked later Ok([])",
    ] {
        assert!(text.contains(expected), "{expected:?} not in\n{text}");
    }
}

#[tokio::test]
async fn instances_starting_together_migrate_once() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let url = pg.url();
    // Half of them over the Unix socket (`?host=/path`, as docs/operations.md says it works).
    let starts: Vec<_> = (0..4)
        .map(|i| {
            let url = if i % 2 == 0 {
                url.clone()
            } else {
                pg.socket_url()
            };
            tokio::spawn(async move { PgDirectory::connect(&url, 2).await })
        })
        .collect();
    for s in starts {
        s.await.unwrap().expect("every instance starts");
    }
    assert_eq!(
        pg.psql("SELECT count(*), max(version) FROM sotto_schema"),
        "1|2"
    );
    // A schema newer than this program is refused, not written over.
    pg.psql("UPDATE sotto_schema SET version = 99");
    let err = PgDirectory::connect(&url, 1).await.unwrap_err();
    assert!(
        err.to_string().contains("unsupported schema version 99"),
        "{err}"
    );
}

// --------------------------------------------------- two membership instances, one database

struct Instance {
    handle: MembershipHandle,
    pki: Arc<Pki>,
    revocations: Revocations,
    departures: Departures,
}

/// A membership instance on the shared database: the CA comes from the same data directory
/// (docs/operations.md: every instance has the same CA files).
async fn instance(ca_dir: &Path, pg: &TestPostgres) -> Instance {
    instance_with(ca_dir, pg, 0).await
}

/// [`instance`] with signup work of `difficulty` bits (SIGNUP-3).
async fn instance_with(ca_dir: &Path, pg: &TestPostgres, difficulty: u8) -> Instance {
    let pki = Arc::new(Pki::load_or_create(ca_dir).expect("CA"));
    let many = Rate {
        burst: 1_000,
        every: std::time::Duration::from_secs(1),
    };
    let (revocations, departures) = (Revocations::new(), Departures::new());
    let handle = Membership::start(
        MembershipConfig {
            data_dir: ca_dir.to_path_buf(),
            directory: backend(pg),
            listen: "127.0.0.1:0".parse().unwrap(),
            difficulty,
            broker_addr: "localhost:8883".to_owned(),
            admission: AdmissionLimits::MEMBERSHIP,
            quotas: QuotaLimits {
                prekeys_per_requester: many,
                prekeys_per_target: many,
                prekeys_per_pair: many,
                ..QuotaLimits::DEFAULT
            },
            revocations: revocations.clone(),
            departures: departures.clone(),
            metrics: Arc::new(sotto_server::metrics::Metrics::new()),
        },
        pki.clone(),
    )
    .await
    .expect("membership instance starts");
    Instance {
        handle,
        pki,
        revocations,
        departures,
    }
}

/// A signed-up device: its user id and what its clients present.
struct Account {
    user: UserId,
    certificate_pem: String,
    key_pem: String,
    ca_pem: String,
}

impl Account {
    /// A client of `at` with the account's certificate (any instance: the same CA).
    fn client(&self, at: &Instance) -> MembershipClient {
        MembershipClient::new(
            &at.handle.url(),
            &self.ca_pem,
            Some((&self.certificate_pem, &self.key_pem)),
        )
        .unwrap()
    }
}

/// Signs up a new device at `at` with `opks` one-time prekeys.
async fn register(at: &Instance, seed: u64, opks: usize) -> Account {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut device = Device::new(&mut rng, UserId([0; 10]));
    let tls = DeviceTlsKey::generate();
    let request = device
        .signup_request(&mut rng, &tls.spki_der, opks, b"", 0)
        .unwrap()
        .to_bytes();
    let proof = tls.proof_pem();
    let anonymous = MembershipClient::new(
        &at.handle.url(),
        at.pki.ca_pem(),
        Some((&proof, &tls.key_pem)),
    )
    .unwrap();
    let signup = anonymous.signup(&request).await.expect("signup");
    Account {
        user: UserId::parse(&signup.user_id).unwrap(),
        certificate_pem: signup.certificate_pem,
        key_pem: tls.key_pem.clone(),
        ca_pem: signup.ca_pem,
    }
}

/// Signs up at `at`; the user id and a client of `via`.
async fn sign_up(
    at: &Instance,
    via: &Instance,
    seed: u64,
    opks: usize,
) -> (UserId, MembershipClient) {
    let account = register(at, seed, opks).await;
    (account.user, account.client(via))
}

#[tokio::test]
async fn two_instances_serve_one_directory_and_hand_out_each_one_time_prekey_once_key_4() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let ca = tempfile::tempdir().unwrap();
    let a = instance(ca.path(), &pg).await;
    let b = instance(ca.path(), &pg).await;
    assert_eq!(a.pki.ca_pem(), b.pki.ca_pem(), "one CA for both instances");
    // Bob signs up at A; Alice at B, and asks A with her certificate; Carol at A, asks B.
    let (bob, bob_at_b) = sign_up(&a, &b, 40, 20).await;
    let (_, alice_at_a) = sign_up(&b, &a, 41, 0).await;
    let (_, carol_at_b) = sign_up(&a, &b, 42, 0).await;
    assert_eq!(
        bob_at_b.prekey_count().await.unwrap(),
        20,
        "B sees what A stored"
    );

    // 30 fetches at once, half through each instance, for 20 keys.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let client = if i % 2 == 0 {
            alice_at_a.clone()
        } else {
            carol_at_b.clone()
        };
        tasks.push(tokio::spawn(async move { client.bundle(&bob).await }));
    }
    let mut served = Vec::new();
    for t in tasks {
        let bundle = PreKeyBundle::from_bytes(&t.await.unwrap().unwrap()).unwrap();
        assert_eq!(bundle.user_id(), &bob);
        if let Some(o) = bundle.one_time_prekey() {
            served.push(o.id());
        }
    }
    let distinct: BTreeSet<u32> = served.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        served.len(),
        "a one-time prekey served twice: {served:?}"
    );
    // A fetch that found every remaining key locked by another went without one (KEY-4 allows
    // it); whatever is left is served once each afterwards.
    let mut all = distinct;
    loop {
        let bundle = alice_at_a.fetch_bundle(&bob).await.unwrap();
        match bundle.one_time_prekey() {
            Some(o) => assert!(all.insert(o.id()), "served twice: {}", o.id()),
            None => break,
        }
    }
    assert_eq!(all, (1..=20).collect::<BTreeSet<u32>>());
    assert_eq!(bob_at_b.prekey_count().await.unwrap(), 0);
    assert_eq!(pg.psql("SELECT count(*) FROM one_time_prekeys"), "0");
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test]
async fn the_postgresql_directory_holds_keys_only_req1() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let ca = tempfile::tempdir().unwrap();
    let a = instance(ca.path(), &pg).await;
    let b = instance(ca.path(), &pg).await;
    let (bob, _) = sign_up(&a, &b, 50, 3).await;
    let (_, alice) = sign_up(&b, &a, 51, 3).await;
    let (carol, carol_client) = sign_up(&a, &a, 52, 3).await;
    alice.bundle(&bob).await.unwrap();
    carol_client.delete_account().await.unwrap();

    // The schema: exactly these tables and columns (information_schema, the database's own
    // account of itself).
    let columns = pg.psql(
        "SELECT table_name || '.' || column_name || ':' || data_type FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY table_name, ordinal_position",
    );
    let expected = [
        // Signup challenges shared by the instances: a random value and its expiry, nothing
        // about who asked; gone once redeemed or expired.
        "challenges.value:bytea",
        "challenges.expires_ms:bigint",
        "departed.user_id:bytea",
        "departed.day:bigint",
        "one_time_prekeys.user_id:bytea",
        "one_time_prekeys.prekey_id:bigint",
        "one_time_prekeys.body:bytea",
        "revoked.serial:text",
        "revoked.not_after_ms:bigint",
        "signed_prekeys.user_id:bytea",
        "signed_prekeys.prekey_id:bigint",
        "signed_prekeys.body:bytea",
        "sotto_schema.version:integer",
        "users.user_id:bytea",
        "users.identity:bytea",
        "users.tls_spki:bytea",
        "users.created_day:bigint",
        "users.cert_serial:text",
        "users.cert_not_after_ms:bigint",
    ];
    assert_eq!(columns.lines().collect::<Vec<_>>(), expected);
    // Times no finer than a day; the deleted account left its id and a day only.
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "2");
    assert_eq!(
        pg.psql("SELECT count(*) FROM users WHERE created_day % 86400000 <> 0"),
        "0"
    );
    let carol_hex = hex(&carol.0);
    for table in ["users", "signed_prekeys", "one_time_prekeys"] {
        assert_eq!(
            pg.psql(&format!(
                "SELECT count(*) FROM {table} WHERE user_id = '\\x{carol_hex}'::bytea"
            )),
            "0",
            "{table} still holds the deleted account"
        );
    }
    assert_eq!(
        pg.psql(&format!(
            "SELECT day % 86400000 FROM departed WHERE user_id = '\\x{carol_hex}'::bytea"
        )),
        "0"
    );
    // No address, host name or anything else about the devices in any row.
    let dump = pg.psql(
        "SELECT string_agg(t::text, ',') FROM (
             SELECT users::text AS t FROM users UNION ALL SELECT revoked::text FROM revoked
             UNION ALL SELECT departed::text FROM departed
             UNION ALL SELECT signed_prekeys::text FROM signed_prekeys
             UNION ALL SELECT one_time_prekeys::text FROM one_time_prekeys) rows",
    );
    for needle in ["127.0.0.1", "localhost", "::1", "7f000001", "alice"] {
        assert!(!dump.contains(needle), "{needle:?} in the directory");
    }
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

/// An account deleted through one instance: the other refuses its certificate and counts it as
/// departed within moments (the announcement), and an instance started later knows both from
/// the tables.
#[tokio::test]
async fn a_deletion_at_one_instance_reaches_the_other() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let ca = tempfile::tempdir().unwrap();
    let a = instance(ca.path(), &pg).await;
    let b = instance(ca.path(), &pg).await;
    let account = register(&b, 60, 2).await;
    let (dave_at_a, dave_at_b) = (account.client(&a), account.client(&b));
    let dave = account.user;
    assert_eq!(dave_at_b.prekey_count().await.unwrap(), 2);
    let revoked_before = b.revocations.len();
    dave_at_a.delete_account().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(b.departures.is_departed(&dave.to_text()) && b.revocations.len() > revoked_before) {
        assert!(
            std::time::Instant::now() < deadline,
            "B never learned of the deletion"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // B now refuses the deleted account's certificate itself (on a new connection: a
    // certificate is checked at the handshake).
    assert!(account.client(&b).prekey_count().await.is_err());
    let c = instance(ca.path(), &pg).await;
    assert!(c.departures.is_departed(&dave.to_text()));
    assert_eq!(c.revocations.len(), b.revocations.len());
    for i in [a, b, c] {
        i.handle.shutdown().await;
    }
}

/// SIGNUP-3 across instances: a challenge issued by A is redeemed at B, once; a forged one is
/// refused at both; the table keeps nothing once it is spent.
#[tokio::test]
async fn a_challenge_from_one_instance_is_redeemed_once_at_any_signup_3() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let ca = tempfile::tempdir().unwrap();
    let a = instance_with(ca.path(), &pg, 4).await;
    let b = instance_with(ca.path(), &pg, 4).await;
    let anonymous =
        |at: &Instance| MembershipClient::new(&at.handle.url(), at.pki.ca_pem(), None).unwrap();
    let (challenge, difficulty) = anonymous(&a).challenge().await.unwrap();
    assert_eq!(difficulty, 4);
    assert_eq!(pg.psql("SELECT count(*) FROM challenges"), "1");
    let mut rng = ChaCha20Rng::seed_from_u64(70);
    let mut device = Device::new(&mut rng, UserId([0; 10]));
    let tls = DeviceTlsKey::generate();
    let request = device
        .signup_request(&mut rng, &tls.spki_der, 1, &challenge, difficulty)
        .unwrap()
        .to_bytes();
    let proof = tls.proof_pem();
    let proving = |at: &Instance| {
        MembershipClient::new(
            &at.handle.url(),
            at.pki.ca_pem(),
            Some((&proof, &tls.key_pem)),
        )
        .unwrap()
    };
    // Redeemed at B, which never issued it.
    let ok = proving(&b).signup(&request).await.unwrap();
    assert_eq!(ok.user_id.len(), 16);
    assert_eq!(pg.psql("SELECT count(*) FROM challenges"), "0");
    // Spent everywhere: A, which issued it, refuses it now, and so does B.
    for at in [&a, &b] {
        let e = proving(at).signup(&request).await.unwrap_err();
        assert!(
            matches!(&e, sotto_client::ClientError::Refused { code, .. } if code.as_str() == "unknown_challenge"),
            "{e:?}"
        );
    }
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
