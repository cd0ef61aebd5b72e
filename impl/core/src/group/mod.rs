//! Groups (protocol.md section 14): the paper's group master key, chosen by the admin per epoch, with a
//! chain per member and a signature inside every group message.
//!
//! ```text
//!   admin --GroupKey(membership, GMK, s1..s4, t0)--> each member, over the pairwise sessions
//!   member i:  CK_0 = Expand(Extract(s1, GMK), "sotto/v1/group-chain" || i)   (KDF-11)
//!   envelope:  0x14 || tag(s3) || i || n || Seal(K_n, header, Sig_IKs_i(...) || inner)
//!   add/remove -> epoch + 1 with a fresh GMK; the removed member never sees it (GRP-6)
//!   handover   -> epoch + 1 issued by the new admin, accepted with the old admin's signature (GRP-12)
//! ```

pub mod handover;
pub mod membership;

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::chain::{Chain, MessageKeys, SkippedKeys};
use crate::crypto::{self, TAG_LEN};
use crate::envelope::{self, Envelope, Header};
use crate::error::{DecodeError, GroupError, MisuseError, Result, SessionError};
use crate::ids::GroupId;
use crate::inner::{Content, GroupAck, GroupKey, Inner};
use crate::kdf;
use crate::keys::Identity;
use crate::keyshare::KeyShare;
use crate::limits::MAX_ENVELOPE;
use crate::persist::Persist;
use crate::records::{HoldsSkippedKeys, RecordKind};
use crate::session::{Opened, Sealed};
use membership::Membership;

/// One group epoch as a member holds it.
#[derive(Clone, Debug)]
pub struct GroupEpoch {
    membership: Membership,
    keys: KeyShare,
    tag: [u8; 8],
    index: u8,
    send: Chain,
    recv: BTreeMap<u8, Chain>,
    removed: Vec<u8>,
}

impl GroupEpoch {
    /// Installs an epoch for the member at `index`.
    pub fn new(membership: Membership, keys: KeyShare, index: u8) -> Self {
        let send = member_chain(&keys, index);
        GroupEpoch {
            tag: kdf::group_tag(keys.seeds()[2]),
            membership,
            keys,
            index,
            send,
            recv: BTreeMap::new(),
            removed: Vec::new(),
        }
    }

    /// The membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The epoch number.
    pub fn epoch(&self) -> u32 {
        self.membership.epoch()
    }

    /// The group key message that installs this epoch at another member (GRP-3).
    pub fn group_key(&self) -> GroupKey {
        GroupKey {
            membership: self.membership.clone(),
            keys: self.keys.clone(),
            handover: None,
        }
    }

    /// This member's confirmation of the epoch (GRP-9).
    pub fn ack(&self) -> GroupAck {
        GroupAck {
            group: *self.membership.group(),
            epoch: self.epoch(),
            index: self.index,
            confirm: kdf::group_confirm(
                self.keys.seeds()[3],
                &self.membership.group().0,
                self.epoch(),
                self.index,
            ),
        }
    }

    /// Checks another member's confirmation (GRP-9).
    pub fn check_ack(&self, ack: &GroupAck) -> bool {
        let expected = kdf::group_confirm(
            self.keys.seeds()[3],
            &self.membership.group().0,
            self.epoch(),
            ack.index,
        );
        ack.group == *self.membership.group()
            && ack.epoch == self.epoch()
            && crypto::ct_eq(&expected, &ack.confirm)
    }

    /// Seals a group message (ENV-5, GRP-7), signed with the member's `IKs` inside the encryption.
    pub fn seal(
        &mut self,
        identity: &Identity,
        now: u64,
        content: &Content,
        bucket: usize,
    ) -> Result<Sealed> {
        let delta = u32::try_from(now.saturating_sub(self.keys.t0()) / 1000).unwrap_or(u32::MAX);
        let inner = Inner {
            delta,
            content: content.clone(),
        }
        .encode(bucket)?;
        let n = self.send.next_counter();
        let header = Header::Group {
            tag: self.tag,
            index: self.index,
            n,
        }
        .encode();
        // LIM-1 on the exact envelope (header, signature, inner, tag) before the chain moves.
        if header
            .len()
            .saturating_add(64)
            .saturating_add(inner.len())
            .saturating_add(TAG_LEN)
            > MAX_ENVELOPE
        {
            return Err(MisuseError::TooLarge.into());
        }
        let (counter, keys) = self.send.advance()?;
        debug_assert_eq!(counter, n);
        let sig = identity.signing().sign(
            kdf::SIG_GROUP_MSG,
            &[&self.signed_message(self.index, n, &inner)],
        );
        let mut plain = Zeroizing::new(Vec::with_capacity(64usize.saturating_add(inner.len())));
        plain.extend_from_slice(&sig);
        plain.extend_from_slice(&inner);
        let sealed = crypto::seal(&keys.key, &keys.nonce, &header, &plain);
        Ok(Sealed {
            bytes: envelope::assemble(&header, &sealed)?,
            id: keys.id,
            epoch: self.epoch(),
            counter: n,
        })
    }

    // GRP-7: group id || epoch || index || n || inner (after the context label).
    fn signed_message(&self, index: u8, n: u32, inner: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(25usize.saturating_add(inner.len()));
        v.extend_from_slice(&self.membership.group().0);
        v.extend_from_slice(&self.epoch().to_be_bytes());
        v.push(index);
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(inner);
        v
    }

    /// Opens a group message of this epoch (GRP-5, GRP-7).
    pub fn open(
        &mut self,
        now: u64,
        env: &Envelope<'_>,
        skipped: &mut SkippedKeys<(u32, u8, u32)>,
    ) -> Result<(Opened, membership::Member)> {
        let Header::Group { index, n, .. } = env.header() else {
            return Err(DecodeError::UnknownType.into());
        };
        let (index, n) = (*index, *n);
        if index == self.index {
            return Err(SessionError::Duplicate.into());
        }
        if self.removed.contains(&index) {
            return Err(GroupError::NotAMember.into());
        }
        let member = *self
            .membership
            .member(index)
            .ok_or(GroupError::NotAMember)?;
        let epoch = self.epoch();
        if let Some(keys) = skipped.get((epoch, index, n)) {
            let keys = keys.clone();
            let inner = self.decrypt(&keys, env, index, n, &member.iks)?;
            skipped.remove((epoch, index, n));
            return Ok((self.opened(&keys, inner, n), member));
        }
        let chain = match self.recv.get(&index) {
            Some(c) => c.clone(),
            None => member_chain(&self.keys, index),
        };
        let ahead = chain.read_ahead(n)?;
        let inner = self.decrypt(&ahead.keys, env, index, n, &member.iks)?;
        let opened = self.opened(&ahead.keys, inner, n);
        let mut chain = chain;
        ahead.commit(&mut chain, skipped, |m| (epoch, index, m), now);
        self.recv.insert(index, chain);
        Ok((opened, member))
    }

    fn decrypt(
        &self,
        keys: &MessageKeys,
        env: &Envelope<'_>,
        index: u8,
        n: u32,
        iks: &crate::crypto::SignPublic,
    ) -> Result<Inner> {
        let plain = Zeroizing::new(crypto::open(
            &keys.key,
            &keys.nonce,
            env.header_bytes(),
            env.sealed(),
        )?);
        if plain.len() < 64 {
            return Err(DecodeError::Truncated.into());
        }
        let (sig, inner) = plain.split_at(64);
        let mut sig64 = [0u8; 64];
        sig64.copy_from_slice(sig);
        // NOT-5: the inner layout first, then the sender's signature (GRP-7).
        let decoded = Inner::decode(inner)?;
        if !mutated!(Mutation::SkipGroupMessageSignature) {
            iks.verify(
                kdf::SIG_GROUP_MSG,
                &[&self.signed_message(index, n, inner)],
                &sig64,
            )?;
        }
        Ok(decoded)
    }

    fn opened(&self, keys: &MessageKeys, inner: Inner, n: u32) -> Opened {
        Opened {
            id: keys.id,
            sent_at: self
                .keys
                .t0()
                .saturating_add(u64::from(inner.delta).saturating_mul(1000)),
            inner,
            epoch: self.epoch(),
            counter: n,
        }
    }

    /// Keeps receive chains only of members still in `next` (GRP-6): a removed member's late or
    /// future messages in this epoch are refused.
    fn retain_members_of(&mut self, next: &Membership) {
        let keep: Vec<u8> = self
            .recv
            .keys()
            .copied()
            .filter(|i| {
                self.membership
                    .member(*i)
                    .is_some_and(|m| next.members().contains(m))
            })
            .collect();
        self.recv.retain(|i, _| keep.contains(i));
        self.removed = self
            .membership
            .members()
            .iter()
            .enumerate()
            .filter(|(_, m)| !next.members().contains(m))
            .filter_map(|(i, _)| u8::try_from(i).ok())
            .collect();
    }
}

fn member_chain(keys: &KeyShare, index: u8) -> Chain {
    let [s1, s2, _, _] = keys.seeds();
    Chain::new(kdf::group_chain_start(keys.mk(), s1, index), s2.clone())
}

/// Group epochs kept per group: the newest and the one before, for late messages (GRP-6).
const MAX_GROUP_EPOCHS: usize = 2;

/// A group as one member holds it: its newest epochs (group keys may arrive out of order, as the
/// pairwise chain allows) and their skipped keys.
#[derive(Clone, Debug)]
pub struct Group {
    epochs: BTreeMap<u32, GroupEpoch>,
    skipped: SkippedKeys<(u32, u8, u32)>,
}

impl Group {
    /// A group at its first epoch known to this member.
    pub fn new(first: GroupEpoch) -> Self {
        Group {
            epochs: BTreeMap::from([(first.epoch(), first)]),
            skipped: SkippedKeys::default(),
        }
    }

    /// The newest epoch.
    pub fn current(&self) -> &GroupEpoch {
        // A group always holds at least one epoch: `new` inserts one and `install` only adds.
        self.epochs
            .last_key_value()
            .map(|(_, e)| e)
            .expect("a group holds at least one epoch")
    }

    fn current_mut(&mut self) -> Result<&mut GroupEpoch> {
        self.epochs
            .last_entry()
            .map(|e| e.into_mut())
            .ok_or_else(|| GroupError::UnknownGroup.into())
    }

    /// The group id.
    pub fn id(&self) -> &GroupId {
        self.current().membership.group()
    }

    /// Whether this member is the admin.
    pub fn is_admin(&self) -> bool {
        self.current().index == 0
    }

    /// Routing tags of the epochs kept.
    pub fn tags(&self) -> impl Iterator<Item = [u8; 8]> + '_ {
        self.epochs.values().map(|e| e.tag)
    }

    /// The admin's next epoch with `members` (admin first) and fresh keys: the rekey of GRP-6.
    pub fn rekey(
        &self,
        admin: &Identity,
        members: Vec<membership::Member>,
        keys: KeyShare,
    ) -> Result<GroupEpoch> {
        if !self.is_admin() {
            return Err(GroupError::NotGroupAdmin.into());
        }
        let epoch = self
            .current()
            .epoch()
            .checked_add(1)
            .ok_or(MisuseError::LimitReached)?;
        let membership = Membership::sign(admin, *self.id(), epoch, members)?;
        Ok(GroupEpoch::new(membership, keys, 0))
    }

    /// The new admin's first epoch with `members` (itself first) and fresh keys, under the
    /// handover `h` it received (GRP-12).
    pub fn take_over(
        &self,
        new_admin: &Identity,
        h: &handover::Handover,
        members: Vec<membership::Member>,
        keys: KeyShare,
    ) -> Result<GroupEpoch> {
        let membership = Membership::sign(new_admin, *self.id(), h.epoch, members)?;
        self.check_admin_change(&membership, Some(h))?;
        Ok(GroupEpoch::new(membership, keys, 0))
    }

    /// Checks that `next`'s admin may issue it (GRP-4, GRP-12): the admin held, or a member the
    /// held admin handed the role to by `handover`, for an epoch above every epoch held.
    fn check_admin_change(
        &self,
        next: &Membership,
        handover: Option<&handover::Handover>,
    ) -> Result<()> {
        let held = self.current().membership.admin();
        if next.admin() == held {
            return Ok(());
        }
        let (Some(h), Some(held), Some(new)) = (handover, held, next.admin()) else {
            return Err(GroupError::NotGroupAdmin.into());
        };
        let newest = self.current().epoch();
        if h.group != *self.id() || h.epoch > next.epoch() || h.epoch <= newest {
            return Err(GroupError::NotGroupAdmin.into());
        }
        h.verify(held, new)
    }

    /// Checks that `next` may be installed (GRP-4, GRP-12): same group, the admin held or one it
    /// handed the role to (`handover`), an epoch not held and not older than every epoch kept.
    pub fn check_install(
        &self,
        next: &Membership,
        handover: Option<&handover::Handover>,
    ) -> Result<()> {
        if next.group() != self.id() {
            return Err(GroupError::UnknownGroup.into());
        }
        self.check_admin_change(next, handover)?;
        let oldest = self.epochs.keys().next().copied().unwrap_or(0);
        if (self.epochs.contains_key(&next.epoch())
            || (self.epochs.len() >= MAX_GROUP_EPOCHS && next.epoch() < oldest))
            && !mutated!(Mutation::AllowStaleGroupEpoch)
        {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        Ok(())
    }

    /// Checks that a removal notice may be acted on (GRP-6): same group and admin, and an epoch newer
    /// than every epoch held. A late notice of a removal that a later epoch undid is stale.
    pub fn check_removal(&self, notice: &Membership) -> Result<()> {
        if notice.group() != self.id() {
            return Err(GroupError::UnknownGroup.into());
        }
        if notice.admin() != self.current().membership.admin() {
            return Err(GroupError::NotGroupAdmin.into());
        }
        if notice.epoch() <= self.current().epoch() {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        Ok(())
    }

    /// Installs an epoch (GRP-4, GRP-6), keeping the newest LIM epochs; `handover` is the one a
    /// handed-over group key carried (GRP-12). In the epoch before a newer one, members that the
    /// newer one removed can no longer send.
    pub fn install(
        &mut self,
        next: GroupEpoch,
        handover: Option<&handover::Handover>,
    ) -> Result<()> {
        self.check_install(&next.membership, handover)?;
        let e = next.epoch();
        self.epochs.insert(e, next);
        while self.epochs.len() > MAX_GROUP_EPOCHS {
            self.epochs.pop_first();
        }
        let numbers: Vec<u32> = self.epochs.keys().copied().collect();
        for pair in numbers.windows(2) {
            if let [older, newer] = pair {
                let newer_membership = self.epochs.get(newer).map(|g| g.membership.clone());
                if let (Some(m), Some(old)) = (newer_membership, self.epochs.get_mut(older)) {
                    old.retain_members_of(&m);
                }
            }
        }
        let oldest = self.epochs.keys().next().copied().unwrap_or(0);
        self.skipped.retain(|(e, _, _)| *e >= oldest);
        Ok(())
    }

    /// Seals a message in the newest epoch.
    pub fn seal(
        &mut self,
        identity: &Identity,
        now: u64,
        content: &Content,
        bucket: usize,
    ) -> Result<Sealed> {
        self.current_mut()?.seal(identity, now, content, bucket)
    }

    /// The user id of member `index` of the kept epoch whose tag is `tag`: who a group message
    /// claims to come from, before it is opened.
    pub fn sender(&self, tag: &[u8; 8], index: u8) -> Option<crate::ids::UserId> {
        let epoch = self.epochs.values().find(|e| e.tag == *tag)?;
        epoch.membership.member(index).map(|m| m.user)
    }

    /// Opens a message of a kept epoch, found by its tag; returns it with its sender.
    pub fn open(&mut self, now: u64, env: &Envelope<'_>) -> Result<(Opened, membership::Member)> {
        let Header::Group { tag, .. } = env.header() else {
            return Err(DecodeError::UnknownType.into());
        };
        self.skipped.expire(now);
        let epoch = self
            .epochs
            .values_mut()
            .find(|e| e.tag == *tag)
            .ok_or(GroupError::UnknownGroup)?;
        epoch.open(now, env, &mut self.skipped)
    }
}

impl Persist for Membership {
    fn write(&self, w: &mut crate::codec::Writer) {
        self.encode(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        Membership::decode(r)
    }
}

impl Persist for GroupEpoch {
    fn write(&self, w: &mut crate::codec::Writer) {
        self.membership.write(w);
        self.keys.write(w);
        self.index.write(w);
        self.send.write(w);
        let recv: Vec<(u8, Chain)> = self.recv.iter().map(|(i, c)| (*i, c.clone())).collect();
        recv.write(w);
        self.removed.write(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let membership = Membership::read(r)?;
        let keys = KeyShare::read(r)?;
        let index = u8::read(r)?;
        let send = Chain::read(r)?;
        let recv: Vec<(u8, Chain)> = Persist::read(r)?;
        let removed: Vec<u8> = Persist::read(r)?;
        Ok(GroupEpoch {
            tag: kdf::group_tag(keys.seeds()[2]),
            membership,
            keys,
            index,
            send,
            recv: recv.into_iter().collect(),
            removed,
        })
    }
}

/// The whole group, its skipped keys last (the whole state, [`crate::Device::export`], and the
/// records of old stores).
impl Persist for Group {
    fn write(&self, w: &mut crate::codec::Writer) {
        self.write_lean(w);
        self.skipped.write(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let mut g = Group::read_lean(r)?;
        g.skipped = Persist::read(r)?;
        Ok(g)
    }
}

/// A group's record leaves its skipped keys out: each is a record of its own.
impl crate::records::HoldsSkippedKeys for Group {
    type At = (u32, u8, u32);
    const KIND: RecordKind = RecordKind::Group;
    const SKIPPED: RecordKind = RecordKind::GroupSkippedKey;
    const LEGACY: RecordKind = RecordKind::LegacyGroup;
    fn write_lean(&self, w: &mut crate::codec::Writer) {
        let epochs: Vec<GroupEpoch> = self.epochs.values().cloned().collect();
        epochs.write(w);
    }
    fn read_lean(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let epochs: Vec<GroupEpoch> = Persist::read(r)?;
        if epochs.is_empty() {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        Ok(Group {
            epochs: epochs.into_iter().map(|e| (e.epoch(), e)).collect(),
            skipped: SkippedKeys::default(),
        })
    }
    fn skipped(&self) -> &SkippedKeys<(u32, u8, u32)> {
        &self.skipped
    }
    fn skipped_mut(&mut self) -> &mut SkippedKeys<(u32, u8, u32)> {
        &mut self.skipped
    }
}

#[cfg(feature = "test-utils")]
impl Group {
    /// Every secret this group holds, for the wiretap (feature `test-utils`): each epoch's group
    /// master key and random numbers, its sending and receiving chains, skipped message keys.
    pub(crate) fn held_secrets(&self, what: &str, out: &mut Vec<crate::device::HeldSecret>) {
        for (n, e) in &self.epochs {
            let what = format!("{what} epoch {n}");
            e.keys.held_secrets(&format!("{what} group key"), out);
            e.send.held_secrets(&format!("{what} own sending"), out);
            for (i, c) in &e.recv {
                c.held_secrets(&format!("{what} member {i}"), out);
            }
        }
        self.skipped.held_secrets(what, out);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::group::membership::Member;
    use crate::ids::UserId;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// GRP-7: a member's message whose plaintext is shorter than the 64-byte signature is
    /// `truncated` (only a member holding the group keys can send one), never a panic.
    #[test]
    fn a_plaintext_shorter_than_a_signature_is_truncated_grp_7() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let admin = Identity::generate(&mut rng);
        let other = Identity::generate(&mut rng);
        let membership = Membership::sign(
            &admin,
            GroupId([3; 16]),
            0,
            vec![
                Member {
                    user: UserId([1; 10]),
                    iks: *admin.public().iks(),
                },
                Member {
                    user: UserId([2; 10]),
                    iks: *other.public().iks(),
                },
            ],
        )
        .unwrap();
        let keys = KeyShare::random(&mut rng, 1000);
        let mut receiver = GroupEpoch::new(membership, keys.clone(), 0);
        for len in [0usize, 10, 63, 64] {
            let (n, mk) = member_chain(&keys, 1).advance().unwrap();
            let header = Header::Group {
                tag: receiver.tag,
                index: 1,
                n,
            }
            .encode();
            let sealed = crypto::seal(&mk.key, &mk.nonce, &header, &vec![0u8; len]);
            let bytes = envelope::assemble(&header, &sealed).unwrap();
            let env = Envelope::decode(&bytes).unwrap();
            let mut skipped = SkippedKeys::default();
            assert_eq!(
                receiver.open(1000, &env, &mut skipped).unwrap_err(),
                Error::Decode(DecodeError::Truncated),
                "{len}"
            );
        }
    }
}
