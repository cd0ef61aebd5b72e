//! Test-only mutation switches (feature `mutations`, off by default): each one removes one check
//! or breaks one safeguard on purpose, so that the conformance suite can show it fails when the
//! implementation is wrong (issue 5, item 6; issue 13, item 3: one switch per refusal rule).
//!
//! The switches are declared once, in the `switches!` rows below (name, stable code, rule). The
//! table of each switch with the vector cases it fails is printed by
//! `cargo test -p sotto-vectors --features mutations --test mutations_vectors -- --nocapture`
//! (CI prints it too).
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

/// Declares the switches once: each row gives the variant (with its documentation), its stable
/// code, its kebab-case name and the rule whose check it removes; the enum, [`Mutation::ALL`],
/// [`Mutation::code`], [`Mutation::name`] and [`Mutation::rule`] are generated from the rows.
macro_rules! switches {
    ($($(#[$doc:meta])* $v:ident = ($code:literal, $name:literal, $rule:literal),)*) => {
        /// One way to break the implementation.
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
        pub enum Mutation {
            $($(#[$doc])* $v,)*
        }

        impl Mutation {
            /// Every mutation.
            pub const ALL: &'static [Mutation] = &[$(Mutation::$v),*];

            /// The kebab-case name (`skip-prekey-signature-check`, ...).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Mutation::$v => $name,)*
                }
            }

            /// The rule of docs/protocol.md whose check the switch removes.
            pub fn rule(&self) -> &'static str {
                match self {
                    $(Mutation::$v => $rule,)*
                }
            }

            /// The stable code (never 0).
            pub fn code(self) -> u8 {
                match self {
                    $(Mutation::$v => $code,)*
                }
            }
        }
    };
}

switches! {
    /// KEY-5: Prekey bundle verification (KEY-5) accepts bad `sig_ikd` and `sig_spk` signatures.
    SkipPrekeySignatureCheck = (1, "skip-prekey-signature-check", "KEY-5"),
    /// RX-4: The client acknowledges a PUBLISH before it commits the envelope (breaks RX-4).
    AckBeforeCommit = (2, "ack-before-commit", "RX-4"),
    /// CHAIN-4: Every message of a chain is sealed with the nonce of counter 0, keys unchanged (breaks CHAIN-4 and CHAIN-5); receivers use the same rule, so messages still open.
    ReuseNonce = (3, "reuse-nonce", "CHAIN-4"),
    /// CHAIN-3: Each sealed pairwise envelope also carries its message id (CHAIN-3) in the clear after the ciphertext; the decoder strips it again, so the chat still works.
    PlaintextIdInClear = (4, "plaintext-id-in-clear", "CHAIN-3"),
    /// KEY-2: A public identity is accepted without checking `sig_ikd`.
    SkipIkdSignature = (6, "skip-ikd-signature", "KEY-2"),
    /// KEY-3: A signed prekey is accepted without checking `sig_spk`.
    SkipSpkSignature = (7, "skip-spk-signature", "KEY-3"),
    /// ID-4: A one-time prekey with id 0 is accepted.
    AllowPrekeyIdZero = (8, "allow-prekey-id-zero", "ID-4"),
    /// SIGNUP-2: A signup request may upload two one-time prekeys with the same id.
    AllowDuplicatePrekeyIds = (9, "allow-duplicate-prekey-ids", "SIGNUP-2"),
    /// SIGNUP-1: The signup request's own signature is not checked.
    SkipSignupSignature = (10, "skip-signup-signature", "SIGNUP-1"),
    /// SIGNUP-3: The proof of work is not checked.
    SkipProofOfWork = (11, "skip-proof-of-work", "SIGNUP-3"),
    /// LIM-16: A signup request may carry a TLS key longer than 512 bytes.
    SkipSpkiBound = (12, "skip-spki-bound", "LIM-16"),
    /// LIM-15: A signup request may carry more than 100 one-time prekeys.
    SkipOpkUploadBound = (13, "skip-opk-upload-bound", "LIM-15"),
    /// CARD-1: The card checksum is not checked.
    SkipCardChecksum = (14, "skip-card-checksum", "CARD-1"),
    /// LIM-17: A card URI longer than 512 characters is parsed.
    SkipCardUriBound = (15, "skip-card-uri-bound", "LIM-17"),
    /// GRP-2: A membership is accepted without checking the admin's signature.
    SkipMembershipSignature = (16, "skip-membership-signature", "GRP-2"),
    /// GRP-2: A membership may list one user id twice.
    AllowDuplicateMembers = (17, "allow-duplicate-members", "GRP-2"),
    /// LIM-14: A membership may list more than 64 members.
    SkipGroupSizeBound = (18, "skip-group-size-bound", "LIM-14"),
    /// GRP-7: A group message is opened without checking its sender's signature.
    SkipGroupMessageSignature = (19, "skip-group-message-signature", "GRP-7"),
    /// NOT-2: A varint with a redundant last byte `0x00` is accepted.
    AllowNonCanonicalVarint = (20, "allow-non-canonical-varint", "NOT-2"),
    /// NOT-3: Base32 with non-zero trailing bits is accepted.
    AllowBase32TrailingBits = (21, "allow-base32-trailing-bits", "NOT-3"),
    /// NOT-5: Bytes after the last field of a layout are ignored.
    AllowTrailingBytes = (22, "allow-trailing-bytes", "NOT-5"),
    /// IN-1: Reserved bits of the inner header are ignored.
    AllowReservedBits = (23, "allow-reserved-bits", "IN-1"),
    /// IN-4: Non-zero padding bytes are accepted.
    AllowNonZeroPadding = (24, "allow-non-zero-padding", "IN-4"),
    /// LIM-2: A text body longer than 4,000 bytes is accepted.
    SkipTextBound = (25, "skip-text-bound", "LIM-2"),
    /// LIM-10: A receipt may list more than 64 ids.
    SkipReceiptBound = (26, "skip-receipt-bound", "LIM-10"),
    /// LIM-1: An envelope longer than 8,192 bytes is decoded.
    SkipEnvelopeSizeBound = (27, "skip-envelope-size-bound", "LIM-1"),
    /// PRIM-1: An all-zero X25519 output is used as a secret.
    AcceptNonContributoryDh = (28, "accept-non-contributory-dh", "PRIM-1"),
    /// PRIM-2: Signatures are checked with Ed25519 `verify` instead of `verify_strict` (small-order keys pass).
    NonStrictSignatures = (29, "non-strict-signatures", "PRIM-2"),
    /// EPOCH-4: An epoch header's `confirm` is not checked.
    SkipKeyConfirmation = (30, "skip-key-confirmation", "EPOCH-4"),
    /// LIM-3: A receiver derives any number of skipped keys in one message.
    SkipSkippedKeysBound = (31, "skip-skipped-keys-bound", "LIM-3"),
    /// IN-3: A key update with a body is accepted (the body is ignored).
    AllowKeyUpdateBody = (32, "allow-key-update-body", "IN-3"),
    /// ENV-1: The version nibble of an envelope is not checked.
    SkipEnvelopeVersion = (33, "skip-envelope-version", "ENV-1"),
    /// X3DH-8: A first message whose `EK_A` is in the replay cache is processed again as a new session.
    SkipReplayCache = (34, "skip-replay-cache", "X3DH-8"),
    /// The embedded broker (sotto-server) keeps each envelope after its recipient's PUBACK, as
    /// a commit-log broker such as rumqttd 0.20 did (breaks Req6 / BROKER-4).
    BrokerKeepsAcknowledged = (5, "broker-keeps-acknowledged", "BROKER-4"),
    /// RX-9: A first message from a known user id with another `IKs` is accepted (the contact
    /// keeps its old identity; the session runs with the new one).
    SkipIdentityComparison = (35, "skip-identity-comparison", "RX-9"),
    /// GRP-4: A group key or removal notice is applied whoever signed its membership.
    SkipGroupAdminCheck = (36, "skip-group-admin-check", "GRP-4"),
    /// GRP-4: A group key for an epoch the device holds, or left, is installed again.
    AllowStaleGroupEpoch = (37, "allow-stale-group-epoch", "GRP-4"),
    /// LIM-13: Every session of a peer is kept (none is dropped for a newer one).
    SkipSessionsPerPeerBound = (38, "skip-sessions-per-peer-bound", "LIM-13"),
    /// LIM-18: A received group key may add a group beyond 256.
    SkipGroupCountBound = (39, "skip-group-count-bound", "LIM-18"),
    /// EPOCH-5: A second epoch start for a known epoch with another `E` goes on with the known
    /// epoch's chain instead of being refused.
    SkipEpochConflict = (40, "skip-epoch-conflict", "EPOCH-5"),
    /// X3DH-6: A first message for an unknown signed prekey id is tried with the newest one.
    AnySignedPrekey = (41, "any-signed-prekey", "X3DH-6"),
    /// X3DH-9: A one-time prekey is kept after a first message used it.
    KeepUsedOneTimePrekeys = (42, "keep-used-one-time-prekeys", "X3DH-9"),
    /// GRP-6: A removal notice whose membership still lists the receiver is acted on.
    AllowRemovalListingSelf = (43, "allow-removal-listing-self", "GRP-6"),
    /// ID-1: A user id's text form is accepted in upper case.
    AllowUpperCaseUserId = (44, "allow-upper-case-user-id", "ID-1"),
    /// CARD-3: A card URI is parsed whatever its scheme (any six characters before the base32).
    AcceptAnyCardScheme = (45, "accept-any-card-scheme", "CARD-3"),
    /// KS-4: A key-share block whose tag does not authenticate is decrypted anyway (the stream
    /// cipher without the tag check).
    SkipKeyShareTag = (46, "skip-key-share-tag", "KS-4"),
    /// ENV-6: An envelope whose sealed part is shorter than the 16-byte tag is decoded.
    AllowShortSealedPart = (47, "allow-short-sealed-part", "ENV-6"),
    /// RX-2: A skipped message key is kept after it opened its message (so the message opens
    /// again instead of being a `duplicate`; the delivered ids of RX-7 are the only guard left).
    KeepUsedSkippedKeys = (48, "keep-used-skipped-keys", "RX-2"),
    /// RX-3: A first message whose payload fails to open still consumes its one-time prekey.
    ConsumePrekeyOnFailure = (49, "consume-prekey-on-failure", "RX-3"),
    /// RX-8: `unknown_routing_tag` is final (the peer's fault) instead of retryable.
    UnknownRoutingTagFinal = (50, "unknown-routing-tag-final", "RX-8"),
    /// GRP-12: A handover is taken without checking the old admin's signature.
    SkipHandoverSignature = (51, "skip-handover-signature", "GRP-12"),
    /// GRP-11: A device that left a group installs a group key of it before the removal notice.
    AcceptKeyAfterLeave = (52, "accept-key-after-leave", "GRP-11"),
}

/// The process-wide mutation: 0 for none, else `Mutation::code`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// The current thread's mutation: 0 for none.
    static THREAD: Cell<u8> = const { Cell::new(0) };
}

impl Mutation {
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

// What some switches do instead of the check they remove. The code lives here, in the module
// cargo-mutants leaves out (.cargo/mutants.toml): at the call sites it is compiled out without the
// feature, so a mutant of it there could never be caught.

/// `SkipEnvelopeVersion`: the type byte with the current version in its high nibble (ENV-1).
pub(crate) fn with_version(ty: u8, version: u8) -> u8 {
    (ty & 0x0f) | (version << 4)
}

/// `PlaintextIdInClear`: a pairwise envelope's sealed part without the message id appended to it.
pub(crate) fn strip_clear_id<'a>(header: &crate::envelope::Header, sealed: &'a [u8]) -> &'a [u8] {
    match header {
        crate::envelope::Header::Group { .. } => sealed,
        _ if active(Mutation::PlaintextIdInClear) => {
            let id_len = core::mem::size_of::<crate::ids::MessageId>();
            sealed
                .get(..sealed.len().saturating_sub(id_len))
                .unwrap_or(sealed)
        }
        _ => sealed,
    }
}

/// `SkipKeyShareTag`: the key-share block decrypted with the stream cipher alone, its tag
/// ignored (`None` if there is no room for a tag).
pub(crate) fn open_without_tag(ks: &crate::crypto::Secret<32>, sealed: &[u8]) -> Option<Vec<u8>> {
    let tag = crate::crypto::TAG_LEN;
    let ct = sealed
        .get(..sealed.len().saturating_sub(tag))
        .filter(|_| sealed.len() >= tag)?;
    // Sealing zeros gives the key stream.
    let stream = crate::crypto::seal(ks, &[0u8; 12], &[], &vec![0u8; ct.len()]);
    Some(ct.iter().zip(&stream).map(|(c, k)| c ^ k).collect())
}

/// `UnknownRoutingTagFinal`: the fault of an error when the switch changes it.
pub(crate) fn fault_override(e: &crate::error::Error) -> Option<crate::error::Fault> {
    use crate::error::{Error, Fault, SessionError};
    (active(Mutation::UnknownRoutingTagFinal)
        && matches!(e, Error::Session(SessionError::UnknownRoutingTag)))
    .then_some(Fault::Peer)
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
    fn codes_are_distinct_and_never_zero() {
        let mut codes: Vec<u8> = Mutation::ALL.iter().map(|m| m.code()).collect();
        assert!(!codes.contains(&0));
        // 5 is the embedded broker's switch, read by sotto-server.
        assert_eq!(Mutation::BrokerKeepsAcknowledged.code(), 5);
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
