//! The requirements report: Req1..Req8, each with the evidence that backs it and a verdict.
//!
//! ```text
//!   ModelEvidence*  ReplayEvidence*  VectorEvidence?  WiretapEvidence*  Absent*
//!          \              |                |                /            /
//!           +------------ Report::build(Inputs) -----------+------------+
//!                                   |
//!             rows Req1..Req8: PASS / FAIL / SKIPPED, render_table, to_json
//! ```
//!
//! # The mapping ([`REQUIREMENTS`])
//!
//! It follows `docs/requirements.md`:
//!
//! - **model**: the properties the requirements table names for the row, plus the `sometimes`
//!   properties that show those invariants are not vacuous (named after the same rules). Every
//!   property of `sotto-model` belongs to at least one row. Required for every row.
//! - **replay**: a replayed trace counts for a row when it was exported for one of the row's
//!   model properties or took one of the row's action kinds (`ReplayEvidence::kinds`); the steps
//!   count the replayed model actions of
//!   the kinds listed for the row (`ReplayEvidence::actions`), e.g. Req4 counts `GoOffline` and
//!   `GoOnline`. A trace that diverged from the model fails every row that uses the replay: the
//!   model's guarantees carry over to the real stack only if the stack behaves like the model.
//!   Required for Req1..Req6; Req7 (a stolen phone) and Req8 (the wiretap is its real-stack
//!   evidence) only show what the replay adds.
//! - **vectors**: the areas (files of `vectors/`) the requirements table names for the row;
//!   Req7 has none (the store is checked by the store's own tests, not by vectors).
//! - **wiretap**: Req8 (frames, HTTP exchanges and server files searched for secrets) and Req6
//!   (the server files: a secret found at rest is a communication the server kept). A finding
//!   fails both rows.
//!
//! # Verdicts
//!
//! A row FAILs if any of its evidence fails, or if a source required for it gave no evidence
//! for it: not run (an error, or nothing given), or ran but showed nothing for this row. A
//! source the caller skipped on purpose ([`Absent::skipped`]) makes the row SKIPPED, never PASS.
//! Otherwise the row PASSes. The report passes when every row passes and no failing evidence
//! is left that belongs to no row.

use std::collections::{BTreeMap, BTreeSet};
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

/// Req1..Req8 and their evidence (see the module documentation).
pub const REQUIREMENTS: [Requirement; 8] = [
    Requirement {
        id: "Req1",
        title: "signup with no personal data",
        properties: &[REQ1_NO_PERSONAL],
        replay_actions: &["Signup", "IssueCert"],
        replay_required: true,
        vector_areas: &["signup"],
        wiretap: false,
    },
    Requirement {
        id: "Req2",
        title: "safe key exchange, in person without internet",
        properties: &[
            REQ5_NO_MITM_VERIFIED,
            X3DH8_REPLAY_REJECTED,
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
        replay_actions: &["Send", "EpochTurn", "GroupSend"],
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
            TOFU_LIMIT,
            S_VERIFIED_COMMIT,
            S_FORGED_REJECTED,
        ],
        replay_actions: &["ScanCard", "ForgeBundle", "Inject"],
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
            FS,
            PCS,
            S_AFTER_REMOVAL,
            S_FS,
            S_PCS,
        ],
        replay_actions: &["Inject", "Compromise", "GroupRemove"],
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

    fn describe(&self) -> String {
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
}

/// The verdict on a requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    /// Every required source gave evidence for it and nothing failed.
    Pass,
    /// Some evidence failed, or a required source gave none.
    Fail,
    /// Nothing failed, but a required source was skipped on purpose.
    Skipped,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "SKIPPED",
        })
    }
}

/// What one source says about one requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    /// Evidence, all of it good.
    Pass,
    /// Some evidence failed.
    Fail,
    /// The source did not run (an error, or nothing was given).
    NotRun,
    /// The source ran but showed nothing for this requirement.
    NoEvidence,
    /// Skipped on purpose.
    Skipped,
    /// The source does not apply to this requirement.
    NotApplicable,
}

/// One source's summary for one requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// The source.
    pub source: Source,
    /// Whether the requirement needs evidence from it.
    pub required: bool,
    /// What it says.
    pub state: CellState,
    /// A short summary (counts), as the table shows it.
    pub summary: String,
}

/// How a model property fared in one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyStatus {
    /// Holds (`always`) or found (`sometimes`).
    Passed,
    /// A counterexample, or no example.
    Failed,
    /// Left by the configuration to another one.
    Skipped,
    /// Not a property of this configuration (it does not use the feature).
    Absent,
}

/// A model property of a requirement, in one configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyCheck {
    /// Property name.
    pub name: String,
    /// Configuration.
    pub config: String,
    /// Outcome.
    pub status: PropertyStatus,
}

/// What one replay shows for one requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayCount {
    /// The broker.
    pub broker: String,
    /// Replayed traces exported for one of the requirement's properties or taking one of its
    /// action kinds.
    pub traces: usize,
    /// Replayed steps of the requirement's action kinds.
    pub steps: usize,
    /// Those steps per action kind.
    pub actions: BTreeMap<String, usize>,
    /// The requirement's action kinds the replay cannot map yet, with the traces skipped.
    pub unmapped: BTreeMap<String, usize>,
}

/// The vector cases of one area.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AreaCount {
    /// The area.
    pub area: String,
    /// Cases passed.
    pub passed: usize,
    /// Cases run (0 when the area was not checked).
    pub total: usize,
}

/// What one wiretap shows for one requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WiretapCount {
    /// The broker.
    pub broker: String,
    /// MQTT packets inspected.
    pub frames: usize,
    /// HTTP exchanges inspected.
    pub http_exchanges: usize,
    /// Server files searched.
    pub files: usize,
    /// Secrets searched for.
    pub needles: usize,
    /// Secrets found.
    pub findings: usize,
}

/// One requirement with its evidence and verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReqRow {
    /// `Req1` .. `Req8`.
    pub req: String,
    /// What the paper asks.
    pub title: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Model properties, per configuration checked.
    pub properties: Vec<PropertyCheck>,
    /// Unique states explored by the model checks that checked one of its properties.
    pub states: usize,
    /// Replay, per broker.
    pub replay: Vec<ReplayCount>,
    /// Vector areas.
    pub vectors: Vec<AreaCount>,
    /// Wiretap, per broker (empty when the wiretap does not apply).
    pub wiretap: Vec<WiretapCount>,
    /// One cell per source, in [`Source::ALL`] order.
    pub cells: Vec<Cell>,
    /// Why the row fails (or is skipped), one reason per line.
    pub failures: Vec<String>,
    /// Things worth knowing that do not change the verdict.
    pub notes: Vec<String>,
}

/// The report over Req1..Req8.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Req1..Req8.
    pub rows: Vec<ReqRow>,
    /// Model checks used.
    pub model: Vec<ModelEvidence>,
    /// Replays used.
    pub replay: Vec<ReplayEvidence>,
    /// Wiretaps used.
    pub wiretap: Vec<WiretapEvidence>,
    /// Vectors used.
    pub vectors: Option<VectorEvidence>,
    /// Sources skipped or not run.
    pub absent: Vec<Absent>,
    /// Failing evidence that belongs to no requirement (a model property or vector area the
    /// mapping does not know); it fails the report.
    pub unattributed: Vec<String>,
}

/// What [`Report::build`] collects for one cell.
struct CellBuild {
    has_evidence: bool,
    failures: Vec<String>,
    summary: String,
}

impl Report {
    /// Builds the report from the evidence (see the module documentation for the rules).
    pub fn build(inputs: Inputs) -> Report {
        let rows = REQUIREMENTS
            .iter()
            .map(|req| build_row(req, &inputs))
            .collect();
        let unattributed = unattributed(&inputs);
        let Inputs {
            model,
            replay,
            wiretap,
            vectors,
            absent,
        } = inputs;
        Report {
            rows,
            model,
            replay,
            wiretap,
            vectors,
            absent,
            unattributed,
        }
    }

    /// Whether every requirement passes and no failing evidence is left unattributed. A skipped
    /// source never passes.
    pub fn passed(&self) -> bool {
        self.rows.len() == REQUIREMENTS.len()
            && self.rows.iter().all(|r| r.verdict == Verdict::Pass)
            && self.unattributed.is_empty()
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Plain data always serializes; this only keeps the output JSON if it ever does not.
            serde_json::json!({ "error": e.to_string() }).to_string()
        })
    }

    /// A fixed-width table (one line per requirement), then one line per failure with its
    /// reason, notes, and a verdict line.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        out.push_str("Sotto requirements report\n\n");
        for line in self.source_lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out.push('\n');
        let header = [
            "req", "verdict", "model", "replay", "vectors", "wiretap", "paper",
        ];
        let widths = [5, 8, 27, 22, 19, 19];
        let mut line = String::new();
        for (h, w) in header.iter().zip(widths.iter()) {
            line.push_str(&format!("{h:<w$} "));
        }
        line.push_str(header[6]);
        out.push_str(line.trim_end());
        out.push('\n');
        let mut rule = String::new();
        for w in widths {
            rule.push_str(&"-".repeat(w - 1));
            rule.push_str("  ");
        }
        rule.push_str(&"-".repeat(20));
        out.push_str(&rule);
        out.push('\n');
        for r in &self.rows {
            let mut line = format!("{:<5} {:<8} ", r.req, r.verdict.to_string());
            for (c, w) in r.cells.iter().zip(widths[2..].iter()) {
                line.push_str(&format!("{:<w$} ", cell_text(c)));
            }
            line.push_str(&r.title);
            out.push_str(&line);
            out.push('\n');
        }
        let failing: Vec<&ReqRow> = self
            .rows
            .iter()
            .filter(|r| !r.failures.is_empty())
            .collect();
        if !failing.is_empty() || !self.unattributed.is_empty() {
            out.push_str("\nfailures:\n");
            for r in failing {
                for f in &r.failures {
                    out.push_str(&format!(
                        "  {:<5} {:<8} {f}\n",
                        r.req,
                        r.verdict.to_string()
                    ));
                }
            }
            for f in &self.unattributed {
                out.push_str(&format!("  {:<5} {:<8} {f}\n", "-", "FAIL"));
            }
        }
        let notes: Vec<(&str, &String)> = self
            .rows
            .iter()
            .flat_map(|r| r.notes.iter().map(move |n| (r.req.as_str(), n)))
            .collect();
        if !notes.is_empty() {
            out.push_str("\nnotes:\n");
            for (req, n) in notes {
                out.push_str(&format!("  {req:<5} {n}\n"));
            }
        }
        out.push('\n');
        out.push_str(&self.verdict_line());
        out.push('\n');
        out
    }

    /// One line per source run (or absence).
    fn source_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for m in &self.model {
            let passed = m.properties.iter().filter(|p| p.passed).count();
            let checked = m.properties.iter().filter(|p| !p.skipped).count();
            lines.push(format!(
                "model    config `{}`: {} unique states, depth {}, {:.1} s{}, {passed}/{checked} properties",
                m.config,
                m.states,
                m.max_depth,
                m.seconds,
                if m.exhaustive { ", exhaustive" } else { ", NOT exhaustive" },
            ));
        }
        for e in &self.replay {
            lines.push(format!(
                "replay   {}: {}/{} traces, {} steps",
                e.broker, e.traces_passed, e.traces, e.steps
            ));
        }
        if let Some(v) = &self.vectors {
            let passed: usize = v.areas.values().map(|(p, _)| p).sum();
            let total: usize = v.areas.values().map(|(_, t)| t).sum();
            lines.push(format!(
                "vectors  {} areas: {passed}/{total} cases",
                v.areas.len()
            ));
        }
        for w in &self.wiretap {
            lines.push(format!(
                "wiretap  {}: {} frames ({} bytes), {} HTTP exchanges, {} files, {} secrets searched, {} found",
                w.broker,
                w.frames,
                w.bytes,
                w.http_exchanges,
                w.files,
                w.needles,
                w.findings.len()
            ));
        }
        for a in &self.absent {
            let what = if a.skipped { "SKIPPED" } else { "not run" };
            lines.push(format!("{:<8} {what}: {}", a.source.name(), a.describe()));
        }
        for s in Source::ALL {
            if !self.has_run(s) && !self.absent.iter().any(|a| a.source == s) {
                lines.push(format!("{:<8} not run: no evidence given", s.name()));
            }
        }
        lines
    }

    fn has_run(&self, s: Source) -> bool {
        match s {
            Source::Model => !self.model.is_empty(),
            Source::Replay => !self.replay.is_empty(),
            Source::Vectors => self.vectors.is_some(),
            Source::Wiretap => !self.wiretap.is_empty(),
        }
    }

    fn verdict_line(&self) -> String {
        let ids = |v: Verdict| -> Vec<&str> {
            self.rows
                .iter()
                .filter(|r| r.verdict == v)
                .map(|r| r.req.as_str())
                .collect()
        };
        if self.passed() {
            return format!("PASS: all {} requirements pass", self.rows.len());
        }
        let mut parts = Vec::new();
        let failed = ids(Verdict::Fail);
        if !failed.is_empty() {
            parts.push(format!("{} fail ({})", failed.len(), failed.join(", ")));
        }
        let skipped = ids(Verdict::Skipped);
        if !skipped.is_empty() {
            parts.push(format!(
                "{} skipped, not passed ({})",
                skipped.len(),
                skipped.join(", ")
            ));
        }
        if !self.unattributed.is_empty() {
            parts.push(format!(
                "{} failures belong to no requirement",
                self.unattributed.len()
            ));
        }
        format!("FAIL: {}", parts.join("; "))
    }
}

fn cell_text(c: &Cell) -> String {
    match c.state {
        CellState::Pass | CellState::Fail => c.summary.clone(),
        CellState::NotRun if c.required => "NOT RUN".into(),
        CellState::NotRun => "(not run)".into(),
        CellState::NoEvidence if c.required => "NO EVIDENCE".into(),
        CellState::NoEvidence => "(none)".into(),
        CellState::Skipped => "SKIPPED".into(),
        CellState::NotApplicable => "-".into(),
    }
}

fn build_row(req: &Requirement, inputs: &Inputs) -> ReqRow {
    let mut row = ReqRow {
        req: req.id.to_owned(),
        title: req.title.to_owned(),
        verdict: Verdict::Pass,
        properties: Vec::new(),
        states: 0,
        replay: Vec::new(),
        vectors: Vec::new(),
        wiretap: Vec::new(),
        cells: Vec::new(),
        failures: Vec::new(),
        notes: Vec::new(),
    };
    let mut fail = false;
    let mut skipped = false;
    for source in Source::ALL {
        let required = req.requires(source);
        if !req.uses(source) {
            row.cells.push(Cell {
                source,
                required,
                state: CellState::NotApplicable,
                summary: String::new(),
            });
            continue;
        }
        let ran = match source {
            Source::Model => !inputs.model.is_empty(),
            Source::Replay => !inputs.replay.is_empty(),
            Source::Vectors => inputs.vectors.is_some(),
            Source::Wiretap => !inputs.wiretap.is_empty(),
        };
        let absent: Vec<&Absent> = inputs
            .absent
            .iter()
            .filter(|a| a.source == source)
            .collect();
        let not_run: Vec<&Absent> = absent.iter().copied().filter(|a| !a.skipped).collect();
        let built = match source {
            Source::Model => model_cell(req, &inputs.model, &mut row),
            Source::Replay => replay_cell(req, &inputs.replay, &mut row),
            Source::Vectors => vector_cell(req, inputs.vectors.as_ref(), &mut row),
            Source::Wiretap => wiretap_cell(&inputs.wiretap, &mut row),
        };
        let state = if !built.failures.is_empty() {
            CellState::Fail
        } else if !not_run.is_empty() || (!ran && absent.is_empty()) {
            CellState::NotRun
        } else if !ran {
            CellState::Skipped
        } else if !built.has_evidence {
            CellState::NoEvidence
        } else {
            CellState::Pass
        };
        let tag = source.name();
        for f in &built.failures {
            row.failures.push(format!("{tag}: {f}"));
        }
        match state {
            CellState::Fail => fail = true,
            CellState::NotRun => {
                let why: Vec<String> = if not_run.is_empty() {
                    vec!["no evidence given".into()]
                } else {
                    not_run.iter().map(|a| a.describe()).collect()
                };
                let line = format!("{tag}: not run ({})", why.join("; "));
                if required {
                    fail = true;
                    row.failures.push(line);
                } else {
                    row.notes.push(line);
                }
            }
            CellState::NoEvidence => {
                let line = format!("{tag}: ran but showed nothing for {}", req.id);
                if required {
                    fail = true;
                    row.failures.push(line);
                } else {
                    row.notes.push(line);
                }
            }
            CellState::Skipped if required => skipped = true,
            _ => {}
        }
        let summary = match state {
            CellState::Pass | CellState::Fail | CellState::NoEvidence => built.summary,
            _ => String::new(),
        };
        row.cells.push(Cell {
            source,
            required,
            state,
            summary,
        });
    }
    row.verdict = if fail {
        Verdict::Fail
    } else if skipped {
        let which: Vec<&str> = row
            .cells
            .iter()
            .filter(|c| c.required && c.state == CellState::Skipped)
            .map(|c| c.source.name())
            .collect();
        row.failures
            .push(format!("skipped, not passed: {}", which.join(", ")));
        Verdict::Skipped
    } else {
        Verdict::Pass
    };
    row
}

fn model_cell(req: &Requirement, runs: &[ModelEvidence], row: &mut ReqRow) -> CellBuild {
    let mut failures = Vec::new();
    let (mut passed, mut checked) = (0, 0);
    for m in runs {
        let mut used = false;
        let mut not_here = Vec::new();
        for name in req.properties {
            let status = match m.properties.iter().find(|p| p.name == *name) {
                None => PropertyStatus::Absent,
                Some(p) if p.skipped => PropertyStatus::Skipped,
                Some(p) if p.passed => PropertyStatus::Passed,
                Some(_) => PropertyStatus::Failed,
            };
            match status {
                PropertyStatus::Passed => {
                    passed += 1;
                    checked += 1;
                    used = true;
                }
                PropertyStatus::Failed => {
                    checked += 1;
                    used = true;
                    let always = m
                        .properties
                        .iter()
                        .find(|p| p.name == *name)
                        .is_some_and(|p| p.always);
                    let why = if always {
                        "has a counterexample"
                    } else {
                        "has no example (its invariants would hold vacuously)"
                    };
                    failures.push(format!("`{name}` {why} (config {})", m.config));
                }
                PropertyStatus::Skipped | PropertyStatus::Absent => not_here.push(*name),
            }
            row.properties.push(PropertyCheck {
                name: (*name).to_owned(),
                config: m.config.clone(),
                status,
            });
        }
        if used {
            row.states += m.states;
        }
        if !m.exhaustive {
            row.notes.push(format!(
                "model: config {} was not explored exhaustively",
                m.config
            ));
        }
        if !not_here.is_empty() {
            row.notes.push(format!(
                "model: not checked by config {}: {}",
                m.config,
                not_here
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    CellBuild {
        has_evidence: passed > 0,
        failures,
        summary: format!("{passed}/{checked} hold, {} states", row.states),
    }
}

fn replay_cell(req: &Requirement, runs: &[ReplayEvidence], row: &mut ReqRow) -> CellBuild {
    let mut failures = Vec::new();
    let (mut traces, mut steps) = (0, 0);
    let mut has_evidence = false;
    for e in runs {
        // A trace counts when it was exported for one of the row's properties or took one of
        // its action kinds (older evidence without per-trace kinds: the property names only).
        let t = if e.kinds.is_empty() {
            e.shown
                .iter()
                .filter(|s| req.properties.contains(&s.as_str()))
                .count()
        } else {
            e.kinds
                .iter()
                .filter(|(label, kinds)| {
                    let name = label.split_once('/').map_or(label.as_str(), |(_, n)| n);
                    req.properties.contains(&name)
                        || kinds
                            .iter()
                            .any(|k| req.replay_actions.contains(&k.as_str()))
                })
                .count()
        };
        let actions: BTreeMap<String, usize> = req
            .replay_actions
            .iter()
            .filter_map(|a| e.actions.get(*a).map(|n| ((*a).to_owned(), *n)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let unmapped: BTreeMap<String, usize> = req
            .replay_actions
            .iter()
            .filter_map(|a| e.unmapped.get(*a).map(|n| ((*a).to_owned(), *n)))
            .collect();
        let s: usize = actions.values().sum();
        traces += t;
        steps += s;
        if e.traces > 0 && t + s > 0 {
            has_evidence = true;
        }
        let diverged = e.traces.saturating_sub(e.traces_passed);
        if !e.failures.is_empty() || diverged > 0 {
            let first = e
                .failures
                .first()
                .map(|f| format!("; first: {f}"))
                .unwrap_or_default();
            failures.push(format!(
                "{}: {} of {} traces diverged from the model, so the model's guarantees do not carry over{first}",
                e.broker,
                diverged.max(e.failures.len()),
                e.traces
            ));
        }
        for (a, n) in &unmapped {
            row.notes.push(format!(
                "replay ({}): cannot map `{a}` yet ({n} traces skipped)",
                e.broker
            ));
        }
        row.replay.push(ReplayCount {
            broker: e.broker.clone(),
            traces: t,
            steps: s,
            actions,
            unmapped,
        });
    }
    CellBuild {
        has_evidence,
        failures,
        summary: format!("{traces} traces, {steps} steps"),
    }
}

fn vector_cell(req: &Requirement, v: Option<&VectorEvidence>, row: &mut ReqRow) -> CellBuild {
    let mut failures = Vec::new();
    let (mut passed, mut total) = (0, 0);
    if let Some(v) = v {
        for area in req.vector_areas {
            let (p, t) = v.areas.get(*area).copied().unwrap_or((0, 0));
            if t == 0 {
                failures.push(format!("area `{area}` was not checked"));
            } else if p < t {
                let prefix = format!("{area}/");
                let cases: Vec<&String> = v
                    .failures
                    .iter()
                    .filter(|f| f.starts_with(&prefix))
                    .collect();
                let first = cases
                    .first()
                    .map(|f| format!("; first: {f}"))
                    .unwrap_or_default();
                failures.push(format!("area `{area}`: {} of {t} cases fail{first}", t - p));
            }
            passed += p;
            total += t;
            row.vectors.push(AreaCount {
                area: (*area).to_owned(),
                passed: p,
                total: t,
            });
        }
    }
    let summary = match req.vector_areas {
        [one] => format!("{one} {passed}/{total}"),
        many => format!("{} areas {passed}/{total}", many.len()),
    };
    CellBuild {
        has_evidence: total > 0,
        failures,
        summary,
    }
}

fn wiretap_cell(runs: &[WiretapEvidence], row: &mut ReqRow) -> CellBuild {
    let mut failures = Vec::new();
    let mut has_evidence = false;
    let (mut frames, mut files, mut found) = (0, 0, 0);
    for w in runs {
        if w.frames > 0 && w.needles > 0 {
            has_evidence = true;
        }
        for f in &w.findings {
            failures.push(format!("{}: secret found: {f}", w.broker));
        }
        frames += w.frames;
        files += w.files;
        found += w.findings.len();
        row.wiretap.push(WiretapCount {
            broker: w.broker.clone(),
            frames: w.frames,
            http_exchanges: w.http_exchanges,
            files: w.files,
            needles: w.needles,
            findings: w.findings.len(),
        });
    }
    let summary = if row.req == "Req6" {
        format!("{files} files, {found} found")
    } else {
        format!("{frames} frames, {found} found")
    };
    CellBuild {
        has_evidence,
        failures,
        summary,
    }
}

/// Failing evidence no row reads: model properties and vector areas the mapping does not name.
fn unattributed(inputs: &Inputs) -> Vec<String> {
    let props: BTreeSet<&str> = REQUIREMENTS
        .iter()
        .flat_map(|r| r.properties.iter().copied())
        .collect();
    let areas: BTreeSet<&str> = REQUIREMENTS
        .iter()
        .flat_map(|r| r.vector_areas.iter().copied())
        .collect();
    let mut out = Vec::new();
    for m in &inputs.model {
        for p in &m.properties {
            if !p.passed && !p.skipped && !props.contains(p.name.as_str()) {
                out.push(format!(
                    "model: `{}` fails (config {}) and belongs to no requirement",
                    p.name, m.config
                ));
            }
        }
    }
    if let Some(v) = &inputs.vectors {
        for f in &v.failures {
            let area = f.split('/').next().unwrap_or_default();
            if !areas.contains(area) {
                out.push(format!("vectors: {f} (area of no requirement)"));
            }
        }
    }
    out
}
