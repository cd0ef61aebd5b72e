//! Every refusal rule is pinned by a vector (issue 13, item 3): each core mutation switch that
//! removes one check (`sotto_core::mutation`, `caught_by_vectors`) must make at least one vector
//! case fail; with no switch, every case passes. Built only with `--features mutations`:
//!
//! ```sh
//! cargo test -p sotto-vectors --features mutations --test mutations_vectors -- --nocapture
//! ```
//!
//! prints the table `rule -> switch -> failing cases`. The switches are set per thread
//! (`mutation::set_for_thread`) and the vectors run on the test's own thread, so these tests do not
//! disturb each other or any other test of the binary.

#![cfg(feature = "mutations")]

use std::path::Path;

use sotto_core::mutation::{self, Mutation};
use sotto_vectors::{self as vectors, CaseReport};

/// Resets the thread's switch even if an assertion fails.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        mutation::set_for_thread(None);
    }
}

fn failures(m: Option<Mutation>) -> Vec<CaseReport> {
    let _reset = Reset;
    mutation::set_for_thread(m);
    let reports = vectors::check_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
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
fn every_vector_level_switch_is_caught() {
    let clean = failures(None);
    assert!(
        clean.is_empty(),
        "failures without a mutation: {:#?}",
        names(&clean)
    );
    let mut table = String::from("rule -> switch -> failing cases\n");
    let mut survived = Vec::new();
    for &m in Mutation::ALL.iter().filter(|m| m.caught_by_vectors()) {
        let failed = failures(Some(m));
        let list = names(&failed);
        table.push_str(&format!(
            "{} -> {} -> {} [{}]\n",
            m.rule(),
            m.name(),
            failed.len(),
            list.iter().take(4).cloned().collect::<Vec<_>>().join("; ")
        ));
        if failed.is_empty() {
            survived.push(format!("{} ({})", m.name(), m.rule()));
        }
    }
    eprintln!("{table}");
    assert!(
        survived.is_empty(),
        "switches no vector catches: {survived:?}\n{table}"
    );
    let after = failures(None);
    assert!(
        after.is_empty(),
        "failures after reset: {:#?}",
        names(&after)
    );
}

#[test]
fn the_issue_5_switches_are_caught_by_their_area() {
    for (m, area) in [
        (Mutation::SkipPrekeySignatureCheck, "bundle"),
        (Mutation::ReuseNonce, "chain"),
        (Mutation::PlaintextIdInClear, "envelope"),
    ] {
        let failed = failures(Some(m));
        assert!(
            failed.iter().any(|r| r.area == area),
            "{} is not caught by {area}.json: {:#?}",
            m.name(),
            names(&failed)
        );
    }
}

#[test]
fn every_pinned_refusal_rule_has_a_switch() {
    use std::collections::BTreeSet;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pinned = vectors::expected(dir).rules;
    let refusal: BTreeSet<&str> = vectors::rules::REFUSAL_RULES.iter().copied().collect();
    let switched: BTreeSet<&str> = Mutation::ALL.iter().map(|m| m.rule()).collect();
    let missing: BTreeSet<&str> = pinned
        .iter()
        .map(String::as_str)
        .filter(|r| refusal.contains(r) && !switched.contains(r))
        .collect();
    assert!(
        missing.is_empty(),
        "pinned refusal rules without a mutation switch that removes the check: {missing:?}"
    );
}
