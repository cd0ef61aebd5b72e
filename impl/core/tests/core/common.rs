//! Shared set-up: seeded devices, a clock, an in-memory "broker" that can drop, duplicate and reorder.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::{Content, Device, Incoming, Outgoing, UserId};

pub const T0: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A device with a fixed user id derived from `n`, and 10 one-time prekeys.
pub fn device(rng: &mut ChaCha20Rng, n: u8) -> Device {
    let mut d = Device::new(rng, UserId([n; 10]));
    d.generate_one_time_prekeys(rng, 10).unwrap();
    d
}

/// Alice (user 1) and Bob (user 2), each holding the other's scanned card, and the rng they came from.
pub fn acquainted(seed: u64) -> (ChaCha20Rng, Device, Device) {
    let mut r = rng(seed);
    let mut alice = device(&mut r, 1);
    let mut bob = device(&mut r, 2);
    scan(&mut alice, &bob);
    scan(&mut bob, &alice);
    (r, alice, bob)
}

/// `a` scans `b`'s card in person (verified).
pub fn scan(a: &mut Device, b: &Device) {
    a.add_contact_from_card(&b.card().unwrap());
}

pub fn text(s: &str) -> Content {
    Content::Text(s.to_owned())
}

pub fn text_of(i: &Incoming) -> &str {
    match &i.content {
        Content::Text(t) => t,
        other => panic!("not a text: {other:?}"),
    }
}

pub fn send(a: &mut Device, rng: &mut ChaCha20Rng, now: u64, to: &Device, s: &str) -> Outgoing {
    a.send(rng, now, to.user_id(), &text(s)).unwrap()
}
