//! # sotto-wire: the vocabulary client and server share
//!
//! `sotto-core` defines the bytes two devices exchange (envelopes, cards, bundles). Around them,
//! a device and the service speak two more things, and both sides must read them the same way.
//! They live here, without I/O, so that `sotto-client` and `sotto-server` are peers over one
//! vocabulary instead of one depending on the other:
//!
//! ```text
//!               sotto-client                         sotto-server
//!   MembershipClient ──HTTPS── membership_api ──HTTPS── membership service (axum)
//!   rumqttc session  ──MQTT─── mqtt + filter  ──MQTT─── the front (BROKER-1..3) ── broker
//!                          \                       /
//!                           sotto-wire (this crate) ── sotto-core (ids, keys, limits, errors)
//! ```
//!
//! - [`membership_api`]: paths, the server-time header, the JSON bodies, the typed error codes
//!   ([`membership_api::ApiCode`]) and the binary bodies `RenewRequest` and `PrekeyUpload`
//!   (docs/operations.md).
//! - [`mqtt`]: a panic-free MQTT 3.1.1 parser of single packets and the encoders the server side
//!   writes itself.
//! - [`filter`]: the message service's rules (BROKER-1..3) as a per-connection state machine:
//!   what a client may CONNECT, SUBSCRIBE and PUBLISH. The front enforces it; the fuzz target
//!   `filter` drives it.
//! - [`notice`]: the refusal notice (BROKER-5) that tells a sender a PUBLISH was not queued.
//! - [`nats`]: the frames of the NATS client protocol the service reads when it runs on a NATS
//!   cluster (what the engine holds for an inbox); the fuzz target `nats` drives it.
//!
//! Everything here parses untrusted bytes: no panics, typed errors, nothing secret in `Debug`.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable
    )
)]

pub mod filter;
pub mod membership_api;
pub mod mqtt;
pub mod nats;
pub mod notice;
