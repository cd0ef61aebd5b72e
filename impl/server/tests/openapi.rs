//! docs/membership-api.openapi.json against the running membership service: every endpoint is
//! called with valid and invalid requests over real HTTPS (mutual TLS where the service wants a
//! client certificate), and every response must be declared by the document: its status for that
//! operation, its content type, its headers and its body (JSON Schema draft 2020-12, the dialect
//! of OpenAPI 3.1, with the `$ref`s to `#/components/...` resolved in the document itself).
//!
//! Coverage both ways: the document's operations are exactly the router's
//! (`sotto_server::membership::routes`, the table the router is built from), every operation is
//! exercised, and every status the document declares is observed but those listed in
//! [`UNREACHABLE`] with the reason; the error code enum is exactly `ApiCode::SERVICE` and the
//! core's `Error::ALL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use reqwest::Method;
use serde_json::{Value, json};
use sotto_client::tls::client_config;
use sotto_core::keys::OneTimePreKeyPair;
use sotto_core::signup::SignupRequest;
use sotto_core::{Device, Identity, UserId};
use sotto_server::ca::Pki;
use sotto_server::membership::quota::{QuotaLimits, Rate};
use sotto_server::membership::{MembershipHandle, routes};
use sotto_testkit::mqtt::{DeviceTlsKey, NewDevice};
use sotto_wire::membership_api::{
    ApiCode, ChallengeResponse, PrekeyUpload, RenewRequest, SignupResponse, TimeResponse, paths,
};

const DOC: &str = include_str!("../../../docs/membership-api.openapi.json");

/// Declared statuses no request from outside can provoke, with why (each is still validated
/// whenever it occurs).
const UNREACHABLE: &[(&str, &str, &str, &str)] = &[
    (
        "*",
        "*",
        "500",
        "a fault of the service (its database, a lost connection source)",
    ),
    (
        "*",
        "*",
        "503",
        "a request that takes over 30 s (handlers::REQUEST_TIMEOUT)",
    ),
    (
        "post",
        "/v1/renew",
        "404",
        "the account deleted between the signature check and the certificate update",
    ),
    (
        "post",
        "/v1/prekeys",
        "404",
        "the caller's account deleted while its certificate is not yet revoked (the deletion revokes it in the same step)",
    ),
    (
        "post",
        "/v1/account/delete",
        "404",
        "as for /v1/prekeys: a certificate of the CA, not revoked, for an account the directory no longer has",
    ),
    (
        "post",
        "/v1/account/delete",
        "400",
        "its only 400 is body_unreadable: a body whose framing breaks mid-way, which reqwest does not send (not exercised yet)",
    ),
];

// ------------------------------------------------------------------------------------ the document

/// The document, its compiled schemas and what the test observed.
struct Contract {
    doc: Value,
    /// (method, path template, status) of every checked response of an operation.
    seen: Mutex<BTreeSet<(String, String, String)>>,
}

impl Contract {
    fn load() -> Contract {
        Contract {
            doc: serde_json::from_str(DOC).expect("docs/membership-api.openapi.json is JSON"),
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// Follows a `$ref` to `#/...` within the document.
    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => self
                .doc
                .pointer(r.strip_prefix('#').expect("a local $ref"))
                .unwrap_or_else(|| panic!("dangling $ref {r}")),
            None => v,
        }
    }

    /// Validates `instance` against `schema`, a schema of the document: one draft 2020-12
    /// document holding the components, so `#/components/schemas/...` resolves as in OpenAPI.
    fn validate(&self, schema: &Value, instance: &Value, what: &str) {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        let validator = jsonschema::draft202012::new(&root)
            .unwrap_or_else(|e| panic!("{what}: the document's schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{what}: {instance} does not match the document: {errors:?}"
        );
    }

    /// The operations of the document: (method, path template).
    fn operations(&self) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in self.doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if [
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&method.as_str())
                {
                    out.insert((method.clone(), path.clone()));
                }
            }
        }
        out
    }

    /// Checks one response against what the document declares for `method` on `template`, or,
    /// for a path the service does not route (`template` None) or a method a routed path does
    /// not have, against `components.responses.NotFound` / `MethodNotAllowed`.
    fn check(&self, method: &Method, template: Option<&str>, r: &Exchange) {
        let m = method.as_str().to_ascii_lowercase();
        let what = format!(
            "{} {} -> {}",
            method,
            template.unwrap_or("(unrouted)"),
            r.status
        );
        let status = r.status.to_string();
        let response = match template.map(|t| &self.doc["paths"][t]) {
            None => &self.doc["components"]["responses"]["NotFound"],
            Some(item) if item.get(&m).is_none() => {
                &self.doc["components"]["responses"]["MethodNotAllowed"]
            }
            Some(item) => {
                let declared = &item[&m]["responses"];
                let declared = declared
                    .get(&status)
                    .unwrap_or_else(|| panic!("{what}: status not declared; body {:?}", r.text()));
                self.seen.lock().unwrap().insert((
                    m.clone(),
                    template.unwrap_or_default().to_owned(),
                    status.clone(),
                ));
                declared
            }
        };
        let response = self.resolve(response);
        // Headers: each declared one that is required is present and matches its schema.
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = self.resolve(header);
            let got = r.headers.get(name.as_str());
            if header["required"] == json!(true) {
                assert!(got.is_some(), "{what}: header {name} missing");
            }
            if let Some(v) = got {
                let v = Value::String(v.to_str().expect("ASCII header").to_owned());
                self.validate(&header["schema"], &v, &format!("{what}, header {name}"));
            }
        }
        // Content: none declared means no body; else the content type is declared and the body
        // matches its schema (JSON) or its sizes (binary).
        let content_type = r.headers.get(reqwest::header::CONTENT_TYPE).map(|v| {
            v.to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .trim()
                .to_owned()
        });
        match response.get("content").and_then(Value::as_object) {
            None => {
                assert!(r.body.is_empty(), "{what}: a body where none is declared");
                assert_eq!(content_type, None, "{what}: a content type without content");
            }
            Some(content) => {
                let ct = content_type.unwrap_or_else(|| panic!("{what}: no content type"));
                let media = content
                    .get(&ct)
                    .unwrap_or_else(|| panic!("{what}: content type {ct} not declared"));
                if ct == "application/json" {
                    let body: Value = serde_json::from_slice(&r.body)
                        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {:?}", r.text()));
                    self.validate(&media["schema"], &body, &what);
                } else if let Some(sizes) = media.get("x-sotto-sizes").and_then(Value::as_array) {
                    assert!(
                        sizes.contains(&json!(r.body.len())),
                        "{what}: {} bytes, declared {sizes:?}",
                        r.body.len()
                    );
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------ the service

/// A response, read whole.
struct Exchange {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Exchange {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body the document declares")
    }

    fn code(&self) -> String {
        let v: Value = serde_json::from_slice(&self.body).expect("an error body");
        v["error"].as_str().expect("error code").to_owned()
    }
}

struct Service {
    handle: MembershipHandle,
    pki: Arc<Pki>,
    contract: Arc<Contract>,
}

async fn start(dir: &Path, difficulty: u8, signups: Rate, contract: Arc<Contract>) -> Service {
    let quotas = QuotaLimits {
        signups_per_source: signups,
        signups,
        ..QuotaLimits::DEFAULT
    };
    let (handle, pki) = sotto_testkit::stack::start_membership(dir, difficulty, quotas).await;
    Service {
        handle,
        pki,
        contract,
    }
}

/// Who calls: no client certificate, a self-signed one of a key (the signup's and renewal's key
/// proof), or the CA's certificate of an account.
#[derive(Clone)]
struct Caller(reqwest::Client);

impl Service {
    fn client(&self, identity: Option<(&str, &str)>) -> Caller {
        let config = client_config(self.pki.ca_pem(), identity).unwrap();
        Caller(
            reqwest::Client::builder()
                .use_preconfigured_tls((*config).clone())
                .build()
                .unwrap(),
        )
    }

    fn anonymous(&self) -> Caller {
        self.client(None)
    }

    fn proving(&self, tls: &DeviceTlsKey) -> Caller {
        self.client(Some((&tls.proof_pem(), &tls.key_pem)))
    }

    /// Sends a request to `path` (an instance of `template`, None for a path the service does not
    /// route) and checks the response against the document.
    async fn call(
        &self,
        who: &Caller,
        method: Method,
        template: Option<&str>,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Exchange {
        let mut req = who
            .0
            .request(method.clone(), format!("{}{path}", self.handle.url()));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(body);
        }
        let resp = req.send().await.expect("the service answers");
        let exchange = Exchange {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.expect("a whole body").to_vec(),
        };
        self.contract.check(&method, template, &exchange);
        exchange
    }

    async fn get(&self, who: &Caller, template: &str, path: &str) -> Exchange {
        self.call(who, Method::GET, Some(template), path, None)
            .await
    }

    async fn post(&self, who: &Caller, template: &str, body: Vec<u8>) -> Exchange {
        self.call(who, Method::POST, Some(template), template, Some(body))
            .await
    }

    async fn now(&self) -> u64 {
        let r = self.get(&self.anonymous(), paths::TIME, paths::TIME).await;
        serde_json::from_value::<TimeResponse>(r.json())
            .unwrap()
            .server_time_ms
    }

    async fn challenge(&self) -> (Vec<u8>, u8) {
        let r = self
            .get(&self.anonymous(), paths::CHALLENGE, paths::CHALLENGE)
            .await;
        let c: ChallengeResponse = serde_json::from_value(r.json()).unwrap();
        (c.challenge_bytes().unwrap(), c.difficulty)
    }
}

/// A signed-up account and a client presenting its certificate.
struct Account {
    device: Device,
    user: UserId,
    client: Caller,
}

async fn sign_up(svc: &Service, seed: u64, opks: usize) -> Account {
    let (challenge, difficulty) = svc.challenge().await;
    let d = NewDevice::new(seed, opks, &challenge, difficulty);
    let r = svc
        .post(&svc.proving(&d.tls), paths::SIGNUP, d.request)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let s: SignupResponse = serde_json::from_value(r.json()).unwrap();
    Account {
        device: d.device,
        user: UserId::parse(&s.user_id).unwrap(),
        client: svc.client(Some((&s.certificate_pem, &d.tls.key_pem))),
    }
}

fn assert_refused(r: &Exchange, status: u16, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (status, code),
        "{}",
        r.text()
    );
}

// ------------------------------------------------------------------------------------ the test

#[test]
fn the_document_is_openapi_3_1_with_every_api_code() {
    let c = Contract::load();
    assert_eq!(c.doc["openapi"], "3.1.0");
    assert_eq!(c.doc["servers"][0]["url"], "https://localhost:7443");
    let codes: BTreeSet<&str> = c.doc["components"]["schemas"]["ApiCode"]["enum"]
        .as_array()
        .expect("ApiCode enum")
        .iter()
        .map(|v| v.as_str().expect("a code"))
        .collect();
    let typed: BTreeSet<&str> = ApiCode::SERVICE
        .iter()
        .map(ApiCode::as_str)
        .chain(sotto_core::Error::ALL.iter().map(sotto_core::Error::code))
        .collect();
    assert_eq!(codes, typed, "the ApiCode enum of the document");
    // Every status an error response declares is the status ApiCode gives its codes.
    let mut checked = 0;
    for (path, item) in c.doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let response = c.resolve(response);
                let Some(schema) = response.pointer("/content/application~1json/schema") else {
                    continue;
                };
                let Some(codes) = schema
                    .pointer("/allOf/1/properties/error/enum")
                    .and_then(Value::as_array)
                else {
                    continue;
                };
                for code in codes {
                    let code = ApiCode::parse(code.as_str().unwrap());
                    assert_ne!(code, ApiCode::Unrecognized, "{method} {path} {status}");
                    assert_eq!(
                        code.status().to_string(),
                        *status,
                        "{method} {path}: {code}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 30, "{checked} codes checked");
    // Every operation has security stated: none, the key proof or the CA's certificate.
    for (method, path) in c.operations() {
        let op = &c.doc["paths"][&path][&method];
        assert!(op["security"].is_array(), "{method} {path}: no security");
        assert!(op["operationId"].is_string(), "{method} {path}");
    }
}

#[test]
fn the_document_describes_exactly_the_routes_the_router_serves() {
    let c = Contract::load();
    let router: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_ascii_lowercase(), p.to_owned()))
        .collect();
    assert_eq!(router.len(), routes().len(), "a route listed twice");
    assert_eq!(c.operations(), router);
}

/// Breaking the document breaks the check: the test can fail.
#[test]
fn a_wrong_document_fails_the_check() {
    let mut c = Contract::load();
    c.doc["components"]["schemas"]["TimeResponse"]["properties"]["server_time_ms"] =
        json!({"type": "string"});
    let r = Exchange {
        status: 200,
        headers: {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert("content-type", "application/json".parse().unwrap());
            h.insert("x-sotto-server-time", "1764151234567".parse().unwrap());
            h.insert("cache-control", "no-store".parse().unwrap());
            h
        },
        body: br#"{"server_time_ms":1764151234567}"#.to_vec(),
    };
    let broken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        c.check(&Method::GET, Some(paths::TIME), &r)
    }));
    assert!(broken.is_err(), "a number accepted as a string");
    // The right document accepts the same response; an undeclared status is refused.
    let right = Contract::load();
    right.check(&Method::GET, Some(paths::TIME), &r);
    let undeclared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        right.check(
            &Method::GET,
            Some(paths::TIME),
            &Exchange { status: 201, ..r },
        )
    }));
    assert!(undeclared.is_err(), "an undeclared status accepted");
}

#[tokio::test]
async fn every_response_of_the_service_is_the_documents() {
    let contract = Arc::new(Contract::load());
    let dir = tempfile::tempdir().unwrap();
    let many = Rate {
        burst: 1_000,
        every: Duration::from_millis(1),
    };
    // Difficulty 4: the proof of work and the challenge are checked, and cheap.
    let svc = start(dir.path(), 4, many, contract.clone()).await;
    let anon = svc.anonymous();

    // GET /v1/time, GET /v1/challenge.
    assert!(svc.now().await > 1_700_000_000_000);
    let (challenge, difficulty) = svc.challenge().await;
    assert_eq!((challenge.len(), difficulty), (32, 4));

    // POST /v1/signup.
    let alice = sign_up(&svc, 1, 0).await;
    let mut bob = sign_up(&svc, 2, 3).await;
    let d = NewDevice::new(3, 1, &svc.challenge().await.0, 4);
    let r = svc.post(&anon, paths::SIGNUP, d.request.clone()).await;
    assert_refused(&r, 400, "key_not_proven");
    let r = svc
        .post(
            &svc.proving(&d.tls),
            paths::SIGNUP,
            br#"{"user":"me"}"#.to_vec(),
        )
        .await;
    assert_refused(&r, 400, "unknown_version");
    let r = svc
        .post(
            &svc.proving(&d.tls),
            paths::SIGNUP,
            d.request[..d.request.len() - 1].to_vec(),
        )
        .await;
    assert_refused(&r, 400, "truncated");
    let mut trailing = d.request.clone();
    trailing.push(0);
    let r = svc
        .post(&svc.proving(&d.tls), paths::SIGNUP, trailing)
        .await;
    assert_refused(&r, 400, "trailing_bytes");
    // Wrong proof of work: a request built for difficulty 0 whose hash misses the 4 bits.
    let (c, _) = svc.challenge().await;
    let lazy = (100..)
        .map(|seed| NewDevice::new(seed, 0, &c, 0))
        .find(|d| SignupRequest::from_bytes(&d.request, 4).is_err())
        .unwrap();
    let r = svc
        .post(&svc.proving(&lazy.tls), paths::SIGNUP, lazy.request)
        .await;
    assert_refused(&r, 400, "insufficient_work");
    // The challenge of a successful signup is spent.
    let r = svc
        .post(&svc.proving(&d.tls), paths::SIGNUP, d.request.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = svc
        .post(&svc.proving(&d.tls), paths::SIGNUP, d.request.clone())
        .await;
    assert_refused(&r, 400, "unknown_challenge");
    let r = svc.post(&anon, paths::SIGNUP, vec![0; 9_000]).await;
    assert_refused(&r, 413, "body_too_large");

    // POST /v1/renew, for a third account.
    let carol = sign_up(&svc, 4, 0).await;
    let new_tls = DeviceTlsKey::generate();
    let now = svc.now().await;
    let good = RenewRequest::sign(carol.device.identity(), carol.user, &new_tls.spki_der, now)
        .unwrap()
        .to_bytes();
    let r = svc.post(&anon, paths::RENEW, good.clone()).await;
    assert_refused(&r, 400, "key_not_proven");
    let prove = svc.proving(&new_tls);
    let mallory = Identity::generate(&mut ChaCha20Rng::seed_from_u64(5));
    let forged = RenewRequest::sign(&mallory, carol.user, &new_tls.spki_der, now).unwrap();
    let r = svc.post(&prove, paths::RENEW, forged.to_bytes()).await;
    assert_refused(&r, 400, "bad_signature");
    let nobody = RenewRequest::sign(&mallory, UserId([9; 10]), &new_tls.spki_der, now).unwrap();
    let r = svc.post(&prove, paths::RENEW, nobody.to_bytes()).await;
    assert_refused(&r, 400, "bad_signature");
    let stale = RenewRequest::sign(
        carol.device.identity(),
        carol.user,
        &new_tls.spki_der,
        now - 10 * 60 * 1000,
    )
    .unwrap();
    let r = svc.post(&prove, paths::RENEW, stale.to_bytes()).await;
    assert_refused(&r, 400, "stale_timestamp");
    let r = svc
        .post(&prove, paths::RENEW, good[..good.len() - 1].to_vec())
        .await;
    assert_refused(&r, 400, "truncated");
    let r = svc.post(&prove, paths::RENEW, vec![0; 9_000]).await;
    assert_refused(&r, 413, "body_too_large");
    let r = svc.post(&prove, paths::RENEW, good).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The replaced certificate is no identity any more.
    let r = svc
        .get(&carol.client, paths::PREKEY_COUNT, paths::PREKEY_COUNT)
        .await;
    assert_refused(&r, 401, "client_certificate_required");

    // POST /v1/prekeys, GET /v1/prekeys/count.
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    bob.device.rotate_signed_prekey(&mut rng).unwrap();
    let spk = *bob.device.bundle(None).unwrap().signed_prekey();
    let opks = bob.device.generate_one_time_prekeys(&mut rng, 2).unwrap();
    let upload = PrekeyUpload::new(Some(spk), opks).unwrap().to_bytes();
    let r = svc.post(&anon, paths::PREKEYS, upload.clone()).await;
    assert_refused(&r, 401, "client_certificate_required");
    let r = svc.post(&bob.client, paths::PREKEYS, upload).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = svc
        .get(&bob.client, paths::PREKEY_COUNT, paths::PREKEY_COUNT)
        .await;
    assert_eq!(r.json()["one_time_prekeys"], 5);
    let r = svc
        .get(&anon, paths::PREKEY_COUNT, paths::PREKEY_COUNT)
        .await;
    assert_refused(&r, 401, "client_certificate_required");
    let forged = *mallory.new_signed_prekey(&mut rng, 9).public();
    let body = PrekeyUpload::new(Some(forged), vec![]).unwrap().to_bytes();
    let r = svc.post(&bob.client, paths::PREKEYS, body).await;
    assert_refused(&r, 400, "bad_signature");
    let old = *bob
        .device
        .identity()
        .new_signed_prekey(&mut rng, 1)
        .public();
    let body = PrekeyUpload::new(Some(old), vec![]).unwrap().to_bytes();
    let r = svc.post(&bob.client, paths::PREKEYS, body).await;
    assert_refused(&r, 409, "stale_signed_prekey");
    let r = svc.post(&bob.client, paths::PREKEYS, vec![2, 0, 0]).await;
    assert_refused(&r, 400, "length_out_of_range");
    let r = svc.post(&bob.client, paths::PREKEYS, vec![0; 9_000]).await;
    assert_refused(&r, 413, "body_too_large");
    // More than 1,000 kept: the upload that would pass the bound is refused whole.
    let mut limited = None;
    for round in 0..11u32 {
        let opks = (1..=100)
            .map(|i| {
                *OneTimePreKeyPair::generate(&mut rng, 10_000 + round * 100 + i)
                    .unwrap()
                    .public()
            })
            .collect();
        let body = PrekeyUpload::new(None, opks).unwrap().to_bytes();
        let r = svc.post(&bob.client, paths::PREKEYS, body).await;
        if r.status != 204 {
            limited = Some(r);
            break;
        }
    }
    assert_refused(
        &limited.expect("the bound is reached"),
        409,
        "limit_reached",
    );

    // GET /v1/bundle/{user_id}: with a one-time prekey while the limits allow, then without.
    let bundle_of = |u: &UserId| format!("{}{}", paths::BUNDLE_PREFIX, u.to_text());
    let sizes: Vec<usize> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let r = svc
                .get(&alice.client, paths::BUNDLE, &bundle_of(&bob.user))
                .await;
            assert_eq!(r.status, 200);
            v.push(r.body.len());
        }
        v
    };
    assert_eq!(sizes, [276, 276, 240], "KEY-4: two per pair at once");
    let r = svc.get(&anon, paths::BUNDLE, &bundle_of(&bob.user)).await;
    assert_refused(&r, 401, "client_certificate_required");
    let r = svc
        .get(&alice.client, paths::BUNDLE, &bundle_of(&UserId([7; 10])))
        .await;
    assert_refused(&r, 404, "unknown_user");
    for bad in ["NOT-A-USER-ID", "aaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaa"] {
        let r = svc
            .get(
                &alice.client,
                paths::BUNDLE,
                &format!("{}{bad}", paths::BUNDLE_PREFIX),
            )
            .await;
        assert_refused(&r, 400, "invalid_user_id");
    }

    // POST /v1/account/delete.
    let dave = sign_up(&svc, 7, 1).await;
    let r = svc.post(&anon, paths::ACCOUNT_DELETE, vec![]).await;
    assert_refused(&r, 401, "client_certificate_required");
    let r = svc
        .post(&dave.client, paths::ACCOUNT_DELETE, vec![0; 9_000])
        .await;
    assert_refused(&r, 413, "body_too_large");
    let r = svc.post(&dave.client, paths::ACCOUNT_DELETE, vec![]).await;
    assert_eq!(r.status, 204, "{}", r.text());
    let r = svc.post(&dave.client, paths::ACCOUNT_DELETE, vec![]).await;
    assert_refused(&r, 401, "client_certificate_required");
    let r = svc
        .get(&alice.client, paths::BUNDLE, &bundle_of(&dave.user))
        .await;
    assert_refused(&r, 404, "unknown_user");

    // Outside the operations: an unrouted path, a routed path with another method.
    let r = svc
        .call(&anon, Method::GET, None, "/v1/nothing-here", None)
        .await;
    assert_refused(&r, 404, "not_found");
    for (method, path) in routes() {
        let other = if method == Method::GET {
            Method::POST
        } else {
            Method::GET
        };
        let path = path.replace("{user_id}", &bob.user.to_text());
        let template = routes()
            .into_iter()
            .map(|(_, t)| t)
            .find(|t| t.replace("{user_id}", &bob.user.to_text()) == path);
        let r = svc.call(&anon, other, template, &path, None).await;
        assert_refused(&r, 405, "method_not_allowed");
    }

    // 429: a service whose signup limit is one at a time; a refused signup counts too.
    let dir2 = tempfile::tempdir().unwrap();
    let one = Rate {
        burst: 1,
        every: Duration::from_secs(3_600),
    };
    let strict = start(dir2.path(), 0, one, contract.clone()).await;
    let r = strict
        .post(&strict.anonymous(), paths::SIGNUP, vec![1])
        .await;
    assert_refused(&r, 400, "truncated");
    let r = strict
        .post(&strict.anonymous(), paths::SIGNUP, vec![1])
        .await;
    assert_refused(&r, 429, "rate_limited");

    // Coverage: every operation and every declared status was seen, but the unreachable ones.
    let seen = contract.seen.lock().unwrap().clone();
    let ops: BTreeSet<(String, String)> = seen
        .iter()
        .map(|(m, p, _)| (m.clone(), p.clone()))
        .collect();
    assert_eq!(ops, contract.operations(), "operations exercised");
    let mut missing = BTreeMap::new();
    for (method, path) in contract.operations() {
        for status in contract.doc["paths"][&path][&method]["responses"]
            .as_object()
            .unwrap()
            .keys()
        {
            let unreachable = UNREACHABLE.iter().any(|(m, p, s, _)| {
                (*m == "*" || *m == method) && (*p == "*" || *p == path) && s == status
            });
            let key = (method.clone(), path.clone(), status.clone());
            if !unreachable && !seen.contains(&key) {
                missing.insert(key, ());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "declared but never observed: {:?}",
        missing.keys()
    );
    svc.handle.shutdown().await;
    strict.handle.shutdown().await;
}
