//! # sotto-client: the library an app embeds
//!
//! `sotto-core` seals and opens envelopes without I/O; `sotto-store` keeps the device state in
//! SQLCipher. This crate connects them to the network: HTTPS to the membership service (signup,
//! directory, server time) and MQTT over mutual TLS to the message service, with the exactly-once
//! discipline of protocol.md section 13. It depends on no server code: what it shares with the
//! service is the vocabulary of `sotto-wire`.
//!
//! ```text
//!   person ── Client::send ──> Device::send ──> Store::commit_outgoing (state + message + outbox)
//!                                                          │ due_outbox
//!   broker <── PUBLISH i/<recipient> QoS 1 <───────────────┘ PUBACK ─> mark_published (RX-6)
//!
//!   broker ── PUBLISH i/<own id> ──> Device::receive(now) ──> Store::commit_incoming
//!                                     (state + message + receipt queued, one transaction)
//!                                                          └──> only then: MQTT ack (RX-4)
//!           duplicate ─> receipt again (RX-6) ─> ack     retryable ─> park (RX-8) ─> ack
//!           refused  ─> typed code logged, nothing changes ─> ack
//! ```
//!
//! - [`Client`]: the account. [`Client::signup`] / [`Client::open`]; contacts from cards (verified)
//!   or the directory (unverified); groups; [`Client::send`] seals into the outbox.
//! - [`Client::connect`]: the online loop on a task (the broker keeps the inbox session, the loop
//!   resubscribes on every CONNACK and reconnects with backoff), driven through an [`Online`]
//!   handle, with [`ClientEvent`]s on a channel.
//! - [`Client::sync`]: connect, drain the inbox until it is quiet, flush the outbox, disconnect.
//! - [`Config`]: every tuning knob in one struct; [`ClientError`]: one typed error that says who
//!   is at fault ([`ClientError::fault`]) and whether a retry helps
//!   ([`ClientError::is_retryable`]), carrying the core's and the service's typed codes.
//! - [`membership`], [`tls`], [`pin`]: the membership API client, the TLS-1 client configuration
//!   and CA pinning by fingerprint, for apps that need them on their own.
//!
//! ## Embedding
//! ```no_run
//! use std::time::Duration;
//! use sotto_client::{Client, ClientError, ClientEvent, Config, Fault};
//!
//! # async fn app(ca_pem: &str, card_of_bob: &str) -> sotto_client::Result<()> {
//! // Sign up once (no personal data, Req1); the store is encrypted with the passphrase (Req7).
//! let mut alice = Client::signup_with(
//!     "https://chat.example:7443",
//!     ca_pem,
//!     "alice.db",
//!     b"a passphrase the person chose",
//!     Config::default(),
//! )
//! .await?;
//! // Meet Bob in person and scan his card: a verified contact (Req2, Req5).
//! let bob = alice.add_card(card_of_bob)?;
//! // Go online; sends are committed to the outbox first and go out as soon as they can (Req4).
//! let (online, mut events) = alice.connect();
//! online.send(bob, "hello".to_owned()).await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ClientEvent::Message(m) => println!("{}: {}", m.from, m.text),
//!         ClientEvent::Delivered { complete: true, .. } => break,
//!         _ => {}
//!     }
//! }
//! let alice = online.shutdown().await?;
//! alice.close()?;
//!
//! // Later: errors say who can fix them.
//! match Client::open("alice.db", b"wrong").await {
//!     Err(e) if e.fault() == Fault::Caller => eprintln!("ask again: {e}"),
//!     Err(e) if e.is_retryable() => eprintln!("try later: {e}"),
//!     Err(e) => return Err(e),
//!     Ok(_) => {}
//! }
//! # let _ = Duration::ZERO; let _: Option<ClientError> = None;
//! # Ok(()) }
//! ```
//!
//! Time is the server-corrected clock (TIME-1): the offset from every membership response is
//! kept in the store. Nothing secret is logged: only error codes, counts and user ids.
//!
//! ## Runtime
//! Everything runs on tokio. Argon2id (opening or creating a store) and the signup proof of work
//! run on blocking threads; the store's other operations are short SQLite transactions made on
//! the online loop's task itself, between MQTT events. A commit waits for the disk
//! (`synchronous=FULL`, RX-4): in the task [`Client::connect`] spawns on a multi-thread runtime,
//! store work runs through `tokio::task::block_in_place`, so that the worker's other tasks (other
//! clients' loops in one process, as in `sotto soak`) move to another thread meanwhile; a
//! [`Client::sync`] commits in its caller's context (a current-thread runtime allows no
//! blocking section). One process opens a store at a time.
//!
//! ## Features
//! - `test-utils`: read access to the protocol state and the store, for conformance runs and
//!   tests (the openmls habit). Never in an app's build: the state holds private keys.
//! - `mutations`: switches that break the implementation on purpose, for the mutation sanity run.
//!
//! ## Requirements guarded here
//! RX-4 (ack after commit), RX-5/RX-6 (receipts, resends, receipt again for a duplicate), RX-8
//! (parking), RX-9 (identity changes are refused and reported), TIME-1, TLS-1 (mutual TLS with the
//! CA pinned at signup), BROKER-1 (client id = user id), BROKER-4 (persistent inbox session), Req4
//! (offline delivery with the key share): see `tests/client/`.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable
    )
)]

mod account;
mod config;
mod conversation;
mod deletion;
mod error;
mod events;
mod identity;
pub mod maintenance;
pub mod membership;
mod online;
pub mod pin;
mod receive;
pub mod resolve;
mod takeover;
pub mod tls;
mod transport;

pub use account::Client;
pub use config::Config;
pub use conversation::{GroupInfo, HeldEnvelope};
pub use error::{
    ApiCode, BadAnswer, BrokerRefusal, Cause, ClientError, CryptoError, DecodeError, Fault,
    GroupError, MisuseError, NetworkFailure, ProtocolError, ProtocolFault, Result, Service,
    SessionError, StoreError,
};
pub use events::{ClientEvent, ReceivedMessage, Refusal, RefusalReason};
pub use identity::{HeldIdentityClaim, IdentityCheck};
pub use membership::check_bundle;
pub use online::{Online, SyncReport};
pub use resolve::Resolve;

/// Re-exports for callers: the ids, trust levels and store types the API uses.
pub use sotto_core::{GroupId, MessageId, Trust, UserId};
pub use sotto_store::{
    Backoff, Chat, ContactEntry, Direction, KdfParams, MessageState, StoredMessage,
};
