//! `first-message.json`: a whole first message (ENV-3) from explicit keys and randomness, and what the
//! responder's device makes of it and of tampered, replayed and misaddressed copies (X3DH-6..X3DH-9).

use serde::{Deserialize, Serialize};
use sotto_core::crypto::DhSecret;
use sotto_core::group::membership::{Member, Membership};
use sotto_core::inner::GroupKey;
use sotto_core::limits::MAX_GROUPS;
use sotto_core::session::Session;
use sotto_core::{Content, Device, GroupId};

use super::keyshare::Fields;
use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, core_err, same, seeded};

/// What a device reports for a received message: a text, or a group control (IN-3 kinds 4, 5).
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
    /// A group key (kind 4) or a removal notice (kind 5), applied or refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupControl>,
}

/// A group control received over a pairwise session (GRP-3, GRP-4, GRP-6). The message itself
/// opens and is committed either way (RX-4); the control is applied, or refused with a code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupControl {
    /// `group_key` (kind 4: the device now holds this epoch) or `group_removed` (kind 5: the device
    /// left the group).
    pub kind: String,
    /// The group id (16 bytes).
    pub group: Hex,
    /// The epoch of the membership it carried.
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
        Content::GroupKey(gk) => (None, Some(control("group_key", &gk.membership, refused))),
        Content::GroupRemoved(m) => (None, Some(control("group_removed", &m, refused))),
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

fn control(kind: &str, m: &Membership, refused: Option<String>) -> GroupControl {
    GroupControl {
        kind: kind.to_owned(),
        group: Hex::of(m.group().0),
        epoch: m.epoch(),
        refused,
    }
}

/// One envelope handed to the receiving device, in order, with what must happen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Why this delivery is in the case.
    pub note: String,
    /// The envelope.
    pub envelope: Hex,
    /// The outcome.
    pub expect: Expect<Received>,
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
        let got = Expect::from_result(device.receive(now, &d.envelope.0), received);
        check(got, &d.expect).map_err(|e| format!("delivery {i} ({}): {e}", d.note))?;
    }
    Ok(())
}

/// Fills in the expected outcomes by running the deliveries.
pub(crate) fn expect_all(
    device: &mut Device,
    now: u64,
    envs: Vec<(&str, Vec<u8>)>,
) -> Vec<Delivery> {
    envs.into_iter()
        .map(|(note, env)| {
            let expect = Expect::from_result(device.receive(now, &env), received);
            Delivery {
                note: note.to_owned(),
                envelope: Hex(env),
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
            Op::FirstMessage {
                alice: alice.clone(),
                bob: bob.clone(),
                ek: ek.clone(),
                e0: e0.clone(),
                keyshare: keyshare.clone(),
                now: NOW + 2500,
                text: text.clone(),
                envelope: Hex(env.clone()),
                received_at: NOW + 60_000,
                deliveries,
            },
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
                Op::FirstMessage {
                    alice,
                    bob,
                    ek,
                    e0,
                    keyshare,
                    now: NOW + 2500,
                    text,
                    envelope: Hex(env),
                    received_at: NOW + 60_000,
                    deliveries,
                },
            ));
        }
        cases.extend(after_setup(&mut r).unwrap_or_default());
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
