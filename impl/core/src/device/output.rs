//! What a step of the device hands the shell: the envelopes to publish ([`Outgoing`]), what a
//! received envelope said ([`Incoming`]) and what the person should see besides ([`Event`]).

use crate::crypto::SignPublic;
use crate::error::{Error, SessionError};
use crate::ids::{GroupId, MessageId, UserId};
use crate::inner::Content;

use super::Trust;

/// Something the person should see besides the message itself.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A first message from an unknown user id created an unverified contact (RX-9).
    NewContact(UserId),
    /// The device joined a group, or learned a new epoch of it (GRP-4).
    GroupKey {
        /// The group.
        group: GroupId,
        /// Its epoch.
        epoch: u32,
    },
    /// The admin removed this device from a group; its keys are deleted (GRP-6).
    RemovedFromGroup(GroupId),
    /// A member confirmed holding a group epoch's key (GRP-9).
    MemberConfirmed {
        /// The group.
        group: GroupId,
        /// The epoch.
        epoch: u32,
        /// The member's index.
        index: u8,
    },
    /// A member left a group this device administers (GRP-11): the burst removes it
    /// ([`crate::Inbound::finish`]), a new epoch without it.
    MemberLeft {
        /// The group.
        group: GroupId,
        /// Who left.
        user: UserId,
    },
    /// The admin handed this device a group's admin role (GRP-12): the burst issues the next
    /// epoch as its admin ([`crate::Inbound::finish`]), or, if a member has no session yet, the
    /// shell completes it with [`crate::Device::take_over_group`] ([`crate::Device::pending_takeovers`]).
    HandoverReceived {
        /// The group.
        group: GroupId,
        /// The epoch this device issues as its admin.
        epoch: u32,
    },
    /// The message opened, but its content was refused (for example a group key not from the admin).
    Rejected(Error),
}

/// A message to publish to each recipient's inbox (ID-5).
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Recipients; one for a pairwise message, every other member for a group message (GRP-8).
    pub to: Vec<UserId>,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// The message id a receipt will name (ID-3).
    pub id: MessageId,
    /// The group, for a group message.
    pub group: Option<GroupId>,
}

/// A message received and opened.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The sender.
    pub from: UserId,
    /// The sender's identity key.
    pub identity: SignPublic,
    /// How far the sender is trusted.
    pub trust: Trust,
    /// The message id (ID-3).
    pub id: MessageId,
    /// The sender's server-corrected send time, ms.
    pub sent_at: u64,
    /// What it says.
    pub content: Content,
    /// The group, for a group message.
    pub group: Option<GroupId>,
    /// Things to show besides the message.
    pub events: Vec<Event>,
    /// Whether this step brought keys (a new session, epoch or group epoch) that may open
    /// envelopes parked for a retry (RX-8).
    pub new_keys: bool,
}

impl Incoming {
    /// Whether its id is one of the last LIM-7 this device delivered (RX-7): a repeat, which the
    /// shell does not save or show again (the step's state is still committed: its keys are
    /// consumed).
    pub fn repeats_a_delivered_id(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Rejected(Error::Session(SessionError::Duplicate))))
    }
}
