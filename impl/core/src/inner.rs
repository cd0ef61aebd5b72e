//! The inner plaintext (protocol.md section 12): what the AEAD protects.
//!
//! ```text
//!   hdr u8 (kind | 0x10 if padded) || delta varint (s since the epoch's t0) || body || [0x00.. || p u16]
//! ```
//! This codec is not authenticated by itself (the envelope's AEAD is): decoding any bytes gives a value
//! or a typed error, never a panic, and `decode(encode(x)) == x`.

use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, MisuseError, Result};
use crate::group::handover::{Handover, Leave};
use crate::group::membership::Membership;
use crate::ids::{GroupId, MessageId};
use crate::keyshare::KeyShare;
use crate::limits::{MAX_ENVELOPE, MAX_RECEIPT_IDS, MAX_TEXT};

/// Kind 1: text.
pub const KIND_TEXT: u8 = 1;
/// Kind 2: receipt.
pub const KIND_RECEIPT: u8 = 2;
/// Kind 3: key update.
pub const KIND_KEY_UPDATE: u8 = 3;
/// Kind 4: group key.
pub const KIND_GROUP_KEY: u8 = 4;
/// Kind 5: group removed.
pub const KIND_GROUP_REMOVED: u8 = 5;
/// Kind 6: group ack.
pub const KIND_GROUP_ACK: u8 = 6;
/// Kind 7: group leave.
pub const KIND_GROUP_LEAVE: u8 = 7;
/// Kind 8: group handover.
pub const KIND_GROUP_HANDOVER: u8 = 8;
/// Kind 9: handed-over group key (a handover, then a group key).
pub const KIND_GROUP_KEY_HANDED_OVER: u8 = 9;
const PADDED: u8 = 0x10;

/// What a message says (IN-3).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Content {
    /// Kind 1: a UTF-8 text of at most LIM-2 bytes.
    Text(String),
    /// Kind 2: ids of committed messages (RX-5), 1..=LIM-10.
    Receipt(Vec<MessageId>),
    /// Kind 3: nothing; it only turns the epoch.
    KeyUpdate,
    /// Kind 4: a group epoch's membership and keys (GRP-3); kind 9 when it carries the
    /// handover by which its admin took the role (GRP-12).
    GroupKey(Box<GroupKey>),
    /// Kind 5: the membership of a group epoch the receiver was removed from (GRP-6).
    GroupRemoved(Box<Membership>),
    /// Kind 6: a member's confirmation of a group epoch (GRP-9).
    GroupAck(GroupAck),
    /// Kind 7: a member leaves a group (GRP-11).
    GroupLeave(Leave),
    /// Kind 8: the admin hands a group over to the receiver (GRP-12).
    GroupHandover(Handover),
}

impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Content::Text(a), Content::Text(b)) => a == b,
            (Content::Receipt(a), Content::Receipt(b)) => a == b,
            (Content::KeyUpdate, Content::KeyUpdate) => true,
            (Content::GroupKey(a), Content::GroupKey(b)) => {
                a.membership == b.membership
                    && a.handover == b.handover
                    && *a.keys.to_plaintext() == *b.keys.to_plaintext()
            }
            (Content::GroupRemoved(a), Content::GroupRemoved(b)) => a == b,
            (Content::GroupAck(a), Content::GroupAck(b)) => a == b,
            (Content::GroupLeave(a), Content::GroupLeave(b)) => a == b,
            (Content::GroupHandover(a), Content::GroupHandover(b)) => a == b,
            _ => false,
        }
    }
}

impl Content {
    /// The kind number (IN-3).
    pub fn kind(&self) -> u8 {
        match self {
            Content::Text(_) => KIND_TEXT,
            Content::Receipt(_) => KIND_RECEIPT,
            Content::KeyUpdate => KIND_KEY_UPDATE,
            Content::GroupKey(g) if g.handover.is_some() => KIND_GROUP_KEY_HANDED_OVER,
            Content::GroupKey(_) => KIND_GROUP_KEY,
            Content::GroupRemoved(_) => KIND_GROUP_REMOVED,
            Content::GroupAck(_) => KIND_GROUP_ACK,
            Content::GroupLeave(_) => KIND_GROUP_LEAVE,
            Content::GroupHandover(_) => KIND_GROUP_HANDOVER,
        }
    }

    /// Whether this content is receipted (RX-5: receipts and group acks are not).
    pub fn wants_receipt(&self) -> bool {
        !matches!(self, Content::Receipt(_) | Content::GroupAck(_))
    }

    /// Whether sending this content turns the epoch when the peer's is the newest (EPOCH-2):
    /// acknowledgements (receipts, group acks) ride the current chain instead.
    pub fn turns_epoch(&self) -> bool {
        self.wants_receipt()
    }
}

/// A group epoch's membership and secrets (GRP-3). The secrets use the key-share layout:
/// `GMK || s1 || s2 || s3 || s4 || t0`.
#[derive(Clone, Debug)]
pub struct GroupKey {
    /// The admin-signed membership of the epoch.
    pub membership: Membership,
    /// GMK, the four seeds and the epoch's t0.
    pub keys: KeyShare,
    /// The handover by which the membership's admin took the role (kind 9), if it did (GRP-12).
    pub handover: Option<Handover>,
}

/// A member's confirmation of a group epoch (GRP-9).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GroupAck {
    /// The group.
    pub group: GroupId,
    /// The epoch confirmed.
    pub epoch: u32,
    /// The member's index.
    pub index: u8,
    /// `HMAC(confirm key(s4), "sotto/v1/group-confirm" || group || epoch || index)[0..16]`.
    pub confirm: [u8; 16],
}

/// An inner plaintext (IN-1).
#[derive(Clone, Debug, PartialEq)]
pub struct Inner {
    /// Seconds since the epoch's t0 (IN-2).
    pub delta: u32,
    /// The content.
    pub content: Content,
}

impl Inner {
    /// Encodes, padding the result to a multiple of `bucket` bytes when `bucket > 1` (IN-4).
    pub fn encode(&self, bucket: usize) -> Result<Zeroizing<Vec<u8>>> {
        let mut w = Writer::with_capacity(64);
        let padded = bucket > 1;
        w.u8(self.content.kind() | if padded { PADDED } else { 0 })
            .varint(self.delta);
        match &self.content {
            Content::Text(t) => {
                if t.len() > MAX_TEXT {
                    return Err(MisuseError::TooLarge.into());
                }
                w.bytes(t.as_bytes());
            }
            Content::Receipt(ids) => {
                if ids.is_empty() || ids.len() > MAX_RECEIPT_IDS {
                    return Err(MisuseError::TooLarge.into());
                }
                for id in ids {
                    w.bytes(&id.0);
                }
            }
            Content::KeyUpdate => {}
            Content::GroupKey(g) => {
                if let Some(h) = &g.handover {
                    h.encode(&mut w);
                }
                g.membership.encode(&mut w);
                w.bytes(&g.keys.to_plaintext());
            }
            Content::GroupRemoved(m) => m.encode(&mut w),
            Content::GroupAck(a) => {
                w.bytes(&a.group.0)
                    .u32(a.epoch)
                    .u8(a.index)
                    .bytes(&a.confirm);
            }
            Content::GroupLeave(l) => {
                w.bytes(&l.group.0).u32(l.epoch);
            }
            Content::GroupHandover(h) => h.encode(&mut w),
        }
        let mut out = w.into_vec();
        if padded {
            let unpadded = out.len().saturating_add(2);
            let total = unpadded.div_ceil(bucket).saturating_mul(bucket);
            let p = total.saturating_sub(out.len());
            let p16 = u16::try_from(p).map_err(|_| MisuseError::TooLarge)?;
            if total > MAX_ENVELOPE {
                return Err(MisuseError::TooLarge.into());
            }
            out.resize(total.saturating_sub(2), 0);
            out.extend_from_slice(&p16.to_be_bytes());
        }
        Ok(Zeroizing::new(out))
    }

    /// Decodes an inner plaintext (IN-1..IN-4).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let hdr = r.u8()?;
        if hdr & 0xe0 != 0 && !mutated!(Mutation::AllowReservedBits) {
            return Err(DecodeError::ReservedBits.into());
        }
        let delta = r.varint()?;
        let mut body = r.rest();
        if hdr & PADDED != 0 {
            body = strip_padding(body)?;
        }
        let content = match hdr & 0x0f {
            KIND_TEXT => {
                if body.len() > MAX_TEXT && !mutated!(Mutation::SkipTextBound) {
                    return Err(DecodeError::LengthOutOfRange.into());
                }
                let text = core::str::from_utf8(body).map_err(|_| DecodeError::InvalidText)?;
                Content::Text(text.to_owned())
            }
            KIND_RECEIPT => {
                if body.is_empty()
                    || body.len() % 16 != 0
                    || (body.len() > MAX_RECEIPT_IDS * 16 && !mutated!(Mutation::SkipReceiptBound))
                {
                    return Err(DecodeError::LengthOutOfRange.into());
                }
                let ids = body
                    .chunks_exact(16)
                    .map(|c| {
                        let mut id = [0u8; 16];
                        id.copy_from_slice(c);
                        MessageId(id)
                    })
                    .collect();
                Content::Receipt(ids)
            }
            KIND_KEY_UPDATE => {
                if !body.is_empty() && !mutated!(Mutation::AllowKeyUpdateBody) {
                    return Err(DecodeError::TrailingBytes.into());
                }
                Content::KeyUpdate
            }
            kind @ (KIND_GROUP_KEY | KIND_GROUP_KEY_HANDED_OVER) => {
                let mut br = Reader::new(body);
                let handover = if kind == KIND_GROUP_KEY_HANDED_OVER {
                    Some(Handover::decode(&mut br)?)
                } else {
                    None
                };
                // NOT-5: the whole layout, then the admin's signature (the handover's is checked
                // by the receiver, which knows the admin it holds: GRP-12).
                let membership = Membership::read_unverified(&mut br)?;
                let keys = KeyShare::from_plaintext(br.rest())?;
                membership.verify()?;
                Content::GroupKey(Box::new(GroupKey {
                    membership,
                    keys,
                    handover,
                }))
            }
            KIND_GROUP_REMOVED => Content::GroupRemoved(Box::new(Membership::from_bytes(body)?)),
            KIND_GROUP_ACK => {
                let mut br = Reader::new(body);
                let ack = GroupAck {
                    group: GroupId(br.array()?),
                    epoch: br.u32()?,
                    index: br.u8()?,
                    confirm: br.array()?,
                };
                br.finish()?;
                Content::GroupAck(ack)
            }
            KIND_GROUP_LEAVE => {
                let mut br = Reader::new(body);
                let leave = Leave {
                    group: GroupId(br.array()?),
                    epoch: br.u32()?,
                };
                br.finish()?;
                Content::GroupLeave(leave)
            }
            KIND_GROUP_HANDOVER => {
                let mut br = Reader::new(body);
                let h = Handover::decode(&mut br)?;
                br.finish()?;
                Content::GroupHandover(h)
            }
            _ => return Err(DecodeError::UnknownKind.into()),
        };
        Ok(Inner { delta, content })
    }
}

fn strip_padding(body: &[u8]) -> Result<&[u8]> {
    let split = body.len().checked_sub(2).ok_or(DecodeError::Truncated)?;
    let (rest, len) = body.split_at(split);
    let p = usize::from(u16::from_be_bytes([
        *len.first().ok_or(DecodeError::Truncated)?,
        *len.get(1).ok_or(DecodeError::Truncated)?,
    ]));
    let zeros = p.checked_sub(2).ok_or(DecodeError::LengthOutOfRange)?;
    let keep = rest
        .len()
        .checked_sub(zeros)
        .ok_or(DecodeError::LengthOutOfRange)?;
    let (content, padding) = rest.split_at(keep);
    if padding.iter().any(|b| *b != 0) && !mutated!(Mutation::AllowNonZeroPadding) {
        return Err(DecodeError::ReservedBits.into());
    }
    Ok(content)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Error;
    use proptest::prelude::*;

    #[test]
    fn contents_are_equal_only_when_every_field_is_in_1() {
        use crate::crypto::SignSecret;
        use crate::group::membership::{Member, Membership};
        use crate::ids::{GroupId, UserId};
        use crate::keys::Identity;
        use crate::keyshare::KeyShare;
        use rand_chacha::ChaCha20Rng;
        use rand_core::SeedableRng;
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let admin = Identity::generate(&mut rng);
        let member = |n: u8| Member {
            user: UserId([n; 10]),
            iks: SignSecret::random(&mut ChaCha20Rng::seed_from_u64(u64::from(n))).public(),
        };
        let first = Member {
            user: UserId([1; 10]),
            iks: *admin.public().iks(),
        };
        let m1 = Membership::sign(&admin, GroupId([1; 16]), 0, vec![first, member(2)]).unwrap();
        let m2 = Membership::sign(&admin, GroupId([1; 16]), 1, vec![first]).unwrap();
        let k1 = KeyShare::random(&mut rng, 1000);
        let k2 = KeyShare::random(&mut rng, 1000);
        let key = |m: &Membership, k: &KeyShare| {
            Content::GroupKey(Box::new(GroupKey {
                membership: m.clone(),
                keys: k.clone(),
                handover: None,
            }))
        };
        let handover = |epoch| {
            crate::group::handover::Handover::sign(&admin, GroupId([1; 16]), epoch, &member(2))
        };
        let handed_over = |h| {
            Content::GroupKey(Box::new(GroupKey {
                membership: m1.clone(),
                keys: k1.clone(),
                handover: Some(h),
            }))
        };
        let leave = |epoch| {
            Content::GroupLeave(Leave {
                group: GroupId([1; 16]),
                epoch,
            })
        };
        let ack = |epoch| {
            Content::GroupAck(GroupAck {
                group: GroupId([1; 16]),
                epoch,
                index: 0,
                confirm: [0; 16],
            })
        };
        let all = [
            Content::Text("a".into()),
            Content::Text("b".into()),
            Content::Receipt(vec![MessageId([1; 16])]),
            Content::Receipt(vec![MessageId([2; 16])]),
            Content::KeyUpdate,
            key(&m1, &k1),
            key(&m1, &k2),
            key(&m2, &k1),
            Content::GroupRemoved(Box::new(m1.clone())),
            Content::GroupRemoved(Box::new(m2.clone())),
            ack(0),
            ack(1),
            leave(0),
            leave(1),
            Content::GroupHandover(handover(1)),
            Content::GroupHandover(handover(2)),
            handed_over(handover(1)),
            handed_over(handover(2)),
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert_eq!(a == b, i == j, "{i} vs {j}");
            }
            // IN-3: every kind decodes to what was encoded, padded or not.
            for bucket in [0, 64] {
                let inner = Inner {
                    delta: 5,
                    content: a.clone(),
                };
                let bytes = inner.encode(bucket).unwrap();
                assert_eq!(Inner::decode(&bytes).unwrap(), inner, "{i}");
            }
        }
    }

    /// IN-4: a bucket of 0 or 1 means no padding; padding may reach LIM-1 exactly, not beyond.
    #[test]
    fn padding_buckets_in_4() {
        let inner = Inner {
            delta: 0,
            content: Content::Text("hi".into()),
        };
        let plain = inner.encode(0).unwrap();
        assert_eq!(*inner.encode(1).unwrap(), *plain);
        assert_eq!(plain.len(), 1 + 1 + 2);
        assert_eq!(
            inner.encode(crate::limits::MAX_ENVELOPE).unwrap().len(),
            crate::limits::MAX_ENVELOPE
        );
        assert_eq!(
            inner.encode(crate::limits::MAX_ENVELOPE + 1).unwrap_err(),
            Error::Misuse(crate::error::MisuseError::TooLarge)
        );
    }

    /// LIM-2 when sending: a text of 4,000 bytes goes, one more is `too_large`.
    #[test]
    fn texts_up_to_lim_2_bytes() {
        let text = |n: usize| Inner {
            delta: 0,
            content: Content::Text("x".repeat(n)),
        };
        assert!(text(MAX_TEXT).encode(0).is_ok());
        assert_eq!(
            text(MAX_TEXT + 1).encode(0).unwrap_err(),
            Error::Misuse(crate::error::MisuseError::TooLarge)
        );
    }

    /// LIM-10 when sending: a receipt names 1 to 64 ids.
    #[test]
    fn receipts_name_one_to_lim_10_ids() {
        let receipt = |n: usize| Inner {
            delta: 0,
            content: Content::Receipt(vec![MessageId([7; 16]); n]),
        };
        assert!(receipt(1).encode(0).is_ok());
        assert!(receipt(MAX_RECEIPT_IDS).encode(0).is_ok());
        for n in [0, MAX_RECEIPT_IDS + 1] {
            assert_eq!(
                receipt(n).encode(0).unwrap_err(),
                Error::Misuse(crate::error::MisuseError::TooLarge),
                "{n}"
            );
        }
    }

    fn arb_content() -> impl Strategy<Value = Content> {
        prop_oneof![
            "\\PC{0,40}".prop_map(Content::Text),
            proptest::collection::vec(any::<[u8; 16]>(), 1..5)
                .prop_map(|v| Content::Receipt(v.into_iter().map(MessageId).collect())),
            Just(Content::KeyUpdate),
            (
                any::<[u8; 16]>(),
                any::<u32>(),
                any::<u8>(),
                any::<[u8; 16]>()
            )
                .prop_map(|(g, epoch, index, confirm)| Content::GroupAck(GroupAck {
                    group: GroupId(g),
                    epoch,
                    index,
                    confirm
                })),
        ]
    }

    proptest! {
        #[test]
        fn round_trips_in_1(content in arb_content(), delta in any::<u32>(), bucket in prop_oneof![Just(0usize), Just(32), Just(256)]) {
            let inner = Inner { delta, content };
            let bytes = inner.encode(bucket).unwrap();
            if bucket > 1 {
                prop_assert_eq!(bytes.len() % bucket, 0);
            }
            prop_assert_eq!(Inner::decode(&bytes).unwrap(), inner);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Inner::decode(&bytes);
        }
    }

    #[test]
    fn five_characters_take_seven_bytes_in_2() {
        let inner = Inner {
            delta: 12,
            content: Content::Text("hello".into()),
        };
        assert_eq!(&inner.encode(0).unwrap()[..], b"\x01\x0chello");
    }

    #[test]
    fn rejects_bad_bodies_in_3() {
        let cases: [(&[u8], DecodeError); 11] = [
            (b"\x21\x00", DecodeError::ReservedBits),
            (b"\x0a\x00", DecodeError::UnknownKind),
            (b"\x07\x00\x01", DecodeError::Truncated),
            (b"\x07\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x00\x00\x00\x00\x00", DecodeError::TrailingBytes),
            (b"\x08\x00\x01", DecodeError::Truncated),
            (b"\x09\x00\x01", DecodeError::Truncated),
            (b"\x01\x00\xff", DecodeError::InvalidText),
            (b"\x02\x00", DecodeError::LengthOutOfRange),
            (b"\x03\x00x", DecodeError::TrailingBytes),
            (b"\x11\x00\x00\x05", DecodeError::LengthOutOfRange),
            (b"\x11\x00\x01\x00\x03", DecodeError::ReservedBits),
        ];
        for (bytes, e) in cases {
            assert_eq!(
                Inner::decode(bytes).unwrap_err(),
                Error::Decode(e),
                "{bytes:?}"
            );
        }
        let long = Inner {
            delta: 0,
            content: Content::Text("x".repeat(MAX_TEXT + 1)),
        };
        assert_eq!(
            long.encode(0).unwrap_err(),
            Error::Misuse(MisuseError::TooLarge)
        );
    }
}
