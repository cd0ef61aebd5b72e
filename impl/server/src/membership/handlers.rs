//! The HTTP handlers of the membership API (docs/operations.md, "Membership API").
//!
//! ```text
//!   GET  /v1/time                -> {"server_time_ms"}                            TIME-1
//!   GET  /v1/challenge           -> {"challenge", "difficulty"}                    SIGNUP-3
//!   POST /v1/signup    (bytes)   -> {"user_id", "certificate_pem", "ca_pem", ..}  SIGNUP-1..4, Req1
//!   POST /v1/renew     (bytes)   -> {"certificate_pem", "ca_pem", ..}             KEY-6, TLS-1
//!   POST /v1/prekeys   (bytes)   -> 204                     client certificate    KEY-3, KEY-4, LIM-15
//!   GET  /v1/prekeys/count       -> {"one_time_prekeys"}     client certificate
//!   GET  /v1/bundle/{user_id}    -> KEY-5 bytes              client certificate    KEY-4, KEY-5
//!   POST /v1/account/delete      -> 204                     client certificate    Req1, BROKER-5
//! ```
//!
//! `POST /v1/account/delete` forgets the caller: directory row and prekeys deleted, certificate
//! revoked and the id recorded as departed in one transaction ([`Store::delete_account`]); then
//! the front refuses messages to it and the broker drops its inbox ([`crate::departure`]).
//!
//! Every handler validates with the core first (so refusals carry the core's error codes), then
//! touches the store on a blocking thread. The caller's identity, when a route needs it, is the CN of
//! the client certificate the TLS layer verified ([`Caller`]).

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand_core::OsRng;
use sotto_core::UserId;
use sotto_core::error::{CryptoError, MisuseError};
use sotto_core::signup::SignupRequest;

use super::challenge::{CHALLENGE_TTL, Challenges};
use super::directory::{CertRecord, Directory, NewUser, UploadRefusal};
use super::error::ApiError;
use super::quota::Quotas;
use crate::admission::SourceKey;
use crate::ca::{CaError, Pki};
use crate::departure::Departures;
use crate::key_proof::ProvenKey;
use crate::revocation::Revocations;
use sotto_wire::membership_api::{
    ApiCode, CertificateResponse, ChallengeResponse, MAX_BODY, PrekeyCountResponse, PrekeyUpload,
    RENEW_WINDOW_MS, RenewRequest, SignupResponse, TimeResponse,
};

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) directory: Directory,
    pub(crate) pki: Arc<Pki>,
    pub(crate) challenges: Challenges,
    pub(crate) quotas: std::sync::Mutex<Quotas>,
    pub(crate) revocations: Revocations,
    pub(crate) departures: Departures,
    pub(crate) difficulty: u8,
    pub(crate) broker: String,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

type Shared = State<Arc<AppState>>;

/// The authenticated peer of a connection: the user id in the CN of its verified client certificate,
/// if it presented one. The accept loop puts it into every request's extensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerIdentity(pub(crate) Option<UserId>);

/// The source of a connection (a keyed hash of its address, [`crate::admission`]): the accept loop
/// puts it into every request's extensions, for the rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Source(pub(crate) SourceKey);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Source>().copied().ok_or_else(|| {
            tracing::error!("a request without its connection's source");
            ApiError::internal()
        })
    }
}

/// The key the connection proved it holds ([`crate::key_proof`]): its client certificate's, if it
/// presented one. The accept loop puts it into every request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Proven(pub(crate) Option<ProvenKey>);

impl<S: Send + Sync> FromRequestParts<S> for Proven {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Proven>()
            .cloned()
            .unwrap_or(Proven(None)))
    }
}

impl Proven {
    /// `Ok` if the connection proved it holds the key `spki` (DER SubjectPublicKeyInfo).
    fn check(&self, spki: &[u8]) -> Result<(), ApiError> {
        match &self.0 {
            Some(ProvenKey(k)) if k.as_slice() == spki => Ok(()),
            _ => Err(ApiError::new(
                ApiCode::KeyNotProven,
                "present a client certificate of the TLS key in the request (self-signed is \
                 enough): the service certifies only a key the client shows it holds",
            )),
        }
    }
}

/// Extractor for routes that need a client certificate: 401 without one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Caller(pub(crate) UserId);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<PeerIdentity>() {
            Some(PeerIdentity(Some(user))) => Ok(Caller(*user)),
            _ => Err(ApiError::client_certificate_required()),
        }
    }
}

/// Reads a request body of at most [`MAX_BODY`] bytes (413 `body_too_large` beyond).
///
/// An oversize body is still read (and dropped) up to [`DRAIN_LIMIT`] bytes before the 413 goes
/// out: a client that is still sending when the server closes the connection may otherwise see a
/// reset instead of the answer. Beyond that the connection is simply closed after the answer.
async fn read_body(mut body: Body) -> Result<Vec<u8>, ApiError> {
    let declared = body.size_hint().lower();
    if declared > DRAIN_LIMIT as u64 {
        return Err(ApiError::body_too_large());
    }
    let mut buf = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| {
            ApiError::new(
                ApiCode::BodyUnreadable,
                "the request body could not be read",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            seen = seen.saturating_add(data.len());
            if seen > DRAIN_LIMIT {
                break;
            }
            if seen <= MAX_BODY {
                buf.extend_from_slice(&data);
            }
        }
    }
    if seen > MAX_BODY || declared > MAX_BODY as u64 {
        return Err(ApiError::body_too_large());
    }
    Ok(buf)
}

/// Issues a certificate and reads back what the store records about it.
fn issue(pki: &Pki, user: &UserId, spki: &[u8]) -> Result<(String, CertRecord), ApiError> {
    let pem = pki
        .issue_client_cert(&user.to_text(), spki)
        .map_err(|e| match e {
            CaError::UnsupportedKey => ApiError::new(
                ApiCode::UnsupportedKey,
                "the TLS public key must be a DER SubjectPublicKeyInfo of ECDSA P-256 or Ed25519",
            ),
            other => {
                tracing::error!(error = %other, "issuing a client certificate");
                ApiError::internal()
            }
        })?;
    let record = cert_record(&pem).ok_or_else(|| {
        tracing::error!("the CA issued a certificate that does not parse");
        ApiError::internal()
    })?;
    Ok((pem, record))
}

fn cert_record(pem: &str) -> Option<CertRecord> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = pem.parse_x509().ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some(CertRecord {
        serial: hex::encode(cert.raw_serial()),
        not_after_ms: u64::try_from(not_after).ok()?.checked_mul(1000)?,
    })
}

// ------------------------------------------------------------------------------------ routes

/// `GET /v1/time` (TIME-1).
pub(crate) async fn time(State(state): Shared) -> Json<TimeResponse> {
    Json(TimeResponse {
        server_time_ms: state.pki.clock().now_ms(),
    })
}

/// `GET /v1/challenge` (SIGNUP-3).
pub(crate) async fn challenge(
    State(state): Shared,
    Source(source): Source,
) -> Json<ChallengeResponse> {
    let (value, dropped) = state
        .challenges
        .issue_dropping(&mut OsRng, source, Instant::now());
    let now = state.pki.clock().now_ms();
    let ttl = u64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(u64::MAX);
    state
        .directory
        .offer_challenge(value, dropped, now, now.saturating_add(ttl))
        .await;
    Json(ChallengeResponse {
        challenge: hex::encode(value),
        difficulty: state.difficulty,
    })
}

/// `POST /v1/signup` (SIGNUP-1..4, Req1).
pub(crate) async fn signup(
    State(state): Shared,
    Source(source): Source,
    proven: Proven,
    body: Body,
) -> Result<Json<SignupResponse>, ApiError> {
    let bytes = read_body(body).await?;
    // Counted before the checks: a refused signup costs the service the same work.
    let admitted = state
        .quotas
        .lock()
        .map_err(|_| ApiError::internal())?
        .signup(source, Instant::now());
    if let Err(limited) = admitted {
        state.metrics.rate_limited.inc();
        return Err(ApiError::rate_limited("signups", limited.retry_after));
    }
    // SIGNUP-2: layout, bounds, all three signatures and the work, in that order, by the core.
    let req = SignupRequest::from_bytes(&bytes, state.difficulty)?;
    proven.check(req.tls_spki())?;
    let here = state.challenges.take(req.challenge(), Instant::now());
    // Several instances: the directory says whether any of them issued it and it is unused.
    let challenge_ok = match state.difficulty {
        0 => here,
        _ => state
            .directory
            .redeem_challenge(req.challenge(), state.pki.clock().now_ms())
            .await?
            .unwrap_or(here),
    };
    if state.difficulty > 0 && !challenge_ok {
        return Err(ApiError::new(
            ApiCode::UnknownChallenge,
            "the challenge was not issued by this service, has expired or was used",
        ));
    }
    let metrics = state.metrics.clone();
    let response = 'drawn: {
        // ID-1: 80 random bits; a collision (never expected) just draws again.
        for _ in 0..4 {
            let user_id = UserId::random(&mut OsRng);
            if state.directory.user_exists(user_id).await? {
                continue;
            }
            let (certificate_pem, cert) = issue(&state.pki, &user_id, req.tls_spki())?;
            let now = state.pki.clock().now_ms();
            let inserted = state
                .directory
                .insert_user(NewUser {
                    user_id,
                    identity: *req.identity(),
                    tls_spki: req.tls_spki().to_vec(),
                    signed_prekey: *req.signed_prekey(),
                    one_time_prekeys: req.one_time_prekeys().to_vec(),
                    cert,
                    now_ms: now,
                })
                .await?;
            if inserted {
                break 'drawn SignupResponse {
                    user_id: user_id.to_text(),
                    certificate_pem,
                    ca_pem: state.pki.ca_pem().to_owned(),
                    server_time_ms: now,
                    broker: state.broker.clone(),
                };
            }
        }
        return Err(ApiError::internal());
    };
    metrics.signups.inc();
    tracing::debug!("signup accepted");
    Ok(Json(response))
}

/// `POST /v1/renew`: a new certificate for a new TLS key, authorized by `IKs` (KEY-6, TLS-1).
pub(crate) async fn renew(
    State(state): Shared,
    proven: Proven,
    body: Body,
) -> Result<Json<CertificateResponse>, ApiError> {
    let bytes = read_body(body).await?;
    let req = RenewRequest::from_bytes(&bytes)?;
    proven.check(req.tls_spki())?;
    let now = state.pki.clock().now_ms();
    if now.abs_diff(req.timestamp_ms()) > RENEW_WINDOW_MS {
        return Err(ApiError::new(
            ApiCode::StaleTimestamp,
            "the request's timestamp is more than 5 minutes from the server's time",
        ));
    }
    // An unknown user id gets the answer of a wrong signature, so that a renew request without
    // a certificate cannot tell which user ids exist.
    let identity = state
        .directory
        .identity(*req.user_id())
        .await?
        .ok_or_else(|| ApiError::from(sotto_core::Error::from(CryptoError::BadSignature)))?;
    req.verify(&identity)?;
    let (certificate_pem, cert) = issue(&state.pki, req.user_id(), req.tls_spki())?;
    let Some(old) = state
        .directory
        .update_certificate(*req.user_id(), req.tls_spki().to_vec(), cert)
        .await?
    else {
        return Err(ApiError::unknown_user());
    };
    // The replaced certificate is refused from the next connection on, by the front too.
    state.revocations.revoke(&old);
    Ok(Json(CertificateResponse {
        certificate_pem,
        ca_pem: state.pki.ca_pem().to_owned(),
        server_time_ms: state.pki.clock().now_ms(),
    }))
}

/// `POST /v1/prekeys` (KEY-3, KEY-4, LIM-15), for the caller's own directory entry.
pub(crate) async fn upload_prekeys(
    State(state): Shared,
    Caller(user): Caller,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let bytes = read_body(body).await?;
    let identity = state
        .directory
        .identity(user)
        .await?
        .ok_or_else(ApiError::unknown_user)?;
    let upload = PrekeyUpload::from_bytes(&bytes, &identity)?;
    match state
        .directory
        .add_prekeys(
            user,
            upload.signed_prekey().copied(),
            upload.one_time_prekeys().to_vec(),
        )
        .await?
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(UploadRefusal::UnknownUser) => Err(ApiError::unknown_user()),
        Err(UploadRefusal::StaleSignedPrekey) => Err(ApiError::new(
            ApiCode::StaleSignedPrekey,
            "the signed prekey id must be higher than the current one",
        )),
        Err(UploadRefusal::TooManyPrekeys) => Err(ApiError::new(
            ApiCode::Core(MisuseError::LimitReached.into()),
            format!(
                "at most {} one-time prekeys are kept per user",
                super::directory::MAX_STORED_OPKS
            ),
        )),
    }
}

/// `GET /v1/prekeys/count`.
pub(crate) async fn prekey_count(
    State(state): Shared,
    Caller(user): Caller,
) -> Result<Json<PrekeyCountResponse>, ApiError> {
    let n = state.directory.one_time_prekey_count(user).await?;
    Ok(Json(PrekeyCountResponse {
        one_time_prekeys: u32::try_from(n).unwrap_or(u32::MAX),
    }))
}

/// `GET /v1/bundle/{user_id}` (KEY-5): consumes one one-time prekey, if any is left (KEY-4).
pub(crate) async fn bundle(
    State(state): Shared,
    Caller(caller): Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(text) = path.map_err(|_| sotto_core::error::DecodeError::InvalidUserId)?;
    let user = UserId::parse(&text)?;
    // Beyond the one-time prekey limits the bundle comes without one (KEY-4 allows it): one
    // account cannot drain another's.
    let with_opk = state
        .quotas
        .lock()
        .map_err(|_| ApiError::internal())?
        .one_time_prekey(&caller, &user, Instant::now());
    let bundle = state
        .directory
        .take_bundle(user, with_opk)
        .await?
        .ok_or_else(ApiError::unknown_user)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bundle.to_bytes(),
    )
        .into_response())
}

/// `POST /v1/account/delete`: the caller's account goes (see the module documentation). Answers
/// 204 once the directory forgot it and the broker dropped its inbox (or gave up waiting for
/// that, [`crate::departure::PURGE_TIMEOUT`]); the caller's certificate is refused from then on,
/// so a retry gets 401. The answer closes the connection (`connection: close`): its identity was
/// the deleted account's.
pub(crate) async fn delete_account(
    State(state): Shared,
    Caller(user): Caller,
    body: Body,
) -> Result<Response, ApiError> {
    // The body is empty; anything sent is read (bounded) and ignored.
    let _ = read_body(body).await?;
    let now = state.pki.clock().now_ms();
    let serial = state
        .directory
        .delete_account(user, now)
        .await?
        .ok_or_else(ApiError::unknown_user)?;
    state.revocations.revoke(&serial);
    state.departures.depart(&user.to_text()).await;
    state.metrics.accounts_deleted.inc();
    tracing::debug!("account deleted");
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CONNECTION, HeaderValue::from_static("close"))],
    )
        .into_response())
}

/// Unknown paths: 404 `not_found`.
pub(crate) async fn not_found() -> ApiError {
    ApiError::new(ApiCode::NotFound, "no such endpoint")
}

/// Known paths with the wrong method: 405 `method_not_allowed`.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ApiCode::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// How much of an oversize request body is read and dropped before answering 413.
const DRAIN_LIMIT: usize = 64 * 1024;

/// How long a request may take from its first byte to its response.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
