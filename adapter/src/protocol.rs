//! The adapter protocol, version 1: every message the conformance runner and an adapter exchange,
//! as Rust types whose serde form is the wire form (one JSON object per line; normative text and
//! examples in `docs/adapter.md`, JSON Schema in `adapter/schema/sotto-adapter-v1.schema.json`).
//!
//! ```text
//!   runner -> adapter   {"id":3,"op":"send","device":"A","to":"<user id>","text":"m1 ..."}
//!   adapter -> runner   {"id":3,"ok":{"message_id":"<hex>","envelope":"<hex>"}}
//!                   or  {"id":3,"error":{"kind":"failed","message":"..."}}
//! ```
//!
//! Identifiers: a device is the runner's label (`A`, `B`, ...); a user id is its text form (ID-1,
//! base32); message and group ids (ID-3, ID-4) and every byte string (envelopes, bundles) are
//! lower-case hex. One request is answered before the next is sent; the answer carries the
//! request's `id`.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks (`hello`).
pub const VERSION: u32 = 1;

/// One request line: the runner's request number and what it asks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestLine {
    /// Echoed in the answer.
    pub id: u64,
    /// What is asked.
    #[serde(flatten)]
    pub request: Request,
}

/// What the runner asks (the `op` field names the variant).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// First request of a run: the versions the runner speaks. Answer: [`Hello`].
    Hello {
        /// Versions the runner speaks (today `[1]`).
        versions: Vec<u32>,
    },
    /// Creates device `device` with its whole persistent state under `store_dir`, signs it up at
    /// the membership service and brings it online (the persistent session established, SUB-1).
    /// Answer: [`SignedUp`].
    Signup {
        /// The runner's label for the device.
        device: String,
        /// The membership service, `https://host:port`.
        membership_url: String,
        /// The service's CA certificate (PEM): the only trust anchor.
        ca_pem: String,
        /// The directory that holds everything the device keeps (Req7: the runner searches it).
        store_dir: String,
    },
    /// The device closes its MQTT session (it stays persistent at the broker). Answer: [`Done`].
    GoOffline {
        /// The device.
        device: String,
    },
    /// The device connects again and resumes its session. Answer: [`Done`].
    GoOnline {
        /// The device.
        device: String,
    },
    /// The device's contact card as a `sotto:` URI (CARD-2). Answer: [`Card`].
    Card {
        /// The device.
        device: String,
    },
    /// The person scans a card in person (CARD-4: the contact is verified). Answer: [`Outcome`].
    AddCard {
        /// The device that scans.
        device: String,
        /// The card URI.
        card: String,
    },
    /// The device adds `user_id` from the membership directory (unverified). Answer: [`Outcome`].
    AddFromDirectory {
        /// The device.
        device: String,
        /// Whom it adds.
        user_id: String,
    },
    /// The device takes `bundle` as the directory's answer for `user_id` and treats it exactly so
    /// (KEY-5 checks; unverified if it passes). The runner uses it for bundles the server forged.
    /// Answer: [`Outcome`].
    AddBundle {
        /// The device.
        device: String,
        /// The user the bundle claims to be.
        user_id: String,
        /// The bundle bytes (KEY-4), hex.
        bundle: String,
    },
    /// The device's public prekey bundle without a one-time prekey (KEY-4), as the directory
    /// serves it. Answer: [`Bundle`].
    Bundle {
        /// The device.
        device: String,
    },
    /// The device sends a text to a contact. Answer: [`Sent`].
    Send {
        /// The sender.
        device: String,
        /// The recipient's user id.
        to: String,
        /// The text.
        text: String,
    },
    /// The device creates a group with itself as admin and these members. Answer: [`GroupCreated`].
    GroupCreate {
        /// The admin.
        device: String,
        /// The other members' user ids.
        members: Vec<String>,
    },
    /// The device sends a text to a group. Answer: [`GroupSent`].
    GroupSend {
        /// The sender.
        device: String,
        /// The group id, hex.
        group_id: String,
        /// The text.
        text: String,
    },
    /// The admin adds a member (GRP-3). Answer: [`Done`].
    GroupAdd {
        /// The admin.
        device: String,
        /// The group id, hex.
        group_id: String,
        /// The new member's user id.
        member: String,
    },
    /// The admin removes a member (GRP-4). Answer: [`Done`].
    GroupRemove {
        /// The admin.
        device: String,
        /// The group id, hex.
        group_id: String,
        /// The member's user id.
        member: String,
    },
    /// The member leaves the group (GRP-11). Answer: [`Done`].
    GroupLeave {
        /// The member.
        device: String,
        /// The group id, hex.
        group_id: String,
    },
    /// The admin hands the group over to another member (GRP-12). Answer: [`Done`].
    GroupHandover {
        /// The admin.
        device: String,
        /// The group id, hex.
        group_id: String,
        /// The new admin's user id.
        to: String,
    },
    /// The device starts a new epoch with `to` (EPOCH-1). Answer: [`Done`].
    KeyUpdate {
        /// The device.
        device: String,
        /// The peer's user id.
        to: String,
    },
    /// The device publishes the identical envelope of message `message_id` to `to` again, now, if
    /// it still awaits its receipt (RX-6). Answer: [`Resent`].
    Resend {
        /// The sender.
        device: String,
        /// The message id, hex.
        message_id: String,
        /// The recipient's user id.
        to: String,
    },
    /// The attacker obtains the device's whole state (the model's Compromise): the adapter
    /// exports it and says how many bytes it was. Answer: [`Compromised`].
    Compromise {
        /// The device.
        device: String,
    },
    /// Attacker hook: a first message (X3DH-3) to `to`, built from `bundle` without a one-time
    /// prekey, claiming to come from this device, with the device's own identity keys or, with
    /// `own_keys`, keys the attacker generated. The envelope is returned, never sent, and the
    /// device's state must not change. Answer: [`Forged`].
    ForgeFirst {
        /// The device whose user id the message claims.
        device: String,
        /// The target's user id.
        to: String,
        /// The target's bundle (from `bundle`), hex.
        bundle: String,
        /// Identity keys of the attacker's own instead of the device's (mis-binding, RX-9).
        own_keys: bool,
        /// The text.
        text: String,
    },
    /// Attacker hook: a data message (CHAIN-2) on this device's newest receiving chain from
    /// `peer`, as a leak of this device's state allows. Returned, never sent; the device's state
    /// must not change. Answer: [`Forged`].
    ForgeData {
        /// The device whose receiving chain is used.
        device: String,
        /// The peer the message claims to come from.
        peer: String,
        /// The text.
        text: String,
    },
    /// Envelopes in the device's outbox due for publishing now (0 when nothing is in flight).
    /// Answer: [`Due`].
    Due {
        /// The device.
        device: String,
    },
    /// The device's observable state, as its store holds it. Answer: [`State`].
    State {
        /// The device.
        device: String,
    },
    /// Ends the run: every device goes offline and closes its store, then the adapter answers
    /// [`Done`] and exits.
    Shutdown,
}

impl Request {
    /// The `op` name.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Signup { .. } => "signup",
            Request::GoOffline { .. } => "go_offline",
            Request::GoOnline { .. } => "go_online",
            Request::Card { .. } => "card",
            Request::AddCard { .. } => "add_card",
            Request::AddFromDirectory { .. } => "add_from_directory",
            Request::AddBundle { .. } => "add_bundle",
            Request::Bundle { .. } => "bundle",
            Request::Send { .. } => "send",
            Request::GroupCreate { .. } => "group_create",
            Request::GroupSend { .. } => "group_send",
            Request::GroupAdd { .. } => "group_add",
            Request::GroupRemove { .. } => "group_remove",
            Request::GroupLeave { .. } => "group_leave",
            Request::GroupHandover { .. } => "group_handover",
            Request::KeyUpdate { .. } => "key_update",
            Request::Resend { .. } => "resend",
            Request::Compromise { .. } => "compromise",
            Request::ForgeFirst { .. } => "forge_first",
            Request::ForgeData { .. } => "forge_data",
            Request::Due { .. } => "due",
            Request::State { .. } => "state",
            Request::Shutdown => "shutdown",
        }
    }
}

/// One answer line: `ok` with the op's result, or `error`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResponseLine {
    /// The request's `id`.
    pub id: u64,
    /// The result of a request that succeeded (an object; its fields depend on the op).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<serde_json::Value>,
    /// Why it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

/// Why an adapter could not do what was asked.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Failure {
    /// Who is at fault.
    pub kind: FailureKind,
    /// For people; never matched by the runner.
    pub message: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// The kinds of [`Failure`]: who is at fault and what the runner makes of it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request is malformed (unknown device, bad hex, a field missing): the runner's fault.
    BadRequest,
    /// The adapter does not implement this op: the trace is replayed up to it and counted as a
    /// prefix, not a failure (an implementation can start with the pairwise ops).
    Unsupported,
    /// The implementation could not do it (a refused input where the model expects success, a
    /// device not online, a store error): the trace fails at this step.
    Failed,
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::BadRequest => "bad_request",
            FailureKind::Unsupported => "unsupported",
            FailureKind::Failed => "failed",
        })
    }
}

/// `hello`: the version the adapter chose and what it is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hello {
    /// One of the runner's versions.
    pub version: u32,
    /// The implementation under the adapter (name and version, for the report).
    pub implementation: String,
}

/// An op with nothing to return.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Done {}

/// `signup`: the user id the service assigned (ID-1, text form).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedUp {
    /// The user id.
    pub user_id: String,
}

/// `card`: the card URI.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Card {
    /// `sotto:...`
    pub card: String,
}

/// `add_card`, `add_from_directory`, `add_bundle`: whether the contact was added. A refusal
/// (an identity change, RX-9; a bundle that fails KEY-5) is an outcome, not a failure: the model
/// expects some refusals, and the state comparison shows whether this one was right.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    /// Added (or already there with the same identity).
    pub added: bool,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `bundle`: the bundle bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Bundle {
    /// KEY-4 bytes, hex.
    pub bundle: String,
}

/// `send`: the message id and the envelope queued for the recipient.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sent {
    /// ID-3, hex.
    pub message_id: String,
    /// The envelope (ENV-1) exactly as it is published, hex (the attacker's Replay re-injects it).
    pub envelope: String,
}

/// `group_create`: the new group's id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupCreated {
    /// ID-4, hex.
    pub group_id: String,
}

/// `group_send`: the message id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupSent {
    /// ID-3, hex.
    pub message_id: String,
}

/// `resend`: whether the envelope was still awaiting its receipt and went out again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resent {
    /// Published again.
    pub resent: bool,
}

/// `compromise`: the size of the exported state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compromised {
    /// Bytes (must be more than 0).
    pub state_bytes: u64,
}

/// `forge_first`, `forge_data`: the forged envelope.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Forged {
    /// The envelope, hex.
    pub envelope: String,
}

/// `due`: envelopes due for publishing now.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Due {
    /// How many.
    pub due: u64,
}

/// `state`: what the replay compares with the model after every step.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// The device's user id.
    pub user_id: String,
    /// Every contact, with whether it is verified (CARD-4).
    pub contacts: Vec<Contact>,
    /// Every pairwise session (X3DH, EPOCH).
    pub sessions: Vec<Session>,
    /// Every group the device is in.
    pub groups: Vec<Group>,
    /// Every text received and committed, in any conversation, including groups the device has
    /// left or was removed from (GRP-6, GRP-11).
    pub received: Vec<Received>,
    /// Every outbox entry awaiting its recipient's receipt (RX-5), texts and control messages.
    pub outbox: Vec<Pending>,
    /// Envelopes kept for later because they cannot be opened yet (RX-8).
    pub kept: u64,
}

/// A contact.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    /// User id.
    pub user_id: String,
    /// Verified in person (CARD-4).
    pub verified: bool,
}

/// A pairwise session.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    /// The peer's user id.
    pub peer: String,
    /// This device sent the first message (X3DH-3).
    pub initiator: bool,
    /// The newest epoch (EPOCH-1; 0 is the session's first).
    pub epoch: u32,
}

/// A group.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    /// ID-4, hex.
    pub group_id: String,
    /// The epoch this device holds (GRP-6).
    pub epoch: u32,
    /// Every member's user id, the admin first.
    pub members: Vec<String>,
}

/// A text received.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Received {
    /// The conversation: a user id, or a group id (hex) for a group.
    pub chat: Chat,
    /// The author's user id.
    pub sender: String,
    /// The text.
    pub text: String,
}

/// A conversation.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Chat {
    /// Pairwise, with this user id.
    User(String),
    /// In this group (hex).
    Group(String),
}

/// An outbox entry awaiting a receipt.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// ID-3, hex.
    pub message_id: String,
    /// The recipient's user id.
    pub to: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_is_flat_json_with_its_op() {
        let line = RequestLine {
            id: 3,
            request: Request::Send {
                device: "A".into(),
                to: "u".into(),
                text: "hi".into(),
            },
        };
        let json = serde_json::to_string(&line).expect("serialises");
        assert_eq!(
            json,
            r#"{"id":3,"op":"send","device":"A","to":"u","text":"hi"}"#
        );
        let back: RequestLine = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, line);
        assert_eq!(line.request.op(), "send");
        let bye: RequestLine = serde_json::from_str(r#"{"id":9,"op":"shutdown"}"#).expect("unit");
        assert_eq!(bye.request, Request::Shutdown);
    }

    #[test]
    fn an_unknown_op_does_not_parse() {
        assert!(serde_json::from_str::<RequestLine>(r#"{"id":1,"op":"fly"}"#).is_err());
        assert!(serde_json::from_str::<RequestLine>(r#"{"id":1,"op":"card"}"#).is_err());
    }

    #[test]
    fn a_failure_names_its_kind_in_snake_case() {
        let line = ResponseLine {
            id: 4,
            ok: None,
            error: Some(Failure::new(FailureKind::BadRequest, "no device Z")),
        };
        assert_eq!(
            serde_json::to_string(&line).expect("serialises"),
            r#"{"id":4,"error":{"kind":"bad_request","message":"no device Z"}}"#
        );
    }
}
