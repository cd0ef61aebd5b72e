//! Typed errors of the client shell, split by where the failure comes from: the protocol core, the
//! encrypted store, the membership service, the message broker, or the caller.
//!
//! No variant carries a message text, a key, a passphrase or a PEM (PRIM-7): `Display` is safe to log.

use sotto_core::UserId;

/// Result of every client operation.
pub type Result<T, E = ClientError> = core::result::Result<T, E>;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The protocol core refused (a misuse such as an unknown peer, or a malformed card).
    #[error("protocol: {0} ({code})", code = .0.code())]
    Core(#[from] sotto_core::Error),
    /// The encrypted store failed (wrong passphrase, damaged file, I/O).
    #[error("store: {0}")]
    Store(#[from] sotto_store::StoreError),
    /// The membership service refused or could not be reached.
    #[error("membership service: {0}")]
    Membership(#[from] sotto_server::membership::ClientError),
    /// The TLS configuration could not be built from the stored PEM.
    #[error("TLS configuration: {0}")]
    Tls(#[from] sotto_server::ca::CaError),
    /// The TLS key pair could not be generated.
    #[error("TLS key generation failed")]
    KeyGeneration,
    /// The membership service answered something that is not valid (a bundle for another user, a
    /// malformed user id, a bundle whose signatures do not verify).
    #[error("invalid answer from the membership service: {0}")]
    BadServerAnswer(&'static str),
    /// The directory's bundle for a known contact carries another identity (RX-9): accept it
    /// explicitly with `Client::accept_new_identity`.
    #[error("the identity of {0} changed")]
    IdentityChanged(UserId),
    /// A setting the client needs is missing from the store (the account was never signed up).
    #[error("the store lacks the setting {0}")]
    MissingSetting(&'static str),
    /// The broker address is not `host:port`.
    #[error("invalid broker address")]
    BadBrokerAddress,
    /// The broker refused the connection (CONNACK return code).
    #[error("the broker refused the connection: {0}")]
    BrokerRefused(String),
    /// The broker refused the subscription to the own inbox (BROKER-2).
    #[error("the broker refused the inbox subscription")]
    SubscriptionRefused,
    /// The MQTT connection failed.
    #[error("MQTT connection: {0}")]
    Connection(String),
    /// The operation did not finish in time.
    #[error("timed out")]
    Timeout,
    /// The connected session has stopped (its task ended).
    #[error("the connected session has stopped")]
    Stopped,
    /// An argument is out of range (an empty text list, a negative duration, ...).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A background task failed.
    #[error("background task failed")]
    Task,
}

impl ClientError {
    /// The core's stable error code, if the core refused.
    pub fn core_code(&self) -> Option<&'static str> {
        match self {
            ClientError::Core(e) => Some(e.code()),
            _ => None,
        }
    }
}
