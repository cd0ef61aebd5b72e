//! Typed errors (protocol.md section 17), one enum per area, all wrapped by [`Error`].
//!
//! Every error has a stable [`Error::code`] (the string the vectors and the conformance reports use) and
//! a [`Fault`] that says who is to blame, as rustls splits its errors. No variant carries secret bytes,
//! so `Debug` and `Display` are safe to log (PRIM-7).

use thiserror::Error as ThisError;

/// Who is at fault for an error, which decides what the shell does with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The peer (or the attacker in its place) sent something malformed or forged: drop it.
    Peer,
    /// The peer speaks a version or feature this implementation does not.
    Incompatible,
    /// Not an error of the bytes: keep the input and retry later (RX-8).
    Retry,
    /// A local bound or resource: the device must act (rotate a prekey, ...).
    Local,
    /// The caller used the API wrongly.
    Misuse,
}

/// A malformed encoding: nothing was decrypted or verified yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThisError)]
#[non_exhaustive]
pub enum DecodeError {
    /// Input ends inside a field.
    #[error("input ends inside a field")]
    Truncated,
    /// Bytes remain after the last field.
    #[error("bytes after the last field")]
    TrailingBytes,
    /// The version byte or nibble is not 1 (NOT-1, ENV-1).
    #[error("unknown protocol version")]
    UnknownVersion,
    /// The envelope type is not one of ENV-1.
    #[error("unknown envelope type")]
    UnknownType,
    /// The inner plaintext kind is not one of IN-3.
    #[error("unknown message kind")]
    UnknownKind,
    /// A count or length lies outside its limit (LIM table).
    #[error("a length or count is out of range")]
    LengthOutOfRange,
    /// A varint is not minimal or exceeds u32 (NOT-2).
    #[error("non-canonical varint")]
    NonCanonicalVarint,
    /// A reserved bit or a padding byte is set (IN-1, IN-4).
    #[error("reserved bits set")]
    ReservedBits,
    /// A text body is not UTF-8 (IN-3).
    #[error("text is not valid UTF-8")]
    InvalidText,
    /// A user id is not 16 characters of `[a-z2-7]` (ID-1).
    #[error("invalid user id")]
    InvalidUserId,
    /// Invalid base32 (NOT-3).
    #[error("invalid base32")]
    InvalidBase32,
    /// Not a `sotto:` URI (CARD-2).
    #[error("not a sotto: card URI")]
    BadUri,
    /// The card checksum does not match (CARD-1).
    #[error("card checksum mismatch")]
    BadChecksum,
}

/// A cryptographic check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThisError)]
#[non_exhaustive]
pub enum CryptoError {
    /// A signature did not verify strictly (PRIM-2).
    #[error("bad signature")]
    BadSignature,
    /// An X25519 output was all zero (PRIM-1).
    #[error("non-contributory Diffie-Hellman result")]
    NonContributoryDh,
    /// AEAD open failed: wrong key or tampered bytes (PRIM-5).
    #[error("decryption failed")]
    DecryptFailed,
    /// The epoch header's key confirmation did not match (EPOCH-4).
    #[error("key confirmation failed")]
    KeyConfirmationFailed,
    /// The proof of work is below the required difficulty (SIGNUP-3).
    #[error("insufficient proof of work")]
    InsufficientWork,
}

/// A pairwise session refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThisError)]
#[non_exhaustive]
pub enum SessionError {
    /// No session or epoch is known for the routing tag yet (retryable, RX-8).
    #[error("unknown routing tag")]
    UnknownRoutingTag,
    /// The first message names a signed prekey this device does not hold (X3DH-6).
    #[error("unknown signed prekey")]
    UnknownSignedPrekey,
    /// The first message names a one-time prekey that is used or unknown (X3DH-6).
    #[error("unknown one-time prekey")]
    UnknownOneTimePrekey,
    /// The first message was accepted before and its session is gone (X3DH-8).
    #[error("replayed first message")]
    ReplayedFirstMessage,
    /// The replay cache is full: rotate the signed prekey (X3DH-8).
    #[error("replay cache full")]
    ReplayCacheFull,
    /// The message was already received (RX-2, RX-7): acknowledge and drop it.
    #[error("duplicate message")]
    Duplicate,
    /// The message is too far ahead of its chain (RX-2).
    #[error("too many skipped messages")]
    TooManySkipped,
    /// The message belongs to an epoch that was dropped (RX-8).
    #[error("expired epoch")]
    ExpiredEpoch,
    /// The epoch header does not answer the receiver's newest epoch (EPOCH-5).
    #[error("epoch conflict")]
    EpochConflict,
    /// The sending chain reached its last counter (CHAIN-6).
    #[error("chain exhausted")]
    ChainExhausted,
    /// A known user id arrived with a different identity key (RX-9).
    #[error("identity changed")]
    IdentityChanged,
    /// The person blocked this user id (RX-11): nothing from it is opened, nothing is sent to it.
    #[error("blocked")]
    Blocked,
}

/// A group operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThisError)]
#[non_exhaustive]
pub enum GroupError {
    /// No group epoch is known for the routing tag yet (retryable, RX-8).
    #[error("unknown group")]
    UnknownGroup,
    /// A group key or removal did not come from the group's admin (GRP-4).
    #[error("not the group admin")]
    NotGroupAdmin,
    /// The group key is not newer than the one held (GRP-4).
    #[error("stale group epoch")]
    StaleGroupEpoch,
    /// The receiver or sender is not a member (GRP-4).
    #[error("not a member of the group")]
    NotAMember,
}

/// The caller used the API wrongly; no input from the network is involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThisError)]
#[non_exhaustive]
pub enum MisuseError {
    /// No contact or session with that user id.
    #[error("unknown peer")]
    UnknownPeer,
    /// The envelope would exceed LIM-1, or a body its limit.
    #[error("message too large")]
    TooLarge,
    /// A LIM table bound was reached (groups, members, prekeys).
    #[error("limit reached")]
    LimitReached,
    /// The admin asked to leave its group: it hands the group over first (GRP-11, GRP-12).
    #[error("the admin must hand the group over before leaving")]
    AdminMustHandOver,
}

/// Any error of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// Malformed bytes.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A cryptographic check failed.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A session refused the message.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A group operation failed.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// API misuse.
    #[error(transparent)]
    Misuse(#[from] MisuseError),
}

/// Result with the core's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// Every error the core reports, one per stable code (protocol.md section 17).
    pub const ALL: [Error; 38] = [
        Error::Decode(DecodeError::Truncated),
        Error::Decode(DecodeError::TrailingBytes),
        Error::Decode(DecodeError::UnknownVersion),
        Error::Decode(DecodeError::UnknownType),
        Error::Decode(DecodeError::UnknownKind),
        Error::Decode(DecodeError::LengthOutOfRange),
        Error::Decode(DecodeError::NonCanonicalVarint),
        Error::Decode(DecodeError::ReservedBits),
        Error::Decode(DecodeError::InvalidText),
        Error::Decode(DecodeError::InvalidUserId),
        Error::Decode(DecodeError::InvalidBase32),
        Error::Decode(DecodeError::BadUri),
        Error::Decode(DecodeError::BadChecksum),
        Error::Crypto(CryptoError::BadSignature),
        Error::Crypto(CryptoError::NonContributoryDh),
        Error::Crypto(CryptoError::DecryptFailed),
        Error::Crypto(CryptoError::KeyConfirmationFailed),
        Error::Crypto(CryptoError::InsufficientWork),
        Error::Session(SessionError::UnknownRoutingTag),
        Error::Session(SessionError::UnknownSignedPrekey),
        Error::Session(SessionError::UnknownOneTimePrekey),
        Error::Session(SessionError::ReplayedFirstMessage),
        Error::Session(SessionError::ReplayCacheFull),
        Error::Session(SessionError::Duplicate),
        Error::Session(SessionError::TooManySkipped),
        Error::Session(SessionError::ExpiredEpoch),
        Error::Session(SessionError::EpochConflict),
        Error::Session(SessionError::ChainExhausted),
        Error::Session(SessionError::IdentityChanged),
        Error::Session(SessionError::Blocked),
        Error::Group(GroupError::UnknownGroup),
        Error::Group(GroupError::NotGroupAdmin),
        Error::Group(GroupError::StaleGroupEpoch),
        Error::Group(GroupError::NotAMember),
        Error::Misuse(MisuseError::UnknownPeer),
        Error::Misuse(MisuseError::TooLarge),
        Error::Misuse(MisuseError::LimitReached),
        Error::Misuse(MisuseError::AdminMustHandOver),
    ];

    /// The error whose [`Error::code`] is `code`, if the core has one: how a peer that received a
    /// code (in a membership API error body, a vector) gets the typed error back.
    pub fn from_code(code: &str) -> Option<Error> {
        Error::ALL.into_iter().find(|e| e.code() == code)
    }

    /// The stable code of protocol.md section 17.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Decode(e) => match e {
                DecodeError::Truncated => "truncated",
                DecodeError::TrailingBytes => "trailing_bytes",
                DecodeError::UnknownVersion => "unknown_version",
                DecodeError::UnknownType => "unknown_type",
                DecodeError::UnknownKind => "unknown_kind",
                DecodeError::LengthOutOfRange => "length_out_of_range",
                DecodeError::NonCanonicalVarint => "non_canonical_varint",
                DecodeError::ReservedBits => "reserved_bits",
                DecodeError::InvalidText => "invalid_text",
                DecodeError::InvalidUserId => "invalid_user_id",
                DecodeError::InvalidBase32 => "invalid_base32",
                DecodeError::BadUri => "bad_uri",
                DecodeError::BadChecksum => "bad_checksum",
            },
            Error::Crypto(e) => match e {
                CryptoError::BadSignature => "bad_signature",
                CryptoError::NonContributoryDh => "non_contributory_dh",
                CryptoError::DecryptFailed => "decrypt_failed",
                CryptoError::KeyConfirmationFailed => "key_confirmation_failed",
                CryptoError::InsufficientWork => "insufficient_work",
            },
            Error::Session(e) => match e {
                SessionError::UnknownRoutingTag => "unknown_routing_tag",
                SessionError::UnknownSignedPrekey => "unknown_signed_prekey",
                SessionError::UnknownOneTimePrekey => "unknown_one_time_prekey",
                SessionError::ReplayedFirstMessage => "replayed_first_message",
                SessionError::ReplayCacheFull => "replay_cache_full",
                SessionError::Duplicate => "duplicate",
                SessionError::TooManySkipped => "too_many_skipped",
                SessionError::ExpiredEpoch => "expired_epoch",
                SessionError::EpochConflict => "epoch_conflict",
                SessionError::ChainExhausted => "chain_exhausted",
                SessionError::IdentityChanged => "identity_changed",
                SessionError::Blocked => "blocked",
            },
            Error::Group(e) => match e {
                GroupError::UnknownGroup => "unknown_group",
                GroupError::NotGroupAdmin => "not_group_admin",
                GroupError::StaleGroupEpoch => "stale_group_epoch",
                GroupError::NotAMember => "not_a_member",
            },
            Error::Misuse(e) => match e {
                MisuseError::UnknownPeer => "unknown_peer",
                MisuseError::TooLarge => "too_large",
                MisuseError::LimitReached => "limit_reached",
                MisuseError::AdminMustHandOver => "admin_must_hand_over",
            },
        }
    }

    /// Who is at fault (protocol.md section 17).
    pub fn fault(&self) -> Fault {
        #[cfg(feature = "mutations")]
        if let Some(f) = crate::mutation::fault_override(self) {
            return f;
        }
        match self {
            Error::Decode(DecodeError::UnknownVersion) => Fault::Incompatible,
            Error::Decode(_) | Error::Crypto(_) => Fault::Peer,
            Error::Session(SessionError::UnknownRoutingTag)
            | Error::Group(GroupError::UnknownGroup) => Fault::Retry,
            Error::Session(
                SessionError::ReplayCacheFull
                | SessionError::ChainExhausted
                | SessionError::Blocked,
            ) => Fault::Local,
            Error::Session(_) | Error::Group(_) => Fault::Peer,
            Error::Misuse(_) => Fault::Misuse,
        }
    }

    /// Whether the input should be kept and tried again later (RX-8).
    pub fn is_retryable(&self) -> bool {
        self.fault() == Fault::Retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let all = Error::ALL;
        let mut codes: Vec<&str> = all.iter().map(Error::code).collect();
        let protocol = include_str!("../../../docs/protocol.md");
        for c in &codes {
            assert!(
                c.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'),
                "{c}"
            );
            assert!(
                protocol.contains(&format!("| `{c}` |")),
                "ERR table lacks {c}"
            );
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for e in all {
            assert_eq!(Error::from_code(e.code()), Some(e));
        }
        assert_eq!(Error::from_code("no_such_code"), None);
        assert!(Error::from(SessionError::UnknownRoutingTag).is_retryable());
        assert!(!Error::from(SessionError::Duplicate).is_retryable());
    }
}
