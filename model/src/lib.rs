//! # sotto-model: the protocol against a server that is the attacker
//!
//! Sotto's threat model makes the whole server side an active attacker: the membership service
//! that hands out user ids, certificates and prekey bundles, and the MQTT broker that stores
//! offline messages, see every byte and may drop, duplicate, reorder, replay and inject, restart
//! and lose their queues, mint certificates and forge bundles. This crate is a
//! [stateright](https://docs.rs/stateright) model of the protocol of `docs/protocol.md` against
//! exactly that attacker, so that a reviewer can run one command and see, property by property,
//! what the protocol guarantees (Req1..Req8) and what it does not (the trust-on-first-use limit),
//! and see the attack appear when a safeguard is removed.
//!
//! ```text
//!            scenario (what users mean to do)          budgets (what the server may do, where)
//!                        |                                          |
//!     Signup ScanCard FetchBundle Send GroupCreate ...     ForgeBundle Drop Duplicate Reorder
//!                        v                                  Replay Inject Restart Compromise Steal
//!   devices A B C  --Publish--> broker queues (QoS 1) --Receive--> devices
//!        |    ^                      |  every envelope                |
//!        |    '------ receipts ------'  is learned by the attacker    '-- commit, receipt, ack
//!        v
//!   ghost records (who really sent what)  --->  properties (Req8, Req5, FS, PCS, Req6, GRP-6, ...)
//! ```
//!
//! ## Symbolic crypto
//! Keys, DH results, KDF outputs, AEAD boxes and signatures are terms ([`term`]), hash-consed so
//! a state holds only small ids. Crypto is perfect: a box opens only with its key term, a KDF is
//! one-way, a DH needs one private key. The attacker's knowledge ([`knowledge`]) is a set of terms
//! closed under analysis (split tuples, open boxes whose key it can build, read signed content);
//! whether it can *build* a term is decided on demand. Reusing a key with the same nonce gives the
//! key away, which is how the `reuse-message-key` variant fails.
//!
//! ## Honest devices
//! Devices sign up with keys only (Req1), scan cards in person (verified contacts) or fetch
//! bundles from the directory (unverified), set up sessions with X3DH and the paper's key-share
//! block ([`handshake`]), send on chains that turn epochs with fresh key shares ([`ratchet`]),
//! receive, commit with a receipt and acknowledge ([`receive`]), resend on timeout, drop
//! duplicates, keep early envelopes for retry, go offline and online, and run a group whose admin
//! rekeys on every change, which members leave and whose admin hands the role over ([`group`]). A scenario ([`scenario`]) says which of these the users
//! do, in order; the network and the attacker interleave freely.
//!
//! ## The attacker
//! [`attacker`] gives the server its steps, each within a budget and a window of the scenario:
//! broker faults, replays of recorded first messages, injection of messages it can build from
//! typed candidates, forged bundles, a device compromise (its current state leaks: forward and
//! post-compromise secrecy) and a stolen device (only its sealed store leaks: Req7).
//!
//! ## Properties
//! [`properties`] names each property after the requirement or rule it checks, so
//! `grep Req8` finds it. `sometimes` properties make sure no invariant holds vacuously, and show
//! the documented limits as examples: the server reads a message to an unverified contact whose
//! bundle it forged (CARD-4), and a compromise reads an epoch-0 message it can redo X3DH for.
//!
//! ## Checking, variants, traces
//! [`check`] runs exhaustive checks and finds shortest counterexamples; [`variant`] lists the
//! broken variants and the property each must break; [`trace`] writes and replays JSON traces
//! (actions in protocol vocabulary and the abstract state after each step) for the conformance
//! harness; [`chart`] draws a trace as a message sequence chart (SVG) and [`counterexample`]
//! gives every broken variant's counterexample as a trace; [`refusal`] counts, per refusal branch
//! (a device refusing, an attacker's attempt failing), the explored transitions that reach it, so
//! that a check nobody tests shows up. The binary `sotto-model` is the command line;
//! `docs/model.md` explains every abstraction, the bounds, and what a symbolic model cannot show.

pub mod action;
pub mod attacker;
pub mod chart;
pub mod check;
pub mod counterexample;
pub mod group;
pub mod handshake;
pub mod knowledge;
pub mod model;
pub mod properties;
pub mod ratchet;
pub mod receive;
pub mod refusal;
pub mod scenario;
pub mod state;
pub mod term;
pub mod trace;
pub mod variant;

pub use action::Action;
pub use model::SottoModel;
pub use scenario::Config;
pub use state::State;
pub use variant::Variant;
