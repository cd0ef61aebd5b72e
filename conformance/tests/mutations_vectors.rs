//! The known-answer vectors catch the core mutations (`sotto_core::mutation`): with each one set,
//! `check_dir` reports failing cases; with none, every case passes.
//!
//! The switch is process-global, so every case runs in the one test below, in sequence.

#![cfg(feature = "mutations")]

use std::path::Path;

use sotto_conformance::vectors::{self, CaseReport};
use sotto_core::mutation::{self, Mutation};

/// Resets the switch even if an assertion fails.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        mutation::set(None);
    }
}

fn failures(m: Option<Mutation>) -> Vec<CaseReport> {
    mutation::set(m);
    let reports = vectors::check_dir(Path::new("../vectors"));
    mutation::set(None);
    assert!(!reports.is_empty(), "no vectors found in ../vectors");
    reports.into_iter().filter(|r| r.result.is_err()).collect()
}

fn names(failed: &[CaseReport]) -> Vec<String> {
    failed
        .iter()
        .map(|r| format!("{}: {}", r.area, r.name))
        .collect()
}

#[test]
fn vectors_catch_the_core_mutations() {
    let _reset = Reset;
    let clean = failures(None);
    assert!(
        clean.is_empty(),
        "failures without a mutation: {:#?}",
        names(&clean)
    );
    for (m, area) in [
        (Mutation::SkipPrekeySignatureCheck, "bundle"),
        (Mutation::ReuseNonce, "chain"),
        (Mutation::PlaintextIdInClear, "envelope"),
    ] {
        let failed = failures(Some(m));
        eprintln!(
            "{}: {} failing cases: {:#?}",
            m.name(),
            failed.len(),
            names(&failed)
        );
        assert!(
            !failed.is_empty(),
            "{} is not caught by the vectors",
            m.name()
        );
        assert!(
            failed.iter().any(|r| r.area == area),
            "{} is not caught by {area}.json",
            m.name()
        );
    }
    // The switch is off again: everything passes.
    let after = failures(None);
    assert!(
        after.is_empty(),
        "failures after reset: {:#?}",
        names(&after)
    );
}
