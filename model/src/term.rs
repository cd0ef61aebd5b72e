//! Symbolic terms: the model's crypto.
//!
//! Every key, Diffie-Hellman result, KDF output, AEAD box and signature is a [`Term`]. Terms are
//! hash-consed by [`Terms`]: building the same term twice gives the same [`TermId`], so equality of
//! ids is equality of terms, and a state holds only small ids. Symbolic crypto is perfect crypto:
//!
//! - `Dh(a, b)` is the shared secret of the private atoms `a` and `b` (unordered): it can be built
//!   from one private key and the other's public key, and from nothing else (PRIM-1).
//! - `Kdf(label, args)` is one-way: it can be built from its arguments, never inverted (PRIM-3).
//! - `Aead { key, nonce, body }` reveals `body` only to a holder of `key` (PRIM-5); the attacker
//!   can build one if it can build the key and the body.
//! - `Sig { key, body }` reveals `body` to anyone and can be built only with the private key
//!   (PRIM-2); verifying it needs the public key `Pub(key)`.
//!
//! Ids are assigned in the order terms are first built. With several checker threads that order
//! varies between runs, but within one run each term has exactly one id, so state counts and
//! paths do not depend on it. Nothing outside a run (traces, reports) ever shows an id: terms are
//! printed structurally by [`Terms::show`].

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::sync::{RwLock, RwLockReadGuard};

/// Index of an interned term. Only meaningful together with the [`Terms`] that issued it.
pub type TermId = u32;

/// An honest device (a user with one device). Shown as its letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Dev {
    /// Alice.
    A,
    /// Bob.
    B,
    /// Carol.
    C,
    /// Dave (deep configurations only).
    D,
}

impl Dev {
    /// Every device a configuration may use, in order.
    pub const ALL: [Dev; 4] = [Dev::A, Dev::B, Dev::C, Dev::D];

    /// Position of the device in the state's vectors.
    pub fn ix(self) -> usize {
        self as usize
    }

    /// The device at a position.
    pub fn from_ix(i: usize) -> Dev {
        Dev::ALL[i]
    }
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// Whoever can own keys: an honest device or the server (the attacker).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Party {
    /// An honest device.
    Dev(Dev),
    /// The server side: membership service and broker, the Dolev-Yao attacker.
    Server,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Party::Dev(d) => write!(f, "{d}"),
            Party::Server => write!(f, "S"),
        }
    }
}

/// A session instance: the k-th session its initiator started (one ephemeral key `EK` each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    /// Who drew the session's ephemeral key.
    pub initiator: Party,
    /// Sequence number among the initiator's sessions.
    pub k: u8,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.initiator, self.k)
    }
}

/// Fresh names: private keys and random values, each drawn once by one party.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Atom {
    /// `IKs`, the Ed25519 identity key (KEY-1).
    IdSig(Party),
    /// `IKd`, the X25519 identity DH key (KEY-1).
    IdDh(Party),
    /// `SPK`, the signed prekey (KEY-3).
    Spk(Party),
    /// An `OPK`, one-time prekey (KEY-4).
    Opk(Party, u8),
    /// The TLS key pair (KEY-6).
    Tls(Party),
    /// The membership service's CA signing key.
    Ca,
    /// Personal data of the user (name, phone number, address book): never leaves the device (Req1).
    Personal(Dev),
    /// The store passphrase, only in the user's head (Req7).
    Passphrase(Dev),
    /// `EK_A`, the ephemeral key of a session (X3DH-1), deleted once `SK` is derived (X3DH-7).
    Ek(Slot),
    /// `E`, the ratchet key of an epoch (EPOCH-2), drawn by `by`; for epoch 0 the initiator's
    /// `E_A0`, sent in the identity box (X3DH-3, X3DH-7).
    Ratchet(Slot, u8, Party),
    /// `MK`, the paper's master key of an epoch (KS-1).
    MasterKey(Slot, u8, Party),
    /// `s1..s4`, the paper's four random numbers of an epoch, as one name (KS-1).
    Seeds(Slot, u8, Party),
    /// `GMK` of a group epoch (GRP-3).
    GroupKey(u8),
    /// The group's four seeds of a group epoch (GRP-3).
    GroupSeeds(u8),
    /// The plaintext of scripted pairwise message `m<i>`.
    Text(u8),
    /// The plaintext of scripted group message `g<i>`.
    GroupText(u8),
    /// A plaintext the attacker made up.
    Forged(u8),
}

/// Labels of the KDFs and signature contexts (section 6 of docs/protocol.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    /// KDF-1 `sotto/v1/x3dh`.
    X3dh,
    /// KDF-2 `sotto/v1/root`.
    Root,
    /// KDF-3 `sotto/v1/keyshare`.
    KeyShare,
    /// KDF-4 `sotto/v1/identity`.
    Identity,
    /// KDF-5 `sotto/v1/epoch`, first half (`RK_{k+1}`).
    EpochRoot,
    /// KDF-5 `sotto/v1/epoch`, second half (`KS_{k+1}`).
    EpochKeyShare,
    /// CHAIN-1 `CK_0 = Extract(s1, MK)`.
    Chain0,
    /// KDF-6 `sotto/v1/msg`.
    Msg,
    /// KDF-7 `sotto/v1/chain`.
    Chain,
    /// KDF-8 `sotto/v1/id`.
    Id,
    /// KDF-9 `sotto/v1/tag`.
    Tag,
    /// KDF-10 `sotto/v1/confirm`.
    Confirm,
    /// KDF-11 `sotto/v1/group-chain`.
    GroupChain,
    /// KDF-12 `sotto/v1/group-tag`.
    GroupTag,
    /// KDF-14 `sotto/v1/ikd` (signature context).
    SigIkd,
    /// KDF-15 `sotto/v1/spk` (signature context).
    SigSpk,
    /// KDF-16 `sotto/v1/signup` (signature context).
    SigSignup,
    /// KDF-20 `sotto/v1/group-members` (signature context).
    SigMembers,
    /// KDF-21 `sotto/v1/group-msg` (signature context).
    SigGroupMsg,
    /// KDF-22 `sotto/v1/group-handover` (signature context).
    SigHandover,
    /// The store key, Argon2id of the passphrase (Req7).
    StoreKey,
    /// A client certificate (signed by the CA).
    Cert,
}

/// Inner plaintext kinds (IN-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// 1: text.
    Text,
    /// 2: receipt (RX-5).
    Receipt,
    /// 3: key update (EPOCH-2).
    KeyUpdate,
    /// 4: group key (GRP-3).
    GroupKey,
    /// 5: group removed (GRP-6).
    GroupRemoved,
    /// 6: group ack (GRP-9): a member holds a group epoch's key; not receipted.
    GroupAck,
    /// 7: group leave (GRP-11), to the admin.
    GroupLeave,
    /// 8: group handover (GRP-12), from the admin to the new admin.
    GroupHandover,
    /// 9: handed-over group key (GRP-12): the handover, then a group key.
    HandedOverKey,
}

/// Envelope types (ENV-1), plus the out-of-band and directory formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shape {
    /// `0x11` data message (ENV-2).
    Data,
    /// `0x12` first message (ENV-3).
    First,
    /// `0x13` epoch start (ENV-4).
    EpochStart,
    /// `0x14` group message (ENV-5).
    Group,
    /// Prekey bundle (KEY-5).
    Bundle,
    /// Signup request (SIGNUP-1).
    Signup,
    /// Group membership (GRP-2).
    Members,
}

/// Public constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Const {
    /// A user id (ID-1), public.
    UserId(Party),
    /// A KDF label or signature context.
    Label(Label),
    /// A small public number: counter, epoch, index.
    Num(u8),
    /// An inner plaintext kind.
    Kind(Kind),
    /// An envelope or message format tag.
    Shape(Shape),
    /// "No one-time prekey" (`opk_id = 0`, X3DH-5).
    NoOpk,
    /// The group id (ID-2); one group per configuration.
    GroupId,
}

/// Most children a composite term has (the longest is a three-member group membership).
pub const MAX_ARITY: usize = 12;

/// Children of a composite term, inline (terms never allocate).
#[derive(Clone, Copy, Debug)]
pub struct Ids {
    len: u8,
    ids: [TermId; MAX_ARITY],
}

impl Ids {
    /// From a slice of at most [`MAX_ARITY`] ids.
    pub fn new(v: &[TermId]) -> Ids {
        assert!(
            v.len() <= MAX_ARITY,
            "a term has at most {MAX_ARITY} children"
        );
        let mut ids = [0; MAX_ARITY];
        ids[..v.len()].copy_from_slice(v);
        Ids {
            len: v.len() as u8,
            ids,
        }
    }
}

impl Ids {
    /// The children as a slice.
    pub fn as_slice(&self) -> &[TermId] {
        &self.ids[..self.len as usize]
    }
}

impl std::ops::Deref for Ids {
    type Target = [TermId];
    fn deref(&self) -> &[TermId] {
        &self.ids[..self.len as usize]
    }
}

impl PartialEq for Ids {
    fn eq(&self, o: &Ids) -> bool {
        **self == **o
    }
}

impl Eq for Ids {}

impl std::hash::Hash for Ids {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (**self).hash(h)
    }
}

/// A small, fast hasher for the interner (FxHash's mixing step).
#[derive(Default)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64)
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(x as u64)
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64)
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// A symbolic term; children are ids of interned terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Term {
    /// A fresh name.
    Atom(Atom),
    /// The public key of a private atom.
    Pub(TermId),
    /// A public constant.
    Const(Const),
    /// DH of two private atoms, smaller id first.
    Dh(TermId, TermId),
    /// A one-way derivation.
    Kdf(Label, Ids),
    /// Authenticated encryption; the nonce is the public counter.
    Aead {
        /// The key.
        key: TermId,
        /// The message counter the nonce is derived from (CHAIN-4).
        nonce: u8,
        /// The plaintext.
        body: TermId,
    },
    /// A signature with a private key; reveals its body.
    Sig {
        /// The private signing key.
        key: TermId,
        /// The signed content.
        body: TermId,
    },
    /// Concatenation of fields.
    Tup(Ids),
}

/// The interning table.
#[derive(Default)]
pub struct Table {
    map: HashMap<Term, TermId, FxBuild>,
    terms: Vec<Term>,
    pub_of: HashMap<TermId, TermId, FxBuild>,
}

impl Table {
    /// The term behind an id.
    pub fn term(&self, id: TermId) -> &Term {
        &self.terms[id as usize]
    }

    /// The id of `Pub(atom)` if it was ever built.
    pub fn pub_of(&self, atom: TermId) -> Option<TermId> {
        self.pub_of.get(&atom).copied()
    }

    /// The id of a term if it was ever built.
    pub fn lookup(&self, t: &Term) -> Option<TermId> {
        self.map.get(t).copied()
    }

    /// Number of interned terms.
    pub fn len(&self) -> usize {
        self.terms.len()
    }

    /// Whether nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// The hash-consing interner shared by a model and its checker threads.
#[derive(Default)]
pub struct Terms {
    table: RwLock<Table>,
}

impl Terms {
    /// A read guard for a batch of look-ups.
    pub fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.table.read().expect("term table lock poisoned")
    }

    /// Interns a term and returns its id.
    pub fn intern(&self, t: Term) -> TermId {
        if let Some(id) = self.read().lookup(&t) {
            return id;
        }
        let mut w = self.table.write().expect("term table lock poisoned");
        if let Some(id) = w.map.get(&t) {
            return *id;
        }
        let id = TermId::try_from(w.terms.len()).expect("fewer than 2^32 terms");
        if let Term::Pub(a) = t {
            w.pub_of.insert(a, id);
        }
        w.terms.push(t);
        w.map.insert(t, id);
        id
    }

    /// A fresh name.
    pub fn atom(&self, a: Atom) -> TermId {
        self.intern(Term::Atom(a))
    }

    /// The public key of an atom.
    pub fn pk(&self, a: Atom) -> TermId {
        let id = self.atom(a);
        self.intern(Term::Pub(id))
    }

    /// The public key of an interned private term.
    pub fn pub_of(&self, private: TermId) -> TermId {
        self.intern(Term::Pub(private))
    }

    /// A public constant.
    pub fn cnst(&self, c: Const) -> TermId {
        self.intern(Term::Const(c))
    }

    /// A small public number.
    pub fn num(&self, n: u8) -> TermId {
        self.cnst(Const::Num(n))
    }

    /// DH of two private terms (order-free).
    pub fn dh(&self, a: TermId, b: TermId) -> TermId {
        let (x, y) = if a <= b { (a, b) } else { (b, a) };
        self.intern(Term::Dh(x, y))
    }

    /// A one-way derivation.
    pub fn kdf(&self, l: Label, args: &[TermId]) -> TermId {
        self.intern(Term::Kdf(l, Ids::new(args)))
    }

    /// An AEAD box.
    pub fn aead(&self, key: TermId, nonce: u8, body: TermId) -> TermId {
        self.intern(Term::Aead { key, nonce, body })
    }

    /// A signature.
    pub fn sig(&self, key: TermId, body: TermId) -> TermId {
        self.intern(Term::Sig { key, body })
    }

    /// A tuple.
    pub fn tup(&self, parts: &[TermId]) -> TermId {
        self.intern(Term::Tup(Ids::new(parts)))
    }

    /// A tuple of any length, nested in chunks of [`MAX_ARITY`].
    pub fn tup_tree(&self, parts: &[TermId]) -> TermId {
        if parts.len() <= MAX_ARITY {
            return self.tup(parts);
        }
        let chunks: Vec<TermId> = parts.chunks(MAX_ARITY).map(|c| self.tup(c)).collect();
        self.tup_tree(&chunks)
    }

    /// The private atom behind a public key term, if it is one.
    pub fn private_of(&self, public: TermId) -> Option<TermId> {
        match self.read().term(public) {
            Term::Pub(a) => Some(*a),
            _ => None,
        }
    }

    /// The fields of a tuple term.
    pub fn fields(&self, id: TermId) -> Option<Ids> {
        match self.read().term(id) {
            Term::Tup(p) => Some(*p),
            _ => None,
        }
    }

    /// The term behind an id.
    pub fn get(&self, id: TermId) -> Term {
        *self.read().term(id)
    }

    /// The atom behind an id, if it is an atom.
    pub fn as_atom(&self, id: TermId) -> Option<Atom> {
        match self.read().term(id) {
            Term::Atom(a) => Some(*a),
            _ => None,
        }
    }

    /// A readable rendering of a term (never an id).
    pub fn show(&self, id: TermId) -> String {
        let t = self.read();
        let mut out = String::new();
        render(&t, id, &mut out, 0);
        out
    }
}

fn render(t: &Table, id: TermId, out: &mut String, depth: usize) {
    use std::fmt::Write;
    if depth > 6 {
        out.push_str("..");
        return;
    }
    let list = |parts: &[TermId], out: &mut String| {
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            render(t, *p, out, depth + 1);
        }
    };
    match t.term(id) {
        Term::Atom(a) => {
            let _ = write!(out, "{}", show_atom(a));
        }
        Term::Pub(a) => {
            out.push_str("pub(");
            render(t, *a, out, depth + 1);
            out.push(')');
        }
        Term::Const(c) => {
            let _ = match c {
                Const::UserId(p) => write!(out, "uid.{p}"),
                Const::Label(l) => write!(out, "{l:?}"),
                Const::Num(n) => write!(out, "{n}"),
                Const::Kind(k) => write!(out, "{k:?}"),
                Const::Shape(s) => write!(out, "{s:?}"),
                Const::NoOpk => write!(out, "no-opk"),
                Const::GroupId => write!(out, "group-id"),
            };
        }
        Term::Dh(a, b) => {
            out.push_str("dh(");
            list(&[*a, *b], out);
            out.push(')');
        }
        Term::Kdf(l, args) => {
            let _ = write!(out, "{l:?}(");
            list(args, out);
            out.push(')');
        }
        Term::Aead { key, nonce, body } => {
            out.push('{');
            render(t, *body, out, depth + 1);
            let _ = write!(out, "}}#{nonce}_");
            render(t, *key, out, depth + 1);
        }
        Term::Sig { key, body } => {
            out.push_str("sig_");
            render(t, *key, out, depth + 1);
            out.push('(');
            render(t, *body, out, depth + 1);
            out.push(')');
        }
        Term::Tup(parts) => {
            out.push('<');
            list(parts, out);
            out.push('>');
        }
    }
}

/// A short readable name of an atom.
pub fn show_atom(a: &Atom) -> String {
    match a {
        Atom::IdSig(p) => format!("IKs.{p}"),
        Atom::IdDh(p) => format!("IKd.{p}"),
        Atom::Spk(p) => format!("SPK.{p}"),
        Atom::Opk(p, k) => format!("OPK.{p}{k}"),
        Atom::Tls(p) => format!("TLS.{p}"),
        Atom::Ca => "CA".to_string(),
        Atom::Personal(d) => format!("personal.{d}"),
        Atom::Passphrase(d) => format!("passphrase.{d}"),
        Atom::Ek(s) => format!("EK.{s}"),
        Atom::Ratchet(s, e, by) => format!("E.{s}.e{e}.{by}"),
        Atom::MasterKey(s, e, by) => format!("MK.{s}.e{e}.{by}"),
        Atom::Seeds(s, e, by) => format!("seeds.{s}.e{e}.{by}"),
        Atom::GroupKey(e) => format!("GMK.e{e}"),
        Atom::GroupSeeds(e) => format!("gseeds.e{e}"),
        Atom::Text(i) => format!("m{i}"),
        Atom::GroupText(i) => format!("g{i}"),
        Atom::Forged(i) => format!("forged{i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_consing_gives_equal_ids_for_equal_terms() {
        let t = Terms::default();
        let a = t.atom(Atom::IdDh(Party::Dev(Dev::A)));
        let b = t.atom(Atom::Spk(Party::Dev(Dev::B)));
        assert_eq!(t.dh(a, b), t.dh(b, a), "PRIM-1: DH is symmetric");
        let k1 = t.kdf(Label::X3dh, &[a, b]);
        let k2 = t.kdf(Label::X3dh, &[a, b]);
        assert_eq!(k1, k2);
        assert_ne!(k1, t.kdf(Label::X3dh, &[b, a]));
        assert_eq!(t.show(t.dh(a, b)), "dh(IKd.A, SPK.B)");
    }
}
