//! # sotto-client: the device shell around the sans-IO core
//!
//! `sotto-core` seals and opens envelopes without I/O; `sotto-store` keeps the device state in
//! SQLCipher. This crate connects them to the network: HTTPS to the membership service (signup,
//! directory, server time) and MQTT over mutual TLS to the message service, with the exactly-once
//! discipline of protocol.md section 13.
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
//! - [`Client::connect`]: the MQTT loop on a task (persistent session, resubscribe on every
//!   CONNACK, reconnect with backoff), driven through a [`SessionHandle`], with
//!   [`ClientEvent`]s on a channel.
//! - [`Client::sync`]: connect, drain the inbox until it is quiet, flush the outbox, disconnect.
//!
//! Time is the server-corrected clock (TIME-1): the offset from every membership response is
//! kept in the store. Nothing secret is logged: only error codes, counts and user ids.
//!
//! ## Runtime
//! Everything runs on tokio. Argon2id (opening or creating a store) and the signup proof of work
//! run on blocking threads; the store's other operations are short SQLite transactions made on
//! the session task itself, between MQTT events. A commit waits for the disk
//! (`synchronous=FULL`, RX-4): in the task [`Client::connect`] spawns on a multi-thread runtime,
//! store work runs through `tokio::task::block_in_place`, so that the worker's other tasks (other
//! clients' sessions in one process, as in `sotto soak`) move to another thread meanwhile; a
//! [`Client::sync`] commits in its caller's context (a current-thread runtime allows no
//! blocking section). One process opens a store at a time.
//!
//! ## Requirements guarded here
//! RX-4 (ack after commit), RX-5/RX-6 (receipts, resends, receipt again for a duplicate), RX-8
//! (parking), RX-9 (identity changes are refused and reported), TIME-1, TLS-1 (mutual TLS with the
//! CA pinned at signup), BROKER-1 (client id = user id), BROKER-4 (persistent session), Req4
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
mod conversation;
mod error;
mod events;
mod receive;
mod session;
mod transport;

pub use account::{Client, PREKEY_LOW_WATER, SIGNUP_ONE_TIME_PREKEYS, SignupOptions};
pub use conversation::check_bundle;
pub use error::{ClientError, Result};
pub use events::{ClientEvent, ReceivedMessage, Refusal};
pub use session::{DEFAULT_QUIET, EVENT_CAPACITY, SessionHandle, SyncReport};
pub use transport::{KEEP_ALIVE, MAX_INFLIGHT, MAX_PACKET};

/// Re-exports for callers: the ids, trust levels and store types the API uses.
pub use sotto_core::{GroupId, MessageId, Trust, UserId};
pub use sotto_store::{
    Backoff, Chat, ContactEntry, Direction, KdfParams, MessageState, StoredMessage,
};
