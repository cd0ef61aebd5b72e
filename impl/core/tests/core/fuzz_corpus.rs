//! The committed fuzz seeds (`fuzz/corpus/<target>/`), replayed on stable Rust through the very checks
//! the decoder fuzz targets run (`fuzz/src/checks.rs`, included by path): decoding never panics,
//! whatever decodes re-encodes to the same bytes, and the seeds still decode, so a codec change that
//! invalidates them fails here rather than silently weakening the fuzzing.
//! Regenerate the seeds with `cargo run --manifest-path fuzz/seed-gen/Cargo.toml`.

#[path = "../../../../fuzz/src/checks.rs"]
mod checks;

#[path = "../../../../fuzz/src/corpus.rs"]
mod corpus;

use corpus::replay;

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
