//! What one source shows for one requirement: the per-source evidence of a row (model
//! properties per configuration, replay counts per broker, vector areas, wiretap counts per
//! broker), the failures among it and the cell's summary, as [`super::verdict`] reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::requirements::Requirement;
use super::verdict::ReqRow;
use crate::evidence::{ModelEvidence, ReplayEvidence, VectorEvidence, WiretapEvidence};

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

/// What [`Report::build`](super::Report::build) collects for one cell.
pub(super) struct CellBuild {
    /// The source showed something for the row.
    pub(super) has_evidence: bool,
    /// Failing evidence, one reason per entry (without the source tag).
    pub(super) failures: Vec<String>,
    /// The cell's summary (counts), as the table shows it.
    pub(super) summary: String,
}

/// The model cell: the row's properties per configuration checked, and the states explored.
pub(super) fn model_cell(req: &Requirement, runs: &[ModelEvidence], row: &mut ReqRow) -> CellBuild {
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

/// The replay cell: per broker, the traces and steps that count for the row, and divergences.
pub(super) fn replay_cell(
    req: &Requirement,
    runs: &[ReplayEvidence],
    row: &mut ReqRow,
) -> CellBuild {
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

/// The vectors cell: the cases of the row's areas.
pub(super) fn vector_cell(
    req: &Requirement,
    v: Option<&VectorEvidence>,
    row: &mut ReqRow,
) -> CellBuild {
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

/// The wiretap cell: per broker, what was searched and the secrets found; for Req6 also the
/// acknowledged envelopes looked for in the broker's own state.
pub(super) fn wiretap_cell(runs: &[WiretapEvidence], row: &mut ReqRow) -> CellBuild {
    let mut failures = Vec::new();
    let mut has_evidence = false;
    let (mut frames, mut files, mut found, mut acknowledged) = (0, 0, 0, 0);
    let req6 = row.req == "Req6";
    for w in runs {
        // Req6 needs the broker-side check to have seen acknowledged envelopes; Req8 the search.
        let observed = if req6 {
            w.acknowledged_envelopes > 0
        } else {
            w.frames > 0 && w.needles > 0
        };
        if observed {
            has_evidence = true;
        }
        acknowledged += w.acknowledged_envelopes;
        for f in &w.findings {
            failures.push(format!("{}: secret found: {f}", w.broker));
        }
        if !req6 {
            // Coverage: every class of secret searched for (docs/conformance.md).
            for class in crate::evidence::SECRET_CLASSES {
                if w.classes.get(class).copied().unwrap_or(0) == 0 {
                    failures.push(format!(
                        "{}: no {class} searched for (secret class coverage)",
                        w.broker
                    ));
                }
            }
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
    let summary = if req6 {
        format!("{acknowledged} acked envelopes at the broker, {files} files, {found} found")
    } else {
        format!("{frames} frames, {found} found")
    };
    CellBuild {
        has_evidence,
        failures,
        summary,
    }
}
