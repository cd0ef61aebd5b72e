//! The envelope codec (protocol.md section 11, Req8): the only bytes the server sees.
//!
//! ```text
//!   0x11 data         tag [8] || n varint                                            || sealed
//!   0x12 first        EK [32] || spk_id u32 || opk_id u32 || identity_box [186]
//!                     || keyshare_box [120] || n varint                              || sealed
//!   0x13 epoch start  prev_tag [8] || E [32] || confirm [16] || keyshare_box [120]
//!                     || pn varint || n varint                                       || sealed
//!   0x14 group        tag [8] || index u8 || n varint                                || sealed
//!   sealed = ct || tag16, with every byte before it as associated data (ENV-6)
//! ```
//! Decoding needs no key and yields an [`Envelope`], which is *unverified*: only opening its sealed
//! part with the right key (in `session` or `group`) yields plaintext (ENV-7).

use crate::codec::{Reader, Writer};
use crate::crypto::{DhPublic, TAG_LEN};
use crate::error::{DecodeError, MisuseError, Result};
use crate::keyshare::KeyShare;
use crate::limits::MAX_ENVELOPE;

/// Version 1 in the high nibble of byte 0 (ENV-1).
pub const VERSION: u8 = 1;
/// Type byte of a data message (ENV-2).
pub const TYPE_DATA: u8 = 0x11;
/// Type byte of a first message (ENV-3).
pub const TYPE_FIRST: u8 = 0x12;
/// Type byte of an epoch start (ENV-4).
pub const TYPE_EPOCH: u8 = 0x13;
/// Type byte of a group message (ENV-5).
pub const TYPE_GROUP: u8 = 0x14;
/// Length of the sealed identity in a first message (X3DH-3).
pub const IDENTITY_BOX_LEN: usize = 186;
/// Offset of the identity box in a first message: its associated data is everything before.
pub const FIRST_IDENTITY_AT: usize = 1 + 32 + 4 + 4;
/// Offset of the key-share box in a first message.
pub const FIRST_KEYSHARE_AT: usize = FIRST_IDENTITY_AT + IDENTITY_BOX_LEN;
/// Offset of the key-share box in an epoch start.
pub const EPOCH_KEYSHARE_AT: usize = 1 + 8 + 32 + 16;

/// The header of an envelope: everything before the sealed payload.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Header {
    /// ENV-2.
    Data {
        /// Routing tag of the epoch.
        tag: [u8; 8],
        /// Message counter.
        n: u32,
    },
    /// ENV-3.
    First {
        /// The initiator's ephemeral key `EK_A` (also its epoch-0 ratchet key).
        ek: DhPublic,
        /// The responder's signed prekey id.
        spk_id: u32,
        /// The responder's one-time prekey id, 0 if none (ID-4).
        opk_id: u32,
        /// The sealed initiator identity (X3DH-3).
        identity_box: Box<[u8; IDENTITY_BOX_LEN]>,
        /// The sealed key-share block of epoch 0 (KS-2).
        keyshare_box: Box<[u8; KeyShare::SEALED_LEN]>,
        /// Message counter.
        n: u32,
    },
    /// ENV-4.
    EpochStart {
        /// Routing tag of the epoch being answered (owned by the receiver).
        prev_tag: [u8; 8],
        /// The sender's new ratchet key.
        e: DhPublic,
        /// Key confirmation (EPOCH-4).
        confirm: [u8; 16],
        /// The sealed key-share block of the new epoch.
        keyshare_box: Box<[u8; KeyShare::SEALED_LEN]>,
        /// How many messages the sender sent in its previous epoch (EPOCH-5).
        pn: u32,
        /// Message counter.
        n: u32,
    },
    /// ENV-5.
    Group {
        /// Routing tag of the group epoch.
        tag: [u8; 8],
        /// Sender's member index.
        index: u8,
        /// Message counter.
        n: u32,
    },
}

impl Header {
    /// The type byte (ENV-1).
    pub fn type_byte(&self) -> u8 {
        match self {
            Header::Data { .. } => TYPE_DATA,
            Header::First { .. } => TYPE_FIRST,
            Header::EpochStart { .. } => TYPE_EPOCH,
            Header::Group { .. } => TYPE_GROUP,
        }
    }

    /// The header bytes: the associated data of the payload (ENV-6).
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with_room(0)
    }

    /// The header bytes in a buffer with room for `extra` more bytes (the sealed payload).
    pub fn encode_with_room(&self, extra: usize) -> Vec<u8> {
        // A capacity hint: the largest header of the type (5-byte varints) and room for `extra`.
        let mut w = Writer::with_capacity(
            match self {
                Header::Data { .. } | Header::Group { .. } => 1 + 8 + 1 + 5,
                Header::First { .. } => FIRST_KEYSHARE_AT + KeyShare::SEALED_LEN + 5,
                Header::EpochStart { .. } => EPOCH_KEYSHARE_AT + KeyShare::SEALED_LEN + 10,
            }
            .saturating_add(extra),
        );
        w.u8(self.type_byte());
        match self {
            Header::Data { tag, n } => {
                w.bytes(tag).varint(*n);
            }
            Header::First {
                ek,
                spk_id,
                opk_id,
                identity_box,
                keyshare_box,
                n,
            } => {
                w.bytes(&ek.0)
                    .u32(*spk_id)
                    .u32(*opk_id)
                    .bytes(&identity_box[..])
                    .bytes(&keyshare_box[..])
                    .varint(*n);
            }
            Header::EpochStart {
                prev_tag,
                e,
                confirm,
                keyshare_box,
                pn,
                n,
            } => {
                w.bytes(prev_tag)
                    .bytes(&e.0)
                    .bytes(confirm)
                    .bytes(&keyshare_box[..])
                    .varint(*pn)
                    .varint(*n);
            }
            Header::Group { tag, index, n } => {
                w.bytes(tag).u8(*index).varint(*n);
            }
        }
        w.into_vec()
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ty = r.u8()?;
        #[cfg(feature = "mutations")]
        let ty = if mutated!(Mutation::SkipEnvelopeVersion) {
            crate::mutation::with_version(ty, VERSION)
        } else {
            ty
        };
        if ty >> 4 != VERSION {
            return Err(DecodeError::UnknownVersion);
        }
        Ok(match ty {
            TYPE_DATA => Header::Data {
                tag: r.array()?,
                n: r.varint()?,
            },
            TYPE_FIRST => Header::First {
                ek: DhPublic(r.array()?),
                spk_id: r.u32()?,
                opk_id: r.u32()?,
                identity_box: Box::new(r.array()?),
                keyshare_box: Box::new(r.array()?),
                n: r.varint()?,
            },
            TYPE_EPOCH => Header::EpochStart {
                prev_tag: r.array()?,
                e: DhPublic(r.array()?),
                confirm: r.array()?,
                keyshare_box: Box::new(r.array()?),
                pn: r.varint()?,
                n: r.varint()?,
            },
            TYPE_GROUP => Header::Group {
                tag: r.array()?,
                index: r.u8()?,
                n: r.varint()?,
            },
            _ => return Err(DecodeError::UnknownType),
        })
    }
}

/// A decoded, unverified envelope (ENV-7).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Envelope<'a> {
    header: Header,
    header_bytes: &'a [u8],
    sealed: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Decodes an envelope (ENV-1, ENV-6). No key is needed and nothing is verified.
    pub fn decode(bytes: &'a [u8]) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE && !mutated!(Mutation::SkipEnvelopeSizeBound) {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let mut r = Reader::new(bytes);
        let header = Header::decode(&mut r)?;
        let sealed = r.rest();
        let header_len = bytes.len().saturating_sub(sealed.len());
        let header_bytes = bytes.get(..header_len).ok_or(DecodeError::Truncated)?;
        // Mutation `PlaintextIdInClear`: a pairwise envelope ends with its message id in the clear.
        #[cfg(feature = "mutations")]
        let sealed = crate::mutation::strip_clear_id(&header, sealed);
        if sealed.len() < TAG_LEN && !mutated!(Mutation::AllowShortSealedPart) {
            return Err(DecodeError::Truncated.into());
        }
        Ok(Envelope {
            header,
            header_bytes,
            sealed,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The header bytes: associated data of the payload.
    pub fn header_bytes(&self) -> &'a [u8] {
        self.header_bytes
    }

    /// The sealed payload `ct || tag`.
    pub fn sealed(&self) -> &'a [u8] {
        self.sealed
    }

    /// The associated data of a first message's identity box (X3DH-3).
    pub fn identity_box_ad(&self) -> &'a [u8] {
        self.header_bytes
            .get(..FIRST_IDENTITY_AT)
            .unwrap_or(self.header_bytes)
    }

    /// The associated data of a key-share box (KS-2): every byte before it.
    pub fn keyshare_box_ad(&self) -> &'a [u8] {
        let at = match self.header {
            Header::First { .. } => FIRST_KEYSHARE_AT,
            _ => EPOCH_KEYSHARE_AT,
        };
        self.header_bytes.get(..at).unwrap_or(self.header_bytes)
    }
}

/// Joins header bytes and a sealed payload, enforcing LIM-1.
pub fn assemble(header: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let len = header.len().saturating_add(sealed.len());
    if len > MAX_ENVELOPE {
        return Err(MisuseError::TooLarge.into());
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(header);
    out.extend_from_slice(sealed);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Error;
    use proptest::prelude::*;

    fn arb_header() -> impl Strategy<Value = Header> {
        prop_oneof![
            (any::<[u8; 8]>(), any::<u32>()).prop_map(|(tag, n)| Header::Data { tag, n }),
            (
                any::<[u8; 32]>(),
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), IDENTITY_BOX_LEN),
                proptest::collection::vec(any::<u8>(), KeyShare::SEALED_LEN),
                any::<u32>()
            )
                .prop_map(|(ek, spk_id, opk_id, ib, kb, n)| Header::First {
                    ek: DhPublic(ek),
                    spk_id,
                    opk_id,
                    identity_box: Box::new(ib.try_into().unwrap()),
                    keyshare_box: Box::new(kb.try_into().unwrap()),
                    n
                }),
            (
                any::<[u8; 8]>(),
                any::<[u8; 32]>(),
                any::<[u8; 16]>(),
                proptest::collection::vec(any::<u8>(), KeyShare::SEALED_LEN),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(prev_tag, e, confirm, kb, pn, n)| Header::EpochStart {
                    prev_tag,
                    e: DhPublic(e),
                    confirm,
                    keyshare_box: Box::new(kb.try_into().unwrap()),
                    pn,
                    n
                }),
            (any::<[u8; 8]>(), any::<u8>(), any::<u32>())
                .prop_map(|(tag, index, n)| Header::Group { tag, index, n }),
        ]
    }

    proptest! {
        #[test]
        fn decode_encode_round_trips_env_6(h in arb_header(), sealed in proptest::collection::vec(any::<u8>(), 16..64)) {
            let header = h.encode();
            let bytes = assemble(&header, &sealed).unwrap();
            let env = Envelope::decode(&bytes).unwrap();
            prop_assert_eq!(env.header(), &h);
            prop_assert_eq!(env.header_bytes(), &header[..]);
            prop_assert_eq!(env.sealed(), &sealed[..]);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Envelope::decode(&bytes);
        }
    }

    #[test]
    fn rejects_bad_envelopes_env_1_env_6() {
        let data = Header::Data { tag: [1; 8], n: 5 }.encode();
        let ok = assemble(&data, &[0; 16]).unwrap();
        assert_eq!(ok.len(), 1 + 8 + 1 + 16);
        assert!(Envelope::decode(&ok).is_ok());
        let short = &ok[..ok.len() - 1];
        assert_eq!(
            Envelope::decode(short).unwrap_err(),
            Error::Decode(DecodeError::Truncated)
        );
        let mut v2 = ok.clone();
        v2[0] = 0x21;
        assert_eq!(
            Envelope::decode(&v2).unwrap_err(),
            Error::Decode(DecodeError::UnknownVersion)
        );
        let mut t = ok.clone();
        t[0] = 0x1f;
        assert_eq!(
            Envelope::decode(&t).unwrap_err(),
            Error::Decode(DecodeError::UnknownType)
        );
        let big = vec![TYPE_DATA; MAX_ENVELOPE + 1];
        assert_eq!(
            Envelope::decode(&big).unwrap_err(),
            Error::Decode(DecodeError::LengthOutOfRange)
        );
        assert_eq!(
            assemble(&data, &vec![0; MAX_ENVELOPE]).unwrap_err(),
            Error::Misuse(MisuseError::TooLarge)
        );
    }
}
