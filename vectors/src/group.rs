//! `group.json`: admin-signed memberships (GRP-2), group messages with per-member chains and
//! signatures inside the encryption (GRP-5, GRP-7), the admin's signed handover of its role
//! (GRP-12, KDF-22), and the refusals a member must make.

use serde::{Deserialize, Serialize};
use sotto_core::codec::{Reader, Writer};
use sotto_core::crypto::SignPublic;
use sotto_core::envelope::Envelope;
use sotto_core::group::handover::{HANDOVER_LEN, Handover};
use sotto_core::group::membership::{Member, Membership};
use sotto_core::group::{Group, GroupEpoch};
use sotto_core::{Content, GroupId, UserId};

use super::first::random_fields;
use super::keyshare::Fields;
use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, same, seeded};

/// A member of a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJson {
    /// User id.
    pub user: Hex,
    /// `IKs`.
    pub iks: Hex,
}

/// What a verified membership holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    /// Group id.
    pub group_id: Hex,
    /// Epoch.
    pub epoch: u32,
    /// User ids, admin first.
    pub users: Vec<Hex>,
}

/// What a verified handover says (GRP-12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOver {
    /// Group id.
    pub group_id: Hex,
    /// The new admin's first epoch.
    pub epoch: u32,
    /// The new admin's user id.
    pub new_admin: Hex,
}

/// What a member reports for a group text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupText {
    /// Sender's index.
    pub from_index: u8,
    /// Message id.
    pub id: Hex,
    /// Sender's server-corrected send time.
    pub sent_at: u64,
    /// The text.
    pub text: String,
}

/// One group envelope handed to a member, with the outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDelivery {
    /// Why it is in the case.
    pub note: String,
    /// The envelope.
    pub envelope: Hex,
    /// The outcome.
    pub expect: Expect<GroupText>,
}

/// The operations of `group.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// GRP-2: the admin signs a member list (the admin is member 0).
    Membership {
        admin: PartyKeys,
        group_id: Hex,
        epoch: u32,
        members: Vec<MemberJson>,
        bytes: Hex,
    },
    /// GRP-2: verifying a membership, or the error.
    ParseMembership { bytes: Hex, expect: Expect<Listed> },
    /// GRP-5, GRP-7: member `index` seals a text with the epoch's keys.
    Message {
        sender: PartyKeys,
        membership: Hex,
        keys: Fields,
        index: u8,
        now: u64,
        text: String,
        envelope: Hex,
    },
    /// GRP-12, KDF-22: the admin hands the group over to `new_admin` from `epoch` on. `signed` is
    /// the message the signature covers: the label `sotto/v1/group-handover`, then group id, epoch,
    /// the new admin's user id and `IKs`; `bytes` the 94-byte handover (IN-3 kind 8's body).
    Handover {
        admin: PartyKeys,
        group_id: Hex,
        epoch: u32,
        new_admin: MemberJson,
        signed: Hex,
        sig: Hex,
        bytes: Hex,
    },
    /// GRP-12: the member `new_admin` checks a handover's 94 bytes under the `IKs` of the admin it
    /// holds (`old_admin`): the user id it names must be its own, and the signature must hold over
    /// its own `IKs`.
    VerifyHandover {
        bytes: Hex,
        old_admin: MemberJson,
        new_admin: MemberJson,
        expect: Expect<HandedOver>,
    },
    /// GRP-5, GRP-7: member `receiver_index` opens envelopes in order.
    Open {
        membership: Hex,
        keys: Fields,
        receiver_index: u8,
        received_at: u64,
        deliveries: Vec<GroupDelivery>,
    },
}

/// The `group` area.
pub struct GroupArea;

fn member(m: &MemberJson) -> Result<Member, String> {
    Ok(Member {
        user: UserId(m.user.arr()?),
        iks: SignPublic(m.iks.arr()?),
    })
}

fn sign(
    admin: &PartyKeys,
    gid: &Hex,
    epoch: u32,
    members: &[MemberJson],
) -> Result<Vec<u8>, String> {
    let list = members
        .iter()
        .map(member)
        .collect::<Result<Vec<_>, String>>()?;
    Membership::sign(&admin.identity()?, GroupId(gid.arr()?), epoch, list)
        .map(|m| m.to_bytes())
        .map_err(|e| e.code().to_owned())
}

/// KDF-22's signed message, written out from the fields (not by the core).
fn handover_signed(gid: &Hex, epoch: u32, new_admin: &MemberJson) -> Vec<u8> {
    [
        sotto_core::kdf::SIG_GROUP_HANDOVER,
        &gid.0,
        &epoch.to_be_bytes(),
        &new_admin.user.0,
        &new_admin.iks.0,
    ]
    .concat()
}

/// The admin's handover (GRP-12): its signature and its 94 bytes.
fn hand_over(
    admin: &PartyKeys,
    gid: &Hex,
    epoch: u32,
    new_admin: &MemberJson,
) -> Result<([u8; 64], Vec<u8>), String> {
    let h = Handover::sign(
        &admin.identity()?,
        GroupId(gid.arr()?),
        epoch,
        &member(new_admin)?,
    );
    let mut w = Writer::with_capacity(HANDOVER_LEN);
    h.encode(&mut w);
    Ok((h.sig, w.into_vec()))
}

fn verify_handover(
    b: &[u8],
    old: &MemberJson,
    new: &MemberJson,
) -> Result<Expect<HandedOver>, String> {
    let (old, new) = (member(old)?, member(new)?);
    let mut r = Reader::new(b);
    let got = Handover::decode(&mut r)
        .and_then(|h| r.finish().map_err(Into::into).map(|()| h))
        .and_then(|h| h.verify(&old, &new).map(|()| h));
    Ok(Expect::from_result(got, |h| HandedOver {
        group_id: Hex::of(h.group.0),
        epoch: h.epoch,
        new_admin: Hex::of(h.new_admin.0),
    }))
}

fn parse(b: &[u8]) -> Expect<Listed> {
    Expect::from_result(Membership::from_bytes(b), |m| Listed {
        group_id: Hex::of(m.group().0),
        epoch: m.epoch(),
        users: m.members().iter().map(|x| Hex::of(x.user.0)).collect(),
    })
}

fn epoch(membership: &Hex, keys: &Fields, index: u8) -> Result<GroupEpoch, String> {
    let m = Membership::from_bytes(&membership.0).map_err(|e| e.code().to_owned())?;
    Ok(GroupEpoch::new(m, keys.share()?, index))
}

fn seal(
    sender: &PartyKeys,
    membership: &Hex,
    keys: &Fields,
    index: u8,
    now: u64,
    text: &str,
) -> Result<Vec<u8>, String> {
    let mut e = epoch(membership, keys, index)?;
    e.seal(&sender.identity()?, now, &Content::Text(text.to_owned()), 0)
        .map(|s| s.bytes)
        .map_err(|e| e.code().to_owned())
}

fn open_all(group: &mut Group, at: u64, envs: &[(String, Vec<u8>)]) -> Vec<GroupDelivery> {
    envs.iter()
        .map(|(note, env)| {
            let r = Envelope::decode(env).and_then(|e| group.open(at, &e));
            let expect = Expect::from_result(r, |(o, _m)| GroupText {
                from_index: 0,
                id: Hex::of(o.id.0),
                sent_at: o.sent_at,
                text: match o.inner.content {
                    Content::Text(t) => t,
                    other => format!("{other:?}"),
                },
            });
            // The sender index is in the header.
            let expect = match (expect, Envelope::decode(env)) {
                (Expect::Ok(mut t), Ok(e)) => {
                    if let sotto_core::envelope::Header::Group { index, .. } = e.header() {
                        t.from_index = *index;
                    }
                    Expect::Ok(t)
                }
                (x, _) => x,
            };
            GroupDelivery {
                note: note.clone(),
                envelope: Hex(env.clone()),
                expect,
            }
        })
        .collect()
}

const NOW: u64 = 1_767_225_600_000;

/// GRP-12, KDF-22: the admin (member 0) hands the group of `members` over to member 1 from epoch 2
/// on, and member 1 checks it; the refusals change one input each (the signed bytes are not
/// re-signed where the signature is what the case is about). No random input: every value comes
/// from the membership cases.
fn handovers(admin: &PartyKeys, gid: &Hex, members: &[MemberJson]) -> Vec<Case<Op>> {
    let (Some(a), Some(b), Some(c)) = (members.first(), members.get(1), members.get(2)) else {
        return Vec::new();
    };
    let Ok((sig, bytes)) = hand_over(admin, gid, 2, b) else {
        return Vec::new();
    };
    let mut cases = vec![case(
        "KDF-22 GRP-12 the admin signs a handover to member 1",
        &["GRP-12", "KDF-22", "IN-3"],
        Op::Handover {
            admin: admin.clone(),
            group_id: gid.clone(),
            epoch: 2,
            new_admin: b.clone(),
            signed: Hex(handover_signed(gid, 2, b)),
            sig: Hex::of(sig),
            bytes: Hex(bytes.clone()),
        },
    )];
    let mut flipped = bytes.clone();
    if let Some(last) = flipped.last_mut() {
        *last ^= 0x01;
    }
    let mut other_epoch = bytes.clone();
    other_epoch[19] ^= 0x01;
    let b_under_cs_key = MemberJson {
        user: b.user.clone(),
        iks: c.iks.clone(),
    };
    for (name, bytes, old, new) in [
        (
            "GRP-12 member 1 verifies the handover under the admin's IKs",
            &bytes,
            a,
            b,
        ),
        (
            "GRP-12 a handover checked under another member's IKs than the admin's",
            &bytes,
            c,
            b,
        ),
        (
            "GRP-12 a handover with a flipped signature bit",
            &flipped,
            a,
            b,
        ),
        (
            "GRP-12 a handover whose epoch was changed after signing",
            &other_epoch,
            a,
            b,
        ),
        (
            "GRP-12 a handover received by a member it does not name",
            &bytes,
            a,
            c,
        ),
        (
            "GRP-12 a handover to member 1's user id under another IKs",
            &bytes,
            a,
            &b_under_cs_key,
        ),
    ] {
        let expect = verify_handover(bytes, old, new)
            .unwrap_or_else(|e| Expect::Error(format!("generator: {e}")));
        cases.push(case(
            name,
            &["GRP-12", "KDF-22"],
            Op::VerifyHandover {
                bytes: Hex(bytes.clone()),
                old_admin: old.clone(),
                new_admin: new.clone(),
                expect,
            },
        ));
    }
    cases
}

impl Area for GroupArea {
    const NAME: &'static str = "group";
    const DESCRIPTION: &'static str = "Groups: the admin-signed membership, group messages on per-member chains from the group master key, signed inside the encryption, and a member's refusals (section 14).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let parties: Vec<PartyKeys> = (1..=3)
            .map(|i| PartyKeys::random(&mut r, i, false))
            .collect();
        let members: Vec<MemberJson> = parties
            .iter()
            .map(|p| MemberJson {
                user: p.user.clone(),
                iks: p
                    .identity()
                    .map(|i| Hex::of(i.public().iks().0))
                    .unwrap_or_default(),
            })
            .collect();
        let gid = Hex::of(bytes::<16>(&mut r));
        let m_bytes = sign(&parties[0], &gid, 1, &members).unwrap_or_default();
        let mut cases = vec![
            case(
                "GRP-2 the admin signs a membership of three",
                &["GRP-1", "GRP-2"],
                Op::Membership {
                    admin: parties[0].clone(),
                    group_id: gid.clone(),
                    epoch: 1,
                    members: members.clone(),
                    bytes: Hex(m_bytes.clone()),
                },
            ),
            case(
                "GRP-2 a member verifies it",
                &["GRP-2"],
                Op::ParseMembership {
                    expect: parse(&m_bytes),
                    bytes: Hex(m_bytes.clone()),
                },
            ),
        ];
        let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
        // Member 1 re-signs the list with the admin still first: the signature is not the admin's.
        let resigned = {
            let id = parties[1].identity().expect("valid keys");
            let body = &m_bytes[..m_bytes.len() - 64];
            let mut v = body.to_vec();
            v.extend_from_slice(&id.signing().sign(b"sotto/v1/group-members", &[body]));
            v
        };
        bad.push(("GRP-2 signed by a member, not the admin", resigned));
        let mut zero = m_bytes.clone();
        zero[20] = 0;
        bad.push(("GRP-2 zero members", zero));
        let mut many = m_bytes.clone();
        many[20] = 65;
        bad.push(("LIM-14 65 members", many));
        let mut dup = m_bytes.clone();
        let (second, third) = (21 + 42, 21 + 84);
        let first_user: Vec<u8> = dup[21..31].to_vec();
        dup[second..second + 10].copy_from_slice(&first_user);
        let _ = third;
        bad.push(("GRP-2 a user listed twice", dup));
        bad.push(("GRP-2 truncated", m_bytes[..m_bytes.len() - 1].to_vec()));
        for (name, b) in bad {
            cases.push(case(
                name,
                &["GRP-2"],
                Op::ParseMembership {
                    expect: parse(&b),
                    bytes: Hex(b),
                },
            ));
        }
        cases.extend(handovers(&parties[0], &gid, &members));
        // LIM-14 at the bound: a membership of 64 members is accepted.
        let mut sixty_four = vec![members[0].clone()];
        for i in 1..sotto_core::limits::MAX_GROUP_MEMBERS as u8 {
            sixty_four.push(MemberJson {
                user: Hex::of([i.wrapping_add(100); 10]),
                iks: Hex::of(
                    sotto_core::crypto::SignSecret::from_seed([i; 32])
                        .public()
                        .0,
                ),
            });
        }
        let big = sign(&parties[0], &gid, 2, &sixty_four).unwrap_or_default();
        cases.push(case(
            "LIM-14 a membership of 64 members is accepted",
            &["LIM-14", "GRP-2"],
            Op::ParseMembership {
                expect: parse(&big),
                bytes: Hex(big),
            },
        ));
        let keys = random_fields(&mut r, NOW);
        let m = Hex(m_bytes);
        let text = "hello group".to_owned();
        let env = seal(&parties[1], &m, &keys, 1, NOW + 7000, &text).unwrap_or_default();
        cases.push(case(
            "GRP-7 member 1 sends a signed group message",
            &["ENV-5", "GRP-5", "GRP-7", "GRP-8"],
            Op::Message {
                sender: parties[1].clone(),
                membership: m.clone(),
                keys: keys.clone(),
                index: 1,
                now: NOW + 7000,
                text: text.clone(),
                envelope: Hex(env.clone()),
            },
        ));
        let second = seal(&parties[1], &m, &keys, 1, NOW + 8000, "second")
            .ok()
            .and_then(|_| {
                let mut e = epoch(&m, &keys, 1).ok()?;
                let id = parties[1].identity().ok()?;
                e.seal(&id, NOW + 7000, &Content::Text(text.clone()), 0)
                    .ok()?;
                e.seal(&id, NOW + 8000, &Content::Text("second".into()), 0)
                    .ok()
                    .map(|s| s.bytes)
            });
        // Member 2 forges a message as member 1: right keys (it knows the GMK), wrong signature.
        let forged = seal(&parties[2], &m, &keys, 1, NOW, "i am member 1").unwrap_or_default();
        let other_epoch = seal(
            &parties[1],
            &m,
            &random_fields(&mut r, NOW),
            1,
            NOW,
            "other epoch",
        )
        .unwrap_or_default();
        let mut tampered = env.clone();
        let at = tampered.len() - 20;
        tampered[at] ^= 0x01;
        let mut envs: Vec<(String, Vec<u8>)> = vec![
            ("member 2 signs as member 1: bad_signature".into(), forged),
            (
                "an epoch the receiver does not hold: unknown_group".into(),
                other_epoch,
            ),
            ("tampered ciphertext: decrypt_failed".into(), tampered),
        ];
        if let Some(s) = second {
            envs.push((
                "the second message first: its key is derived ahead".into(),
                s,
            ));
        }
        envs.push(("the message".into(), env.clone()));
        envs.push(("again: duplicate".into(), env));
        let received_at = NOW + 9000;
        let deliveries = epoch(&m, &keys, 0)
            .map(|e| open_all(&mut Group::new(e), received_at, &envs))
            .unwrap_or_default();
        cases.push(case(
            "GRP-7 the admin opens group messages and refuses forgeries",
            &["GRP-5", "GRP-7", "RX-2", "Req5"],
            Op::Open {
                membership: m,
                keys,
                receiver_index: 0,
                received_at,
                deliveries,
            },
        ));
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Membership {
                admin,
                group_id,
                epoch,
                members,
                bytes,
            } => same("bytes", &sign(admin, group_id, *epoch, members)?, bytes),
            Op::ParseMembership { bytes, expect } => check(parse(&bytes.0), expect),
            Op::Handover {
                admin,
                group_id,
                epoch,
                new_admin,
                signed,
                sig,
                bytes,
            } => {
                same(
                    "signed",
                    &handover_signed(group_id, *epoch, new_admin),
                    signed,
                )?;
                let (got_sig, got_bytes) = hand_over(admin, group_id, *epoch, new_admin)?;
                same("sig", &got_sig, sig)?;
                same("bytes", &got_bytes, bytes)?;
                // The signature is plain Ed25519 over `signed` under the admin's IKs.
                admin
                    .identity()?
                    .public()
                    .iks()
                    .verify(b"", &[&signed.0], &sig.arr()?)
                    .map_err(|e| format!("sig over signed: {}", sotto_core::Error::from(e).code()))
            }
            Op::VerifyHandover {
                bytes,
                old_admin,
                new_admin,
                expect,
            } => check(verify_handover(&bytes.0, old_admin, new_admin)?, expect),
            Op::Message {
                sender,
                membership,
                keys,
                index,
                now,
                text,
                envelope,
            } => same(
                "envelope",
                &seal(sender, membership, keys, *index, *now, text)?,
                envelope,
            ),
            Op::Open {
                membership,
                keys,
                receiver_index,
                received_at,
                deliveries,
            } => {
                let mut g = Group::new(epoch(membership, keys, *receiver_index)?);
                let envs: Vec<(String, Vec<u8>)> = deliveries
                    .iter()
                    .map(|d| (d.note.clone(), d.envelope.0.clone()))
                    .collect();
                let got = open_all(&mut g, *received_at, &envs);
                for (g, w) in got.iter().zip(deliveries) {
                    check(g.expect.clone(), &w.expect).map_err(|e| format!("{}: {e}", w.note))?;
                }
                Ok(())
            }
        }
    }
}
