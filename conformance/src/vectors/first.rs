//! `first-message.json`: a whole first message (ENV-3) from explicit keys and randomness, and what the
//! responder's device makes of it and of tampered, replayed and misaddressed copies (X3DH-6..X3DH-9).

use serde::{Deserialize, Serialize};
use sotto_core::crypto::DhSecret;
use sotto_core::session::Session;
use sotto_core::{Content, Device};

use super::keyshare::Fields;
use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, core_err, same, seeded};

/// What a device reports for a received text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Sender's user id.
    pub from: Hex,
    /// Message id (ID-3).
    pub id: Hex,
    /// Sender's server-corrected send time, ms.
    pub sent_at: u64,
    /// The text.
    pub text: String,
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
        let got = Expect::from_result(device.receive(now, &d.envelope.0), |inc| Received {
            from: Hex::of(inc.from.0),
            id: Hex::of(inc.id.0),
            sent_at: inc.sent_at,
            text: match inc.content {
                Content::Text(t) => t,
                other => format!("{other:?}"),
            },
        });
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
            let expect = Expect::from_result(device.receive(now, &env), |inc| Received {
                from: Hex::of(inc.from.0),
                id: Hex::of(inc.id.0),
                sent_at: inc.sent_at,
                text: match inc.content {
                    Content::Text(t) => t,
                    other => format!("{other:?}"),
                },
            });
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
                "key-share box tampered: decrypt_failed, nothing changes",
                tampered,
            ));
            let mut unknown_spk = env.clone();
            unknown_spk[36] ^= 0x02;
            envs.push(("signed prekey id unknown", unknown_spk));
            if with_opk {
                let mut unknown_opk = env.clone();
                unknown_opk[40] ^= 0x01;
                envs.push(("one-time prekey id unknown", unknown_opk));
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
                    envs.push(("a second session on a used one-time prekey", env2));
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
