//! Groups (GRP-*): creating one as its admin, adding and removing members (a new epoch each,
//! GRP-6), the group key sent over the pairwise sessions (GRP-3), group messages (GRP-7, GRP-8),
//! acks (GRP-9), leaving (GRP-11), handing the admin role over (GRP-12), and the control messages
//! a member receives (group key, removal, ack, leave, handover).

use crate::crypto::{CryptoRng, SignPublic};
use crate::error::{GroupError, MisuseError, Result, SessionError};
use crate::group::handover::{Handover, Leave};
use crate::group::membership::{Member, Membership};
use crate::group::{Group, GroupEpoch};
use crate::ids::{GroupId, UserId};
use crate::inner::{Content, GroupKey};
use crate::keyshare::KeyShare;
use crate::limits::MAX_GROUPS;

use super::{Device, Event, Outgoing};

impl Device {
    pub(super) fn apply_control(
        &mut self,
        from: &UserId,
        from_iks: &SignPublic,
        content: &Content,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        match content {
            Content::GroupKey(gk) => self.install_group_key(from_iks, gk, events),
            Content::GroupRemoved(m) => {
                let gid = *m.group();
                check_from_admin(m, from_iks)?;
                let listed = m.index_of(&self.user_id).is_some()
                    && !mutated!(Mutation::AllowRemovalListingSelf);
                let Some(group) = self.groups.get(&gid) else {
                    return self.answer_leave(m, listed);
                };
                group.check_removal(m)?;
                if listed {
                    return Err(GroupError::NotAMember.into());
                }
                // Remember the removal so that a late, older group key cannot bring the group back.
                self.forget_group(&gid, m.epoch());
                events.push(Event::RemovedFromGroup(gid));
                Ok(())
            }
            Content::GroupLeave(leave) => self.accept_leave(from, from_iks, leave, events),
            Content::GroupHandover(h) => self.accept_handover(from, from_iks, h, events),
            Content::GroupAck(ack) => {
                let group = self
                    .groups
                    .get(&ack.group)
                    .ok_or(GroupError::UnknownGroup)?;
                let epoch = group.current();
                let member = epoch
                    .membership()
                    .member(ack.index)
                    .ok_or(GroupError::NotAMember)?;
                if !group.is_admin() || member.user != *from || !epoch.check_ack(ack) {
                    return Err(GroupError::NotAMember.into());
                }
                events.push(Event::MemberConfirmed {
                    group: ack.group,
                    epoch: ack.epoch,
                    index: ack.index,
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn install_group_key(
        &mut self,
        from_iks: &SignPublic,
        gk: &GroupKey,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let m = &gk.membership;
        check_from_admin(m, from_iks)?;
        let index = m.index_of(&self.user_id).ok_or(GroupError::NotAMember)?;
        if m.member(index).map(|x| x.iks) != Some(*self.identity.public().iks()) {
            return Err(GroupError::NotAMember.into());
        }
        let gid = *m.group();
        // GRP-11: no key of a group this device left, until the admin's removal notice.
        if self.leaving.contains_key(&gid) && !mutated!(Mutation::AcceptKeyAfterLeave) {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        if self
            .left_groups
            .get(&gid)
            .is_some_and(|left| m.epoch() <= *left)
            && !mutated!(Mutation::AllowStaleGroupEpoch)
        {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        let epoch = GroupEpoch::new(m.clone(), gk.keys.clone(), index);
        let number = epoch.epoch();
        match self.groups.get_mut(&gid) {
            Some(group) => group.install(epoch, gk.handover.as_ref())?,
            None => {
                if self.groups.len() >= MAX_GROUPS && !mutated!(Mutation::SkipGroupCountBound) {
                    return Err(MisuseError::LimitReached.into());
                }
                self.groups.insert(gid, Group::new(epoch));
            }
        }
        self.reindex_group(&gid);
        events.push(Event::GroupKey {
            group: gid,
            epoch: number,
        });
        Ok(())
    }

    // GRP-11: a removal notice of a group this device does not hold (signed by its first member,
    // who sent it) ends its leave if it is of a later epoch than the one it left at, without it.
    fn answer_leave(&mut self, notice: &Membership, listed: bool) -> Result<()> {
        let gid = *notice.group();
        let left_at = *self.leaving.get(&gid).ok_or(GroupError::UnknownGroup)?;
        if notice.epoch() <= left_at {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        if listed {
            return Err(GroupError::NotAMember.into());
        }
        self.leaving.remove(&gid);
        self.remember_left(gid, notice.epoch());
        Ok(())
    }

    /// Remembers that this device left `gid` at epoch `left_at`: a later key of an epoch up to it
    /// is stale (GRP-6). Bounded like the groups.
    fn remember_left(&mut self, gid: GroupId, left_at: u32) {
        self.left_groups.insert(gid, left_at);
        while self.left_groups.len() > MAX_GROUPS {
            self.left_groups.pop_first();
        }
    }

    /// Deletes a group's keys and remembers the epoch it was left at (GRP-6, GRP-11).
    fn forget_group(&mut self, gid: &GroupId, left_at: u32) {
        self.groups.remove(gid);
        self.group_tags.retain(|_, g| g != gid);
        self.handovers.remove(gid);
        self.remember_left(*gid, left_at);
    }

    /// Whether this device handed `gid`'s admin role over: it makes no membership change from
    /// then on (GRP-12), until a handover names it again. The record stays until then, or until
    /// the group is gone.
    fn handed_over(&self, gid: &GroupId) -> bool {
        self.handovers
            .get(gid)
            .is_some_and(|h| h.new_admin != self.user_id)
    }

    /// The group `gid` if this device administers it (GRP-1, GRP-12): `not_group_admin` if it
    /// is not the admin or handed the role over.
    fn administered(&self, gid: &GroupId) -> Result<&Group> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        if !group.is_admin() || self.handed_over(gid) {
            return Err(GroupError::NotGroupAdmin.into());
        }
        Ok(group)
    }

    /// This device as a member: its user id and `IKs`.
    fn me(&self) -> Member {
        Member {
            user: self.user_id,
            iks: *self.identity.public().iks(),
        }
    }

    // GRP-11 at the admin: a leave over the pairwise session with the member that leaves.
    fn accept_leave(
        &mut self,
        from: &UserId,
        from_iks: &SignPublic,
        leave: &Leave,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        if !self.groups.contains_key(&leave.group) {
            // A group this device no longer holds: there is nothing to leave.
            return Ok(());
        }
        let group = self.administered(&leave.group)?;
        let current = group.current();
        if leave.epoch > current.epoch() {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        match current
            .membership()
            .members()
            .iter()
            .find(|m| m.user == *from)
        {
            // No longer a member (removed meanwhile, or a repeated leave): nothing to do.
            None => Ok(()),
            Some(m) if m.iks != *from_iks => Err(GroupError::NotAMember.into()),
            Some(_) => {
                events.push(Event::MemberLeft {
                    group: leave.group,
                    user: *from,
                });
                Ok(())
            }
        }
    }

    // GRP-12 at the new admin: the handover from the group's admin, naming this device.
    fn accept_handover(
        &mut self,
        from: &UserId,
        from_iks: &SignPublic,
        h: &Handover,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        // Unknown group: the group key may still be on its way (RX-8).
        let group = self.groups.get(&h.group).ok_or(GroupError::UnknownGroup)?;
        let current = group.current();
        let admin = *current
            .membership()
            .admin()
            .ok_or(GroupError::UnknownGroup)?;
        if (admin.iks != *from_iks || admin.user != *from)
            && !mutated!(Mutation::SkipGroupAdminCheck)
        {
            return Err(GroupError::NotGroupAdmin.into());
        }
        let me = self.me();
        if h.new_admin != me.user || !current.membership().members().contains(&me) {
            return Err(GroupError::NotAMember.into());
        }
        // The handover's epoch follows the admin's newest. One further ahead waits for the keys
        // still on their way (group keys may arrive out of order, GRP-4): the takeover happens
        // when the epoch before it is installed.
        if h.epoch <= current.epoch() {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        h.verify(&admin, &me)?;
        self.handovers.insert(h.group, *h);
        events.push(Event::HandoverReceived {
            group: h.group,
            epoch: h.epoch,
        });
        Ok(())
    }

    /// Leaves a group (GRP-11): the leave goes to the admin over the pairwise session, and the
    /// group's keys are deleted at once; until the admin's removal notice arrives every group key
    /// of the group is refused. The admin cannot leave while others are in the group
    /// (`admin_must_hand_over`); alone, it just deletes the group (nothing to send: `None`).
    pub fn leave_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
    ) -> Result<Option<Outgoing>> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let current = group.current();
        // A handover named this device: it is, or is about to be, the admin.
        let named = self
            .handovers
            .get(gid)
            .is_some_and(|h| h.new_admin == self.user_id);
        if group.is_admin() && current.membership().members().len() <= 1 {
            let epoch = current.epoch();
            self.forget_group(gid, epoch);
            return Ok(None);
        }
        if group.is_admin() || named {
            return Err(MisuseError::AdminMustHandOver.into());
        }
        let admin = current
            .membership()
            .admin()
            .map(|m| m.user)
            .ok_or(GroupError::UnknownGroup)?;
        let epoch = current.epoch();
        let leave = Leave { group: *gid, epoch };
        let out = self.send(rng, now, &admin, &Content::GroupLeave(leave))?;
        self.forget_group(gid, epoch);
        self.leaving.insert(*gid, epoch);
        while self.leaving.len() > MAX_GROUPS {
            self.leaving.pop_first();
        }
        Ok(Some(out))
    }

    /// Hands the admin role of a group this device administers to the member `to` (GRP-12): the
    /// signed handover goes to them over the pairwise session; from then on this device makes no
    /// membership change, and it is a member like the others once the new admin's key arrives.
    pub fn hand_over_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        to: &UserId,
    ) -> Result<Outgoing> {
        let current = self.administered(gid)?.current();
        let member = *current
            .membership()
            .members()
            .iter()
            .find(|m| m.user == *to && m.user != self.user_id)
            .ok_or(GroupError::NotAMember)?;
        let epoch = current
            .epoch()
            .checked_add(1)
            .ok_or(MisuseError::LimitReached)?;
        let h = Handover::sign(&self.identity, *gid, epoch, &member);
        let out = self.send(rng, now, to, &Content::GroupHandover(h))?;
        self.handovers.insert(*gid, h);
        Ok(out)
    }

    /// Groups whose admin role this device received and has not taken over yet, each with the
    /// members it has no contact for: the shell fetches their bundles from the directory (their
    /// `IKs` must be the membership's), adds them, then calls [`Device::take_over_group`] (GRP-12).
    pub fn pending_takeovers(&self) -> Vec<(GroupId, Vec<Member>)> {
        self.handovers
            .keys()
            .filter(|gid| self.may_take_over(gid))
            .filter_map(|gid| {
                let group = self.groups.get(gid)?;
                let missing = group
                    .current()
                    .membership()
                    .members()
                    .iter()
                    .filter(|m| m.user != self.user_id && !self.contacts.contains_key(&m.user))
                    .copied()
                    .collect();
                Some((*gid, missing))
            })
            .collect()
    }

    /// Whether this device holds a handover of `gid` naming it whose epoch follows the newest it
    /// holds: it may take the group over now ([`Device::take_over_group`], GRP-12).
    pub fn may_take_over(&self, gid: &GroupId) -> bool {
        self.handovers.get(gid).is_some_and(|h| {
            h.new_admin == self.user_id
                && self
                    .groups
                    .get(gid)
                    .is_some_and(|g| g.current().epoch().checked_add(1) == Some(h.epoch))
        })
    }

    /// Takes over a group whose handover this device received (GRP-12): the next epoch with this
    /// device at index 0 and the old admin where it was, fresh keys, sent to every member as a
    /// handed-over group key. Every member must be a contact under the membership's `IKs`
    /// (`unknown_peer`, `identity_changed`). Nothing to do (no envelopes) if it took over already,
    /// or if the key of the epoch before the handover's has not arrived yet.
    pub fn take_over_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
    ) -> Result<Vec<Outgoing>> {
        let h = self
            .handovers
            .get(gid)
            .copied()
            .filter(|h| h.new_admin == self.user_id)
            .ok_or(GroupError::NotGroupAdmin)?;
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let current = group.current();
        if current.epoch().checked_add(1) != Some(h.epoch) {
            return Ok(Vec::new());
        }
        let mut list = current.membership().members().to_vec();
        let me = self.me();
        let at = list
            .iter()
            .position(|m| *m == me)
            .ok_or(GroupError::NotAMember)?;
        list.swap(0, at);
        for m in list.iter().skip(1) {
            if self.member_of(&m.user)? != *m {
                return Err(SessionError::IdentityChanged.into());
            }
        }
        let next = group.take_over(&self.identity, &h, list, KeyShare::random(rng, now))?;
        let out = self.distribute(rng, now, &next, &[])?;
        if let Some(group) = self.groups.get_mut(gid) {
            group.install(next, Some(&h))?;
        }
        self.reindex_group(gid);
        Ok(out)
    }

    pub(super) fn reindex_group(&mut self, gid: &GroupId) {
        self.group_tags.retain(|_, g| g != gid);
        if let Some(group) = self.groups.get(gid) {
            for tag in group.tags() {
                self.group_tags.insert(tag, *gid);
            }
        }
    }

    fn member_of(&self, user: &UserId) -> Result<Member> {
        if *user == self.user_id {
            return Ok(self.me());
        }
        let c = self.contacts.get(user).ok_or(MisuseError::UnknownPeer)?;
        Ok(Member {
            user: *user,
            iks: *c.identity.iks(),
        })
    }

    /// Creates a group with this device as admin and sends its key to every member (GRP-1, GRP-3).
    pub fn create_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        members: &[UserId],
    ) -> Result<(GroupId, Vec<Outgoing>)> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(MisuseError::LimitReached.into());
        }
        let mut list = vec![self.me()];
        for u in members {
            if *u != self.user_id {
                list.push(self.member_of(u)?);
            }
        }
        let gid = GroupId::random(rng);
        let membership = Membership::sign(&self.identity, gid, 0, list)?;
        let epoch = GroupEpoch::new(membership, KeyShare::random(rng, now), 0);
        let out = self.distribute(rng, now, &epoch, &[])?;
        self.groups.insert(gid, Group::new(epoch));
        self.reindex_group(&gid);
        Ok((gid, out))
    }

    /// Adds a member: a new epoch with fresh keys for everyone (GRP-6).
    pub fn add_to_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        user: &UserId,
    ) -> Result<Vec<Outgoing>> {
        let group = self.administered(gid)?;
        let mut list = group.current().membership().members().to_vec();
        if list.iter().any(|m| m.user == *user) {
            return Ok(Vec::new());
        }
        list.push(self.member_of(user)?);
        self.rekey(rng, now, gid, list, &[])
    }

    /// Removes a member: a new epoch without them, and a removal notice to them (GRP-6).
    pub fn remove_from_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        user: &UserId,
    ) -> Result<Vec<Outgoing>> {
        let group = self.administered(gid)?;
        let list: Vec<Member> = group
            .current()
            .membership()
            .members()
            .iter()
            .filter(|m| m.user != *user)
            .copied()
            .collect();
        if *user == self.user_id {
            return Err(GroupError::NotGroupAdmin.into());
        }
        self.rekey(rng, now, gid, list, &[*user])
    }

    fn rekey(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        list: Vec<Member>,
        removed: &[UserId],
    ) -> Result<Vec<Outgoing>> {
        let group = self.administered(gid)?;
        let next = group.rekey(&self.identity, list, KeyShare::random(rng, now))?;
        let out = self.distribute(rng, now, &next, removed)?;
        if let Some(group) = self.groups.get_mut(gid) {
            group.install(next, None)?;
        }
        self.reindex_group(gid);
        Ok(out)
    }

    // Sends the group key to every member but self (with the handover by which this device took
    // the role, if it did: GRP-12), and the removal notice to `removed`.
    fn distribute(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        epoch: &GroupEpoch,
        removed: &[UserId],
    ) -> Result<Vec<Outgoing>> {
        let mut key = epoch.group_key();
        key.handover = self
            .handovers
            .get(epoch.membership().group())
            .copied()
            .filter(|h| h.new_admin == self.user_id);
        let key = Content::GroupKey(Box::new(key));
        let notice = Content::GroupRemoved(Box::new(epoch.membership().clone()));
        let mut out = Vec::new();
        for m in epoch.membership().members() {
            if m.user != self.user_id {
                out.push(self.send(rng, now, &m.user, &key)?);
            }
        }
        for u in removed {
            out.push(self.send(rng, now, u, &notice)?);
        }
        Ok(out)
    }

    /// The confirmation to send the admin after joining an epoch (GRP-9).
    pub fn group_ack(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
    ) -> Result<Outgoing> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let ack = group.current().ack();
        let admin = group
            .current()
            .membership()
            .admin()
            .map(|m| m.user)
            .ok_or(GroupError::UnknownGroup)?;
        self.send(rng, now, &admin, &Content::GroupAck(ack))
    }

    /// Sends to a group: one envelope for every other member's inbox (GRP-7, GRP-8).
    pub fn send_group(&mut self, now: u64, gid: &GroupId, content: &Content) -> Result<Outgoing> {
        let bucket = self.bucket;
        let group = self.groups.get_mut(gid).ok_or(GroupError::UnknownGroup)?;
        let sealed = group.seal(&self.identity, now, content, bucket)?;
        let to = group
            .current()
            .membership()
            .members()
            .iter()
            .filter(|m| m.user != self.user_id)
            .map(|m| m.user)
            .collect();
        Ok(Outgoing {
            to,
            envelope: sealed.bytes,
            id: sealed.id,
            group: Some(*gid),
        })
    }

    /// The members of a group (admin first) and its epoch.
    pub fn group_members(&self, gid: &GroupId) -> Option<(u32, Vec<UserId>)> {
        self.groups.get(gid).map(|g| {
            (
                g.current().epoch(),
                g.current()
                    .membership()
                    .members()
                    .iter()
                    .map(|m| m.user)
                    .collect(),
            )
        })
    }

    /// The groups this device is in.
    pub fn groups(&self) -> impl Iterator<Item = &GroupId> + '_ {
        self.groups.keys()
    }
}

fn check_from_admin(m: &Membership, from_iks: &SignPublic) -> Result<()> {
    if m.admin().map(|a| &a.iks) != Some(from_iks) && !mutated!(Mutation::SkipGroupAdminCheck) {
        return Err(GroupError::NotGroupAdmin.into());
    }
    Ok(())
}
