//! The client's one error type, [`ClientError`], typed to the end so that an app never matches
//! strings: each variant says what failed, [`ClientError::fault`] says who is at fault (the rustls
//! habit) and [`ClientError::is_retryable`] whether trying the same thing again later can help.
//!
//! | variant | fault | retry helps |
//! |---|---|---|
//! | `Protocol(e)` (the core's typed error, stable code `e.code()`) | the core's [`ProtocolFault`] | no |
//! | `Store(e)` | caller (passphrase, path) or device (files, disk) | no |
//! | `Refused { code, .. }` (the membership service's typed [`ApiCode`]) | caller / service | for `internal`, `timeout` |
//! | `BadAnswer(_)` | service | no |
//! | `Network { failure, .. }` | network (TLS: service) | yes (TLS: no) |
//! | `BrokerRefused(_)`, `SubscriptionRefused` | service | no |
//! | `IdentityChanged(user)` | peer | no: the person decides (RX-9) |
//! | `NoAccount(_)`, `BadCredentials(_)`, `KeyGeneration`, `Task` | device | no |
//! | `FingerprintMismatch` | service (or someone in between) | no |
//! | `Invalid(_)` | caller | no |
//! | `Timeout`, `Stopped` | network / caller | yes / no |
//!
//! No variant carries a message text, a key, a passphrase or a PEM (PRIM-7): `Display` is safe to
//! log. What a lower layer said (an I/O error, a TLS alert) is kept as the error's `source()`.

use core::fmt;

use sotto_core::UserId;
pub use sotto_core::error::{
    CryptoError, DecodeError, Error as ProtocolError, Fault as ProtocolFault, GroupError,
    MisuseError, SessionError,
};
pub use sotto_store::StoreError;
pub use sotto_wire::membership_api::ApiCode;

/// Result of every client operation.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;

/// Who is at fault for a failed operation, and so who can do something about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The app (or the person through it) asked for something invalid: an unknown contact, an
    /// empty argument, a wrong passphrase, a store path that is taken.
    Caller,
    /// This device: its store files, its disk, its random source, an account never signed up.
    Device,
    /// The network between the device and the service: nothing answered, a connection broke, a
    /// deadline passed.
    Network,
    /// The service (membership or broker) refused, or answered what it must not.
    Service,
    /// A peer, or the server in its place, sent something the core refused.
    Peer,
}

/// Which of the two services an operation talked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// The membership service (HTTPS): signup, directory, server time.
    Membership,
    /// The message service (MQTT over mutual TLS).
    Broker,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Membership => "the membership service",
            Service::Broker => "the message service",
        })
    }
}

/// How a connection to a service failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkFailure {
    /// No connection could be made (refused, no route, name not resolved).
    Connect,
    /// The TLS handshake failed: the server's certificate does not chain to the pinned CA, or the
    /// server refused this device's certificate (TLS-1). Retrying does not help.
    Tls,
    /// The server's certificate chains to the pinned CA but does not name the host the device
    /// reached it by (`sotto serve --name`). Retrying does not help; another name may.
    ServerName,
    /// The service did not answer in time.
    Timeout,
    /// An established connection broke, or the exchange on it failed.
    Closed,
}

/// Why the broker refused a connection (its CONNACK return code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BrokerRefusal {
    /// 1: the broker does not speak MQTT 3.1.1.
    UnacceptableProtocol,
    /// 2: the client id is refused (BROKER-1: it must be the certificate's user id).
    IdentifierRejected,
    /// 3: the broker is unavailable (restarting, or the front has no broker behind it).
    ServerUnavailable,
    /// 4: bad user name or password.
    BadCredentials,
    /// 5: not authorized (a certificate the broker does not accept).
    NotAuthorized,
    /// Another code.
    Other,
}

/// What was wrong with an answer of the membership service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BadAnswer {
    /// The body is not the JSON or binary body the API defines.
    Malformed,
    /// The body is larger than any valid answer.
    TooLarge,
    /// A success status the endpoint does not use.
    UnexpectedStatus(u16),
    /// The user id in the signup answer is not an ID-1 user id.
    UserId,
    /// The directory served a bundle of another user than the one asked for (KEY-5).
    WrongUser,
    /// The directory's bundle fails the core's checks (KEY-5: its signatures do not hold).
    Unverified(ProtocolError),
}

impl fmt::Display for BadAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadAnswer::Malformed => f.write_str("malformed body"),
            BadAnswer::TooLarge => f.write_str("body too large"),
            BadAnswer::UnexpectedStatus(s) => write!(f, "unexpected status {s}"),
            BadAnswer::UserId => f.write_str("not a user id"),
            BadAnswer::WrongUser => f.write_str("a bundle of another user"),
            BadAnswer::Unverified(e) => write!(f, "a bundle that does not verify ({})", e.code()),
        }
    }
}

/// What a lower layer reported (an I/O error, a TLS alert, an HTTP failure), kept as the
/// `source()` of a [`ClientError::Network`]. Its `Display` is the innermost cause.
pub struct Cause(Box<dyn std::error::Error + Send + Sync + 'static>);

impl Cause {
    pub(crate) fn new(e: impl std::error::Error + Send + Sync + 'static) -> Cause {
        Cause(Box::new(e))
    }

    pub(crate) fn text(s: &'static str) -> Cause {
        Cause(s.into())
    }

    /// Whether the chain holds a certificate that is not valid for the name it was checked for.
    pub(crate) fn is_wrong_name(&self) -> bool {
        use rustls::CertificateError::{NotValidForName, NotValidForNameContext};
        matches!(
            self.tls_error(),
            Some(rustls::Error::InvalidCertificate(
                NotValidForName | NotValidForNameContext { .. }
            ))
        )
    }

    /// Whether a `rustls::Error` is anywhere in the chain.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls_error().is_some()
    }

    /// The first `rustls::Error` in the chain.
    fn tls_error(&self) -> Option<&rustls::Error> {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(self.0.as_ref());
        while let Some(e) = next {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            // An `io::Error`'s `source()` skips the error it wraps (it returns that error's own
            // source), and I/O errors wrap one another (hyper's connect error around the TLS
            // stream's): look inside each.
            next = match e
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            };
        }
        None
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cause: &(dyn std::error::Error + 'static) = self.0.as_ref();
        while let Some(next) = cause.source() {
            cause = next;
        }
        fmt::Display::fmt(cause, f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Why a client operation failed. See the module documentation for the table of faults.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The protocol core refused (an unknown peer, a malformed card, a message too large, ...):
    /// the core's typed error, whose `code()` is the stable code of protocol.md section 17.
    #[error("protocol: {0} ({code})", code = .0.code())]
    Protocol(#[from] ProtocolError),
    /// The encrypted store failed (wrong passphrase, damaged file, I/O).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The membership service refused the request with a stable code (docs/operations.md).
    #[error("{service} refused the request: {status} {code}", service = Service::Membership)]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The typed code (the service's own, or the core's).
        code: ApiCode,
    },
    /// The membership service answered something that is not valid.
    #[error("invalid answer from {service}: {0}", service = Service::Membership)]
    BadAnswer(BadAnswer),
    /// A service could not be reached, or the connection to it failed.
    #[error("cannot reach {service} ({failure:?}): {cause}")]
    Network {
        /// Which service.
        service: Service,
        /// How it failed.
        failure: NetworkFailure,
        /// What the lower layer said.
        #[source]
        cause: Cause,
    },
    /// The broker refused the connection (CONNACK).
    #[error("the broker refused the connection: {0:?}")]
    BrokerRefused(BrokerRefusal),
    /// The broker refused the subscription to the own inbox (BROKER-2).
    #[error("the broker refused the inbox subscription")]
    SubscriptionRefused,
    /// The directory's bundle for a known contact carries another identity (RX-9): the person
    /// decides, and `Client::accept_new_identity` takes the new one.
    #[error("the identity of {0} changed")]
    IdentityChanged(UserId),
    /// The store holds no account (the named setting is missing: it was never signed up).
    #[error("the store holds no account (no {0})")]
    NoAccount(&'static str),
    /// TLS material (a CA certificate, the device certificate or key) does not parse.
    #[error("malformed TLS material: {0}")]
    BadCredentials(&'static str),
    /// The CA the server presented does not have the fingerprint the operator published: trust
    /// nothing from it (TLS-1).
    #[error("the server's CA does not have the expected fingerprint")]
    FingerprintMismatch,
    /// An argument is out of range (an empty text list, the own card, a URL that is not https).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The online loop ([`crate::Online`]) has stopped.
    #[error("the online loop has stopped")]
    Stopped,
    /// The OS random source or a key generator failed.
    #[error("key generation failed")]
    KeyGeneration,
    /// A background task failed.
    #[error("background task failed")]
    Task,
}

impl ClientError {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            // Blocking is the person's own decision (RX-11).
            ClientError::Protocol(ProtocolError::Session(SessionError::Blocked)) => Fault::Caller,
            ClientError::Protocol(e) => match e.fault() {
                ProtocolFault::Misuse => Fault::Caller,
                ProtocolFault::Local => Fault::Device,
                _ => Fault::Peer,
            },
            ClientError::Store(e) => match e {
                StoreError::WrongPassphrase
                | StoreError::EmptyPassphrase
                | StoreError::AlreadyExists
                | StoreError::NotFound
                | StoreError::WrongDevice
                | StoreError::InUse
                | StoreError::Invalid(_) => Fault::Caller,
                _ => Fault::Device,
            },
            ClientError::Refused { code, .. } => match code {
                ApiCode::Internal | ApiCode::Timeout | ApiCode::Unrecognized => Fault::Service,
                _ => Fault::Caller,
            },
            ClientError::Network {
                failure: NetworkFailure::Tls,
                ..
            } => Fault::Service,
            // The device asked for a name the server does not carry.
            ClientError::Network {
                failure: NetworkFailure::ServerName,
                ..
            } => Fault::Caller,
            ClientError::Network { .. } | ClientError::Timeout => Fault::Network,
            ClientError::BadAnswer(_)
            | ClientError::BrokerRefused(_)
            | ClientError::SubscriptionRefused
            | ClientError::FingerprintMismatch => Fault::Service,
            ClientError::IdentityChanged(_) => Fault::Peer,
            ClientError::NoAccount(_)
            | ClientError::BadCredentials(_)
            | ClientError::KeyGeneration
            | ClientError::Task => Fault::Device,
            ClientError::Invalid(_) | ClientError::Stopped => Fault::Caller,
        }
    }

    /// Whether the same operation may succeed later without anyone changing anything: the
    /// network failed (not TLS), a deadline passed, or the service had an internal fault. Messages
    /// already committed to the outbox are never lost either way: they go out on the next
    /// connection.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Network { failure, .. } => {
                !matches!(failure, NetworkFailure::Tls | NetworkFailure::ServerName)
            }
            ClientError::Timeout => true,
            ClientError::Refused { code, .. } => {
                matches!(
                    code,
                    ApiCode::Internal | ApiCode::Timeout | ApiCode::RateLimited
                )
            }
            ClientError::BrokerRefused(BrokerRefusal::ServerUnavailable) => true,
            // Once the other process closes the store.
            ClientError::Store(StoreError::InUse) => true,
            _ => false,
        }
    }

    /// The stable code of a refusal, for logs: the core's (protocol.md section 17) or the
    /// membership service's (docs/operations.md).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            ClientError::Protocol(e) | ClientError::BadAnswer(BadAnswer::Unverified(e)) => {
                Some(e.code())
            }
            ClientError::Refused { code, .. } => Some(code.as_str()),
            _ => None,
        }
    }

    pub(crate) fn network(service: Service, failure: NetworkFailure, cause: Cause) -> ClientError {
        ClientError::Network {
            service,
            failure,
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_retries() {
        let e = ClientError::from(ProtocolError::from(MisuseError::UnknownPeer));
        assert_eq!(e.fault(), Fault::Caller);
        assert!(!e.is_retryable());
        assert_eq!(e.code(), Some("unknown_peer"));
        let e = ClientError::network(
            Service::Membership,
            NetworkFailure::Connect,
            Cause::text("connection refused"),
        );
        assert_eq!(e.fault(), Fault::Network);
        assert!(e.is_retryable());
        assert!(e.to_string().ends_with("connection refused"), "{e}");
        let e = ClientError::network(Service::Broker, NetworkFailure::Tls, Cause::text("x"));
        assert_eq!(e.fault(), Fault::Service);
        assert!(!e.is_retryable());
        let e = ClientError::Refused {
            status: 503,
            code: ApiCode::Timeout,
        };
        assert!(e.is_retryable());
        assert_eq!(e.code(), Some("timeout"));
        let e = ClientError::Refused {
            status: 404,
            code: ApiCode::UnknownUser,
        };
        assert_eq!(e.fault(), Fault::Caller);
        assert!(!e.is_retryable());
        assert_eq!(
            ClientError::from(StoreError::WrongPassphrase).fault(),
            Fault::Caller
        );
    }
}
