//! The attacker's knowledge: a set of terms closed under analysis, with synthesis on demand.
//!
//! The server side sees every byte that reaches it: signup requests, directory uploads and every
//! envelope published to the broker. Whatever it learns is *analysed* at once, until nothing new
//! comes out:
//!
//! - a tuple splits into its fields;
//! - a signature reveals what it signs (verifying it needs only the public key);
//! - an AEAD box opens if the attacker can *build* its key; a box whose key it cannot build yet is
//!   re-examined whenever it learns something new;
//! - two different boxes under one key with one nonce (a reused message key) give the key away:
//!   ChaCha20-Poly1305 then leaks the XOR of the plaintexts and its one-time MAC key, so the model
//!   conservatively treats the key as known.
//!
//! *Synthesis* is never stored: [`Knowledge::can_build`] decides on demand whether a term can be
//! built from what is known (a DH from one private key and the other public key, a KDF from its
//! inputs, a box from its key and body, a signature from the private key and the body). Constants
//! (labels, numbers, user ids) are public.

use crate::term::{Table, Term, TermId, Terms};

/// A set of term ids as a bit set, trimmed so that equal sets hash equally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Knowledge {
    bits: Vec<u64>,
}

impl Knowledge {
    /// Whether the term is in the (analysed) set.
    pub fn knows(&self, id: TermId) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        self.bits.get(w).is_some_and(|x| x >> b & 1 == 1)
    }

    fn insert(&mut self, id: TermId) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        let fresh = self.bits[w] >> b & 1 == 0;
        self.bits[w] |= 1 << b;
        fresh
    }

    /// Every known term id, ascending.
    pub fn iter(&self) -> impl Iterator<Item = TermId> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &x)| {
            (0..64u32)
                .filter(move |b| x >> b & 1 == 1)
                .map(move |b| w as u32 * 64 + b)
        })
    }

    /// Number of known terms.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|x| x.count_ones() as usize).sum()
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the attacker can build the term from what it knows.
    pub fn can_build(&self, t: &Table, id: TermId) -> bool {
        if self.knows(id) {
            return true;
        }
        self.can_build_term(t, t.term(id))
    }

    /// Whether the attacker could build a term that may not be interned yet.
    pub fn can_build_term(&self, t: &Table, term: &Term) -> bool {
        match term {
            Term::Atom(_) => false,
            Term::Const(_) => true,
            Term::Pub(a) => self.can_build(t, *a),
            Term::Dh(a, b) => {
                (self.can_build(t, *a) && self.can_build_pub(t, *b))
                    || (self.can_build(t, *b) && self.can_build_pub(t, *a))
            }
            Term::Kdf(_, args) | Term::Tup(args) => args.iter().all(|a| self.can_build(t, *a)),
            Term::Aead { key, body, .. } => self.can_build(t, *key) && self.can_build(t, *body),
            Term::Sig { key, body } => self.can_build(t, *key) && self.can_build(t, *body),
        }
    }

    fn can_build_pub(&self, t: &Table, private: TermId) -> bool {
        t.pub_of(private).is_some_and(|p| self.knows(p)) || self.can_build(t, private)
    }

    /// Learns terms and closes the set under analysis.
    pub fn learn(&mut self, terms: &Terms, roots: &[TermId]) {
        let t = terms.read();
        let mut work: Vec<TermId> = roots.to_vec();
        loop {
            // Analyse everything new; note whether anything that could unlock a box came in.
            let mut new_boxes: Vec<TermId> = Vec::new();
            let mut new_keys = false;
            while let Some(id) = work.pop() {
                if !self.insert(id) {
                    continue;
                }
                match t.term(id) {
                    Term::Tup(parts) => work.extend(parts.iter().copied()),
                    Term::Sig { body, .. } => work.push(*body),
                    Term::Aead { key, body, .. } => {
                        if self.can_build(&t, *key) {
                            work.push(*body);
                        }
                        new_boxes.push(id);
                    }
                    _ => new_keys = true,
                }
            }
            // Boxes whose key became buildable (only something new can unlock one).
            if new_keys {
                for id in self.iter() {
                    if let Term::Aead { key, body, .. } = t.term(id) {
                        if !self.knows(*body) && self.can_build(&t, *key) {
                            work.push(*body);
                        }
                    }
                }
            }
            // A new box under a key and nonce already used for another body gives the key away.
            for nb in &new_boxes {
                let Term::Aead { key, nonce, body } = *t.term(*nb) else {
                    continue;
                };
                if self.knows(key) {
                    continue;
                }
                let reused = self.iter().any(|id| {
                    matches!(t.term(id), Term::Aead { key: k, nonce: n, body: b }
                        if *k == key && *n == nonce && *b != body)
                });
                if reused {
                    work.push(key);
                }
            }
            if work.is_empty() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term::{Atom, Dev, Label, Party};

    #[test]
    fn analysis_opens_boxes_once_the_key_is_buildable() {
        let t = Terms::default();
        let a = t.atom(Atom::IdDh(Party::Dev(Dev::A)));
        let b = t.atom(Atom::Spk(Party::Dev(Dev::B)));
        let pa = t.pub_of(a);
        let secret = t.atom(Atom::Text(1));
        let key = t.kdf(Label::Msg, &[t.dh(a, b)]);
        let boxed = t.aead(key, 0, secret);
        let mut k = Knowledge::default();
        k.learn(&t, &[boxed, pa]);
        assert!(!k.knows(secret), "Req8: a box stays shut without its key");
        assert!(!k.can_build(&t.read(), key));
        k.learn(&t, &[b]);
        assert!(
            k.knows(secret),
            "learning the SPK private key opens the box"
        );
    }

    #[test]
    fn a_reused_key_and_nonce_gives_the_key_away() {
        let t = Terms::default();
        let key = t.kdf(
            Label::Msg,
            &[t.atom(Atom::MasterKey(
                crate::term::Slot {
                    initiator: Party::Dev(Dev::A),
                    k: 0,
                },
                0,
                Party::Dev(Dev::A),
            ))],
        );
        let m1 = t.atom(Atom::Text(1));
        let m2 = t.atom(Atom::Text(2));
        let mut k = Knowledge::default();
        k.learn(&t, &[t.aead(key, 0, m1)]);
        assert!(!k.knows(m1));
        k.learn(&t, &[t.aead(key, 0, m2)]);
        assert!(
            k.knows(m1) && k.knows(m2),
            "CHAIN-5: nonce reuse breaks both"
        );
    }
}
