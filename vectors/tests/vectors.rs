//! The committed vectors hold against the core, and regenerating them changes nothing.

use std::path::PathBuf;

use sotto_vectors as vectors;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_vectors_pass() {
    let reports = vectors::check_dir(&dir());
    let failed: Vec<_> = reports.iter().filter(|r| r.result.is_err()).collect();
    assert!(failed.is_empty(), "{}", vectors::render(&reports));
    // At least 8 areas, each with valid and invalid cases.
    let areas = vectors::areas();
    assert!(areas.len() >= 8);
    for a in &areas {
        let json = std::fs::read_to_string(dir().join(format!("{}.json", a.name)))
            .expect("committed file");
        assert!(json.contains("\"ok\""), "{} has no valid case", a.name);
        assert!(json.contains("\"error\""), "{} has no invalid case", a.name);
    }
}

#[test]
fn regenerating_changes_nothing() {
    for a in vectors::areas() {
        let committed = std::fs::read_to_string(dir().join(format!("{}.json", a.name)))
            .expect("committed file");
        let fresh = (a.generate)();
        assert!(
            committed == fresh,
            "vectors/{}.json drifted from the core: run `cargo run -p sotto-conformance -- generate-vectors` and diff vectors/{0}-new.json",
            a.name
        );
    }
}

#[test]
fn a_wrong_expectation_fails() {
    // Change one expected byte of a committed file: the runner must catch it.
    let path = dir().join("kdf.json");
    let json = std::fs::read_to_string(path).expect("committed file");
    let mut v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let case = v["cases"]
        .as_array_mut()
        .and_then(|c| c.iter_mut().find(|c| c["op"] == "root_and_keyshare"))
        .expect("a root_and_keyshare case");
    let rk0 = case["rk0"].as_str().expect("hex").to_owned();
    let flipped = format!(
        "{}{}",
        if rk0.starts_with('0') { "1" } else { "0" },
        &rk0[1..]
    );
    case["rk0"] = serde_json::Value::String(flipped);
    let entry = vectors::areas()
        .into_iter()
        .find(|a| a.name == "kdf")
        .expect("kdf area");
    let reports = (entry.run)(&v.to_string());
    assert_eq!(reports.iter().filter(|r| r.result.is_err()).count(), 1);
    // And a file that is not a vector file at all is one schema failure.
    let reports = (entry.run)("{\"area\": 3}");
    assert!(
        reports[0]
            .result
            .as_ref()
            .is_err_and(|e| e.starts_with("schema"))
    );
}
