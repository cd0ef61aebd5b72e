//! `group.json`: admin-signed memberships (GRP-2), group messages with per-member chains and
//! signatures inside the encryption (GRP-5, GRP-7), and the refusals a member must make.

use serde::{Deserialize, Serialize};
use sotto_core::crypto::SignPublic;
use sotto_core::envelope::Envelope;
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

fn sign(
    admin: &PartyKeys,
    gid: &Hex,
    epoch: u32,
    members: &[MemberJson],
) -> Result<Vec<u8>, String> {
    let list = members
        .iter()
        .map(|m| {
            Ok(Member {
                user: UserId(m.user.arr()?),
                iks: SignPublic(m.iks.arr()?),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Membership::sign(&admin.identity()?, GroupId(gid.arr()?), epoch, list)
        .map(|m| m.to_bytes())
        .map_err(|e| e.code().to_owned())
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
