//! The data of the report: the requirements table ([`REQUIREMENTS`]), which model properties,
//! replay action kinds, vector areas and wiretap evidence back each row, and what the report is
//! built from ([`Inputs`], with the sources that gave nothing: [`Absent`]).
//!
//! The rules of the mapping are in the [`report`](crate::report) module documentation.

use std::fmt;

use serde::{Deserialize, Serialize};
use sotto_model::properties::names::*;

use crate::evidence::{ModelEvidence, ReplayEvidence, VectorEvidence, WiretapEvidence};

/// Where evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The exhaustive model check (`sotto-model`).
    Model,
    /// The replay of model traces against the real stack.
    Replay,
    /// The known-answer vectors.
    Vectors,
    /// The wiretap of the server side of the real stack.
    Wiretap,
}

impl Source {
    /// Every source, in table order.
    pub const ALL: [Source; 4] = [
        Source::Model,
        Source::Replay,
        Source::Vectors,
        Source::Wiretap,
    ];

    /// Lowercase name (`model`, `replay`, `vectors`, `wiretap`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Model => "model",
            Source::Replay => "replay",
            Source::Vectors => "vectors",
            Source::Wiretap => "wiretap",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One requirement of the paper and where its evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// `Req1` .. `Req8`.
    pub id: &'static str,
    /// What the paper asks.
    pub title: &'static str,
    /// Model properties (names as `sotto-model` prints them); replayed traces exported for one
    /// of them count for the row.
    pub properties: &'static [&'static str],
    /// Model action kinds whose replayed steps count for the row.
    pub replay_actions: &'static [&'static str],
    /// Whether the row fails without replay evidence.
    pub replay_required: bool,
    /// Vector areas (file names without `.json`); none means the vectors do not apply.
    pub vector_areas: &'static [&'static str],
    /// Whether the wiretap is required evidence for the row.
    pub wiretap: bool,
}

impl Requirement {
    /// Whether `source` must give evidence for this row.
    pub fn requires(&self, source: Source) -> bool {
        match source {
            Source::Model => !self.properties.is_empty(),
            Source::Replay => self.replay_required,
            Source::Vectors => !self.vector_areas.is_empty(),
            Source::Wiretap => self.wiretap,
        }
    }

    /// Whether `source` has anything to say about this row (required or not).
    pub fn uses(&self, source: Source) -> bool {
        match source {
            Source::Replay => {
                self.replay_required
                    || !self.replay_actions.is_empty()
                    || !self.properties.is_empty()
            }
            other => self.requires(other),
        }
    }
}

/// Req1..Req8 and their evidence (see the [`report`](crate::report) module documentation).
pub const REQUIREMENTS: [Requirement; 8] = [
    Requirement {
        id: "Req1",
        title: "signup with no personal data",
        properties: &[REQ1_NO_PERSONAL],
        replay_actions: &["Signup", "IssueCert"],
        replay_required: true,
        vector_areas: &["signup", "membership"],
        wiretap: false,
    },
    Requirement {
        id: "Req2",
        title: "safe key exchange, in person without internet",
        properties: &[
            REQ5_NO_MITM_VERIFIED,
            X3DH8_REPLAY_REJECTED,
            RX9_IDENTITY_STABLE,
            S_FORGED_REJECTED,
            S_REPLAY,
        ],
        replay_actions: &["ScanCard", "FetchBundle", "ForgeBundle"],
        replay_required: true,
        vector_areas: &["card", "session-setup", "bundle", "kdf"],
        wiretap: false,
    },
    Requirement {
        id: "Req3",
        title: "encryption with no user effort",
        properties: &[PCS, FS, S_EPOCHS, S_PCS, S_FS, S_FS_LIMIT],
        replay_actions: &["Send", "KeyUpdate", "GroupSend"],
        replay_required: true,
        vector_areas: &["chain", "kdf", "epoch"],
        wiretap: false,
    },
    Requirement {
        id: "Req4",
        title: "offline messages carry the key share",
        properties: &[RX4_EXACTLY_ONCE],
        replay_actions: &["GoOffline", "GoOnline"],
        replay_required: true,
        vector_areas: &["keyshare", "first-message"],
        wiretap: false,
    },
    Requirement {
        id: "Req5",
        title: "users authenticate each other",
        properties: &[
            REQ5_AGREEMENT,
            REQ5_NO_MITM_VERIFIED,
            RX9_IDENTITY_STABLE,
            SAFE1_TOFU_DISCOVERABLE,
            GRP12_ADMIN_CHAIN,
            TOFU_LIMIT,
            S_VERIFIED_COMMIT,
            S_FORGED_REJECTED,
            S_HANDOVER,
        ],
        replay_actions: &["ScanCard", "ForgeBundle", "Inject", "GroupHandover"],
        replay_required: true,
        vector_areas: &["session-setup", "card", "epoch", "group"],
        wiretap: false,
    },
    Requirement {
        id: "Req6",
        title: "the server stores no communications",
        properties: &[
            REQ6_NOTHING_HELD,
            RX4_ACKED_NOT_LOST,
            RX4_EXACTLY_ONCE,
            RX2_AT_MOST_ONCE,
            X3DH8_REPLAY_REJECTED,
            GRP3_CATCH_UP,
            S_SETTLED,
            S_DUPLICATE,
            S_REPLAY,
            S_RESTART,
            S_RESEND,
            S_RETRY,
            S_CATCH_UP,
        ],
        replay_actions: &[
            "Receive",
            "Commit",
            "Resend",
            "Drop",
            "Duplicate",
            "Reorder",
            "Replay",
            "Restart",
        ],
        replay_required: true,
        vector_areas: &["first-message", "epoch"],
        wiretap: true,
    },
    Requirement {
        id: "Req7",
        title: "the device store is encrypted",
        properties: &[REQ7_STOLEN_STORE, S_STOLEN],
        replay_actions: &["Steal"],
        replay_required: false,
        vector_areas: &[],
        wiretap: false,
    },
    Requirement {
        id: "Req8",
        title: "the server can never read a chat",
        properties: &[
            REQ8_SECRECY,
            GRP6_REMOVED_MEMBER,
            GRP12_ADMIN_CHAIN,
            FS,
            PCS,
            S_AFTER_REMOVAL,
            S_LEAVE,
            S_FS,
            S_PCS,
        ],
        replay_actions: &["Inject", "Compromise", "GroupRemove", "GroupLeave"],
        replay_required: false,
        vector_areas: &["envelope", "keyshare", "group"],
        wiretap: true,
    },
];

/// A source that gave no evidence: skipped on purpose, or not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Absent {
    /// The source.
    pub source: Source,
    /// Which run (a broker, a configuration), or empty for the whole source.
    pub label: String,
    /// Skipped on purpose (`--skip`): the rows show SKIPPED. Otherwise the run failed to run
    /// and the rows that need it FAIL.
    pub skipped: bool,
    /// Why.
    pub reason: String,
}

impl Absent {
    /// The caller skipped `source` on purpose.
    pub fn skipped(source: Source) -> Self {
        Absent {
            source,
            label: String::new(),
            skipped: true,
            reason: "on request".into(),
        }
    }

    /// A run of `source` (`label`: a broker or configuration) could not run, for `reason`.
    pub fn not_run(source: Source, label: impl Into<String>, reason: impl Into<String>) -> Self {
        Absent {
            source,
            label: label.into(),
            skipped: false,
            reason: reason.into(),
        }
    }

    pub(super) fn describe(&self) -> String {
        if self.label.is_empty() {
            self.reason.clone()
        } else {
            format!("{}: {}", self.label, self.reason)
        }
    }
}

/// Everything the report is built from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inputs {
    /// Model checks (one per configuration).
    pub model: Vec<ModelEvidence>,
    /// Trace replays (one per broker).
    pub replay: Vec<ReplayEvidence>,
    /// Wiretaps (one per broker).
    pub wiretap: Vec<WiretapEvidence>,
    /// The vectors, if they ran.
    pub vectors: Option<VectorEvidence>,
    /// Sources skipped or not run. A source with neither evidence nor an entry here counts as
    /// not run.
    pub absent: Vec<Absent>,
    /// The coverage gaps docs/coverage.md explains ([`super::coverage::Gaps::parse`]).
    pub gaps: super::coverage::Gaps,
}
