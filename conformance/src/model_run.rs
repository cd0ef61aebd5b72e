//! Producing evidence in process: the model check ([`check_model`]) and the known-answer vectors
//! ([`vector_evidence`]), in the form the requirements report ([`crate::report`]) reads.
//!
//! ```text
//!   sotto_model::check::run (exhaustive, breadth-first)  --check_model-->     ModelEvidence
//!   vectors::check_dir (per-case results)                --vector_evidence--> VectorEvidence
//! ```

use std::collections::BTreeMap;

use sotto_model::Variant;
use sotto_model::check::{self, Mode, Options, Verdict};
use sotto_model::scenario::Config;

use crate::evidence::{ModelEvidence, PropertyEvidence, VectorEvidence};
use crate::vectors::CaseReport;

/// The model configurations [`check_model`] accepts (`small`, `default`, `deep`).
pub const CONFIG_NAMES: [&str; 3] = Config::NAMES;

/// Why the model check could not run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelRunError {
    /// No configuration has this name.
    #[error("unknown model configuration `{0}` (one of: small, default, deep)")]
    UnknownConfig(String),
}

/// Checks the protocol model with configuration `config` (see [`CONFIG_NAMES`]) on `threads`
/// checker threads (at least one), exhaustively and breadth-first as `sotto-model check` does by
/// default, without progress output.
///
/// The `sometimes` properties the configuration leaves to another one (`Config::skip`) are listed
/// as skipped; properties about features the configuration does not use are absent.
pub fn check_model(config: &str, threads: usize) -> Result<ModelEvidence, ModelRunError> {
    check_model_with(config, threads, false)
}

/// [`check_model`], with a progress line on stderr every few seconds when `progress` is set.
pub fn check_model_with(
    config: &str,
    threads: usize,
    progress: bool,
) -> Result<ModelEvidence, ModelRunError> {
    let cfg = Config::named(config).ok_or_else(|| ModelRunError::UnknownConfig(config.into()))?;
    let skip = cfg.skip.clone();
    let opts = Options {
        config: cfg,
        variant: Variant::None,
        mode: Mode::Bfs,
        threads: threads.max(1),
        progress,
        simulate_states: 0,
    };
    let report = check::run(&opts);
    Ok(model_evidence(config, &report, &skip))
}

/// Converts a checker report into evidence; `skip` are the properties the configuration leaves
/// to another one.
fn model_evidence(config: &str, report: &check::Report, skip: &[String]) -> ModelEvidence {
    let mut properties: Vec<PropertyEvidence> = report
        .results
        .iter()
        .map(|r| PropertyEvidence {
            name: r.name.to_owned(),
            always: r.always,
            passed: match r.verdict {
                Verdict::Holds | Verdict::Found(_) => true,
                // Without an example the invariants it guards would hold vacuously (the run
                // here is always exhaustive).
                Verdict::Counterexample(_) | Verdict::NotFound => false,
            },
            skipped: false,
        })
        .collect();
    properties.extend(skip.iter().map(|name| PropertyEvidence {
        name: name.clone(),
        always: false,
        passed: false,
        skipped: true,
    }));
    ModelEvidence {
        config: config.to_owned(),
        states: report.unique_states,
        max_depth: report.max_depth,
        exhaustive: report.exhaustive,
        seconds: report.elapsed.as_secs_f64(),
        properties,
        refusals: if report.exhaustive {
            report
                .refusals
                .iter()
                .map(|(r, n)| (r.describe().to_owned(), *n))
                .collect()
        } else {
            BTreeMap::new()
        },
    }
}

/// Sums the per-case results of [`crate::vectors::check_dir`] per area; failing cases are listed
/// as `area/case: why`.
pub fn vector_evidence(reports: &[CaseReport]) -> VectorEvidence {
    let mut areas: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    for r in reports {
        let entry = areas.entry(r.area.clone()).or_insert((0, 0));
        entry.1 += 1;
        match &r.result {
            Ok(()) => entry.0 += 1,
            Err(why) => failures.push(format!("{}/{}: {why}", r.area, r.name)),
        }
    }
    VectorEvidence {
        areas,
        failures,
        expected_codes: Default::default(),
        pinned_rules: Default::default(),
    }
}
