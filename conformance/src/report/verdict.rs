//! Verdicts per requirement: each source's cell becomes PASS / FAIL / NOT RUN / NO EVIDENCE /
//! SKIPPED / not applicable, and the cells become the row's [`Verdict`]. Also the failing
//! evidence no row reads ([`unattributed`]). What one source shows for a row is gathered in
//! [`super::cells`].
//!
//! The rules are in the [`report`](crate::report) module documentation.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::cells::{
    AreaCount, PropertyCheck, ReplayCount, WiretapCount, model_cell, replay_cell, vector_cell,
    wiretap_cell,
};
use super::requirements::{Absent, Inputs, REQUIREMENTS, Requirement, Source};

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

/// One row: a cell per source, its failures and notes, and the verdict.
pub(super) fn build_row(req: &Requirement, inputs: &Inputs) -> ReqRow {
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

/// Failing evidence no row reads: model properties and vector areas the mapping does not name.
pub(super) fn unattributed(inputs: &Inputs) -> Vec<String> {
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
