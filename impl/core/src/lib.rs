//! # sotto-core: the Sotto protocol without I/O
//!
//! The protocol of `docs/protocol.md`, byte for byte, as a library that never touches a socket, a
//! clock or the OS random source: time (`now`, server-corrected milliseconds, TIME-1) and randomness
//! (any [`crypto::CryptoRng`]) are arguments, so a seeded generator reproduces any trace, vector or
//! fuzz crash. The shells (`sotto-client`, `sotto-server`) move its bytes over MQTT and HTTPS.
//!
//! ```text
//!              bytes in                                      bytes out
//!   broker ---------------> Device::receive(now, ..) ----> Incoming (content, sender, id, time)
//!                               |  Envelope::decode (unverified, ENV-7)
//!                               |  Session::open / Session::accept_first / Group::open
//!                               v
//!                           state changes only if the payload opened (RX-3)
//!   person ---------------> Device::send(rng, now, ..) --> Outgoing (envelope bytes, recipients, id)
//! ```
//!
//! Layers, bottom up: [`codec`] and [`base32`] (bounded parsing), [`crypto`] (X25519 with the
//! all-zero check, strict Ed25519, HKDF, ChaCha20-Poly1305), [`kdf`] (every label), [`keys`],
//! [`signup`], [`card`], [`x3dh`] and [`keyshare`] (session setup with the paper's key share),
//! [`chain`], [`envelope`], [`inner`], [`session`] (epochs), [`group`], and [`device`], the engine
//! that ties them together with the replay cache ([`replay`]), duplicate suppression ([`dedup`])
//! and trust on first use.
//!
//! Every failure is a typed [`Error`] with a stable code and a [`Fault`]; nothing panics on any input;
//! every secret is zeroized on drop and redacted in `Debug` (PRIM-7).

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable
    )
)]

/// `mutated!(Mutation::X)`: whether the test-only switch `X` is on (feature `mutations`); the
/// constant `false` otherwise, so a real build holds no trace of the switches.
#[cfg(feature = "mutations")]
macro_rules! mutated {
    (Mutation::$m:ident) => {
        $crate::mutation::active($crate::mutation::Mutation::$m)
    };
}

/// `mutated!(Mutation::X)`: always `false` without the feature `mutations`.
#[cfg(not(feature = "mutations"))]
macro_rules! mutated {
    (Mutation::$m:ident) => {
        false
    };
}

pub mod base32;
pub mod card;
pub mod chain;
pub mod codec;
pub mod crypto;
pub mod dedup;
pub mod device;
pub mod envelope;
pub mod error;
pub mod group;
pub mod ids;
pub mod inner;
pub mod kdf;
pub mod keys;
pub mod keyshare;
pub mod limits;
#[cfg(feature = "mutations")]
pub mod mutation;
pub mod persist;
pub mod records;
pub mod replay;
pub mod session;
pub mod signup;
pub mod time;
pub mod x3dh;

pub use card::{ContactCard, SafetyNumber};
pub use device::{
    Device, Event, IdentityClaim, Inbound, Incoming, Outgoing, Reply, Trust, Verdict,
};
pub use error::{Error, Fault, Result};
pub use ids::{GroupId, MessageId, UserId};
pub use inner::Content;
pub use keys::{Identity, PreKeyBundle, PublicIdentity};
pub use time::ServerClock;
