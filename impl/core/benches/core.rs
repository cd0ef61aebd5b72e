//! Criterion benchmarks of sotto-core's hot paths, one message per iteration (throughput in
//! messages per second):
//!
//! - `seal_open_100B`: a 100-byte text sealed by A and opened by B on an established session, in the
//!   steady state (data messages `0x11`: A keeps sending, so no epoch turns), through [`Session`];
//!   `seal_open_100B_device` is the same through the [`Device`] engine (routing-tag index, replay and
//!   duplicate bookkeeping);
//! - `session_setup`: `Session::initiate`, the first message (`0x12`, with a one-time prekey) and
//!   `Session::accept_first`;
//! - `epoch_step`: a ping-pong conversation where every message is a reply, so it turns the epoch
//!   (`0x13`, EPOCH-2), sealed and opened;
//! - `group_message`: `Device::send_group` and one member's `Device::receive` of a 100-byte text in a
//!   3-member group (GRP-7: signed inside the encryption).
//!
//! Run with `cargo bench -p sotto-core --bench core`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::envelope::Envelope;
use sotto_core::keys::{OneTimePreKeyPair, SignedPreKeyPair};
use sotto_core::session::Session;
use sotto_core::{Content, Device, Identity, PreKeyBundle, UserId};

/// 2026-01-01T00:00:00Z, server-corrected milliseconds.
const T0: u64 = 1_767_225_600_000;

fn text_100() -> Content {
    let s: String = "The quick brown fox jumps over the lazy dog. "
        .chars()
        .cycle()
        .take(100)
        .collect();
    assert_eq!(s.len(), 100);
    Content::Text(s)
}

/// One side's long-term keys, as a responder needs them.
struct Keys {
    user: UserId,
    identity: Identity,
    spk: SignedPreKeyPair,
    opk: OneTimePreKeyPair,
}

impl Keys {
    fn new(rng: &mut ChaCha20Rng, n: u8) -> Self {
        let identity = Identity::generate(rng);
        let spk = identity.new_signed_prekey(rng, 1);
        let opk = OneTimePreKeyPair::generate(rng, 1).unwrap();
        Keys {
            user: UserId([n; 10]),
            identity,
            spk,
            opk,
        }
    }

    fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::new(
            self.user,
            *self.identity.public(),
            *self.spk.public(),
            Some(*self.opk.public()),
        )
    }
}

/// Envelope type of a data message (ENV-1).
const TYPE_DATA: u8 = 0x11;

/// A then B: A initiates, B accepts the first message, then messages and receipts until A's epoch
/// is acknowledged and A's envelopes are data messages (EPOCH-3), as in a running conversation.
/// Returns (A, B).
fn established(rng: &mut ChaCha20Rng, a: &Keys, b: &Keys) -> (Session, Session) {
    let mut alice = Session::initiate(rng, T0, &a.user, &a.identity, &b.bundle()).unwrap();
    let hi = Content::Text("hi".into());
    let first = alice.seal(rng, T0, &hi, 0).unwrap();
    let env = Envelope::decode(&first.bytes).unwrap();
    let (mut bob, _) = Session::accept_first(T0, &b.identity, &b.spk, Some(&b.opk), &env).unwrap();
    let mut last = first;
    for _ in 0..4 {
        let receipt = bob
            .seal(rng, T0, &Content::Receipt(vec![last.id]), 0)
            .unwrap();
        alice
            .open(T0, &Envelope::decode(&receipt.bytes).unwrap())
            .unwrap();
        last = alice.seal(rng, T0, &hi, 0).unwrap();
        bob.open(T0, &Envelope::decode(&last.bytes).unwrap())
            .unwrap();
        if last.bytes[0] == TYPE_DATA {
            break;
        }
    }
    (alice, bob)
}

fn pairwise(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let a = Keys::new(&mut rng, 1);
    let b = Keys::new(&mut rng, 2);
    let text = text_100();
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));

    // (a) Steady state: A keeps sending in its epoch, so every message is a data message.
    let (mut alice, mut bob) = established(&mut rng, &a, &b);
    let probe = alice.seal(&mut rng, T0, &text, 0).unwrap();
    assert_eq!(probe.bytes[0], TYPE_DATA);
    bob.open(T0, &Envelope::decode(&probe.bytes).unwrap())
        .unwrap();
    g.bench_function("seal_open_100B", |bench| {
        bench.iter(|| {
            let sealed = alice.seal(&mut rng, T0, black_box(&text), 0).unwrap();
            let env = Envelope::decode(black_box(&sealed.bytes)).unwrap();
            black_box(bob.open(T0, &env).unwrap())
        });
    });

    // (a') The same through the device engine.
    let mut drng = ChaCha20Rng::seed_from_u64(2);
    let mut da = Device::new(&mut drng, UserId([1; 10]));
    let mut db = Device::new(&mut drng, UserId([2; 10]));
    da.add_contact_from_card(&db.card().unwrap());
    let to = *db.user_id();
    // Messages and receipts until A's envelopes are data messages (EPOCH-3).
    for _ in 0..4 {
        let out = da.send(&mut drng, T0, &to, &text).unwrap();
        db.receive(T0, &out.envelope).unwrap();
        if out.envelope[0] == TYPE_DATA {
            break;
        }
        let receipt = db
            .send(&mut drng, T0, da.user_id(), &Content::Receipt(vec![out.id]))
            .unwrap();
        da.receive(T0, &receipt.envelope).unwrap();
    }
    assert_eq!(
        da.send(&mut drng, T0, &to, &text).unwrap().envelope[0],
        TYPE_DATA
    );
    g.bench_function("seal_open_100B_device", |bench| {
        bench.iter(|| {
            let out = da.send(&mut drng, T0, &to, black_box(&text)).unwrap();
            black_box(db.receive(T0, black_box(&out.envelope)).unwrap())
        });
    });

    // (b) Session setup: initiate, seal the first message, accept it.
    let bundle = b.bundle();
    let hi = Content::Text("hi".into());
    g.bench_function("session_setup", |bench| {
        bench.iter(|| {
            let mut s = Session::initiate(&mut rng, T0, &a.user, &a.identity, &bundle).unwrap();
            let first = s.seal(&mut rng, T0, &hi, 0).unwrap();
            let env = Envelope::decode(&first.bytes).unwrap();
            black_box(Session::accept_first(T0, &b.identity, &b.spk, Some(&b.opk), &env).unwrap())
        });
    });

    // (c) Ping-pong: every message answers the peer's, so each one turns the epoch.
    let (mut alice, mut bob) = established(&mut rng, &a, &b);
    let mut bob_turn = true;
    g.bench_function("epoch_step", |bench| {
        bench.iter(|| {
            let (from, to) = if bob_turn {
                (&mut bob, &mut alice)
            } else {
                (&mut alice, &mut bob)
            };
            bob_turn = !bob_turn;
            let sealed = from.seal(&mut rng, T0, black_box(&text), 0).unwrap();
            debug_assert_eq!(sealed.bytes[0], 0x13);
            let env = Envelope::decode(&sealed.bytes).unwrap();
            black_box(to.open(T0, &env).unwrap())
        });
    });
    g.finish();
}

fn group(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut admin = Device::new(&mut rng, UserId([1; 10]));
    let mut bob = Device::new(&mut rng, UserId([2; 10]));
    let mut carol = Device::new(&mut rng, UserId([3; 10]));
    admin.add_contact_from_card(&bob.card().unwrap());
    admin.add_contact_from_card(&carol.card().unwrap());
    let (gid, keys) = admin
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
    let text = text_100();
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Elements(1));
    // (d) One group message sealed by the admin and opened by one member.
    g.bench_function("group_message", |bench| {
        bench.iter(|| {
            let out = admin.send_group(T0, &gid, black_box(&text)).unwrap();
            debug_assert_eq!(out.envelope[0], 0x14);
            black_box(bob.receive(T0, black_box(&out.envelope)).unwrap())
        });
    });
    // The primitives under a data message, for the breakdown of `seal_open_100B`.
    let key = sotto_core::crypto::Secret::new([7u8; 32]);
    let plain = [0x42u8; 102];
    let ad = [0x11u8; 10];
    g.bench_function("primitive/aead_seal_open_102B", |bench| {
        bench.iter(|| {
            let sealed = sotto_core::crypto::seal(&key, &[1; 12], &ad, black_box(&plain));
            black_box(sotto_core::crypto::open(&key, &[1; 12], &ad, &sealed).unwrap())
        });
    });
    let ck = sotto_core::crypto::Secret::new([9u8; 32]);
    g.bench_function("primitive/chain_step", |bench| {
        bench.iter(|| black_box(sotto_core::kdf::chain_step(black_box(&ck))));
    });
    g.finish();
}

criterion_group!(benches, pairwise, group);
criterion_main!(benches);
