//! Actions, named in the protocol vocabulary (docs/protocol.md section 18).
//!
//! Actions are structural (devices, message names, forgery kinds), never term ids, so a recorded
//! trace means the same thing in every run and can be replayed with `Path::from_actions`.

use crate::state::What;
use crate::term::Dev;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a forged prekey bundle contains (ForgeBundle).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Forgery {
    /// The server's own identity and prekeys under the victim's user id (trust on first use).
    Impersonate,
    /// The victim's real `IKs` with the server's `IKd` and `SPK` (signatures cannot verify).
    SwapKeys,
}

/// A message the attacker builds and injects (Inject).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Injection {
    /// A first message claiming to come from `claim` (needs `DH(IKd_claim, SPK_target)`).
    FirstAs(Dev),
    /// A data message on the target's newest receiving chain from `peer` (needs that chain key).
    DataAs(Dev),
    /// A first message under a user id the target knows, `claim`, with the server's own
    /// identity keys (a mis-binding the server can always build; RX-9 refuses it).
    FirstWithOwnKeys(Dev),
    /// A group key for the target's group, membership signed by `claim`, a member who is not
    /// its admin, handed over (kind 9) by the best handover the attacker has for `claim`: an
    /// admin's it learned, or one `claim` signs itself; on the target's receiving chain from
    /// `claim` (needs that chain key and `claim`'s `IKs`; GRP-4 and GRP-12 refuse it).
    GroupKeyAs(Dev),
}

/// One step of the model.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// SIGNUP-1.
    Signup(Dev),
    /// CARD-2: `by` scans `of`'s card in person.
    ScanCard {
        /// Scanner.
        by: Dev,
        /// Card owner.
        of: Dev,
    },
    /// KEY-5: the directory serves `of`'s genuine bundle to `by`.
    FetchBundle {
        /// Fetcher.
        by: Dev,
        /// Bundle owner.
        of: Dev,
    },
    /// The membership service serves a forged bundle instead.
    ForgeBundle {
        /// Fetcher.
        by: Dev,
        /// Claimed owner.
        of: Dev,
        /// What is forged.
        forgery: Forgery,
    },
    /// Seal text `m<msg>` (ENV-2..4), keep it in the outbox (RX-6), publish it if online.
    Send {
        /// Sender.
        from: Dev,
        /// Recipient.
        to: Dev,
        /// Text index.
        msg: u8,
    },
    /// EPOCH-2: a key update that turns the epoch.
    KeyUpdate {
        /// Who turns.
        from: Dev,
        /// Peer.
        to: Dev,
    },
    /// Disconnect; what was not committed is lost.
    GoOffline(Dev),
    /// Reconnect and flush the outbox.
    GoOnline(Dev),
    /// GRP-1.
    GroupCreate {
        /// Admin.
        admin: Dev,
    },
    /// GRP-6 add.
    GroupAdd {
        /// Admin.
        admin: Dev,
        /// New member.
        member: Dev,
    },
    /// GRP-6 remove.
    GroupRemove {
        /// Admin.
        admin: Dev,
        /// Removed member.
        member: Dev,
    },
    /// GRP-7/GRP-8.
    GroupSend {
        /// Sender.
        from: Dev,
        /// Group text index.
        msg: u8,
    },
    /// GRP-11: a member leaves (kind 7 to the admin) and deletes the group's keys at once.
    GroupLeave {
        /// The leaver.
        member: Dev,
    },
    /// GRP-12: the admin hands the role over (kind 8 to the new admin).
    GroupHandover {
        /// The admin.
        admin: Dev,
        /// The new admin.
        to: Dev,
    },
    /// Deliver the first queued packet; the device opens it (RX-1..RX-3), commits the result
    /// with its receipt in one transaction (RX-4, RX-5), then acknowledges it so the broker drops
    /// its copy (Req6). In the variant `ack-before-commit` the ack comes first and the commit is
    /// a separate [`Action::Commit`].
    Receive(Dev),
    /// Broken variant `ack-before-commit` only: commit what was acknowledged earlier.
    Commit(Dev),
    /// RX-6: the timeout fired; publish the identical envelope again.
    Resend {
        /// Sender.
        from: Dev,
        /// Recipient.
        to: Dev,
        /// Which message.
        what: What,
    },
    /// Broker drops the i-th waiting packet of an inbox.
    Drop {
        /// Inbox owner.
        inbox: Dev,
        /// Position among waiting packets.
        index: u8,
    },
    /// Broker queues a second copy of the i-th waiting packet.
    Duplicate {
        /// Inbox owner.
        inbox: Dev,
        /// Position among waiting packets.
        index: u8,
    },
    /// Broker moves the newest waiting packet to the front.
    Reorder {
        /// Inbox owner.
        inbox: Dev,
    },
    /// Broker queues a recorded first message again.
    Replay {
        /// Inbox owner (the original recipient).
        inbox: Dev,
        /// Original sender.
        from: Dev,
        /// The message the first message carried.
        what: What,
    },
    /// Attacker queues a message it built.
    Inject {
        /// Target inbox.
        inbox: Dev,
        /// What it built.
        injection: Injection,
    },
    /// Broker restarts and loses every queue.
    Restart,
    /// The device's current state leaks.
    Compromise(Dev),
    /// The device's encrypted store leaks (Req7).
    Steal(Dev),
    /// The CA issues a certificate for the device's user id to the attacker.
    IssueCert(Dev),
}

/// Generates [`Action::NAMES`] and [`Action::name`] from one list of the variants, so the two
/// cannot drift (the match is exhaustive: a new variant must be listed).
macro_rules! action_names {
    ($($v:ident),* $(,)?) => {
        /// Every action's name ([`Action::name`]), in declaration order: what the replay's
        /// coverage is measured against.
        pub const NAMES: &'static [&'static str] = &[$(stringify!($v)),*];

        /// The vocabulary name of the action.
        pub fn name(&self) -> &'static str {
            match self {
                $(Action::$v { .. } => stringify!($v),)*
            }
        }
    };
}

impl Action {
    action_names!(
        Signup,
        ScanCard,
        FetchBundle,
        ForgeBundle,
        Send,
        KeyUpdate,
        GoOffline,
        GoOnline,
        GroupCreate,
        GroupAdd,
        GroupRemove,
        GroupSend,
        GroupLeave,
        GroupHandover,
        Receive,
        Commit,
        Resend,
        Drop,
        Duplicate,
        Reorder,
        Replay,
        Inject,
        Restart,
        Compromise,
        Steal,
        IssueCert,
    );

    /// Whether the server side (the attacker) takes this step.
    pub fn by_attacker(&self) -> bool {
        matches!(
            self,
            Action::ForgeBundle { .. }
                | Action::Drop { .. }
                | Action::Duplicate { .. }
                | Action::Reorder { .. }
                | Action::Replay { .. }
                | Action::Inject { .. }
                | Action::Restart
                | Action::Compromise(_)
                | Action::Steal(_)
                | Action::IssueCert(_)
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Signup(d) => write!(f, "Signup: {d} uploads its public keys, gets a user id"),
            Action::ScanCard { by, of } => write!(f, "ScanCard: {by} scans {of}'s card in person"),
            Action::FetchBundle { by, of } => {
                write!(
                    f,
                    "FetchBundle: {by} gets {of}'s genuine bundle from the directory"
                )
            }
            Action::ForgeBundle { by, of, forgery } => match forgery {
                Forgery::Impersonate => write!(
                    f,
                    "ForgeBundle: the server hands {by} its own keys as {of}'s bundle"
                ),
                Forgery::SwapKeys => write!(
                    f,
                    "ForgeBundle: the server hands {by} {of}'s IKs with its own IKd and SPK"
                ),
            },
            Action::Send { from, to, msg } => write!(f, "Send: {from} seals m{msg} for {to}"),
            Action::KeyUpdate { from, to } => {
                write!(f, "KeyUpdate: {from} sends {to} a key update")
            }
            Action::GoOffline(d) => write!(f, "GoOffline: {d} disconnects"),
            Action::GoOnline(d) => write!(f, "GoOnline: {d} reconnects"),
            Action::GroupCreate { admin } => write!(f, "GroupCreate: {admin} creates the group"),
            Action::GroupAdd { admin, member } => {
                write!(f, "GroupAdd: {admin} adds {member} and rekeys")
            }
            Action::GroupRemove { admin, member } => {
                write!(f, "GroupRemove: {admin} removes {member}")
            }
            Action::GroupSend { from, msg } => write!(f, "GroupSend: {from} sends g{msg}"),
            Action::GroupLeave { member } => {
                write!(
                    f,
                    "GroupLeave: {member} leaves the group and deletes its keys"
                )
            }
            Action::GroupHandover { admin, to } => {
                write!(
                    f,
                    "GroupHandover: {admin} hands the admin role over to {to}"
                )
            }
            Action::Receive(d) => write!(
                f,
                "Receive: {d} takes its next packet from the broker and handles it"
            ),
            Action::Commit(d) => write!(f, "Commit: {d} commits the packet it acknowledged"),
            Action::Resend { from, to, what } => {
                write!(
                    f,
                    "Resend: {from}'s timeout fires, {what} goes to {to} again"
                )
            }
            Action::Drop { inbox, index } => {
                write!(
                    f,
                    "Drop: the broker drops packet {index} of {inbox}'s queue"
                )
            }
            Action::Duplicate { inbox, index } => {
                write!(
                    f,
                    "Duplicate: the broker queues packet {index} of {inbox}'s queue twice"
                )
            }
            Action::Reorder { inbox } => {
                write!(
                    f,
                    "Reorder: the broker moves {inbox}'s newest packet to the front"
                )
            }
            Action::Replay { inbox, from, what } => write!(
                f,
                "Replay: the broker queues {from}'s recorded first message ({what}) for {inbox} again"
            ),
            Action::Inject { inbox, injection } => match injection {
                Injection::FirstAs(p) => {
                    write!(f, "Inject: the server sends {inbox} a first message as {p}")
                }
                Injection::DataAs(p) => {
                    write!(f, "Inject: the server sends {inbox} a data message as {p}")
                }
                Injection::FirstWithOwnKeys(p) => write!(
                    f,
                    "Inject: the server sends {inbox} a first message as {p} with its own identity keys"
                ),
                Injection::GroupKeyAs(p) => write!(
                    f,
                    "Inject: the server sends {inbox} a group key signed by {p}, who is not the admin, with a handover to {p}"
                ),
            },
            Action::Restart => write!(f, "Restart: the broker restarts and loses every queue"),
            Action::Compromise(d) => write!(f, "Compromise: {d}'s current state leaks"),
            Action::Steal(d) => write!(f, "Steal: {d}'s encrypted store leaks"),
            Action::IssueCert(d) => {
                write!(
                    f,
                    "IssueCert: the CA issues the server a certificate as {d}"
                )
            }
        }
    }
}
