//! `sotto-conformance drive`: another client implementation, behind an adapter process
//! (docs/adapter.md), driven through the model's traces against the real server, with the same
//! per-step comparison as `sotto check`'s replay ([`crate::replay`]), and its verdict.
//!
//! ```text
//!   --adapter "<command>"  --traces DIR  --broker embedded|mosquitto|both  [--charts DIR]
//!     hello (the adapter starts and names itself) -> per broker: replay::run (every trace,
//!     a fresh service and a fresh adapter process each) -> DriveReport -> text or JSON
//!     PASS: every trace to its end, every step equal to the model
//!     INCOMPLETE: some trace stopped at an op the adapter lacks (`unsupported`)
//!     FAIL: a step differed, the adapter broke the protocol, or nothing could run
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use sotto_model::chart;
use sotto_model::trace::Trace;

use crate::evidence::ReplayEvidence;
use crate::replay::{self, AdapterCommand, Broker, Options, ReplayError, TraceSource};

/// What to drive.
#[derive(Clone, Debug)]
pub struct DriveOptions {
    /// The adapter's command line.
    pub adapter: AdapterCommand,
    /// The traces (every one is driven).
    pub traces: PathBuf,
    /// The brokers, each in turn.
    pub brokers: Vec<Broker>,
    /// Where to write each trace as a message sequence chart (`<n>-<name>.svg`) beside its
    /// steps as text (`<n>-<name>.txt`), if anywhere.
    pub charts: Option<PathBuf>,
}

/// The verdict of a drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DriveVerdict {
    /// Every trace to its end (or to an action the runner itself does not map), every step equal.
    Pass,
    /// No failure, but some trace stopped at an op the adapter does not implement.
    Incomplete,
    /// A step differed from the model, or the adapter broke the protocol.
    Fail,
}

/// The outcome of a drive.
#[derive(Clone, Debug, Serialize)]
pub struct DriveReport {
    /// The adapter's command line.
    pub adapter: String,
    /// What the adapter said it is (`hello`).
    pub implementation: String,
    /// The traces' directory.
    pub traces: String,
    /// The replay evidence per broker.
    pub brokers: Vec<ReplayEvidence>,
    /// The verdict.
    pub verdict: DriveVerdict,
}

impl DriveReport {
    fn judge(brokers: &[ReplayEvidence]) -> DriveVerdict {
        if brokers.is_empty() || brokers.iter().any(|e| !e.failures.is_empty()) {
            DriveVerdict::Fail
        } else if brokers.iter().any(|e| !e.unsupported.is_empty()) {
            DriveVerdict::Incomplete
        } else if brokers.iter().any(|e| e.traces_passed == 0) {
            // Nothing ran to its end: no evidence, never a pass.
            DriveVerdict::Fail
        } else {
            DriveVerdict::Pass
        }
    }

    /// Whether the drive passed.
    pub fn passed(&self) -> bool {
        self.verdict == DriveVerdict::Pass
    }

    /// The report as text: per broker, the traces, steps and action kinds; prefixes; failures;
    /// the verdict.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Sotto drive: {} through `{}`, traces {}",
            self.implementation, self.adapter, self.traces
        );
        for e in &self.brokers {
            let prefixes: usize =
                e.unmapped.values().sum::<usize>() + e.unsupported.values().sum::<usize>();
            let _ = writeln!(
                out,
                "\n  broker {}: {} traces: {} passed to their end, {} failed, {} prefixes; {} steps \
                 compared with the model",
                e.broker,
                e.traces + prefixes,
                e.traces_passed,
                e.traces - e.traces_passed,
                prefixes,
                e.steps
            );
            let kinds: Vec<String> = e.actions.iter().map(|(k, n)| format!("{k} {n}")).collect();
            let _ = writeln!(out, "    action kinds: {}", kinds.join(", "));
            for (kind, n) in &e.unmapped {
                let _ = writeln!(
                    out,
                    "    prefix: {n} trace(s) up to {kind}: the runner does not map it (docs/coverage.md)"
                );
            }
            for (what, n) in &e.unsupported {
                let _ = writeln!(
                    out,
                    "    prefix: {n} trace(s) up to {what}: the adapter does not implement it"
                );
            }
            for f in &e.failures {
                let _ = writeln!(out, "    FAIL {f}");
            }
        }
        let _ = writeln!(
            out,
            "\n{}",
            match self.verdict {
                DriveVerdict::Pass =>
                    "PASS: every trace driven to its end, every step equal to the model",
                DriveVerdict::Incomplete =>
                    "INCOMPLETE: no step differed, but some traces stopped at ops the adapter lacks",
                DriveVerdict::Fail => "FAIL: see the failures above",
            }
        );
        out
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Drives every trace of `opts.traces` through the adapter on each broker.
pub async fn run(opts: &DriveOptions) -> Result<DriveReport, ReplayError> {
    let traces = replay::load_traces(&opts.traces)?;
    let implementation = replay::greet(&opts.adapter).await?;
    eprintln!(
        "drive: {implementation} through `{}`: {} traces",
        opts.adapter.0,
        traces.iter().filter(|t| t.variant == "none").count()
    );
    if let Some(dir) = &opts.charts {
        let written = write_charts(dir, &traces)?;
        eprintln!("drive: {written} charts in {}", dir.display());
    }
    let mut brokers = Vec::new();
    for &broker in &opts.brokers {
        let ev = replay::run(&Options {
            broker,
            nats: None,
            traces: TraceSource::Traces(traces.clone()),
            full: true,
            adapter: Some(opts.adapter.clone()),
        })
        .await?;
        brokers.push(ev);
    }
    let verdict = DriveReport::judge(&brokers);
    Ok(DriveReport {
        adapter: opts.adapter.0.clone(),
        implementation,
        traces: opts.traces.display().to_string(),
        brokers,
        verdict,
    })
}

/// Writes every driven trace as a chart and as text into `dir`; returns how many.
fn write_charts(dir: &std::path::Path, traces: &[Trace]) -> Result<usize, ReplayError> {
    std::fs::create_dir_all(dir)?;
    let mut n = 0;
    for (i, t) in traces.iter().filter(|t| t.variant == "none").enumerate() {
        let slug = Trace::slug(&t.name);
        let base = dir.join(format!("{i:03}-{}-{slug}", t.config));
        std::fs::write(base.with_extension("svg"), chart::render(t))?;
        let mut text = format!("{} (config {})\n", t.name, t.config);
        for (k, step) in t.steps.iter().enumerate() {
            let _ = writeln!(text, "{:>4}. {}", k + 1, step.says);
        }
        std::fs::write(base.with_extension("txt"), text)?;
        n += 1;
    }
    Ok(n)
}
