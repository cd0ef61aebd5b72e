//! Size targets (protocol.md section 19): bytes are deterministic, so they are tested, not benchmarked.

use crate::common::*;

/// MQTT 3.1.1 PUBLISH at QoS 1 to `i/<16-char user id>`: fixed header, remaining length, topic,
/// packet id, payload.
pub fn publish_frame_len(envelope: usize) -> usize {
    let remaining = 2 + 18 + 2 + envelope;
    let len_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + len_bytes + remaining
}

#[test]
fn size_targets_env_2() {
    let mut r = rng(40);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    let got = bob.receive(T0, &first.envelope).unwrap();
    // Bob's receipt acknowledges the epoch: from then on Alice's messages carry no header (EPOCH-3).
    let receipt = bob
        .send(
            &mut r,
            T0,
            alice.user_id(),
            &sotto_core::Content::Receipt(vec![got.id]),
        )
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    // Alice's next text answers Bob's epoch (EPOCH-2); Bob's receipt rides his chain and
    // acknowledges it; her text after that is a plain data message.
    let turn = send(&mut alice, &mut r, T0 + 500, &bob, "hello");
    assert_eq!(turn.envelope[0], 0x13);
    let got = bob.receive(T0, &turn.envelope).unwrap();
    let receipt = bob
        .send(
            &mut r,
            T0,
            alice.user_id(),
            &sotto_core::Content::Receipt(vec![got.id]),
        )
        .unwrap();
    assert_eq!(receipt.envelope[0], 0x11);
    assert_eq!(receipt.envelope.len(), 1 + 8 + 1 + 1 + 1 + 16 + 16);
    alice.receive(T0, &receipt.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0 + 1000, &bob, "hello");
    bob.receive(T0, &data.envelope).unwrap();
    // The brief's targets: envelope <= 34 B and frame <= 60 B for a 5-character text.
    assert_eq!(data.envelope.len(), 33);
    assert_eq!(publish_frame_len(data.envelope.len()), 57);
    assert!(data.envelope.len() <= 34);
    assert!(publish_frame_len(data.envelope.len()) <= 60);
    // A first message and an epoch start carry the key share (Req4): fixed overheads.
    assert_eq!(
        first.envelope.len(),
        1 + 32 + 4 + 4 + 186 + 120 + 1 + 7 + 16
    );
    let reply = send(&mut bob, &mut r, T0, &alice, "hello");
    assert_eq!(reply.envelope.len(), 1 + 8 + 32 + 16 + 120 + 1 + 1 + 7 + 16);
}
