//! The known-answer vectors of `vectors/` against this build of the core: every case passes. The
//! vectors pin most refusal rules (each with a mutation switch, `vectors/tests/mutations_vectors.rs`);
//! running them here makes them part of the core's own tests, which cargo-mutants runs.

use std::path::Path;

#[test]
fn every_committed_vector_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vectors");
    let reports = sotto_vectors::check_dir(&dir);
    assert!(reports.len() > 100, "vectors missing in {}", dir.display());
    let failed: Vec<String> = reports
        .iter()
        .filter_map(|r| match &r.result {
            Ok(()) => None,
            Err(e) => Some(format!("{}: {}: {e}", r.area, r.name)),
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} vector cases fail: {failed:#?}",
        failed.len()
    );
}
