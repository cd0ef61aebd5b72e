//! The server side as a Dolev-Yao attacker: broker faults, replays, injections, leaks.
//!
//! The attacker runs the membership service (it issues certificates and may hand out forged
//! bundles, see [`crate::handshake`]) and the broker (persistent-session queues, QoS 1). Within
//! its budget it may:
//!
//! | step | effect |
//! |---|---|
//! | Drop | remove a waiting packet |
//! | Duplicate | queue a second copy of a waiting packet |
//! | Reorder | move the newest waiting packet to the front |
//! | Replay | queue a recorded first message again |
//! | Inject | queue a message it *built* from what it knows (typed candidates below) |
//! | Restart | lose every queue |
//! | Compromise | learn a device's current state (keys, sessions, chains, group key) |
//! | Steal | learn a device's store, sealed under the passphrase-derived key (Req7) |
//! | IssueCert | mint a certificate for a user id |
//!
//! Injection is bounded to typed candidates, each enabled only if the attacker can build every
//! part of it: a first message claiming to come from some user (it needs `DH(IKd_claim,
//! SPK_target)`), or a data message on a target's receiving chain (it needs that chain key).
//! The message history in a store is not part of a Compromise: forward secrecy is about the
//! keys, and a history the user keeps is readable to whoever holds the unlocked device.

use crate::action::{Action, Injection};
use crate::model::{SERVER_SLOT, SottoModel};
use crate::ratchet::{chain_key, seal_chain, skipped_keys};
use crate::scenario::Fault;
use crate::state::{State, What};
use crate::term::{Atom, Const, Dev, Kind, Label, Party, Shape, Term, TermId};

impl SottoModel {
    /// The open window of a fault with budget left, if any.
    fn window(&self, s: &State, f: Fault) -> Option<usize> {
        self.config
            .budgets
            .allow
            .iter()
            .enumerate()
            .position(|(i, a)| {
                a.fault == f && (a.from..a.to).contains(&s.pc) && s.used[i] < a.count
            })
    }

    fn budget_left(&self, s: &State, f: Fault) -> bool {
        self.window(s, f).is_some()
    }

    /// Takes one step of a fault from its open window.
    fn spend(&self, s: &mut State, f: Fault) {
        if let Some(i) = self.window(s, f) {
            s.used[i] += 1;
        }
    }

    /// Attacker actions enabled in a state.
    pub fn attacker_actions(&self, s: &State, out: &mut Vec<Action>) {
        for d in self.devs() {
            let q = &s.queues[d.ix()];
            let waiting: Vec<TermId> = q.iter().map(|p| p.env).collect();
            for (i, env) in waiting.iter().enumerate() {
                if waiting[..i].contains(env) {
                    continue;
                }
                let index = i as u8;
                if self.budget_left(s, Fault::Drop) {
                    out.push(Action::Drop { inbox: d, index });
                }
                if self.budget_left(s, Fault::Duplicate) {
                    out.push(Action::Duplicate { inbox: d, index });
                }
            }
            if waiting.len() >= 2 && self.budget_left(s, Fault::Reorder) {
                out.push(Action::Reorder { inbox: d });
            }
        }
        if self.budget_left(s, Fault::Replay) {
            let mut seen = Vec::new();
            for r in s.log.iter() {
                if seen.contains(&r.env) || !self.is_first(r.env) {
                    continue;
                }
                seen.push(r.env);
                if !s.queues[r.to.ix()].iter().any(|p| p.env == r.env) {
                    out.push(Action::Replay {
                        inbox: r.to,
                        from: r.from,
                        what: r.what,
                    });
                }
            }
        }
        if self.budget_left(s, Fault::Inject) {
            for target in self.devs().filter(|d| s.dev(*d).signed_up) {
                for claim in self.devs().filter(|c| *c != target) {
                    if self.forged_first_buildable(s, target, claim) {
                        out.push(Action::Inject {
                            inbox: target,
                            injection: Injection::FirstAs(claim),
                        });
                    }
                    if self.forged_data(s, target, claim, None).is_some() {
                        out.push(Action::Inject {
                            inbox: target,
                            injection: Injection::DataAs(claim),
                        });
                    }
                    if s.dev(target).contact(claim).is_some() {
                        out.push(Action::Inject {
                            inbox: target,
                            injection: Injection::FirstWithOwnKeys(claim),
                        });
                    }
                }
            }
        }
        if self.budget_left(s, Fault::InjectGroupKey) {
            for target in self.devs() {
                for claim in self.devs().filter(|c| *c != target) {
                    if self.forged_group_key(s, target, claim).is_some() {
                        out.push(Action::Inject {
                            inbox: target,
                            injection: Injection::GroupKeyAs(claim),
                        });
                    }
                }
            }
        }
        if self.budget_left(s, Fault::Restart) && s.queues.iter().any(|q| !q.is_empty()) {
            out.push(Action::Restart);
        }
        if let Some(v) = self.config.compromise_victim {
            if self.budget_left(s, Fault::Compromise) && s.dev(v).signed_up {
                out.push(Action::Compromise(v));
            }
        }
        if let Some(v) = self.config.steal_victim {
            // A theft at rest: the store is sealed whatever it holds, so a theft in the middle
            // of a delivery explores nothing a theft of the settled device does not.
            if self.budget_left(s, Fault::Steal) && s.dev(v).signed_up && self.settled(s) {
                out.push(Action::Steal(v));
            }
        }
        if self.budget_left(s, Fault::IssueCert) {
            for d in self.devs().filter(|d| s.dev(*d).signed_up) {
                out.push(Action::IssueCert(d));
            }
        }
    }

    fn is_first(&self, env: TermId) -> bool {
        let t = self.t();
        t.fields(env)
            .and_then(|f| f.first().copied())
            .is_some_and(|x| t.get(x) == Term::Const(Const::Shape(Shape::First)))
    }

    /// Applies an attacker action.
    pub(crate) fn attack(&self, s: &mut State, a: &Action) -> bool {
        let t = self.t();
        match *a {
            Action::Drop { inbox, index } => {
                let Some(qi) = waiting_pos(s, inbox, index) else {
                    return false;
                };
                s.queues[inbox.ix()].remove(qi);
                self.spend(s, Fault::Drop);
            }
            Action::Duplicate { inbox, index } => {
                let Some(qi) = waiting_pos(s, inbox, index) else {
                    return false;
                };
                let p = s.queues[inbox.ix()][qi].clone();
                s.queues[inbox.ix()].insert(qi + 1, p);
                self.spend(s, Fault::Duplicate);
            }
            Action::Reorder { inbox } => {
                let q = &mut s.queues[inbox.ix()];
                if q.len() < 2 {
                    return false;
                }
                let p = q.pop().expect("two packets");
                q.insert(0, p);
                self.spend(s, Fault::Reorder);
            }
            Action::Replay { inbox, from, what } => {
                let Some(env) = s
                    .log
                    .iter()
                    .find(|r| r.to == inbox && r.from == from && r.what == what)
                    .map(|r| r.env)
                else {
                    return false;
                };
                self.publish(s, inbox, env);
                self.spend(s, Fault::Replay);
            }
            Action::Inject { inbox, injection } => {
                let env = match injection {
                    Injection::FirstAs(claim) => self.forged_first(s, inbox, claim, false),
                    Injection::FirstWithOwnKeys(claim) => self.forged_first(s, inbox, claim, true),
                    Injection::DataAs(peer) => self.forged_data(s, inbox, peer, None),
                    Injection::GroupKeyAs(claim) => self.forged_group_key(s, inbox, claim),
                };
                let Some(env) = env else { return false };
                // The attacker built it from what it knows: queued, nothing learned.
                s.queues[inbox.ix()].push(crate::state::Packet { env });
                let f = match injection {
                    Injection::GroupKeyAs(_) => Fault::InjectGroupKey,
                    _ => Fault::Inject,
                };
                self.spend(s, f);
            }
            Action::Restart => {
                for q in s.queues.iter_mut() {
                    q.clear();
                }
                s.restarted = true;
                self.spend(s, Fault::Restart);
            }
            Action::Compromise(d) => {
                let leak = self.leak(s, d);
                s.knowledge_mut().learn(t, &leak);
                s.compromised = Some(d);
                for i in 0..s.log.len() {
                    let r = &s.log[i];
                    let done = s.dev(r.to).has_committed_from(r.what, r.from);
                    let limit = fs_limit(s, r, d);
                    s.log_mut()[i].past = done;
                    s.log_mut()[i].fs_limit = done && limit;
                }
                self.spend(s, Fault::Compromise);
            }
            Action::Steal(d) => {
                let mut inside = self.leak(s, d);
                for x in &s.dev(d).store {
                    if let What::Text(i) = x.what {
                        inside.push(t.atom(Atom::Text(i)));
                    }
                }
                let key = t.kdf(Label::StoreKey, &[t.atom(Atom::Passphrase(d))]);
                let sealed = t.aead(key, 0, t.tup_tree(&inside));
                s.knowledge_mut().learn(t, &[sealed]);
                s.stolen = Some(d);
                self.spend(s, Fault::Steal);
            }
            Action::IssueCert(d) => {
                let cert = t.sig(
                    t.atom(Atom::Ca),
                    t.tup(&[
                        t.cnst(Const::Label(Label::Cert)),
                        t.cnst(Const::UserId(Party::Dev(d))),
                        t.pk(Atom::Tls(Party::Server)),
                    ]),
                );
                s.knowledge_mut().learn(t, &[cert]);
                self.spend(s, Fault::IssueCert);
            }
            _ => return false,
        }
        true
    }

    /// Every secret a device holds right now (Compromise).
    pub fn leak(&self, s: &State, d: Dev) -> Vec<TermId> {
        let t = self.t();
        let me = Party::Dev(d);
        let dev = s.dev(d);
        let mut out = vec![
            t.atom(Atom::IdSig(me)),
            t.atom(Atom::IdDh(me)),
            t.atom(Atom::Spk(me)),
            t.atom(Atom::Tls(me)),
            t.atom(Atom::Personal(d)),
        ];
        for k in 0..crate::handshake::OPKS {
            if dev.opk_used >> k & 1 == 0 {
                out.push(t.atom(Atom::Opk(me, k)));
            }
        }
        for ses in &dev.sessions {
            out.push(ses.root);
            out.extend(ses.mine);
            if let Some(c) = &ses.send {
                out.extend([c.ck, c.seeds]);
            }
            for c in &ses.recv {
                // A closed epoch (EPOCH-5) keeps only the keys of messages not received yet.
                if !c.closed {
                    out.extend([c.ck, c.seeds]);
                }
                out.extend(skipped_keys(t, c));
            }
        }
        if let Some(g) = &dev.group {
            out.extend([g.gmk, g.seeds]);
            // GRP-12: the handover the admin keeps (not a secret: every member it keys sees it).
            out.extend(g.handover);
            if let Some(p) = &g.prev {
                out.extend(p.chains.iter().map(|c| c.2));
            }
        }
        out
    }

    fn forged_first_buildable(&self, s: &State, target: Dev, claim: Dev) -> bool {
        let t = self.t();
        let dh1 = t.dh(
            t.atom(Atom::IdDh(Party::Dev(claim))),
            t.atom(Atom::Spk(Party::Dev(target))),
        );
        s.knowledge.can_build(&t.read(), dh1)
    }

    /// A first message to `target` claiming to come from `claim`, built with the server's own
    /// ephemeral key and key share.
    fn forged_first(&self, s: &State, target: Dev, claim: Dev, own: bool) -> Option<TermId> {
        if !own && !self.forged_first_buildable(s, target, claim) {
            return None;
        }
        // With its own keys the server signs its own IKd: always buildable (mis-binding).
        let keys = if own {
            Party::Server
        } else {
            Party::Dev(claim)
        };
        let t = self.t();
        let sv = Party::Server;
        let tp = Party::Dev(target);
        let ek = t.atom(Atom::Ek(SERVER_SLOT));
        let ek_pub = t.pub_of(ek);
        let spk_pub = t.pk(Atom::Spk(tp));
        let spk = t.atom(Atom::Spk(tp));
        let ikd_t = t.atom(Atom::IdDh(tp));
        let dhs = [
            t.dh(t.atom(Atom::IdDh(keys)), spk),
            t.dh(ek, ikd_t),
            t.dh(ek, spk),
        ];
        let sk = t.kdf(Label::X3dh, &dhs);
        let ks0 = self.keyshare_key0(sk, ek_pub, spk_pub);
        let id_key = t.kdf(Label::Identity, &[dhs[1], ek_pub, t.pub_of(ikd_t)]);
        let claim_p = Party::Dev(claim);
        let id_box = t.aead(
            id_key,
            0,
            t.tup(&[
                t.cnst(Const::UserId(claim_p)),
                self.public_identity(keys),
                t.pk(Atom::Ratchet(SERVER_SLOT, 0, sv)),
            ]),
        );
        let mk = t.atom(Atom::MasterKey(SERVER_SLOT, 0, sv));
        let seeds = t.atom(Atom::Seeds(SERVER_SLOT, 0, sv));
        let ks_box = t.aead(ks0, 0, t.tup(&[mk, seeds]));
        let ck0 = chain_key(t, mk, seeds);
        let mut chain = crate::state::SendChain {
            epoch: 0,
            n: 0,
            ck: ck0,
            ck0,
            seeds,
            header: None,
        };
        let inner = t.tup(&[t.cnst(Const::Kind(Kind::Text)), t.atom(Atom::Forged(1))]);
        let (n, payload, _) = seal_chain(t, crate::variant::Variant::None, &mut chain, inner);
        let env = t.tup(&[
            t.cnst(Const::Shape(Shape::First)),
            ek_pub,
            spk_pub,
            t.cnst(Const::NoOpk),
            id_box,
            ks_box,
            t.num(n),
            payload,
        ]);
        debug_assert!(s.knowledge.can_build(&t.read(), env));
        Some(env)
    }

    /// A data message on `target`'s newest receiving chain from `peer`, if the attacker can
    /// build its key.
    fn forged_data(
        &self,
        s: &State,
        target: Dev,
        peer: Dev,
        inner: Option<TermId>,
    ) -> Option<TermId> {
        let t = self.t();
        let dev = s.dev(target);
        let ses = &dev.sessions[dev.sending_session(peer)?];
        let chain = ses.recv.iter().max_by_key(|c| c.epoch)?;
        let table = t.read();
        if !(s.knowledge.can_build(&table, chain.ck) && s.knowledge.knows(chain.tag)) {
            return None;
        }
        drop(table);
        if chain.next > self.config.max_counter {
            return None;
        }
        let inner = inner
            .unwrap_or_else(|| t.tup(&[t.cnst(Const::Kind(Kind::Text)), t.atom(Atom::Forged(0))]));
        let payload = t.aead(t.kdf(Label::Msg, &[chain.ck]), chain.next, inner);
        Some(t.tup(&[
            t.cnst(Const::Shape(Shape::Data)),
            chain.tag,
            t.num(chain.next),
            payload,
        ]))
    }
}

/// The forward-secrecy limit of the protocol as specified, for a message committed before
/// `victim` was compromised: the session was set up without a one-time prekey (a card carries
/// none) and the victim is the responder, whose signed prekey and identity key recompute `SK`
/// (X3DH-9 protects only sessions with one). That reveals epoch 0, and epoch 1 while the
/// responder still holds that epoch's ratchet secret (`RK_0` and `DH(E_B1, E_A0)` give `KS_1`).
///
/// The initiator is no such limit any more: it keeps `E_A0`, not `EK_A`, as its epoch-0 ratchet
/// key and deletes `EK_A` once `SK` is derived (X3DH-7), so its state cannot redo X3DH.
pub fn fs_limit(s: &State, r: &crate::state::Sent, victim: Dev) -> bool {
    if r.epoch > 1 {
        return false;
    }
    let initiator = if r.slot.initiator == Party::Dev(r.from) {
        r.from
    } else {
        r.to
    };
    let responder = if initiator == r.from { r.to } else { r.from };
    let init_ses = s.dev(initiator).sessions.iter().find(|x| x.slot == r.slot);
    let resp_ses = s.dev(responder).sessions.iter().find(|x| x.slot == r.slot);
    let epoch1_open = resp_ses.is_some_and(|x| x.mine.is_some() && x.newest == 1);
    victim == responder && init_ses.is_some_and(|x| !x.opk) && (r.epoch == 0 || epoch1_open)
}

/// Queue position of the `index`-th waiting (not in flight) packet.
fn waiting_pos(s: &State, inbox: Dev, index: u8) -> Option<usize> {
    let i = index as usize;
    (i < s.queues[inbox.ix()].len()).then_some(i)
}

impl SottoModel {
    /// GRP-4, GRP-12: a group key for `target`'s group (the next epoch, `target` and `claim` its
    /// members, the server's key), its membership signed by `claim`, who is a member but not the
    /// admin, handed over (kind 9) by the newest handover naming `claim` the attacker learned, or
    /// else one `claim` signs itself; sent on `target`'s receiving chain from `claim`. Needs
    /// `claim`'s `IKs` and that chain key (a compromise of `claim` gives both).
    fn forged_group_key(&self, s: &State, target: Dev, claim: Dev) -> Option<TermId> {
        let g = s.dev(target).group.as_ref()?;
        if g.members.first().is_none_or(|m| m.dev == claim)
            || !g.members.iter().any(|m| m.dev == claim)
        {
            return None;
        }
        let t = self.t();
        let signer = t.atom(Atom::IdSig(Party::Dev(claim)));
        if !s.knowledge.can_build(&t.read(), signer) {
            return None;
        }
        let mut fields = vec![
            t.cnst(Const::Shape(Shape::Members)),
            t.cnst(Const::GroupId),
            t.num(g.epoch + 1),
        ];
        for d in [claim, target] {
            fields.push(t.cnst(Const::UserId(Party::Dev(d))));
            fields.push(t.pk(Atom::IdSig(Party::Dev(d))));
        }
        let membership = t.sig(signer, t.tup(&fields));
        let claim_iks = t.pk(Atom::IdSig(Party::Dev(claim)));
        let learned = s
            .handovers
            .iter()
            .rev()
            .find(|h| h.to == claim && s.knowledge.knows(h.proof))
            .map(|h| h.proof);
        let handover = learned.unwrap_or_else(|| {
            t.sig(
                signer,
                t.tup(&[
                    t.cnst(Const::Label(Label::SigHandover)),
                    t.cnst(Const::GroupId),
                    t.num(g.epoch + 1),
                    t.cnst(Const::UserId(Party::Dev(claim))),
                    claim_iks,
                ]),
            )
        });
        let inner = t.tup(&[
            t.cnst(Const::Kind(Kind::HandedOverKey)),
            handover,
            membership,
            t.atom(Atom::Forged(0)),
            t.atom(Atom::Forged(1)),
        ]);
        self.forged_data(s, target, claim, Some(inner))
    }
}
