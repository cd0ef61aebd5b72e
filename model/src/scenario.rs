//! Configurations: which users, what they intend to do, and how much the attacker may do.
//!
//! Honest users follow a *scenario*: a list of intents ([`Intent`]) taken in order, each when it
//! is enabled (a reply waits until the message it answers is committed; a group message waits
//! until its sender holds the group epoch it needs). Everything else interleaves freely with the
//! scenario and with itself: deliveries, acks, resends, and every attacker step within its budget
//! ([`Budgets`]). The scenario fixes *what* people do, never *when* the network or the attacker
//! acts, so every ordering of loss, duplication, replay, restart and compromise is explored.
//!
//! Three configurations are built in (`--config small|default|deep`):
//!
//! | config | users | scenario | attacker |
//! |---|---|---|---|
//! | small | A, B | cards, a verified exchange, an offline period | drop, duplicate, replay, inject, one compromise, anywhere after the first send |
//! | default | A, B, C | cards and directory, 2+ messages each, offline periods, group create + remove | every fault once, each in the window of the scenario where it matters; forged bundles |
//! | deep | A, B, C | default plus a key update after the compromise, C added back, B leaves, A hands the group over to C, who sends | as default, plus IssueCert and a second drop |

use crate::term::Dev;
use serde::{Deserialize, Serialize};

/// One step a user means to take, in protocol vocabulary (docs/protocol.md section 18).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Intent {
    /// SIGNUP-1: upload keys, get a user id and a certificate (Req1).
    Signup(Dev),
    /// CARD-2: `by` scans `of`'s card in person; the contact is verified (Req5).
    ScanCard {
        /// Who scans.
        by: Dev,
        /// Whose card.
        of: Dev,
    },
    /// KEY-5: `by` fetches `of`'s prekey bundle from the directory.
    FetchBundle {
        /// Who fetches.
        by: Dev,
        /// Whose bundle.
        of: Dev,
    },
    /// Send text `m<msg>` from `from` to `to`, once `from` has committed `m<after>` if given.
    Send {
        /// Sender.
        from: Dev,
        /// Recipient.
        to: Dev,
        /// Index of the text.
        msg: u8,
        /// A reply: wait until this text is committed by the sender.
        after: Option<u8>,
    },
    /// EPOCH-2: a key update (kind 3); it turns the epoch when the newest one is the peer's.
    KeyUpdate {
        /// Who turns.
        from: Dev,
        /// The session's peer.
        to: Dev,
    },
    /// The device disconnects; whatever it had not committed is lost.
    GoOffline(Dev),
    /// The device reconnects, flushes its unpublished outbox and receives its queue.
    GoOnline(Dev),
    /// GRP-1: create the group with these members (admin first).
    GroupCreate {
        /// The admin.
        admin: Dev,
        /// Members, admin first.
        members: Vec<Dev>,
    },
    /// GRP-6: add a member, with a rekey.
    GroupAdd {
        /// The admin.
        admin: Dev,
        /// The new member.
        member: Dev,
    },
    /// GRP-6: remove a member, with a rekey.
    GroupRemove {
        /// The admin.
        admin: Dev,
        /// The removed member.
        member: Dev,
    },
    /// GRP-7: send group text `g<msg>` once the sender holds group epoch `min_epoch`.
    GroupSend {
        /// Sender.
        from: Dev,
        /// Index of the group text.
        msg: u8,
        /// The sender waits for at least this group epoch.
        min_epoch: u8,
    },
    /// GRP-11: a member (not the admin) leaves the group; its admin removes it.
    GroupLeave {
        /// The leaver.
        member: Dev,
    },
    /// GRP-12: the admin hands the role over to a member, who issues the next epoch.
    GroupHandover {
        /// The admin.
        admin: Dev,
        /// The new admin.
        to: Dev,
    },
}

/// A kind of attacker step with a budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Fault {
    /// Broker drops a queued packet.
    Drop = 0,
    /// Broker queues a second copy of a packet (also what a redelivery after a crash looks like).
    Duplicate = 1,
    /// Broker moves the newest queued packet to the front.
    Reorder = 2,
    /// Broker re-queues a recorded first message.
    Replay = 3,
    /// Attacker injects a message it built.
    Inject = 4,
    /// Broker restarts and loses every persistent-session queue.
    Restart = 5,
    /// A device's current state leaks.
    Compromise = 6,
    /// A device's encrypted store leaks (Req7).
    Steal = 7,
    /// The CA issues a certificate for a user id to the attacker.
    IssueCert = 8,
    /// Attacker injects a group key signed by a member who is not the admin (GRP-4).
    InjectGroupKey = 9,
}

/// A fault is enabled while the scenario position is in `from..to` and the window has given
/// fewer than `count` steps so far (a step is taken from the first open window with budget).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    /// Which fault.
    pub fault: Fault,
    /// How many in the whole run.
    pub count: u8,
    /// First scenario position (index of the next intent) where it is allowed.
    pub from: u8,
    /// First scenario position where it is no longer allowed.
    pub to: u8,
}

/// What the attacker may do, and where in the scenario.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    /// Fault windows.
    pub allow: Vec<Allow>,
    /// The directory may hand out forged bundles (ForgeBundle) at every FetchBundle.
    pub forge_bundles: bool,
}

impl Budgets {
    /// Total steps of a fault the configuration allows.
    pub fn total(&self, f: Fault) -> u8 {
        self.allow
            .iter()
            .filter(|a| a.fault == f)
            .map(|a| a.count)
            .sum()
    }
}

fn allow(fault: Fault, count: u8, from: u8, to: u8) -> Allow {
    Allow {
        fault,
        count,
        from,
        to,
    }
}

/// A complete configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Name used on the command line.
    pub name: String,
    /// Number of devices (A, B, ...).
    pub devices: u8,
    /// The scenario, in order.
    pub script: Vec<Intent>,
    /// Attacker budgets.
    pub budgets: Budgets,
    /// The device a Compromise may hit.
    pub compromise_victim: Option<Dev>,
    /// The device a Steal may hit.
    pub steal_victim: Option<Dev>,
    /// `sometimes` properties this scenario does not exercise (each checked in another config).
    pub skip: Vec<String>,
    /// Scenario positions whose intent waits until the network has settled for online devices
    /// (nothing queued for them, nothing in hand, no receipt outstanding): the phases of the
    /// scenario then follow one another, while within a phase everything interleaves.
    pub settle_at: Vec<u8>,
    /// Highest message counter per chain: a message beyond it is refused (`too_many_skipped`;
    /// LIM-3 is far larger). At most [`crate::ratchet::MAX_COUNTER`].
    pub max_counter: u8,
}

impl Config {
    /// Names accepted by [`Config::named`].
    pub const NAMES: [&'static str; 3] = ["small", "default", "deep"];

    /// A built-in configuration by name.
    pub fn named(name: &str) -> Option<Config> {
        match name {
            "small" => Some(Self::small()),
            "default" => Some(Self::default_config()),
            "deep" => Some(Self::deep()),
            _ => None,
        }
    }

    /// Two users who meet in person and exchange a message each way, with one offline period;
    /// every fault anywhere after the first send.
    pub fn small() -> Config {
        use Dev::*;
        use Fault::*;
        use Intent::*;
        let end = 8;
        Config {
            name: "small".into(),
            devices: 2,
            script: vec![
                Signup(A),
                Signup(B),
                ScanCard { by: A, of: B },
                ScanCard { by: B, of: A },
                Send {
                    from: A,
                    to: B,
                    msg: 1,
                    after: None,
                },
                GoOffline(B),
                GoOnline(B),
                Send {
                    from: B,
                    to: A,
                    msg: 2,
                    after: Some(1),
                },
            ],
            budgets: Budgets {
                allow: vec![
                    allow(Drop, 1, 4, end + 1),
                    allow(Duplicate, 1, 4, end + 1),
                    allow(Replay, 1, 4, end + 1),
                    allow(Inject, 1, 4, end + 1),
                    allow(Compromise, 1, 6, end + 1),
                ],
                forge_bundles: false,
            },
            compromise_victim: Some(B),
            steal_victim: None,
            // One message each way makes two epochs; receipts ride the current epoch (EPOCH-2),
            // so the third epoch is shown by the default configuration.
            skip: vec![crate::properties::names::S_EPOCHS.to_string()],
            settle_at: Vec::new(),
            max_counter: 7,
        }
    }

    /// Three users: cards and the directory, at least two messages each, offline periods, a
    /// group created and changed, one compromise and one theft. Each fault has a window of the
    /// scenario where it matters (see docs/model.md).
    pub fn default_config() -> Config {
        use Dev::*;
        use Fault::*;
        Config {
            name: "default".into(),
            devices: 3,
            script: default_script(),
            budgets: Budgets {
                allow: vec![
                    // A-B exchange: a lost packet (resend) and a duplicate.
                    allow(Drop, 1, 9, 11),
                    allow(Duplicate, 1, 10, 11),
                    // B is compromised after its reply to A, before it writes to C.
                    allow(Compromise, 1, 11, 12),
                    allow(Inject, 1, 11, 12),
                    // While C is offline: B's first message is replayed, the broker restarts.
                    allow(Replay, 1, 13, 14),
                    allow(Restart, 1, 14, 15),
                    // Group phase, B offline: A's first message after the removal overtakes
                    // the new group key in B's queue (RX-8: kept, opened once the key is there).
                    allow(Reorder, 1, 21, 22),
                    // After the removal, with B (compromised or not) still a member: the
                    // server sends A a group key signed by B (GRP-4 refuses it).
                    allow(InjectGroupKey, 1, 20, 21),
                    allow(Steal, 1, 22, 23),
                ],
                forge_bundles: true,
            },
            compromise_victim: Some(B),
            steal_victim: Some(C),
            // The epoch-0 forward-secrecy limit needs a card-only session with the victim as
            // responder; the small configuration shows it.
            skip: vec![crate::properties::names::S_FS_LIMIT.to_string()],
            // Phases: the A-B exchange and B's and A's first messages to C run concurrently;
            // the group changes and C's replies each start from a settled network.
            settle_at: vec![11, 14, 15, 16, 18],
            max_counter: 7,
        }
    }

    /// The default scenario followed by a key update from the compromised device and a last
    /// message (post-compromise secrecy on the A-B session), the removed member added back
    /// (GroupAdd), the compromised member leaving (GroupLeave), the admin handing the group over
    /// (GroupHandover) to C, who then sends to it, a minted certificate and one more lost packet.
    pub fn deep() -> Config {
        use Dev::*;
        use Fault::*;
        use Intent::*;
        let mut script = default_script();
        script.push(KeyUpdate { from: B, to: A });
        script.push(Send {
            from: A,
            to: B,
            msg: 7,
            after: None,
        });
        // GRP-6 add: C, removed earlier, is added back with a rekey.
        script.push(GroupAdd {
            admin: A,
            member: C,
        });
        let end = script.len() as u8 + 1;
        // GRP-11: B (compromised) leaves; A removes it. GRP-12: A hands the group over to C, who
        // issues the next epoch and writes g2 in it.
        script.push(GroupLeave { member: B });
        script.push(GroupHandover { admin: A, to: C });
        script.push(GroupSend {
            from: C,
            msg: 2,
            min_epoch: 4,
        });
        let mut c = Self::default_config();
        c.name = "deep".into();
        c.script = script;
        // The default windows, plus a certificate minted for B's user id, a lost packet from the
        // key update to the re-added member's catch-up, and the key update's own phase after
        // the group; the leave, the handover and C's message each start from a settled network.
        c.budgets.allow.push(allow(IssueCert, 1, 8, 9));
        c.budgets.allow.push(allow(Drop, 1, 22, end));
        c.settle_at.extend([22, 23, 24, 25, 26, 27]);
        // C's epoch toward A (after m5 C sends A only receipts and group acks, which turn no
        // epoch) carries ten messages through the group phases, more with resends: a bound of 7
        // would refuse the receipt of the handover and make A resend it, which no
        // implementation does.
        c.max_counter = crate::ratchet::MAX_COUNTER;
        c
    }
}

fn default_script() -> Vec<Intent> {
    use Dev::*;
    use Intent::*;
    vec![
        Signup(A),
        Signup(B),
        Signup(C),
        ScanCard { by: A, of: B },
        ScanCard { by: B, of: A },
        ScanCard { by: B, of: C },
        ScanCard { by: C, of: B },
        FetchBundle { by: A, of: B },
        FetchBundle { by: A, of: C },
        Send {
            from: A,
            to: B,
            msg: 1,
            after: None,
        },
        Send {
            from: B,
            to: A,
            msg: 2,
            after: Some(1),
        },
        Send {
            from: B,
            to: C,
            msg: 3,
            after: None,
        },
        GoOffline(C),
        Send {
            from: A,
            to: C,
            msg: 4,
            after: None,
        },
        GroupCreate {
            admin: A,
            members: vec![A, B, C],
        },
        GoOnline(C),
        Send {
            from: C,
            to: A,
            msg: 5,
            after: Some(4),
        },
        Send {
            from: C,
            to: B,
            msg: 6,
            after: Some(3),
        },
        GoOffline(B),
        GroupRemove {
            admin: A,
            member: C,
        },
        GroupSend {
            from: A,
            msg: 1,
            min_epoch: 1,
        },
        GoOnline(B),
    ]
}
