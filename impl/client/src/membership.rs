//! The typed client of the membership API (docs/operations.md): what a device says to the
//! membership service over HTTPS, with the bodies of [`sotto_wire::membership_api`].
//!
//! It speaks TLS 1.3 on rustls (ring) and trusts only the CA it is given (TLS-1): before signup that
//! is the CA certificate the operator distributed (its fingerprint is printed by `sotto serve`, and
//! [`crate::pin::fetch_ca`] fetches it by that fingerprint); after signup it is the `ca_pem` of
//! [`SignupResponse`], and the client presents its certificate ([`MembershipClient::new`] with an
//! identity). Every response's `x-sotto-server-time` is kept
//! ([`MembershipClient::last_server_time_ms`]) so the device can correct its clock (TIME-1).
//!
//! Every failure is a [`ClientError`]: `Refused { status, code }` with the service's typed
//! [`ApiCode`], `Network { service: Membership, .. }` when
//! nothing (or no trusted TLS peer) answered, `BadAnswer` when the answer is not what the API
//! defines.
//!
//! ```no_run
//! # async fn demo(ca_pem: &str, signup_bytes: Vec<u8>, key_pem: &str) -> sotto_client::Result<()> {
//! use sotto_client::membership::MembershipClient;
//! // The signup's connection proves it holds the TLS key of the request (SIGNUP-4).
//! let proof = sotto_client::tls::key_proof_pem(key_pem)?;
//! let proving = MembershipClient::new("https://localhost:7443", ca_pem, Some((&proof, key_pem)))?;
//! let account = proving.signup(&signup_bytes).await?;
//! let me = MembershipClient::new(
//!     "https://localhost:7443",
//!     &account.ca_pem,
//!     Some((&account.certificate_pem, key_pem)),
//! )?;
//! let left = me.prekey_count().await?;
//! # let _ = left; Ok(()) }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use sotto_core::{PreKeyBundle, UserId};
use sotto_wire::membership_api::{
    ApiCode, CertificateResponse, ChallengeResponse, ErrorBody, MAX_RESPONSE, PrekeyCountResponse,
    PrekeyUpload, RenewRequest, SignupResponse, TIME_HEADER, TimeResponse, paths,
};

use crate::error::{BadAnswer, Cause, ClientError, NetworkFailure, Result, Service};
use crate::resolve::Resolve;
use crate::tls;

/// How long one request may take, connection included.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest KEY-5 bundle (with a one-time prekey).
const MAX_BUNDLE: usize = 276;

/// A transport failure of reqwest as a [`ClientError::Network`].
fn network(e: reqwest::Error) -> ClientError {
    let timeout = e.is_timeout();
    let connect = e.is_connect();
    let cause = Cause::new(e);
    let failure = if cause.is_wrong_name() {
        NetworkFailure::ServerName
    } else if cause.is_tls() {
        NetworkFailure::Tls
    } else if timeout {
        NetworkFailure::Timeout
    } else if connect {
        NetworkFailure::Connect
    } else {
        NetworkFailure::Closed
    };
    ClientError::network(Service::Membership, failure, cause)
}

/// A client of one membership service.
#[derive(Clone, Debug)]
pub struct MembershipClient {
    http: reqwest::Client,
    base: Url,
    server_time: Arc<AtomicU64>,
}

impl MembershipClient {
    /// A client of the service at `base_url` (`https://host:port`) trusting only `ca_pem`, presenting
    /// `identity` = (certificate PEM, private key PEM) if given.
    pub fn new(base_url: &str, ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Self> {
        MembershipClient::resolving(base_url, ca_pem, identity, &Resolve::none())
    }

    /// As [`MembershipClient::new`], reaching the host of `base_url` at the address `resolve`
    /// gives for it, if any (the certificate is still verified for the name).
    pub fn resolving(
        base_url: &str,
        ca_pem: &str,
        identity: Option<(&str, &str)>,
        resolve: &Resolve,
    ) -> Result<Self> {
        let config = tls::client_config(ca_pem, identity)?;
        MembershipClient::build(base_url, (*config).clone(), resolve)
    }

    /// A client with a ready rustls configuration (it must come from the same rustls version).
    pub fn with_tls_config(base_url: &str, config: rustls::ClientConfig) -> Result<Self> {
        MembershipClient::build(base_url, config, &Resolve::none())
    }

    fn build(base_url: &str, config: rustls::ClientConfig, resolve: &Resolve) -> Result<Self> {
        let base = Url::parse(base_url).map_err(|_| INVALID_URL)?;
        if base.scheme() != "https" || base.host().is_none() {
            return Err(INVALID_URL);
        }
        let mut builder = reqwest::Client::builder();
        if let Some(host) = base.host_str() {
            if let Some(ip) = resolve.lookup(host) {
                // Port 0: the URL's port is used.
                builder = builder.resolve(host, std::net::SocketAddr::new(ip, 0));
            }
        }
        let http = builder
            .use_preconfigured_tls(config)
            .timeout(CLIENT_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ClientError::BadCredentials("TLS configuration"))?;
        Ok(MembershipClient {
            http,
            base,
            server_time: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The server time of the last response, in milliseconds (TIME-1); `None` before any.
    pub fn last_server_time_ms(&self) -> Option<u64> {
        match self.server_time.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// `GET /v1/time`: the server's clock (TIME-1).
    pub async fn time(&self) -> Result<u64> {
        let r: TimeResponse = self.json(Method::GET, paths::TIME, None).await?;
        Ok(r.server_time_ms)
    }

    /// `GET /v1/challenge`: a single-use challenge and the difficulty to sign up with (SIGNUP-3).
    pub async fn challenge(&self) -> Result<(Vec<u8>, u8)> {
        let r: ChallengeResponse = self.json(Method::GET, paths::CHALLENGE, None).await?;
        let bytes = r
            .challenge_bytes()
            .filter(|b| b.len() <= sotto_core::limits::MAX_CHALLENGE)
            .ok_or(ClientError::BadAnswer(BadAnswer::Malformed))?;
        Ok((bytes, r.difficulty))
    }

    /// `POST /v1/signup` with the bytes of a `SignupRequest` (SIGNUP-1).
    pub async fn signup(&self, request: &[u8]) -> Result<SignupResponse> {
        self.json(Method::POST, paths::SIGNUP, Some(request.to_vec()))
            .await
    }

    /// `POST /v1/renew`: a new certificate for the request's TLS key.
    pub async fn renew(&self, request: &RenewRequest) -> Result<CertificateResponse> {
        self.json(Method::POST, paths::RENEW, Some(request.to_bytes()))
            .await
    }

    /// `POST /v1/prekeys` (needs a client certificate).
    pub async fn upload_prekeys(&self, upload: &PrekeyUpload) -> Result<()> {
        let (status, _) = self
            .send(Method::POST, paths::PREKEYS, Some(upload.to_bytes()), 0)
            .await?;
        if status != StatusCode::NO_CONTENT {
            return Err(ClientError::BadAnswer(BadAnswer::UnexpectedStatus(
                status.as_u16(),
            )));
        }
        Ok(())
    }

    /// `GET /v1/prekeys/count` (needs a client certificate): one-time prekeys left.
    pub async fn prekey_count(&self) -> Result<u32> {
        let r: PrekeyCountResponse = self.json(Method::GET, paths::PREKEY_COUNT, None).await?;
        Ok(r.one_time_prekeys)
    }

    /// `GET /v1/bundle/{user}` (needs a client certificate): the KEY-5 bytes, *unverified*. Check
    /// them with `sotto_core::PreKeyBundle::from_bytes` and compare the user id before use.
    pub async fn bundle(&self, user: &UserId) -> Result<Vec<u8>> {
        let path = format!("{}{}", paths::BUNDLE_PREFIX, user.to_text());
        let (_, body) = self.send(Method::GET, &path, None, MAX_BUNDLE).await?;
        Ok(body)
    }

    /// `GET /v1/bundle/{user}`, verified with [`check_bundle`]: both signatures checked (KEY-5) and
    /// the bundle's user id compared with `user`. The result still only makes an *unverified* contact (CARD-4): the
    /// directory could have substituted the whole identity.
    pub async fn fetch_bundle(&self, user: &UserId) -> Result<PreKeyBundle> {
        check_bundle(&self.bundle(user).await?, user)
    }

    /// `POST /v1/account/delete` (needs a client certificate): the service forgets this
    /// account (directory entry, prekeys, certificate, inbox). Afterwards the certificate is
    /// refused: a second call is `Refused { 401, ClientCertificateRequired }`.
    pub async fn delete_account(&self) -> Result<()> {
        let (status, _) = self
            .send(Method::POST, paths::ACCOUNT_DELETE, Some(Vec::new()), 0)
            .await?;
        if status != StatusCode::NO_CONTENT {
            return Err(ClientError::BadAnswer(BadAnswer::UnexpectedStatus(
                status.as_u16(),
            )));
        }
        Ok(())
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T> {
        let (_, bytes) = self.send(method, path, body, MAX_RESPONSE).await?;
        serde_json::from_slice(&bytes).map_err(|_| ClientError::BadAnswer(BadAnswer::Malformed))
    }

    /// Sends a request; a success returns the status and at most `limit` body bytes, an error
    /// status the service's error body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(StatusCode, Vec<u8>)> {
        let url = self.base.join(path).map_err(|_| INVALID_URL)?;
        let mut req = self.http.request(method, url);
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body);
        }
        let mut resp = req.send().await.map_err(network)?;
        if let Some(t) = resp
            .headers()
            .get(TIME_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            self.server_time.store(t, Ordering::Relaxed);
        }
        let status = resp.status();
        let limit = if status.is_success() {
            limit
        } else {
            MAX_RESPONSE
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(network)? {
            if bytes.len().saturating_add(chunk.len()) > limit {
                return Err(ClientError::BadAnswer(BadAnswer::TooLarge));
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return Ok((status, bytes));
        }
        // The message is for people; the typed code is what a caller acts on.
        let code = serde_json::from_slice::<ErrorBody>(&bytes)
            .map_or(ApiCode::Unrecognized, |e| ApiCode::parse(&e.error));
        Err(ClientError::Refused {
            status: status.as_u16(),
            code,
        })
    }
}

const INVALID_URL: ClientError =
    ClientError::Invalid("the membership URL must be https://host[:port]");

/// A directory answer is unverified until its signatures check and it names the user asked for
/// (KEY-5): what [`MembershipClient::fetch_bundle`] does with the bytes the directory returned, for
/// callers that fetched them another way.
pub fn check_bundle(bytes: &[u8], user: &UserId) -> Result<PreKeyBundle> {
    let bundle = PreKeyBundle::from_bytes(bytes)
        .map_err(|e| ClientError::BadAnswer(BadAnswer::Unverified(e)))?;
    if bundle.user_id() != user {
        return Err(ClientError::BadAnswer(BadAnswer::WrongUser));
    }
    Ok(bundle)
}
