//! # sotto-fuzz-harness: the bodies of Sotto's fuzz targets, on stable Rust
//!
//! Each target in `fuzz/fuzz_targets/` (nightly, cargo-fuzz) is a few lines that call one function
//! here, in the style of rustls. The same functions run on stable in three places: the corpus
//! replay of `tests/corpus.rs` (part of `cargo test --workspace`), the seed writer `make-seeds`
//! (which checks every seed it writes), and the fuzzers themselves.
//!
//! - [`checks`]: the decoder targets of `sotto-core` (`envelope`, `inner`, `first_message`,
//!   `card`, `signup`, `bundle`).
//! - [`server_checks`]: the `filter` (the message service's rules, `sotto_wire::filter`) and
//!   `membership` (the membership request bodies, `sotto_wire::membership_api`) targets. Both are
//!   I/O-free code of `sotto-wire`, so the fuzz build pulls in no runtime (tokio, rustls,
//!   SQLCipher).
//! - [`two_party`] and [`group`]: seeded devices driven by an `arbitrary` action sequence through an
//!   in-memory broker that drops, duplicates, reorders and tampers with envelopes.
//! - [`corpus`]: replays a committed corpus through a check.

pub mod checks;
pub mod corpus;
pub mod group;
pub mod server_checks;
pub mod two_party;

use arbitrary::{Arbitrary, Unstructured};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The shared input layout of the scenario targets: `seed u64` (little-endian; its low byte picks the
/// set-up, see [`setup_rng`]), then up to `max` actions decoded one after the other with `arbitrary`.
/// `None` if the input is shorter than the seed.
pub fn parse_actions<'a, A: Arbitrary<'a>>(data: &'a [u8], max: usize) -> Option<(u64, Vec<A>)> {
    let (seed, rest) = data.split_first_chunk::<8>()?;
    let mut u = Unstructured::new(rest);
    let mut actions = Vec::new();
    while !u.is_empty() && actions.len() < max {
        match A::arbitrary(&mut u) {
            Ok(a) => actions.push(a),
            Err(_) => break,
        }
    }
    Some((u64::from_le_bytes(*seed), actions))
}

/// The randomness of a scenario's set-up (devices, cards, group creation): it depends only on the
/// low byte of the input's seed, so each target caches at most 256 set-ups, which cost more than most
/// action sequences. Everything after the set-up draws from the whole seed.
pub fn setup_rng(seed: u64) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..16].copy_from_slice(b"sotto-fuzz/setup");
    key[16] = seed.to_le_bytes()[0];
    ChaCha20Rng::from_seed(key)
}

/// Writes the bytes that `arbitrary` (1.x derive) decodes back to a value: how `make-seeds` writes
/// action sequences. `make-seeds` checks every sequence it writes with [`parse_actions`].
pub trait ToArbitraryBytes {
    /// Appends the encoding.
    fn write(&self, out: &mut Vec<u8>);
}

/// The encoding of a whole scenario input: seed, then the actions.
pub fn encode_actions<A: ToArbitraryBytes>(seed: u64, actions: &[A]) -> Vec<u8> {
    let mut out = seed.to_le_bytes().to_vec();
    for a in actions {
        a.write(&mut out);
    }
    out
}

/// The derive picks variant `(u32 * count) >> 32` of an enum; this is the smallest `u32` that picks
/// variant `index`, little-endian.
pub fn write_variant(out: &mut Vec<u8>, index: u32, count: u32) {
    let tag = (u64::from(index) << 32).div_ceil(u64::from(count));
    out.extend_from_slice(&u32::try_from(tag).unwrap_or(u32::MAX).to_le_bytes());
}

/// A text of exactly `len` ASCII bytes, different for different `n`.
pub fn text(n: u32, len: u8) -> String {
    (0..u32::from(len))
        .map(|i| {
            char::from(b'a' + u8::try_from((n.wrapping_mul(7).wrapping_add(i)) % 26).unwrap_or(0))
        })
        .collect()
}

/// What a scenario run did: how many deliveries opened and how many were refused with an `Err`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Deliveries that opened.
    pub opened: usize,
    /// Deliveries refused with a typed error.
    pub refused: usize,
}

/// Whether the invariant `name` is switched off for this run, by listing it (comma-separated) in the
/// environment variable `SOTTO_FUZZ_IGNORE`. Only for invariants that a known, reported bug of
/// `sotto-core` breaks, so that fuzzing can go on past it until the fix lands; see `fuzz/README.md`.
pub fn ignored(name: &str) -> bool {
    static IGNORED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    IGNORED
        .get_or_init(|| {
            std::env::var("SOTTO_FUZZ_IGNORE")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .collect()
        })
        .iter()
        .any(|n| n == name)
}

/// Lowercase hex, for assertion messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
