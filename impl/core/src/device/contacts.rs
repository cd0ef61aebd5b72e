//! The device's contacts: who it knows, by which identity, and how far that identity is trusted
//! (CARD-4): a card scanned in person is verified, the directory and a first message are not. A
//! changed identity is never accepted silently (RX-9): a first message that claims one is held
//! as an [`IdentityClaim`] until the person accepts it; safety numbers verify (SAFE-1); blocked
//! user ids (RX-11).

use crate::card::{ContactCard, SafetyNumber};
use crate::envelope::{Envelope, Header};
use crate::error::{MisuseError, Result, SessionError};
use crate::ids::UserId;
#[cfg(feature = "test-utils")]
use crate::inner::Content;
use crate::keys::{PreKeyBundle, PublicIdentity};
use crate::replay::Seen;
use crate::session::{Session, SessionSummary};

use super::Device;

/// How far a contact's identity is trusted (CARD-4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Trust {
    /// Scanned in person or compared safety numbers.
    Verified,
    /// From the directory or a first message: trust on first use.
    Unverified,
}

/// A first message's claim that a known contact has another identity (RX-9), held until the
/// person decides ([`Device::identity_claim`], [`Device::accept_identity_claim`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IdentityClaim {
    /// The contact.
    pub user: UserId,
    /// The identity the device holds for it.
    pub known: PublicIdentity,
    /// How far the held identity was trusted: a verified one changing is the case to worry about.
    pub known_trust: Trust,
    /// The identity the first message carries.
    pub claimed: PublicIdentity,
}

/// The value of a blocked user id's record (RX-11; the key is the user id): one byte, 1.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Blocked;

impl crate::persist::Persist for Blocked {
    fn write(&self, w: &mut crate::codec::Writer) {
        w.u8(1);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        match r.u8()? {
            1 => Ok(Blocked),
            _ => Err(crate::error::DecodeError::LengthOutOfRange.into()),
        }
    }
}

/// A contact: its identity, trust, the bundle to start a session from, its sessions.
#[derive(Clone, Debug)]
pub(super) struct Contact {
    pub(super) identity: PublicIdentity,
    pub(super) trust: Trust,
    pub(super) bundle: Option<PreKeyBundle>,
    pub(super) sessions: Vec<u64>,
    pub(super) sending: Option<u64>,
}

impl Device {
    /// Adds a contact from a card scanned in person: verified (CARD-4). Scanning is the explicit act
    /// that may also replace a changed identity.
    pub fn add_contact_from_card(&mut self, card: &ContactCard) {
        self.set_contact(card.bundle(), Trust::Verified, true);
    }

    /// Adds a contact from a directory bundle: unverified (CARD-4). A known user id with a different
    /// identity is `identity_changed` (RX-9); use [`Device::replace_contact`] to accept it.
    pub fn add_contact_from_bundle(&mut self, bundle: &PreKeyBundle) -> Result<()> {
        if let Some(c) = self.contacts.get(bundle.user_id()) {
            if c.identity.iks() != bundle.identity().iks() {
                return Err(SessionError::IdentityChanged.into());
            }
        }
        self.set_contact(*bundle, Trust::Unverified, false);
        Ok(())
    }

    /// Accepts a changed identity from the directory: the contact becomes unverified and its old
    /// sessions are dropped (RX-9).
    pub fn replace_contact(&mut self, bundle: &PreKeyBundle) {
        self.set_contact(*bundle, Trust::Unverified, true);
    }

    fn set_contact(&mut self, bundle: PreKeyBundle, trust: Trust, replace: bool) {
        let user = *bundle.user_id();
        let same = self
            .contacts
            .get(&user)
            .is_some_and(|c| c.identity.iks() == bundle.identity().iks());
        if same {
            if let Some(c) = self.contacts.get_mut(&user) {
                c.bundle = Some(bundle);
                if trust == Trust::Verified {
                    c.trust = Trust::Verified;
                }
            }
            return;
        }
        if !replace && self.contacts.contains_key(&user) {
            return;
        }
        self.install_identity(user, *bundle.identity(), Some(bundle), trust);
    }

    /// Makes `identity` the contact's, dropping every session under the identity it replaces.
    fn install_identity(
        &mut self,
        user: UserId,
        identity: PublicIdentity,
        bundle: Option<PreKeyBundle>,
        trust: Trust,
    ) {
        if let Some(old) = self.contacts.remove(&user) {
            for sid in old.sessions {
                self.drop_session(sid);
            }
        }
        self.contacts.insert(
            user,
            Contact {
                identity,
                trust,
                bundle,
                sessions: Vec::new(),
                sending: None,
            },
        );
    }

    /// What a first message refused with `identity_changed` claims (RX-9): the contact, the
    /// identity the device holds and the one the message carries, for the person to decide on.
    /// `None` if the bytes are not such a first message (any other first message, or one that
    /// fails to open). Changes nothing.
    pub fn identity_claim(&self, now: u64, bytes: &[u8]) -> Result<Option<IdentityClaim>> {
        let env = Envelope::decode(bytes)?;
        let Header::First { ek, spk_id, .. } = env.header() else {
            return Ok(None);
        };
        if let Seen::Session(_) = self.replay.check(*spk_id, ek) {
            return Ok(None);
        }
        let (spk, opk) = self.first_message_keys(&env)?;
        let (session, _) = Session::accept_first(now, &self.identity, spk, opk, &env)?;
        let user = *session.peer_user();
        let claimed = *session.peer_identity();
        Ok(self.contacts.get(&user).and_then(|c| {
            (c.identity.iks() != claimed.iks()).then_some(IdentityClaim {
                user,
                known: c.identity,
                known_trust: c.trust,
                claimed,
            })
        }))
    }

    /// The person accepts the identity a first message claimed ([`Device::identity_claim`],
    /// RX-9): it becomes the contact's, unverified, and the sessions under the old one are
    /// dropped; the held first message then opens. A claim about an identity the device no
    /// longer holds for the contact is `identity_changed` (look again); accepting a claim twice
    /// changes nothing.
    pub fn accept_identity_claim(&mut self, claim: &IdentityClaim) -> Result<()> {
        let c = self
            .contacts
            .get(&claim.user)
            .ok_or(MisuseError::UnknownPeer)?;
        if c.identity == claim.claimed {
            return Ok(());
        }
        if c.identity != claim.known {
            return Err(SessionError::IdentityChanged.into());
        }
        self.install_identity(claim.user, claim.claimed, None, Trust::Unverified);
        Ok(())
    }

    /// The safety number this device would have with `user` under `identity` (SAFE-1): how a
    /// person compares the new identity of an [`IdentityClaim`] before accepting it.
    pub fn safety_number_with(&self, user: &UserId, identity: &PublicIdentity) -> SafetyNumber {
        SafetyNumber::compute(
            (&self.user_id, self.identity.public().iks()),
            (user, identity.iks()),
        )
    }

    /// Blocks `user` (RX-11): from now on nothing from it opens (pairwise, first or group
    /// messages: `blocked`, before any state changes, so no receipt goes back) and nothing is
    /// sent to it. A local decision: the contact, its sessions and groups stay.
    pub fn block(&mut self, user: &UserId) {
        self.blocked.insert(*user, Blocked);
    }

    /// Lifts a block (RX-11). Returns whether `user` was blocked.
    pub fn unblock(&mut self, user: &UserId) -> bool {
        self.blocked.remove(user).is_some()
    }

    /// Whether `user` is blocked (RX-11).
    pub fn is_blocked(&self, user: &UserId) -> bool {
        self.blocked.contains_key(user)
    }

    /// Every blocked user id.
    pub fn blocked(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.blocked.keys()
    }

    /// `blocked` if `user` is blocked (RX-11).
    pub(super) fn refuse_blocked(&self, user: &UserId) -> Result<()> {
        if self.is_blocked(user) {
            return Err(SessionError::Blocked.into());
        }
        Ok(())
    }

    /// Forgets a contact: its identity, trust, bundle and every session with it (their keys go
    /// with the next commit). A later first message under that user id makes a new, unverified
    /// contact (RX-9); group memberships are the groups' own and stay.
    pub fn remove_contact(&mut self, user: &UserId) -> Result<()> {
        let old = self.contacts.remove(user).ok_or(MisuseError::UnknownPeer)?;
        for sid in old.sessions {
            self.drop_session(sid);
        }
        Ok(())
    }

    /// Marks a contact verified after the people compared safety numbers (SAFE-1).
    pub fn mark_verified(&mut self, user: &UserId) -> Result<()> {
        let c = self
            .contacts
            .get_mut(user)
            .ok_or(MisuseError::UnknownPeer)?;
        c.trust = Trust::Verified;
        Ok(())
    }

    /// A contact's trust and identity.
    pub fn contact(&self, user: &UserId) -> Option<(Trust, &PublicIdentity)> {
        self.contacts.get(user).map(|c| (c.trust, &c.identity))
    }

    /// All contacts' user ids.
    pub fn contacts(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.contacts.keys()
    }

    /// The safety number with a contact (SAFE-1).
    pub fn safety_number(&self, user: &UserId) -> Result<SafetyNumber> {
        let c = self.contacts.get(user).ok_or(MisuseError::UnknownPeer)?;
        Ok(SafetyNumber::compute(
            (&self.user_id, self.identity.public().iks()),
            (user, c.identity.iks()),
        ))
    }
    /// The shape of the sending session with a contact.
    pub fn session_summary(&self, user: &UserId) -> Option<SessionSummary> {
        let sid = self.contacts.get(user)?.sending?;
        self.sessions.get(&sid).map(Session::summary)
    }

    /// Every session, oldest first, with its peer and shape (nothing secret). For conformance
    /// runs and tests (feature `test-utils`).
    #[cfg(feature = "test-utils")]
    pub fn sessions_overview(&self) -> Vec<(UserId, SessionSummary)> {
        self.sessions
            .values()
            .map(|s| (*s.peer_user(), s.summary()))
            .collect()
    }

    /// A data message claiming to come from `peer`, built from this device's own state on its
    /// newest session with `peer` (see [`Session::forge_as_peer`]): what an attacker holding a
    /// leaked copy of this state can send this device. For the conformance replay only (feature
    /// `test-utils`).
    #[cfg(feature = "test-utils")]
    pub fn forge_data_as(&self, peer: &UserId, now: u64, content: &Content) -> Result<Vec<u8>> {
        let sid = self
            .contacts
            .get(peer)
            .and_then(|c| c.sessions.last().copied())
            .ok_or(MisuseError::UnknownPeer)?;
        let session = self.sessions.get(&sid).ok_or(MisuseError::UnknownPeer)?;
        session.forge_as_peer(now, content, self.bucket)
    }
}
