//! Groups (GRP-*): creating one as its admin, adding and removing members (a new epoch each,
//! GRP-6), the group key sent over the pairwise sessions (GRP-3), group messages (GRP-7, GRP-8),
//! acks (GRP-9), and the control messages a member receives (group key, removal, ack).

use crate::crypto::{CryptoRng, SignPublic};
use crate::error::{GroupError, MisuseError, Result};
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
                let group = self.groups.get(m.group()).ok_or(GroupError::UnknownGroup)?;
                check_from_admin(m, from_iks)?;
                group.check_removal(m)?;
                if m.index_of(&self.user_id).is_some()
                    && !mutated!(Mutation::AllowRemovalListingSelf)
                {
                    return Err(GroupError::NotAMember.into());
                }
                let gid = *m.group();
                self.groups.remove(&gid);
                self.group_tags.retain(|_, g| *g != gid);
                // Remember the removal so that a late, older group key cannot bring the group back.
                self.left_groups.insert(gid, m.epoch());
                while self.left_groups.len() > MAX_GROUPS {
                    self.left_groups.pop_first();
                }
                events.push(Event::RemovedFromGroup(gid));
                Ok(())
            }
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
            Some(group) => group.install(epoch)?,
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
            return Ok(Member {
                user: self.user_id,
                iks: *self.identity.public().iks(),
            });
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
        let mut list = vec![self.member_of(&self.user_id.clone())?];
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
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
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
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
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
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let next = group.rekey(&self.identity, list, KeyShare::random(rng, now))?;
        let out = self.distribute(rng, now, &next, removed)?;
        if let Some(group) = self.groups.get_mut(gid) {
            group.install(next)?;
        }
        self.reindex_group(gid);
        Ok(out)
    }

    // Sends the group key to every member but self, and the removal notice to `removed`.
    fn distribute(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        epoch: &GroupEpoch,
        removed: &[UserId],
    ) -> Result<Vec<Outgoing>> {
        let key = Content::GroupKey(Box::new(epoch.group_key()));
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
