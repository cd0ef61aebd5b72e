//! The committed fuzz seeds (`fuzz/corpus/<target>/`), replayed on stable Rust through the very
//! checks the targets run: decoding never panics, whatever decodes re-encodes to the same bytes,
//! nothing the message service's filter lets through breaks its rules by an independent MQTT
//! parser, and the seeds are still accepted, so a codec change that invalidates them fails here
//! rather than silently weakening the fuzzing. (The scenario targets' seeds are run by
//! `make-seeds`, which CI runs.) Regenerate the seeds with
//! `cargo run -p sotto-fuzz-harness --bin make-seeds`.

use sotto_fuzz_harness::corpus::replay;
use sotto_fuzz_harness::{checks, server_checks};

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

#[test]
fn filter_corpus_passes_only_what_the_rules_allow_broker_1_broker_2_broker_3() {
    replay("filter", server_checks::filter);
}

#[test]
fn membership_bodies_corpus_round_trips_key_3_key_4() {
    replay("membership", server_checks::membership);
}

#[test]
fn nats_corpus_frames_parse_and_write_back() {
    replay("nats", server_checks::nats);
}
