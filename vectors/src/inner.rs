//! `inner.json`: the inner plaintext codec (IN-1..IN-4): kinds, time deltas, padding, and its errors.

use serde::{Deserialize, Serialize};
use sotto_core::crypto::SignPublic;
use sotto_core::group::handover::{Handover, Leave};
use sotto_core::group::membership::{Member, Membership};
use sotto_core::inner::{GroupAck, Inner};
use sotto_core::{Content, GroupId, MessageId, UserId};

use super::{Area, Case, Expect, Hex, bytes, case, check, same, seeded};

/// A content, field by field (kinds 1, 2, 3, 6, 7 and 8; kinds 4, 5 and 9 decode to `other`, named
/// by kind: their fields are pinned by group.json and first-message.json).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ContentJson {
    /// Kind 1.
    Text { text: String },
    /// Kind 2.
    Receipt { ids: Vec<Hex> },
    /// Kind 3.
    KeyUpdate,
    /// Kind 6.
    GroupAck {
        group: Hex,
        epoch: u32,
        index: u8,
        confirm: Hex,
    },
    /// Kind 7 (GRP-11).
    GroupLeave { group: Hex, epoch: u32 },
    /// Kind 8 (GRP-12): `epoch` is the new admin's first epoch; `sig` is not checked by decoding.
    GroupHandover {
        group: Hex,
        epoch: u32,
        new_admin: Hex,
        sig: Hex,
    },
    /// Kinds 4, 5 and 9, reported by name only.
    Other { name: String },
}

impl ContentJson {
    fn of(c: &Content) -> Self {
        match c {
            Content::Text(t) => ContentJson::Text { text: t.clone() },
            Content::Receipt(ids) => ContentJson::Receipt {
                ids: ids.iter().map(|i| Hex::of(i.0)).collect(),
            },
            Content::KeyUpdate => ContentJson::KeyUpdate,
            Content::GroupAck(a) => ContentJson::GroupAck {
                group: Hex::of(a.group.0),
                epoch: a.epoch,
                index: a.index,
                confirm: Hex::of(a.confirm),
            },
            Content::GroupLeave(l) => ContentJson::GroupLeave {
                group: Hex::of(l.group.0),
                epoch: l.epoch,
            },
            Content::GroupHandover(h) => ContentJson::GroupHandover {
                group: Hex::of(h.group.0),
                epoch: h.epoch,
                new_admin: Hex::of(h.new_admin.0),
                sig: Hex::of(h.sig),
            },
            other => ContentJson::Other {
                name: format!("kind {}", other.kind()),
            },
        }
    }

    fn content(&self) -> Result<Content, String> {
        Ok(match self {
            ContentJson::Text { text } => Content::Text(text.clone()),
            ContentJson::Receipt { ids } => Content::Receipt(
                ids.iter()
                    .map(|i| i.arr().map(MessageId))
                    .collect::<Result<_, _>>()?,
            ),
            ContentJson::KeyUpdate => Content::KeyUpdate,
            ContentJson::GroupAck {
                group,
                epoch,
                index,
                confirm,
            } => Content::GroupAck(GroupAck {
                group: GroupId(group.arr()?),
                epoch: *epoch,
                index: *index,
                confirm: confirm.arr()?,
            }),
            ContentJson::GroupLeave { group, epoch } => Content::GroupLeave(Leave {
                group: GroupId(group.arr()?),
                epoch: *epoch,
            }),
            ContentJson::GroupHandover {
                group,
                epoch,
                new_admin,
                sig,
            } => Content::GroupHandover(Handover {
                group: GroupId(group.arr()?),
                epoch: *epoch,
                new_admin: UserId(new_admin.arr()?),
                sig: sig.arr()?,
            }),
            ContentJson::Other { name } => return Err(format!("cannot encode {name}")),
        })
    }
}

/// A decoded inner plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded {
    /// Seconds since the epoch's t0.
    pub delta: u32,
    /// The content.
    pub content: ContentJson,
}

/// The operations of `inner.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// IN-1..IN-4: fields to bytes, padded to a multiple of `bucket` when `bucket > 1`.
    Encode {
        delta: u32,
        content: ContentJson,
        bucket: usize,
        bytes: Hex,
    },
    /// Decoding, or the error.
    Decode { bytes: Hex, expect: Expect<Decoded> },
}

/// The `inner` area.
pub struct InnerArea;

fn encode(delta: u32, content: &ContentJson, bucket: usize) -> Result<Vec<u8>, String> {
    Inner {
        delta,
        content: content.content()?,
    }
    .encode(bucket)
    .map(|z| z.to_vec())
    .map_err(|e| e.code().to_owned())
}

fn decode(b: &[u8]) -> Expect<Decoded> {
    Expect::from_result(Inner::decode(b), |i| Decoded {
        delta: i.delta,
        content: ContentJson::of(&i.content),
    })
}

/// A valid inner plaintext as two cases: its encoding (under `rules`) and the decoding of those
/// bytes (under `decode_rules`, named "... decodes").
fn encoded_and_decoded(
    name: &str,
    rules: &[&str],
    decode_rules: &[&str],
    delta: u32,
    content: ContentJson,
    bucket: usize,
) -> [Case<Op>; 2] {
    let b = encode(delta, &content, bucket).unwrap_or_default();
    [
        case(
            name,
            rules,
            Op::Encode {
                delta,
                content,
                bucket,
                bytes: Hex(b.clone()),
            },
        ),
        case(
            &format!("{name} decodes"),
            decode_rules,
            Op::Decode {
                expect: decode(&b),
                bytes: Hex(b),
            },
        ),
    ]
}

/// Kinds 7, 8 and 9 (GRP-11, GRP-12), drawn after every other input of the file: a leave of the
/// group of `admin` (epoch 3), the admin's handover of it to a new member `0x0c..` (its first epoch
/// 4), and that new admin's group key of epoch 4 (itself first, the old admin second) with the
/// handover in front (kind 9). Decoding reads the handover's layout only; its signature is the
/// receiver's to check (first-message.json), the membership's is checked as in kind 4.
fn leave_and_handover(
    r: &mut rand_chacha::ChaCha20Rng,
    admin: &sotto_core::Identity,
    admin_member: Member,
    gid: GroupId,
    share: &[u8],
) -> Vec<Case<Op>> {
    let heir = sotto_core::Identity::from_secrets(
        sotto_core::crypto::SignSecret::from_seed(bytes::<32>(r)),
        sotto_core::crypto::DhSecret::from_bytes(bytes::<32>(r)),
    );
    let heir_member = Member {
        user: UserId([0x0c; 10]),
        iks: *heir.public().iks(),
    };
    let handover = Handover::sign(admin, gid, 4, &heir_member);
    let leave = ContentJson::GroupLeave {
        group: Hex::of(gid.0),
        epoch: 3,
    };
    let handover_json = ContentJson::GroupHandover {
        group: Hex::of(gid.0),
        epoch: handover.epoch,
        new_admin: Hex::of(handover.new_admin.0),
        sig: Hex::of(handover.sig),
    };
    let mut cases = Vec::new();
    for (name, rules, delta, content, bucket) in [
        (
            "IN-3 group leave",
            &["IN-1", "IN-3", "GRP-11"][..],
            9u32,
            leave.clone(),
            0usize,
        ),
        (
            "IN-4 group leave padded to 64 bytes",
            &["IN-1", "IN-3", "IN-4", "GRP-11"][..],
            9,
            leave,
            64,
        ),
        (
            "IN-3 group handover",
            &["IN-1", "IN-3", "GRP-12", "KDF-22"][..],
            10,
            handover_json,
            0,
        ),
    ] {
        cases.extend(encoded_and_decoded(
            name,
            rules,
            &["IN-1", "IN-3"],
            delta,
            content,
            bucket,
        ));
    }
    let mut h = sotto_core::codec::Writer::with_capacity(94);
    handover.encode(&mut h);
    let h = h.into_vec();
    let m = Membership::sign(&heir, gid, 4, vec![heir_member, admin_member])
        .map(|m| m.to_bytes())
        .unwrap_or_default();
    let mut forged = m.clone();
    if let Some(last) = forged.last_mut() {
        *last ^= 0x01;
    }
    let handed_over =
        |h: &[u8], m: &[u8], tail: &[u8]| [&[0x09, 0x00][..], h, m, share, tail].concat();
    let leave_body = [&gid.0[..], &3u32.to_be_bytes()].concat();
    let leave = |tail: &[u8]| [&[0x07, 0x00][..], &leave_body, tail].concat();
    let kind8 = |body: &[u8], tail: &[u8]| [&[0x08, 0x00][..], body, tail].concat();
    let decodes: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "IN-3 handed-over group key decodes",
            "GRP-12",
            handed_over(&h, &m, &[]),
        ),
        (
            "IN-3 group leave one byte short",
            "IN-3",
            leave(&[])
                .split_last()
                .map(|(_, b)| b.to_vec())
                .unwrap_or_default(),
        ),
        ("IN-3 group leave with a trailing byte", "IN-3", leave(&[0])),
        (
            "IN-3 group handover one byte short",
            "IN-3",
            kind8(&h[..h.len() - 1], &[]),
        ),
        (
            "IN-3 group handover with a trailing byte",
            "IN-3",
            kind8(&h, &[0]),
        ),
        (
            "IN-3 handed-over group key whose handover ends early",
            "IN-3",
            [&[0x09, 0x00][..], &h[..h.len() - 1]].concat(),
        ),
        (
            "IN-3 handed-over group key with a trailing byte",
            "IN-3",
            handed_over(&h, &m, &[0]),
        ),
        (
            "IN-3 handed-over group key with a forged membership signature",
            "GRP-2",
            handed_over(&h, &forged, &[]),
        ),
        ("IN-3 unknown kind 15", "IN-3", vec![0x0f, 0x00]),
    ];
    for (name, rule, b) in decodes {
        cases.push(case(
            name,
            &[rule],
            Op::Decode {
                expect: decode(&b),
                bytes: Hex(b),
            },
        ));
    }
    cases
}

impl Area for InnerArea {
    const NAME: &'static str = "inner";
    const DESCRIPTION: &'static str = "The inner plaintext: header byte, time delta, body of each kind, optional padding, and its decode errors (section 12).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let mut cases = Vec::new();
        let valid = vec![
            (
                "IN-3 text of 5 characters",
                12u32,
                ContentJson::Text {
                    text: "hello".into(),
                },
                0usize,
            ),
            (
                "IN-3 empty text",
                0,
                ContentJson::Text {
                    text: String::new(),
                },
                0,
            ),
            (
                "IN-3 text in UTF-8",
                200,
                ContentJson::Text {
                    text: "grüße, 你好 👋".into(),
                },
                0,
            ),
            (
                "IN-4 text padded to 32 bytes",
                86_400,
                ContentJson::Text {
                    text: "hello".into(),
                },
                32,
            ),
            (
                "IN-3 receipt of two ids",
                3,
                ContentJson::Receipt {
                    ids: vec![Hex::of(bytes::<16>(&mut r)), Hex::of(bytes::<16>(&mut r))],
                },
                0,
            ),
            ("IN-3 key update", u32::MAX, ContentJson::KeyUpdate, 0),
            (
                "IN-3 group ack",
                1,
                ContentJson::GroupAck {
                    group: Hex::of(bytes::<16>(&mut r)),
                    epoch: 4,
                    index: 2,
                    confirm: Hex::of(bytes::<16>(&mut r)),
                },
                0,
            ),
        ];
        for (name, delta, content, bucket) in valid {
            cases.extend(encoded_and_decoded(
                name,
                &["IN-1", "IN-2", "IN-3", "IN-4"],
                &["IN-1"],
                delta,
                content,
                bucket,
            ));
        }
        // Kinds 4 and 5 carry a signed membership (GRP-2, GRP-3): a group of two, signed by its
        // admin, a second membership whose signature is forged, and a group key's 104 bytes.
        let admin = sotto_core::Identity::from_secrets(
            sotto_core::crypto::SignSecret::from_seed(bytes::<32>(&mut r)),
            sotto_core::crypto::DhSecret::from_bytes(bytes::<32>(&mut r)),
        );
        let members = vec![
            Member {
                user: UserId([0x0a; 10]),
                iks: *admin.public().iks(),
            },
            Member {
                user: UserId([0x0b; 10]),
                iks: SignPublic(bytes::<32>(&mut r)),
            },
        ];
        let admin_member = members[0];
        let gid = GroupId(bytes::<16>(&mut r));
        let membership = Membership::sign(&admin, gid, 3, members)
            .map(|m| m.to_bytes())
            .unwrap_or_default();
        let mut forged = membership.clone();
        if let Some(last) = forged.last_mut() {
            *last ^= 0x01;
        }
        let share = bytes::<104>(&mut r).to_vec();
        let group_key = |m: &[u8], tail: &[u8]| [&[0x04, 0x00][..], m, &share, tail].concat();
        let removed = |m: &[u8], tail: &[u8]| [&[0x05, 0x00][..], m, tail].concat();
        let ack = [vec![0x06, 0x00], vec![0xcc; 16 + 4 + 1 + 16]].concat();
        let invalid: Vec<(&str, &str, Vec<u8>)> = vec![
            (
                "IN-3 group key decodes",
                "GRP-3",
                group_key(&membership, &[]),
            ),
            (
                "IN-3 group removed decodes",
                "GRP-6",
                removed(&membership, &[]),
            ),
            (
                "IN-3 group key with a forged membership signature",
                "GRP-2",
                group_key(&forged, &[]),
            ),
            (
                "IN-3 group removed with a forged membership signature",
                "GRP-2",
                removed(&forged, &[]),
            ),
            (
                "IN-3 group key with a trailing byte",
                "IN-3",
                group_key(&membership, &[0]),
            ),
            (
                "IN-3 group removed with a trailing byte",
                "IN-3",
                removed(&membership, &[0]),
            ),
            (
                "NOT-5 group key: layout before signature (forged and one byte short)",
                "NOT-5",
                group_key(&forged, &[])
                    .split_last()
                    .map(|(_, b)| b.to_vec())
                    .unwrap_or_default(),
            ),
            (
                "IN-3 group ack one byte short",
                "IN-3",
                ack[..ack.len() - 1].to_vec(),
            ),
            (
                "IN-3 group ack with a trailing byte",
                "IN-3",
                [ack.clone(), vec![0]].concat(),
            ),
            ("IN-3 receipt of no ids", "IN-3", vec![0x02, 0x00]),
            (
                "LIM-10 receipt of 64 ids decodes",
                "LIM-10",
                [vec![0x02, 0x00], vec![0xaa; 64 * 16]].concat(),
            ),
            (
                "LIM-2 text of 4000 bytes decodes",
                "LIM-2",
                [vec![0x01, 0x00], vec![b'a'; 4000]].concat(),
            ),
            (
                "IN-4 padded with fewer than 2 bytes left",
                "IN-4",
                vec![0x11, 0x00, 0x00],
            ),
            (
                "IN-4 padding length 1",
                "IN-4",
                vec![0x11, 0x00, 0x00, 0x01],
            ),
            ("IN-1 reserved bit set", "IN-1", vec![0x21, 0x00]),
            ("IN-3 unknown kind 10", "IN-3", vec![0x0a, 0x00]),
            (
                "IN-3 text that is not UTF-8",
                "IN-3",
                vec![0x01, 0x00, 0xff, 0xfe],
            ),
            (
                "IN-3 receipt of 17 bytes",
                "IN-3",
                [vec![0x02, 0x00], vec![0xaa; 17]].concat(),
            ),
            (
                "IN-3 LIM-10 receipt of 65 ids",
                "LIM-10",
                [vec![0x02, 0x00], vec![0xaa; 65 * 16]].concat(),
            ),
            (
                "IN-3 key update with a body",
                "IN-3",
                vec![0x03, 0x00, 0x00],
            ),
            (
                "IN-3 text over LIM-2",
                "LIM-2",
                [vec![0x01, 0x00], vec![b'a'; 4001]].concat(),
            ),
            (
                "IN-4 padding longer than the message",
                "IN-4",
                vec![0x11, 0x00, 0x00, 0x09],
            ),
            (
                "IN-4 non-zero padding byte",
                "IN-4",
                vec![0x11, 0x00, 0x01, 0x00, 0x03],
            ),
            ("NOT-2 non-canonical delta", "NOT-2", vec![0x01, 0x80, 0x00]),
            ("IN-1 empty", "IN-1", vec![]),
        ];
        for (name, rule, b) in invalid {
            cases.push(case(
                name,
                &[rule],
                Op::Decode {
                    expect: decode(&b),
                    bytes: Hex(b),
                },
            ));
        }
        cases.extend(leave_and_handover(
            &mut r,
            &admin,
            admin_member,
            gid,
            &share,
        ));
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Encode {
                delta,
                content,
                bucket,
                bytes,
            } => same("bytes", &encode(*delta, content, *bucket)?, bytes),
            Op::Decode { bytes, expect } => check(decode(&bytes.0), expect),
        }
    }
}
