//! Replays a committed seed corpus (`fuzz/corpus/<target>/`) through a target's check on stable
//! Rust (`tests/corpus.rs`).

use std::fs;
use std::path::{Path, PathBuf};

/// The committed corpus directory of `target` (`fuzz/corpus/<target>`).
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target)
}

/// Runs `check` on every file of the target's corpus: at least one file, and at least one accepted,
/// so a codec change that invalidates the seeds fails here rather than silently weakening the
/// fuzzing.
pub fn replay(target: &str, check: fn(&[u8]) -> bool) {
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut accepted = 0;
    for path in &files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
