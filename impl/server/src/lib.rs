//! # sotto-server: the membership service, its CA, and the message service
//!
//! The server side of Sotto. It never sees a plaintext or a private key: it certifies TLS keys,
//! hands out public prekeys and moves opaque envelopes (docs/threat-model.md treats all of it as the
//! attacker `A1`).
//!
//! ```text
//!   device ──HTTPS (TLS 1.3)──▶ membership ── membership.db (public keys only, Req1)
//!     │        signup, renew,       │
//!     │        prekeys, bundles,    └── ca::Pki: issues client certificates, CN = user id (TLS-1)
//!     │        time (TIME-1)
//!     └──MQTT over mutual TLS──▶ broker front ──▶ embedded broker (BROKER-1..6)
//! ```
//!
//! - [`ca`]: the service's certificate authority (created on first start, kept in the data
//!   directory) and the TLS configurations built from it (TLS-1).
//! - [`membership`]: signup without personal data (Req1), certificates, the prekey directory and
//!   server time, over HTTPS.
//! - [`broker`]: the message service: Sotto's own embedded broker on an internal loopback port behind the
//!   authorizing mutual-TLS front (BROKER-1..4), and the Mosquitto profile.
//! - [`admission`] and [`gate`]: how many connections each listener takes, per source and in
//!   all, without keeping an address (the front's and the membership service's bounds).
//! - [`revocation`]: client certificates replaced by a renewal (or an account deletion), refused
//!   by the front and the membership service.
//! - [`departure`]: accounts deleted or expired: messages to them are refused (BROKER-5, reason
//!   2), their inboxes dropped from the broker.
//! - [`key_proof`]: a signup or a renewal proves it holds the TLS key it asks a certificate for.
//! - [`process`]: stopping a child process (SIGTERM, a bounded wait, SIGKILL).
//! - [`service`]: the whole service started in one place ([`Service::builder`]), with [`Broker`],
//!   the one word for which broker carries the messages.
//!
//! What the service shares with devices (the membership API bodies and codes, the MQTT packets,
//! the rules BROKER-1..3) is `sotto-wire`; the server depends on no client code.

pub mod admission;
pub mod broker;
pub mod ca;
pub mod clock;
pub mod departure;
pub mod gate;
pub mod key_proof;
pub mod membership;
pub mod metrics;
mod private;
pub mod process;
mod random;
pub mod revocation;
pub mod service;

pub use broker::{Holdings, InboxLimits};
pub use service::{Broker, BrokerStop, Service, ServiceBuilder, ServiceError};
