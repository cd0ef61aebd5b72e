//! Snapshots of every encoding from seeded devices: any change to a byte layout shows up in review
//! (`cargo insta review`). The vectors pin the same bytes for other implementers.

use sotto_core::{Content, SafetyNumber};

use crate::common::*;

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .chunks(32)
        .map(|c| c.concat())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn encodings() {
    let mut r = rng(2026);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    let mut carol = device(&mut r, 3);
    for (x, y) in [(0usize, 1usize), (0, 2), (1, 2)] {
        let cards = [
            alice.card().unwrap(),
            bob.card().unwrap(),
            carol.card().unwrap(),
        ];
        let ds: [&mut sotto_core::Device; 3] = [&mut alice, &mut bob, &mut carol];
        let [a, b, c] = ds;
        let (dx, dy) = match (x, y) {
            (0, 1) => (a, b),
            (0, 2) => (a, c),
            _ => (b, c),
        };
        dx.add_contact_from_card(&cards[y]);
        dy.add_contact_from_card(&cards[x]);
    }
    let card = alice.card().unwrap();
    insta::assert_snapshot!("card_uri", card.to_uri());
    insta::assert_snapshot!("bundle", hex(&bob.bundle(Some(1)).unwrap().to_bytes()));
    let req = alice
        .signup_request(&mut r, &[0x30; 44], 2, b"challenge", 0)
        .unwrap();
    insta::assert_snapshot!("signup_request", hex(&req.to_bytes()));
    let sn = SafetyNumber::compute(
        (alice.user_id(), alice.identity().public().iks()),
        (bob.user_id(), bob.identity().public().iks()),
    );
    insta::assert_snapshot!("safety_number", sn.to_string());
    // A first message, Bob's receipt (which starts his epoch), Alice's answer (a new epoch), Bob's
    // receipt on his chain (acknowledging it), and Alice's next text: a plain data message.
    let first = send(&mut alice, &mut r, T0, &bob, "hello");
    let got = bob.receive(T0, &first.envelope).unwrap();
    let receipt_start = bob
        .send(
            &mut r,
            T0 + 1_000,
            alice.user_id(),
            &Content::Receipt(vec![got.id]),
        )
        .unwrap();
    alice.receive(T0, &receipt_start.envelope).unwrap();
    let turn = send(&mut alice, &mut r, T0 + 20_000, &bob, "hi");
    let got = bob.receive(T0, &turn.envelope).unwrap();
    let receipt = bob
        .send(
            &mut r,
            T0 + 21_000,
            alice.user_id(),
            &Content::Receipt(vec![got.id]),
        )
        .unwrap();
    alice.receive(T0, &receipt.envelope).unwrap();
    let data = send(&mut alice, &mut r, T0 + 32_000, &bob, "hello");
    assert_eq!(
        [
            first.envelope[0],
            receipt_start.envelope[0],
            turn.envelope[0],
            receipt.envelope[0],
            data.envelope[0]
        ],
        [0x12, 0x13, 0x13, 0x11, 0x11]
    );
    insta::assert_snapshot!("first_message", hex(&first.envelope));
    insta::assert_snapshot!("receipt_starting_an_epoch", hex(&receipt_start.envelope));
    insta::assert_snapshot!("epoch_start", hex(&turn.envelope));
    insta::assert_snapshot!("receipt", hex(&receipt.envelope));
    insta::assert_snapshot!("data_message", hex(&data.envelope));
    let (gid, outs) = alice
        .create_group(&mut r, T0, &[*bob.user_id(), *carol.user_id()])
        .unwrap();
    for o in &outs {
        for d in [&mut bob, &mut carol] {
            if o.to.contains(d.user_id()) {
                d.receive(T0, &o.envelope).unwrap();
            }
        }
    }
    let g = carol
        .send_group(T0 + 30_000, &gid, &text("hello group"))
        .unwrap();
    insta::assert_snapshot!("group_message", hex(&g.envelope));
    insta::assert_snapshot!("group_key_message", hex(&outs[0].envelope));
}
