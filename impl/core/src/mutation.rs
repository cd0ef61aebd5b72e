//! Test-only mutation switches (feature `mutations`, off by default): each one breaks one safeguard
//! on purpose, so that the conformance suite can show it fails when the implementation is wrong.
//!
//! ```text
//!   SkipPrekeySignatureCheck  PreKeyBundle::from_bytes accepts bad sig_ikd / sig_spk   (KEY-5)
//!   AckBeforeCommit           sotto-client acks a PUBLISH before committing it         (RX-4)
//!   ReuseNonce                every message of a chain uses the nonce of counter 0      (CHAIN-5)
//!   PlaintextIdInClear        pairwise envelopes carry the message id in the clear      (CHAIN-3)
//!   BrokerKeepsAcknowledged   the embedded broker keeps envelopes after their PUBACK    (Req6)
//! ```
//!
//! The switch is process-global: tests that set it must not run in parallel with each other (or
//! with any test that expects the unmutated behaviour). Without the feature none of this, nor any
//! of the code it turns on, is compiled.

use std::sync::atomic::{AtomicU8, Ordering};

/// One way to break the implementation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mutation {
    /// Prekey bundle verification (KEY-5) accepts bad `sig_ikd` and `sig_spk` signatures.
    SkipPrekeySignatureCheck,
    /// The client acknowledges a PUBLISH before it commits the envelope (breaks RX-4).
    AckBeforeCommit,
    /// Every message of a chain is sealed with the nonce of counter 0, keys unchanged (breaks
    /// CHAIN-5); receivers use the same rule, so messages still open.
    ReuseNonce,
    /// Each sealed pairwise envelope also carries its message id (CHAIN-3) in the clear after the
    /// ciphertext; the decoder strips it again, so the chat still works.
    PlaintextIdInClear,
    /// The embedded broker (sotto-server) keeps each envelope after its recipient's PUBACK, as
    /// a commit-log broker such as rumqttd 0.20 did (breaks Req6 / BROKER-4).
    BrokerKeepsAcknowledged,
}

/// The active mutation: 0 for none, else `Mutation::code`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

impl Mutation {
    /// Every mutation.
    pub const ALL: [Mutation; 5] = [
        Mutation::SkipPrekeySignatureCheck,
        Mutation::AckBeforeCommit,
        Mutation::ReuseNonce,
        Mutation::PlaintextIdInClear,
        Mutation::BrokerKeepsAcknowledged,
    ];

    /// The kebab-case name (`skip-prekey-signature-check`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Mutation::SkipPrekeySignatureCheck => "skip-prekey-signature-check",
            Mutation::AckBeforeCommit => "ack-before-commit",
            Mutation::ReuseNonce => "reuse-nonce",
            Mutation::PlaintextIdInClear => "plaintext-id-in-clear",
            Mutation::BrokerKeepsAcknowledged => "broker-keeps-acknowledged",
        }
    }

    /// The mutation with this kebab-case name.
    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.into_iter().find(|m| m.name() == name)
    }

    fn code(self) -> u8 {
        match self {
            Mutation::SkipPrekeySignatureCheck => 1,
            Mutation::AckBeforeCommit => 2,
            Mutation::ReuseNonce => 3,
            Mutation::PlaintextIdInClear => 4,
            Mutation::BrokerKeepsAcknowledged => 5,
        }
    }
}

/// Turns one mutation on for the whole process, or all of them off (`None`).
pub fn set(m: Option<Mutation>) {
    ACTIVE.store(m.map_or(0, Mutation::code), Ordering::SeqCst);
}

/// Whether `m` is the active mutation.
pub fn active(m: Mutation) -> bool {
    ACTIVE.load(Ordering::SeqCst) == m.code()
}

/// The active mutation, if any.
pub fn current() -> Option<Mutation> {
    let code = ACTIVE.load(Ordering::SeqCst);
    Mutation::ALL.into_iter().find(|m| m.code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case_and_round_trip() {
        for m in Mutation::ALL {
            assert!(
                m.name()
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c == b'-')
            );
            assert_eq!(Mutation::from_name(m.name()), Some(m));
        }
        assert_eq!(Mutation::from_name("none"), None);
    }
}
