//! The committed seeds of the server-side fuzz targets (`fuzz/corpus/{filter,membership}/`),
//! replayed on stable Rust through the very checks the targets run (`fuzz/src/server_checks.rs`,
//! included by path), here against this crate's own `broker::filter` and `membership::api`
//! modules: nothing the filter lets through breaks the policy by an independent MQTT parser, the
//! request bodies re-encode to their bytes, and the seeds are still accepted.
//! Regenerate the seeds with `cargo run --manifest-path fuzz/seed-gen/Cargo.toml`.

use sotto_server::broker::filter;
use sotto_server::membership::api;

#[path = "../../../fuzz/src/server_checks.rs"]
mod server_checks;

#[path = "../../../fuzz/src/corpus.rs"]
mod corpus;

#[test]
fn filter_corpus_passes_only_what_the_policy_allows_broker_1_broker_2_broker_3() {
    corpus::replay("filter", server_checks::filter);
}

#[test]
fn membership_bodies_corpus_round_trips_key_3_key_4() {
    corpus::replay("membership", server_checks::membership);
}
