//! Key changes people can act on (RX-9) and blocked user ids (RX-11): a contact's identity beside
//! the one the directory holds ([`IdentityCheck`]), the first messages held because they claim
//! another identity for a contact ([`HeldIdentityClaim`]), and what the person decides about each.
//!
//! ```text
//!   first message, known user id, other IKs --core--> Verdict::Hold  (kept with the parked envelopes)
//!   identity_claims()        the held claims, with both safety numbers, to show the person
//!   accept_identity_claim()  the claimed identity becomes the contact's (unverified); the held
//!                            messages open and are committed like any burst
//!   reject_identity_claim()  the held messages are dropped
//! ```
//!
//! Every decision is the core's ([`sotto_core::Device::identity_claim`],
//! [`sotto_core::Device::accept_identity_claim`], [`sotto_core::Device::block`]); this shell
//! reads the held envelopes from the store and commits.

use sotto_core::keys::PreKeyBundle;
use sotto_core::{IdentityClaim, Trust, UserId};

use crate::account::Client;
use crate::error::{ClientError, Result};
use crate::events::ClientEvent;

/// A contact's identity as this device knows it and as the directory holds it
/// ([`Client::directory_identity`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityCheck {
    /// The contact.
    pub user: UserId,
    /// Whether the directory holds another identity than this device knows.
    pub changed: bool,
    /// The safety number with the identity this device knows (SAFE-1).
    pub known_safety_number: String,
    /// The safety number with the identity the directory holds.
    pub directory_safety_number: String,
    /// The bundle the directory gave, which [`Client::accept_checked_identity`] takes.
    bundle: PreKeyBundle,
}

/// First messages that claim another identity for a contact (RX-9), held until the person
/// decides ([`Client::identity_claims`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldIdentityClaim {
    /// The contact.
    pub user: UserId,
    /// Whether the identity this device holds was verified: a verified identity that changes is
    /// the case to compare in person.
    pub was_verified: bool,
    /// The safety number with the identity this device holds (SAFE-1).
    pub known_safety_number: String,
    /// The safety number with the identity the messages claim: the one the person's new device
    /// shows, if it is theirs.
    pub claimed_safety_number: String,
    /// How many held first messages make this claim.
    pub messages: usize,
    /// When the first of them was held, ms (service time).
    pub held_since: u64,
    claim: IdentityClaim,
}

impl Client {
    // ------------------------------------------------------------------ directory (CARD-4, RX-9)

    /// What the directory holds of a contact's identity beside what this device knows (RX-9):
    /// both safety numbers, and whether they differ. A changed identity is either the person's
    /// new device or someone in between (the directory is not trusted, L6): the people compare
    /// the new safety number before [`Client::accept_checked_identity`].
    pub async fn directory_identity(&mut self, user: &UserId) -> Result<IdentityCheck> {
        let known = self.device.safety_number(user)?;
        let bundle = self.fetch_bundle(user).await?;
        let directory = self.device.safety_number_with(user, bundle.identity());
        Ok(IdentityCheck {
            user: *user,
            changed: directory != known,
            known_safety_number: known.grouped(),
            directory_safety_number: directory.grouped(),
            bundle,
        })
    }

    /// Accepts a changed identity from the directory: the contact becomes unverified and its old
    /// sessions are dropped (RX-9).
    pub async fn accept_new_identity(&mut self, user: &UserId) -> Result<()> {
        let bundle = self.fetch_bundle(user).await?;
        self.replace_contact(bundle)
    }

    /// Accepts exactly the identity `check` showed (its safety number is the one the people
    /// compared), without asking the directory again.
    pub fn accept_checked_identity(&mut self, check: &IdentityCheck) -> Result<()> {
        self.replace_contact(check.bundle)
    }

    fn replace_contact(&mut self, bundle: PreKeyBundle) -> Result<()> {
        self.mutate(
            |d, _, _| {
                d.replace_contact(&bundle);
                Ok(())
            },
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )
    }

    // ------------------------------------------------------------------ held first messages (RX-9)

    /// The identity claims of the held first messages, one per contact and claimed identity,
    /// oldest first. A message that no longer claims anything (its contact was removed, or the
    /// claim was accepted meanwhile) is not listed; the next receive opens or drops it.
    pub fn identity_claims(&self) -> Result<Vec<HeldIdentityClaim>> {
        let now = self.now();
        let mut out: Vec<HeldIdentityClaim> = Vec::new();
        for parked in self.store.parked()? {
            let Ok(Some(claim)) = self.device.identity_claim(now, &parked.envelope) else {
                continue;
            };
            if let Some(held) = out.iter_mut().find(|h| h.claim == claim) {
                held.messages += 1;
                continue;
            }
            out.push(HeldIdentityClaim {
                user: claim.user,
                was_verified: claim.known_trust == Trust::Verified,
                known_safety_number: self
                    .device
                    .safety_number_with(&claim.user, &claim.known)
                    .grouped(),
                claimed_safety_number: self
                    .device
                    .safety_number_with(&claim.user, &claim.claimed)
                    .grouped(),
                messages: 1,
                held_since: parked.parked_at,
                claim,
            });
        }
        Ok(out)
    }

    /// The person accepts the identity `claim` shows, after comparing its safety number: it
    /// becomes the contact's (unverified until [`Client::verify`]), and the held messages open
    /// and are committed. Returns what they brought (the messages, a new contact session).
    pub fn accept_identity_claim(&mut self, claim: &HeldIdentityClaim) -> Result<Vec<ClientEvent>> {
        self.mutate(
            |d, _, _| Ok(d.accept_identity_claim(&claim.claim)?),
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )?;
        let mut events = Vec::new();
        self.retry_parked(&mut events)?;
        Ok(events)
    }

    /// The person refuses the identity `claim` shows: the held messages that make it are dropped
    /// (the contact keeps the identity it has). Returns how many were dropped.
    pub fn reject_identity_claim(&mut self, claim: &HeldIdentityClaim) -> Result<usize> {
        let now = self.now();
        let mut dropped = 0;
        for parked in self.store.parked()? {
            if let Ok(Some(c)) = self.device.identity_claim(now, &parked.envelope) {
                if c == claim.claim && self.store.unpark(parked.id)? {
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    // ------------------------------------------------------------------ blocked user ids (RX-11)

    /// Blocks `user`: nothing from it opens any more (no receipt goes back, so it sees its
    /// messages as not delivered) and nothing is sent to it ([`ClientError::Protocol`] with the code
    /// `blocked`). Messages already received stay; delete them with
    /// [`Client::delete_conversation`] if wanted.
    pub fn block(&mut self, user: &UserId) -> Result<()> {
        if *user == self.user_id() {
            return Err(ClientError::Invalid("one cannot block oneself"));
        }
        self.mutate(
            |d, _, _| {
                d.block(user);
                Ok(())
            },
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )
    }

    /// Lifts a block. Returns whether `user` was blocked.
    pub fn unblock(&mut self, user: &UserId) -> Result<bool> {
        self.mutate(
            |d, _, _| Ok(d.unblock(user)),
            |s, d, _, now| Ok(s.commit_device(d, now, &[])?),
        )
    }

    /// Whether `user` is blocked.
    pub fn is_blocked(&self, user: &UserId) -> bool {
        self.device.is_blocked(user)
    }

    /// Every blocked user id.
    pub fn blocked(&self) -> Vec<UserId> {
        self.device.blocked().copied().collect()
    }
}
