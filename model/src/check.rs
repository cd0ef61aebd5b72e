//! Running the checker: exhaustive checks, shortest counterexamples, and their reports.
//!
//! An exhaustive check explores every reachable state (it never stops early, so the unique-state
//! count is complete) and reports each property: an `always` property *holds* or has a
//! *counterexample*; a `sometimes` property is *found* (an example) or *not found*, which fails
//! the check because the invariants it guards would then hold vacuously.
//!
//! A counterexample from a breadth-first run with several threads is short but not always the
//! shortest. [`shortest_counterexample`] therefore bounds the depth and raises the bound one step
//! at a time: the first bound with a discovery gives a shortest one.

use crate::action::Action;
use crate::model::SottoModel;
use crate::refusal::Refusal;
use crate::scenario::Config;
use crate::state::State;
use crate::variant::Variant;
use stateright::{Checker, Expectation, HasDiscoveries, Model, Path, UniformChooser};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

/// How to explore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Breadth-first, exhaustive.
    Bfs,
    /// Depth-first, exhaustive.
    Dfs,
    /// Random walks from a seed (not exhaustive).
    Simulate(u64),
}

/// Options of a check.
#[derive(Clone, Debug)]
pub struct Options {
    /// Configuration.
    pub config: Config,
    /// Variant.
    pub variant: Variant,
    /// Exploration mode.
    pub mode: Mode,
    /// Checker threads.
    pub threads: usize,
    /// Print a progress line to stderr every few seconds.
    pub progress: bool,
    /// Simulation only: stop after this many states.
    pub simulate_states: usize,
}

/// The verdict on one property.
#[derive(Clone, Debug)]
pub enum Verdict {
    /// An `always` property with no counterexample in a complete exploration.
    Holds,
    /// An `always` property violated: the path to the violating state.
    Counterexample(Vec<Action>),
    /// A `sometimes` property with an example.
    Found(Vec<Action>),
    /// A `sometimes` property without an example.
    NotFound,
}

/// Result of one property.
#[derive(Clone, Debug)]
pub struct PropertyResult {
    /// Property name.
    pub name: &'static str,
    /// `always` or `sometimes`.
    pub always: bool,
    /// Verdict.
    pub verdict: Verdict,
}

/// Result of a check.
#[derive(Clone, Debug)]
pub struct Report {
    /// Unique states visited.
    pub unique_states: usize,
    /// States generated, with repeats.
    pub total_states: usize,
    /// Deepest state reached (actions from the initial state).
    pub max_depth: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the exploration was exhaustive.
    pub exhaustive: bool,
    /// Per property.
    pub results: Vec<PropertyResult>,
    /// Per refusal branch, the explored transitions that take it ([`crate::refusal`]).
    pub refusals: Vec<(Refusal, u64)>,
}

impl Report {
    /// Whether the check passes: no counterexample, and (for exhaustive runs) every example found.
    pub fn passed(&self) -> bool {
        self.results.iter().all(|r| match r.verdict {
            Verdict::Counterexample(_) => false,
            Verdict::NotFound => !self.exhaustive,
            _ => true,
        })
    }

    /// Unique states per second.
    pub fn states_per_second(&self) -> f64 {
        self.unique_states as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// A property name that never exists: finishing on it means "explore everything".
const NEVER: &str = "(explore every state)";

fn progress_loop<C: Checker<SottoModel>>(checker: &C, start: Instant, progress: bool) {
    let mut last = Instant::now();
    while !checker.is_done() {
        std::thread::sleep(Duration::from_millis(50));
        if progress && last.elapsed() >= Duration::from_secs(5) {
            last = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            let unique = checker.unique_state_count();
            eprintln!(
                "  ... {:>10} unique states, depth {:>3}, {:>9.0} states/s, {:>6.1} s",
                unique,
                checker.max_depth(),
                unique as f64 / secs.max(1e-9),
                secs
            );
            let _ = std::io::stderr().flush();
        }
    }
}

/// Runs a check and reports every property.
pub fn run(opts: &Options) -> Report {
    let model = SottoModel::new(opts.config.clone(), opts.variant);
    let props = model.properties();
    let start = Instant::now();
    let builder = model
        .checker()
        .threads(opts.threads.max(1))
        .finish_when(HasDiscoveries::AllOf(BTreeSet::from([NEVER])));
    let (unique, total, depth, discoveries, refusals) = match opts.mode {
        Mode::Bfs => {
            let c = builder.spawn_bfs();
            finish(c, start, opts.progress)
        }
        Mode::Dfs => {
            let c = builder.spawn_dfs();
            finish(c, start, opts.progress)
        }
        Mode::Simulate(seed) => {
            let c = builder
                .target_state_count(opts.simulate_states)
                .spawn_simulation(seed, UniformChooser);
            finish(c, start, opts.progress)
        }
    };
    let elapsed = start.elapsed();
    let results = props
        .iter()
        .map(|p| {
            let always = p.expectation == Expectation::Always;
            let found = discoveries
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, a)| a.clone());
            let verdict = match (always, found) {
                (true, None) => Verdict::Holds,
                (true, Some(a)) => Verdict::Counterexample(a),
                (false, Some(a)) => Verdict::Found(a),
                (false, None) => Verdict::NotFound,
            };
            PropertyResult {
                name: p.name,
                always,
                verdict,
            }
        })
        .collect();
    Report {
        unique_states: unique,
        total_states: total,
        max_depth: depth,
        elapsed,
        exhaustive: !matches!(opts.mode, Mode::Simulate(_)),
        results,
        refusals,
    }
}

#[allow(clippy::type_complexity)]
fn finish<C: Checker<SottoModel>>(
    c: C,
    start: Instant,
    progress: bool,
) -> (
    usize,
    usize,
    usize,
    Vec<(&'static str, Vec<Action>)>,
    Vec<(Refusal, u64)>,
) {
    progress_loop(&c, start, progress);
    let c = c.join();
    // Before the paths are rebuilt (which takes steps again).
    let refusals = c.model().refusals.snapshot();
    let mut d: Vec<(&'static str, Vec<Action>)> = c
        .discoveries()
        .into_iter()
        .map(|(n, p)| (n, p.into_actions()))
        .collect();
    d.sort_by_key(|(n, _)| *n);
    (
        c.unique_state_count(),
        c.state_count(),
        c.max_depth().saturating_sub(1),
        d,
        refusals,
    )
}

/// A shortest discovery for one property, found shortest-first.
///
/// A single-threaded breadth-first run visits states in order of depth and keeps the first
/// discovery it makes (properties latch, see [`SottoModel::holds`]), so its path is a shortest
/// one; a second run with the depth bound set one step below that length, on every thread,
/// confirms that no shorter one exists (if it found one, that one would be returned). Gives up
/// beyond `max_steps` actions.
pub fn shortest_discovery(
    config: &Config,
    variant: Variant,
    property: &'static str,
    threads: usize,
    max_steps: usize,
) -> Option<Vec<Action>> {
    let find = |bound: Option<usize>, threads: usize| {
        let model = SottoModel::new(config.clone(), variant);
        let mut b = model
            .checker()
            .threads(threads.max(1))
            .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])));
        if let Some(steps) = bound {
            // States at depth d (1 for the initial state) are checked while d < bound.
            b = b.target_max_depth(steps + 2);
        }
        b.spawn_bfs()
            .join()
            .discovery(property)
            .map(|p| p.into_actions())
    };
    let mut best = find(Some(max_steps), 1)?;
    while !best.is_empty() {
        match find(Some(best.len() - 1), threads) {
            Some(shorter) => best = shorter,
            None => break,
        }
    }
    Some(best)
}

/// Examples for several `sometimes` properties from one single-threaded breadth-first run that
/// stops once all are found; each is a shortest one (breadth-first order, first example kept).
/// Properties without an example are left out.
pub fn examples(config: &Config, names: &[&'static str]) -> Vec<(&'static str, Vec<Action>)> {
    let model = SottoModel::new(config.clone(), Variant::None);
    let c = model
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AllOf(names.iter().copied().collect()))
        .spawn_bfs()
        .join();
    names
        .iter()
        .filter_map(|n| c.discovery(n).map(|p| (*n, p.into_actions())))
        .collect()
}

/// The shortest counterexample for the property a broken variant breaks.
pub fn shortest_counterexample(
    config: &Config,
    variant: Variant,
    threads: usize,
) -> Option<(&'static str, Vec<Action>)> {
    let property = variant.breaks()?;
    shortest_discovery(config, variant, property, threads, 80).map(|a| (property, a))
}

/// Replays actions from the initial state; `None` if some action is not enabled.
pub fn replay(model: &SottoModel, actions: &[Action]) -> Option<Path<State, Action>> {
    let init = model.init_states().into_iter().next()?;
    Path::from_actions(model, init, actions)
}

/// Renders a path as a numbered step list, with what the server learned at each step.
pub fn render_steps(model: &SottoModel, actions: &[Action]) -> String {
    let mut out = String::new();
    let Some(path) = replay(model, actions) else {
        return "  (the path could not be replayed)\n".to_string();
    };
    let states = path.into_states();
    for (i, a) in actions.iter().enumerate() {
        let who = if a.by_attacker() { "server" } else { "device" };
        out.push_str(&format!("  {:>3}. [{who}] {a}\n", i + 1));
        if let (Some(before), Some(after)) = (states.get(i), states.get(i + 1)) {
            let learned = crate::trace::newly_known(model, before, after);
            if !learned.is_empty() {
                out.push_str(&format!(
                    "       the server now knows: {}\n",
                    learned.join(", ")
                ));
            }
        }
    }
    out
}

/// Renders a report as text (the `check` output).
pub fn render_report(model: &SottoModel, r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{} unique states ({} generated), depth {}, {:.1} s, {:.0} states/s{}\n\n",
        r.unique_states,
        r.total_states,
        r.max_depth,
        r.elapsed.as_secs_f64(),
        r.states_per_second(),
        if r.exhaustive {
            ""
        } else {
            " (simulation: not exhaustive)"
        }
    ));
    for p in &r.results {
        let (tag, path) = match &p.verdict {
            Verdict::Holds => ("holds          ", None),
            Verdict::Counterexample(a) => ("COUNTEREXAMPLE ", Some(a)),
            Verdict::Found(a) => ("found          ", Some(a)),
            Verdict::NotFound if r.exhaustive => ("NOT FOUND      ", None),
            Verdict::NotFound => ("not reached    ", None),
        };
        let len = path
            .map(|a| format!(" ({} steps)", a.len()))
            .unwrap_or_default();
        out.push_str(&format!("  {tag} {}{len}\n", p.name));
        if let (Verdict::Counterexample(a), Some(_)) = (&p.verdict, path) {
            out.push_str(&render_steps(model, a));
        }
    }
    for name in &model.config.skip {
        // The configurations that do exercise it.
        let shown: Vec<&str> = crate::scenario::Config::NAMES
            .into_iter()
            .filter(|c| {
                crate::scenario::Config::named(c).is_some_and(|x| !x.skip.iter().any(|s| s == name))
            })
            .collect();
        out.push_str(&format!(
            "  not exercised   {name} (this scenario has no such case; see --config {})\n",
            shown.join(" or --config ")
        ));
    }
    if r.exhaustive && !r.refusals.is_empty() {
        out.push_str("\nrefusals reached (explored transitions that take each branch):\n");
        for (refusal, n) in &r.refusals {
            let mark = if *n == 0 { "NOT REACHED" } else { "" };
            out.push_str(&format!("  {n:>10} {mark:<11} {}\n", refusal.describe()));
        }
    }
    out
}
