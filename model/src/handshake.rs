//! Contacts and session setup: cards (CARD-4), bundles (KEY-5) and X3DH with the key share.
//!
//! ```text
//!   A (initiator)                                   B (responder)
//!   EK, E_A0 fresh; DH1..DH4; SK = KDF-1; EK deleted
//!   first message (ENV-3):
//!     pub(EK), SPK_B, OPK_B?, {uid_A, identity_A, pub(E_A0)}_KDF-4(DH2),
//!     {MK, seeds}_KS0, {inner}_K0            ---->  replay cache (X3DH-8), SPK, OPK,
//!                                                   open identity, RX-9, SK, key share,
//!                                                   payload; only then change state
//! ```
//!
//! `E_A0` is A's ratchet key of epoch 0 (X3DH-7): B's first epoch answers it. `EK_A` is used only
//! for `SK` and deleted at once, so a later compromise of A cannot redo X3DH. Every message of
//! epoch 0 carries this first-message header until A knows B has the epoch (EPOCH-3); B routes a
//! repeated header to the session it created by `EK_A` (X3DH-8).

use crate::action::Forgery;
use crate::model::SottoModel;
use crate::ratchet::{chain_key, seal_chain};
use crate::refusal::Refusal;
use crate::state::{Contact, RecvChain, SendChain, Session, State, flag};
use crate::term::{Atom, Const, Dev, Label, Party, Shape, Slot, Term, TermId};
use crate::variant::Variant;

/// One-time prekeys each device uploads at signup.
pub const OPKS: u8 = 2;

/// What an opened first message yields, before any state changes (X3DH-6).
pub struct Accepted {
    /// The new session.
    pub session: Session,
    /// The opened inner plaintext.
    pub inner: TermId,
    /// Its counter.
    pub n: u8,
    /// Its message id.
    pub id: TermId,
    /// The contact to file (RX-9), if new.
    pub contact: Option<Contact>,
    /// One-time prekey consumed.
    pub opk: Option<u8>,
    /// The first message opened, but under another `IKs` than the contact its user id names
    /// (RX-9): the receiver holds it, unopened, until the person decides.
    pub claims_new_identity: bool,
}

impl SottoModel {
    /// Whether `sig` is a signature by the private key behind `pk` (PRIM-2).
    pub fn verify(&self, sig: TermId, pk: TermId) -> bool {
        let t = self.t().read();
        match t.term(sig) {
            Term::Sig { key, .. } => t.pub_of(*key) == Some(pk),
            _ => false,
        }
    }

    /// CARD-2: a card scanned in person gives a verified contact (Req5).
    pub(crate) fn scan_card(&self, s: &mut State, by: Dev, of: Dev) -> bool {
        let t = self.t();
        let p = Party::Dev(of);
        let iks = t.pk(Atom::IdSig(p));
        let c = Contact {
            spk: Some(t.pk(Atom::Spk(p))),
            ..Contact::decided(of, true, iks, t.pk(Atom::IdDh(p)), true)
        };
        let dev = s.dev_mut(by);
        dev.decide_contact(c);
        for ses in dev.sessions.iter_mut().filter(|x| x.peer == of) {
            ses.verified = ses.peer_iks == iks;
        }
        s.pc += 1;
        true
    }

    /// KEY-5: a bundle from the directory, genuine or forged by the server (ForgeBundle).
    pub(crate) fn fetch_bundle(
        &self,
        s: &mut State,
        by: Dev,
        of: Dev,
        forgery: Option<Forgery>,
    ) -> bool {
        let t = self.t();
        let victim = Party::Dev(of);
        let sv = Party::Server;
        let (owner_sig, iks, ikd, spk, opk) = match forgery {
            None => {
                let given = s.dev(of).opk_given;
                let k = (0..OPKS).find(|k| given >> k & 1 == 0);
                if let Some(k) = k {
                    s.dev_mut(of).opk_given |= 1 << k;
                }
                (
                    victim,
                    t.pk(Atom::IdSig(victim)),
                    t.pk(Atom::IdDh(victim)),
                    t.pk(Atom::Spk(victim)),
                    k.map(|k| t.pk(Atom::Opk(victim, k))),
                )
            }
            Some(Forgery::Impersonate) => (
                sv,
                t.pk(Atom::IdSig(sv)),
                t.pk(Atom::IdDh(sv)),
                t.pk(Atom::Spk(sv)),
                Some(t.pk(Atom::Opk(sv, 0))),
            ),
            Some(Forgery::SwapKeys) => (
                sv,
                t.pk(Atom::IdSig(victim)),
                t.pk(Atom::IdDh(sv)),
                t.pk(Atom::Spk(sv)),
                Some(t.pk(Atom::Opk(sv, 0))),
            ),
        };
        // The bundle as served: signatures by whoever made it.
        let signer = t.atom(Atom::IdSig(owner_sig));
        let sig_ikd = t.sig(signer, t.tup(&[t.cnst(Const::Label(Label::SigIkd)), ikd]));
        let sig_spk = t.sig(signer, t.tup(&[t.cnst(Const::Label(Label::SigSpk)), spk]));
        let sigs_ok = self.verify(sig_ikd, iks) && self.verify(sig_spk, iks);
        let existing = s.dev(by).contact(of).cloned();
        let checked = sigs_ok || self.variant == Variant::SkipPrekeySignatureCheck;
        // RX-9, CARD-4: a known user id keeps its IKs until the user decides otherwise.
        let same_identity = existing.as_ref().is_none_or(|c| c.iks == iks);
        if !checked {
            self.refusals.hit(Refusal::BundleBadSignature);
        } else if !same_identity {
            self.refusals.hit(Refusal::BundleIdentityChanged);
        }
        let same_identity = same_identity || self.variant == Variant::SkipIdentityComparison;
        if !(checked && same_identity) {
            // Rejected: the device keeps what it had and will ask again.
            s.flags |= flag::FORGED_REJECTED;
            return true;
        }
        let verified = existing
            .as_ref()
            .is_some_and(|c| c.verified && c.iks == iks);
        s.dev_mut(by).set_contact(Contact {
            spk: Some(spk),
            opk,
            ..Contact::decided(of, verified, iks, ikd, forgery.is_none())
        });
        s.pc += 1;
        true
    }

    /// X3DH-1..X3DH-5: starts a session with a contact and seals the first message.
    /// Returns the envelope, the message id and the new session's index.
    pub(crate) fn x3dh_initiate(
        &self,
        s: &mut State,
        from: Dev,
        to: Dev,
        inner: TermId,
    ) -> (TermId, TermId, usize) {
        let t = self.t();
        let me = Party::Dev(from);
        let c = s
            .dev(from)
            .contact(to)
            .cloned()
            .expect("x3dh_initiate is enabled only with a contact");
        let spk_pub = c.spk.expect("a contact used for X3DH has a signed prekey");
        let slot = Slot {
            initiator: me,
            k: s.dev(from).next_slot,
        };
        let ek = t.atom(Atom::Ek(slot));
        let priv_of = |pk: TermId| t.private_of(pk).expect("a public key term");
        let (spk, ikd) = (priv_of(spk_pub), priv_of(c.ikd));
        let ikd_me = t.atom(Atom::IdDh(me));
        let mut dhs = vec![t.dh(ikd_me, spk), t.dh(ek, ikd), t.dh(ek, spk)];
        if let Some(opk) = c.opk {
            dhs.push(t.dh(ek, priv_of(opk)));
        }
        let sk = t.kdf(Label::X3dh, &dhs);
        let ek_pub = t.pub_of(ek);
        let rk0 = t.kdf(Label::Root, &[sk]);
        let ks0 = self.keyshare_key0(sk, ek_pub, spk_pub);
        let id_key = t.kdf(Label::Identity, &[dhs[1], ek_pub, c.ikd]);
        // X3DH-7: a fresh epoch-0 ratchet key, sent inside the identity box (X3DH-3).
        let e0 = t.atom(Atom::Ratchet(slot, 0, me));
        let id_box = t.aead(
            id_key,
            0,
            t.tup(&[
                t.cnst(Const::UserId(me)),
                self.public_identity(me),
                t.pub_of(e0),
            ]),
        );
        let mk = t.atom(Atom::MasterKey(slot, 0, me));
        let seeds = t.atom(Atom::Seeds(slot, 0, me));
        let ks_box = t.aead(ks0, 0, t.tup(&[mk, seeds]));
        let ck0 = chain_key(t, mk, seeds);
        let opk_field = c.opk.unwrap_or_else(|| t.cnst(Const::NoOpk));
        // EPOCH-3: the first-message header, repeated until B has epoch 0.
        let header = t.tup(&[ek_pub, spk_pub, opk_field, id_box, ks_box]);
        let mut chain = SendChain {
            epoch: 0,
            n: 0,
            ck: ck0,
            ck0,
            seeds,
            header: Some(header),
        };
        let (n, payload, id) = seal_chain(t, self.variant, &mut chain, inner);
        let env = t.tup(&[
            t.cnst(Const::Shape(Shape::First)),
            ek_pub,
            spk_pub,
            opk_field,
            id_box,
            ks_box,
            t.num(n),
            payload,
        ]);
        let compromised = s.is_compromised(from);
        let dev = s.dev_mut(from);
        dev.next_slot += 1;
        if c.opk.is_some() {
            let mut c2 = c.clone();
            c2.opk = None;
            dev.set_contact(c2);
        }
        dev.sessions.push(Session {
            peer: to,
            slot,
            initiator: true,
            verified: c.verified,
            peer_iks: c.iks,
            root: rk0,
            // EK_A is not kept: only E_A0 is (X3DH-7).
            mine: Some(e0),
            peer_ratchet: None,
            newest: 0,
            send: Some(chain),
            recv: Vec::new(),
            genuine: c.genuine,
            opk: c.opk.is_some(),
            sk,
            heal: compromised.then_some(0),
            tainted: false,
        });
        (env, id, dev.sessions.len() - 1)
    }

    /// KDF-3 `KS_0`, or in the broken variant `key-share-readable` a key from public values.
    pub(crate) fn keyshare_key0(&self, sk: TermId, ek_pub: TermId, spk_pub: TermId) -> TermId {
        let t = self.t();
        if self.variant == Variant::KeyShareReadable {
            t.kdf(Label::KeyShare, &[ek_pub, spk_pub])
        } else {
            t.kdf(Label::KeyShare, &[sk])
        }
    }

    /// X3DH-6: everything the responder checks and computes, with no state change; `None` if
    /// the first message must be refused; [`Accepted::claims_new_identity`] if it must be held
    /// (RX-9).
    pub(crate) fn x3dh_respond(&self, s: &State, me_dev: Dev, f: &[TermId]) -> Option<Accepted> {
        let t = self.t();
        let me = Party::Dev(me_dev);
        let dev = s.dev(me_dev);
        let [_, ek_pub, spk_pub, opk_field, id_box, ks_box, n, payload] = *f else {
            return None;
        };
        if spk_pub != t.pk(Atom::Spk(me)) {
            self.refusals.hit(Refusal::FirstUnknownPrekey);
            return None; // unknown_signed_prekey
        }
        let opk = if opk_field == t.cnst(Const::NoOpk) {
            None
        } else {
            let k = (0..OPKS).find(|k| t.pk(Atom::Opk(me, *k)) == opk_field)?;
            if dev.opk_used >> k & 1 == 1 {
                self.refusals.hit(Refusal::FirstOneTimePrekeyUsed);
                return None; // unknown_one_time_prekey
            }
            Some(k)
        };
        let ek = t.private_of(ek_pub)?;
        let ikd_me = t.atom(Atom::IdDh(me));
        let dh2 = t.dh(ek, ikd_me);
        let id_key = t.kdf(Label::Identity, &[dh2, ek_pub, t.pk(Atom::IdDh(me))]);
        let Some(ident) = open(self, id_box, id_key, 0) else {
            self.refusals.hit(Refusal::FirstUnopenable);
            return None; // decrypt_failed
        };
        let [uid, pid, e0_pub] = *t.fields(ident)?.as_slice() else {
            return None;
        };
        let Term::Const(Const::UserId(Party::Dev(peer))) = t.get(uid) else {
            return None;
        };
        let [iks, ikd, sig_ikd] = *t.fields(pid)?.as_slice() else {
            return None;
        };
        if !self.verify(sig_ikd, iks) || peer == me_dev {
            self.refusals.hit(Refusal::FirstUnopenable);
            return None; // bad_signature
        }
        let known = dev.contact(peer);
        let spk = t.atom(Atom::Spk(me));
        let mut dhs = vec![t.dh(t.private_of(ikd)?, spk), dh2, t.dh(ek, spk)];
        if let Some(k) = opk {
            dhs.push(t.dh(ek, t.atom(Atom::Opk(me, k))));
        }
        let sk = t.kdf(Label::X3dh, &dhs);
        let rk0 = t.kdf(Label::Root, &[sk]);
        let ks0 = self.keyshare_key0(sk, ek_pub, spk_pub);
        let Some(share) = open(self, ks_box, ks0, 0) else {
            self.refusals.hit(Refusal::FirstUnopenable);
            return None; // decrypt_failed
        };
        let [mk, seeds] = *t.fields(share)?.as_slice() else {
            return None;
        };
        let Term::Const(Const::Num(n)) = t.get(n) else {
            return None;
        };
        let ck0 = chain_key(t, mk, seeds);
        let mut chain = RecvChain {
            epoch: 0,
            next: 0,
            ck: ck0,
            ck0,
            skipped: 0,
            seeds,
            tag: t.kdf(Label::Tag, &[seeds]),
            // Epoch 0 is recognised by EK_A (a repeated first-message header); its ratchet key
            // is E_A0.
            ratchet: ek_pub,
            closed: false,
        };
        let Some((inner, id)) = crate::ratchet::open_on_chain(self, &mut chain, n, payload) else {
            self.refusals.hit(Refusal::FirstUnopenable);
            return None; // decrypt_failed
        };
        let slot = match t.as_atom(ek) {
            Some(Atom::Ek(slot)) => slot,
            _ => return None,
        };
        let real = iks == t.pk(Atom::IdSig(Party::Dev(peer)));
        let changed = known.is_some_and(|c| c.iks != iks);
        let verified = known.is_some_and(|c| c.verified) && !changed;
        let contact =
            (known.is_none() || changed).then_some(Contact::decided(peer, false, iks, ikd, real));
        Some(Accepted {
            session: Session {
                peer,
                slot,
                initiator: false,
                verified,
                peer_iks: iks,
                root: rk0,
                mine: None,
                peer_ratchet: Some(e0_pub),
                newest: 0,
                send: None,
                recv: vec![chain],
                genuine: real && slot.initiator == Party::Dev(peer),
                opk: opk.is_some(),
                sk,
                heal: None,
                tainted: slot.initiator == Party::Server,
            },
            inner,
            n,
            id,
            contact,
            opk,
            // RX-9: a known user id must keep its IKs (checked once the message opened, as the
            // implementation does; the caller holds the message).
            claims_new_identity: changed,
        })
    }
}

/// Opens an AEAD box with a key and the expected nonce (PRIM-5); symbolic: the key must be the
/// very term it was sealed under.
pub fn open(m: &SottoModel, boxed: TermId, key: TermId, nonce: u8) -> Option<TermId> {
    match m.t().read().term(boxed) {
        Term::Aead {
            key: k,
            nonce: nn,
            body,
        } if *k == key && *nn == nonce => Some(*body),
        _ => None,
    }
}
