//! What the client tells the person: [`ClientEvent`]s, sent to the UI over a tokio channel by the
//! online loop ([`crate::Client::connect`]) and collected by [`crate::Client::sync`].
//!
//! Events carry what the UI shows and nothing secret; the text of a message is in the event
//! because the UI displays it, but `Debug` prints only its length.

use sotto_core::{GroupId, MessageId, Trust, UserId};

use crate::error::{Fault, ProtocolError};
pub use sotto_wire::notice::RefusalReason;

/// A message that was received and committed (RX-4).
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The message id (ID-3).
    pub id: MessageId,
    /// The sender.
    pub from: UserId,
    /// How far the sender is trusted (CARD-4).
    pub trust: Trust,
    /// The group, for a group message.
    pub group: Option<GroupId>,
    /// The text.
    pub text: String,
    /// The sender's server-corrected send time, ms.
    pub sent_at: u64,
    /// When this device committed it (server-corrected), ms.
    pub received_at: u64,
}

impl core::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("id", &self.id)
            .field("from", &self.from)
            .field("trust", &self.trust)
            .field("group", &self.group)
            .field("text_len", &self.text.len())
            .field("sent_at", &self.sent_at)
            .finish()
    }
}

/// Why an envelope was dropped without a state change: the core's typed error.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Refusal {
    /// The core's error (protocol.md section 17), e.g. `Crypto(DecryptFailed)`.
    pub error: ProtocolError,
}

impl Refusal {
    /// The error's stable code, e.g. `decrypt_failed`.
    pub fn code(&self) -> &'static str {
        self.error.code()
    }
}

/// Something the UI should know about.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The broker accepted the connection and the inbox subscription.
    Connected {
        /// Whether the broker still had the persistent session (BROKER-4).
        session_present: bool,
    },
    /// The connection ended; the online loop reconnects with backoff.
    Disconnected {
        /// Who is at fault ([`crate::ClientError::fault`]): `Network` for a lost or refused
        /// connection, `Service` for a TLS failure or a broker refusal.
        fault: Fault,
        /// Whether the loop's reconnection can help ([`crate::ClientError::is_retryable`]).
        retryable: bool,
        /// Why, for people and logs, without secrets (the error's `Display`).
        reason: String,
    },
    /// A text message arrived and was committed.
    Message(ReceivedMessage),
    /// A receipt from `by` names a message this device sent (RX-5).
    Delivered {
        /// The message.
        id: MessageId,
        /// Who confirmed it.
        by: UserId,
        /// Whether every recipient has now confirmed it (GRP-10).
        complete: bool,
    },
    /// A first message from an unknown user created an unverified contact (RX-9).
    NewContact(UserId),
    /// A first message claims another identity for a contact (RX-9): it is held, unopened, until
    /// the person compares safety numbers and decides ([`crate::Client::identity_claims`],
    /// [`crate::Client::accept_identity_claim`], [`crate::Client::reject_identity_claim`]).
    IdentityChanged {
        /// The contact.
        contact: UserId,
        /// Whether the identity this device held was verified.
        was_verified: bool,
    },
    /// This device joined a group or learned a new epoch of it (GRP-4).
    GroupKey {
        /// The group.
        group: GroupId,
        /// The epoch.
        epoch: u32,
    },
    /// The admin removed this device from a group (GRP-6).
    RemovedFromGroup(GroupId),
    /// A member left a group this device administers (GRP-11): it is removed, with a new epoch
    /// for the others, in the same transaction.
    MemberLeft {
        /// The group.
        group: GroupId,
        /// Who left.
        user: UserId,
    },
    /// The admin handed this device a group's admin role (GRP-12). It takes over at once, or,
    /// when a member has no session with it yet, once that member's bundle came from the
    /// directory ([`ClientEvent::TookOverGroup`] then).
    HandoverReceived {
        /// The group.
        group: GroupId,
        /// The epoch this device issues as its admin.
        epoch: u32,
    },
    /// This device is now a group's admin: it issued `epoch` and sent its key to every member
    /// (GRP-12).
    TookOverGroup {
        /// The group.
        group: GroupId,
        /// The epoch it issued.
        epoch: u32,
    },
    /// A member confirmed holding a group epoch (GRP-9).
    MemberConfirmed {
        /// The group.
        group: GroupId,
        /// The epoch.
        epoch: u32,
        /// The member's index.
        index: u8,
    },
    /// An envelope could not be opened yet and was kept for a retry (RX-8).
    Parked,
    /// An envelope was dropped without any state change (tampered, forged, replayed...).
    Refused(Refusal),
    /// A message opened, but its content was refused by the core (for example a group key that
    /// did not come from the admin).
    ContentRejected(Refusal),
    /// The service refused to queue an envelope of the outbox (BROKER-5, a refusal notice): it
    /// stays in the outbox and is tried again after its backoff
    /// ([`crate::Client::held_outbox`] lists what waits, and why).
    Held {
        /// The message.
        id: MessageId,
        /// The recipient whose inbox refused it.
        recipient: UserId,
        /// Why (e.g. the recipient's inbox is full).
        reason: RefusalReason,
    },
    /// A maintenance step ran ([`crate::maintenance`]): the time refreshed, the certificate
    /// renewed, the signed prekey rotated, the one-time prekeys counted and refilled, or a step
    /// that failed.
    Maintained(crate::maintenance::Maintenance),
    /// The service refused an envelope of the outbox for good (BROKER-5, a permanent reason:
    /// [`RefusalReason::NoSuchRecipient`], the recipient deleted their account): it is never
    /// tried again. A message stays listed, undeliverable, by [`crate::Client::held_outbox`]
    /// ([`crate::HeldEnvelope::is_undeliverable`]).
    Undeliverable {
        /// The message.
        id: MessageId,
        /// The recipient who is gone.
        recipient: UserId,
        /// Why (e.g. the recipient deleted their account).
        reason: RefusalReason,
    },
}
