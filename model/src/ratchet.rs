//! Message chains (CHAIN-1..CHAIN-5) and epochs (EPOCH-1..EPOCH-5).
//!
//! ```text
//!  epoch k (owner X):  MK, seeds  --Chain0-->  CK_0 --Chain--> CK_1 --Chain--> ...
//!                                              |Msg           |Msg
//!                                              K_0            K_1
//!  epoch k+1 (owner Y): E fresh; RK_{k+1}, KS_{k+1} = KDF-5(RK_k, DH(E, E_peer));
//!                       {MK', seeds'}_KS_{k+1}; confirm = KDF-10(seeds_k, pub(E)); pn
//! ```
//!
//! Epochs alternate: a party turns the epoch when it sends content and the newest epoch belongs
//! to the peer, or when it has no sending epoch at all (EPOCH-2); receipts ride the current
//! sending epoch. Every message of an epoch carries the epoch's header until the sender knows
//! the peer has the epoch: a receipt for one of its messages, or a message of a newer peer epoch
//! (EPOCH-3). The epoch's owner keeps its ratchet secret until the peer answers; the receiver of
//! a new epoch deletes its own secret and closes the sender's previous epoch at `pn`, keeping
//! only the keys of messages it has not received (EPOCH-5). Both sides delete `MK` once `CK_0`
//! exists and every `CK_n`, `K_n` once used (CHAIN-5); only the seeds stay, for nonces, tags and
//! the confirmation.

use crate::handshake::open;
use crate::model::SottoModel;
use crate::state::{RecvChain, SendChain, Session, State};
use crate::term::{Atom, Const, Dev, Label, Party, Shape, TermId, Terms};
use crate::variant::Variant;

/// Highest counter a chain's masks can hold (16 bits); a configuration's bound
/// ([`crate::scenario::Config::max_counter`]) is at most this (LIM-3 is far larger).
pub const MAX_COUNTER: u8 = 15;

/// Whether the device owns an epoch of a session (EPOCH-1: even epochs are the initiator's).
pub fn owns(ses: &Session, epoch: u8) -> bool {
    (epoch % 2 == 0) == ses.initiator
}

/// CHAIN-1: `CK_0 = Extract(s1, MK)`.
pub fn chain_key(t: &Terms, mk: TermId, seeds: TermId) -> TermId {
    t.kdf(Label::Chain0, &[mk, seeds])
}

/// CHAIN-2..CHAIN-5: seals `inner` with the chain's next key and steps the chain.
/// Returns the counter, the sealed payload and the message id.
pub fn seal_chain(
    t: &Terms,
    variant: Variant,
    chain: &mut SendChain,
    inner: TermId,
) -> (u8, TermId, TermId) {
    let n = chain.n;
    let k = t.kdf(Label::Msg, &[chain.ck]);
    let id = t.kdf(Label::Id, &[chain.ck]);
    let payload = t.aead(k, n, inner);
    if variant != Variant::ReuseMessageKey {
        chain.ck = t.kdf(Label::Chain, &[chain.ck]);
        chain.n = n + 1;
    }
    (n, payload, id)
}

/// What opening a payload on a receiving chain gave.
pub enum Opened {
    /// Opened: inner plaintext and message id; the chain was stepped.
    Fresh(TermId, TermId),
    /// RX-2: the counter was used already.
    Duplicate,
}

/// RX-2: opens message `n` on a receiving chain, stepping it (on a copy the caller keeps only on
/// success). `None` if the payload does not open.
pub fn open_on_chain(
    m: &SottoModel,
    chain: &mut RecvChain,
    n: u8,
    payload: TermId,
) -> Option<(TermId, TermId)> {
    match open_counter(m, chain, n, payload)? {
        Opened::Fresh(inner, id) => Some((inner, id)),
        Opened::Duplicate => None,
    }
}

/// RX-2 with duplicates told apart from failures.
pub fn open_counter(
    m: &SottoModel,
    chain: &mut RecvChain,
    n: u8,
    payload: TermId,
) -> Option<Opened> {
    let t = m.t();
    if n > m.config.max_counter {
        return None; // beyond the model's bound (too_many_skipped)
    }
    if chain.closed && n >= chain.next {
        return None; // expired_epoch: the epoch was closed at `pn`, so no such message was sent
    }
    if n < chain.next {
        if chain.skipped >> n & 1 == 0 {
            return Some(Opened::Duplicate);
        }
        let mut ck = chain.ck0;
        for _ in 0..n {
            ck = t.kdf(Label::Chain, &[ck]);
        }
        let inner = open(m, payload, t.kdf(Label::Msg, &[ck]), n)?;
        chain.skipped &= !(1 << n);
        return Some(Opened::Fresh(inner, t.kdf(Label::Id, &[ck])));
    }
    let mut ck = chain.ck;
    let mut skipped = chain.skipped;
    for j in chain.next..n {
        skipped |= 1 << j;
        ck = t.kdf(Label::Chain, &[ck]);
    }
    let inner = open(m, payload, t.kdf(Label::Msg, &[ck]), n)?;
    chain.skipped = skipped;
    chain.next = n + 1;
    chain.ck = t.kdf(Label::Chain, &[ck]);
    Some(Opened::Fresh(inner, t.kdf(Label::Id, &[ck])))
}

/// EPOCH-5: closes a receiving chain at `pn` messages: keys of the counters not received yet are
/// kept as skipped keys, the chain key is deleted.
pub fn close_chain(chain: &mut RecvChain, pn: u8, max_counter: u8) {
    for j in chain.next..pn.min(max_counter + 1) {
        chain.skipped |= 1 << j;
    }
    chain.next = chain.next.max(pn.min(max_counter + 1));
    chain.closed = true;
}

/// Whether `id` names a message sealed so far on a sending chain (EPOCH-3: a receipt for it
/// acknowledges the epoch).
pub fn names_message_of(t: &Terms, chain: &SendChain, id: TermId) -> bool {
    let mut ck = chain.ck0;
    for _ in 0..chain.n {
        if t.kdf(Label::Id, &[ck]) == id {
            return true;
        }
        ck = t.kdf(Label::Chain, &[ck]);
    }
    false
}

/// The skipped message keys a receiving chain holds (they leak on compromise).
pub fn skipped_keys(t: &Terms, chain: &RecvChain) -> Vec<TermId> {
    let mut out = Vec::new();
    let mut ck = chain.ck0;
    for j in 0..chain.next {
        if chain.skipped >> j & 1 == 1 {
            out.push(t.kdf(Label::Msg, &[ck]));
        }
        ck = t.kdf(Label::Chain, &[ck]);
    }
    out
}

impl SottoModel {
    /// Seals `inner` on session `i` of `from` (EPOCH-2, EPOCH-3). Content (`content`) turns the
    /// epoch when the newest epoch belongs to the peer; a receipt rides the current sending
    /// epoch, and turns one only when the device has none yet (a responder that has only
    /// received). Every message of an unacknowledged epoch carries the epoch's header.
    /// Returns (envelope, id, epoch).
    pub(crate) fn seal_on_session(
        &self,
        s: &mut State,
        from: Dev,
        i: usize,
        inner: TermId,
        content: bool,
    ) -> (TermId, TermId, u8) {
        let t = self.t();
        let ses = s.dev(from).sessions[i].clone();
        let turn = match &ses.send {
            None => true,
            Some(_) => content && !owns(&ses, ses.newest),
        };
        if turn {
            self.turn_epoch(s, from, i);
        }
        let mut chain = s.dev(from).sessions[i]
            .send
            .clone()
            .expect("a sending epoch exists or was just started");
        let (n, payload, id) = seal_chain(t, self.variant, &mut chain, inner);
        let shape = if chain.epoch == 0 {
            Shape::First
        } else {
            Shape::EpochStart
        };
        let env = match chain.header.and_then(|h| t.fields(h)) {
            // EPOCH-3: the header rides on every message until the epoch is acknowledged.
            Some(h) => {
                let mut f = vec![t.cnst(Const::Shape(shape))];
                f.extend_from_slice(&h);
                f.extend([t.num(n), payload]);
                t.tup(&f)
            }
            None => {
                let tag = t.kdf(Label::Tag, &[chain.seeds]);
                t.tup(&[t.cnst(Const::Shape(Shape::Data)), tag, t.num(n), payload])
            }
        };
        let epoch = chain.epoch;
        s.dev_mut(from).sessions[i].send = Some(chain);
        (env, id, epoch)
    }

    /// EPOCH-2: starts a new sending epoch answering the peer's newest one. The previous sending
    /// chain and ratchet secret are deleted; `pn` tells the peer how many messages it had.
    fn turn_epoch(&self, s: &mut State, from: Dev, i: usize) {
        let t = self.t();
        let compromised = s.is_compromised(from);
        let ses = s.dev(from).sessions[i].clone();
        let me = Party::Dev(from);
        let k = ses.newest;
        let peer = ses
            .recv
            .iter()
            .find(|c| c.epoch == k)
            .expect("the peer's newest epoch has a receiving chain");
        let e = k + 1;
        let ratchet = t.atom(Atom::Ratchet(ses.slot, e, me));
        let ratchet_pub = t.pub_of(ratchet);
        let peer_pub = ses
            .peer_ratchet
            .expect("the peer's newest ratchet key is known");
        let peer_priv = t.private_of(peer_pub).expect("a ratchet public key");
        let dh = t.dh(ratchet, peer_priv);
        let root = t.kdf(Label::EpochRoot, &[ses.root, dh]);
        let ks = if self.variant == Variant::KeyShareReadable {
            t.kdf(Label::EpochKeyShare, &[ratchet_pub])
        } else {
            t.kdf(Label::EpochKeyShare, &[ses.root, dh])
        };
        let mk = t.atom(Atom::MasterKey(ses.slot, e, me));
        let seeds = t.atom(Atom::Seeds(ses.slot, e, me));
        let ks_box = t.aead(ks, 0, t.tup(&[mk, seeds]));
        let confirm = t.kdf(Label::Confirm, &[peer.seeds, ratchet_pub]);
        let pn = ses.send.as_ref().map_or(0, |c| c.n);
        let ck0 = chain_key(t, mk, seeds);
        let chain = SendChain {
            epoch: e,
            n: 0,
            ck: ck0,
            ck0,
            seeds,
            header: Some(t.tup(&[peer.tag, ratchet_pub, confirm, ks_box, t.num(pn)])),
        };
        let ses = &mut s.dev_mut(from).sessions[i];
        ses.root = root;
        ses.mine = Some(ratchet);
        ses.newest = e;
        ses.send = Some(chain);
        if compromised && ses.heal.is_none() {
            ses.heal = Some(e);
        }
    }

    /// EPOCH-3..EPOCH-5: opens an epoch start without changing state. Returns the session index,
    /// the updated session, the inner plaintext, the counter and the id; `Err(true)` when the
    /// envelope should be kept for retry, `Err(false)` when refused.
    #[allow(clippy::type_complexity)]
    pub(crate) fn open_epoch_start(
        &self,
        s: &State,
        me: Dev,
        f: &[TermId],
    ) -> Result<(usize, Session, TermId, u8, TermId), bool> {
        let t = self.t();
        let [_, prev_tag, e_pub, confirm, ks_box, pn, n, payload] = *f else {
            return Err(false);
        };
        let n = num(t, n).ok_or(false)?;
        let pn = num(t, pn).ok_or(false)?;
        let dev = s.dev(me);
        let i = dev
            .sessions
            .iter()
            .position(|x| {
                x.send
                    .as_ref()
                    .is_some_and(|c| t.kdf(Label::Tag, &[c.seeds]) == prev_tag)
            })
            .ok_or(true)?;
        let mut ses = dev.sessions[i].clone();
        let own = ses.send.clone().ok_or(false)?;
        if own.epoch != ses.newest {
            return Err(false); // epoch_conflict
        }
        if confirm != t.kdf(Label::Confirm, &[own.seeds, e_pub]) {
            return Err(false); // key_confirmation_failed
        }
        let mine = ses.mine.ok_or(false)?;
        let dh = t.dh(mine, t.private_of(e_pub).ok_or(false)?);
        let root = t.kdf(Label::EpochRoot, &[ses.root, dh]);
        let ks = if self.variant == Variant::KeyShareReadable {
            t.kdf(Label::EpochKeyShare, &[e_pub])
        } else {
            t.kdf(Label::EpochKeyShare, &[ses.root, dh])
        };
        let share = open(self, ks_box, ks, 0).ok_or(false)?;
        let fields = t.fields(share).ok_or(false)?;
        let [mk, seeds] = *fields.as_slice() else {
            return Err(false);
        };
        let ck0 = chain_key(t, mk, seeds);
        let epoch = own.epoch + 1;
        let mut chain = RecvChain {
            epoch,
            next: 0,
            ck: ck0,
            ck0,
            skipped: 0,
            seeds,
            tag: t.kdf(Label::Tag, &[seeds]),
            ratchet: e_pub,
            closed: false,
        };
        let (inner, id) = open_on_chain(self, &mut chain, n, payload).ok_or(false)?;
        if matches!(
            t.as_atom(t.private_of(e_pub).ok_or(false)?),
            Some(Atom::Ratchet(_, _, Party::Server))
        ) {
            ses.tainted = true;
        }
        ses.root = root;
        ses.mine = None;
        ses.peer_ratchet = Some(e_pub);
        ses.newest = epoch;
        // The sending chain stays for receipts (EPOCH-2); the peer has its epoch now (EPOCH-3).
        if let Some(c) = ses.send.as_mut() {
            c.header = None;
        }
        // EPOCH-5: the peer's previous epoch is closed at `pn` messages.
        if let Some(prev) = epoch.checked_sub(2) {
            if let Some(c) = ses.recv.iter_mut().find(|c| c.epoch == prev) {
                close_chain(c, pn, self.config.max_counter);
            }
        }
        ses.recv.push(chain);
        Ok((i, ses, inner, n, id))
    }
}

/// A small public number term's value.
pub fn num(t: &Terms, id: TermId) -> Option<u8> {
    match t.get(id) {
        crate::term::Term::Const(Const::Num(n)) => Some(n),
        _ => None,
    }
}
