//! `epoch.json`: the responder's first reply, which starts epoch 1 (EPOCH-2..EPOCH-5, ENV-4): root
//! step, fresh key share, key confirmation; and what the initiator makes of it and of forged copies.

use serde::{Deserialize, Serialize};
use sotto_core::crypto::{DhPublic, DhSecret, Secret};
use sotto_core::envelope::{Envelope, Header};
use sotto_core::kdf;
use sotto_core::session::Session;
use sotto_core::{Content, Device};

use super::first::{Delivery, deliver, expect_all, first_message, random_fields};
use super::keyshare::Fields;
use super::{Area, Case, Hex, PartyKeys, bytes, case, core_err, same, seeded};

/// The operations of `epoch.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A's first message (as in first-message.json), B's reply starting epoch 1 with ratchet key `e`
    /// and key share `reply_keyshare`, then deliveries to A's device (which sent the first message).
    Reply {
        alice: PartyKeys,
        bob: PartyKeys,
        ek: Hex,
        keyshare: Fields,
        now: u64,
        text: String,
        e: Hex,
        reply_keyshare: Fields,
        reply_at: u64,
        reply_text: String,
        /// The epoch start B sends (ENV-4).
        reply: Hex,
        /// B's next message in epoch 1: a data message (ENV-2).
        reply2: Hex,
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
}

#[allow(clippy::too_many_arguments)]
fn build(
    alice: &PartyKeys,
    bob: &PartyKeys,
    ek: &Hex,
    keyshare: &Fields,
    now: u64,
    text: &str,
    e: &Hex,
    reply_keyshare: &Fields,
    reply_at: u64,
    reply_text: &str,
) -> Result<Built, String> {
    // A's device sends the first message through its own session (as A's device would).
    let (session, first) = first_message(alice, bob, ek, keyshare, now, text)?;
    let mut alice_device = alice.device()?;
    alice_device.add_contact_from_card(&sotto_core::ContactCard::new(
        bob.user_id()?,
        *bob.identity()?.public(),
        *bob.spk_pair()?.public(),
    ));
    alice_device
        .adopt_session(session)
        .map_err(|e| core_err("adopt", e))?;
    let env = Envelope::decode(&first).map_err(|e| core_err("decode", e))?;
    let (mut b, _) = Session::accept_first(
        now,
        &bob.identity()?,
        &bob.spk_pair()?,
        bob.opk_pair()?.as_ref(),
        &env,
    )
    .map_err(|e| core_err("accept", e))?;
    let reply = b
        .seal_with(
            reply_at,
            &Content::Text(reply_text.to_owned()),
            0,
            Some((DhSecret::from_bytes(e.arr()?), reply_keyshare.share()?)),
        )
        .map_err(|e| core_err("reply", e))?
        .bytes;
    let reply2 = b
        .seal_with(
            reply_at.saturating_add(1000),
            &Content::Text("and more".into()),
            0,
            None,
        )
        .map_err(|e| core_err("reply2", e))?
        .bytes;
    Ok(Built {
        alice_device,
        reply,
        reply2,
    })
}

// An epoch start answering A's epoch 0 with a low-order ratchet key and a correct confirmation: only
// PRIM-1 stops it.
fn low_order(reply: &[u8], a_s4: &Hex) -> Option<Vec<u8>> {
    let env = Envelope::decode(reply).ok()?;
    let Header::EpochStart {
        prev_tag,
        keyshare_box,
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
    let header = Header::EpochStart {
        prev_tag: *prev_tag,
        e,
        confirm,
        keyshare_box: keyshare_box.clone(),
        n: *n,
    }
    .encode();
    let mut out = header;
    out.extend_from_slice(env.sealed());
    Some(out)
}

impl Area for Epoch {
    const NAME: &'static str = "epoch";
    const DESCRIPTION: &'static str = "The responder's first reply: an epoch start (ENV-4) with the root step, a fresh key share and the key confirmation of the initiator's key share (section 10).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let alice = PartyKeys::random(&mut r, 1, false);
        let bob = PartyKeys::random(&mut r, 2, true);
        let ek = Hex::of(bytes::<32>(&mut r));
        let keyshare = random_fields(&mut r, NOW);
        let e = Hex::of(bytes::<32>(&mut r));
        let reply_keyshare = random_fields(&mut r, NOW + 90_000);
        let (text, reply_text) = ("hi bob".to_owned(), "hi alice".to_owned());
        let Ok(mut b) = build(
            &alice,
            &bob,
            &ek,
            &keyshare,
            NOW,
            &text,
            &e,
            &reply_keyshare,
            NOW + 90_000,
            &reply_text,
        ) else {
            return Vec::new();
        };
        let mut envs: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut bad_confirm = b.reply.clone();
        bad_confirm[1 + 8 + 32 + 3] ^= 0x01;
        envs.push(("confirmation altered: key_confirmation_failed", bad_confirm));
        let mut bad_box = b.reply.clone();
        bad_box[1 + 8 + 32 + 16 + 5] ^= 0x01;
        envs.push(("key-share box altered: decrypt_failed", bad_box));
        if let Some(low) = low_order(&b.reply, &keyshare.s4) {
            envs.push((
                "low-order ratchet key with a valid confirmation: non_contributory_dh",
                low,
            ));
        }
        let mut unknown = b.reply.clone();
        unknown[1] ^= 0x01;
        envs.push((
            "answers an epoch A does not know: unknown_routing_tag",
            unknown,
        ));
        envs.push((
            "data message of epoch 1 before its epoch start: retryable",
            b.reply2.clone(),
        ));
        envs.push(("the epoch start", b.reply.clone()));
        envs.push(("again: duplicate", b.reply.clone()));
        envs.push(("the data message now opens", b.reply2.clone()));
        let received_at = NOW + 100_000;
        let deliveries = expect_all(&mut b.alice_device, received_at, envs);
        vec![case(
            "EPOCH-5 the responder's reply starts epoch 1",
            &[
                "EPOCH-1", "EPOCH-2", "EPOCH-3", "EPOCH-4", "EPOCH-5", "ENV-2", "ENV-4", "KDF-5",
                "PRIM-1", "RX-3", "RX-8",
            ],
            Op::Reply {
                alice,
                bob,
                ek,
                keyshare,
                now: NOW,
                text,
                e,
                reply_keyshare,
                reply_at: NOW + 90_000,
                reply_text,
                reply: Hex(b.reply),
                reply2: Hex(b.reply2),
                received_at,
                deliveries,
            },
        )]
    }

    fn run(op: &Op) -> Result<(), String> {
        let Op::Reply {
            alice,
            bob,
            ek,
            keyshare,
            now,
            text,
            e,
            reply_keyshare,
            reply_at,
            reply_text,
            reply,
            reply2,
            received_at,
            deliveries,
        } = op;
        let mut b = build(
            alice,
            bob,
            ek,
            keyshare,
            *now,
            text,
            e,
            reply_keyshare,
            *reply_at,
            reply_text,
        )?;
        same("reply", &b.reply, reply)?;
        same("reply2", &b.reply2, reply2)?;
        deliver(&mut b.alice_device, *received_at, deliveries)
    }
}
