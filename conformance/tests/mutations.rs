//! Mutation sanity (issue 5, item 6): each test-only switch that breaks the implementation must
//! make the conformance run fail. Built only with `--features mutations`:
//!
//! ```sh
//! cargo test -p sotto-conformance --features mutations --test mutations
//! ```
//!
//! The conformance run here is what `sotto check` runs besides the model: the vectors, the replay
//! of the model's traces against the real stack, and the wiretap.
#![cfg(feature = "mutations")]

use std::path::{Path, PathBuf};

use sotto_conformance::replay::{self, Broker, Options, TraceSource};
use sotto_conformance::{vectors, wiretap};
use sotto_core::mutation::{self, Mutation};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The traces of the run: a verified exchange, a duplicate, a healed epoch after a compromise
/// and a forged bundle (the full set runs unmutated in `tests/replay.rs`).
fn traces() -> TraceSource {
    let mut t = replay::load_traces(&root().join("traces")).expect("committed traces");
    t.retain(|t| {
        (t.config == "small"
            && ["sometimes: Req5", "sometimes: RX-2", "sometimes: PCS"]
                .iter()
                .any(|n| t.name.starts_with(n)))
            || t.name.contains("forged bundle is rejected")
    });
    assert_eq!(t.len(), 4, "the four traces of the mutation run");
    TraceSource::Traces(t)
}

/// Why the conformance run failed (empty: it passed).
async fn conformance_failures() -> Vec<String> {
    let mut why = Vec::new();
    for case in vectors::check_dir(&root().join("vectors")) {
        if let Err(e) = case.result {
            why.push(format!("vector {}/{}: {e}", case.area, case.name));
        }
    }
    let ev = replay::run(&Options {
        broker: Broker::Embedded,
        nats: None,
        traces: traces(),
        full: true,
        adapter: None,
    })
    .await
    .expect("replay runs");
    why.extend(ev.failures.into_iter().map(|f| format!("replay {f}")));
    match wiretap::run(sotto_server::Broker::Embedded).await {
        Ok(ev) => why.extend(ev.findings.into_iter().map(|f| format!("wiretap {f}"))),
        Err(e) => why.push(format!("wiretap could not complete: {e}")),
    }
    why
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_makes_the_conformance_run_fail() {
    // The switch is process-global: one test, the cases in sequence.
    mutation::set(None);
    let clean = conformance_failures().await;
    assert!(clean.is_empty(), "the unmutated run fails: {clean:#?}");
    let mut survived = Vec::new();
    // The switches the vectors cannot catch, and the first four (issue 5) for the whole run; the
    // rest are each caught by the vectors alone (`vectors/tests/mutations_vectors.rs`).
    for &m in Mutation::ALL
        .iter()
        .filter(|m| !m.caught_by_vectors() || m.code() < 5)
    {
        mutation::set(Some(m));
        let why = conformance_failures().await;
        mutation::set(None);
        eprintln!("mutation {}: {} failures", m.name(), why.len());
        for w in why.iter().take(5) {
            eprintln!("  {w}");
        }
        if why.is_empty() {
            survived.push(m.name());
        }
    }
    assert!(
        survived.is_empty(),
        "mutations the conformance run did not catch: {survived:?}"
    );
}
