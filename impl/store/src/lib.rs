//! # sotto-store: the encrypted device store (Req7)
//!
//! Everything a device keeps lives in one SQLCipher database, keyed with the raw key
//! `Argon2id(passphrase, salt)` (STORE-1); the salt and the Argon2 parameters sit beside it in a
//! small plaintext header, `<db>.salt` ([`kdf`]). Nothing in either file is readable without the
//! passphrase: not the messages, not the contacts' names, not the user id, not the keys.
//!
//! ```text
//!   passphrase ──Argon2id(m, t, p, salt from <db>.salt)──> 32-byte key ──> SQLCipher <db>
//!
//!   <db>:  device    the user id (one row)
//!          records   the core's state as records (sotto_core::records): identity and counters,
//!                    one row per one-time prekey, contact, session, group, replay-cache entry,
//!                    delivered id; a commit writes only the rows its step changed
//!          contacts  user id, trust (mirrored from the device), name, added_at
//!          messages  texts in and out, by conversation, with their state
//!          outbox    one row per recipient: the sealed envelope, attempts, next attempt (RX-6)
//!          received  envelope hash -> message id, for repeated receipts (RX-6)
//!          parked    retryable envelopes (RX-8)
//!          kv        settings: service addresses, TLS credentials, time offset
//! ```
//!
//! ## Contract with the shell (STORE-3, RX-4)
//! The core changes its state in memory; the shell then commits that state *together with* what it
//! concerns, in one SQLite transaction, and only then acknowledges the PUBLISH or reports a message
//! as sent:
//!
//! - [`Store::commit_burst`]: the state after a burst of `Device::receive_into`, the messages
//!   that opened, the envelopes parked for a retry, the receipts and group acks owed
//!   ([`Store::commit_incoming`] is a burst of one).
//! - [`Store::commit_outgoing`]: the state after `Device::send`, the message, its outbox rows.
//! - [`Store::commit_device`]: any other state change, with the envelopes it produced.
//!
//! If a commit fails, nothing was written; the shell drops its in-memory device and reloads it with
//! [`Store::load_device`], so memory never runs ahead of the disk.
//!
//! Time is an argument everywhere (`now`, server-corrected ms): the store reads no clock.
//!
//! ```
//! # use rand_core::SeedableRng;
//! use sotto_core::{Content, Device, UserId};
//! use sotto_store::{Chat, KdfParams, Store};
//!
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! # let dir = tempfile::tempdir()?;
//! # let now = 1_767_225_600_000;
//! # let (a, b) = (UserId::random(&mut rng), UserId::random(&mut rng));
//! let mut alice = Device::new(&mut rng, a);
//! # let bob = Device::new(&mut rng, b);
//! # alice.add_contact_from_bundle(&bob.bundle(None)?)?;
//! // KdfParams::default() in real life; the cheapest parameters keep this example fast.
//! let path = dir.path().join("alice.db");
//! let mut store =
//!     Store::create_with_params(&path, b"passphrase", &alice, now, KdfParams::INSECURE_FOR_TESTS)?;
//!
//! // Seal, then commit the new state, the message and its outbox row together (STORE-3).
//! let content = Content::Text("hello".into());
//! let out = alice.send(&mut rng, now, bob.user_id(), &content)?;
//! store.commit_outgoing(&mut alice, &out, &content, now)?;
//!
//! // The shell publishes what is due, then records the PUBACK (RX-6).
//! for entry in store.due_outbox(now, 100)? {
//!     // publish entry.envelope to entry.recipient's inbox ...
//!     store.mark_published(&entry.message_id, &entry.recipient, now)?;
//! }
//! store.close()?;
//!
//! let store = Store::open(&path, b"passphrase")?;
//! let _alice = store.load_device()?;
//! assert_eq!(store.messages_with(&Chat::User(*bob.user_id()))?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Files and failure
//! - A wrong passphrase is [`StoreError::WrongPassphrase`] and writes nothing (STORE-2).
//! - The database uses a write-ahead log (`<db>-wal`, its index in memory): a commit appends
//!   the pages it changed, encrypted like every page, and syncs that one file
//!   (`synchronous = FULL`). The log is copied into the database every 1,000 pages and truncated to
//!   nothing then, and the log is gone once the store is closed. Freed pages of the
//!   database are overwritten (`secure_delete`), so superseded device states (old chain keys) do
//!   not outlive the next checkpoint. A passphrase change runs on the rollback journal (SQLCipher's
//!   rekey needs it) and returns to the log.
//! - Schema changes are numbered migrations applied in one transaction on open ([`schema`]).
//! - One connection opens a store at a time (STORE-4): it holds the file lock (SQLite's exclusive
//!   locking mode) from open to close; a second opener gets [`StoreError::InUse`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]
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

mod backoff;
mod commit;
mod contacts;
mod error;
pub mod kdf;
mod messages;
mod outbox;
mod received;
mod rows;
pub mod schema;
mod settings;
mod state;
mod store;

pub use commit::{Burst, BurstCommitted, Delivery, Opened};
pub use contacts::{ContactEntry, MAX_NAME};
pub use error::{Result, StoreError};
pub use kdf::{KdfHeader, KdfParams};
pub use messages::{Chat, Direction, MessageState, StoredMessage};
pub use outbox::{Backoff, Hold, NEVER_DUE, OutboxEntry, ToSend};
pub use received::{Parked, ReceivedRef};
pub use settings::{MAX_SETTING, Setting};
pub use store::{Store, destroy_files, header_path};

#[cfg(test)]
mod tests;
