//! Broken variants' counterexamples as [`Trace`]s: what `check --variant NAME --svg FILE` draws
//! and what the HTML report of `sotto check --html` shows for every broken variant.
//!
//! ```text
//!   Variant::BROKEN --check::shortest_counterexample--> actions --Trace::record--> Trace
//!                                         \--check::render_steps--> the numbered text steps
//! ```
//!
//! Each search is the breadth-first shortest-counterexample search of [`crate::check`], so the
//! cost is that of exploring the variant's state space up to the counterexample's depth, twice.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::check;
use crate::model::SottoModel;
use crate::scenario::Config;
use crate::trace::Trace;
use crate::variant::Variant;

/// One broken variant's shortest counterexample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    /// The variant's command-line name.
    pub variant: String,
    /// What the variant removes ([`Variant::describe`]).
    pub removed: String,
    /// The property it breaks.
    pub property: String,
    /// The run, with the abstract state after every step.
    pub trace: Trace,
    /// The numbered steps as text, with what the server learned ([`check::render_steps`]).
    pub text: String,
    /// Seconds the search took.
    pub seconds: f64,
}

/// Why a variant gave no counterexample.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CounterexampleError {
    /// `Variant::None` breaks nothing.
    #[error("variant `{0}` is the protocol as specified: it breaks no property")]
    NotBroken(String),
    /// The search found none: the variant no longer breaks its property (a regression).
    #[error("variant `{variant}`: no counterexample for `{property}` in config `{config}`")]
    NotFound {
        /// The variant.
        variant: String,
        /// The property it should break.
        property: String,
        /// The configuration searched.
        config: String,
    },
    /// The counterexample found does not replay (a model bug).
    #[error("variant `{0}`: the counterexample does not replay")]
    NoReplay(String),
}

/// The shortest counterexample of one broken variant in `config`, on `threads` threads.
pub fn counterexample(
    config: &Config,
    variant: Variant,
    threads: usize,
) -> Result<Counterexample, CounterexampleError> {
    let name = variant.name().to_string();
    let property = variant
        .breaks()
        .ok_or_else(|| CounterexampleError::NotBroken(name.clone()))?;
    let start = Instant::now();
    let (property, actions) = check::shortest_counterexample(config, variant, threads.max(1))
        .ok_or_else(|| CounterexampleError::NotFound {
            variant: name.clone(),
            property: property.to_string(),
            config: config.name.clone(),
        })?;
    let seconds = start.elapsed().as_secs_f64();
    let model = SottoModel::new(config.clone(), variant);
    let trace = Trace::record(&model, &format!("counterexample: {property}"), &actions)
        .ok_or_else(|| CounterexampleError::NoReplay(name.clone()))?;
    Ok(Counterexample {
        variant: name,
        removed: variant.describe().to_string(),
        property: property.to_string(),
        text: check::render_steps(&model, &actions),
        trace,
        seconds,
    })
}

/// Every broken variant's counterexample ([`Variant::BROKEN`], in order), one after the other.
pub fn all(
    config: &Config,
    threads: usize,
) -> Vec<(Variant, Result<Counterexample, CounterexampleError>)> {
    Variant::BROKEN
        .iter()
        .map(|&v| (v, counterexample(config, v, threads)))
        .collect()
}
