//! What each conformance run hands to the requirements report ([`crate::report`]).
//!
//! Plain data, serializable, so that `sotto check --json` can print it and CI can keep it. Each
//! producer fills its own struct: the model check ([`ModelEvidence`]), the trace replay against the
//! real stack ([`ReplayEvidence`]), the wiretap ([`WiretapEvidence`]) and the known-answer vectors
//! ([`VectorEvidence`]).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One property of the model, as checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyEvidence {
    /// Property name (`Req8 ...`, `sometimes ...`), as `sotto-model` names it.
    pub name: String,
    /// `always` (an invariant) or `sometimes` (an example that must exist).
    pub always: bool,
    /// Holds (invariant) or was found (example).
    pub passed: bool,
    /// Skipped by this configuration (checked in another one).
    pub skipped: bool,
}

/// The model check of one configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelEvidence {
    /// Configuration name (`small`, `default`, `deep`).
    pub config: String,
    /// Unique states explored.
    pub states: usize,
    /// Depth reached.
    pub max_depth: usize,
    /// Whether the search was exhaustive.
    pub exhaustive: bool,
    /// Seconds taken.
    pub seconds: f64,
    /// Every property.
    pub properties: Vec<PropertyEvidence>,
    /// Per refusal branch of the model (`sotto_model::refusal::Refusal::describe`), the explored
    /// transitions that take it; empty unless the search was exhaustive.
    #[serde(default)]
    pub refusals: BTreeMap<String, u64>,
}

/// The replay of model traces against the real stack, on one broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayEvidence {
    /// `embedded` or `mosquitto`.
    pub broker: String,
    /// Traces replayed to the end with every state equal.
    pub traces_passed: usize,
    /// Traces replayed.
    pub traces: usize,
    /// Steps replayed (each compared with the model's abstract state).
    pub steps: usize,
    /// Steps replayed per model action kind (`Send`, `Drop`, ...).
    pub actions: BTreeMap<String, usize>,
    /// Model action kinds the replay cannot map yet, with the number of traces skipped for them.
    pub unmapped: BTreeMap<String, usize>,
    /// Adapter ops the driven implementation answered `unsupported` (`sotto-conformance drive`),
    /// as `<model action> (<op>)`, with the number of traces that stopped there.
    #[serde(default)]
    pub unsupported: BTreeMap<String, usize>,
    /// The property each replayed trace was exported for (`sometimes ...`), or `run <seed>`.
    pub shown: Vec<String>,
    /// Failures: trace, step and a readable difference.
    pub failures: Vec<String>,
    /// Each trace replayed to the end (`<config>/<name>`), with the action kinds it took.
    #[serde(default)]
    pub kinds: BTreeMap<String, BTreeSet<String>>,
}

/// The wiretap of one run of the real stack (Req8).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WiretapEvidence {
    /// `embedded` or `mosquitto`.
    pub broker: String,
    /// MQTT packets recorded on the server side (both directions).
    pub frames: usize,
    /// Bytes of those packets.
    pub bytes: usize,
    /// HTTP requests and responses of the membership service recorded.
    pub http_exchanges: usize,
    /// Server-side files searched (databases, broker persistence).
    pub files: usize,
    /// Distinct secrets searched for (canaries, texts, keys, message ids).
    pub needles: usize,
    /// Every secret found, where, and every acknowledged envelope the broker still held: empty
    /// when Req8 and Req6 hold.
    pub findings: Vec<String>,
    /// Envelopes the broker delivered and their recipient acknowledged, each looked for in the
    /// broker's own state afterwards (Req6 at the broker).
    #[serde(default)]
    pub acknowledged_envelopes: usize,
    /// Where that state was read (the embedded broker's inboxes, Mosquitto's persistence file).
    #[serde(default)]
    pub retention_source: String,
    /// Stored envelope records in the broker's files whose metadata was searched for a sender
    /// beside the recipient (BROKER-6); 0 where the broker keeps nothing on disk.
    #[serde(default)]
    pub stored_records: usize,
    /// Server log files searched for user ids and addresses (BROKER-6).
    #[serde(default)]
    pub logs: usize,
    /// Secrets searched per class (`canary`, `chain-key`, ...; see [`SECRET_CLASSES`]).
    #[serde(default)]
    pub classes: BTreeMap<String, usize>,
}

/// Every class of secret the wiretap must search for: what the people wrote (canaries, texts,
/// message ids), what their devices hold (`sotto_core::device::SecretClass`), their TLS keys and
/// store passphrases. A class with no needle in a run is a coverage gap.
pub const SECRET_CLASSES: [&str; 14] = [
    "canary",
    "text",
    "message-id",
    "identity-key",
    "prekey-secret",
    "root-key",
    "ratchet-secret",
    "chain-key",
    "message-key",
    "nonce-seed",
    "confirm-key",
    "key-share",
    "tls-key",
    "passphrase",
];

/// The known-answer vectors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VectorEvidence {
    /// Cases per area file (`kdf`, `keyshare`, ...): (passed, total).
    pub areas: BTreeMap<String, (usize, usize)>,
    /// Every error code some invalid case expects (`vectors::expected`).
    #[serde(default)]
    pub expected_codes: BTreeSet<String>,
    /// Every rule an invalid case is named after (`vectors::expected`).
    #[serde(default)]
    pub pinned_rules: BTreeSet<String>,
    /// Failing cases, as `area/case: why`.
    pub failures: Vec<String>,
}
