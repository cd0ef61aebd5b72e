//! The stateright [`Model`]: which actions are enabled and what they do.
//!
//! Honest steps follow the scenario (see [`crate::scenario`]) or react to the network (Receive,
//! Ack, Resend); attacker steps are enabled while their budget lasts. The protocol logic lives in
//! the modules named after its parts: [`crate::handshake`] (signup, cards, bundles, X3DH),
//! [`crate::ratchet`] (chains and epochs), [`crate::receive`] (opening, commit, receipts, acks),
//! [`crate::group`] and [`crate::attacker`].

use crate::action::{Action, Forgery};
use crate::knowledge::Knowledge;
use crate::properties;
use crate::refusal::Counters;
use crate::scenario::{Config, Intent};
use crate::state::{Device, Hold, Out, Packet, Sent, State, What};
use crate::term::{Atom, Const, Dev, Label, Party, Shape, Slot, TermId, Terms};
use crate::variant::Variant;
use stateright::{Model, Property};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The Sotto model for one configuration and one variant.
pub struct SottoModel {
    /// The configuration.
    pub config: Config,
    /// Which safeguard is removed, if any.
    pub variant: Variant,
    /// The term interner shared with the checker threads.
    pub terms: Arc<Terms>,
    /// One latch per property: once a `sometimes` property has an example, or an `always`
    /// property a counterexample, it reports no more. The checker then keeps the *first* path it
    /// found (with one thread, breadth-first order makes it a shortest one) instead of recording
    /// a new path at every later state.
    latches: [AtomicBool; 48],
    /// How many explored transitions take each refusal branch ([`crate::refusal`]).
    pub refusals: Counters,
}

/// The slot the attacker uses for sessions it starts.
pub const SERVER_SLOT: Slot = Slot {
    initiator: Party::Server,
    k: 0,
};

impl SottoModel {
    /// A model of a configuration, with a variant.
    pub fn new(config: Config, variant: Variant) -> SottoModel {
        assert!(
            config.budgets.allow.len() <= crate::state::WINDOWS,
            "at most WINDOWS fault windows"
        );
        assert!(
            config.max_counter <= crate::ratchet::MAX_COUNTER,
            "a chain's masks hold counters up to MAX_COUNTER"
        );
        SottoModel {
            config,
            variant,
            terms: Arc::new(Terms::default()),
            latches: std::array::from_fn(|_| AtomicBool::new(false)),
            refusals: Counters::default(),
        }
    }

    /// Evaluates an `always` condition until it first fails, then reports `true`.
    pub fn holds(&self, k: usize, cond: impl FnOnce() -> bool) -> bool {
        if self.latches[k].load(Ordering::Relaxed) {
            return true;
        }
        let ok = cond();
        if !ok {
            self.latches[k].store(true, Ordering::Relaxed);
        }
        ok
    }

    /// Evaluates a `sometimes` condition until it first holds, then reports `false`.
    pub fn once(&self, k: usize, cond: impl FnOnce() -> bool) -> bool {
        if self.latches[k].load(Ordering::Relaxed) {
            return false;
        }
        let hit = cond();
        if hit {
            self.latches[k].store(true, Ordering::Relaxed);
        }
        hit
    }

    /// Once the scenario has passed a fault's window, how many steps the window gave can no
    /// longer change what is enabled: the count is set back to zero, so that runs that differ
    /// only by a fault whose window is over (and whose effects are gone) become one state.
    fn forget_closed_budgets(&self, s: &mut State) {
        for (used, a) in s.used.iter_mut().zip(&self.config.budgets.allow) {
            if a.to <= s.pc {
                *used = 0;
            }
        }
    }

    /// The interner.
    pub fn t(&self) -> &Terms {
        &self.terms
    }

    /// Devices of the configuration.
    pub fn devs(&self) -> impl Iterator<Item = Dev> + '_ {
        (0..self.config.devices as usize).map(Dev::from_ix)
    }

    /// `IKs || IKd || sig_ikd` of a party (KEY-2).
    pub fn public_identity(&self, p: Party) -> TermId {
        let t = self.t();
        let iks = t.pk(Atom::IdSig(p));
        let ikd = t.pk(Atom::IdDh(p));
        let ctx = t.cnst(Const::Label(Label::SigIkd));
        let sig = t.sig(t.atom(Atom::IdSig(p)), t.tup(&[ctx, ikd]));
        t.tup(&[iks, ikd, sig])
    }

    /// `id || SPK || sig_spk` of a party (KEY-3).
    pub fn signed_prekey(&self, p: Party) -> TermId {
        let t = self.t();
        let spk = t.pk(Atom::Spk(p));
        let ctx = t.cnst(Const::Label(Label::SigSpk));
        let sig = t.sig(t.atom(Atom::IdSig(p)), t.tup(&[ctx, spk]));
        t.tup(&[t.num(0), spk, sig])
    }

    /// Puts an envelope in an inbox; the broker (attacker) sees it.
    pub fn publish(&self, s: &mut State, to: Dev, env: TermId) {
        s.queues[to.ix()].push(Packet { env });
        s.knowledge_mut().learn(self.t(), &[env]);
    }

    /// The attacker's knowledge before anything happens: its own keys and names.
    fn initial_knowledge(&self) -> Knowledge {
        let t = self.t();
        let sv = Party::Server;
        let mut roots = Vec::new();
        for a in [
            Atom::IdSig(sv),
            Atom::IdDh(sv),
            Atom::Spk(sv),
            Atom::Opk(sv, 0),
            Atom::Tls(sv),
            Atom::Ca,
            Atom::Ek(SERVER_SLOT),
            Atom::Ratchet(SERVER_SLOT, 0, sv),
            Atom::MasterKey(SERVER_SLOT, 0, sv),
            Atom::Seeds(SERVER_SLOT, 0, sv),
            Atom::Forged(0),
            Atom::Forged(1),
        ] {
            let id = t.atom(a);
            roots.push(id);
            roots.push(t.pub_of(id));
        }
        let mut k = Knowledge::default();
        k.learn(t, &roots);
        k
    }

    /// Whether `from` can seal a pairwise message to `to` now.
    pub fn can_send(&self, s: &State, from: Dev, to: Dev) -> bool {
        let d = s.dev(from);
        d.signed_up
            && (d.sending_session(to).is_some() || d.contact(to).is_some_and(|c| c.spk.is_some()))
    }

    /// Nothing queued for an online device, nothing in hand, and no message to an online
    /// device awaiting its receipt (scenario option `settle`).
    pub fn settled(&self, s: &State) -> bool {
        self.devs().all(|d| {
            let dev = s.dev(d);
            dev.hold == Hold::Idle
                && (!dev.online || s.queues[d.ix()].is_empty())
                && dev
                    .outbox
                    .iter()
                    .all(|o| !s.dev(o.to).online || o.resends >= crate::state::MAX_RESENDS)
        })
    }

    fn intent_actions(&self, s: &State, out: &mut Vec<Action>) {
        let Some(intent) = self.config.script.get(s.pc as usize) else {
            return;
        };
        if self.config.settle_at.contains(&s.pc) && !self.settled(s) {
            return;
        }
        match intent {
            Intent::Signup(d) => out.push(Action::Signup(*d)),
            Intent::ScanCard { by, of } => {
                if s.dev(*of).signed_up && s.dev(*by).signed_up {
                    out.push(Action::ScanCard { by: *by, of: *of });
                }
            }
            Intent::FetchBundle { by, of } => {
                if s.dev(*of).signed_up && s.dev(*by).signed_up && s.dev(*by).online {
                    out.push(Action::FetchBundle { by: *by, of: *of });
                    if self.config.budgets.forge_bundles {
                        for forgery in [Forgery::Impersonate, Forgery::SwapKeys] {
                            out.push(Action::ForgeBundle {
                                by: *by,
                                of: *of,
                                forgery,
                            });
                        }
                    }
                }
            }
            Intent::Send {
                from,
                to,
                msg,
                after,
            } => {
                let ready = after.is_none_or(|a| s.dev(*from).has_committed(What::Text(a)));
                if ready && self.can_send(s, *from, *to) {
                    out.push(Action::Send {
                        from: *from,
                        to: *to,
                        msg: *msg,
                    });
                }
            }
            Intent::KeyUpdate { from, to } => {
                // A key update turns the epoch when the newest one is the peer's (EPOCH-2);
                // otherwise it travels in the sender's own epoch, which the peer's answer turns.
                if s.dev(*from).sending_session(*to).is_some() {
                    out.push(Action::KeyUpdate {
                        from: *from,
                        to: *to,
                    });
                }
            }
            Intent::GoOffline(d) => out.push(Action::GoOffline(*d)),
            Intent::GoOnline(d) => out.push(Action::GoOnline(*d)),
            Intent::GroupCreate { admin, members } => {
                if members
                    .iter()
                    .all(|m| m == admin || self.can_send(s, *admin, *m))
                {
                    out.push(Action::GroupCreate { admin: *admin });
                }
            }
            Intent::GroupAdd { admin, member } | Intent::GroupRemove { admin, member } => {
                let ok = s.dev(*admin).group.as_ref().is_some_and(|g| {
                    g.administered_by(*admin)
                        && g.members
                            .iter()
                            .all(|m| m.dev == *admin || self.can_send(s, *admin, m.dev))
                }) && self.can_send(s, *admin, *member);
                if ok {
                    out.push(match intent {
                        Intent::GroupAdd { .. } => Action::GroupAdd {
                            admin: *admin,
                            member: *member,
                        },
                        _ => Action::GroupRemove {
                            admin: *admin,
                            member: *member,
                        },
                    });
                }
            }
            Intent::GroupSend {
                from,
                msg,
                min_epoch,
            } => {
                if s.dev(*from)
                    .group
                    .as_ref()
                    .is_some_and(|g| g.epoch >= *min_epoch)
                {
                    out.push(Action::GroupSend {
                        from: *from,
                        msg: *msg,
                    });
                }
            }
            Intent::GroupLeave { member } => {
                // GRP-11: the admin cannot leave (`admin_must_hand_over`); the leave goes to the
                // admin the member holds.
                let admin = s.dev(*member).group.as_ref().and_then(|g| {
                    g.members
                        .first()
                        .map(|a| a.dev)
                        .filter(|a| a != member && g.members.iter().any(|m| m.dev == *member))
                });
                if admin.is_some_and(|a| self.can_send(s, *member, a)) {
                    out.push(Action::GroupLeave { member: *member });
                }
            }
            Intent::GroupHandover { admin, to } => {
                let ok = s.dev(*admin).group.as_ref().is_some_and(|g| {
                    g.administered_by(*admin)
                        && to != admin
                        && g.members.iter().any(|m| m.dev == *to)
                }) && self.can_send(s, *admin, *to);
                if ok {
                    out.push(Action::GroupHandover {
                        admin: *admin,
                        to: *to,
                    });
                }
            }
        }
    }

    /// Honest actions enabled in a state (scenario and reactions).
    pub fn honest_actions(&self, s: &State, out: &mut Vec<Action>) {
        self.intent_actions(s, out);
        for d in self.devs() {
            let dev = s.dev(d);
            match dev.hold {
                Hold::Idle => {
                    if dev.online && !s.queues[d.ix()].is_empty() {
                        out.push(Action::Receive(d));
                    }
                }
                Hold::Acked(_) => out.push(Action::Commit(d)),
            }
            for o in &dev.outbox {
                if o.resends < crate::state::MAX_RESENDS
                    && self.resend_due(s, d, o.to, o.env, o.published)
                {
                    out.push(Action::Resend {
                        from: d,
                        to: o.to,
                        what: o.what,
                    });
                }
            }
        }
    }

    /// RX-6 timeout, abstracted: it fires only once the envelope is nowhere on its way (not
    /// queued, not in the recipient's hands, not kept for retry) and the sender has read
    /// everything queued for it. An earlier timeout only adds a duplicate, which the broker's
    /// Duplicate already explores.
    fn resend_due(&self, s: &State, from: Dev, to: Dev, env: TermId, published: bool) -> bool {
        let f = s.dev(from);
        let r = s.dev(to);
        published
            && f.online
            && f.hold == Hold::Idle
            && s.queues[from.ix()].is_empty()
            && !s.queues[to.ix()].iter().any(|p| p.env == env)
            && r.hold != Hold::Acked(env)
            && !r.retry.contains(&env)
    }

    /// Whether no honest action is enabled and every device is online: the system has settled.
    pub fn quiescent(&self, s: &State) -> bool {
        let busy = self.devs().any(|d| {
            let dev = s.dev(d);
            !dev.online || !s.queues[d.ix()].is_empty() || dev.hold != Hold::Idle
        });
        if busy {
            return false;
        }
        let mut acts = Vec::new();
        self.honest_actions(s, &mut acts);
        acts.is_empty()
    }

    fn apply(&self, s: &mut State, a: &Action) -> bool {
        match a {
            Action::Signup(d) => self.signup(s, *d),
            Action::ScanCard { by, of } => self.scan_card(s, *by, *of),
            Action::FetchBundle { by, of } => self.fetch_bundle(s, *by, *of, None),
            Action::ForgeBundle { by, of, forgery } => {
                self.fetch_bundle(s, *by, *of, Some(*forgery))
            }
            Action::Send { from, to, msg } => {
                let body = self.text_body(*msg);
                self.send_content(s, *from, *to, What::Text(*msg), body);
                s.pc += 1;
                true
            }
            Action::KeyUpdate { from, to } => {
                let n = s.dev(*from).key_updates;
                s.dev_mut(*from).key_updates += 1;
                let t = self.t();
                let body = t.tup(&[t.cnst(Const::Kind(crate::term::Kind::KeyUpdate)), t.num(n)]);
                self.send_content(s, *from, *to, What::KeyUpdate(n), body);
                s.pc += 1;
                true
            }
            Action::GoOffline(d) => {
                self.go_offline(s, *d);
                s.pc += 1;
                true
            }
            Action::GoOnline(d) => {
                self.go_online(s, *d);
                s.pc += 1;
                true
            }
            Action::GroupCreate { .. }
            | Action::GroupAdd { .. }
            | Action::GroupRemove { .. }
            | Action::GroupSend { .. }
            | Action::GroupLeave { .. }
            | Action::GroupHandover { .. } => {
                self.group_step(s, a);
                s.pc += 1;
                true
            }
            Action::Receive(d) => self.receive(s, *d),
            Action::Commit(d) => self.commit_held(s, *d),
            Action::Resend { from, to, what } => self.resend(s, *from, *to, *what),
            _ => self.attack(s, a),
        }
    }

    /// The inner plaintext of text `m<i>`.
    pub fn text_body(&self, i: u8) -> TermId {
        let t = self.t();
        t.tup(&[
            t.cnst(Const::Kind(crate::term::Kind::Text)),
            t.atom(Atom::Text(i)),
        ])
    }

    fn signup(&self, s: &mut State, d: Dev) -> bool {
        let t = self.t();
        let p = Party::Dev(d);
        let mut fields = vec![
            t.cnst(Const::Shape(Shape::Signup)),
            t.pk(Atom::Tls(p)),
            self.public_identity(p),
            self.signed_prekey(p),
        ];
        for k in 0..crate::handshake::OPKS {
            fields.push(t.pk(Atom::Opk(p, k)));
        }
        let req = t.tup(&fields);
        let signed = t.sig(
            t.atom(Atom::IdSig(p)),
            t.tup(&[t.cnst(Const::Label(Label::SigSignup)), req]),
        );
        let cert = t.sig(
            t.atom(Atom::Ca),
            t.tup(&[
                t.cnst(Const::Label(Label::Cert)),
                t.cnst(Const::UserId(p)),
                t.pk(Atom::Tls(p)),
            ]),
        );
        s.knowledge_mut().learn(t, &[signed, cert]);
        s.dev_mut(d).signed_up = true;
        s.pc += 1;
        true
    }

    /// Seals a content message from `from` to `to` on the newest session, starting one with
    /// X3DH if there is none; keeps it in the outbox (RX-6) and publishes it when online.
    pub(crate) fn send_content(
        &self,
        s: &mut State,
        from: Dev,
        to: Dev,
        what: What,
        inner: TermId,
    ) {
        let (env, id, i, epoch) = match s.dev(from).sending_session(to) {
            Some(i) => {
                let (env, id, epoch) = self.seal_on_session(s, from, i, inner, true);
                (env, id, i, epoch)
            }
            None => {
                let (env, id, i) = self.x3dh_initiate(s, from, to, inner);
                (env, id, i, 0)
            }
        };
        let ses = &s.dev(from).sessions[i];
        let (slot, genuine, verified) = (ses.slot, ses.genuine, ses.verified);
        let online = s.dev(from).online;
        s.dev_mut(from).outbox.push(Out {
            to,
            what,
            env,
            id,
            published: online,
            resends: 0,
        });
        s.log_mut().push(Sent {
            what,
            from,
            to,
            slot,
            epoch,
            genuine,
            verified,
            env,
            past: false,
            fs_limit: false,
            acked: false,
        });
        if online {
            self.publish(s, to, env);
        }
    }

    fn go_offline(&self, s: &mut State, d: Dev) {
        let dev = s.dev_mut(d);
        dev.online = false;
        dev.hold = Hold::Idle;
    }

    fn go_online(&self, s: &mut State, d: Dev) {
        s.dev_mut(d).online = true;
        let pending: Vec<(Dev, TermId)> = s
            .dev(d)
            .outbox
            .iter()
            .filter(|o| !o.published)
            .map(|o| (o.to, o.env))
            .collect();
        for o in s.dev_mut(d).outbox.iter_mut() {
            o.published = true;
        }
        for (to, env) in pending {
            self.publish(s, to, env);
        }
    }

    fn resend(&self, s: &mut State, from: Dev, to: Dev, what: What) -> bool {
        let Some(o) = s
            .dev_mut(from)
            .outbox
            .iter_mut()
            .find(|o| o.to == to && o.what == what)
        else {
            return false;
        };
        o.resends += 1;
        let env = o.env;
        self.publish(s, to, env);
        s.flags |= crate::state::flag::RESENT;
        true
    }
}

impl Model for SottoModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let n = self.config.devices as usize;
        vec![State {
            pc: 0,
            devices: (0..n).map(|_| Arc::new(Device::new())).collect(),
            queues: vec![Vec::new(); n],
            knowledge: Arc::new(self.initial_knowledge()),
            used: [0; crate::state::WINDOWS],
            compromised: None,
            stolen: None,
            missed_group_change: 0,
            log: Arc::new(Vec::new()),
            group_log: Vec::new(),
            group_epochs: Vec::new(),
            handovers: Vec::new(),
            group_left: Vec::new(),
            restarted: false,
            flags: 0,
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        self.honest_actions(s, out);
        self.attacker_actions(s, out);
    }

    fn next_state(&self, s: &State, a: Action) -> Option<State> {
        let mut n = s.clone();
        // Events are flags of the step that caused them (see `State::flags`).
        n.flags = 0;
        if self.apply(&mut n, &a) {
            self.forget_closed_budgets(&mut n);
            Some(n)
        } else {
            None
        }
    }

    fn format_action(&self, a: &Action) -> String {
        a.to_string()
    }

    fn format_step(&self, last: &State, a: Action) -> Option<String> {
        let next = self.next_state(last, a)?;
        let view = crate::trace::AbstractState::of(self, &next);
        serde_json::to_string_pretty(&view).ok()
    }

    fn properties(&self) -> Vec<Property<Self>> {
        properties::all()
            .into_iter()
            .filter(|p| properties::relevant(p.name, &self.config))
            .collect()
    }
}
