//! Test-only mutation switches (feature `mutations`, off by default): each one removes one check
//! or breaks one safeguard on purpose, so that the conformance suite can show it fails when the
//! implementation is wrong (issue 5, item 6; issue 13, item 3: one switch per refusal rule).
//!
//! ```text
//!   switch                      rule      caught by
//!   SkipPrekeySignatureCheck    KEY-5     vectors
//!   AckBeforeCommit             RX-4      replay/client
//!   ReuseNonce                  CHAIN-4   vectors
//!   PlaintextIdInClear          CHAIN-3   vectors
//!   SkipIkdSignature            KEY-2     vectors
//!   SkipSpkSignature            KEY-3     vectors
//!   AllowPrekeyIdZero           ID-4      vectors
//!   AllowDuplicatePrekeyIds     SIGNUP-2  vectors
//!   SkipSignupSignature         SIGNUP-1  vectors
//!   SkipProofOfWork             SIGNUP-3  vectors
//!   SkipSpkiBound               LIM-16    vectors
//!   SkipOpkUploadBound          LIM-15    vectors
//!   SkipCardChecksum            CARD-1    vectors
//!   SkipCardUriBound            LIM-17    vectors
//!   SkipMembershipSignature     GRP-2     vectors
//!   AllowDuplicateMembers       GRP-2     vectors
//!   SkipGroupSizeBound          LIM-14    vectors
//!   SkipGroupMessageSignature   GRP-7     vectors
//!   AllowNonCanonicalVarint     NOT-2     vectors
//!   AllowBase32TrailingBits     NOT-3     vectors
//!   AllowTrailingBytes          NOT-5     vectors
//!   AllowReservedBits           IN-1      vectors
//!   AllowNonZeroPadding         IN-4      vectors
//!   SkipTextBound               LIM-2     vectors
//!   SkipReceiptBound            LIM-10    vectors
//!   SkipEnvelopeSizeBound       LIM-1     vectors
//!   AcceptNonContributoryDh     PRIM-1    vectors
//!   NonStrictSignatures         PRIM-2    vectors
//!   SkipKeyConfirmation         EPOCH-4   vectors
//!   SkipSkippedKeysBound        LIM-3     vectors
//!   AllowKeyUpdateBody          IN-3      vectors
//!   SkipEnvelopeVersion         ENV-1     vectors
//!   SkipReplayCache             X3DH-8    vectors
//!   SkipIdentityComparison      RX-9      vectors
//!   SkipGroupAdminCheck         GRP-4     vectors
//!   AllowStaleGroupEpoch        GRP-4     vectors
//!   SkipSessionsPerPeerBound    LIM-13    vectors
//!   SkipGroupCountBound         LIM-18    vectors
//!   SkipEpochConflict           EPOCH-5   vectors
//!   AnySignedPrekey             X3DH-6    vectors
//!   KeepUsedOneTimePrekeys      X3DH-9    vectors
//!   AllowRemovalListingSelf     GRP-6     vectors
//!   AllowUpperCaseUserId        ID-1      vectors
//!   BrokerKeepsAcknowledged     BROKER-4  wiretap (the broker's own state, Req6)
//! ```
//!
//! Call sites use the crate macro `mutated!(Mutation::X)`, which is the constant `false` when the
//! feature is off, so none of this, nor any of the code it turns on, is compiled into a real build.
//!
//! A switch is on when it is set for the whole process ([`set`], for the shells' tests that run
//! the client on other threads) or for the current thread only ([`set_for_thread`], for tests that
//! run the core synchronously, such as the vectors): tests of one binary that use only the
//! per-thread switch do not interfere with each other. Codes are stable (0 is "none"; 5 is the
//! embedded broker's switch, read by `sotto-server` with its `mutations` feature).

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};

/// One way to break the implementation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Mutation {
    /// KEY-5: Prekey bundle verification (KEY-5) accepts bad `sig_ikd` and `sig_spk` signatures.
    SkipPrekeySignatureCheck,
    /// RX-4: The client acknowledges a PUBLISH before it commits the envelope (breaks RX-4).
    AckBeforeCommit,
    /// CHAIN-4: Every message of a chain is sealed with the nonce of counter 0, keys unchanged (breaks CHAIN-4 and CHAIN-5); receivers use the same rule, so messages still open.
    ReuseNonce,
    /// CHAIN-3: Each sealed pairwise envelope also carries its message id (CHAIN-3) in the clear after the ciphertext; the decoder strips it again, so the chat still works.
    PlaintextIdInClear,
    /// KEY-2: A public identity is accepted without checking `sig_ikd`.
    SkipIkdSignature,
    /// KEY-3: A signed prekey is accepted without checking `sig_spk`.
    SkipSpkSignature,
    /// ID-4: A one-time prekey with id 0 is accepted.
    AllowPrekeyIdZero,
    /// SIGNUP-2: A signup request may upload two one-time prekeys with the same id.
    AllowDuplicatePrekeyIds,
    /// SIGNUP-1: The signup request's own signature is not checked.
    SkipSignupSignature,
    /// SIGNUP-3: The proof of work is not checked.
    SkipProofOfWork,
    /// LIM-16: A signup request may carry a TLS key longer than 512 bytes.
    SkipSpkiBound,
    /// LIM-15: A signup request may carry more than 100 one-time prekeys.
    SkipOpkUploadBound,
    /// CARD-1: The card checksum is not checked.
    SkipCardChecksum,
    /// LIM-17: A card URI longer than 512 characters is parsed.
    SkipCardUriBound,
    /// GRP-2: A membership is accepted without checking the admin's signature.
    SkipMembershipSignature,
    /// GRP-2: A membership may list one user id twice.
    AllowDuplicateMembers,
    /// LIM-14: A membership may list more than 64 members.
    SkipGroupSizeBound,
    /// GRP-7: A group message is opened without checking its sender's signature.
    SkipGroupMessageSignature,
    /// NOT-2: A varint with a redundant last byte `0x00` is accepted.
    AllowNonCanonicalVarint,
    /// NOT-3: Base32 with non-zero trailing bits is accepted.
    AllowBase32TrailingBits,
    /// NOT-5: Bytes after the last field of a layout are ignored.
    AllowTrailingBytes,
    /// IN-1: Reserved bits of the inner header are ignored.
    AllowReservedBits,
    /// IN-4: Non-zero padding bytes are accepted.
    AllowNonZeroPadding,
    /// LIM-2: A text body longer than 4,000 bytes is accepted.
    SkipTextBound,
    /// LIM-10: A receipt may list more than 64 ids.
    SkipReceiptBound,
    /// LIM-1: An envelope longer than 8,192 bytes is decoded.
    SkipEnvelopeSizeBound,
    /// PRIM-1: An all-zero X25519 output is used as a secret.
    AcceptNonContributoryDh,
    /// PRIM-2: Signatures are checked with Ed25519 `verify` instead of `verify_strict` (small-order keys pass).
    NonStrictSignatures,
    /// EPOCH-4: An epoch header's `confirm` is not checked.
    SkipKeyConfirmation,
    /// LIM-3: A receiver derives any number of skipped keys in one message.
    SkipSkippedKeysBound,
    /// IN-3: A key update with a body is accepted (the body is ignored).
    AllowKeyUpdateBody,
    /// ENV-1: The version nibble of an envelope is not checked.
    SkipEnvelopeVersion,
    /// X3DH-8: A first message whose `EK_A` is in the replay cache is processed again as a new session.
    SkipReplayCache,
    /// The embedded broker (sotto-server) keeps each envelope after its recipient's PUBACK, as
    /// a commit-log broker such as rumqttd 0.20 did (breaks Req6 / BROKER-4).
    BrokerKeepsAcknowledged,
    /// RX-9: A first message from a known user id with another `IKs` is accepted (the contact
    /// keeps its old identity; the session runs with the new one).
    SkipIdentityComparison,
    /// GRP-4: A group key or removal notice is applied whoever signed its membership.
    SkipGroupAdminCheck,
    /// GRP-4: A group key for an epoch the device holds, or left, is installed again.
    AllowStaleGroupEpoch,
    /// LIM-13: Every session of a peer is kept (none is dropped for a newer one).
    SkipSessionsPerPeerBound,
    /// LIM-18: A received group key may add a group beyond 256.
    SkipGroupCountBound,
    /// EPOCH-5: A second epoch start for a known epoch with another `E` goes on with the known
    /// epoch's chain instead of being refused.
    SkipEpochConflict,
    /// X3DH-6: A first message for an unknown signed prekey id is tried with the newest one.
    AnySignedPrekey,
    /// X3DH-9: A one-time prekey is kept after a first message used it.
    KeepUsedOneTimePrekeys,
    /// GRP-6: A removal notice whose membership still lists the receiver is acted on.
    AllowRemovalListingSelf,
    /// ID-1: A user id's text form is accepted in upper case.
    AllowUpperCaseUserId,
}

/// The process-wide mutation: 0 for none, else `Mutation::code`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// The current thread's mutation: 0 for none.
    static THREAD: Cell<u8> = const { Cell::new(0) };
}

impl Mutation {
    /// Every mutation.
    pub const ALL: &'static [Mutation] = &[
        Mutation::SkipPrekeySignatureCheck,
        Mutation::AckBeforeCommit,
        Mutation::ReuseNonce,
        Mutation::PlaintextIdInClear,
        Mutation::SkipIkdSignature,
        Mutation::SkipSpkSignature,
        Mutation::AllowPrekeyIdZero,
        Mutation::AllowDuplicatePrekeyIds,
        Mutation::SkipSignupSignature,
        Mutation::SkipProofOfWork,
        Mutation::SkipSpkiBound,
        Mutation::SkipOpkUploadBound,
        Mutation::SkipCardChecksum,
        Mutation::SkipCardUriBound,
        Mutation::SkipMembershipSignature,
        Mutation::AllowDuplicateMembers,
        Mutation::SkipGroupSizeBound,
        Mutation::SkipGroupMessageSignature,
        Mutation::AllowNonCanonicalVarint,
        Mutation::AllowBase32TrailingBits,
        Mutation::AllowTrailingBytes,
        Mutation::AllowReservedBits,
        Mutation::AllowNonZeroPadding,
        Mutation::SkipTextBound,
        Mutation::SkipReceiptBound,
        Mutation::SkipEnvelopeSizeBound,
        Mutation::AcceptNonContributoryDh,
        Mutation::NonStrictSignatures,
        Mutation::SkipKeyConfirmation,
        Mutation::SkipSkippedKeysBound,
        Mutation::AllowKeyUpdateBody,
        Mutation::SkipEnvelopeVersion,
        Mutation::SkipReplayCache,
        Mutation::BrokerKeepsAcknowledged,
        Mutation::SkipIdentityComparison,
        Mutation::SkipGroupAdminCheck,
        Mutation::AllowStaleGroupEpoch,
        Mutation::SkipSessionsPerPeerBound,
        Mutation::SkipGroupCountBound,
        Mutation::SkipEpochConflict,
        Mutation::AnySignedPrekey,
        Mutation::KeepUsedOneTimePrekeys,
        Mutation::AllowRemovalListingSelf,
        Mutation::AllowUpperCaseUserId,
    ];

    /// The kebab-case name (`skip-prekey-signature-check`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Mutation::SkipPrekeySignatureCheck => "skip-prekey-signature-check",
            Mutation::AckBeforeCommit => "ack-before-commit",
            Mutation::ReuseNonce => "reuse-nonce",
            Mutation::PlaintextIdInClear => "plaintext-id-in-clear",
            Mutation::SkipIkdSignature => "skip-ikd-signature",
            Mutation::SkipSpkSignature => "skip-spk-signature",
            Mutation::AllowPrekeyIdZero => "allow-prekey-id-zero",
            Mutation::AllowDuplicatePrekeyIds => "allow-duplicate-prekey-ids",
            Mutation::SkipSignupSignature => "skip-signup-signature",
            Mutation::SkipProofOfWork => "skip-proof-of-work",
            Mutation::SkipSpkiBound => "skip-spki-bound",
            Mutation::SkipOpkUploadBound => "skip-opk-upload-bound",
            Mutation::SkipCardChecksum => "skip-card-checksum",
            Mutation::SkipCardUriBound => "skip-card-uri-bound",
            Mutation::SkipMembershipSignature => "skip-membership-signature",
            Mutation::AllowDuplicateMembers => "allow-duplicate-members",
            Mutation::SkipGroupSizeBound => "skip-group-size-bound",
            Mutation::SkipGroupMessageSignature => "skip-group-message-signature",
            Mutation::AllowNonCanonicalVarint => "allow-non-canonical-varint",
            Mutation::AllowBase32TrailingBits => "allow-base32-trailing-bits",
            Mutation::AllowTrailingBytes => "allow-trailing-bytes",
            Mutation::AllowReservedBits => "allow-reserved-bits",
            Mutation::AllowNonZeroPadding => "allow-non-zero-padding",
            Mutation::SkipTextBound => "skip-text-bound",
            Mutation::SkipReceiptBound => "skip-receipt-bound",
            Mutation::SkipEnvelopeSizeBound => "skip-envelope-size-bound",
            Mutation::AcceptNonContributoryDh => "accept-non-contributory-dh",
            Mutation::NonStrictSignatures => "non-strict-signatures",
            Mutation::SkipKeyConfirmation => "skip-key-confirmation",
            Mutation::SkipSkippedKeysBound => "skip-skipped-keys-bound",
            Mutation::AllowKeyUpdateBody => "allow-key-update-body",
            Mutation::SkipEnvelopeVersion => "skip-envelope-version",
            Mutation::SkipReplayCache => "skip-replay-cache",
            Mutation::BrokerKeepsAcknowledged => "broker-keeps-acknowledged",
            Mutation::SkipIdentityComparison => "skip-identity-comparison",
            Mutation::SkipGroupAdminCheck => "skip-group-admin-check",
            Mutation::AllowStaleGroupEpoch => "allow-stale-group-epoch",
            Mutation::SkipSessionsPerPeerBound => "skip-sessions-per-peer-bound",
            Mutation::SkipGroupCountBound => "skip-group-count-bound",
            Mutation::SkipEpochConflict => "skip-epoch-conflict",
            Mutation::AnySignedPrekey => "any-signed-prekey",
            Mutation::KeepUsedOneTimePrekeys => "keep-used-one-time-prekeys",
            Mutation::AllowRemovalListingSelf => "allow-removal-listing-self",
            Mutation::AllowUpperCaseUserId => "allow-upper-case-user-id",
        }
    }

    /// The rule of docs/protocol.md whose check the switch removes.
    pub fn rule(&self) -> &'static str {
        match self {
            Mutation::SkipPrekeySignatureCheck => "KEY-5",
            Mutation::AckBeforeCommit => "RX-4",
            Mutation::ReuseNonce => "CHAIN-4",
            Mutation::PlaintextIdInClear => "CHAIN-3",
            Mutation::SkipIkdSignature => "KEY-2",
            Mutation::SkipSpkSignature => "KEY-3",
            Mutation::AllowPrekeyIdZero => "ID-4",
            Mutation::AllowDuplicatePrekeyIds => "SIGNUP-2",
            Mutation::SkipSignupSignature => "SIGNUP-1",
            Mutation::SkipProofOfWork => "SIGNUP-3",
            Mutation::SkipSpkiBound => "LIM-16",
            Mutation::SkipOpkUploadBound => "LIM-15",
            Mutation::SkipCardChecksum => "CARD-1",
            Mutation::SkipCardUriBound => "LIM-17",
            Mutation::SkipMembershipSignature => "GRP-2",
            Mutation::AllowDuplicateMembers => "GRP-2",
            Mutation::SkipGroupSizeBound => "LIM-14",
            Mutation::SkipGroupMessageSignature => "GRP-7",
            Mutation::AllowNonCanonicalVarint => "NOT-2",
            Mutation::AllowBase32TrailingBits => "NOT-3",
            Mutation::AllowTrailingBytes => "NOT-5",
            Mutation::AllowReservedBits => "IN-1",
            Mutation::AllowNonZeroPadding => "IN-4",
            Mutation::SkipTextBound => "LIM-2",
            Mutation::SkipReceiptBound => "LIM-10",
            Mutation::SkipEnvelopeSizeBound => "LIM-1",
            Mutation::AcceptNonContributoryDh => "PRIM-1",
            Mutation::NonStrictSignatures => "PRIM-2",
            Mutation::SkipKeyConfirmation => "EPOCH-4",
            Mutation::SkipSkippedKeysBound => "LIM-3",
            Mutation::AllowKeyUpdateBody => "IN-3",
            Mutation::SkipEnvelopeVersion => "ENV-1",
            Mutation::SkipReplayCache => "X3DH-8",
            Mutation::BrokerKeepsAcknowledged => "BROKER-4",
            Mutation::SkipIdentityComparison => "RX-9",
            Mutation::SkipGroupAdminCheck | Mutation::AllowStaleGroupEpoch => "GRP-4",
            Mutation::SkipSessionsPerPeerBound => "LIM-13",
            Mutation::SkipGroupCountBound => "LIM-18",
            Mutation::SkipEpochConflict => "EPOCH-5",
            Mutation::AnySignedPrekey => "X3DH-6",
            Mutation::KeepUsedOneTimePrekeys => "X3DH-9",
            Mutation::AllowRemovalListingSelf => "GRP-6",
            Mutation::AllowUpperCaseUserId => "ID-1",
        }
    }

    /// Whether the known-answer vectors alone must catch the switch (the others are caught by the
    /// replay of the model's traces against the real stack, `conformance/tests/mutations.rs`).
    pub fn caught_by_vectors(&self) -> bool {
        !matches!(
            self,
            Mutation::AckBeforeCommit | Mutation::BrokerKeepsAcknowledged
        )
    }

    /// The mutation with this kebab-case name.
    pub fn from_name(name: &str) -> Option<Mutation> {
        Mutation::ALL.iter().copied().find(|m| m.name() == name)
    }

    /// The stable code (never 0).
    pub fn code(self) -> u8 {
        match self {
            Mutation::SkipPrekeySignatureCheck => 1,
            Mutation::AckBeforeCommit => 2,
            Mutation::ReuseNonce => 3,
            Mutation::PlaintextIdInClear => 4,
            Mutation::SkipIkdSignature => 6,
            Mutation::SkipSpkSignature => 7,
            Mutation::AllowPrekeyIdZero => 8,
            Mutation::AllowDuplicatePrekeyIds => 9,
            Mutation::SkipSignupSignature => 10,
            Mutation::SkipProofOfWork => 11,
            Mutation::SkipSpkiBound => 12,
            Mutation::SkipOpkUploadBound => 13,
            Mutation::SkipCardChecksum => 14,
            Mutation::SkipCardUriBound => 15,
            Mutation::SkipMembershipSignature => 16,
            Mutation::AllowDuplicateMembers => 17,
            Mutation::SkipGroupSizeBound => 18,
            Mutation::SkipGroupMessageSignature => 19,
            Mutation::AllowNonCanonicalVarint => 20,
            Mutation::AllowBase32TrailingBits => 21,
            Mutation::AllowTrailingBytes => 22,
            Mutation::AllowReservedBits => 23,
            Mutation::AllowNonZeroPadding => 24,
            Mutation::SkipTextBound => 25,
            Mutation::SkipReceiptBound => 26,
            Mutation::SkipEnvelopeSizeBound => 27,
            Mutation::AcceptNonContributoryDh => 28,
            Mutation::NonStrictSignatures => 29,
            Mutation::SkipKeyConfirmation => 30,
            Mutation::SkipSkippedKeysBound => 31,
            Mutation::AllowKeyUpdateBody => 32,
            Mutation::SkipEnvelopeVersion => 33,
            Mutation::SkipReplayCache => 34,
            Mutation::BrokerKeepsAcknowledged => 5,
            Mutation::SkipIdentityComparison => 35,
            Mutation::SkipGroupAdminCheck => 36,
            Mutation::AllowStaleGroupEpoch => 37,
            Mutation::SkipSessionsPerPeerBound => 38,
            Mutation::SkipGroupCountBound => 39,
            Mutation::SkipEpochConflict => 40,
            Mutation::AnySignedPrekey => 41,
            Mutation::KeepUsedOneTimePrekeys => 42,
            Mutation::AllowRemovalListingSelf => 43,
            Mutation::AllowUpperCaseUserId => 44,
        }
    }
}

/// Turns one mutation on for the whole process, or all of them off (`None`).
pub fn set(m: Option<Mutation>) {
    ACTIVE.store(m.map_or(0, Mutation::code), Ordering::SeqCst);
}

/// Turns one mutation on for the current thread only, or off (`None`).
pub fn set_for_thread(m: Option<Mutation>) {
    THREAD.with(|t| t.set(m.map_or(0, Mutation::code)));
}

/// Whether `m` is active, for the process or for the current thread.
pub fn active(m: Mutation) -> bool {
    let code = m.code();
    ACTIVE.load(Ordering::SeqCst) == code || THREAD.with(Cell::get) == code
}

/// The process-wide mutation, if any.
pub fn current() -> Option<Mutation> {
    let code = ACTIVE.load(Ordering::SeqCst);
    Mutation::ALL.iter().copied().find(|m| m.code() == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case_and_round_trip() {
        for &m in Mutation::ALL {
            assert!(
                m.name()
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
            assert_eq!(Mutation::from_name(m.name()), Some(m));
            assert!(m.rule().contains('-'));
        }
        assert_eq!(Mutation::from_name("none"), None);
    }

    #[test]
    fn codes_are_distinct_and_never_zero_or_five() {
        let mut codes: Vec<u8> = Mutation::ALL.iter().map(|m| m.code()).collect();
        assert!(!codes.contains(&0) && !codes.contains(&5));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Mutation::ALL.len());
    }

    #[test]
    fn the_thread_switch_stays_on_its_thread() {
        set_for_thread(Some(Mutation::SkipCardChecksum));
        assert!(active(Mutation::SkipCardChecksum));
        std::thread::spawn(|| assert!(!active(Mutation::SkipCardChecksum)))
            .join()
            .expect("thread");
        set_for_thread(None);
        assert!(!active(Mutation::SkipCardChecksum));
    }
}
