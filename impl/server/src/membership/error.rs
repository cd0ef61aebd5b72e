//! Errors of the membership service: [`ApiError`] is what a request gets back (a status and a stable
//! code in a JSON body), [`MembershipError`] what starting the service can fail with, [`StoreError`]
//! what the directory's database can fail with.
//!
//! Codes the core reports keep the core's names (protocol.md section 17: `truncated`,
//! `bad_signature`, `insufficient_work`, ...); the service's own codes are listed in
//! docs/operations.md. No message contains key material or a peer address.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ca::CaError;
use sotto_wire::membership_api::{ApiCode, ErrorBody};

/// An error response: a typed stable code (its HTTP status goes with it, [`ApiCode::status`]) and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    code: ApiCode,
    message: String,
    /// Seconds for a `retry-after` header (`rate_limited`).
    retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `code` and a message for people (no key material, no peer data).
    pub fn new(code: ApiCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 `rate_limited`, to try again after `retry_after` (rounded up to a second).
    pub fn rate_limited(what: &str, retry_after: std::time::Duration) -> Self {
        let secs = retry_after
            .as_secs()
            .saturating_add(u64::from(retry_after.subsec_nanos() > 0))
            .max(1);
        ApiError {
            code: ApiCode::RateLimited,
            message: format!("too many {what}; try again in {secs} s"),
            retry_after: Some(secs),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The stable code.
    pub fn code(&self) -> ApiCode {
        self.code
    }

    /// 413 `body_too_large`.
    pub fn body_too_large() -> Self {
        ApiError::new(
            ApiCode::BodyTooLarge,
            format!(
                "request body larger than {} bytes",
                sotto_wire::membership_api::MAX_BODY
            ),
        )
    }

    /// 401 `client_certificate_required`.
    pub fn client_certificate_required() -> Self {
        ApiError::new(
            ApiCode::ClientCertificateRequired,
            "this endpoint needs a client certificate issued at signup",
        )
    }

    /// 404 `unknown_user`.
    pub fn unknown_user() -> Self {
        ApiError::new(ApiCode::UnknownUser, "no such user")
    }

    /// 500 `internal`: details go to the log, not to the peer.
    pub fn internal() -> Self {
        ApiError::new(ApiCode::Internal, "internal error")
    }

    /// 503 `timeout`: the request took longer than the service allows.
    pub fn timeout() -> Self {
        ApiError::new(ApiCode::Timeout, "request timed out")
    }
}

impl From<sotto_core::Error> for ApiError {
    /// A refusal by the core: 400 with the core's code.
    fn from(e: sotto_core::Error) -> Self {
        ApiError::new(ApiCode::Core(e), e.to_string())
    }
}

impl From<sotto_core::error::DecodeError> for ApiError {
    fn from(e: sotto_core::error::DecodeError) -> Self {
        sotto_core::Error::from(e).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "membership store");
        ApiError::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code.as_str().to_owned(),
            message: self.message,
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

/// The directory's database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file has a schema this version does not know (a newer release wrote it).
    #[error("unsupported schema version {0}")]
    UnsupportedSchema(i64),
    /// A stored row does not decode (the file was altered outside the service).
    #[error("corrupt row in {0}")]
    Corrupt(&'static str),
    /// PostgreSQL reported an error, or a connection to it failed.
    #[error("postgresql: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection of the pool to PostgreSQL could be had (the server is down or every
    /// connection is busy past the pool's wait).
    #[error("postgresql pool: {0}")]
    Pool(String),
    /// The PostgreSQL connection settings do not parse.
    #[error("postgresql settings: {0}")]
    Config(String),
    /// A blocking task was cancelled or panicked.
    #[error("store task failed")]
    Task,
    /// The database file could not be created private or made private.
    #[error("database file: {0}")]
    Io(std::io::Error),
}

/// Starting the membership service failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The configuration is invalid (for example a difficulty above 32).
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// Creating the data directory or binding the listener failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA could not build the TLS configuration.
    #[error("tls: {0}")]
    Tls(#[from] CaError),
}
