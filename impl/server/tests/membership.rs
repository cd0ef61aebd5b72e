//! The membership service over real HTTPS on 127.0.0.1 (port 0), with a real CA, real SQLite and
//! devices made by `sotto_core::Device` (Req1, SIGNUP-1..4, KEY-3..6, TIME-1, TLS-1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sotto_client::ClientError;
use sotto_client::membership::MembershipClient;
use sotto_client::tls::client_config;
use sotto_core::keys::OneTimePreKeyPair;
use sotto_core::{Device, Identity, PreKeyBundle, UserId};
use sotto_server::ca::{self, Pki};
use sotto_server::membership::MembershipHandle;
use sotto_server::membership::quota::QuotaLimits;
use sotto_testkit::mqtt::{DeviceTlsKey, NewDevice};
use sotto_wire::membership_api::{
    ErrorBody, PrekeyUpload, RenewRequest, SignupResponse, TIME_HEADER,
};

const BROKER: &str = "localhost:8883";

struct Service {
    handle: MembershipHandle,
    pki: Arc<Pki>,
}

async fn start(dir: &Path, difficulty: u8) -> Service {
    start_with(dir, difficulty, QuotaLimits::DEFAULT).await
}

/// The service's own limits but one: a requester may take every one-time prekey of a target (the
/// KEY-4 tests fetch one target's prekeys many times; the limits have their own tests).
fn prekeys_unlimited() -> QuotaLimits {
    let many = sotto_server::membership::quota::Rate {
        burst: 1_000,
        every: std::time::Duration::from_secs(1),
    };
    QuotaLimits {
        prekeys_per_requester: many,
        prekeys_per_target: many,
        prekeys_per_pair: many,
        ..QuotaLimits::DEFAULT
    }
}

async fn start_with(dir: &Path, difficulty: u8, quotas: QuotaLimits) -> Service {
    let (handle, pki) = sotto_testkit::stack::start_membership(dir, difficulty, quotas).await;
    Service { handle, pki }
}

impl Service {
    fn anonymous(&self) -> MembershipClient {
        MembershipClient::new(&self.handle.url(), self.pki.ca_pem(), None).unwrap()
    }

    /// A client whose connections prove they hold `tls` (a self-signed certificate of it), as a
    /// device signs up or renews.
    fn proving(&self, tls: &DeviceTlsKey) -> MembershipClient {
        let proof = tls.proof_pem();
        MembershipClient::new(
            &self.handle.url(),
            self.pki.ca_pem(),
            Some((&proof, &tls.key_pem)),
        )
        .unwrap()
    }

    /// A raw reqwest client (no client certificate) for requests the typed client cannot make.
    fn raw(&self) -> reqwest::Client {
        let config = client_config(self.pki.ca_pem(), None).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls((*config).clone())
            .build()
            .unwrap()
    }
}

/// A signed-up device and its authenticated client.
struct Account {
    device: Device,
    tls: DeviceTlsKey,
    user: UserId,
    client: MembershipClient,
    signup: SignupResponse,
}

async fn sign_up(svc: &Service, seed: u64, opks: usize) -> Account {
    let d = NewDevice::new(seed, opks, b"", 0);
    let signup = svc
        .proving(&d.tls)
        .signup(&d.request)
        .await
        .expect("signup");
    let user = UserId::parse(&signup.user_id).unwrap();
    let client = MembershipClient::new(
        &svc.handle.url(),
        &signup.ca_pem,
        Some((&signup.certificate_pem, &d.tls.key_pem)),
    )
    .unwrap();
    Account {
        device: d.device,
        tls: d.tls,
        user,
        client,
        signup,
    }
}

fn api_code(e: &ClientError) -> (u16, &'static str) {
    match e {
        ClientError::Refused { status, code } => (*status, code.as_str()),
        other => panic!("not a refusal of the service: {other:?}"),
    }
}

fn cert_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

// ------------------------------------------------------------------------------------ signup

#[tokio::test]
async fn signup_issues_a_certificate_for_the_user_id_signup_4_tls_1() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let a = sign_up(&svc, 1, 3).await;

    // ID-1: 16 characters of [a-z2-7], 80 bits.
    assert_eq!(a.signup.user_id.len(), 16);
    assert_eq!(a.user.to_text(), a.signup.user_id);
    assert_eq!(a.signup.ca_pem, svc.pki.ca_pem());
    assert_eq!(a.signup.broker, BROKER);
    assert!(a.signup.server_time_ms > 0);

    // CN = user id, issued by the service CA.
    let cert = cert_der(&a.signup.certificate_pem);
    assert_eq!(
        ca::common_name(&cert).as_deref(),
        Some(a.signup.user_id.as_str())
    );
    let ca_der = svc.pki.ca_der();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(ca_der.as_ref()).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(cert.as_ref()).unwrap();
    assert_eq!(leaf.issuer().to_string(), ca_cert.subject().to_string());

    // And it chains to the CA: the service's TLS layer accepts it for mutual TLS.
    assert_eq!(a.client.prekey_count().await.unwrap(), 3);

    // Two signups get two different ids.
    let b = sign_up(&svc, 2, 0).await;
    assert_ne!(a.user, b.user);
}

#[tokio::test]
async fn tampered_signup_is_refused_with_the_core_code_signup_2() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let d = NewDevice::new(3, 2, b"", 0);
    let client = svc.proving(&d.tls);

    let mut bad_sig = d.request.clone();
    let last = bad_sig.len() - 1;
    bad_sig[last] ^= 0x01;
    let e = client.signup(&bad_sig).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "bad_signature"));

    let mut bad_version = d.request.clone();
    bad_version[0] = 0x02;
    let e = client.signup(&bad_version).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "unknown_version"));

    let e = client
        .signup(&d.request[..d.request.len() - 10])
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (400, "truncated"));

    let e = client.signup(&[]).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "truncated"));

    // The untampered request still works.
    client.signup(&d.request).await.unwrap();
}

#[tokio::test]
async fn signup_has_no_room_for_personal_data_req1() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let d = NewDevice::new(4, 0, b"", 0);
    let mut extra = d.request.clone();
    extra.extend_from_slice(b"alice@example.org");
    let e = svc.anonymous().signup(&extra).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "trailing_bytes"));
}

#[tokio::test]
async fn insufficient_work_is_refused_signup_3() {
    let dir = tempfile::tempdir().unwrap();
    // At 32 bits the chance that nonce 0 happens to carry enough work is 2^-32.
    let svc = start(dir.path(), 32).await;
    let client = svc.anonymous();
    let (challenge, difficulty) = client.challenge().await.unwrap();
    assert_eq!(difficulty, 32);
    assert_eq!(challenge.len(), 32);
    let d = NewDevice::new(5, 0, &challenge, 0);
    let e = client.signup(&d.request).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "insufficient_work"));
}

#[tokio::test]
async fn work_must_use_a_fresh_challenge_once_signup_3() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 8).await;
    let client = svc.anonymous();

    // Work over a challenge the service never issued.
    let forged = NewDevice::new(6, 0, &[7; 32], 8);
    let e = svc
        .proving(&forged.tls)
        .signup(&forged.request)
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (400, "unknown_challenge"));

    let (challenge, difficulty) = client.challenge().await.unwrap();
    assert_eq!(difficulty, 8);
    let d = NewDevice::new(7, 1, &challenge, difficulty);
    let client = svc.proving(&d.tls);
    let ok = client.signup(&d.request).await.unwrap();
    assert_eq!(ok.user_id.len(), 16);

    // The same request again: the challenge is spent.
    let e = client.signup(&d.request).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "unknown_challenge"));
}

#[tokio::test]
async fn oversize_body_is_413() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let url = format!("{}/v1/signup", svc.handle.url());
    let raw = svc.raw();
    // Just above the limit (read and dropped), and far above it (not read at all).
    for size in [8 * 1024 + 1, 1024 * 1024] {
        let resp = raw.post(&url).body(vec![0u8; size]).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 413, "{size}");
        assert!(resp.headers().contains_key(TIME_HEADER));
        let body: ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error, "body_too_large");
    }
    // At the limit the body is read and judged by the core.
    let resp = raw
        .post(&url)
        .body(vec![0u8; 8 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.error, "unknown_version");
}

// ------------------------------------------------------------------------------------ bundles

#[tokio::test]
async fn bundle_needs_a_client_certificate_tls_1() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let bob = sign_up(&svc, 8, 2).await;
    let e = svc.anonymous().bundle(&bob.user).await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));
    let e = svc.anonymous().prekey_count().await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));
    // Nothing was consumed by the refused fetch.
    assert_eq!(bob.client.prekey_count().await.unwrap(), 2);

    // A certificate from another CA, CN = Bob's user id: it proves its key (the handshake passes,
    // as for a signup's self-signed one) but is no identity.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Pki::load_or_create(other_dir.path()).unwrap();
    let key = DeviceTlsKey::generate();
    let foreign = other
        .issue_client_cert(&bob.user.to_text(), &key.spki_der)
        .unwrap();
    let intruder = MembershipClient::new(
        &svc.handle.url(),
        svc.pki.ca_pem(),
        Some((&foreign, &key.key_pem)),
    )
    .unwrap();
    let e = intruder.bundle(&bob.user).await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));
    let e = intruder.prekey_count().await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));
    assert_eq!(bob.client.prekey_count().await.unwrap(), 2);
}

#[tokio::test]
async fn each_one_time_prekey_is_handed_out_once_key_4_key_5() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start_with(dir.path(), 0, prekeys_unlimited()).await;
    let alice = sign_up(&svc, 9, 0).await;
    let bob = sign_up(&svc, 10, 4).await;

    let mut ids = BTreeSet::new();
    for _ in 0..4 {
        let bytes = alice.client.bundle(&bob.user).await.unwrap();
        assert_eq!(bytes.len(), 276);
        let bundle = PreKeyBundle::from_bytes(&bytes).unwrap();
        assert_eq!(bundle.user_id(), &bob.user);
        assert_eq!(bundle.identity(), bob.device.identity().public());
        assert!(ids.insert(bundle.one_time_prekey().unwrap().id()));
    }
    let expected: BTreeSet<u32> = bob.device.unused_one_time_prekeys().collect();
    assert_eq!(ids, expected);
    // The (n+1)th bundle has no one-time prekey left.
    let last = alice.client.fetch_bundle(&bob.user).await.unwrap();
    assert!(last.one_time_prekey().is_none());
    assert_eq!(bob.client.prekey_count().await.unwrap(), 0);
    // The directory serves the device's current signed prekey.
    assert_eq!(
        last.signed_prekey(),
        bob.device.bundle(None).unwrap().signed_prekey()
    );
}

#[tokio::test]
async fn concurrent_fetches_never_share_a_one_time_prekey_key_4() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start_with(dir.path(), 0, prekeys_unlimited()).await;
    let alice = sign_up(&svc, 11, 0).await;
    let bob = sign_up(&svc, 12, 5).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, user) = (alice.client.clone(), bob.user);
        tasks.push(tokio::spawn(async move { client.bundle(&user).await }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let b = PreKeyBundle::from_bytes(&t.await.unwrap().unwrap()).unwrap();
        if let Some(o) = b.one_time_prekey() {
            ids.push(o.id());
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn bundle_of_unknown_or_malformed_user() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let alice = sign_up(&svc, 13, 0).await;
    let e = alice.client.bundle(&UserId([0xee; 10])).await.unwrap_err();
    assert_eq!(api_code(&e), (404, "unknown_user"));

    let raw = {
        let config = client_config(
            svc.pki.ca_pem(),
            Some((&alice.signup.certificate_pem, &alice.tls.key_pem)),
        )
        .unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls((*config).clone())
            .build()
            .unwrap()
    };
    for bad in ["AAAAAAAAAAAAAAAA", "short", "aaaaaaaaaaaaaaa1"] {
        let resp = raw
            .get(format!("{}/v1/bundle/{bad}", svc.handle.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
        let body: ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error, "invalid_user_id");
    }
}

// ------------------------------------------------------------------------------------ prekeys

#[tokio::test]
async fn prekey_upload_rotates_and_refills_key_3_key_4() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let alice = sign_up(&svc, 14, 0).await;
    let mut bob = sign_up(&svc, 15, 1).await;
    let mut rng = ChaCha20Rng::seed_from_u64(99);

    let old = *bob.device.bundle(None).unwrap().signed_prekey();
    bob.device.rotate_signed_prekey(&mut rng).unwrap();
    let spk = *bob.device.bundle(None).unwrap().signed_prekey();
    assert_eq!(spk.id(), 2);
    let opks = bob.device.generate_one_time_prekeys(&mut rng, 100).unwrap();
    let upload = PrekeyUpload::new(Some(spk), opks).unwrap();
    bob.client.upload_prekeys(&upload).await.unwrap();
    assert_eq!(bob.client.prekey_count().await.unwrap(), 101);

    let b = alice.client.fetch_bundle(&bob.user).await.unwrap();
    assert_eq!(b.signed_prekey(), &spk);

    // Re-sending the same signed prekey is a harmless retry; an older id is refused.
    bob.client
        .upload_prekeys(&PrekeyUpload::new(Some(spk), vec![]).unwrap())
        .await
        .unwrap();
    let e = bob
        .client
        .upload_prekeys(&PrekeyUpload::new(Some(old), vec![]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(api_code(&e), (409, "stale_signed_prekey"));
}

#[tokio::test]
async fn prekey_upload_with_a_bad_signature_is_refused_key_3() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let bob = sign_up(&svc, 16, 0).await;
    let mut rng = ChaCha20Rng::seed_from_u64(100);
    let mallory = Identity::generate(&mut rng);
    // A signed prekey signed by someone else: built with the other identity, then uploaded raw.
    let forged = *mallory.new_signed_prekey(&mut rng, 2).public();
    let body = PrekeyUpload::new(Some(forged), vec![]).unwrap().to_bytes();
    let raw = {
        let config = client_config(
            svc.pki.ca_pem(),
            Some((&bob.signup.certificate_pem, &bob.tls.key_pem)),
        )
        .unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls((*config).clone())
            .build()
            .unwrap()
    };
    let resp = raw
        .post(format!("{}/v1/prekeys", svc.handle.url()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let e: ErrorBody = resp.json().await.unwrap();
    assert_eq!(e.error, "bad_signature");

    // Too many one-time prekeys in one upload (LIM-15) and a zero id are refused too.
    let mut too_many = vec![0u8, 0, 101];
    for i in 1..=101u32 {
        too_many.extend_from_slice(&i.to_be_bytes());
        too_many.extend_from_slice(
            OneTimePreKeyPair::generate(&mut rng, i)
                .unwrap()
                .public()
                .key()
                .0
                .as_slice(),
        );
    }
    let resp = raw
        .post(format!("{}/v1/prekeys", svc.handle.url()))
        .body(too_many)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let e: ErrorBody = resp.json().await.unwrap();
    assert_eq!(e.error, "length_out_of_range");
    assert_eq!(bob.client.prekey_count().await.unwrap(), 0);
}

// ------------------------------------------------------------------------------------ renew

#[tokio::test]
async fn renew_needs_the_identity_signature_key_6() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let alice = sign_up(&svc, 17, 1).await;
    let new_tls = DeviceTlsKey::generate();
    // Each renew request comes over a connection that proves it holds the new key.
    let anonymous = svc.proving(&new_tls);
    let now = anonymous.time().await.unwrap();

    // Signed by another identity: refused.
    let mut rng = ChaCha20Rng::seed_from_u64(101);
    let mallory = Identity::generate(&mut rng);
    let forged = RenewRequest::sign(&mallory, alice.user, &new_tls.spki_der, now).unwrap();
    let e = anonymous.renew(&forged).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "bad_signature"));

    // A tampered signature: refused.
    let good =
        RenewRequest::sign(alice.device.identity(), alice.user, &new_tls.spki_der, now).unwrap();
    let mut bytes = good.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = RenewRequest::from_bytes(&bytes).unwrap();
    let e = anonymous.renew(&tampered).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "bad_signature"));

    // Out of the time window: refused. For an unknown user: the answer of a wrong signature,
    // so that a request without a certificate cannot tell which user ids exist.
    let stale = RenewRequest::sign(
        alice.device.identity(),
        alice.user,
        &new_tls.spki_der,
        now - 10 * 60 * 1000,
    )
    .unwrap();
    let e = anonymous.renew(&stale).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "stale_timestamp"));
    let nobody = RenewRequest::sign(
        alice.device.identity(),
        UserId([3; 10]),
        &new_tls.spki_der,
        now,
    )
    .unwrap();
    let e = anonymous.renew(&nobody).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "bad_signature"));

    // The real one: a certificate for the new key, CN = the same user id.
    let renewed = anonymous.renew(&good).await.unwrap();
    let cert = cert_der(&renewed.certificate_pem);
    assert_eq!(ca::common_name(&cert), Some(alice.user.to_text()));
    let client = MembershipClient::new(
        &svc.handle.url(),
        &renewed.ca_pem,
        Some((&renewed.certificate_pem, &new_tls.key_pem)),
    )
    .unwrap();
    assert_eq!(client.prekey_count().await.unwrap(), 1);
}

// ------------------------------------------------------------------------------------ service

#[tokio::test]
async fn restart_keeps_users_and_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let alice = sign_up(&svc, 18, 0).await;
    let bob = sign_up(&svc, 19, 2).await;
    let ca_pem = svc.pki.ca_pem().to_owned();
    svc.handle.shutdown().await;

    let svc = start(dir.path(), 0).await;
    assert_eq!(svc.pki.ca_pem(), ca_pem);
    // The old certificates still work against the new process (new port).
    let alice_client = MembershipClient::new(
        &svc.handle.url(),
        &alice.signup.ca_pem,
        Some((&alice.signup.certificate_pem, &alice.tls.key_pem)),
    )
    .unwrap();
    let b = PreKeyBundle::from_bytes(&alice_client.bundle(&bob.user).await.unwrap()).unwrap();
    assert_eq!(b.identity(), bob.device.identity().public());
    assert!(b.one_time_prekey().is_some());
    drop(alice);
}

#[tokio::test]
async fn every_response_carries_the_server_time_time_1() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let client = svc.anonymous();
    assert_eq!(client.last_server_time_ms(), None);
    let t = client.time().await.unwrap();
    assert!(t > 1_600_000_000_000);
    assert!(client.last_server_time_ms().is_some());

    let raw = svc.raw();
    for (method, path, status) in [
        (reqwest::Method::GET, "/v1/time", 200),
        (reqwest::Method::GET, "/v1/challenge", 200),
        (reqwest::Method::GET, "/v1/nothing-here", 404),
        (reqwest::Method::GET, "/v1/signup", 405),
        (reqwest::Method::POST, "/v1/signup", 400),
        (reqwest::Method::GET, "/v1/prekeys/count", 401),
    ] {
        let resp = raw
            .request(method, format!("{}{path}", svc.handle.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let header = resp
            .headers()
            .get(TIME_HEADER)
            .expect("time header")
            .to_str()
            .unwrap();
        assert!(header.parse::<u64>().unwrap() > 1_600_000_000_000);
        if status != 200 {
            let body: ErrorBody = resp.json().await.unwrap();
            assert!(!body.error.is_empty(), "{path}");
        }
    }
}

#[tokio::test]
async fn the_database_holds_keys_only_req1() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let alice = sign_up(&svc, 20, 3).await;
    let bob = sign_up(&svc, 21, 3).await;
    let carol = sign_up(&svc, 22, 3).await;
    alice.client.bundle(&bob.user).await.unwrap();
    // Carol deletes her account: nothing of her is left but her id and a day.
    carol.client.delete_account().await.unwrap();
    svc.handle.shutdown().await;

    let path = dir.path().join("membership.db");
    let bytes = std::fs::read(&path).unwrap();
    for needle in [
        &b"127.0.0.1"[..],
        b"localhost",
        b"::1",
        &[127, 0, 0, 1],
        b"alice",
    ] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{needle:?} in membership.db"
        );
    }

    // The schema: exactly these columns, nothing else.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for name in names {
        let cols: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{name}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.push((name, cols));
    }
    let expected = vec![
        // Accounts deleted or expired: the id and the day, nothing else.
        ("departed".to_owned(), vec!["user_id", "day"]),
        (
            "one_time_prekeys".to_owned(),
            vec!["user_id", "prekey_id", "body"],
        ),
        // Serials of certificates a renewal replaced: random numbers, no user id.
        ("revoked".to_owned(), vec!["serial", "not_after_ms"]),
        (
            "signed_prekeys".to_owned(),
            vec!["user_id", "prekey_id", "body"],
        ),
        (
            "users".to_owned(),
            vec![
                "user_id",
                "identity",
                "tls_spki",
                "created_day",
                "cert_serial",
                "cert_not_after_ms",
            ],
        ),
    ];
    let expected: Vec<(String, Vec<String>)> = expected
        .into_iter()
        .map(|(t, c)| (t, c.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(tables, expected);
    let users: i64 = conn
        .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
        .unwrap();
    assert_eq!(users, 2);
    let gone = &carol.user.0[..];
    for table in ["users", "signed_prekeys", "one_time_prekeys"] {
        let n: i64 = conn
            .query_row(
                &format!("SELECT count(*) FROM {table} WHERE user_id = ?1"),
                [gone],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table} still holds the deleted account");
    }
    let day: i64 = conn
        .query_row("SELECT day FROM departed WHERE user_id = ?1", [gone], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(day % 86_400_000, 0, "no time finer than a day");
    let cert = cert_der(&carol.signup.certificate_pem);
    let serial = sotto_server::revocation::serial_hex(&cert).unwrap();
    let revoked: i64 = conn
        .query_row(
            "SELECT count(*) FROM revoked WHERE serial = ?1",
            [&serial],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(revoked, 1, "the deleted account's certificate is revoked");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
}

/// `POST /v1/account/delete`: only with the account's own certificate; afterwards the bundle is
/// 404, the certificate is no identity any more (401, also for a second deletion), and the
/// other accounts are untouched; a restart keeps it all.
#[tokio::test]
async fn an_account_deleted_is_gone_from_the_directory_and_its_certificate_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let alice = sign_up(&svc, 30, 2).await;
    let bob = sign_up(&svc, 31, 2).await;
    let e = svc.anonymous().delete_account().await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));
    alice.client.bundle(&bob.user).await.unwrap();

    bob.client.delete_account().await.unwrap();
    let e = alice.client.bundle(&bob.user).await.unwrap_err();
    assert_eq!(api_code(&e), (404, "unknown_user"));
    for e in [
        bob.client.delete_account().await.unwrap_err(),
        bob.client.prekey_count().await.unwrap_err(),
    ] {
        assert_eq!(api_code(&e), (401, "client_certificate_required"));
    }
    // Alice is untouched.
    assert_eq!(alice.client.prekey_count().await.unwrap(), 2);

    svc.handle.shutdown().await;
    let svc = start(dir.path(), 0).await;
    let alice = MembershipClient::new(
        &svc.handle.url(),
        &alice.signup.ca_pem,
        Some((&alice.signup.certificate_pem, &alice.tls.key_pem)),
    )
    .unwrap();
    let e = alice.bundle(&bob.user).await.unwrap_err();
    assert_eq!(api_code(&e), (404, "unknown_user"));
    let bob_again = MembershipClient::new(
        &svc.handle.url(),
        &bob.signup.ca_pem,
        Some((&bob.signup.certificate_pem, &bob.tls.key_pem)),
    )
    .unwrap();
    let e = bob_again.prekey_count().await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));
}

// ------------------------------------------------------------------------------------ abuse

/// An HTTPS client of the service whose connections come from `ip` (another loopback address:
/// the rate limits are per source), proving it holds `tls` if given.
fn client_from(svc: &Service, ip: [u8; 4], tls: Option<&DeviceTlsKey>) -> reqwest::Client {
    let proof = tls.map(|t| (t.proof_pem(), t.key_pem.clone()));
    let identity = proof.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
    let tls = client_config(svc.pki.ca_pem(), identity).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .local_address(std::net::IpAddr::from(ip))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

/// 800 signups from one client went through in 17 s: now one source gets its burst (20) and then
/// 429 `rate_limited` with a `retry-after`, while a signup from another address goes through.
#[tokio::test]
async fn a_signup_flood_from_one_source_is_limited() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let url = format!(
        "{}{}",
        svc.handle.url(),
        sotto_wire::membership_api::paths::SIGNUP
    );
    let (mut accepted, mut limited) = (0, 0);
    for seed in 0..60u64 {
        let d = NewDevice::new(1_000 + seed, 0, b"", 0);
        let attacker = client_from(&svc, [127, 0, 0, 2], Some(&d.tls));
        let r = attacker.post(&url).body(d.request).send().await.unwrap();
        match r.status().as_u16() {
            200 => accepted += 1,
            429 => {
                limited += 1;
                let after: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=30).contains(&after), "retry-after {after}");
                let body = r.text().await.unwrap();
                assert!(body.contains(r#""error":"rate_limited""#), "{body}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    let burst = QuotaLimits::DEFAULT.signups_per_source.burst;
    assert!(
        (burst..=burst + 1).contains(&accepted),
        "{accepted} signups accepted from one source (burst {burst})"
    );
    assert_eq!(accepted + limited, 60);
    // Meanwhile another address signs up.
    let honest = sign_up(&svc, 2_000, 1).await;
    assert_eq!(honest.user.to_text().len(), 16);
}

/// Asking for many challenges could evict honest signups' challenges: now a flood of challenge
/// requests from one address (more than the service keeps in all) drops only its own, and an
/// honest signup that took its challenge before the flood completes after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_flood_leaves_others_challenges_alone() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 8).await;
    let (challenge, difficulty) = svc.anonymous().challenge().await.unwrap();
    let url = format!(
        "{}{}",
        svc.handle.url(),
        sotto_wire::membership_api::paths::CHALLENGE
    );
    let attacker = client_from(&svc, [127, 0, 0, 3], None);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (attacker, url) = (attacker.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..(sotto_server::membership::challenge::MAX_CHALLENGES / 4 + 50) {
                let r = attacker.get(&url).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let d = NewDevice::new(3_000, 1, &challenge, difficulty);
    let signup = svc.proving(&d.tls).signup(&d.request).await;
    assert!(signup.is_ok(), "the honest challenge survived: {signup:?}");
}

/// Any account drained another's one-time prekeys (100 -> 0 in 101 fetches): now one requester
/// takes at most two of one target, many requesters at most the target's burst, the rest get the
/// bundle without one (KEY-4), and the prekeys stay for honest contacts.
#[tokio::test]
async fn one_account_cannot_drain_anothers_one_time_prekeys() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let victim = sign_up(&svc, 4_000, 100).await;
    let attacker = sign_up(&svc, 4_001, 0).await;
    let mut given = 0;
    for _ in 0..101 {
        let b = attacker.client.fetch_bundle(&victim.user).await.unwrap();
        given += usize::from(b.one_time_prekey().is_some());
    }
    let per_pair = QuotaLimits::DEFAULT.prekeys_per_pair.burst as usize;
    assert_eq!(given, per_pair, "one requester, one target");
    assert_eq!(
        victim.client.prekey_count().await.unwrap() as usize,
        100 - per_pair
    );
    // An honest contact still gets one.
    let honest = sign_up(&svc, 4_002, 0).await;
    let b = honest.client.fetch_bundle(&victim.user).await.unwrap();
    assert!(b.one_time_prekey().is_some());
    // Many accounts (signed up from this address within its burst): the target gives its burst.
    let per_target = QuotaLimits::DEFAULT.prekeys_per_target.burst as usize;
    let mut sybil_given = 0;
    for seed in 0..12u64 {
        let sybil = sign_up(&svc, 4_100 + seed, 0).await;
        for _ in 0..3 {
            let b = sybil.client.fetch_bundle(&victim.user).await.unwrap();
            sybil_given += usize::from(b.one_time_prekey().is_some());
        }
    }
    assert_eq!(per_pair + 1 + sybil_given, per_target);
    assert_eq!(
        victim.client.prekey_count().await.unwrap() as usize,
        100 - per_target
    );
}

/// The CA signed a certificate for any public key: now a signup or renew request is refused with
/// 400 `key_not_proven` unless its connection presented a certificate of the very TLS key it asks
/// a certificate for (self-signed is enough: the TLS 1.3 handshake's signature proves the key).
#[tokio::test]
async fn a_certificate_only_for_a_key_the_requester_holds() {
    let dir = tempfile::tempdir().unwrap();
    let svc = start(dir.path(), 0).await;
    let d = NewDevice::new(5_000, 0, b"", 0);
    let e = svc.anonymous().signup(&d.request).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "key_not_proven"));
    let other = DeviceTlsKey::generate();
    let e = svc.proving(&other).signup(&d.request).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "key_not_proven"));
    let ok = svc.proving(&d.tls).signup(&d.request).await.unwrap();
    let user = UserId::parse(&ok.user_id).unwrap();
    // A self-signed certificate is no identity for the certificate endpoints.
    let e = svc.proving(&d.tls).prekey_count().await.unwrap_err();
    assert_eq!(api_code(&e), (401, "client_certificate_required"));

    // Renewal: the same rule for the new key.
    let new_tls = DeviceTlsKey::generate();
    let now = svc.anonymous().time().await.unwrap();
    let renew = RenewRequest::sign(d.device.identity(), user, &new_tls.spki_der, now).unwrap();
    let e = svc.anonymous().renew(&renew).await.unwrap_err();
    assert_eq!(api_code(&e), (400, "key_not_proven"));
    let e = svc.proving(&d.tls).renew(&renew).await.unwrap_err();
    assert_eq!(
        api_code(&e),
        (400, "key_not_proven"),
        "the old key proves nothing for the new"
    );
    svc.proving(&new_tls).renew(&renew).await.unwrap();
}
