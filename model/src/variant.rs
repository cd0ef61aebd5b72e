//! Broken variants: the protocol with one safeguard removed.
//!
//! Each variant names the property it breaks. `check --variant NAME` must find a counterexample
//! for that property, shortest first; the correct protocol (`Variant::None`) must find none. A
//! variant that stopped failing would mean the property no longer guards its safeguard, so the
//! tests assert every one of them.

use serde::{Deserialize, Serialize};

/// Which safeguard is removed, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// The protocol as specified.
    None,
    /// KEY-5: accept a bundle without verifying `sig_ikd` and `sig_spk`.
    SkipPrekeySignatureCheck,
    /// CHAIN-5: seal every message of an epoch with the same message key and nonce.
    ReuseMessageKey,
    /// X3DH-8: no replay cache for first messages.
    NoReplayCache,
    /// RX-4: acknowledge the PUBLISH before committing the message.
    AckBeforeCommit,
    /// GRP-6: keep the group key when a member is removed.
    NoRekeyOnRemoval,
    /// KS-2: seal the key-share block under a key derived from public values only.
    KeyShareReadable,
    /// RX-9, CARD-4: accept a bundle or a first message without comparing its `IKs` with the
    /// known contact's; the contact is silently replaced (and unverified).
    SkipIdentityComparison,
    /// SAFE-1: the safety number hashes the user ids only, not the `IKs` each side holds.
    SafetyNumberWithoutKeys,
    /// GRP-4: a member accepts a group key for its group signed by any member, not only the admin.
    AcceptNonAdminGroupKey,
    /// GRP-12: a member accepts a handed-over group key from a new admin whose handover names it,
    /// without checking the handover's signature (by the admin it holds) and epoch.
    SkipHandoverCheck,
}

impl Variant {
    /// Every broken variant, in the order `--list-variants` prints them.
    pub const BROKEN: [Variant; 10] = [
        Variant::SkipPrekeySignatureCheck,
        Variant::ReuseMessageKey,
        Variant::NoReplayCache,
        Variant::AckBeforeCommit,
        Variant::NoRekeyOnRemoval,
        Variant::KeyShareReadable,
        Variant::SkipIdentityComparison,
        Variant::SafetyNumberWithoutKeys,
        Variant::AcceptNonAdminGroupKey,
        Variant::SkipHandoverCheck,
    ];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::None => "none",
            Variant::SkipPrekeySignatureCheck => "skip-prekey-signature-check",
            Variant::ReuseMessageKey => "reuse-message-key",
            Variant::NoReplayCache => "no-replay-cache",
            Variant::AckBeforeCommit => "ack-before-commit",
            Variant::NoRekeyOnRemoval => "no-rekey-on-removal",
            Variant::KeyShareReadable => "key-share-readable",
            Variant::SkipIdentityComparison => "skip-identity-comparison",
            Variant::SafetyNumberWithoutKeys => "safety-number-without-keys",
            Variant::AcceptNonAdminGroupKey => "accept-non-admin-group-key",
            Variant::SkipHandoverCheck => "skip-handover-check",
        }
    }

    /// The variant with a command-line name.
    pub fn named(name: &str) -> Option<Variant> {
        std::iter::once(Variant::None)
            .chain(Variant::BROKEN)
            .find(|v| v.name() == name)
    }

    /// What is removed, in one line.
    pub fn describe(self) -> &'static str {
        match self {
            Variant::None => "the protocol as specified",
            Variant::SkipPrekeySignatureCheck => {
                "KEY-5: a fetched bundle is used without checking sig_ikd and sig_spk"
            }
            Variant::ReuseMessageKey => {
                "CHAIN-5: the sending chain never steps, so one key and nonce seal every message"
            }
            Variant::NoReplayCache => {
                "X3DH-8: first messages are not checked against a replay cache"
            }
            Variant::AckBeforeCommit => "RX-4: the PUBLISH is acknowledged before the commit",
            Variant::NoRekeyOnRemoval => "GRP-6: removing a member keeps the group key",
            Variant::KeyShareReadable => {
                "KS-2: the key-share block is sealed under a key derived from public values"
            }
            Variant::SkipIdentityComparison => {
                "RX-9, CARD-4: a bundle or first message replaces a known contact's IKs silently"
            }
            Variant::SafetyNumberWithoutKeys => {
                "SAFE-1: the safety number hashes the user ids only, not the IKs held"
            }
            Variant::AcceptNonAdminGroupKey => {
                "GRP-4: a group key for the member's group is accepted from any member"
            }
            Variant::SkipHandoverCheck => {
                "GRP-12: a handed-over group key is accepted without checking the handover's signature and epoch"
            }
        }
    }

    /// The property this variant must break.
    pub fn breaks(self) -> Option<&'static str> {
        use crate::properties::names::*;
        match self {
            Variant::None => None,
            Variant::SkipPrekeySignatureCheck => Some(REQ5_NO_MITM_VERIFIED),
            Variant::ReuseMessageKey => Some(REQ8_SECRECY),
            Variant::NoReplayCache => Some(X3DH8_REPLAY_REJECTED),
            Variant::AckBeforeCommit => Some(RX4_ACKED_NOT_LOST),
            Variant::NoRekeyOnRemoval => Some(GRP6_REMOVED_MEMBER),
            Variant::KeyShareReadable => Some(REQ8_SECRECY),
            Variant::SkipIdentityComparison => Some(RX9_IDENTITY_STABLE),
            Variant::SafetyNumberWithoutKeys => Some(SAFE1_TOFU_DISCOVERABLE),
            Variant::AcceptNonAdminGroupKey => Some(GRP12_ADMIN_CHAIN),
            Variant::SkipHandoverCheck => Some(GRP12_ADMIN_CHAIN),
        }
    }
}
