//! The size report of protocol.md section 19: envelope bytes of each message type for a 5-character
//! text (padding off), and the MQTT 3.1.1 QoS 1 PUBLISH frame that carries it to an inbox topic
//! (ID-5). Prints a markdown table for the section between `<!-- sizes:begin -->` and
//! `<!-- sizes:end -->`. It asserts nothing: the sizes are pinned by a test.
//!
//! Run with `cargo bench -p sotto-core --bench sizes`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::{Content, Device, UserId};

/// 2026-01-01T00:00:00Z, server-corrected milliseconds.
const T0: u64 = 1_767_225_600_000;
/// The envelope target of the brief for a 5-character text.
const ENVELOPE_TARGET: usize = 34;
/// The frame target of the brief for a 5-character text.
const FRAME_TARGET: usize = 60;
/// The paper's figure for a plain (unencrypted) MQTT chat message.
const PAPER_MQTT: usize = 70;
/// The paper's figure for an XMPP chat message.
const PAPER_XMPP: usize = 100;

/// Length of MQTT's variable-length "remaining length" encoding (MQTT 3.1.1, 2.2.3).
fn mqtt_varint_len(n: usize) -> usize {
    match n {
        0..128 => 1,
        128..16_384 => 2,
        16_384..2_097_152 => 3,
        _ => 4,
    }
}

/// A QoS 1 PUBLISH: fixed header byte, remaining length, topic (u16 length + bytes), packet id,
/// payload.
fn publish_frame(topic_len: usize, envelope: usize) -> usize {
    let remaining = 2 + topic_len + 2 + envelope;
    1 + mqtt_varint_len(remaining) + remaining
}

fn main() {
    let mut rng = ChaCha20Rng::seed_from_u64(19);
    let text = Content::Text("hello".into());
    let mut alice = Device::new(&mut rng, UserId([1; 10]));
    let mut bob = Device::new(&mut rng, UserId([2; 10]));
    let mut carol = Device::new(&mut rng, UserId([3; 10]));
    alice.add_contact_from_card(&bob.card().unwrap());
    alice.add_contact_from_card(&carol.card().unwrap());
    let topic_len = bob.user_id().inbox_topic().len();

    // The conversation of EPOCH-2/EPOCH-3: Alice's first message; Bob's receipt, which starts his
    // epoch; Alice's answer (a new epoch); Bob's receipt on his chain, which acknowledges it; and
    // Alice's next text, a plain data message.
    let first = alice.send(&mut rng, T0, bob.user_id(), &text).unwrap();
    let got = bob.receive(T0, &first.envelope).unwrap();
    let receipt_start = bob
        .send(
            &mut rng,
            T0,
            alice.user_id(),
            &Content::Receipt(vec![got.id]),
        )
        .unwrap();
    alice.receive(T0, &receipt_start.envelope).unwrap();
    let epoch = alice.send(&mut rng, T0, bob.user_id(), &text).unwrap();
    let got = bob.receive(T0, &epoch.envelope).unwrap();
    let receipt = bob
        .send(
            &mut rng,
            T0,
            alice.user_id(),
            &Content::Receipt(vec![got.id]),
        )
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    let data = alice.send(&mut rng, T0, bob.user_id(), &text).unwrap();
    bob.receive(T0, &data.envelope).unwrap();
    let (gid, keys) = alice
        .create_group(&mut rng, T0, &[*bob.user_id(), *carol.user_id()])
        .unwrap();
    for out in &keys {
        for to in &out.to {
            let member = if to == bob.user_id() {
                &mut bob
            } else {
                &mut carol
            };
            member.receive(T0, &out.envelope).unwrap();
        }
    }
    let group = alice.send_group(T0, &gid, &text).unwrap();

    let rows = [
        ("data message, 5-character text", &data.envelope),
        ("first message, 5-character text", &first.envelope),
        ("epoch start, 5-character text", &epoch.envelope),
        ("group message, 5-character text", &group.envelope),
        ("receipt of 1 id", &receipt.envelope),
        (
            "receipt of 1 id that starts an epoch",
            &receipt_start.envelope,
        ),
    ];
    println!("| message | type | envelope (B) | MQTT QoS 1 PUBLISH frame (B) |");
    println!("|---|---|---:|---:|");
    for (name, env) in rows {
        let ty = env.first().copied().unwrap_or_default();
        println!(
            "| {name} | `0x{ty:02x}` | {} | {} |",
            env.len(),
            publish_frame(topic_len, env.len())
        );
    }
    println!(
        "| *target: 5-character text (brief)* | `0x11` | <= {ENVELOPE_TARGET} | <= {FRAME_TARGET} |"
    );
    println!("| *plain MQTT chat message (paper)* | | | {PAPER_MQTT} |");
    println!("| *XMPP chat message (paper)* | | | {PAPER_XMPP} |");
    println!();
    println!(
        "Frame = 1 (fixed header) + remaining-length varint + 2 + {topic_len} (topic `i/<user id>`) \
         + 2 (packet id) + envelope. Padding off (IN-4); time delta below 128 s (1-byte varint)."
    );
}
