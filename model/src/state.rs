//! The model's state: devices, the broker's queues, the attacker, and ghost records.
//!
//! Everything is ordered (`Vec` kept in a canonical order, no hash maps), so equal states hash
//! equally and a path can be rebuilt from action indices. Secrets are term ids (see
//! [`crate::term`]). *Ghost* fields record facts the properties need (who really sent what,
//! whether a session's keys are genuine) and never influence an honest device's behaviour.

use crate::knowledge::Knowledge;
use crate::term::{Dev, Slot, TermId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What a content message is, as the model names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum What {
    /// Scripted pairwise text `m<i>`.
    Text(u8),
    /// Scripted group text `g<i>`.
    GroupText(u8),
    /// Group key of group epoch e (GRP-3).
    GroupKey(u8),
    /// Group removed notice of group epoch e (GRP-6).
    GroupRemoved(u8),
    /// Key update (EPOCH-2), numbered per sender.
    KeyUpdate(u8),
    /// Group leave (GRP-11) naming the leaver's newest group epoch e.
    GroupLeave(u8),
    /// Group handover (GRP-12) naming group epoch e, the new admin's first.
    GroupHandover(u8),
    /// A text the attacker made up.
    Forged(u8),
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            What::Text(i) => write!(f, "m{i}"),
            What::GroupText(i) => write!(f, "g{i}"),
            What::GroupKey(e) => write!(f, "group-key(e{e})"),
            What::GroupRemoved(e) => write!(f, "group-removed(e{e})"),
            What::KeyUpdate(i) => write!(f, "key-update{i}"),
            What::GroupLeave(e) => write!(f, "group-leave(e{e})"),
            What::GroupHandover(e) => write!(f, "group-handover(e{e})"),
            What::Forged(i) => write!(f, "forged{i}"),
        }
    }
}

/// A packet in a broker queue (MQTT QoS 1, persistent session).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The envelope term.
    pub env: TermId,
}

/// A contact entry (CARD-4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The user id the contact is filed under.
    pub peer: Dev,
    /// Scanned in person (verified) or from the directory / a first message (unverified).
    pub verified: bool,
    /// `IKs` (public).
    pub iks: TermId,
    /// `IKd` (public).
    pub ikd: TermId,
    /// `SPK` (public), if known.
    pub spk: Option<TermId>,
    /// An `OPK` (public) not used yet.
    pub opk: Option<TermId>,
    /// Ghost: the keys are the peer's real keys.
    pub genuine: bool,
    /// Ghost: the `IKs` the contact had when the user last decided about it (filed it, or
    /// scanned its card): RX-9, CARD-4 say it never changes without the user.
    pub decided_iks: TermId,
    /// Ghost: the contact was verified when the user last decided about it.
    pub decided_verified: bool,
}

impl Contact {
    /// A contact as the user files it: the ghost records follow the keys.
    pub fn decided(peer: Dev, verified: bool, iks: TermId, ikd: TermId, genuine: bool) -> Contact {
        Contact {
            peer,
            verified,
            iks,
            ikd,
            spk: None,
            opk: None,
            genuine,
            decided_iks: iks,
            decided_verified: verified,
        }
    }
}

/// The sending chain of the device's own newest epoch (CHAIN-1..CHAIN-5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SendChain {
    /// Epoch number (EPOCH-1).
    pub epoch: u8,
    /// Next counter.
    pub n: u8,
    /// `CK_n`.
    pub ck: TermId,
    /// Ghost bookkeeping: `CK_0`, to recognise the ids of the epoch's messages in a receipt
    /// (the implementation keeps the ids themselves); never leaked.
    pub ck0: TermId,
    /// The epoch's seeds (nonces, tag, confirmation).
    pub seeds: TermId,
    /// The epoch's header, repeated on every message of the epoch until the sender knows the
    /// peer has the epoch (EPOCH-3): for epoch 0 the first-message fields `EK_A, SPK, OPK,
    /// identity_box, keyshare_box` (ENV-3), later `prev_tag, E, confirm, keyshare_box, pn`
    /// (ENV-4). `None` once acknowledged: the peer receipted one of the epoch's messages, or the
    /// device opened a message of a newer peer epoch.
    pub header: Option<TermId>,
}

/// A receiving chain of one of the peer's epochs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecvChain {
    /// Epoch number.
    pub epoch: u8,
    /// Next expected counter.
    pub next: u8,
    /// `CK_next`.
    pub ck: TermId,
    /// Ghost bookkeeping: `CK_0`, to name skipped message keys.
    pub ck0: TermId,
    /// Counters below `next` whose keys are kept as skipped keys (RX-2), as a bit mask.
    pub skipped: u16,
    /// The epoch's seeds.
    pub seeds: TermId,
    /// The epoch's routing tag (KDF-9).
    pub tag: TermId,
    /// The key that recognises a repeated header of this epoch (EPOCH-5): the peer's ratchet
    /// public key `E`, and for epoch 0 `EK_A` (X3DH-8 routes a repeated first message here).
    pub ratchet: TermId,
    /// EPOCH-5: closed at `pn` by the peer's next epoch. Its chain key is deleted; `next` is
    /// `pn`, and only the skipped keys of counters below it remain, so a late message still
    /// opens, a resent one is a duplicate, and a counter at or above `pn` never existed.
    pub closed: bool,
}

/// A pairwise session (one X3DH run).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Session {
    /// The user id of the peer, as the device believes.
    pub peer: Dev,
    /// Which X3DH run.
    pub slot: Slot,
    /// The device started it.
    pub initiator: bool,
    /// The peer was a verified contact when the session started (or was verified later).
    pub verified: bool,
    /// The peer's `IKs` (public).
    pub peer_iks: TermId,
    /// `RK` of the newest epoch.
    pub root: TermId,
    /// The device's newest ratchet secret, until the peer answers it (`E_A0` for the
    /// initiator's epoch 0, X3DH-7; `EK_A` itself is deleted once `SK` is derived).
    pub mine: Option<TermId>,
    /// The peer's newest ratchet public key (`E_A0` for epoch 0, from the identity box), which
    /// the next epoch turn answers (EPOCH-2).
    pub peer_ratchet: Option<TermId>,
    /// The newest epoch the device knows.
    pub newest: u8,
    /// The device's own newest epoch's sending chain. It stays after the peer answers with a
    /// newer epoch, for receipts, until the device's next content turns the epoch (EPOCH-2).
    pub send: Option<SendChain>,
    /// Receiving chains of the peer's epochs (at most LIM-6 in the protocol; the model keeps all).
    pub recv: Vec<RecvChain>,
    /// Ghost: the peer's keys used by the initiator were genuine.
    pub genuine: bool,
    /// Ghost: the first message used a one-time prekey.
    pub opk: bool,
    /// Ghost: `SK`, for the man-in-the-middle property.
    pub sk: TermId,
    /// Ghost: first epoch drawn by this device after it was compromised (post-compromise).
    pub heal: Option<u8>,
    /// Ghost: the device accepted something the attacker built in this session.
    pub tainted: bool,
}

/// A committed message in the device's store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stored {
    /// What it is.
    pub what: What,
    /// Claimed sender.
    pub from: Dev,
    /// The sender was a verified contact (or, for groups, a member vouched for by a verified admin).
    pub verified: bool,
    /// Session of a pairwise message (None for group messages).
    pub slot: Option<Slot>,
    /// Epoch (pairwise) or group epoch.
    pub epoch: u8,
    /// Counter, or sender index for group messages in the high nibble.
    pub n: u8,
    /// Message id (CHAIN-3), to send receipts again for duplicates.
    pub id: TermId,
    /// The envelope it came in: only the identical envelope is answered with its receipt again
    /// (RX-6; the implementation finds it by its bytes).
    pub env: TermId,
    /// Ghost: neither end was compromised when it was committed.
    pub honest: bool,
}

/// An outbox entry (RX-6).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Out {
    /// Recipient.
    pub to: Dev,
    /// What.
    pub what: What,
    /// The sealed envelope, resent byte for byte.
    pub env: TermId,
    /// Its message id.
    pub id: TermId,
    /// Published at least once.
    pub published: bool,
    /// Resends so far (RX-6 backs off; the model gives up after [`MAX_RESENDS`]).
    pub resends: u8,
}

/// Most fault windows a configuration may have.
pub const WINDOWS: usize = 12;

/// Resends of one message the model allows (the protocol backs off without limit).
pub const MAX_RESENDS: u8 = 2;

/// What the device holds between taking a packet and acknowledging it (RX-4).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Hold {
    /// Nothing in hand.
    Idle,
    /// Broken variant `ack-before-commit`: acknowledged, not committed yet.
    Acked(TermId),
}

/// A member of a group epoch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Member {
    /// User id.
    pub dev: Dev,
    /// `IKs` (public) from the signed membership.
    pub iks: TermId,
}

/// The previous group epoch, kept for late messages of remaining members (GRP-6).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PrevGroupEpoch {
    /// Group epoch.
    pub epoch: u8,
    /// Its routing tag.
    pub tag: TermId,
    /// (index, member, `CK_0`, received mask) of remaining members.
    pub chains: Vec<(u8, Member, TermId, u16)>,
}

/// A device's view of the group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupView {
    /// Group epoch (GRP-1).
    pub epoch: u8,
    /// Members; index 0 is the admin.
    pub members: Vec<Member>,
    /// `GMK`.
    pub gmk: TermId,
    /// Group seeds.
    pub seeds: TermId,
    /// Routing tag (KDF-12).
    pub tag: TermId,
    /// Next counter of the device's own chain.
    pub sent: u8,
    /// Received counters per member index, as bit masks.
    pub recv: Vec<u16>,
    /// The admin's `IKs` was verified by this device.
    pub verified_admin: bool,
    /// The previous epoch.
    pub prev: Option<PrevGroupEpoch>,
    /// GRP-12: the device, admin of this epoch, handed the role over; it makes no more
    /// membership changes.
    pub handed_over: bool,
    /// GRP-12: the handover that made the device admin, kept to send with every group key it
    /// issues (kind 9); `None` for the group's creator and for members.
    pub handover: Option<TermId>,
    /// Ghost: the admin of the epoch the device held when it took this one.
    pub accepted_under: Option<Dev>,
}

impl GroupView {
    /// Whether `d`, holding this view, administers the group: it is the first member and has
    /// not handed the role over (GRP-1, GRP-12).
    pub fn administered_by(&self, d: Dev) -> bool {
        !self.handed_over && self.members.first().is_some_and(|m| m.dev == d)
    }
}

/// Why a device that was in the group holds no group epoch (GRP-6, GRP-11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupExit {
    /// It left in this epoch (GRP-11): every group key is refused until a removal notice.
    Left(u8),
    /// It acted on a removal notice of this epoch (GRP-6): only a later group key (a new
    /// invitation) brings the group back.
    Removed(u8),
}

/// One honest device.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// Signed up (SIGNUP-1).
    pub signed_up: bool,
    /// Connected to the broker.
    pub online: bool,
    /// Contacts, ordered by peer.
    pub contacts: Vec<Contact>,
    /// Sessions, oldest first.
    pub sessions: Vec<Session>,
    /// Own one-time prekeys consumed, as a bit mask (KEY-4, X3DH-9).
    pub opk_used: u8,
    /// Directory handed out own one-time prekeys, as a bit mask.
    pub opk_given: u8,
    /// `EK_A` of accepted first messages (X3DH-8), sorted.
    pub replay_cache: Vec<TermId>,
    /// Committed messages.
    pub store: Vec<Stored>,
    /// Sent content messages awaiting a receipt.
    pub outbox: Vec<Out>,
    /// The packet in hand.
    pub hold: Hold,
    /// Envelopes kept for retry (RX-8), sorted.
    pub retry: Vec<TermId>,
    /// The group, if a member.
    pub group: Option<GroupView>,
    /// Why the device holds no group any more, until a group key brings it back.
    pub group_exit: Option<GroupExit>,
    /// Sessions this device initiated (next slot number).
    pub next_slot: u8,
    /// Key updates sent.
    pub key_updates: u8,
}

/// Ghost record of every content message an honest device sealed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Sent {
    /// What.
    pub what: What,
    /// Sender.
    pub from: Dev,
    /// Recipient (the user id the sender addressed).
    pub to: Dev,
    /// Session.
    pub slot: Slot,
    /// Epoch.
    pub epoch: u8,
    /// The sender's session used the recipient's genuine keys.
    pub genuine: bool,
    /// The recipient was a verified contact of the sender.
    pub verified: bool,
    /// The envelope.
    pub env: TermId,
    /// Committed by its recipient before the first compromise (forward secrecy applies).
    pub past: bool,
    /// Committed before the compromise but readable through the documented limit of X3DH
    /// without a one-time prekey (X3DH-9; see [`crate::attacker::fs_limit`]).
    pub fs_limit: bool,
    /// The recipient acknowledged a packet carrying it.
    pub acked: bool,
}

/// Ghost record of a group text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupSent {
    /// Which text.
    pub msg: u8,
    /// Sender.
    pub from: Dev,
    /// Group epoch it was sealed in.
    pub epoch: u8,
    /// Members of that epoch, as a bit mask of devices.
    pub members: u8,
    /// The envelope.
    pub env: TermId,
}

/// Ghost record of each group epoch an admin created.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupEpochRec {
    /// Group epoch.
    pub epoch: u8,
    /// The device that issued it.
    pub admin: Dev,
    /// Members, as a bit mask of devices.
    pub members: u8,
    /// `GMK` atom used.
    pub gmk: TermId,
    /// Seeds atom used.
    pub seeds: TermId,
}

/// Ghost record of a handover an admin sent (GRP-12).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HandoverRec {
    /// The group epoch it names, the new admin's first.
    pub epoch: u8,
    /// The admin that sent it.
    pub from: Dev,
    /// The member it names.
    pub to: Dev,
    /// The signed handover.
    pub proof: TermId,
}

/// Events of the last step, for `sometimes` properties.
pub mod flag {
    /// A forged bundle was rejected (CARD-4, KEY-5).
    pub const FORGED_REJECTED: u16 = 1;
    /// A duplicate was dropped (RX-2).
    pub const DUPLICATE_DROPPED: u16 = 1 << 1;
    /// A replayed first message reached a device and was not accepted (X3DH-8).
    pub const REPLAY_REJECTED: u16 = 1 << 2;
    /// Something was committed after a broker restart.
    pub const DELIVERED_AFTER_RESTART: u16 = 1 << 3;
    /// A member offline during a group change committed the new group key.
    pub const OFFLINE_CAUGHT_UP: u16 = 1 << 4;
    /// A resend happened (RX-6).
    pub const RESENT: u16 = 1 << 5;
    /// An envelope was kept for retry and later opened (RX-8).
    pub const RETRIED: u16 = 1 << 6;
    /// A device turned an epoch after it was compromised and the peer committed a message in it.
    pub const HEALED: u16 = 1 << 7;
    /// The admin removed a member on its leave (GRP-11).
    pub const LEAVE_REMOVED: u16 = 1 << 8;
    /// A member accepted the group key of a new admin (GRP-12).
    pub const HANDOVER_ACCEPTED: u16 = 1 << 9;
}

/// The whole model state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Position in the scenario.
    pub pc: u8,
    /// Devices, indexed by [`Dev::ix`].
    pub devices: Vec<Arc<Device>>,
    /// Broker queues, one per inbox.
    pub queues: Vec<Vec<Packet>>,
    /// What the server side knows.
    pub knowledge: Arc<Knowledge>,
    /// Attacker steps taken, per window of [`crate::scenario::Budgets::allow`]; zero again once
    /// the window is over.
    pub used: [u8; WINDOWS],
    /// The compromised device, if any.
    pub compromised: Option<Dev>,
    /// The device whose store was stolen, if any.
    pub stolen: Option<Dev>,
    /// Devices that were offline during a group change, as a bit mask.
    pub missed_group_change: u8,
    /// Ghost: content messages sealed by honest devices.
    pub log: Arc<Vec<Sent>>,
    /// Ghost: group texts.
    pub group_log: Vec<GroupSent>,
    /// Ghost: group epochs.
    pub group_epochs: Vec<GroupEpochRec>,
    /// Ghost: handovers sent (GRP-12).
    pub handovers: Vec<HandoverRec>,
    /// Ghost: each leave (GRP-11), as the leaver and the number of group epochs created before it.
    pub group_left: Vec<(Dev, u8)>,
    /// Ghost: restart happened.
    pub restarted: bool,
    /// Events of the step that led to this state, for `sometimes` properties. Not sticky: every
    /// step starts with none, so a state that differs from another only by an event long past is
    /// the same state (a sticky event doubled the state space behind it).
    pub flags: u16,
}

impl State {
    /// The device.
    pub fn dev(&self, d: Dev) -> &Device {
        &self.devices[d.ix()]
    }

    /// The device, mutably.
    pub fn dev_mut(&mut self, d: Dev) -> &mut Device {
        Arc::make_mut(&mut self.devices[d.ix()])
    }

    /// The ghost log, mutably.
    pub fn log_mut(&mut self) -> &mut Vec<Sent> {
        Arc::make_mut(&mut self.log)
    }

    /// The attacker's knowledge, mutably.
    pub fn knowledge_mut(&mut self) -> &mut Knowledge {
        Arc::make_mut(&mut self.knowledge)
    }

    /// Whether the device was compromised.
    pub fn is_compromised(&self, d: Dev) -> bool {
        self.compromised == Some(d)
    }
}

impl Device {
    /// A fresh device before signup.
    pub fn new() -> Device {
        Device {
            signed_up: false,
            online: true,
            contacts: Vec::new(),
            sessions: Vec::new(),
            opk_used: 0,
            opk_given: 0,
            replay_cache: Vec::new(),
            store: Vec::new(),
            outbox: Vec::new(),
            hold: Hold::Idle,
            retry: Vec::new(),
            group: None,
            group_exit: None,
            next_slot: 0,
            key_updates: 0,
        }
    }

    /// The contact filed under a user id.
    pub fn contact(&self, peer: Dev) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.peer == peer)
    }

    /// Files a contact, replacing an older entry for the same user id. The user's last decision
    /// about the contact (ghost) stays: only [`Device::decide_contact`] changes it.
    pub fn set_contact(&mut self, mut c: Contact) {
        if let Some(old) = self.contact(c.peer) {
            c.decided_iks = old.decided_iks;
            c.decided_verified = old.decided_verified;
        }
        self.decide_contact(c);
    }

    /// Files a contact by the user's decision (a card scanned, a first contact).
    pub fn decide_contact(&mut self, c: Contact) {
        self.contacts.retain(|x| x.peer != c.peer);
        self.contacts.push(c);
        self.contacts.sort_by_key(|c| c.peer);
    }

    /// The session used for sending to a peer: the newest (RX-10).
    pub fn sending_session(&self, peer: Dev) -> Option<usize> {
        self.sessions.iter().rposition(|s| s.peer == peer)
    }

    /// Whether a message was committed.
    pub fn has_committed(&self, what: What) -> bool {
        self.store.iter().any(|s| s.what == what)
    }

    /// Whether a message from a given sender was committed.
    pub fn has_committed_from(&self, what: What, from: Dev) -> bool {
        self.store.iter().any(|s| s.what == what && s.from == from)
    }
}

impl Default for Device {
    fn default() -> Self {
        Self::new()
    }
}
