//! `first-message.json`: a whole first message (ENV-3) from explicit keys and randomness, and what the
//! responder's device makes of it and of tampered, replayed and misaddressed copies (X3DH-6..X3DH-9),
//! and of the group controls that follow over the session (GRP-3..GRP-6, GRP-11, GRP-12).

use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sotto_core::crypto::DhSecret;
use sotto_core::group::handover::{Handover, Leave};
use sotto_core::group::membership::{Member, Membership};
use sotto_core::inner::GroupKey;
use sotto_core::limits::MAX_GROUPS;
use sotto_core::session::Session;
use sotto_core::{Content, Device, GroupId};

use super::keyshare::Fields;
use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, core_err, same, seeded};

/// What a device reports for a received message: a text, or a group control (IN-3 kinds 4..9 but 6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Sender's user id.
    pub from: Hex,
    /// Message id (ID-3).
    pub id: Hex,
    /// Sender's server-corrected send time, ms.
    pub sent_at: u64,
    /// The text (kind 1), or the core's `Debug` form of another content but a group control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A group control (kinds 4, 5, 7, 8, 9), applied or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupControl>,
}

/// A group control received over a pairwise session (GRP-3, GRP-4, GRP-6, GRP-11, GRP-12). The
/// message itself opens and is committed either way (RX-4); the control is applied, or refused with
/// a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupControl {
    /// `group_key` (kind 4: the device now holds this epoch), `handed_over_group_key` (kind 9: the
    /// same, from a new admin), `group_removed` (kind 5: the device left the group),
    /// `group_leave` (kind 7: a member leaves a group the device administers) or
    /// `group_handover` (kind 8: the device takes the admin role and will issue `epoch`).
    pub kind: String,
    /// The group id (16 bytes).
    pub group: Hex,
    /// The epoch of the membership it carried; for a leave, the epoch it names; for a handover,
    /// the new admin's first epoch.
    pub epoch: u32,
    /// The error code the device refused the control with (GRP-4); absent when it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

fn received(inc: sotto_core::Incoming) -> Received {
    let refused = inc.events.iter().find_map(|e| match e {
        sotto_core::Event::Rejected(err) => Some(err.code().to_owned()),
        _ => None,
    });
    let (text, group) = match inc.content {
        Content::Text(t) => (Some(t), None),
        Content::GroupKey(gk) => {
            let kind = if gk.handover.is_some() {
                "handed_over_group_key"
            } else {
                "group_key"
            };
            let m = &gk.membership;
            (None, Some(control(kind, m.group(), m.epoch(), refused)))
        }
        Content::GroupRemoved(m) => (
            None,
            Some(control("group_removed", m.group(), m.epoch(), refused)),
        ),
        Content::GroupLeave(l) => (
            None,
            Some(control("group_leave", &l.group, l.epoch, refused)),
        ),
        Content::GroupHandover(h) => (
            None,
            Some(control("group_handover", &h.group, h.epoch, refused)),
        ),
        other => (Some(format!("{other:?}")), None),
    };
    Received {
        from: Hex::of(inc.from.0),
        id: Hex::of(inc.id.0),
        sent_at: inc.sent_at,
        text,
        group,
    }
}

fn control(kind: &str, group: &GroupId, epoch: u32, refused: Option<String>) -> GroupControl {
    GroupControl {
        kind: kind.to_owned(),
        group: Hex::of(group.0),
        epoch,
        refused,
    }
}

/// What the device did with a leave step: it left `left`, and sent the leave to `to` (the admin;
/// empty for an admin alone in its group, which just deletes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Left {
    /// The group left.
    pub left: Hex,
    /// The user ids the leave was sealed to.
    pub to: Vec<Hex>,
}

/// The outcome of a step: what a delivery opened to, or what a leave did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    /// A delivery opened.
    Received(Received),
    /// The device left a group (GRP-11).
    Left(Left),
}

/// One step of the receiving device, in order, with what must happen: an envelope handed to it, or
/// (`leave`) the person leaving a group (GRP-11; the leave message it seals draws the device's
/// randomness and is not pinned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Why this delivery is in the case.
    pub note: String,
    /// The envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Hex>,
    /// Instead of an envelope: the group the device leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leave: Option<Hex>,
    /// The outcome.
    pub expect: Expect<Outcome>,
}

/// A step as the generator builds it.
pub(crate) enum Step {
    /// Hand the envelope to the device.
    Receive(Vec<u8>),
    /// The device leaves the group.
    Leave(GroupId),
}

impl From<Vec<u8>> for Step {
    fn from(envelope: Vec<u8>) -> Self {
        Step::Receive(envelope)
    }
}

/// Runs one step on `device`.
fn step(device: &mut Device, now: u64, step: &Step) -> Expect<Outcome> {
    match step {
        Step::Receive(env) => Expect::from_result(device.receive(now, env), |inc| {
            Outcome::Received(received(inc))
        }),
        Step::Leave(gid) => {
            // The leave's own randomness (B's next epoch) is not pinned: any generator will do.
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([0; 32]);
            Expect::from_result(device.leave_group(&mut rng, now, gid), |out| {
                Outcome::Left(Left {
                    left: Hex::of(gid.0),
                    to: out
                        .map(|o| o.to.iter().map(|u| Hex::of(u.0)).collect())
                        .unwrap_or_default(),
                })
            })
        }
    }
}

/// The operations of `first-message.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A's first message to B, then deliveries to B's device.
    FirstMessage {
        alice: PartyKeys,
        bob: PartyKeys,
        ek: Hex,
        /// A's epoch-0 ratchet private key `E_A0` (X3DH-7).
        e0: Hex,
        keyshare: Fields,
        now: u64,
        text: String,
        envelope: Hex,
        /// B's server-corrected time when the deliveries happen.
        received_at: u64,
        deliveries: Vec<Delivery>,
    },
}

/// The `first-message` area.
pub struct First;

/// A's session and first envelope from explicit inputs.
pub(crate) fn first_message(
    alice: &PartyKeys,
    bob: &PartyKeys,
    ek: &Hex,
    e0: &Hex,
    keyshare: &Fields,
    now: u64,
    text: &str,
) -> Result<(Session, Vec<u8>), String> {
    let mut s = Session::initiate_with(
        &alice.user_id()?,
        &alice.identity()?,
        &bob.bundle()?,
        DhSecret::from_bytes(ek.arr()?),
        DhSecret::from_bytes(e0.arr()?),
        keyshare.share()?,
    )
    .map_err(|e| core_err("initiate", e))?;
    let sealed = s
        .seal_with(now, &Content::Text(text.to_owned()), 0, None)
        .map_err(|e| core_err("seal", e))?;
    Ok((s, sealed.bytes))
}

/// Hands each envelope to `device` in order and compares.
pub(crate) fn deliver(
    device: &mut Device,
    now: u64,
    deliveries: &[Delivery],
) -> Result<(), String> {
    for (i, d) in deliveries.iter().enumerate() {
        let s = match (&d.envelope, &d.leave) {
            (Some(env), None) => Step::Receive(env.0.clone()),
            (None, Some(gid)) => Step::Leave(GroupId(gid.arr()?)),
            _ => {
                return Err(format!(
                    "delivery {i} ({}): schema: exactly one of envelope and leave",
                    d.note
                ));
            }
        };
        check(step(device, now, &s), &d.expect)
            .map_err(|e| format!("delivery {i} ({}): {e}", d.note))?;
    }
    Ok(())
}

/// Fills in the expected outcomes by running the deliveries.
pub(crate) fn expect_all(
    device: &mut Device,
    now: u64,
    envs: Vec<(&str, Vec<u8>)>,
) -> Vec<Delivery> {
    expect_steps(
        device,
        now,
        envs.into_iter()
            .map(|(n, e)| (n, Step::Receive(e)))
            .collect(),
    )
}

/// [`expect_all`] with leave steps.
pub(crate) fn expect_steps(
    device: &mut Device,
    now: u64,
    steps: Vec<(&str, Step)>,
) -> Vec<Delivery> {
    steps
        .into_iter()
        .map(|(note, s)| {
            let expect = step(device, now, &s);
            let (envelope, leave) = match s {
                Step::Receive(env) => (Some(Hex(env)), None),
                Step::Leave(gid) => (None, Some(Hex::of(gid.0))),
            };
            Delivery {
                note: note.to_owned(),
                envelope,
                leave,
                expect,
            }
        })
        .collect()
}

pub(crate) fn random_fields(r: &mut rand_chacha::ChaCha20Rng, t0: u64) -> Fields {
    Fields {
        mk: Hex::of(bytes::<32>(r)),
        s1: Hex::of(bytes::<16>(r)),
        s2: Hex::of(bytes::<16>(r)),
        s3: Hex::of(bytes::<16>(r)),
        s4: Hex::of(bytes::<16>(r)),
        t0,
    }
}

const NOW: u64 = 1_767_225_600_000;

/// Seals a further message on A's session (epoch 0, before any reply: EPOCH-3).
/// A's first message to B, sent at `NOW + 2500` and delivered from `NOW + 60_000`, with what B's
/// deliveries show: the shape of every first-message case.
fn first_op(
    (alice, bob): (&PartyKeys, &PartyKeys),
    (ek, e0, keyshare): (&Hex, &Hex, &Fields),
    text: &str,
    env: &[u8],
    deliveries: Vec<Delivery>,
) -> Op {
    Op::FirstMessage {
        alice: alice.clone(),
        bob: bob.clone(),
        ek: ek.clone(),
        e0: e0.clone(),
        keyshare: keyshare.clone(),
        now: NOW + 2500,
        text: text.to_owned(),
        envelope: Hex(env.to_vec()),
        received_at: NOW + 60_000,
        deliveries,
    }
}

fn follow(session: &mut Session, at: u64, content: &Content) -> Result<Vec<u8>, String> {
    session
        .seal_with(at, content, 0, None)
        .map(|s| s.bytes)
        .map_err(|e| core_err("seal", e))
}

/// A group key (inner kind 4) for `members` (the signer first), signed by `admin`.
fn group_key(
    admin: &PartyKeys,
    gid: GroupId,
    epoch: u32,
    members: &[&PartyKeys],
    keys: &Fields,
) -> Result<Content, String> {
    Ok(Content::GroupKey(Box::new(GroupKey {
        membership: membership(admin, gid, epoch, members)?,
        keys: keys.share()?,
        handover: None,
    })))
}

/// A removal notice (inner kind 5) for the membership `members`, signed by `admin`.
fn removal(
    admin: &PartyKeys,
    gid: GroupId,
    epoch: u32,
    members: &[&PartyKeys],
) -> Result<Content, String> {
    Ok(Content::GroupRemoved(Box::new(membership(
        admin, gid, epoch, members,
    )?)))
}

fn membership(
    admin: &PartyKeys,
    gid: GroupId,
    epoch: u32,
    members: &[&PartyKeys],
) -> Result<Membership, String> {
    let list = members
        .iter()
        .map(|p| {
            Ok(Member {
                user: p.user_id()?,
                iks: *p.identity()?.public().iks(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Membership::sign(&admin.identity()?, gid, epoch, list).map_err(|e| core_err("membership", e))
}

/// The first message with its identity box resealed around an identity whose `sig_ikd` does not
/// verify (X3DH-6: only the signature is wrong, the box opens).
fn forge_sig_ikd(bob: &PartyKeys, env: &[u8]) -> Result<Vec<u8>, String> {
    use sotto_core::crypto::{DhPublic, open, seal};
    const BOX: std::ops::Range<usize> = 41..41 + 186;
    let ek = DhPublic(
        env.get(1..33)
            .ok_or("short")?
            .try_into()
            .map_err(|_| "short")?,
    );
    let (_, key) = sotto_core::x3dh::responder_identity_key(&bob.identity()?, &ek)
        .map_err(|e| core_err("identity key", e))?;
    let ad = env.get(..41).ok_or("short")?;
    let mut plain = open(&key, &[0; 12], ad, env.get(BOX).ok_or("short")?)
        .map_err(|e| core_err("identity box", e))?;
    // user (10) || identity (128: IKs 32, IKd 32, sig_ikd 64) || E_A0: a byte of R in sig_ikd.
    plain[10 + 64 + 6] ^= 0x01;
    let mut forged = env.to_vec();
    forged[BOX].copy_from_slice(&seal(&key, &[0; 12], ad, &plain));
    Ok(forged)
}

/// Cases whose refusal needs state built by earlier deliveries on the same device: a known contact
/// (RX-9), the sessions a peer has (LIM-13, X3DH-8), the groups the device holds (GRP-3, GRP-4,
/// GRP-6), and refusals inside a real first message (X3DH-6, RX-3). Each is one first message from
/// A and what follows over its session; every refused delivery is refused for the named reason only.
fn after_setup(r: &mut rand_chacha::ChaCha20Rng) -> Result<Vec<Case<Op>>, String> {
    let alice = PartyKeys::random(r, 1, false);
    let bob = PartyKeys::random(r, 2, false);
    let carol = PartyKeys::random(r, 3, false);
    // Alice's keys again under another identity (a server that swaps a contact's keys).
    let mallory = PartyKeys {
        user: alice.user.clone(),
        ..PartyKeys::random(r, 1, false)
    };
    let ek = Hex::of(bytes::<32>(r));
    let e0 = Hex::of(bytes::<32>(r));
    let keyshare = random_fields(r, NOW);
    let text = "hello".to_owned();
    let (mut session, env) = first_message(&alice, &bob, &ek, &e0, &keyshare, NOW + 2500, &text)?;
    let gid = GroupId(bytes::<16>(r));
    let gkeys = [
        random_fields(r, NOW),
        random_fields(r, NOW),
        random_fields(r, NOW),
    ];
    let at = |i: u64| NOW + 3000 + 1000 * i;
    let mut cases = Vec::new();
    let mut push = |name: &str, rules: &[&str], envs: Vec<(&str, Vec<u8>)>| -> Result<(), String> {
        let mut device = bob.device()?;
        let deliveries = expect_all(&mut device, NOW + 60_000, envs);
        cases.push(case(
            name,
            rules,
            first_op(
                (&alice, &bob),
                (&ek, &e0, &keyshare),
                &text,
                &env,
                deliveries,
            ),
        ));
        Ok(())
    };

    push(
        "X3DH-6 first message whose sealed identity has a forged sig_ikd",
        &["X3DH-6", "KEY-2", "RX-3", "Req5"],
        vec![
            (
                "the identity box opens, sig_ikd does not verify: bad_signature",
                forge_sig_ikd(&bob, &env)?,
            ),
            ("the genuine first message: nothing changed", env.clone()),
        ],
    )?;
    let mut payload = env.clone();
    let last = payload.len() - 20;
    payload[last] ^= 0x01;
    push(
        "RX-3 first message with a tampered payload",
        &["RX-3", "ENV-3", "X3DH-6"],
        vec![
            (
                "identity and key share open, the payload does not: decrypt_failed",
                payload,
            ),
            ("the genuine first message: nothing changed", env.clone()),
        ],
    )?;
    let (ek2, e02) = (Hex::of(bytes::<32>(r)), Hex::of(bytes::<32>(r)));
    let (_, swapped) = first_message(
        &mallory,
        &bob,
        &ek2,
        &e02,
        &keyshare,
        NOW + 2500,
        "it is me",
    )?;
    push(
        "RX-9 first message from a known user id with another identity",
        &["RX-9", "CARD-4", "RX-3", "Req5"],
        vec![
            ("A's first message: A becomes a contact", env.clone()),
            (
                "a first message under A's user id and another IKs: identity_changed",
                swapped,
            ),
        ],
    )?;

    // LIM-13: three sessions per peer are kept; a fourth drops the oldest, whose first message
    // then opens nothing (X3DH-8).
    let mut more = Vec::new();
    for i in 0..3u8 {
        let ek = Hex::of(bytes::<32>(r));
        let e0 = Hex::of(bytes::<32>(r));
        let ks = random_fields(r, NOW);
        more.push(first_message(&alice, &bob, &ek, &e0, &ks, at(u64::from(i)), "again")?.1);
    }
    push(
        "X3DH-8 LIM-13 a replayed first message whose session was dropped",
        &["X3DH-8", "LIM-13", "RX-2"],
        vec![
            ("A's first message: session 1", env.clone()),
            ("A starts again: session 2", more[0].clone()),
            ("and again: session 3, at the bound", more[1].clone()),
            (
                "the first message again: its session is kept, a duplicate",
                env.clone(),
            ),
            ("a fourth session: the oldest is dropped", more[2].clone()),
            (
                "the first message again: its session is gone: replayed_first_message",
                env.clone(),
            ),
        ],
    )?;

    let key1 = group_key(&alice, gid, 1, &[&alice, &bob, &carol], &gkeys[0])?;
    push(
        "GRP-3 GRP-6 a group key and a removal notice over the session",
        &["GRP-3", "GRP-4", "GRP-6", "IN-3"],
        vec![
            ("A's first message", env.clone()),
            (
                "group key, epoch 1, from its admin A, listing B",
                follow(&mut session, at(0), &key1)?,
            ),
            (
                "the same epoch again: stale_group_epoch",
                follow(&mut session, at(1), &key1)?,
            ),
            (
                "removal notice, epoch 2, without B: B leaves",
                follow(
                    &mut session,
                    at(2),
                    &removal(&alice, gid, 2, &[&alice, &carol])?,
                )?,
            ),
            (
                "a group key of epoch 2 after the removal: stale_group_epoch",
                follow(
                    &mut session,
                    at(3),
                    &group_key(&alice, gid, 2, &[&alice, &bob], &gkeys[1])?,
                )?,
            ),
        ],
    )?;
    push(
        "GRP-4 a group key whose membership someone else signed",
        &["GRP-4", "IN-3"],
        vec![
            ("A's first message", env.clone()),
            (
                "C's group, listing B, sent by A: not_group_admin",
                follow(
                    &mut session,
                    at(4),
                    &group_key(&carol, gid, 1, &[&carol, &bob], &gkeys[0])?,
                )?,
            ),
            ("A's group, listing B", follow(&mut session, at(5), &key1)?),
            (
                "a removal notice for A's group signed by C, sent by A: not_group_admin",
                follow(&mut session, at(6), &removal(&carol, gid, 2, &[&carol])?)?,
            ),
        ],
    )?;
    push(
        "GRP-4 a group key that does not list the receiver",
        &["GRP-4", "IN-3"],
        vec![
            ("A's first message", env.clone()),
            (
                "A's group without B: not_a_member",
                follow(
                    &mut session,
                    at(7),
                    &group_key(&alice, gid, 1, &[&alice, &carol], &gkeys[2])?,
                )?,
            ),
        ],
    )?;
    push(
        "GRP-6 a removal notice that still lists the receiver",
        &["GRP-6", "GRP-4", "IN-3"],
        vec![
            ("A's first message", env.clone()),
            ("A's group, epoch 1", follow(&mut session, at(8), &key1)?),
            (
                "removal notice, epoch 2, listing B: not_a_member",
                follow(
                    &mut session,
                    at(9),
                    &removal(&alice, gid, 2, &[&alice, &bob])?,
                )?,
            ),
        ],
    )?;
    // LIM-18: a device holds at most 256 groups; the 257th group key is refused.
    let mut envs = vec![("A's first message", env.clone())];
    for i in 0..=MAX_GROUPS as u64 {
        let gid = GroupId(bytes::<16>(r));
        envs.push((
            if i < MAX_GROUPS as u64 {
                "a group key for another group of A's, listing B"
            } else {
                "one group more than LIM-18: limit_reached"
            },
            follow(
                &mut session,
                at(10 + i),
                &group_key(&alice, gid, 1, &[&alice, &bob], &gkeys[0])?,
            )?,
        ));
    }
    push(
        "LIM-18 groups per device: 256 held, the 257th refused",
        &["LIM-18", "GRP-3", "IN-3"],
        envs,
    )?;
    Ok(cases)
}

/// Leaving a group (GRP-11) and handing its admin role over (GRP-12), at B's device: A (the admin)
/// and C are members with B, each with a session to B (a first message, then what it sends over
/// it). Each case starts from A's first message and A's group key of epoch 1 (A, B, C). Drawn after
/// every other input of the file.
fn leave_and_handover(r: &mut rand_chacha::ChaCha20Rng) -> Result<Vec<Case<Op>>, String> {
    let alice = PartyKeys::random(r, 1, false);
    let bob = PartyKeys::random(r, 2, false);
    let carol = PartyKeys::random(r, 3, false);
    let ek = Hex::of(bytes::<32>(r));
    let e0 = Hex::of(bytes::<32>(r));
    let keyshare = random_fields(r, NOW);
    let text = "hello".to_owned();
    let (mut a_session, env) = first_message(&alice, &bob, &ek, &e0, &keyshare, NOW + 2500, &text)?;
    let (c_ek, c_e0, c_ks) = (
        Hex::of(bytes::<32>(r)),
        Hex::of(bytes::<32>(r)),
        random_fields(r, NOW),
    );
    let (mut c_session, c_env) = first_message(
        &carol,
        &bob,
        &c_ek,
        &c_e0,
        &c_ks,
        NOW + 2600,
        "hello from C",
    )?;
    let gid = GroupId(bytes::<16>(r));
    let other_gid = GroupId(bytes::<16>(r));
    let gkeys: Vec<Fields> = (0..5).map(|_| random_fields(r, NOW)).collect();
    let member = |p: &PartyKeys| -> Result<Member, String> {
        Ok(Member {
            user: p.user_id()?,
            iks: *p.identity()?.public().iks(),
        })
    };
    let (b, c) = (member(&bob)?, member(&carol)?);
    let hand =
        |from: &PartyKeys, gid: GroupId, epoch: u32, to: &Member| -> Result<Handover, String> {
            Ok(Handover::sign(&from.identity()?, gid, epoch, to))
        };
    // A group key (kind 9) with the handover by which its admin took the role.
    let handed = |admin: &PartyKeys,
                  gid: GroupId,
                  epoch: u32,
                  members: &[&PartyKeys],
                  keys: &Fields,
                  h: Handover|
     -> Result<Content, String> {
        Ok(Content::GroupKey(Box::new(GroupKey {
            membership: membership(admin, gid, epoch, members)?,
            keys: keys.share()?,
            handover: Some(h),
        })))
    };
    let key1 = group_key(&alice, gid, 1, &[&alice, &bob, &carol], &gkeys[0])?;
    let clock = std::cell::Cell::new(NOW + 3000);
    let at = || {
        clock.set(clock.get() + 1000);
        clock.get()
    };
    let mut a = |c: &Content| -> Result<Step, String> {
        Ok(Step::Receive(follow(&mut a_session, at(), c)?))
    };
    let mut cases = Vec::new();
    let mut push = |name: &str, rules: &[&str], steps: Vec<(&str, Step)>| -> Result<(), String> {
        let mut device = bob.device()?;
        let deliveries = expect_steps(&mut device, NOW + 60_000, steps);
        cases.push(case(
            name,
            rules,
            first_op(
                (&alice, &bob),
                (&ek, &e0, &keyshare),
                &text,
                &env,
                deliveries,
            ),
        ));
        Ok(())
    };
    let first = || ("A's first message", Step::Receive(env.clone()));
    let c_first = || {
        (
            "C's first message: C becomes a contact",
            Step::Receive(c_env.clone()),
        )
    };

    push(
        "GRP-12 GRP-11 the admin hands the group over to B, who cannot leave it then",
        &["GRP-12", "GRP-11", "GRP-1", "IN-3"],
        vec![
            first(),
            ("A's group key, epoch 1: A, B, C", a(&key1)?),
            (
                "A hands the group over to B from epoch 2: accepted, B will issue epoch 2",
                a(&Content::GroupHandover(hand(&alice, gid, 2, &b)?))?,
            ),
            (
                "GRP-11 B, the group's admin to be, leaves: admin_must_hand_over",
                Step::Leave(gid),
            ),
        ],
    )?;

    let mut bad_sig = hand(&alice, gid, 2, &b)?;
    bad_sig.sig[10] ^= 0x01;
    let b_with_cs_key = Member {
        user: b.user,
        iks: c.iks,
    };
    let c_forges = Content::GroupHandover(hand(&carol, gid, 2, &b)?);
    push(
        "GRP-12 handovers B refuses",
        &["GRP-12", "GRP-4", "IN-3"],
        vec![
            first(),
            ("A's group key, epoch 1: A, B, C", a(&key1)?),
            c_first(),
            (
                "GRP-12 a handover to B signed by C, sent by C, a member but not the admin: not_group_admin",
                Step::Receive(follow(&mut c_session, at(), &c_forges)?),
            ),
            (
                "GRP-12 A's handover for epoch 1, the epoch B holds, not the next: stale_group_epoch",
                a(&Content::GroupHandover(hand(&alice, gid, 1, &b)?))?,
            ),
            (
                "GRP-12 A's handover naming C, sent to B: not_a_member",
                a(&Content::GroupHandover(hand(&alice, gid, 2, &c)?))?,
            ),
            (
                "GRP-12 A's handover to B with a flipped signature bit: bad_signature",
                a(&Content::GroupHandover(bad_sig))?,
            ),
            (
                "GRP-12 A's handover signed over B's user id with C's IKs: bad_signature",
                a(&Content::GroupHandover(hand(
                    &alice,
                    gid,
                    2,
                    &b_with_cs_key,
                )?))?,
            ),
            (
                "A's handover to B for epoch 2: accepted, the refusals changed nothing",
                a(&Content::GroupHandover(hand(&alice, gid, 2, &b)?))?,
            ),
        ],
    )?;

    // The role goes from A to C (epoch 2), then back to A (epoch 3).
    let a_to_c = hand(&alice, gid, 2, &c)?;
    let mut a_to_c_forged = a_to_c;
    a_to_c_forged.sig[3] ^= 0x01;
    let c_to_a = hand(&carol, gid, 3, &member(&alice)?)?;
    let cba = [&carol, &bob, &alice];
    let abc = [&alice, &bob, &carol];
    let mut c_sends = Vec::new();
    for content in [
        group_key(&carol, gid, 2, &cba, &gkeys[1])?,
        handed(&carol, gid, 2, &cba, &gkeys[1], a_to_c_forged)?,
        handed(&carol, gid, 2, &cba, &gkeys[1], hand(&alice, gid, 2, &b)?)?,
        handed(&carol, gid, 2, &cba, &gkeys[1], hand(&alice, gid, 3, &c)?)?,
        handed(&carol, gid, 2, &cba, &gkeys[1], a_to_c)?,
    ] {
        c_sends.push(Step::Receive(follow(&mut c_session, at(), &content)?));
    }
    let a_after = a(&group_key(&alice, gid, 3, &abc, &gkeys[2])?)?;
    let a_back = a(&handed(&alice, gid, 3, &abc, &gkeys[2], c_to_a)?)?;
    let replayed = follow(
        &mut c_session,
        at(),
        &handed(&carol, gid, 4, &cba, &gkeys[3], a_to_c)?,
    )?;
    let unknown = follow(
        &mut c_session,
        at(),
        &handed(
            &carol,
            other_gid,
            1,
            &[&carol, &bob],
            &gkeys[4],
            hand(&alice, other_gid, 1, &c)?,
        )?,
    )?;
    let mut c_sends = c_sends.into_iter();
    let mut next_c = || c_sends.next().ok_or("generator: a step is missing");
    push(
        "GRP-12 handed-over group keys (kind 9) from a new admin",
        &["GRP-12", "GRP-4", "IN-3"],
        vec![
            first(),
            ("A's group key, epoch 1: A, B, C", a(&key1)?),
            c_first(),
            (
                "GRP-4 C's group key of epoch 2 (C, B, A) without a handover: not_group_admin",
                next_c()?,
            ),
            (
                "GRP-12 C's key of epoch 2 whose handover from A has a flipped signature bit: bad_signature",
                next_c()?,
            ),
            (
                "GRP-12 C's key of epoch 2 with A's handover to B, not to C: not_group_admin",
                next_c()?,
            ),
            (
                "GRP-12 C's key of epoch 2 with A's handover to C from epoch 3, above the key's: not_group_admin",
                next_c()?,
            ),
            (
                "C's key of epoch 2 with A's handover to C from epoch 2: accepted, C is the admin",
                next_c()?,
            ),
            (
                "GRP-12 A's own group key of epoch 3 after the handover: not_group_admin",
                a_after,
            ),
            (
                "A's key of epoch 3 (A, B, C) with C's handover back to A: accepted",
                a_back,
            ),
            (
                "GRP-12 C's key of epoch 4 with A's old handover to C, replayed after the role moved on: not_group_admin",
                Step::Receive(replayed),
            ),
            (
                "C's handed-over key of a group B does not hold: taken as a group key (GRP-4)",
                Step::Receive(unknown),
            ),
        ],
    )?;

    push(
        "GRP-11 after leaving, B refuses the group's keys until the removal notice",
        &["GRP-11", "GRP-6", "GRP-4", "IN-3"],
        vec![
            first(),
            ("A's group key, epoch 1: A, B, C", a(&key1)?),
            (
                "B leaves: the leave goes to A, B deletes the group's keys",
                Step::Leave(gid),
            ),
            (
                "GRP-11 A's key of epoch 2 (A, B, C), sent before A learned of the leave: stale_group_epoch",
                a(&group_key(&alice, gid, 2, &abc, &gkeys[1])?)?,
            ),
            (
                "A's removal notice of epoch 3 (A, C): B is out",
                a(&removal(&alice, gid, 3, &[&alice, &carol])?)?,
            ),
            (
                "A's key of epoch 4 (A, B, C), a new invitation after the notice: accepted (GRP-6)",
                a(&group_key(&alice, gid, 4, &abc, &gkeys[3])?)?,
            ),
        ],
    )?;

    let c_leaves = |gid: GroupId| {
        Content::GroupLeave(Leave {
            group: gid,
            epoch: 1,
        })
    };
    let leave = follow(&mut c_session, at(), &c_leaves(gid))?;
    let leave_other = follow(&mut c_session, at(), &c_leaves(other_gid))?;
    push(
        "GRP-11 a leave sent to a member that does not administer the group",
        &["GRP-11", "IN-3"],
        vec![
            first(),
            ("A's group key, epoch 1: A, B, C", a(&key1)?),
            c_first(),
            (
                "GRP-11 C leaves A's group, over its session with B: not_group_admin",
                Step::Receive(leave),
            ),
            (
                "C leaves a group B does not hold: nothing to do",
                Step::Receive(leave_other),
            ),
        ],
    )?;
    Ok(cases)
}

impl Area for First {
    const NAME: &'static str = "first-message";
    const DESCRIPTION: &'static str = "A first message (ENV-3) from explicit keys, ephemeral key and key share, and the responder device's outcome for it and for tampered, replayed and misaddressed copies.";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let mut cases = Vec::new();
        for with_opk in [false, true] {
            let alice = PartyKeys::random(&mut r, 1, false);
            let bob = PartyKeys::random(&mut r, 2, with_opk);
            let ek = Hex::of(bytes::<32>(&mut r));
            let e0 = Hex::of(bytes::<32>(&mut r));
            let keyshare = random_fields(&mut r, NOW);
            let text = "hello".to_owned();
            let Ok((mut session, env)) =
                first_message(&alice, &bob, &ek, &e0, &keyshare, NOW + 2500, &text)
            else {
                continue;
            };
            let second = session
                .seal_with(NOW + 3000, &Content::Text("second".into()), 0, None)
                .map(|s| s.bytes)
                .unwrap_or_default();
            let Ok(mut device) = bob.device() else {
                continue;
            };
            let mut envs: Vec<(&str, Vec<u8>)> = Vec::new();
            let mut tampered = env.clone();
            tampered[41 + 186 + 10] ^= 0x01;
            envs.push((
                "KS-4 RX-3 key-share box tampered: decrypt_failed, nothing changes",
                tampered,
            ));
            let mut unknown_spk = env.clone();
            unknown_spk[36] ^= 0x02;
            envs.push(("X3DH-6 signed prekey id unknown", unknown_spk));
            if with_opk {
                let mut unknown_opk = env.clone();
                unknown_opk[40] ^= 0x01;
                envs.push(("X3DH-6 X3DH-9 one-time prekey id unknown", unknown_opk));
            }
            envs.push(("truncated", env[..env.len() - 17].to_vec()));
            envs.push((
                "the second message first: it repeats the header (EPOCH-3) and sets the session up",
                second,
            ));
            envs.push(("the first message, from the key kept for it", env.clone()));
            envs.push((
                "the same first message again (resend or replay): duplicate",
                env.clone(),
            ));
            if with_opk {
                // Another session that reuses the same one-time prekey (a cheating directory).
                let ek2 = Hex::of(bytes::<32>(&mut r));
                let e02 = Hex::of(bytes::<32>(&mut r));
                let ks2 = random_fields(&mut r, NOW);
                if let Ok((_, env2)) = first_message(&alice, &bob, &ek2, &e02, &ks2, NOW, "again") {
                    envs.push(("X3DH-9 a second session on a used one-time prekey", env2));
                }
            }
            let deliveries = expect_all(&mut device, NOW + 60_000, envs);
            cases.push(case(
                if with_opk {
                    "X3DH-6 first message with a one-time prekey"
                } else {
                    "X3DH-6 first message from a scanned card"
                },
                &[
                    "ENV-3", "X3DH-3", "X3DH-4", "X3DH-6", "X3DH-7", "X3DH-8", "X3DH-9", "EPOCH-3",
                    "RX-2", "RX-3", "Req4",
                ],
                first_op(
                    (&alice, &bob),
                    (&ek, &e0, &keyshare),
                    &text,
                    &env,
                    deliveries,
                ),
            ));
        }
        cases.extend(after_setup(&mut r).unwrap_or_default());
        cases.extend(leave_and_handover(&mut r).unwrap_or_default());
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        let Op::FirstMessage {
            alice,
            bob,
            ek,
            e0,
            keyshare,
            now,
            text,
            envelope,
            received_at,
            deliveries,
        } = op;
        let (_, env) = first_message(alice, bob, ek, e0, keyshare, *now, text)?;
        same("envelope", &env, envelope)?;
        let mut device = bob.device()?;
        deliver(&mut device, *received_at, deliveries)
    }
}
