//! Groups: the paper's group master key, chosen by the admin, rekeyed on every change
//! (GRP-1..GRP-12).
//!
//! ```text
//!  admin: GMK_e, seeds_e fresh --group key (kind 4) over each pairwise session--> members
//!         removed member <-- group removed (kind 5), never GMK_e
//!  member i: CK_0 = KDF-11(GMK_e, seeds_e, i); group message (ENV-5) =
//!         <tag_e, i, n, {Sig_IKs_i(group, e, i, n, inner)}_K_n>  published to every other member
//!  leaver --group leave (kind 7)--> admin: removes it as GroupRemove does, in the same commit
//!  admin --group handover (kind 8) = Sig_IKs_admin(group, e+1, new, IKs_new)--> new admin:
//!         issues e+1 as admin; every key it issues is kind 9 = handover || group key
//! ```
//!
//! A leaver deletes the group's keys at once and refuses group keys until its removal notice
//! (GRP-11). After a handover the old admin makes no membership change; a member accepts a key
//! from another admin than the one it holds only with a handover signed by the one it holds, of
//! an epoch above every epoch it holds (GRP-12).
//!
//! A member offline during a change finds the group key queued in its inbox (GRP-3): it catches
//! up when it reconnects. Group messages are receipted like pairwise ones (GRP-10): a member that
//! commits one sends a receipt naming its id as a group message (on its own chain, to every other
//! member); the sender keeps the envelope in its outbox once per member and resends it to a member
//! whose receipt is missing; a duplicate is dropped and answered with the receipt again (RX-6).

use crate::action::Action;
use crate::handshake::open;
use crate::model::SottoModel;
use crate::ratchet::num;
use crate::refusal::Refusal;
use crate::scenario::Intent;
use crate::state::{
    GroupEpochRec, GroupExit, GroupSent, GroupView, HandoverRec, Member, Out, PrevGroupEpoch,
    Session, State, Stored, What, flag,
};
use crate::term::{Atom, Const, Dev, Kind, Label, Party, Shape, Term, TermId, Terms};
use crate::variant::Variant;

/// What opening a group envelope gave.
pub enum GroupOutcome {
    /// Opened and committed (a text, with its receipt sent), or a receipt taken.
    Committed,
    /// Counter already received: the sender, the group epoch and `index << 4 | n`.
    Duplicate {
        /// The member who sent it.
        from: Dev,
        /// Its group epoch.
        epoch: u8,
        /// Index and counter, as in [`crate::state::Stored::n`].
        n: u8,
    },
    /// No such group epoch (yet): keep for retry (RX-8).
    Unknown,
    /// Refused.
    Refused,
}

/// KDF-11: member `idx`'s chain key of a group epoch.
pub fn member_chain(t: &Terms, gmk: TermId, seeds: TermId, idx: u8) -> TermId {
    t.kdf(Label::GroupChain, &[gmk, seeds, t.num(idx)])
}

fn mask(devs: impl Iterator<Item = Dev>) -> u8 {
    devs.fold(0, |m, d| m | 1 << d.ix())
}

impl SottoModel {
    /// GroupCreate / GroupAdd / GroupRemove / GroupSend.
    pub(crate) fn group_step(&self, s: &mut State, a: &Action) {
        match *a {
            Action::GroupCreate { admin } => {
                let members = match self.config.script.get(s.pc as usize) {
                    Some(Intent::GroupCreate { members, .. }) => members.clone(),
                    _ => vec![admin],
                };
                self.distribute(s, admin, members, 0, None, None);
            }
            Action::GroupAdd { admin, member } => {
                let g = s
                    .dev(admin)
                    .group
                    .clone()
                    .expect("GroupAdd needs the group");
                let mut members: Vec<Dev> = g.members.iter().map(|m| m.dev).collect();
                members.push(member);
                self.distribute(s, admin, members, g.epoch + 1, None, g.handover);
            }
            Action::GroupRemove { admin, member } => {
                let g = s
                    .dev(admin)
                    .group
                    .clone()
                    .expect("GroupRemove needs the group");
                let members: Vec<Dev> = g
                    .members
                    .iter()
                    .map(|m| m.dev)
                    .filter(|d| *d != member)
                    .collect();
                self.distribute(s, admin, members, g.epoch + 1, Some(member), g.handover);
            }
            Action::GroupSend { from, msg } => self.group_send(s, from, msg),
            Action::GroupLeave { member } => self.leave(s, member),
            Action::GroupHandover { admin, to } => self.hand_over(s, admin, to),
            _ => {}
        }
    }

    /// GRP-11: the member sends its admin a leave naming the newest epoch it holds, deletes the
    /// group's keys and remembers that it left.
    fn leave(&self, s: &mut State, member: Dev) {
        let Some(g) = s.dev(member).group.clone() else {
            return;
        };
        let Some(admin) = g.members.first().map(|m| m.dev) else {
            return;
        };
        let t = self.t();
        let inner = t.tup(&[
            t.cnst(Const::Kind(Kind::GroupLeave)),
            t.cnst(Const::GroupId),
            t.num(g.epoch),
        ]);
        self.send_content(s, member, admin, What::GroupLeave(g.epoch), inner);
        let issued = u8::try_from(s.group_epochs.len()).unwrap_or(u8::MAX);
        let dev = s.dev_mut(member);
        dev.group = None;
        dev.group_exit = Some(GroupExit::Left(g.epoch));
        s.group_left.push((member, issued));
    }

    /// KDF-22: the handover of the admin role of epoch `epoch - 1` to `to`, with `to`'s `IKs` as
    /// the membership lists it (signed, not sent).
    fn handover_proof(&self, admin: Dev, epoch: u8, to: &Member) -> TermId {
        let t = self.t();
        t.sig(
            t.atom(Atom::IdSig(Party::Dev(admin))),
            t.tup(&[
                t.cnst(Const::Label(Label::SigHandover)),
                t.cnst(Const::GroupId),
                t.num(epoch),
                t.cnst(Const::UserId(Party::Dev(to.dev))),
                to.iks,
            ]),
        )
    }

    /// The epoch, new admin and new admin's `IKs` a handover names, if it is one for the group.
    fn handover_fields(&self, proof: TermId) -> Option<(u8, Dev, TermId)> {
        let t = self.t();
        let Term::Sig { body, .. } = t.get(proof) else {
            return None;
        };
        let f = t.fields(body)?;
        let [label, gid, epoch, uid, iks] = *f.as_slice() else {
            return None;
        };
        if t.get(label) != Term::Const(Const::Label(Label::SigHandover))
            || t.get(gid) != Term::Const(Const::GroupId)
        {
            return None;
        }
        let Term::Const(Const::UserId(Party::Dev(to))) = t.get(uid) else {
            return None;
        };
        Some((num(t, epoch)?, to, iks))
    }

    /// GRP-12: the admin sends the member the handover for the next epoch and makes no more
    /// membership changes.
    fn hand_over(&self, s: &mut State, admin: Dev, to: Dev) {
        let Some(g) = s.dev(admin).group.clone() else {
            return;
        };
        let Some(m) = g.members.iter().find(|m| m.dev == to) else {
            return;
        };
        let epoch = g.epoch + 1;
        let proof = self.handover_proof(admin, epoch, m);
        let t = self.t();
        let inner = t.tup(&[t.cnst(Const::Kind(Kind::GroupHandover)), proof]);
        self.send_content(s, admin, to, What::GroupHandover(epoch), inner);
        if let Some(v) = s.dev_mut(admin).group.as_mut() {
            v.handed_over = true;
        }
        s.handovers.push(HandoverRec {
            epoch,
            from: admin,
            to,
            proof,
        });
    }

    /// GRP-11 at the admin: a leave over the pairwise session `ses`. Returns what to commit and
    /// the member to remove, or `None` to refuse it.
    pub(crate) fn accept_leave(
        &self,
        s: &State,
        d: Dev,
        ses: &Session,
        f: &[TermId],
    ) -> Option<(What, Option<Dev>)> {
        let t = self.t();
        let [_, gid, epoch] = *f else {
            return None;
        };
        let epoch = num(t, epoch)?;
        let admin = s.dev(d).group.as_ref().filter(|g| g.administered_by(d));
        let Some(g) = admin.filter(|_| t.get(gid) == Term::Const(Const::GroupId)) else {
            self.refusals.hit(Refusal::GroupNotAdmin);
            return None; // not_group_admin
        };
        match g.members.iter().find(|m| m.dev == ses.peer) {
            // No longer a member: a no-op.
            None => Some((What::GroupLeave(epoch), None)),
            Some(m) if m.iks != ses.peer_iks => {
                self.refusals.hit(Refusal::GroupNotMember);
                None // not_a_member
            }
            Some(_) if epoch > g.epoch => {
                self.refusals.hit(Refusal::GroupStale);
                None // stale_group_epoch
            }
            Some(m) => Some((What::GroupLeave(epoch), Some(m.dev))),
        }
    }

    /// GRP-11: the admin removes a member that left, as GroupRemove does, in the commit of its
    /// leave.
    pub(crate) fn remove_leaver(&self, s: &mut State, admin: Dev, leaver: Dev) {
        let Some(g) = s.dev(admin).group.clone() else {
            return;
        };
        let members: Vec<Dev> = g
            .members
            .iter()
            .map(|m| m.dev)
            .filter(|d| *d != leaver)
            .collect();
        self.distribute(s, admin, members, g.epoch + 1, Some(leaver), g.handover);
        s.flags |= flag::LEAVE_REMOVED;
    }

    /// GRP-12 at the new admin: a handover over the pairwise session `ses`. Returns what to
    /// commit and the handover, or `None` to refuse it.
    pub(crate) fn accept_handover(
        &self,
        s: &State,
        d: Dev,
        ses: &Session,
        f: &[TermId],
    ) -> Option<(What, TermId)> {
        let t = self.t();
        let refuse = || {
            self.refusals.hit(Refusal::GroupHandoverRefused);
            None
        };
        let [_, proof] = *f else {
            return refuse();
        };
        let Some(g) = s.dev(d).group.as_ref() else {
            return refuse(); // not_a_member
        };
        if g.members.first().is_none_or(|a| a.iks != ses.peer_iks) {
            return refuse(); // not_group_admin
        }
        let Some((epoch, to, iks)) = self.handover_fields(proof) else {
            return refuse();
        };
        if to != d || iks != t.pk(Atom::IdSig(Party::Dev(d))) {
            return refuse(); // not_a_member
        }
        if g.epoch.checked_add(1) != Some(epoch) {
            return refuse(); // stale_group_epoch
        }
        if !self.verify(proof, ses.peer_iks) {
            return refuse(); // bad_signature
        }
        Some((What::GroupHandover(epoch), proof))
    }

    /// GRP-12: the new admin issues the handover's epoch: the same members with itself at index
    /// 0 and the old admin where it was, fresh keys, sent as handed-over group keys (kind 9).
    pub(crate) fn take_over(&self, s: &mut State, d: Dev, proof: TermId, epoch: u8) {
        let Some(g) = s.dev(d).group.clone() else {
            return;
        };
        let mut members: Vec<Dev> = g.members.iter().map(|m| m.dev).collect();
        let Some(i) = members.iter().position(|m| *m == d) else {
            return;
        };
        members.swap(0, i);
        self.distribute(s, d, members, epoch, None, Some(proof));
    }

    /// GRP-2, GRP-3, GRP-6: a new group epoch and its key, sent to every member; with the
    /// handover that made `admin` admin, as handed-over group keys (kind 9, GRP-12).
    ///
    /// A member the admin cannot reach is skipped: the scenarios give every admin a session with
    /// every member (the new admin's directory fetch of GRP-12 is not modelled), and GRP-3's
    /// property would show a member left out.
    fn distribute(
        &self,
        s: &mut State,
        admin: Dev,
        members: Vec<Dev>,
        epoch: u8,
        removed: Option<Dev>,
        handover: Option<TermId>,
    ) {
        let t = self.t();
        let old = s.dev(admin).group.clone();
        let (gmk, seeds) = match (&old, removed, self.variant) {
            (Some(g), Some(_), Variant::NoRekeyOnRemoval) => (g.gmk, g.seeds),
            _ => (
                t.atom(Atom::GroupKey(epoch)),
                t.atom(Atom::GroupSeeds(epoch)),
            ),
        };
        let list: Vec<Member> = members
            .iter()
            .map(|d| Member {
                dev: *d,
                iks: t.pk(Atom::IdSig(Party::Dev(*d))),
            })
            .collect();
        let mut fields = vec![
            t.cnst(Const::Shape(Shape::Members)),
            t.cnst(Const::GroupId),
            t.num(epoch),
        ];
        for m in &list {
            fields.push(t.cnst(Const::UserId(Party::Dev(m.dev))));
            fields.push(m.iks);
        }
        let membership = t.sig(t.atom(Atom::IdSig(Party::Dev(admin))), t.tup(&fields));
        let view = self.new_view(old.as_ref(), epoch, list, gmk, seeds, true, handover);
        let dev = s.dev_mut(admin);
        dev.group = Some(view);
        dev.group_exit = None;
        let key = match handover {
            Some(h) => t.tup(&[
                t.cnst(Const::Kind(Kind::HandedOverKey)),
                h,
                membership,
                gmk,
                seeds,
            ]),
            None => t.tup(&[t.cnst(Const::Kind(Kind::GroupKey)), membership, gmk, seeds]),
        };
        let reach: Vec<Dev> = members
            .iter()
            .copied()
            .filter(|m| *m != admin && self.can_send(s, admin, *m))
            .collect();
        for m in reach {
            self.send_content(s, admin, m, What::GroupKey(epoch), key);
        }
        if let Some(r) = removed.filter(|r| self.can_send(s, admin, *r)) {
            let note = t.tup(&[t.cnst(Const::Kind(Kind::GroupRemoved)), membership]);
            self.send_content(s, admin, r, What::GroupRemoved(epoch), note);
        }
        let offline = mask(
            members
                .iter()
                .chain(removed.iter())
                .copied()
                .filter(|d| !s.dev(*d).online),
        );
        s.missed_group_change |= offline;
        s.group_epochs.push(GroupEpochRec {
            epoch,
            admin,
            members: mask(members.iter().copied()),
            gmk,
            seeds,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn new_view(
        &self,
        old: Option<&GroupView>,
        epoch: u8,
        members: Vec<Member>,
        gmk: TermId,
        seeds: TermId,
        verified_admin: bool,
        handover: Option<TermId>,
    ) -> GroupView {
        let t = self.t();
        let prev = old.map(|g| PrevGroupEpoch {
            epoch: g.epoch,
            tag: g.tag,
            chains: g
                .members
                .iter()
                .enumerate()
                .filter(|(_, m)| members.iter().any(|x| x.dev == m.dev))
                .map(|(i, m)| {
                    (
                        i as u8,
                        m.clone(),
                        member_chain(t, g.gmk, g.seeds, i as u8),
                        g.recv[i],
                    )
                })
                .collect(),
        });
        GroupView {
            epoch,
            recv: vec![0; members.len()],
            members,
            gmk,
            seeds,
            tag: t.kdf(Label::GroupTag, &[seeds]),
            sent: 0,
            verified_admin,
            prev,
            handed_over: false,
            handover,
            accepted_under: old.and_then(|g| g.members.first()).map(|m| m.dev),
        }
    }

    /// GRP-4: a group key (kind 4, or kind 9 with its handover, GRP-12) or removal notice
    /// arriving over the pairwise session `ses`. Returns what to commit, or `None` to refuse it.
    pub(crate) fn accept_group_key(
        &self,
        s: &mut State,
        d: Dev,
        ses: &Session,
        f: &[TermId],
    ) -> Option<What> {
        let t = self.t();
        // GRP-12: a handed-over group key is the handover, then a group key.
        let handed = t.get(*f.first()?) == Term::Const(Const::Kind(Kind::HandedOverKey));
        let (proof, f) = if handed {
            (Some(*f.get(1)?), [&f[..1], f.get(2..)?].concat())
        } else {
            (None, f.to_vec())
        };
        let Term::Sig { body, .. } = t.get(*f.get(1)?) else {
            return None;
        };
        if !self.verify(f[1], ses.peer_iks) {
            self.refusals.hit(Refusal::GroupNotSignedByPeer);
            return None; // not_group_admin
        }
        let fields = t.fields(body)?;
        let epoch = num(t, *fields.get(2)?)?;
        let mut members = Vec::new();
        for pair in fields.get(3..)?.chunks(2) {
            let [uid, iks] = *pair else { return None };
            let Term::Const(Const::UserId(Party::Dev(dev))) = t.get(uid) else {
                return None;
            };
            members.push(Member { dev, iks });
        }
        let Some(first) = members.first().filter(|m| m.iks == ses.peer_iks).cloned() else {
            self.refusals.hit(Refusal::GroupNotSignedByPeer);
            return None; // the admin is the first member
        };
        // GRP-4: for a known group, the admin is the group's admin; GRP-12: or the member a
        // handover signed by that admin names.
        let held = s.dev(d).group.as_ref().and_then(|g| {
            let a = g.members.first()?;
            (a.iks != ses.peer_iks).then(|| (a.clone(), g.epoch))
        });
        let mut new_admin = false;
        if let Some((admin, held_epoch)) = held {
            new_admin =
                proof.is_some_and(|p| self.handover_holds(p, &admin, &first, epoch, held_epoch));
            if proof.is_some() && !new_admin {
                self.refusals.hit(Refusal::GroupHandoverRefused);
            }
            if !new_admin {
                self.refusals.hit(Refusal::GroupNotAdmin);
                if self.variant != Variant::AcceptNonAdminGroupKey {
                    return None; // not_group_admin
                }
            }
        }
        // GRP-6, GRP-11: with no group, a device that left refuses every group key until its
        // removal notice; after one, only later epochs are fresh.
        let dev = s.dev(d);
        let passed = match (&dev.group, dev.group_exit) {
            (Some(g), _) => Some(g.epoch),
            (None, Some(GroupExit::Left(e) | GroupExit::Removed(e))) => Some(e),
            (None, None) => None,
        };
        let left = dev.group.is_none() && matches!(dev.group_exit, Some(GroupExit::Left(_)));
        let fresh = passed.is_none_or(|p| epoch > p);
        let is_member = members.iter().any(|m| m.dev == d);
        if t.get(f[0]) != Term::Const(Const::Kind(Kind::GroupRemoved)) {
            let (&gmk, &seeds) = (f.get(2)?, f.get(3)?);
            if !is_member {
                self.refusals.hit(Refusal::GroupNotMember);
                return None; // not_a_member
            }
            if !fresh || left {
                self.refusals.hit(Refusal::GroupStale);
            } else {
                let old = s.dev(d).group.clone();
                let view =
                    self.new_view(old.as_ref(), epoch, members, gmk, seeds, ses.verified, None);
                let dev = s.dev_mut(d);
                dev.group = Some(view);
                dev.group_exit = None;
                if new_admin {
                    s.flags |= flag::HANDOVER_ACCEPTED;
                }
            }
            Some(What::GroupKey(epoch))
        } else {
            if is_member {
                self.refusals.hit(Refusal::GroupNotMember);
                return None;
            }
            if !fresh {
                self.refusals.hit(Refusal::GroupStale);
            } else {
                let dev = s.dev_mut(d);
                dev.group = None;
                dev.group_exit = Some(GroupExit::Removed(epoch));
            }
            Some(What::GroupRemoved(epoch))
        }
    }

    /// GRP-12: whether a handed-over key's handover makes `first`, the key's first member, the
    /// admin after `admin`, the admin the member holds: it names `first` with its `IKs`, `admin`
    /// signed it, and its epoch is not above the key's and above every epoch held (`held`), so
    /// an old handover cannot be replayed once the role moved on.
    fn handover_holds(
        &self,
        proof: TermId,
        admin: &Member,
        first: &Member,
        key_epoch: u8,
        held: u8,
    ) -> bool {
        let Some((epoch, to, iks)) = self.handover_fields(proof) else {
            return false;
        };
        if to != first.dev || iks != first.iks {
            return false;
        }
        if self.variant == Variant::SkipHandoverCheck {
            return true;
        }
        self.verify(proof, admin.iks) && epoch <= key_epoch && epoch > held
    }

    /// GRP-7, GRP-8: seals `inner` on the device's own chain of its current group epoch.
    /// Returns the envelope, its message id, the group epoch and the other members.
    fn seal_group(&self, s: &mut State, from: Dev, inner: TermId) -> (TermId, TermId, GroupView) {
        let t = self.t();
        let g = s
            .dev(from)
            .group
            .clone()
            .expect("sealing a group message needs the group");
        let idx = g
            .members
            .iter()
            .position(|m| m.dev == from)
            .expect("a member") as u8;
        let mut ck = member_chain(t, g.gmk, g.seeds, idx);
        for _ in 0..g.sent {
            ck = t.kdf(Label::Chain, &[ck]);
        }
        let n = g.sent;
        let body = t.tup(&[
            t.cnst(Const::GroupId),
            t.num(g.epoch),
            t.num(idx),
            t.num(n),
            inner,
        ]);
        let signed = t.sig(
            t.atom(Atom::IdSig(Party::Dev(from))),
            t.tup(&[t.cnst(Const::Label(Label::SigGroupMsg)), body]),
        );
        let payload = t.aead(t.kdf(Label::Msg, &[ck]), n, signed);
        let env = t.tup(&[
            t.cnst(Const::Shape(Shape::Group)),
            g.tag,
            t.num(idx),
            t.num(n),
            payload,
        ]);
        if self.variant != Variant::ReuseMessageKey {
            if let Some(v) = s.dev_mut(from).group.as_mut() {
                v.sent += 1;
            }
        }
        (env, t.kdf(Label::Id, &[ck]), g)
    }

    /// GRP-7, GRP-8, GRP-10: seal a group text, keep it in the outbox once per other member
    /// (RX-6) and publish it to each of them.
    fn group_send(&self, s: &mut State, from: Dev, msg: u8) {
        let t = self.t();
        let inner = t.tup(&[
            t.cnst(Const::Kind(Kind::Text)),
            t.atom(Atom::GroupText(msg)),
        ]);
        let (env, id, g) = self.seal_group(s, from, inner);
        let online = s.dev(from).online;
        for m in g.members.iter().filter(|m| m.dev != from) {
            s.dev_mut(from).outbox.push(Out {
                to: m.dev,
                what: What::GroupText(msg),
                env,
                id,
                published: online,
                resends: 0,
            });
            if online {
                self.publish(s, m.dev, env);
            }
        }
        s.group_log.push(GroupSent {
            msg,
            from,
            epoch: g.epoch,
            members: mask(g.members.iter().map(|m| m.dev)),
            env,
        });
    }

    /// GRP-10: a receipt naming a group message, as a group message to every other member.
    fn group_receipt(&self, s: &mut State, d: Dev, id: TermId) {
        if s.dev(d).group.is_none() {
            return;
        }
        let t = self.t();
        let inner = t.tup(&[t.cnst(Const::Kind(Kind::Receipt)), id]);
        let (env, _, g) = self.seal_group(s, d, inner);
        for m in g.members.iter().filter(|m| m.dev != d) {
            self.publish(s, m.dev, env);
        }
    }

    /// GRP-10, RX-6: a duplicate of a committed group message is answered with its receipt again.
    pub(crate) fn group_receipt_again(
        &self,
        s: &mut State,
        d: Dev,
        from: Dev,
        epoch: u8,
        n: u8,
        env: TermId,
    ) {
        let hit = s
            .dev(d)
            .store
            .iter()
            .find(|x| {
                x.slot.is_none() && x.from == from && x.epoch == epoch && x.n == n && x.env == env
            })
            .map(|x| x.id);
        if let Some(id) = hit {
            self.group_receipt(s, d, id);
        }
    }

    /// RX-1, GRP-5, GRP-7: opens and commits a group message.
    pub(crate) fn open_group(
        &self,
        s: &mut State,
        d: Dev,
        env: TermId,
        f: &[TermId],
    ) -> GroupOutcome {
        let t = self.t();
        let [_, tag, idx, n, payload] = *f else {
            return GroupOutcome::Refused;
        };
        let (Some(idx), Some(n)) = (num(t, idx), num(t, n)) else {
            return GroupOutcome::Refused;
        };
        let Some(g) = s.dev(d).group.clone() else {
            return GroupOutcome::Unknown;
        };
        let (epoch, member, ck0, got, current) = if g.tag == tag {
            let Some(m) = g.members.get(idx as usize) else {
                return GroupOutcome::Refused;
            };
            (
                g.epoch,
                m.clone(),
                member_chain(t, g.gmk, g.seeds, idx),
                g.recv[idx as usize],
                true,
            )
        } else if let Some(p) = g.prev.as_ref().filter(|p| p.tag == tag) {
            let Some((_, m, ck0, got)) = p.chains.iter().find(|c| c.0 == idx) else {
                return GroupOutcome::Refused;
            };
            (p.epoch, m.clone(), *ck0, *got, false)
        } else {
            return GroupOutcome::Unknown;
        };
        if member.dev == d || n > self.config.max_counter {
            self.refusals.hit(Refusal::GroupMessageRefused);
            return GroupOutcome::Refused;
        }
        if got >> n & 1 == 1 {
            return GroupOutcome::Duplicate {
                from: member.dev,
                epoch,
                n: idx << 4 | n,
            };
        }
        let mut ck = ck0;
        for _ in 0..n {
            ck = t.kdf(Label::Chain, &[ck]);
        }
        let Some(signed) = open(self, payload, t.kdf(Label::Msg, &[ck]), n) else {
            self.refusals.hit(Refusal::GroupMessageRefused);
            return GroupOutcome::Refused;
        };
        if !self.verify(signed, member.iks) {
            self.refusals.hit(Refusal::GroupMessageRefused);
            return GroupOutcome::Refused; // bad_signature (GRP-7)
        }
        let Term::Sig { body, .. } = t.get(signed) else {
            return GroupOutcome::Refused;
        };
        let Some([_, body]) = t
            .fields(body)
            .and_then(|v| <[TermId; 2]>::try_from(v.as_slice()).ok())
        else {
            return GroupOutcome::Refused;
        };
        let Some([_, e, i, nn, inner]) = t
            .fields(body)
            .and_then(|v| <[TermId; 5]>::try_from(v.as_slice()).ok())
        else {
            return GroupOutcome::Refused;
        };
        if (num(t, e), num(t, i), num(t, nn)) != (Some(epoch), Some(idx), Some(n)) {
            return GroupOutcome::Refused;
        }
        let Some(inner) = t.fields(inner) else {
            return GroupOutcome::Refused;
        };
        let receipt =
            inner.first().map(|x| t.get(*x)) == Some(Term::Const(Const::Kind(Kind::Receipt)));
        let what = match inner.get(1).and_then(|x| t.as_atom(*x)) {
            Some(Atom::GroupText(k)) if !receipt => Some(What::GroupText(k)),
            Some(Atom::Forged(k)) if !receipt => Some(What::Forged(k)),
            _ if receipt => None,
            _ => return GroupOutcome::Refused,
        };
        if let Some(v) = s.dev_mut(d).group.as_mut() {
            if current {
                v.recv[idx as usize] |= 1 << n;
            } else if let Some(c) = v
                .prev
                .as_mut()
                .and_then(|p| p.chains.iter_mut().find(|c| c.0 == idx))
            {
                c.3 |= 1 << n;
            }
        }
        let Some(what) = what else {
            // GRP-10: a receipt from `member` for one of the device's group messages.
            if let Some(&rid) = inner.get(1) {
                s.dev_mut(d)
                    .outbox
                    .retain(|o| !(o.to == member.dev && o.id == rid));
            }
            return GroupOutcome::Committed;
        };
        let honest = !s.is_compromised(d) && !s.is_compromised(member.dev);
        let id = t.kdf(Label::Id, &[ck]);
        s.dev_mut(d).store.push(Stored {
            what,
            from: member.dev,
            verified: g.verified_admin,
            slot: None,
            epoch,
            n: idx << 4 | n,
            id,
            env,
            honest,
        });
        self.group_receipt(s, d, id);
        GroupOutcome::Committed
    }
}
