//! The report's own coverage: for each thing the evidence is meant to cover, how much of it this
//! run covered, as `n/total`. A gap fails the report unless docs/coverage.md lists it with its
//! reason ([`Gaps`]).
//!
//! ```text
//!  error codes expected by vectors   core's Error::ALL codes      vs  codes the vector files expect
//!  model actions replayed            sotto_model::Action::NAMES   vs  kinds the replay drove (the brokers
//!                                                                     a service runs: embedded, Mosquitto)
//!  model actions replayed on nats    sotto_model::Action::NAMES   vs  kinds the replay drove on a NATS cluster
//!  secret classes searched           evidence::SECRET_CLASSES     vs  classes with a needle (every wiretap run)
//!  model refusal branches reached    sotto_model Refusal::ALL     vs  branches the exhaustive runs took (with `default`)
//!  rules pinned by vectors           vectors::REFUSAL_RULES       vs  rules an invalid case is named after
//! ```
//!
//! A line exists only for a source that ran: a skipped source is reported as such elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::requirements::Inputs;
use crate::evidence::SECRET_CLASSES;
use crate::vectors::rules::REFUSAL_RULES;

/// The gaps docs/coverage.md lists: per coverage line (its `##` heading), item -> reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Gaps(BTreeMap<String, BTreeMap<String, String>>);

impl Gaps {
    /// Reads the gap tables of docs/coverage.md: under a heading `## <what>` (a coverage line's
    /// `what`), every table row `` | `item` | reason | `` lists one gap.
    pub fn parse(markdown: &str) -> Gaps {
        let mut gaps: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let mut section: Option<String> = None;
        for line in markdown.lines() {
            if let Some(h) = line.strip_prefix("## ") {
                section = Some(h.trim().to_owned());
                continue;
            }
            let (Some(section), Some(row)) = (&section, line.trim().strip_prefix("| `")) else {
                continue;
            };
            let Some((item, rest)) = row.split_once('`') else {
                continue;
            };
            let reason = rest
                .trim()
                .trim_start_matches('|')
                .trim()
                .trim_end_matches('|')
                .trim();
            if !reason.is_empty() {
                gaps.entry(section.clone())
                    .or_default()
                    .insert(item.to_owned(), reason.to_owned());
            }
        }
        Gaps(gaps)
    }

    fn reason(&self, what: &str, item: &str) -> Option<&str> {
        self.0.get(what)?.get(item).map(String::as_str)
    }

    /// The items listed as gaps under the heading `what`.
    pub fn listed(&self, what: &str) -> impl Iterator<Item = &String> {
        self.0.get(what).into_iter().flat_map(|m| m.keys())
    }
}

/// One coverage line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoverageLine {
    /// What is covered (`error codes expected by vectors`, ...): docs/coverage.md's heading.
    pub what: String,
    /// Items covered.
    pub covered: usize,
    /// Items in all.
    pub total: usize,
    /// Gaps docs/coverage.md lists, with their reason.
    pub listed: BTreeMap<String, String>,
    /// Gaps it does not list: each fails the report.
    pub unlisted: Vec<String>,
    /// Items covered that the total does not know (a list out of date): each fails the report.
    pub unknown: Vec<String>,
    /// Gaps docs/coverage.md lists that are covered, or that the total does not know (a row out
    /// of date): each fails the report, since the document would claim a gap that is not there.
    #[serde(default)]
    pub stale: Vec<String>,
}

impl CoverageLine {
    fn new(what: &str, total: &BTreeSet<String>, covered: &BTreeSet<String>, gaps: &Gaps) -> Self {
        let mut line = CoverageLine {
            what: what.to_owned(),
            covered: total.intersection(covered).count(),
            total: total.len(),
            listed: BTreeMap::new(),
            unlisted: Vec::new(),
            unknown: covered.difference(total).cloned().collect(),
            stale: gaps
                .listed(what)
                .filter(|g| covered.contains(*g) || !total.contains(*g))
                .cloned()
                .collect(),
        };
        for gap in total.difference(covered) {
            match gaps.reason(what, gap) {
                Some(r) => {
                    line.listed.insert(gap.clone(), r.to_owned());
                }
                None => line.unlisted.push(gap.clone()),
            }
        }
        line
    }

    /// No gap left unexplained.
    pub fn passed(&self) -> bool {
        self.unlisted.is_empty() && self.unknown.is_empty() && self.stale.is_empty()
    }

    /// One line of text.
    pub fn render(&self) -> String {
        let mut s = format!("coverage {}: {}/{}", self.what, self.covered, self.total);
        if !self.listed.is_empty() {
            s.push_str(&format!(
                ", {} listed in docs/coverage.md",
                self.listed.len()
            ));
        }
        if !self.unlisted.is_empty() {
            s.push_str(&format!(
                "; FAIL, not covered and not listed: {}",
                self.unlisted.join(", ")
            ));
        }
        if !self.unknown.is_empty() {
            s.push_str(&format!(
                "; FAIL, not in the list of all: {}",
                self.unknown.join(", ")
            ));
        }
        if !self.stale.is_empty() {
            s.push_str(&format!(
                "; FAIL, listed in docs/coverage.md but not a gap: {}",
                self.stale.join(", ")
            ));
        }
        s
    }
}

/// What "error codes expected by vectors" is measured against: every code of the core.
pub const ERROR_CODES: &str = "error codes expected by vectors";
/// What "model actions replayed" is measured against: every action of the model.
pub const ACTIONS: &str = "model actions replayed";
/// The same on a NATS cluster, whose gaps differ (the model's `Restart` loses every queue; a
/// cluster keeps them).
pub const ACTIONS_NATS: &str = "model actions replayed on nats";
/// What "secret classes searched" is measured against: [`SECRET_CLASSES`].
pub const SECRETS: &str = "secret classes searched";
/// What "rules pinned by vectors" is measured against: [`REFUSAL_RULES`].
pub const RULES: &str = "rules pinned by vectors";
/// What "model refusal branches reached" is measured against: every refusal branch of the model.
pub const REFUSALS: &str = "model refusal branches reached";

/// The coverage lines of the sources that ran.
pub fn lines(inputs: &Inputs) -> Vec<CoverageLine> {
    let set = |it: &mut dyn Iterator<Item = String>| it.collect::<BTreeSet<String>>();
    let mut out = Vec::new();
    if let Some(v) = &inputs.vectors {
        let total = set(&mut sotto_core::Error::ALL.iter().map(|e| e.code().to_owned()));
        out.push(CoverageLine::new(
            ERROR_CODES,
            &total,
            &v.expected_codes,
            &inputs.gaps,
        ));
        let total = set(&mut REFUSAL_RULES.iter().map(|r| (*r).to_owned()));
        // Cases name other rules too (the ones they exercise on the way): only refusal rules count.
        let pinned = v.pinned_rules.intersection(&total).cloned().collect();
        out.push(CoverageLine::new(RULES, &total, &pinned, &inputs.gaps));
    }
    // The gaps docs/coverage.md lists are those of the `default` configuration (the smaller
    // `small` scenario reaches fewer branches by design): the line is measured when it ran.
    let exhaustive: Vec<_> = inputs.model.iter().filter(|m| m.exhaustive).collect();
    if exhaustive.iter().any(|m| m.config == "default") {
        let total = set(&mut sotto_model::refusal::Refusal::ALL
            .iter()
            .map(|r| r.describe().to_owned()));
        let reached = set(&mut exhaustive
            .iter()
            .flat_map(|m| m.refusals.iter())
            .filter(|(_, n)| **n > 0)
            .map(|(r, _)| r.clone()));
        out.push(CoverageLine::new(REFUSALS, &total, &reached, &inputs.gaps));
    }
    for (what, on_nats) in [(ACTIONS, false), (ACTIONS_NATS, true)] {
        let replays: Vec<_> = inputs
            .replay
            .iter()
            .filter(|r| (r.broker == sotto_server::Broker::Nats.name()) == on_nats)
            .collect();
        if replays.is_empty() {
            continue;
        }
        let total = set(&mut sotto_model::Action::NAMES.iter().map(|n| (*n).to_owned()));
        let replayed = set(&mut replays.iter().flat_map(|r| r.actions.keys().cloned()));
        out.push(CoverageLine::new(what, &total, &replayed, &inputs.gaps));
    }
    if !inputs.wiretap.is_empty() {
        let total = set(&mut SECRET_CLASSES.iter().map(|c| (*c).to_owned()));
        // A class counts when every run searched it.
        let searched = set(&mut SECRET_CLASSES
            .iter()
            .filter(|c| {
                inputs
                    .wiretap
                    .iter()
                    .all(|w| w.classes.get(**c).copied().unwrap_or(0) > 0)
            })
            .map(|c| (*c).to_owned()));
        out.push(CoverageLine::new(SECRETS, &total, &searched, &inputs.gaps));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_read_per_heading_and_explain_only_what_they_name() {
        let gaps = Gaps::parse(
            "# x\n## model actions replayed\n| action | why |\n|---|---|\n| `Steal` | the store is copied |\n## other\n| `Send` | no |\n",
        );
        let total: BTreeSet<String> = ["Send", "Steal", "Drop"].map(String::from).into();
        let covered: BTreeSet<String> = ["Send"].map(String::from).into();
        let line = CoverageLine::new(ACTIONS, &total, &covered, &gaps);
        assert_eq!((line.covered, line.total), (1, 3));
        assert_eq!(line.listed.keys().collect::<Vec<_>>(), ["Steal"]);
        assert_eq!(line.unlisted, ["Drop"]);
        assert!(!line.passed());
        assert!(line.render().contains("FAIL"));
        let covered: BTreeSet<String> = ["Send", "Drop", "Fly"].map(String::from).into();
        let line = CoverageLine::new(ACTIONS, &total, &covered, &gaps);
        assert_eq!(line.unknown, ["Fly"]);
        assert!(!line.passed());
        // A listed gap that is covered is a stale row: the document would be wrong.
        let covered: BTreeSet<String> = ["Send", "Steal", "Drop"].map(String::from).into();
        let line = CoverageLine::new(ACTIONS, &total, &covered, &gaps);
        assert_eq!(line.stale, ["Steal"]);
        assert!(!line.passed());
        assert!(line.render().contains("not a gap: Steal"));
    }
}
