//! The requirements report: Req1..Req8, each with the evidence that backs it and a verdict.
//!
//! ```text
//!   ModelEvidence*  ReplayEvidence*  VectorEvidence?  WiretapEvidence*  Absent*
//!          \              |                |                /            /
//!           +------------ Report::build(Inputs) -----------+------------+
//!                                   |
//!             rows Req1..Req8: PASS / FAIL / SKIPPED, render_table, to_json, render_html
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
//!   (the broker's own state after the acks: every envelope the recipient acknowledged must be
//!   gone from it, `wiretap/retention.rs`; and the server files: a secret found at rest is a
//!   communication the server kept). A finding fails both rows; Req6 has wiretap evidence only
//!   if acknowledged envelopes were looked for.
//!
//! # Verdicts
//!
//! A row FAILs if any of its evidence fails, or if a source required for it gave no evidence
//! for it: not run (an error, or nothing given), or ran but showed nothing for this row. A
//! source the caller skipped on purpose ([`Absent::skipped`]) makes the row SKIPPED, never PASS.
//! Otherwise the row PASSes. The report passes when every row passes and no failing evidence
//! is left that belongs to no row.
//!
//! # Layout
//!
//! ```text
//!   requirements.rs  the data: Source, Requirement, REQUIREMENTS, Absent, Inputs
//!          |
//!   cells.rs         what one source shows for one row (PropertyCheck, ReplayCount, ...)
//!          |
//!   verdict.rs       cells -> CellState, rows -> Verdict (ReqRow), unattributed failures
//!          |
//!   mod.rs           Report, Report::build, Report::passed
//!          |
//!   render.rs        Report::render_table, Report::to_json
//!          |
//!   html.rs          Report::render_html (one self-contained page, with the charts)
//! ```

mod cells;
pub mod coverage;
mod html;
mod render;
mod requirements;
mod verdict;

use serde::{Deserialize, Serialize};

pub use cells::{AreaCount, PropertyCheck, PropertyStatus, ReplayCount, WiretapCount};
pub use html::Pictures;
pub use requirements::{Absent, Inputs, REQUIREMENTS, Requirement, Source};
pub use verdict::{Cell, CellState, ReqRow, Verdict};

use crate::evidence::{ModelEvidence, ReplayEvidence, VectorEvidence, WiretapEvidence};
use verdict::{build_row, unattributed};

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
    /// The report's own coverage ([`coverage`]); a gap docs/coverage.md does not list fails it.
    pub coverage: Vec<coverage::CoverageLine>,
}

impl Report {
    /// Builds the report from the evidence (see the module documentation for the rules).
    pub fn build(inputs: Inputs) -> Report {
        let rows = REQUIREMENTS
            .iter()
            .map(|req| build_row(req, &inputs))
            .collect();
        let unattributed = unattributed(&inputs);
        let coverage = coverage::lines(&inputs);
        let Inputs {
            model,
            replay,
            wiretap,
            vectors,
            absent,
            gaps: _,
        } = inputs;
        Report {
            rows,
            model,
            replay,
            wiretap,
            vectors,
            absent,
            unattributed,
            coverage,
        }
    }

    /// Whether every requirement passes and no failing evidence is left unattributed. A skipped
    /// source never passes.
    pub fn passed(&self) -> bool {
        self.rows.len() == REQUIREMENTS.len()
            && self.rows.iter().all(|r| r.verdict == Verdict::Pass)
            && self.unattributed.is_empty()
            && self.coverage.iter().all(coverage::CoverageLine::passed)
    }
}
