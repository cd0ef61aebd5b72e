//! The requirements report: verdicts from hand-made evidence, and one real model check.

use std::collections::BTreeMap;

use sotto_conformance::evidence::{
    ModelEvidence, PropertyEvidence, ReplayEvidence, VectorEvidence, WiretapEvidence,
};
use sotto_conformance::model_run::{check_model, vector_evidence};
use sotto_conformance::report::{Absent, CellState, Inputs, REQUIREMENTS, Report, Source, Verdict};
use sotto_conformance::vectors::CaseReport;

/// Every property of the model, all passing, in config `default`.
fn good_model() -> ModelEvidence {
    let properties = sotto_model::properties::all()
        .iter()
        .map(|p| PropertyEvidence {
            name: p.name.to_owned(),
            always: !p.name.starts_with("sometimes"),
            passed: true,
            skipped: false,
        })
        .collect();
    ModelEvidence {
        config: "default".into(),
        states: 250_000,
        max_depth: 60,
        exhaustive: true,
        seconds: 12.0,
        properties,
        refusals: sotto_model::refusal::Refusal::ALL
            .iter()
            .map(|r| (r.describe().to_owned(), 3))
            .collect(),
    }
}

/// A replay that shows every `sometimes` property and every action kind once.
fn good_replay(broker: &str) -> ReplayEvidence {
    let shown: Vec<String> = sotto_model::properties::all()
        .iter()
        .filter(|p| p.name.starts_with("sometimes"))
        .map(|p| p.name.to_owned())
        .collect();
    let actions: BTreeMap<String, usize> = REQUIREMENTS
        .iter()
        .flat_map(|r| r.replay_actions.iter())
        .chain(sotto_model::Action::NAMES)
        .map(|a| ((*a).to_owned(), 3))
        .collect();
    ReplayEvidence {
        broker: broker.into(),
        traces_passed: shown.len(),
        traces: shown.len(),
        steps: 400,
        actions,
        unmapped: BTreeMap::new(),
        unsupported: BTreeMap::new(),
        shown,
        failures: Vec::new(),
        kinds: BTreeMap::new(),
    }
}

fn good_wiretap(broker: &str) -> WiretapEvidence {
    WiretapEvidence {
        broker: broker.into(),
        frames: 1200,
        bytes: 150_000,
        http_exchanges: 14,
        files: 3,
        needles: 40,
        findings: Vec::new(),
        acknowledged_envelopes: 30,
        retention_source: "the embedded broker's inboxes".into(),
        stored_records: 0,
        logs: 0,
        classes: sotto_conformance::evidence::SECRET_CLASSES
            .iter()
            .map(|c| (c.to_string(), 2))
            .collect(),
    }
}

fn good_vectors() -> VectorEvidence {
    let areas = [
        "bundle",
        "card",
        "chain",
        "envelope",
        "epoch",
        "first-message",
        "group",
        "inner",
        "kdf",
        "keyshare",
        "membership",
        "session-setup",
        "signup",
    ]
    .into_iter()
    .map(|a| (a.to_owned(), (10, 10)))
    .collect();
    VectorEvidence {
        areas,
        failures: Vec::new(),
        expected_codes: sotto_core::Error::ALL
            .iter()
            .map(|e| e.code().to_owned())
            .collect(),
        pinned_rules: sotto_conformance::vectors::rules::REFUSAL_RULES
            .iter()
            .map(|r| (*r).to_owned())
            .collect(),
    }
}

fn good() -> Inputs {
    Inputs {
        model: vec![good_model()],
        replay: vec![good_replay("embedded")],
        wiretap: vec![good_wiretap("embedded")],
        vectors: Some(good_vectors()),
        absent: Vec::new(),
        // Every model action replayed in good_replay, so no gap needs a reason.
        gaps: Default::default(),
    }
}

fn verdicts(r: &Report) -> Vec<(String, Verdict)> {
    r.rows.iter().map(|r| (r.req.clone(), r.verdict)).collect()
}

fn row<'a>(r: &'a Report, req: &str) -> &'a sotto_conformance::report::ReqRow {
    r.rows
        .iter()
        .find(|x| x.req == req)
        .unwrap_or_else(|| panic!("no row {req}"))
}

#[test]
fn all_good_evidence_passes_every_requirement() {
    let r = Report::build(good());
    assert_eq!(r.rows.len(), 8);
    for (req, v) in verdicts(&r) {
        assert_eq!(v, Verdict::Pass, "{req}: {:?}", row(&r, &req).failures);
    }
    assert!(r.passed());
    let table = r.render_table();
    assert!(table.contains("PASS: all 8 requirements pass"), "{table}");
    for i in 1..=8 {
        assert!(table.contains(&format!("Req{i} ")), "{table}");
    }
    assert!(!table.contains("failures:"), "{table}");
    // The counts reach the rows.
    let req8 = row(&r, "Req8");
    assert_eq!(req8.wiretap[0].frames, 1200);
    assert_eq!(req8.states, 250_000);
    let req4 = row(&r, "Req4");
    assert_eq!(req4.replay[0].actions.get("GoOffline"), Some(&3));
    assert_eq!(req4.replay[0].actions.get("GoOnline"), Some(&3));
    assert_eq!(req4.vectors.len(), 2);
    // Req7 has no vectors: not applicable, not missing.
    let req7 = row(&r, "Req7");
    assert_eq!(req7.cells[2].state, CellState::NotApplicable);
    // JSON round-trips.
    let back: Report = serde_json::from_str(&r.to_json()).expect("the report parses back");
    assert_eq!(back, r);
}

#[test]
fn every_model_property_belongs_to_a_requirement() {
    for p in sotto_model::properties::all() {
        assert!(
            REQUIREMENTS.iter().any(|r| r.properties.contains(&p.name)),
            "`{}` is in no requirement",
            p.name
        );
    }
}

#[test]
fn a_failed_property_fails_its_requirements_only() {
    let mut inputs = good();
    let prop = sotto_model::properties::names::REQ1_NO_PERSONAL;
    for p in &mut inputs.model[0].properties {
        if p.name == prop {
            p.passed = false;
        }
    }
    let r = Report::build(inputs);
    assert!(!r.passed());
    assert_eq!(row(&r, "Req1").verdict, Verdict::Fail);
    assert!(
        row(&r, "Req1")
            .failures
            .iter()
            .any(|f| f.contains(prop) && f.contains("counterexample")),
        "{:?}",
        row(&r, "Req1").failures
    );
    for req in ["Req2", "Req3", "Req4", "Req5", "Req6", "Req7", "Req8"] {
        assert_eq!(row(&r, req).verdict, Verdict::Pass, "{req}");
    }
    let table = r.render_table();
    assert!(table.contains("failures:"), "{table}");
    assert!(table.contains("FAIL: 1 fail (Req1)"), "{table}");
}

#[test]
fn a_missing_sometimes_example_fails_too() {
    let mut inputs = good();
    let prop = sotto_model::properties::names::S_EPOCHS;
    for p in &mut inputs.model[0].properties {
        if p.name == prop {
            p.passed = false;
        }
    }
    let r = Report::build(inputs);
    assert_eq!(row(&r, "Req3").verdict, Verdict::Fail);
    assert!(row(&r, "Req3").failures[0].contains("no example"));
}

#[test]
fn a_wiretap_finding_fails_req8() {
    let mut inputs = good();
    inputs.wiretap[0]
        .findings
        .push("frame 17 (to the broker): the text `canary-1`".into());
    let r = Report::build(inputs);
    assert!(!r.passed());
    let req8 = row(&r, "Req8");
    assert_eq!(req8.verdict, Verdict::Fail);
    assert!(req8.failures.iter().any(|f| f.contains("canary-1")));
    assert_eq!(req8.cells[3].state, CellState::Fail);
    for req in ["Req1", "Req2", "Req3", "Req4", "Req5", "Req7"] {
        assert_eq!(row(&r, req).verdict, Verdict::Pass, "{req}");
    }
    assert!(r.render_table().contains("canary-1"));
}

#[test]
fn a_wiretap_that_saw_nothing_is_no_evidence() {
    let mut inputs = good();
    inputs.wiretap[0].frames = 0;
    let r = Report::build(inputs);
    let req8 = row(&r, "Req8");
    assert_eq!(req8.verdict, Verdict::Fail);
    assert_eq!(req8.cells[3].state, CellState::NoEvidence);
}

#[test]
fn a_source_that_did_not_run_fails_the_rows_that_need_it() {
    // Nothing given for the wiretap at all.
    let mut inputs = good();
    inputs.wiretap.clear();
    let r = Report::build(inputs);
    assert!(!r.passed());
    assert_eq!(row(&r, "Req8").verdict, Verdict::Fail);
    assert_eq!(row(&r, "Req6").verdict, Verdict::Fail);
    assert_eq!(row(&r, "Req1").verdict, Verdict::Pass);
    assert!(r.render_table().contains("NOT RUN"));

    // The replay failed to run on one broker of two.
    let mut inputs = good();
    inputs.absent.push(Absent::not_run(
        Source::Replay,
        "mosquitto",
        "not wired yet",
    ));
    let r = Report::build(inputs);
    let req4 = row(&r, "Req4");
    assert_eq!(req4.verdict, Verdict::Fail);
    assert!(
        req4.failures
            .iter()
            .any(|f| f.contains("mosquitto: not wired yet")),
        "{:?}",
        req4.failures
    );
    // Req7 does not need the replay: a note, not a failure.
    assert_eq!(row(&r, "Req7").verdict, Verdict::Pass);

    // No vectors: every row with vector areas fails, Req7 (none) does not.
    let mut inputs = good();
    inputs.vectors = None;
    let r = Report::build(inputs);
    for req in ["Req1", "Req2", "Req3", "Req4", "Req5", "Req6", "Req8"] {
        assert_eq!(row(&r, req).verdict, Verdict::Fail, "{req}");
    }
    assert_eq!(row(&r, "Req7").verdict, Verdict::Pass);

    // An area missing from the vectors fails its rows.
    let mut inputs = good();
    if let Some(v) = inputs.vectors.as_mut() {
        v.areas.remove("signup");
    }
    let r = Report::build(inputs);
    assert_eq!(row(&r, "Req1").verdict, Verdict::Fail);
    assert!(row(&r, "Req1").failures[0].contains("`signup` was not checked"));

    // Nothing at all: every row fails.
    let r = Report::build(Inputs::default());
    assert!(r.rows.iter().all(|x| x.verdict == Verdict::Fail));
}

#[test]
fn a_replay_that_shows_nothing_for_a_requirement_fails_it() {
    let mut inputs = good();
    inputs.replay[0].actions.remove("GoOffline");
    inputs.replay[0].actions.remove("GoOnline");
    let r = Report::build(inputs);
    let req4 = row(&r, "Req4");
    assert_eq!(req4.verdict, Verdict::Fail);
    assert_eq!(req4.cells[1].state, CellState::NoEvidence);
}

#[test]
fn a_diverging_trace_fails_every_row_that_uses_the_replay() {
    let mut inputs = good();
    inputs.replay[0].traces += 1;
    inputs.replay[0]
        .failures
        .push("default/run 7: step 12: B's store differs".into());
    let r = Report::build(inputs);
    assert!(r.rows.iter().all(|x| x.verdict == Verdict::Fail));
    assert!(r.render_table().contains("step 12"));
}

#[test]
fn skipped_sources_show_skipped_and_never_pass() {
    let mut inputs = good();
    inputs.wiretap.clear();
    inputs.absent.push(Absent::skipped(Source::Wiretap));
    let r = Report::build(inputs);
    assert!(!r.passed());
    assert_eq!(row(&r, "Req8").verdict, Verdict::Skipped);
    assert_eq!(row(&r, "Req6").verdict, Verdict::Skipped);
    assert_eq!(row(&r, "Req1").verdict, Verdict::Pass);
    let table = r.render_table();
    assert!(table.contains("SKIPPED"), "{table}");
    assert!(
        table.contains("2 skipped, not passed (Req6, Req8)"),
        "{table}"
    );
    assert!(!table.contains("PASS: all"), "{table}");

    // Skipped and failing: the failure wins.
    let mut inputs = good();
    inputs.wiretap.clear();
    inputs.absent.push(Absent::skipped(Source::Wiretap));
    for p in &mut inputs.model[0].properties {
        if p.name == sotto_model::properties::names::REQ8_SECRECY {
            p.passed = false;
        }
    }
    let r = Report::build(inputs);
    assert_eq!(row(&r, "Req8").verdict, Verdict::Fail);

    // Everything skipped: nothing passes.
    let inputs = Inputs {
        absent: Source::ALL.into_iter().map(Absent::skipped).collect(),
        ..Inputs::default()
    };
    let r = Report::build(inputs);
    assert!(r.rows.iter().all(|x| x.verdict == Verdict::Skipped));
    assert!(!r.passed());
}

#[test]
fn properties_a_config_leaves_out_are_notes_and_skipped_is_not_passed() {
    let mut inputs = good();
    let m = &mut inputs.model[0];
    // Config `small`: no groups (absent), the third epoch left to `default` (skipped).
    m.config = "small".into();
    m.properties
        .retain(|p| !p.name.starts_with("GRP") && !p.name.contains("GRP-"));
    for p in &mut m.properties {
        if p.name == sotto_model::properties::names::S_EPOCHS {
            p.skipped = true;
            p.passed = false;
        }
    }
    let r = Report::build(inputs);
    assert_eq!(row(&r, "Req3").verdict, Verdict::Pass);
    assert!(row(&r, "Req3").notes.iter().any(|n| n.contains("EPOCH-2")));
    assert!(row(&r, "Req8").notes.iter().any(|n| n.contains("GRP-6")));
    // A row whose every property is left out has no model evidence.
    let mut inputs = good();
    inputs.model[0]
        .properties
        .retain(|p| !p.name.contains("Req7"));
    let r = Report::build(inputs);
    assert_eq!(row(&r, "Req7").verdict, Verdict::Fail);
}

#[test]
fn unattributed_failures_fail_the_report() {
    let mut inputs = good();
    if let Some(v) = inputs.vectors.as_mut() {
        v.areas.insert("inner".into(), (9, 10));
        v.failures
            .push("inner/IN-3 padding: expected 32 bytes".into());
    }
    let r = Report::build(inputs);
    assert!(r.rows.iter().all(|x| x.verdict == Verdict::Pass));
    assert!(!r.passed());
    assert!(r.render_table().contains("inner/IN-3 padding"));
}

#[test]
fn vector_evidence_sums_cases_per_area() {
    let case = |area: &str, name: &str, result: Result<(), String>| CaseReport {
        area: area.into(),
        name: name.into(),
        result,
        invalid: false,
    };
    let v = vector_evidence(&[
        case("kdf", "a", Ok(())),
        case("kdf", "b", Err("expected x".into())),
        case("card", "c", Ok(())),
    ]);
    assert_eq!(v.areas.get("kdf"), Some(&(1, 2)));
    assert_eq!(v.areas.get("card"), Some(&(1, 1)));
    assert_eq!(v.failures, vec!["kdf/b: expected x".to_owned()]);
}

#[test]
fn committed_vectors_give_evidence_for_every_area() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../vectors");
    let v = vector_evidence(&sotto_conformance::vectors::check_dir(&dir));
    assert!(v.failures.is_empty(), "{:?}", v.failures);
    for r in REQUIREMENTS {
        for a in r.vector_areas {
            assert!(
                v.areas.get(*a).is_some_and(|(p, t)| *t > 0 && p == t),
                "{a}"
            );
        }
    }
}

#[test]
fn the_small_model_check_runs_in_process() {
    let m = check_model("small", 1).expect("`small` is a configuration");
    assert_eq!(m.config, "small");
    assert!(m.exhaustive);
    assert!(m.states > 100_000, "{} states", m.states);
    let failing: Vec<&str> = m
        .properties
        .iter()
        .filter(|p| !p.skipped && !p.passed)
        .map(|p| p.name.as_str())
        .collect();
    assert!(failing.is_empty(), "{failing:?}");
    assert!(m.properties.iter().any(|p| p.skipped));
    assert!(m.properties.iter().filter(|p| p.passed).count() > 10);
    assert!(check_model("nope", 1).is_err());
}

/// The report's own coverage: a gap fails it unless docs/coverage.md lists it; the committed file
/// parses and explains something.
#[test]
fn coverage_gaps_fail_unless_listed() {
    use sotto_conformance::report::coverage::Gaps;
    let mut inputs = good();
    assert!(Report::build(inputs.clone()).passed());
    let v = inputs.vectors.as_mut().expect("vectors");
    v.expected_codes.remove("too_large");
    let r = Report::build(inputs.clone());
    assert!(!r.passed(), "an unexplained gap fails");
    assert!(
        r.render_table()
            .contains("not covered and not listed: too_large")
    );
    inputs.gaps = Gaps::parse(include_str!("../../docs/coverage.md"));
    let r = Report::build(inputs.clone());
    assert!(!r.passed(), "rows of gaps the evidence covers are stale");
    // Take out of the fixture what the document lists, so that each listed row is a real gap.
    use sotto_conformance::report::coverage::{ACTIONS, ERROR_CODES, REFUSALS, RULES};
    let gaps = inputs.gaps.clone();
    let v = inputs.vectors.as_mut().expect("vectors");
    for c in gaps.listed(ERROR_CODES) {
        v.expected_codes.remove(c);
    }
    for rule in gaps.listed(RULES) {
        v.pinned_rules.remove(rule);
    }
    for branch in gaps.listed(REFUSALS) {
        inputs.model[0].refusals.insert(branch.clone(), 0);
    }
    for replay in &mut inputs.replay {
        for action in gaps.listed(ACTIONS) {
            replay.actions.remove(action);
        }
    }
    let r = Report::build(inputs.clone());
    assert!(r.passed(), "{}", r.render_table());
    // A refusal branch the model never took is a gap too.
    let reached = &mut inputs.model[0].refusals;
    let branch = sotto_model::refusal::Refusal::BundleBadSignature.describe();
    reached.insert(branch.to_owned(), 0);
    let r = Report::build(inputs);
    assert!(!r.passed(), "an unreached refusal branch fails");
    assert!(r.render_table().contains(branch), "{}", r.render_table());
}
