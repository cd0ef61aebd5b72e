//! The committed fuzz seeds (`fuzz/corpus/<target>/`), replayed on stable Rust through the very checks
//! the decoder fuzz targets run (`fuzz/src/checks.rs`, included by path): decoding never panics,
//! whatever decodes re-encodes to the same bytes, and the seeds still decode, so a codec change that
//! invalidates them fails here rather than silently weakening the fuzzing.
//! Regenerate the seeds with `cargo run --manifest-path fuzz/seed-gen/Cargo.toml`.

use std::fs;
use std::path::{Path, PathBuf};

#[path = "../../../../fuzz/src/checks.rs"]
mod checks;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Runs `check` on every file of the target's corpus: at least one file, and at least one accepted.
fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut accepted = 0;
    for path in &files {
        let data = fs::read(path).unwrap();
        if check(&data) {
            accepted += 1;
        }
    }
    assert!(!files.is_empty(), "no file in {}", dir.display());
    assert!(
        accepted > 0,
        "no seed in {} is accepted any more",
        dir.display()
    );
}

#[test]
fn envelope_corpus_round_trips_env_6() {
    replay("envelope", checks::envelope);
}

#[test]
fn inner_corpus_round_trips_in_1() {
    replay("inner", checks::inner);
}

#[test]
fn card_corpus_round_trips_card_2() {
    replay("card", checks::card);
}

#[test]
fn signup_corpus_round_trips_signup_1() {
    replay("signup", checks::signup);
}

#[test]
fn bundle_corpus_round_trips_key_5_grp_2() {
    replay("bundle", checks::bundle);
}

#[test]
fn first_message_corpus_opens_once_x3dh_6() {
    replay("first_message", checks::first_message);
}
