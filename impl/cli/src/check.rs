//! `sotto check`: every source of evidence for Req1..Req8, then the requirements report.
//!
//! ```text
//!   vectors DIR            --vector_evidence-->  VectorEvidence
//!   model (exhaustive)     --check_model------>  ModelEvidence
//!   replay  (per broker)   --run_replay------->  ReplayEvidence     (traces/ against the real stack)
//!   wiretap (per broker)   --run_wiretap------>  WiretapEvidence    (every byte the server saw)
//!                              |
//!                      Report::build -> table (or JSON) on stdout; exit 0 only when all PASS
//! ```
//!
//! Progress lines go to stderr. A source that fails to run is recorded as "not run" (its rows
//! FAIL); a source skipped with `--skip` is recorded as skipped (its rows show SKIPPED).

use std::fmt;
use std::io::Write;
use std::time::Instant;

use sotto_conformance::evidence::{ReplayEvidence, WiretapEvidence};
use sotto_conformance::model_run;
use sotto_conformance::report::coverage::Gaps;
use sotto_conformance::report::{Absent, Inputs, Report, Source};
use sotto_conformance::target::Target;
use sotto_conformance::{replay, vectors, wiretap};

use crate::cli::{Broker, CheckArgs, CheckSource};
use crate::errors::hinted;

/// Why a replay or wiretap run produced no evidence.
#[derive(Debug)]
enum RunError {
    /// The run failed (the harness's own error, rendered).
    Failed(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs `sotto check` and writes the report to `out`; an error (exit 1) unless every
/// requirement passes.
pub async fn run(args: CheckArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let skip = |s: CheckSource| args.skip.contains(&s);
    let brokers: Vec<Broker> = args.broker.each();
    let nats = match brokers.as_slice() {
        [Broker::Nats] => args.nats.cluster(Broker::Nats)?,
        _ => args.nats.cluster(Broker::Embedded)?,
    };
    let target = |broker: Broker| Target {
        broker,
        nats: nats.clone().filter(|_| broker == Broker::Nats),
    };
    let mut inputs = Inputs::default();
    // The coverage gaps docs/coverage.md explains; without the file every gap fails.
    match std::fs::read_to_string(&args.coverage_gaps) {
        Ok(md) => inputs.gaps = Gaps::parse(&md),
        Err(e) => progress(&format!(
            "coverage: {} not read ({e}): every coverage gap fails",
            args.coverage_gaps.display()
        )),
    }

    // Vectors first: they take a second and catch a broken core early.
    if skip(CheckSource::Vectors) {
        progress("vectors: skipped");
        inputs.absent.push(Absent::skipped(Source::Vectors));
    } else {
        progress(&format!("vectors: checking {}", args.vectors.display()));
        let dir = args.vectors.clone();
        match tokio::task::spawn_blocking(move || {
            (vectors::check_dir(&dir), vectors::expected(&dir))
        })
        .await
        {
            Ok((reports, expected)) => {
                let mut v = model_run::vector_evidence(&reports);
                v.expected_codes = expected.codes;
                v.pinned_rules = expected.rules;
                progress(&format!(
                    "vectors: {} cases, {} failing",
                    reports.len(),
                    v.failures.len()
                ));
                inputs.vectors = Some(v);
            }
            Err(e) => {
                progress(&format!("vectors: not run: {e}"));
                inputs
                    .absent
                    .push(Absent::not_run(Source::Vectors, "", e.to_string()));
            }
        }
    }

    if skip(CheckSource::Model) {
        progress("model: skipped");
        inputs.absent.push(Absent::skipped(Source::Model));
    } else {
        let threads = if args.model_threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            args.model_threads
        };
        let config = args.model_config.clone();
        progress(&format!(
            "model: checking config `{config}` exhaustively on {threads} threads"
        ));
        let start = Instant::now();
        let name = config.clone();
        let result =
            tokio::task::spawn_blocking(move || model_run::check_model_with(&name, threads, true))
                .await;
        match result {
            Ok(Ok(m)) => {
                progress(&format!(
                    "model: {} unique states, {} properties, {:.1} s",
                    m.states,
                    m.properties.len(),
                    start.elapsed().as_secs_f64()
                ));
                inputs.model.push(m);
            }
            Ok(Err(e)) => {
                progress(&format!("model: not run: {e}"));
                inputs
                    .absent
                    .push(Absent::not_run(Source::Model, config, e.to_string()));
            }
            Err(e) => {
                progress(&format!("model: not run: {e}"));
                inputs
                    .absent
                    .push(Absent::not_run(Source::Model, config, e.to_string()));
            }
        }
    }

    if skip(CheckSource::Replay) {
        progress("replay: skipped");
        inputs.absent.push(Absent::skipped(Source::Replay));
    } else {
        for &b in &brokers {
            progress(&format!("replay ({}): running", b.name()));
            match run_replay(target(b), &args.traces, args.full).await {
                Ok(e) => {
                    progress(&format!(
                        "replay ({}): {}/{} traces, {} steps",
                        b.name(),
                        e.traces_passed,
                        e.traces,
                        e.steps
                    ));
                    inputs.replay.push(e);
                }
                Err(e) => {
                    progress(&format!("replay ({}): not run: {e}", b.name()));
                    inputs
                        .absent
                        .push(Absent::not_run(Source::Replay, b.name(), e.to_string()));
                }
            }
        }
    }

    if skip(CheckSource::Wiretap) {
        progress("wiretap: skipped");
        inputs.absent.push(Absent::skipped(Source::Wiretap));
    } else {
        for &b in &brokers {
            progress(&format!("wiretap ({}): running", b.name()));
            match run_wiretap(target(b)).await {
                Ok(e) => {
                    progress(&format!(
                        "wiretap ({}): {} frames, {} findings",
                        b.name(),
                        e.frames,
                        e.findings.len()
                    ));
                    inputs.wiretap.push(e);
                }
                Err(e) => {
                    progress(&format!("wiretap ({}): not run: {e}", b.name()));
                    inputs
                        .absent
                        .push(Absent::not_run(Source::Wiretap, b.name(), e.to_string()));
                }
            }
        }
    }

    let report = Report::build(inputs);
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.render_table())?;
    }
    out.flush()?;
    if let Some(path) = &args.json_file {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                hinted(
                    format!("cannot create {}: {e}", dir.display()),
                    "choose another --json-file",
                )
            })?;
        }
        std::fs::write(path, report.to_json()).map_err(|e| {
            hinted(
                format!("cannot write {}: {e}", path.display()),
                "choose another --json-file",
            )
        })?;
    }
    if report.passed() {
        Ok(())
    } else {
        Err(hinted(
            "not every requirement passes",
            "see the failures under the table (a skipped source never counts as a pass)",
        ))
    }
}

/// The trace replay against the real stack on `broker`: the model's traces in `traces`.
async fn run_replay(
    target: Target,
    traces: &std::path::Path,
    full: bool,
) -> Result<ReplayEvidence, RunError> {
    let opts = replay::Options {
        broker: target.broker,
        nats: target.nats,
        traces: replay::TraceSource::Dir(traces.to_path_buf()),
        full,
    };
    replay::run(&opts)
        .await
        .map_err(|e| RunError::Failed(e.to_string()))
}

/// The wiretap of the real stack on `broker` (Req6, Req8).
async fn run_wiretap(target: Target) -> Result<WiretapEvidence, RunError> {
    wiretap::run(target)
        .await
        .map_err(|e| RunError::Failed(e.to_string()))
}

/// A progress line on stderr.
fn progress(line: &str) {
    eprintln!("check: {line}");
}
