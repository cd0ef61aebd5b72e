//! A burst of received envelopes (RX-4..RX-8, GRP-9..GRP-12): what the shell does with each one
//! ([`Verdict`]) and what the device owes for all of them ([`Reply`]): the receipts, coalesced into
//! as few receipt messages as LIM-10 allows, the group acks, the new epoch of a group whose admin
//! role it received (GRP-12) and the removal of members that left (GRP-11), sealed once the burst
//! is open.
//!
//! ```text
//!   let mut burst = Inbound::new(now);
//!   for each envelope:  device.receive_into(&mut burst, bytes) -> Verdict
//!                         Opened  -> commit it with the burst
//!                         Duplicate -> if the store remembers it: burst.receipt_again(..) (RX-6)
//!                         Park    -> keep it for a retry (RX-8)     Refused -> drop it
//!                         Hold    -> keep it until the person decides on a changed identity (RX-9)
//!   let reply = burst.finish(&mut device, rng)   receipts, group acks and group changes to send
//!   store: device.changes() + the opened messages + reply.owed, one transaction; then ack all
//! ```
//!
//! The shell decides nothing here: it moves the bytes, commits, and acknowledges after the commit.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::CryptoRng;
use crate::error::{Error, MisuseError, SessionError};
use crate::ids::{GroupId, MessageId, UserId};
use crate::inner::Content;
use crate::limits::MAX_RECEIPT_IDS;

use super::{Device, Event, IdentityClaim, Incoming, Outgoing};

/// What the shell does with one received envelope.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// Opened: commit it with the burst, then acknowledge it (RX-4).
    Opened(Box<Incoming>),
    /// Opened before (its keys are used up): nothing changed. If the store remembers the
    /// envelope, give it to [`Inbound::receipt_again`] so its receipt goes out again (RX-6).
    Duplicate,
    /// Not openable yet (unknown routing tag or group): keep it and retry it when a step brings
    /// new keys (RX-8). Nothing changed.
    Park(Error),
    /// A first message from a contact under another identity (RX-9): nothing changed. Keep it
    /// (with the parked envelopes, RX-8) until the person decides: after
    /// [`Device::accept_identity_claim`] it opens; if they refuse, drop it.
    Hold(Box<IdentityClaim>),
    /// Refused for good: nothing changed; acknowledge and drop it.
    Refused(Error),
}

/// Receipts and acks a burst owes, sealed by [`Inbound::finish`].
#[derive(Clone, Debug, Default)]
pub struct Inbound {
    now: u64,
    /// Pairwise receipts owed to each sender (RX-5).
    pairwise: BTreeMap<UserId, Vec<MessageId>>,
    /// Group receipts owed to each group, with each message's sender (GRP-10).
    group: BTreeMap<GroupId, Vec<(MessageId, UserId)>>,
    /// Groups whose new epoch this device must confirm to the admin (GRP-9).
    acks: BTreeSet<GroupId>,
    /// Groups whose admin role this device received (GRP-12).
    takeovers: BTreeSet<GroupId>,
    /// Members that left a group this device administers (GRP-11).
    leaves: Vec<(GroupId, UserId)>,
    new_keys: bool,
}

/// What a burst owes, sealed: publish `owed` once the burst is committed.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// Receipts (each naming up to LIM-10 messages) and group acks, to commit into the outbox
    /// with the burst; sent once each (a lost receipt is answered by the sender's resend, RX-6).
    pub owed: Vec<Outgoing>,
    /// The group keys and removal notices of the group changes the burst made (the removal of a
    /// member that left, GRP-11; the first epoch of a new admin, GRP-12): commit them into the
    /// outbox with the burst and resend them until a receipt names them (RX-6), as the admin's
    /// own changes are.
    pub group_changes: Vec<Outgoing>,
    /// What could not be sealed (the shell logs it; the senders' resends ask again).
    pub failed: Vec<Error>,
    /// Groups this device took over as admin, with the epoch it issued (GRP-12). A handover that
    /// waits for a member's session is not here: see [`Device::pending_takeovers`].
    pub took_over: Vec<(GroupId, u32)>,
}

impl Inbound {
    /// An empty burst received at `now` (server-corrected ms).
    pub fn new(now: u64) -> Self {
        Inbound {
            now,
            ..Inbound::default()
        }
    }

    /// The time the burst is received at.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Whether an envelope of the burst brought keys (a new session, epoch or group epoch) that
    /// may open parked envelopes (RX-8).
    pub fn new_keys(&self) -> bool {
        self.new_keys
    }

    /// Whether the burst owes nothing yet.
    pub fn owes_nothing(&self) -> bool {
        self.pairwise.is_empty()
            && self.group.is_empty()
            && self.acks.is_empty()
            && self.takeovers.is_empty()
            && self.leaves.is_empty()
    }

    /// Owes the receipt of message `id` from `from` again (RX-6: a resend of an envelope already
    /// committed, which the store remembers), to `group` for a group message.
    pub fn receipt_again(&mut self, id: MessageId, from: UserId, group: Option<GroupId>) {
        self.owe_receipt(id, from, group);
    }

    /// Owes a receipt for `id`, once however often the burst holds the message.
    fn owe_receipt(&mut self, id: MessageId, from: UserId, group: Option<GroupId>) {
        match group {
            Some(g) => {
                let owed = self.group.entry(g).or_default();
                if !owed.contains(&(id, from)) {
                    owed.push((id, from));
                }
            }
            None => {
                let owed = self.pairwise.entry(from).or_default();
                if !owed.contains(&id) {
                    owed.push(id);
                }
            }
        }
    }

    fn note(&mut self, incoming: &Incoming) {
        self.new_keys |= incoming.new_keys;
        if incoming.content.wants_receipt() {
            self.owe_receipt(incoming.id, incoming.from, incoming.group);
        }
        for ev in &incoming.events {
            match ev {
                Event::GroupKey { group, .. } => {
                    self.acks.insert(*group);
                }
                Event::HandoverReceived { group, .. } => {
                    self.takeovers.insert(*group);
                }
                Event::MemberLeft { group, user } if !self.leaves.contains(&(*group, *user)) => {
                    self.leaves.push((*group, *user));
                }
                _ => {}
            }
        }
    }

    /// Seals what the burst owes: one receipt per sender (per group for group messages, GRP-10)
    /// for up to LIM-10 ids each, the new epoch of each group whose admin role the burst brought
    /// (GRP-12), the removal of each member that left (GRP-11), then one group ack per group with a
    /// new epoch (GRP-9). A group receipt that cannot go to the group (no other member left, or the
    /// group is gone) goes pairwise to each sender instead.
    pub fn finish(self, device: &mut Device, rng: &mut impl CryptoRng) -> Reply {
        let now = self.now;
        let mut reply = Reply::default();
        let mut pairwise = self.pairwise;
        for (gid, owed) in self.group {
            for chunk in owed.chunks(MAX_RECEIPT_IDS) {
                let ids: Vec<MessageId> = chunk.iter().map(|(id, _)| *id).collect();
                match device.send_group(now, &gid, &Content::Receipt(ids)) {
                    Ok(out) if !out.to.is_empty() => reply.owed.push(out),
                    Ok(_) | Err(_) => {
                        for (id, from) in chunk {
                            pairwise.entry(*from).or_default().push(*id);
                        }
                    }
                }
            }
        }
        for (to, ids) in pairwise {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                match device.send(rng, now, &to, &Content::Receipt(chunk.to_vec())) {
                    Ok(out) => reply.owed.push(out),
                    Err(e) => reply.failed.push(e),
                }
            }
        }
        // A handover, or the key of the epoch before a handover that came first, lets the device
        // take the group over.
        let takeovers: BTreeSet<GroupId> = self
            .takeovers
            .iter()
            .chain(&self.acks)
            .filter(|g| device.may_take_over(g))
            .copied()
            .collect();
        for gid in takeovers {
            match device.take_over_group(rng, now, &gid) {
                Ok(out) => {
                    reply.group_changes.extend(out);
                    if let Some((epoch, _)) = device.group_members(&gid) {
                        reply.took_over.push((gid, epoch));
                    }
                }
                // A member without a session: the shell fetches its bundle and completes it.
                Err(e) if e == MisuseError::UnknownPeer.into() => {}
                Err(e) => reply.failed.push(e),
            }
        }
        for (gid, user) in self.leaves {
            match device.remove_from_group(rng, now, &gid, &user) {
                Ok(out) => reply.group_changes.extend(out),
                Err(e) => reply.failed.push(e),
            }
        }
        for gid in self.acks {
            // A group this burst made this device the admin of owes no ack to itself.
            if reply.took_over.iter().any(|(g, _)| *g == gid) {
                continue;
            }
            match device.group_ack(rng, now, &gid) {
                Ok(out) => reply.owed.push(out),
                Err(e) => reply.failed.push(e),
            }
        }
        reply
    }
}

impl Device {
    /// Opens one envelope of `burst` ([`Device::receive`] at the burst's time) and says what the
    /// shell does with it; an opened message's receipt and group ack are owed by the burst.
    pub fn receive_into(&mut self, burst: &mut Inbound, bytes: &[u8]) -> Verdict {
        match self.receive(burst.now, bytes) {
            Ok(incoming) => {
                burst.note(&incoming);
                Verdict::Opened(Box::new(incoming))
            }
            Err(e) if e == SessionError::Duplicate.into() => Verdict::Duplicate,
            Err(e) if e.is_retryable() => Verdict::Park(e),
            Err(e) if e == SessionError::IdentityChanged.into() => {
                match self.identity_claim(burst.now, bytes) {
                    Ok(Some(claim)) => Verdict::Hold(Box::new(claim)),
                    _ => Verdict::Refused(e),
                }
            }
            Err(e) => Verdict::Refused(e),
        }
    }
}
