//! `sotto check`: every source of evidence for Req1..Req8, then the requirements report.
//!
//! ```text
//!   vectors DIR            --vector_evidence-->  VectorEvidence
//!   model (exhaustive)     --check_model------>  ModelEvidence
//!   replay  (per broker)   --run_replay------->  ReplayEvidence     (traces/ against the real stack)
//!   wiretap (per broker)   --run_wiretap------>  WiretapEvidence    (every byte the server saw)
//!                              |
//!                      Report::build -> table (or JSON) on stdout; exit 0 only when all PASS
//!                              |
//!   --html FILE: + every broken variant's counterexample (sotto_model::counterexample)
//!                + with --chart-traces, the replayed traces (read again from --traces)
//!                      Report::render_html -> one self-contained page
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
use sotto_conformance::report::{Absent, Inputs, Pictures, Report, Source};
use sotto_conformance::target::Target;
use sotto_conformance::{replay, vectors, wiretap};

use sotto_model::counterexample;
use sotto_model::scenario::Config;
use sotto_model::trace::Trace;

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
        let threads = model_threads(&args);
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
    // A broken variant without a counterexample: the model lost the attack it should show.
    let mut toothless = 0;
    if let Some(path) = &args.html {
        let (pictures, missing) = pictures(&args, &report, skip(CheckSource::Model)).await;
        toothless = missing;
        write_file(path, &report.render_html(&pictures), "--html")?;
        progress(&format!("html: {}", path.display()));
    }
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.render_table())?;
    }
    out.flush()?;
    if let Some(path) = &args.json_file {
        write_file(path, &report.to_json(), "--json-file")?;
    }
    if toothless > 0 {
        return Err(hinted(
            format!("{toothless} broken model variant(s) gave no counterexample"),
            "see the page written by --html: a safeguard the model removes no longer shows its attack",
        ));
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

/// The model checker threads `--model-threads` asks for (0: one per core).
fn model_threads(args: &CheckArgs) -> usize {
    if args.model_threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        args.model_threads
    }
}

/// Writes `text` to `path`, creating its directory; `flag` names the option in the hint.
fn write_file(path: &std::path::Path, text: &str, flag: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            hinted(
                format!("cannot create {}: {e}", dir.display()),
                format!("choose another {flag}"),
            )
        })?;
    }
    std::fs::write(path, text).map_err(|e| {
        hinted(
            format!("cannot write {}: {e}", path.display()),
            format!("choose another {flag}"),
        )
    })?;
    Ok(())
}

/// The configuration in which every broken variant must show its counterexample.
const DEFAULT_CONFIG: &str = "default";

/// What the HTML page draws: every broken variant's counterexample (unless the model is
/// skipped) and, with `--chart-traces`, the traces the replay replayed; and how many broken
/// variants gave no counterexample.
async fn pictures(args: &CheckArgs, report: &Report, model_skipped: bool) -> (Pictures, usize) {
    let mut p = Pictures::default();
    let mut toothless = 0;
    if model_skipped {
        p.missing
            .push("counterexamples not searched: the model was skipped (--skip model)".into());
    } else {
        let name = args.counterexamples_config.clone();
        let threads = model_threads(args);
        progress(&format!(
            "html: searching every broken variant's counterexample in config `{name}`"
        ));
        let start = Instant::now();
        let found = tokio::task::spawn_blocking(move || {
            Config::named(&name).map(|c| counterexample::all(&c, threads))
        })
        .await;
        match found {
            Ok(Some(all)) => {
                for (_, r) in all {
                    match r {
                        Ok(c) => p.counterexamples.push(c),
                        // Every broken variant is specified to break its property in the
                        // default configuration (docs/model.md); a smaller one may not reach
                        // the attack at all.
                        Err(e @ counterexample::CounterexampleError::NotFound { .. })
                            if args.counterexamples_config != DEFAULT_CONFIG =>
                        {
                            p.missing.push(format!(
                                "not reached: {e} (only the `{DEFAULT_CONFIG}` configuration \
                                 must show every variant's attack)"
                            ));
                        }
                        Err(e) => {
                            toothless += 1;
                            p.missing.push(format!("FAIL: {e}"));
                        }
                    }
                }
                progress(&format!(
                    "html: {} counterexamples, {:.1} s",
                    p.counterexamples.len(),
                    start.elapsed().as_secs_f64()
                ));
            }
            Ok(None) => p.missing.push(format!(
                "counterexamples not searched: unknown config `{}`",
                args.counterexamples_config
            )),
            Err(e) => {
                toothless += 1;
                p.missing.push(format!("counterexamples not searched: {e}"));
            }
        }
    }
    if args.chart_traces {
        if report.replay.is_empty() {
            p.traces_note = Some("no trace was replayed (the replay did not run)".into());
        } else {
            match replay::load_traces(&args.traces) {
                Ok(all) => {
                    let total = all.len();
                    p.traces = all
                        .into_iter()
                        .filter(|t| was_replayed(report, t))
                        .collect();
                    p.traces_note = Some(format!(
                        "{} of the {total} traces in {} were replayed to the end or failed; \
                         traces replayed only up to an unmapped action are not drawn",
                        p.traces.len(),
                        args.traces.display()
                    ));
                }
                Err(e) => {
                    p.traces_note =
                        Some(format!("traces not drawn: {}: {e}", args.traces.display()))
                }
            }
        }
    }
    (p, toothless)
}

/// Whether some replay replayed `trace` to the end, or failed on it.
fn was_replayed(report: &Report, trace: &Trace) -> bool {
    let label = format!("{}/{}", trace.config, trace.name);
    let failed = format!("{label}: ");
    report
        .replay
        .iter()
        .any(|e| e.kinds.contains_key(&label) || e.failures.iter().any(|f| f.starts_with(&failed)))
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
        adapter: None,
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
