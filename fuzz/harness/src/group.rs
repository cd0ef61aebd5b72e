//! `group`: an admin (member 0) and two members, pairwise sessions set up by scanning cards. The
//! admin creates a group and its group keys are delivered; then an action sequence sends from any
//! member, lets the broker deliver, drop, duplicate, reorder or tamper with any inbox, removes member 2
//! (a rekey, GRP-6) and adds it back, lets members confirm their epoch (GRP-9), lets a member leave
//! (GRP-11) and the admin hand its role to another member (GRP-12). As a shell's burst does
//! ([`sotto_core::Inbound::finish`]), the admin removes a member whose leave it opened, and the new
//! admin issues the next epoch as soon as it opened the handover.
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
//! - the admin's group operations never fail, and neither does a takeover after an accepted handover
//!   (GRP-12); the admin's keys carry the handover (kind 9) exactly when it took the role over;
//! - a member that leaves holds the group no more, and holds none of its keys until a removal notice
//!   reaches it (GRP-11); the admin (and only the admin) cannot leave while others are in the group
//!   (`admin_must_hand_over`), and the admin acts on the leave of a member it lists.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use arbitrary::Arbitrary;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sotto_core::error::{GroupError, MisuseError, SessionError};
use sotto_core::limits::SKIPPED_KEY_TTL_MS;
use sotto_core::{Content, Device, Error, Event, GroupId, MessageId, Outgoing, UserId};

use super::{Stats, ToArbitraryBytes, hex, ignored, parse_actions, setup_rng, text, write_variant};

/// Actions per input.
pub const MAX_ACTIONS: usize = 64;
/// The clock at the start (2026-01-01T00:00:00Z, ms).
pub const T0: u64 = 1_767_225_600_000;
/// The admin's and the two members' user ids.
pub const USERS: [UserId; 3] = [UserId([0xad; 10]), UserId([0xb1; 10]), UserId([0xc2; 10])];
/// The group's creator, its first admin.
const CREATOR: usize = 0;
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
    /// The admin removes member 2: a new epoch without it, and a removal notice to it (nothing
    /// while a handover is under way, or when member 2 is the admin).
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
    /// A device that holds the group leaves it (GRP-11): the leave goes to the admin it holds.
    Leave {
        /// Who leaves.
        who: u8,
    },
    /// The admin hands its role to a member (GRP-12).
    HandOver {
        /// The new admin.
        to: u8,
    },
}

const VARIANTS: u32 = 12;

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
            GroupAction::Leave { who } => {
                write_variant(out, 10, VARIANTS);
                out.push(who);
            }
            GroupAction::HandOver { to } => {
                write_variant(out, 11, VARIANTS);
                out.push(to);
            }
        }
    }
}

/// What an envelope must open to.
#[derive(Clone, Debug)]
enum Expect {
    /// A group text sealed in this group epoch.
    Text { text: String, epoch: u32 },
    /// The group key of this epoch, over the pairwise session with the admin; with the handover
    /// in front (kind 9) when the admin took the role over.
    GroupKey { epoch: u32, handed_over: bool },
    /// The removal notice of this epoch.
    Removed { epoch: u32 },
    /// A member's confirmation of this epoch.
    Ack { epoch: u32 },
    /// A member's leave, naming the newest epoch it held (GRP-11).
    Leave { epoch: u32 },
    /// The admin's handover to the receiver, from this epoch on (GRP-12).
    Handover { epoch: u32 },
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
    /// The device that administers the group: `None` while a handover is on its way (or lost), or
    /// once the group is gone.
    admin: Option<usize>,
    /// Devices that took the admin role over at least once: their group keys carry the handover.
    took_over: [bool; 3],
    /// Devices that left the group and have not opened a removal notice since (GRP-11).
    awaiting_removal: [bool; 3],
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
        let (gid, out) = devices[CREATOR]
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
            admin: Some(CREATOR),
            took_over: [false; 3],
            awaiting_removal: [false; 3],
            texts: 0,
            stats: Stats::default(),
        };
        world.admin_sent(CREATOR, out);
        for to in 1..3 {
            while !world.inbox[to].is_empty() {
                let msg = world.inbox[to].remove(0);
                assert!(world.receive(to, &msg), "the group key did not open");
            }
        }
        world
    }

    /// The group.
    pub fn group(&self) -> GroupId {
        self.gid
    }

    /// Device `i` (0: the creator, 1, 2: the members it invited).
    pub fn device(&self, i: usize) -> &Device {
        &self.devices[i]
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
                let Some(admin) = self.admin.filter(|a| *a != REMOVABLE) else {
                    return;
                };
                let out = self.devices[admin]
                    .remove_from_group(&mut self.rng, self.now, &self.gid, &USERS[REMOVABLE])
                    .expect("the admin removes a member");
                self.admin_sent(admin, out);
            }
            GroupAction::AddBack => {
                let Some(admin) = self.admin.filter(|a| *a != REMOVABLE) else {
                    return;
                };
                let out = self.devices[admin]
                    .add_to_group(&mut self.rng, self.now, &self.gid, &USERS[REMOVABLE])
                    .expect("the admin adds a member");
                self.admin_sent(admin, out);
            }
            GroupAction::Leave { who } => self.leave(usize::from(who % 3)),
            GroupAction::HandOver { to } => self.hand_over(usize::from(to % 3)),
            GroupAction::Ack { from } => {
                let from = usize::from(from % 3);
                let Some((epoch, members)) = self.devices[from].group_members(&self.gid) else {
                    return;
                };
                // The admin (of the epoch the device holds) confirms nothing to itself.
                if members.first() == Some(&USERS[from]) {
                    return;
                }
                // A member that holds the group can always confirm it.
                let out = self.devices[from]
                    .group_ack(&mut self.rng, self.now, &self.gid)
                    .expect("a member confirms its epoch");
                self.queue(from, out, |_| Expect::Ack { epoch });
            }
            GroupAction::Tick { seconds } => self.now += u64::from(seconds) * 1000,
        }
    }

    // Records the new epoch of the admin `admin` and queues its group keys and removal notices.
    fn admin_sent(&mut self, admin: usize, out: Vec<Outgoing>) {
        let (epoch, members) = self.devices[admin]
            .group_members(&self.gid)
            .expect("the admin holds the group");
        assert_eq!(
            members.first(),
            Some(&USERS[admin]),
            "the admin is member 0"
        );
        self.members.insert(epoch, members.clone());
        let handed_over = self.took_over[admin];
        for o in out {
            self.queue(admin, o, |to| {
                if members.contains(to) {
                    Expect::GroupKey { epoch, handed_over }
                } else {
                    Expect::Removed { epoch }
                }
            });
        }
    }

    // GRP-11: device `who` leaves, if it holds the group. The admin of the epoch it holds cannot
    // while others are in it; an admin alone deletes the group; anyone else sends the leave to the
    // admin it holds and deletes the group's keys at once.
    fn leave(&mut self, who: usize) {
        let view = self.devices[who].group_members(&self.gid);
        let result = self.devices[who].leave_group(&mut self.rng, self.now, &self.gid);
        let Some((epoch, members)) = view else {
            assert_eq!(
                result.map(|o| o.is_some()),
                Err(GroupError::UnknownGroup.into()),
                "device {who} left a group it does not hold"
            );
            return;
        };
        let admin = members[0];
        match result {
            Err(e) => {
                assert_eq!(
                    (e, admin, members.len() > 1),
                    (MisuseError::AdminMustHandOver.into(), USERS[who], true),
                    "device {who} (epoch {epoch}, members {members:?}) could not leave"
                );
                return;
            }
            Ok(None) => {
                assert_eq!(
                    (admin, members.len()),
                    (USERS[who], 1),
                    "device {who} left without telling the admin"
                );
                self.admin = None;
            }
            Ok(Some(out)) => {
                assert_ne!(admin, USERS[who], "the admin left a group of {members:?}");
                assert_eq!(out.to, vec![admin], "the leave goes to the admin");
                self.awaiting_removal[who] = true;
                self.queue(who, out, |_| Expect::Leave { epoch });
            }
        }
        assert_eq!(
            self.devices[who].group_members(&self.gid),
            None,
            "device {who} still holds the group it left"
        );
    }

    // GRP-12: the admin hands its role to member `to`.
    fn hand_over(&mut self, to: usize) {
        let Some(admin) = self.admin.filter(|a| *a != to) else {
            return;
        };
        let (epoch, members) = self.devices[admin]
            .group_members(&self.gid)
            .expect("the admin holds the group");
        let result =
            self.devices[admin].hand_over_group(&mut self.rng, self.now, &self.gid, &USERS[to]);
        if !members.contains(&USERS[to]) {
            assert_eq!(
                result.map(|o| o.id),
                Err(GroupError::NotAMember.into()),
                "the admin handed the group to a non-member"
            );
            return;
        }
        let out = result.expect("the admin hands the group over");
        self.admin = None;
        self.queue(admin, out, |_| Expect::Handover { epoch: epoch + 1 });
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
            (Expect::GroupKey { epoch, handed_over }, Content::GroupKey(key)) => {
                assert_eq!(key.membership.epoch(), *epoch);
                assert_eq!(incoming.group, None);
                assert_eq!(
                    key.handover.is_some(),
                    *handed_over,
                    "a group key of epoch {epoch} with the handover {:?}",
                    key.handover
                );
            }
            (Expect::Removed { epoch }, Content::GroupRemoved(m)) => {
                assert_eq!(m.epoch(), *epoch);
                assert_eq!(incoming.group, None);
                if !incoming
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::Rejected(_)))
                {
                    self.awaiting_removal[to] = false;
                }
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
            (Expect::Leave { epoch }, Content::GroupLeave(leave)) => {
                assert_eq!((leave.group, leave.epoch), (self.gid, *epoch));
                assert_eq!(incoming.group, None);
                self.leave_opened(to, msg.from, &incoming.events, view.as_ref());
            }
            (Expect::Handover { epoch }, Content::GroupHandover(h)) => {
                assert_eq!((h.group, h.epoch), (self.gid, *epoch));
                assert_eq!(h.new_admin, USERS[to]);
                assert_eq!(incoming.group, None);
                let accepted = incoming.events.contains(&Event::HandoverReceived {
                    group: self.gid,
                    epoch: *epoch,
                });
                if accepted {
                    // As the burst does: the new admin issues the next epoch at once.
                    let out = self.devices[to]
                        .take_over_group(&mut self.rng, self.now, &self.gid)
                        .expect("the new admin takes over");
                    self.took_over[to] = true;
                    self.admin = Some(to);
                    self.admin_sent(to, out);
                }
            }
            (expect, got) => panic!("expected {expect:?}, opened {got:?}"),
        }
        if self.awaiting_removal[to] {
            assert_eq!(
                self.devices[to].group_members(&self.gid),
                None,
                "device {to} left the group and holds it again before any removal notice (GRP-11)"
            );
        }
        true
    }

    // The admin opened the leave of `from` (GRP-11): it acts on it when it lists the member (as the
    // burst does, it removes it at once: a new epoch without it, and the removal notice to it).
    fn leave_opened(
        &mut self,
        to: usize,
        from: usize,
        events: &[Event],
        view: Option<&(u32, Vec<UserId>)>,
    ) {
        let left = events.contains(&Event::MemberLeft {
            group: self.gid,
            user: USERS[from],
        });
        let acts = self.admin == Some(to)
            && view.is_some_and(|(_, members)| members.contains(&USERS[from]));
        assert_eq!(
            left, acts,
            "the admin {:?} at {to} ({view:?}) and the leave of {from}: events {events:?}",
            self.admin
        );
        if left {
            let out = self.devices[to]
                .remove_from_group(&mut self.rng, self.now, &self.gid, &USERS[from])
                .expect("the admin removes a member that left");
            self.admin_sent(to, out);
        }
    }
}
