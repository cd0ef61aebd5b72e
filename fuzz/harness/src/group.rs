//! `group`: an admin (member 0) and two members, pairwise sessions set up by scanning cards. The
//! admin creates a group and its group keys are delivered; then an action sequence sends from any
//! member, lets the broker deliver, drop, duplicate, reorder or tamper with any inbox, removes member 2
//! (a rekey, GRP-6) and adds it back, and lets members confirm their epoch (GRP-9).
//!
//! Input: a seed `u64` then up to [`MAX_ACTIONS`] [`GroupAction`]s. The seed's low byte picks the
//! set-up (keys, group id, group keys), which is cached (see [`super::setup_rng`]); the whole seed
//! drives every random draw after it. Invariants:
//! - an envelope that opens is untampered, from its sender, with the sender's message id, and says
//!   what was sent (group texts exactly; group keys, removals and acks of the right epoch);
//! - a device never delivers the same message id twice;
//! - a member opens a group message only of an epoch whose membership lists it (so member 2 never
//!   reads an epoch it was removed from, GRP-6);
//! - a member refuses a late message of an older epoch from a member its newest epoch no longer lists
//!   (GRP-6);
//! - a late removal notice does not take a device out of a newer epoch that lists it (GRP-4; named
//!   `stale-removal` for [`super::ignored`]: sotto-core breaks it, see `fuzz/README.md`);
//! - a failed receive is a typed `Err` that changes nothing (RX-3, as in `two_party`), and an
//!   untampered envelope fails only with a session or group error;
//! - the admin's group operations never fail.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::error::SessionError;
use sotto_core::limits::SKIPPED_KEY_TTL_MS;
use sotto_core::{Content, Device, Error, Event, GroupId, MessageId, Outgoing, UserId};

use super::{Stats, ToArbitraryBytes, hex, ignored, parse_actions, setup_rng, text, write_variant};

/// Actions per input.
pub const MAX_ACTIONS: usize = 64;
/// The clock at the start (2026-01-01T00:00:00Z, ms).
pub const T0: u64 = 1_767_225_600_000;
/// The admin's and the two members' user ids.
pub const USERS: [UserId; 3] = [UserId([0xad; 10]), UserId([0xb1; 10]), UserId([0xc2; 10])];
const ADMIN: usize = 0;
const REMOVABLE: usize = 2;

/// One step of the scenario. Party numbers are taken modulo 3, queue indices modulo the queue length.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupAction {
    /// A member sends a group text of `len` bytes.
    Send {
        /// The sender.
        from: u8,
        /// Text length.
        len: u8,
    },
    /// The broker delivers (and removes) one envelope of a member's inbox.
    Deliver {
        /// The inbox.
        to: u8,
        /// Which envelope.
        index: u8,
    },
    /// The broker loses one envelope.
    Drop {
        /// The inbox.
        to: u8,
        /// Which envelope.
        index: u8,
    },
    /// The broker queues a copy of an envelope.
    Duplicate {
        /// The inbox.
        to: u8,
        /// Which envelope.
        index: u8,
    },
    /// The broker swaps two envelopes of an inbox.
    Reorder {
        /// The inbox.
        to: u8,
        /// One envelope.
        a: u8,
        /// The other.
        b: u8,
    },
    /// The broker XORs one byte of an envelope with a non-zero value.
    Tamper {
        /// The inbox.
        to: u8,
        /// Which envelope.
        index: u8,
        /// Which byte (modulo the length).
        byte: u16,
        /// What to XOR it with (0 counts as 1).
        value: u8,
    },
    /// The admin removes member 2: a new epoch without it, and a removal notice to it.
    Remove,
    /// The admin adds member 2 back: a new epoch with it.
    AddBack,
    /// A member confirms its newest epoch to the admin.
    Ack {
        /// The member.
        from: u8,
    },
    /// The clock moves on.
    Tick {
        /// Seconds.
        seconds: u16,
    },
}

const VARIANTS: u32 = 10;

impl ToArbitraryBytes for GroupAction {
    fn write(&self, out: &mut Vec<u8>) {
        match *self {
            GroupAction::Send { from, len } => {
                write_variant(out, 0, VARIANTS);
                out.extend([from, len]);
            }
            GroupAction::Deliver { to, index } => {
                write_variant(out, 1, VARIANTS);
                out.extend([to, index]);
            }
            GroupAction::Drop { to, index } => {
                write_variant(out, 2, VARIANTS);
                out.extend([to, index]);
            }
            GroupAction::Duplicate { to, index } => {
                write_variant(out, 3, VARIANTS);
                out.extend([to, index]);
            }
            GroupAction::Reorder { to, a, b } => {
                write_variant(out, 4, VARIANTS);
                out.extend([to, a, b]);
            }
            GroupAction::Tamper {
                to,
                index,
                byte,
                value,
            } => {
                write_variant(out, 5, VARIANTS);
                out.extend([to, index]);
                out.extend(byte.to_le_bytes());
                out.push(value);
            }
            GroupAction::Remove => write_variant(out, 6, VARIANTS),
            GroupAction::AddBack => write_variant(out, 7, VARIANTS),
            GroupAction::Ack { from } => {
                write_variant(out, 8, VARIANTS);
                out.push(from);
            }
            GroupAction::Tick { seconds } => {
                write_variant(out, 9, VARIANTS);
                out.extend(seconds.to_le_bytes());
            }
        }
    }
}

/// What an envelope must open to.
#[derive(Clone, Debug)]
enum Expect {
    /// A group text sealed in this group epoch.
    Text { text: String, epoch: u32 },
    /// The group key of this epoch, over the pairwise session with the admin.
    GroupKey { epoch: u32 },
    /// The removal notice of this epoch.
    Removed { epoch: u32 },
    /// A member's confirmation of this epoch.
    Ack { epoch: u32 },
}

#[derive(Clone, Debug)]
struct Msg {
    bytes: Vec<u8>,
    genuine: Vec<u8>,
    id: MessageId,
    from: usize,
    expect: Expect,
    sent_at: u64,
}

/// The three devices, their inboxes, and the membership of every epoch.
#[derive(Clone)]
pub struct World {
    rng: ChaCha20Rng,
    now: u64,
    devices: Vec<Device>,
    delivered: [BTreeSet<MessageId>; 3],
    inbox: [Vec<Msg>; 3],
    gid: GroupId,
    members: BTreeMap<u32, Vec<UserId>>,
    texts: u32,
    stats: Stats,
}

/// The target: parse and run. Returns how many envelopes opened and how many were refused.
pub fn run(data: &[u8]) -> Stats {
    let Some((seed, actions)) = parse_actions::<GroupAction>(data, MAX_ACTIONS) else {
        return Stats::default();
    };
    let mut world = World::new(seed);
    for action in actions {
        world.step(action);
    }
    world.stats
}

impl World {
    /// Three devices that scanned each other's cards, and a group created by the admin whose keys
    /// reached both members.
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
        let mut devices: Vec<Device> = USERS.iter().map(|u| Device::new(&mut rng, *u)).collect();
        let cards: Vec<_> = devices.iter().map(|d| d.card().expect("card")).collect();
        for (i, device) in devices.iter_mut().enumerate() {
            for (j, card) in cards.iter().enumerate() {
                if i != j {
                    device.add_contact_from_card(card);
                }
            }
        }
        let (gid, out) = devices[ADMIN]
            .create_group(&mut rng, T0, &[USERS[1], USERS[2]])
            .expect("create the group");
        let mut world = World {
            rng,
            now: T0,
            devices,
            delivered: Default::default(),
            inbox: Default::default(),
            gid,
            members: BTreeMap::new(),
            texts: 0,
            stats: Stats::default(),
        };
        world.admin_sent(out);
        for to in 1..3 {
            while !world.inbox[to].is_empty() {
                let msg = world.inbox[to].remove(0);
                assert!(world.receive(to, &msg), "the group key did not open");
            }
        }
        world
    }

    /// Runs one action.
    pub fn step(&mut self, action: GroupAction) {
        match action {
            GroupAction::Send { from, len } => self.send(usize::from(from % 3), len),
            GroupAction::Deliver { to, index } => {
                let to = usize::from(to % 3);
                let queue = &mut self.inbox[to];
                if !queue.is_empty() {
                    let msg = queue.remove(usize::from(index) % queue.len());
                    self.receive(to, &msg);
                }
            }
            GroupAction::Drop { to, index } => {
                let queue = &mut self.inbox[usize::from(to % 3)];
                if !queue.is_empty() {
                    queue.remove(usize::from(index) % queue.len());
                }
            }
            GroupAction::Duplicate { to, index } => {
                let queue = &mut self.inbox[usize::from(to % 3)];
                if !queue.is_empty() {
                    let copy = queue[usize::from(index) % queue.len()].clone();
                    queue.push(copy);
                }
            }
            GroupAction::Reorder { to, a, b } => {
                let queue = &mut self.inbox[usize::from(to % 3)];
                if !queue.is_empty() {
                    let len = queue.len();
                    queue.swap(usize::from(a) % len, usize::from(b) % len);
                }
            }
            GroupAction::Tamper {
                to,
                index,
                byte,
                value,
            } => {
                let queue = &mut self.inbox[usize::from(to % 3)];
                if !queue.is_empty() {
                    let i = usize::from(index) % queue.len();
                    let bytes = &mut queue[i].bytes;
                    let at = usize::from(byte) % bytes.len();
                    bytes[at] ^= value.max(1);
                }
            }
            GroupAction::Remove => {
                let out = self.devices[ADMIN]
                    .remove_from_group(&mut self.rng, self.now, &self.gid, &USERS[REMOVABLE])
                    .expect("the admin removes a member");
                self.admin_sent(out);
            }
            GroupAction::AddBack => {
                let out = self.devices[ADMIN]
                    .add_to_group(&mut self.rng, self.now, &self.gid, &USERS[REMOVABLE])
                    .expect("the admin adds a member");
                self.admin_sent(out);
            }
            GroupAction::Ack { from } => {
                let from = usize::from(from % 3);
                if from == ADMIN {
                    return;
                }
                let Some((epoch, _)) = self.devices[from].group_members(&self.gid) else {
                    return;
                };
                // A member that holds the group can always confirm it.
                let out = self.devices[from]
                    .group_ack(&mut self.rng, self.now, &self.gid)
                    .expect("a member confirms its epoch");
                self.queue(from, out, |_| Expect::Ack { epoch });
            }
            GroupAction::Tick { seconds } => self.now += u64::from(seconds) * 1000,
        }
    }

    // Records the admin's new epoch and queues its group keys and removal notices.
    fn admin_sent(&mut self, out: Vec<Outgoing>) {
        let (epoch, members) = self.devices[ADMIN]
            .group_members(&self.gid)
            .expect("the admin holds the group");
        self.members.insert(epoch, members.clone());
        for o in out {
            self.queue(ADMIN, o, |to| {
                if members.contains(to) {
                    Expect::GroupKey { epoch }
                } else {
                    Expect::Removed { epoch }
                }
            });
        }
    }

    fn queue(&mut self, from: usize, out: Outgoing, expect: impl Fn(&UserId) -> Expect) {
        for to in &out.to {
            let index = USERS.iter().position(|u| u == to).expect("a known user");
            assert_ne!(index, from, "a message to oneself");
            self.inbox[index].push(Msg {
                bytes: out.envelope.clone(),
                genuine: out.envelope.clone(),
                id: out.id,
                from,
                expect: expect(to),
                sent_at: self.now,
            });
        }
    }

    fn send(&mut self, from: usize, len: u8) {
        self.texts += 1;
        let text = text(self.texts, len);
        let Some((epoch, _)) = self.devices[from].group_members(&self.gid) else {
            return;
        };
        // A device that holds the group is a member of its newest epoch and can always send.
        let out = self.devices[from]
            .send_group(self.now, &self.gid, &Content::Text(text.clone()))
            .expect("a member sends");
        assert_eq!(out.group, Some(self.gid));
        self.queue(from, out, |_| Expect::Text {
            text: text.clone(),
            epoch,
        });
    }

    // Delivers one envelope to device `to`; returns whether it opened.
    fn receive(&mut self, to: usize, msg: &Msg) -> bool {
        let tampered = msg.bytes != msg.genuine;
        let view = self.devices[to].group_members(&self.gid);
        let device = &mut self.devices[to];
        let before = (self.now < T0 + SKIPPED_KEY_TTL_MS).then(|| format!("{device:?}"));
        let incoming = match device.receive(self.now, &msg.bytes) {
            Ok(incoming) => incoming,
            Err(e) => {
                self.stats.refused += 1;
                if !tampered {
                    assert!(
                        matches!(e, Error::Session(_) | Error::Group(_)),
                        "an untampered envelope failed at {to} with {e:?}: {}",
                        hex(&msg.bytes)
                    );
                }
                if let Some(before) = before {
                    assert_eq!(
                        before,
                        format!("{device:?}"),
                        "a failed receive ({e:?}) changed device {to} (RX-3)"
                    );
                }
                return false;
            }
        };
        self.stats.opened += 1;
        assert!(
            !tampered,
            "a tampered envelope opened at {to}: {} (genuine {})",
            hex(&msg.bytes),
            hex(&msg.genuine)
        );
        assert_eq!(incoming.from, USERS[msg.from], "wrong sender");
        assert_eq!(
            incoming.id, msg.id,
            "sender and receiver disagree on the id"
        );
        assert!(
            self.delivered[to].insert(incoming.id),
            "message {:?} delivered twice to {to}",
            incoming.id
        );
        assert!(
            !incoming
                .events
                .contains(&Event::Rejected(SessionError::Duplicate.into())),
            "events {:?}",
            incoming.events
        );
        assert!(
            incoming.sent_at <= msg.sent_at && incoming.sent_at + 1000 > msg.sent_at,
            "sent_at {} for a message sent at {}",
            incoming.sent_at,
            msg.sent_at
        );
        match (&msg.expect, &incoming.content) {
            (Expect::Text { text, epoch }, Content::Text(got)) => {
                assert_eq!(got, text, "group text differs");
                assert_eq!(incoming.group, Some(self.gid));
                assert!(
                    self.members[epoch].contains(&USERS[to]),
                    "device {to} opened a message of epoch {epoch}, whose membership does not list it (GRP-6)"
                );
                if let Some((newest, listed)) = view {
                    assert!(
                        *epoch >= newest || listed.contains(&USERS[msg.from]),
                        "device {to} at epoch {newest} opened a late epoch-{epoch} message of member {}, removed since (GRP-6)",
                        msg.from
                    );
                }
            }
            (Expect::GroupKey { epoch }, Content::GroupKey(key)) => {
                assert_eq!(key.membership.epoch(), *epoch);
                assert_eq!(incoming.group, None);
            }
            (Expect::Removed { epoch }, Content::GroupRemoved(m)) => {
                assert_eq!(m.epoch(), *epoch);
                assert_eq!(incoming.group, None);
                // A late notice must not undo a newer epoch that lists the device (GRP-4: only a
                // newer epoch replaces the one held).
                if let Some((newest, listed)) = view
                    && newest > *epoch
                    && listed.contains(&USERS[to])
                    && !ignored("stale-removal")
                {
                    assert!(
                        !incoming.events.contains(&Event::RemovedFromGroup(self.gid)),
                        "device {to}, a member of epoch {newest}, left the group on the stale removal notice of epoch {epoch}"
                    );
                }
            }
            (Expect::Ack { epoch }, Content::GroupAck(ack)) => {
                assert_eq!((ack.group, ack.epoch), (self.gid, *epoch));
                assert_eq!(incoming.group, None);
            }
            (expect, got) => panic!("expected {expect:?}, opened {got:?}"),
        }
        true
    }
}
