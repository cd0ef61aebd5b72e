//! The device engine: everything one device knows, driven by `send` and `receive` (sans-IO).
//! One file per concept:
//!
//! | file | owns |
//! |---|---|
//! | `output.rs` | what a step hands the shell: [`Outgoing`], [`Incoming`], [`Event`] |
//! | `prekeys.rs` | the signed prekeys, the one-time prekeys, the bundle and the signup request (KEY-3..KEY-5, SIGNUP-1) |
//! | `contacts.rs` | contacts and their [`Trust`] (CARD-4, RX-9, SAFE-1) |
//! | `messages.rs` | pairwise sessions: sending, receiving, the routing-tag index, first messages with the replay cache (X3DH-6..X3DH-9, RX-1..RX-10) |
//! | `groups.rs` | groups and the control messages that change them (GRP-*) |
//! | `inbound.rs` | a burst of received envelopes: each one's [`Verdict`], the receipts and group acks owed for all ([`Inbound`], [`Reply`]) |
//! | `persist.rs` | the whole state as bytes ([`Device::export`], [`Device::import`]) and as records with the change set of a step ([`Device::changes`], [`Device::from_records`]) |
//!
//!
//! It ties the pieces together: contacts and their trust (CARD-4, RX-9), the prekeys and the replay
//! cache for first messages (X3DH-6..X3DH-9), sessions found by routing tag (RX-1), simultaneous
//! initiation (RX-10), duplicate suppression (RX-7), and groups (GRP-*).
//!
//! Contract with the shell: [`Device::receive`] returns `Err` only when nothing changed, so the shell
//! can drop (or, if [`crate::Error::is_retryable`], park) the envelope; on `Ok` the shell commits the
//! message and the device state in one transaction and then acknowledges the PUBLISH (RX-4). Problems
//! with a message's *content* found after its keys were consumed come back as [`Event::Rejected`].

mod contacts;
mod groups;
mod inbound;
mod messages;
mod output;
mod persist;
mod prekeys;
#[cfg(feature = "test-utils")]
mod secrets;

use std::collections::{BTreeMap, VecDeque};

use crate::card::ContactCard;
use crate::crypto::CryptoRng;
use crate::dedup::DeliveredIds;
use crate::error::{Result, SessionError};
use crate::group::Group;
use crate::ids::{GroupId, UserId};
use crate::keys::{Identity, OneTimePreKeyPair, PublicIdentity, SignedPreKeyPair};
use crate::records::Tracked;
use crate::replay::ReplayCache;
use crate::session::Session;

use contacts::Contact;
pub use contacts::{IdentityClaim, Trust};
pub use inbound::{Inbound, Reply, Verdict};
pub use output::{Event, Incoming, Outgoing};
#[cfg(feature = "test-utils")]
pub use secrets::{HeldSecret, SecretClass};

/// One device's protocol state.
#[derive(Clone, Debug)]
pub struct Device {
    user_id: UserId,
    identity: Identity,
    spks: VecDeque<SignedPreKeyPair>,
    opks: Tracked<u32, OneTimePreKeyPair>,
    next_opk_id: u32,
    contacts: Tracked<UserId, Contact>,
    sessions: Tracked<u64, Session>,
    next_session: u64,
    replay: ReplayCache,
    tags: BTreeMap<[u8; 8], u64>,
    groups: Tracked<GroupId, Group>,
    group_tags: BTreeMap<[u8; 8], GroupId>,
    left_groups: Tracked<GroupId, u32>,
    /// User ids the person blocked (RX-11).
    blocked: Tracked<UserId, contacts::Blocked>,
    /// Per group, the handover this device made (its role ends when the new admin's key arrives)
    /// or received (it takes over, then sends every group key with it) (GRP-12).
    handovers: Tracked<GroupId, crate::group::handover::Handover>,
    /// Groups this device left whose removal notice has not come yet, with the epoch it left at
    /// (GRP-11).
    leaving: Tracked<GroupId, u32>,
    delivered: DeliveredIds,
    bucket: usize,
    /// SHA-256 of the [`RecordKind::Meta`](crate::records::RecordKind::Meta) record last
    /// committed (`None`: never), so a change set carries it only when it changed.
    meta_committed: Option<[u8; 32]>,
    /// Old records to delete: those of sessions and groups read from a store written before
    /// their skipped keys became records of their own (written anew by the next change set).
    legacy: Vec<crate::records::RecordId>,
}

impl Device {
    /// A new device with a fresh identity and signed prekey 1, for the user id the membership service
    /// assigned.
    pub fn new(rng: &mut impl CryptoRng, user_id: UserId) -> Self {
        let identity = Identity::generate(rng);
        let spk = identity.new_signed_prekey(rng, 1);
        Device::from_keys(user_id, identity, spk)
    }

    /// A device from existing keys (restored state, vectors).
    pub fn from_keys(user_id: UserId, identity: Identity, spk: SignedPreKeyPair) -> Self {
        Device {
            user_id,
            identity,
            spks: VecDeque::from([spk]),
            opks: Tracked::default(),
            next_opk_id: 1,
            contacts: Tracked::default(),
            sessions: Tracked::default(),
            next_session: 1,
            replay: ReplayCache::default(),
            tags: BTreeMap::new(),
            groups: Tracked::default(),
            group_tags: BTreeMap::new(),
            left_groups: Tracked::default(),
            blocked: Tracked::default(),
            handovers: Tracked::default(),
            leaving: Tracked::default(),
            delivered: DeliveredIds::default(),
            bucket: 0,
            meta_committed: None,
            legacy: Vec::new(),
        }
    }

    /// Pads every inner plaintext to a multiple of `bucket` bytes (IN-4); 0 or 1 turns padding off.
    pub fn set_padding(&mut self, bucket: usize) {
        self.bucket = bucket;
    }

    /// This device's user id.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// This device's public identity (the keys its contacts know it by).
    pub fn public_identity(&self) -> &PublicIdentity {
        self.identity.public()
    }

    /// The identity key's signature over a certificate renewal's signed part, under its own
    /// context ([`crate::kdf::SIG_RENEW`]; the membership API lays the part out): what lets a
    /// device renew its certificate while the identity key stays in the core.
    pub fn sign_renewal(&self, signed_part: &[u8]) -> [u8; 64] {
        self.identity
            .signing()
            .sign(crate::kdf::SIG_RENEW, &[signed_part])
    }

    /// This device's identity, private keys included. For conformance runs and tests only
    /// (feature `test-utils`): the keys never leave the core otherwise.
    #[cfg(feature = "test-utils")]
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Checks the routing indexes against the state they are derived from: every routing tag
    /// names a session (or group) the device holds and is one of that session's (group's) tags,
    /// and every tag of every session and group is indexed. `Err` names the first difference. For
    /// tests (feature `test-utils`): a stale entry routes nothing, so only this sees it.
    #[cfg(feature = "test-utils")]
    pub fn check_routing_index(&self) -> core::result::Result<(), String> {
        let mut sessions = BTreeMap::new();
        for (sid, s) in self.sessions.iter() {
            for tag in s.routing_tags() {
                sessions.insert(tag, *sid);
            }
        }
        if sessions != self.tags {
            return Err(format!(
                "session tags: index {:?}, sessions {:?}",
                self.tags.values().collect::<Vec<_>>(),
                sessions.values().collect::<Vec<_>>()
            ));
        }
        let mut groups = BTreeMap::new();
        for (gid, g) in self.groups.iter() {
            for tag in g.tags() {
                groups.insert(tag, *gid);
            }
        }
        if groups != self.group_tags {
            return Err(format!(
                "group tags: index {} entries, groups {}",
                self.group_tags.len(),
                groups.len()
            ));
        }
        Ok(())
    }

    fn current_spk(&self) -> Result<&SignedPreKeyPair> {
        self.spks
            .back()
            .ok_or_else(|| SessionError::UnknownSignedPrekey.into())
    }

    /// The contact card to show (CARD-2).
    pub fn card(&self) -> Result<ContactCard> {
        Ok(ContactCard::new(
            self.user_id,
            *self.identity.public(),
            *self.current_spk()?.public(),
        ))
    }
}
