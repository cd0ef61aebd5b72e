//! `two_party`: Alice and Bob, who scanned each other's cards, talk through a broker that drops,
//! duplicates, reorders, tampers with and replays envelopes.
//!
//! Input: a seed `u64`, then up to [`MAX_ACTIONS`] [`Action`]s. The seed's low byte picks the set-up
//! (both devices' keys, and two choices: bit 0, Alice also has Bob's directory bundle with a one-time
//! prekey; bit 1, both pad to 32-byte buckets), which is cached (see [`super::setup_rng`]); the whole
//! seed drives every random draw after it. Invariants:
//! - an envelope that opens is untampered and opens to exactly what was sent, from its sender, with
//!   the sender's message id (ID-3) and send time (IN-2), and no event;
//! - a device never delivers the same message id twice (RX-2, RX-4, RX-7);
//! - a failed receive is a typed `Err` that changes nothing (RX-3): the device's `Debug` form (which
//!   redacts secrets but shows every counter, tag and table) is the same before and after, as long
//!   as no skipped key can have expired (LIM-5);
//! - an untampered envelope fails only with a session or group error (duplicate, unknown routing tag,
//!   expired epoch...), never a decode, crypto or misuse error: honest peers never cause one;
//! - sending never fails.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::limits::SKIPPED_KEY_TTL_MS;
use sotto_core::{Content, Device, Error, Event, MessageId, Trust, UserId};

use super::{Stats, ToArbitraryBytes, hex, parse_actions, setup_rng, text, write_variant};

/// Actions per input.
pub const MAX_ACTIONS: usize = 64;
/// The clock at the start (2026-01-01T00:00:00Z, ms).
pub const T0: u64 = 1_767_225_600_000;
/// Alice's and Bob's user ids.
pub const USERS: [UserId; 2] = [UserId([0xa1; 10]), UserId([0xb0; 10])];
const ALICE: usize = 0;
const BOB: usize = 1;

/// One step of the scenario. Queue indices are taken modulo the queue length.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Alice sends a text of this many bytes.
    AliceSends(u8),
    /// Bob sends a text of this many bytes.
    BobSends(u8),
    /// The broker delivers (and removes) one queued envelope: any order.
    Deliver {
        /// Bob's inbox, else Alice's.
        to_bob: bool,
        /// Which queued envelope.
        index: u8,
    },
    /// The broker loses one queued envelope.
    Drop {
        /// Bob's inbox, else Alice's.
        to_bob: bool,
        /// Which queued envelope.
        index: u8,
    },
    /// The broker queues a copy of a queued envelope (QoS 1 redelivery).
    Duplicate {
        /// Bob's inbox, else Alice's.
        to_bob: bool,
        /// Which queued envelope.
        index: u8,
    },
    /// The broker XORs one byte of a queued envelope with a non-zero value.
    Tamper {
        /// Bob's inbox, else Alice's.
        to_bob: bool,
        /// Which queued envelope.
        index: u8,
        /// Which byte (modulo the length).
        byte: u16,
        /// What to XOR it with (0 counts as 1).
        value: u8,
    },
    /// The broker queues again an envelope sent earlier (a resend, RX-6, or an attacker's replay).
    Replay {
        /// Bob's inbox, else Alice's.
        to_bob: bool,
        /// Which envelope of everything sent to that inbox.
        index: u8,
    },
    /// A receipt for the messages delivered since the last one (RX-5).
    Receipt {
        /// Bob sends it, else Alice.
        from_bob: bool,
    },
    /// A key update: a message that only turns the epoch.
    KeyUpdate {
        /// Bob sends it, else Alice.
        from_bob: bool,
    },
    /// The clock moves on.
    Tick {
        /// Seconds.
        seconds: u16,
    },
}

const VARIANTS: u32 = 10;

impl ToArbitraryBytes for Action {
    fn write(&self, out: &mut Vec<u8>) {
        match *self {
            Action::AliceSends(len) => {
                write_variant(out, 0, VARIANTS);
                out.push(len);
            }
            Action::BobSends(len) => {
                write_variant(out, 1, VARIANTS);
                out.push(len);
            }
            Action::Deliver { to_bob, index } => {
                write_variant(out, 2, VARIANTS);
                out.extend([u8::from(to_bob), index]);
            }
            Action::Drop { to_bob, index } => {
                write_variant(out, 3, VARIANTS);
                out.extend([u8::from(to_bob), index]);
            }
            Action::Duplicate { to_bob, index } => {
                write_variant(out, 4, VARIANTS);
                out.extend([u8::from(to_bob), index]);
            }
            Action::Tamper {
                to_bob,
                index,
                byte,
                value,
            } => {
                write_variant(out, 5, VARIANTS);
                out.extend([u8::from(to_bob), index]);
                out.extend(byte.to_le_bytes());
                out.push(value);
            }
            Action::Replay { to_bob, index } => {
                write_variant(out, 6, VARIANTS);
                out.extend([u8::from(to_bob), index]);
            }
            Action::Receipt { from_bob } => {
                write_variant(out, 7, VARIANTS);
                out.push(u8::from(from_bob));
            }
            Action::KeyUpdate { from_bob } => {
                write_variant(out, 8, VARIANTS);
                out.push(u8::from(from_bob));
            }
            Action::Tick { seconds } => {
                write_variant(out, 9, VARIANTS);
                out.extend(seconds.to_le_bytes());
            }
        }
    }
}

/// An envelope in flight.
#[derive(Clone, Debug)]
struct Msg {
    bytes: Vec<u8>,
    genuine: Vec<u8>,
    id: MessageId,
    content: Content,
    sent_at: u64,
}

#[derive(Clone)]
struct Party {
    device: Device,
    delivered: BTreeSet<MessageId>,
    unreceipted: Vec<MessageId>,
}

/// The two devices, their inboxes and everything sent.
#[derive(Clone)]
pub struct World {
    rng: ChaCha20Rng,
    now: u64,
    parties: [Party; 2],
    inbox: [Vec<Msg>; 2],
    sent: [Vec<Msg>; 2],
    texts: u32,
    stats: Stats,
}

/// The target: parse and run. Returns how many envelopes opened and how many were refused.
pub fn run(data: &[u8]) -> Stats {
    let Some((seed, actions)) = parse_actions::<Action>(data, MAX_ACTIONS) else {
        return Stats::default();
    };
    let mut world = World::new(seed);
    for action in actions {
        world.step(action);
    }
    world.stats
}

fn party(rng: &mut ChaCha20Rng, user: UserId) -> Party {
    let mut device = Device::new(rng, user);
    device
        .generate_one_time_prekeys(rng, 4)
        .expect("4 one-time prekeys");
    Party {
        device,
        delivered: BTreeSet::new(),
        unreceipted: Vec::new(),
    }
}

impl World {
    /// Alice and Bob, set up by scanning each other's cards.
    pub fn new(seed: u64) -> Self {
        thread_local! {
            static SETUPS: RefCell<BTreeMap<u8, World>> = const { RefCell::new(BTreeMap::new()) };
        }
        let key = seed.to_le_bytes()[0];
        let mut world = SETUPS.with(|s| {
            s.borrow_mut()
                .entry(key)
                .or_insert_with(|| World::set_up(seed))
                .clone()
        });
        world.rng = ChaCha20Rng::seed_from_u64(seed);
        world
    }

    // The set-up, from the seed's low byte only (see `setup_rng`).
    fn set_up(seed: u64) -> Self {
        let mut rng = setup_rng(seed);
        let mut alice = party(&mut rng, USERS[ALICE]);
        let mut bob = party(&mut rng, USERS[BOB]);
        let alice_card = alice.device.card().expect("card");
        let bob_card = bob.device.card().expect("card");
        alice.device.add_contact_from_card(&bob_card);
        bob.device.add_contact_from_card(&alice_card);
        if seed & 1 == 1 {
            // The same identity from the directory, now with a one-time prekey (X3DH-1, X3DH-9).
            let bundle = bob.device.bundle(Some(1)).expect("bundle");
            alice
                .device
                .add_contact_from_bundle(&bundle)
                .expect("same identity");
        }
        if seed & 2 == 2 {
            alice.device.set_padding(32);
            bob.device.set_padding(32);
        }
        World {
            rng,
            now: T0,
            parties: [alice, bob],
            inbox: [Vec::new(), Vec::new()],
            sent: [Vec::new(), Vec::new()],
            texts: 0,
            stats: Stats::default(),
        }
    }

    /// Runs one action.
    pub fn step(&mut self, action: Action) {
        match action {
            Action::AliceSends(len) => self.send_text(ALICE, len),
            Action::BobSends(len) => self.send_text(BOB, len),
            Action::Deliver { to_bob, index } => {
                let to = usize::from(to_bob);
                let queue = &mut self.inbox[to];
                if !queue.is_empty() {
                    let msg = queue.remove(usize::from(index) % queue.len());
                    self.receive(to, &msg);
                }
            }
            Action::Drop { to_bob, index } => {
                let queue = &mut self.inbox[usize::from(to_bob)];
                if !queue.is_empty() {
                    queue.remove(usize::from(index) % queue.len());
                }
            }
            Action::Duplicate { to_bob, index } => {
                let queue = &mut self.inbox[usize::from(to_bob)];
                if !queue.is_empty() {
                    let copy = queue[usize::from(index) % queue.len()].clone();
                    queue.push(copy);
                }
            }
            Action::Tamper {
                to_bob,
                index,
                byte,
                value,
            } => {
                let queue = &mut self.inbox[usize::from(to_bob)];
                if !queue.is_empty() {
                    let i = usize::from(index) % queue.len();
                    let bytes = &mut queue[i].bytes;
                    let at = usize::from(byte) % bytes.len();
                    bytes[at] ^= value.max(1);
                }
            }
            Action::Replay { to_bob, index } => {
                let to = usize::from(to_bob);
                let sent = &self.sent[to];
                if !sent.is_empty() {
                    let copy = sent[usize::from(index) % sent.len()].clone();
                    self.inbox[to].push(copy);
                }
            }
            Action::Receipt { from_bob } => {
                let from = usize::from(from_bob);
                let ids = std::mem::take(&mut self.parties[from].unreceipted);
                if !ids.is_empty() {
                    self.send(from, Content::Receipt(ids));
                }
            }
            Action::KeyUpdate { from_bob } => self.send(usize::from(from_bob), Content::KeyUpdate),
            Action::Tick { seconds } => self.now += u64::from(seconds) * 1000,
        }
    }

    fn send_text(&mut self, from: usize, len: u8) {
        self.texts += 1;
        self.send(from, Content::Text(text(self.texts, len)));
    }

    fn send(&mut self, from: usize, content: Content) {
        let to = 1 - from;
        let out = self.parties[from]
            .device
            .send(&mut self.rng, self.now, &USERS[to], &content)
            .unwrap_or_else(|e| panic!("party {from} cannot send {content:?}: {e:?}"));
        assert_eq!(out.to, [USERS[to]]);
        assert_eq!(out.group, None);
        let msg = Msg {
            bytes: out.envelope.clone(),
            genuine: out.envelope,
            id: out.id,
            content,
            sent_at: self.now,
        };
        self.sent[to].push(msg.clone());
        self.inbox[to].push(msg);
    }

    fn receive(&mut self, to: usize, msg: &Msg) {
        let from = 1 - to;
        let tampered = msg.bytes != msg.genuine;
        let party = &mut self.parties[to];
        let stats = &mut self.stats;
        // Without expiry (LIM-5) a failed receive must leave the device exactly as it was (RX-3).
        let before = (self.now < T0 + SKIPPED_KEY_TTL_MS).then(|| format!("{:?}", party.device));
        match party.device.receive(self.now, &msg.bytes) {
            Ok(incoming) => {
                stats.opened += 1;
                assert!(
                    !tampered,
                    "a tampered envelope opened: {} (genuine {})",
                    hex(&msg.bytes),
                    hex(&msg.genuine)
                );
                assert_eq!(incoming.from, USERS[from], "wrong sender");
                assert_eq!(
                    incoming.id, msg.id,
                    "sender and receiver disagree on the id (ID-3)"
                );
                assert_eq!(incoming.content, msg.content, "content differs");
                assert_eq!(incoming.group, None);
                assert_eq!(
                    incoming.trust,
                    Trust::Verified,
                    "a scanned contact is verified"
                );
                assert!(
                    incoming.sent_at <= msg.sent_at && incoming.sent_at + 1000 > msg.sent_at,
                    "sent_at {} for a message sent at {} (IN-2)",
                    incoming.sent_at,
                    msg.sent_at
                );
                assert!(
                    !incoming
                        .events
                        .iter()
                        .any(|e| matches!(e, Event::Rejected(_))),
                    "events {:?}",
                    incoming.events
                );
                assert!(
                    party.delivered.insert(incoming.id),
                    "message {:?} delivered twice",
                    incoming.id
                );
                if incoming.content.wants_receipt() && party.unreceipted.len() < 64 {
                    party.unreceipted.push(incoming.id);
                }
            }
            Err(e) => {
                stats.refused += 1;
                if !tampered {
                    assert!(
                        matches!(e, Error::Session(_) | Error::Group(_)),
                        "an untampered envelope failed with {e:?}: {}",
                        hex(&msg.bytes)
                    );
                }
                if let Some(before) = before {
                    assert_eq!(
                        before,
                        format!("{:?}", party.device),
                        "a failed receive ({e:?}) changed the device (RX-3)"
                    );
                }
            }
        }
    }
}
