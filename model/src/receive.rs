//! Receiving: open (RX-1..RX-3), commit with the receipt (RX-4, RX-5), acknowledge (Req6),
//! duplicates (RX-2), retry of early envelopes (RX-8), and the replay cache (X3DH-8).
//!
//! ```text
//!  broker queue --Receive--> open --ok--> commit {store, chains, receipt}, ack: broker drops it
//!                              |--duplicate--> receipt again, ack
//!                              |--unknown tag--> keep for retry, ack
//!                              '--refused--> nothing changes, ack
//! ```
//!
//! In the broken variant `ack-before-commit` the order is Receive (ack at once) then Commit, and
//! a GoOffline in between loses the message for good.

use crate::group::GroupOutcome;
use crate::model::SottoModel;
use crate::ratchet::{Opened, names_message_of, num, open_counter};
use crate::refusal::Refusal;
use crate::state::{Hold, State, Stored, What, flag};
use crate::term::{Atom, Const, Dev, Kind, Shape, Slot, Term, TermId};
use crate::variant::Variant;

/// What opening an envelope gave.
enum Outcome {
    /// Opened on pairwise session `session`; `new_keys` when a session or epoch was created.
    Pairwise {
        session: usize,
        inner: TermId,
        id: TermId,
        epoch: u8,
        n: u8,
        new_keys: bool,
    },
    /// A group message was opened and committed by [`crate::group`]; `new_keys` never.
    Group,
    /// RX-2 duplicate on a session's epoch and counter.
    Duplicate { slot: Slot, epoch: u8, n: u8 },
    /// RX-2 duplicate of a group message: sender, group epoch, index and counter.
    GroupDuplicate { from: Dev, epoch: u8, n: u8 },
    /// Unknown routing tag or group (RX-8): keep for retry.
    Unknown,
    /// A first message that claims another identity for a contact (RX-9): kept with the
    /// envelopes of RX-8, unopened, until the person decides (which the model never does).
    Held,
    /// Refused; nothing changes.
    Refused,
}

impl SottoModel {
    /// Receive: the broker delivers the first waiting packet; the device opens it, commits the
    /// result with its receipt in one transaction (RX-3, RX-4, RX-5) and acknowledges it, and the
    /// broker drops its copy (Req6). A crash between commit and ack is a redelivery, which the
    /// broker's Duplicate explores. In the variant `ack-before-commit` the device acknowledges
    /// first and commits in a later step.
    pub(crate) fn receive(&self, s: &mut State, d: Dev) -> bool {
        if s.queues[d.ix()].is_empty() {
            return false;
        }
        let env = s.queues[d.ix()].remove(0).env;
        self.mark_acked(s, d, env);
        if self.variant == Variant::AckBeforeCommit {
            s.dev_mut(d).hold = Hold::Acked(env);
        } else {
            self.process(s, d, env);
        }
        true
    }

    /// Commit (variant `ack-before-commit` only): handle what was acknowledged already.
    pub(crate) fn commit_held(&self, s: &mut State, d: Dev) -> bool {
        let Hold::Acked(env) = s.dev(d).hold else {
            return false;
        };
        self.process(s, d, env);
        s.dev_mut(d).hold = Hold::Idle;
        true
    }

    fn mark_acked(&self, s: &mut State, d: Dev, env: TermId) {
        for r in s.log_mut().iter_mut().filter(|r| r.to == d && r.env == env) {
            r.acked = true;
        }
    }

    /// Handles one envelope, then retries kept envelopes if it created keys.
    pub(crate) fn process(&self, s: &mut State, d: Dev, env: TermId) {
        if self.process_one(s, d, env) {
            self.retry_pending(s, d);
        }
    }

    fn retry_pending(&self, s: &mut State, d: Dev) {
        loop {
            let pending = std::mem::take(&mut s.dev_mut(d).retry);
            if pending.is_empty() {
                return;
            }
            let mut again = false;
            for env in pending {
                again |= self.process_one(s, d, env);
                if !s.dev(d).retry.contains(&env) {
                    s.flags |= flag::RETRIED;
                }
            }
            if !again {
                return;
            }
        }
    }

    /// Returns whether new keys (session, epoch, group epoch) were created.
    fn process_one(&self, s: &mut State, d: Dev, env: TermId) -> bool {
        let outcome = self.open_envelope(s, d, env);
        match outcome {
            Outcome::Pairwise {
                session,
                inner,
                id,
                epoch,
                n,
                new_keys,
            } => {
                self.note_opened(s, d, session, inner, epoch);
                // A group key is new keys too: a group message kept for it opens now (RX-8).
                self.commit_pairwise(s, d, session, inner, id, epoch, n, env) || new_keys
            }
            Outcome::Group => false,
            Outcome::Duplicate { slot, epoch, n } => {
                self.refusals.hit(Refusal::Duplicate);
                s.flags |= flag::DUPLICATE_DROPPED;
                self.receipt_again(s, d, slot, epoch, n, env);
                false
            }
            Outcome::GroupDuplicate { from, epoch, n } => {
                self.refusals.hit(Refusal::Duplicate);
                s.flags |= flag::DUPLICATE_DROPPED;
                self.group_receipt_again(s, d, from, epoch, n, env);
                false
            }
            Outcome::Unknown | Outcome::Held => {
                if matches!(outcome, Outcome::Unknown) {
                    self.refusals.hit(Refusal::KeptForRetry);
                }
                let r = &mut s.dev_mut(d).retry;
                if !r.contains(&env) {
                    r.push(env);
                    r.sort_unstable();
                }
                false
            }
            Outcome::Refused => false,
        }
    }

    fn open_envelope(&self, s: &mut State, d: Dev, env: TermId) -> Outcome {
        let t = self.t();
        let Some(f) = t.fields(env) else {
            return Outcome::Refused;
        };
        let shape = match f.first().map(|x| t.get(*x)) {
            Some(Term::Const(Const::Shape(sh))) => sh,
            _ => return Outcome::Refused,
        };
        match shape {
            Shape::First => self.open_first(s, d, &f),
            Shape::EpochStart => {
                let e_pub = f.get(2).copied();
                if let Some(o) = self.on_known_ratchet(s, d, e_pub, &f, 6) {
                    return o;
                }
                match self.open_epoch_start(s, d, &f) {
                    Ok((i, ses, inner, n, id)) => {
                        let epoch = ses.newest;
                        s.dev_mut(d).sessions[i] = ses;
                        Outcome::Pairwise {
                            session: i,
                            inner,
                            id,
                            epoch,
                            n,
                            new_keys: true,
                        }
                    }
                    Err(true) => Outcome::Unknown,
                    Err(false) => {
                        self.refusals.hit(Refusal::EpochRefused);
                        Outcome::Refused
                    }
                }
            }
            Shape::Data => {
                let [_, tag, n, payload] = *f.as_slice() else {
                    return Outcome::Refused;
                };
                self.open_on_tag(s, d, |c| c.tag == tag, n, payload)
                    .unwrap_or(Outcome::Unknown)
            }
            Shape::Group => match self.open_group(s, d, env, &f) {
                GroupOutcome::Committed => Outcome::Group,
                GroupOutcome::Duplicate { from, epoch, n } => {
                    Outcome::GroupDuplicate { from, epoch, n }
                }
                GroupOutcome::Unknown => Outcome::Unknown,
                GroupOutcome::Refused => Outcome::Refused,
            },
            _ => Outcome::Refused,
        }
    }

    /// An envelope for a receiving chain already set up (found by `pick`): RX-2.
    fn open_on_tag(
        &self,
        s: &mut State,
        d: Dev,
        pick: impl Fn(&crate::state::RecvChain) -> bool,
        n: TermId,
        payload: TermId,
    ) -> Option<Outcome> {
        let t = self.t();
        let (i, j) = s
            .dev(d)
            .sessions
            .iter()
            .enumerate()
            .find_map(|(i, ses)| ses.recv.iter().position(&pick).map(|j| (i, j)))?;
        let Some(n) = num(t, n) else {
            return Some(Outcome::Refused);
        };
        let mut chain = s.dev(d).sessions[i].recv[j].clone();
        let slot = s.dev(d).sessions[i].slot;
        Some(match open_counter(self, &mut chain, n, payload) {
            None => {
                self.refusals.hit(Refusal::DataRefused);
                Outcome::Refused
            }
            Some(Opened::Duplicate) => Outcome::Duplicate {
                slot,
                epoch: chain.epoch,
                n,
            },
            Some(Opened::Fresh(inner, id)) => {
                let epoch = chain.epoch;
                s.dev_mut(d).sessions[i].recv[j] = chain;
                Outcome::Pairwise {
                    session: i,
                    inner,
                    id,
                    epoch,
                    n,
                    new_keys: false,
                }
            }
        })
    }

    /// EPOCH-5: a header already processed (same ratchet key) skips to its payload.
    fn on_known_ratchet(
        &self,
        s: &mut State,
        d: Dev,
        ratchet: Option<TermId>,
        f: &[TermId],
        n_at: usize,
    ) -> Option<Outcome> {
        let r = ratchet?;
        let (n, payload) = (*f.get(n_at)?, *f.get(n_at + 1)?);
        self.open_on_tag(s, d, |c| c.ratchet == r, n, payload)
    }

    /// X3DH-6, X3DH-8, X3DH-9.
    fn open_first(&self, s: &mut State, d: Dev, f: &[TermId]) -> Outcome {
        let Some(&ek_pub) = f.get(1) else {
            return Outcome::Refused;
        };
        if self.variant != Variant::NoReplayCache && s.dev(d).replay_cache.contains(&ek_pub) {
            // Routed to the session it created: a later message of epoch 0 that still carries
            // the header (EPOCH-3), or a resend, a duplicate or a replay.
            let o = self
                .on_known_ratchet(s, d, Some(ek_pub), f, 6)
                .unwrap_or(Outcome::Refused); // replayed_first_message
            if !matches!(o, Outcome::Pairwise { .. }) {
                self.refusals.hit(Refusal::FirstReplayed);
                s.flags |= flag::REPLAY_REJECTED;
            }
            return o;
        }
        let Some(acc) = self.x3dh_respond(s, d, f) else {
            if s.dev(d).sessions.iter().any(|x| {
                x.recv
                    .first()
                    .is_some_and(|c| c.epoch == 0 && c.ratchet == ek_pub)
            }) {
                s.flags |= flag::REPLAY_REJECTED;
            }
            return Outcome::Refused;
        };
        if acc.claims_new_identity {
            self.refusals.hit(Refusal::FirstIdentityChanged);
            if self.variant != Variant::SkipIdentityComparison {
                return Outcome::Held; // identity_changed
            }
        }
        let dev = s.dev_mut(d);
        if let Some(c) = acc.contact {
            dev.set_contact(c);
        }
        if let Some(k) = acc.opk {
            dev.opk_used |= 1 << k; // X3DH-9
        }
        if self.variant != Variant::NoReplayCache {
            dev.replay_cache.push(ek_pub);
            dev.replay_cache.sort_unstable();
        }
        dev.sessions.push(acc.session);
        Outcome::Pairwise {
            session: dev.sessions.len() - 1,
            inner: acc.inner,
            id: acc.id,
            epoch: 0,
            n: acc.n,
            new_keys: true,
        }
    }

    /// EPOCH-3: the device knows the peer has its sending epoch once it opens a message of a
    /// newer peer epoch, or a receipt naming one of the epoch's messages; from then on the
    /// epoch's messages are data messages.
    fn note_opened(&self, s: &mut State, d: Dev, i: usize, inner: TermId, epoch: u8) {
        let t = self.t();
        let Some(send) = s.dev(d).sessions[i].send.as_ref() else {
            return;
        };
        if send.header.is_none() {
            return;
        }
        let receipted = t.fields(inner).is_some_and(|f| {
            f.first().map(|x| t.get(*x)) == Some(Term::Const(Const::Kind(Kind::Receipt)))
                && f.get(1).is_some_and(|id| names_message_of(t, send, *id))
        });
        if epoch > send.epoch || receipted {
            if let Some(c) = s.dev_mut(d).sessions[i].send.as_mut() {
                c.header = None;
            }
        }
    }

    /// RX-4/RX-5: commits an opened pairwise message and seals its receipt; a leave or a
    /// handover the device accepts makes its new group epoch in the same transaction (GRP-11,
    /// GRP-12). Returns whether it installed a group epoch.
    #[allow(clippy::too_many_arguments)]
    fn commit_pairwise(
        &self,
        s: &mut State,
        d: Dev,
        i: usize,
        inner: TermId,
        id: TermId,
        epoch: u8,
        n: u8,
        env: TermId,
    ) -> bool {
        let t = self.t();
        let ses = s.dev(d).sessions[i].clone();
        let Some(f) = t.fields(inner) else {
            return false;
        };
        let kind = match f.first().map(|x| t.get(*x)) {
            Some(Term::Const(Const::Kind(k))) => k,
            _ => return false,
        };
        let group_before = s.dev(d).group.as_ref().map(|g| g.epoch);
        let mut leaver = None;
        let mut handover = None;
        let what = match kind {
            // GRP-9: the admin learns a member holds the epoch; nothing is stored or receipted.
            Kind::GroupAck => return false,
            Kind::Receipt => {
                if let Some(&rid) = f.get(1) {
                    s.dev_mut(d)
                        .outbox
                        .retain(|o| !(o.to == ses.peer && o.id == rid));
                }
                return false;
            }
            Kind::Text => match f.get(1).and_then(|x| t.as_atom(*x)) {
                Some(Atom::Text(k)) => What::Text(k),
                Some(Atom::Forged(k)) => What::Forged(k),
                _ => return false,
            },
            Kind::KeyUpdate => match f.get(1).and_then(|x| num(t, *x)) {
                Some(k) => What::KeyUpdate(k),
                None => return false,
            },
            Kind::GroupKey | Kind::GroupRemoved | Kind::HandedOverKey => {
                match self.accept_group_key(s, d, &ses, &f) {
                    Some(w) => w,
                    None => return false,
                }
            }
            Kind::GroupLeave => match self.accept_leave(s, d, &ses, &f) {
                Some((w, r)) => {
                    leaver = r;
                    w
                }
                None => return false,
            },
            Kind::GroupHandover => match self.accept_handover(s, d, &ses, &f) {
                Some((w, proof)) => {
                    handover = Some(proof);
                    w
                }
                None => return false,
            },
        };
        if matches!(what, What::Forged(_)) {
            s.dev_mut(d).sessions[i].tainted = true;
        }
        let honest = !s.is_compromised(d) && !s.is_compromised(ses.peer);
        s.dev_mut(d).store.push(Stored {
            what,
            from: ses.peer,
            verified: ses.verified,
            slot: Some(ses.slot),
            epoch,
            n,
            id,
            env,
            honest,
        });
        self.note_commit(s, d, &ses, what, epoch);
        self.send_receipt(s, d, ses.peer, id);
        if let Some(r) = leaver {
            self.remove_leaver(s, d, r);
        }
        if let (Some(proof), What::GroupHandover(e)) = (handover, what) {
            self.take_over(s, d, proof, e);
        }
        if let What::GroupKey(e) = what {
            if s.dev(d).group.as_ref().map(|g| g.epoch) != group_before {
                self.send_group_ack(s, d, ses.peer, e);
            }
        }
        matches!(what, What::GroupKey(_))
    }

    /// GRP-9: after installing a group epoch, the member confirms it to the admin, on the newest
    /// session with the admin, published once (like a receipt).
    fn send_group_ack(&self, s: &mut State, d: Dev, admin: Dev, epoch: u8) {
        let t = self.t();
        let Some(i) = s.dev(d).sending_session(admin) else {
            return;
        };
        let inner = t.tup(&[t.cnst(Const::Kind(Kind::GroupAck)), t.num(epoch)]);
        let (env, _, _) = self.seal_on_session(s, d, i, inner, false);
        self.publish(s, admin, env);
    }

    fn note_commit(
        &self,
        s: &mut State,
        d: Dev,
        ses: &crate::state::Session,
        what: What,
        epoch: u8,
    ) {
        if s.restarted && matches!(what, What::Text(_)) {
            s.flags |= flag::DELIVERED_AFTER_RESTART;
        }
        if matches!(what, What::GroupKey(_)) && s.missed_group_change >> d.ix() & 1 == 1 {
            s.flags |= flag::OFFLINE_CAUGHT_UP;
        }
        if let (Some(v), What::Text(_)) = (s.compromised, what) {
            let heal = if v == d {
                ses.heal
            } else if v == ses.peer {
                s.dev(v)
                    .sessions
                    .iter()
                    .find(|x| x.slot == ses.slot)
                    .and_then(|x| x.heal)
            } else {
                None
            };
            if heal.is_some_and(|h| epoch >= h) && !ses.tainted {
                s.flags |= flag::HEALED;
            }
        }
    }

    /// RX-5: a receipt naming one message id, on the newest session with the peer.
    fn send_receipt(&self, s: &mut State, d: Dev, peer: Dev, id: TermId) {
        let t = self.t();
        let Some(i) = s.dev(d).sending_session(peer) else {
            return;
        };
        let inner = t.tup(&[t.cnst(Const::Kind(Kind::Receipt)), id]);
        let (env, _, _) = self.seal_on_session(s, d, i, inner, false);
        self.publish(s, peer, env);
    }

    /// A duplicate of a committed message is answered with its receipt again, so that a lost
    /// receipt cannot make the sender resend forever (RX-5, RX-6).
    fn receipt_again(&self, s: &mut State, d: Dev, slot: Slot, epoch: u8, n: u8, env: TermId) {
        let hit = s
            .dev(d)
            .store
            .iter()
            .find(|x| x.slot == Some(slot) && x.epoch == epoch && x.n == n && x.env == env)
            .map(|x| (x.from, x.id));
        if let Some((peer, id)) = hit {
            self.send_receipt(s, d, peer, id);
        }
    }
}
