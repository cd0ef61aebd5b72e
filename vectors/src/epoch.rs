//! `epoch.json`: the responder's first reply, which starts epoch 1 (EPOCH-2..EPOCH-5, ENV-4): root
//! step, fresh key share, key confirmation, the header repeated until acknowledged, the plain data
//! message after the acknowledgement; and what the initiator makes of them and of forged copies.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sotto_core::crypto::{DhPublic, DhSecret, Secret};
use sotto_core::envelope::{Envelope, Header};
use sotto_core::kdf;
use sotto_core::session::Session;
use sotto_core::{Content, Device};

use super::first::{Delivery, deliver, expect_all, first_message, random_fields};
use super::keyshare::Fields;
use super::{Area, Case, Hex, PartyKeys, bytes, case, core_err, same, seeded};

/// Everything both parties draw or are given.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Script {
    /// The initiator.
    pub alice: PartyKeys,
    /// The responder.
    pub bob: PartyKeys,
    /// A's `EK_A`.
    pub ek: Hex,
    /// A's epoch-0 ratchet key `E_A0`.
    pub e0: Hex,
    /// A's epoch-0 key share.
    pub keyshare: Fields,
    /// When A sends its first message.
    pub now: u64,
    /// A's first text.
    pub text: String,
    /// B's epoch-1 ratchet key `E_B1`.
    pub e: Hex,
    /// B's epoch-1 key share.
    pub reply_keyshare: Fields,
    /// When B replies.
    pub reply_at: u64,
    /// B's reply.
    pub reply_text: String,
}

/// The operations of `epoch.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A sends its first message (as in first-message.json); B replies, starting epoch 1 (`reply`),
    /// and sends again before any acknowledgement (`reply2`, the same header, EPOCH-3); A's receipt
    /// for the reply (`receipt`, on A's epoch-0 chain) acknowledges epoch 1, so B's next message is a
    /// plain data message (`reply3`). Then `deliveries` go, in order, to A's device (which sent the
    /// first message) at `received_at`.
    Reply {
        script: Script,
        reply: Hex,
        reply2: Hex,
        receipt: Hex,
        reply3: Hex,
        received_at: u64,
        deliveries: Vec<Delivery>,
    },
}

/// The `epoch` area.
pub struct Epoch;

const NOW: u64 = 1_767_225_600_000;

struct Built {
    alice_device: Device,
    reply: Vec<u8>,
    reply2: Vec<u8>,
    receipt: Vec<u8>,
    reply3: Vec<u8>,
}

fn build(s: &Script) -> Result<Built, String> {
    // A's device sends the first message through its own session (as A's device would).
    let (session, first) =
        first_message(&s.alice, &s.bob, &s.ek, &s.e0, &s.keyshare, s.now, &s.text)?;
    let mut alice_device = s.alice.device()?;
    alice_device.add_contact_from_card(&sotto_core::ContactCard::new(
        s.bob.user_id()?,
        *s.bob.identity()?.public(),
        *s.bob.spk_pair()?.public(),
    ));
    alice_device
        .adopt_session(session)
        .map_err(|e| core_err("adopt", e))?;
    let env = Envelope::decode(&first).map_err(|e| core_err("decode", e))?;
    let (mut b, _) = Session::accept_first(
        s.now,
        &s.bob.identity()?,
        &s.bob.spk_pair()?,
        s.bob.opk_pair()?.as_ref(),
        &env,
    )
    .map_err(|e| core_err("accept", e))?;
    let fresh = Some((DhSecret::from_bytes(s.e.arr()?), s.reply_keyshare.share()?));
    let reply_content = Content::Text(s.reply_text.clone());
    let reply = b
        .seal_with(s.reply_at, &reply_content, 0, fresh)
        .map_err(|e| core_err("reply", e))?;
    let reply2 = b
        .seal_with(
            s.reply_at.saturating_add(1000),
            &Content::Text("and more".into()),
            0,
            None,
        )
        .map_err(|e| core_err("reply2", e))?
        .bytes;
    // A (a copy of its device) opens the reply and receipts it: a receipt rides A's epoch-0 chain
    // and draws no randomness.
    let mut a = alice_device.clone();
    let got = a
        .receive(s.reply_at, &reply.bytes)
        .map_err(|e| core_err("alice opens the reply", e))?;
    let mut no_randomness = ChaCha20Rng::from_seed([0; 32]);
    let receipt = a
        .send(
            &mut no_randomness,
            s.reply_at,
            &s.bob.user_id()?,
            &Content::Receipt(vec![got.id]),
        )
        .map_err(|e| core_err("receipt", e))?
        .envelope;
    b.open(
        s.reply_at,
        &Envelope::decode(&receipt).map_err(|e| core_err("decode", e))?,
    )
    .map_err(|e| core_err("bob opens the receipt", e))?;
    let reply3 = b
        .seal_with(
            s.reply_at.saturating_add(2000),
            &Content::Text("plain".into()),
            0,
            None,
        )
        .map_err(|e| core_err("reply3", e))?
        .bytes;
    Ok(Built {
        alice_device,
        reply: reply.bytes,
        reply2,
        receipt,
        reply3,
    })
}

// An epoch start answering A's epoch 0 with a low-order ratchet key and a correct confirmation: only
// PRIM-1 stops it.
fn low_order(reply: &[u8], a_s4: &Hex) -> Option<Vec<u8>> {
    let env = Envelope::decode(reply).ok()?;
    let Header::EpochStart {
        prev_tag,
        keyshare_box,
        pn,
        n,
        ..
    } = env.header()
    else {
        return None;
    };
    let e = DhPublic([0; 32]);
    let confirm = kdf::epoch_confirm(
        &kdf::confirm_key(&Secret::new(a_s4.arr().ok()?)),
        prev_tag,
        &e,
    );
    let mut out = Header::EpochStart {
        prev_tag: *prev_tag,
        e,
        confirm,
        keyshare_box: keyshare_box.clone(),
        pn: *pn,
        n: *n,
    }
    .encode();
    out.extend_from_slice(env.sealed());
    Some(out)
}

impl Area for Epoch {
    const NAME: &'static str = "epoch";
    const DESCRIPTION: &'static str = "The responder's first reply: an epoch start (ENV-4) with the root step, a fresh key share and the key confirmation of the initiator's key share; its header repeated until acknowledged, then plain data messages (section 10).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let script = Script {
            alice: PartyKeys::random(&mut r, 1, false),
            bob: PartyKeys::random(&mut r, 2, true),
            ek: Hex::of(bytes::<32>(&mut r)),
            e0: Hex::of(bytes::<32>(&mut r)),
            keyshare: random_fields(&mut r, NOW),
            now: NOW,
            text: "hi bob".to_owned(),
            e: Hex::of(bytes::<32>(&mut r)),
            reply_keyshare: random_fields(&mut r, NOW + 90_000),
            reply_at: NOW + 90_000,
            reply_text: "hi alice".to_owned(),
        };
        let Ok(mut b) = build(&script) else {
            return Vec::new();
        };
        let mut envs: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut bad_confirm = b.reply.clone();
        bad_confirm[1 + 8 + 32 + 3] ^= 0x01;
        envs.push((
            "EPOCH-4 confirmation altered: key_confirmation_failed",
            bad_confirm,
        ));
        let mut bad_box = b.reply.clone();
        bad_box[1 + 8 + 32 + 16 + 5] ^= 0x01;
        envs.push(("KS-4 key-share box altered: decrypt_failed", bad_box));
        if let Some(low) = low_order(&b.reply, &script.keyshare.s4) {
            envs.push((
                "low-order ratchet key with a valid confirmation: non_contributory_dh",
                low,
            ));
        }
        let mut unknown = b.reply.clone();
        unknown[1] ^= 0x01;
        envs.push((
            "RX-8 answers an epoch A does not know: unknown_routing_tag",
            unknown,
        ));
        envs.push((
            "RX-8 B's data message of epoch 1 before A has the epoch: retryable",
            b.reply3.clone(),
        ));
        envs.push((
            "B's second message first: it repeats the epoch header (EPOCH-3) and opens",
            b.reply2.clone(),
        ));
        envs.push(("the epoch start, from the key kept for it", b.reply.clone()));
        envs.push(("again: duplicate", b.reply.clone()));
        envs.push(("the data message now opens", b.reply3.clone()));
        // EPOCH-5: another epoch-1 header answering the same epoch with another `E` (B forked):
        // the epoch is already held with a different ratchet key.
        let fork = build(&Script {
            e: Hex::of(bytes::<32>(&mut r)),
            ..script.clone()
        });
        if let Ok(fork) = fork {
            envs.push((
                "a second epoch 1 with another ratchet key: epoch_conflict",
                fork.reply,
            ));
        }
        let received_at = NOW + 100_000;
        let deliveries = expect_all(&mut b.alice_device, received_at, envs);
        vec![case(
            "EPOCH-5 the responder's reply starts epoch 1",
            &[
                "EPOCH-1", "EPOCH-2", "EPOCH-3", "EPOCH-4", "EPOCH-5", "ENV-2", "ENV-4", "KDF-5",
                "PRIM-1", "RX-3", "RX-5", "RX-8",
            ],
            Op::Reply {
                script,
                reply: Hex(b.reply),
                reply2: Hex(b.reply2),
                receipt: Hex(b.receipt),
                reply3: Hex(b.reply3),
                received_at,
                deliveries,
            },
        )]
    }

    fn run(op: &Op) -> Result<(), String> {
        let Op::Reply {
            script,
            reply,
            reply2,
            receipt,
            reply3,
            received_at,
            deliveries,
        } = op;
        let mut b = build(script)?;
        same("reply", &b.reply, reply)?;
        same("reply2", &b.reply2, reply2)?;
        same("receipt", &b.receipt, receipt)?;
        same("reply3", &b.reply3, reply3)?;
        deliver(&mut b.alice_device, *received_at, deliveries)
    }
}
