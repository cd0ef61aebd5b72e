//! The device's contacts: who it knows, by which identity, and how far that identity is trusted
//! (CARD-4): a card scanned in person is verified, the directory and a first message are not. A
//! changed identity is never accepted silently (RX-9); safety numbers verify (SAFE-1).

use crate::card::{ContactCard, SafetyNumber};
use crate::error::{MisuseError, Result, SessionError};
use crate::ids::UserId;
#[cfg(feature = "test-utils")]
use crate::inner::Content;
use crate::keys::{PreKeyBundle, PublicIdentity};
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
        if let Some(old) = self.contacts.remove(&user) {
            for sid in old.sessions {
                self.drop_session(sid);
            }
        }
        self.contacts.insert(
            user,
            Contact {
                identity: *bundle.identity(),
                trust,
                bundle: Some(bundle),
                sessions: Vec::new(),
                sending: None,
            },
        );
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
