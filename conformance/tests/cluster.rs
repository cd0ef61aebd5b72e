//! The replay and the wiretap on a NATS cluster (issue 17): a throwaway 3-node cluster
//! (`sotto_testkit::nats`), each trace and the wiretap with a fresh service (front and
//! membership) on it. The replay compares every step with the model as on the other brokers;
//! traces with the model's `Restart` (every queue lost) run up to it and are counted as prefixes
//! (`Restart on nats`), never as passes. The wiretap reads Req6 from the engine's own stream.
//!
//! Skips where `nats-server` is not installed; CI installs it and sets `SOTTO_REQUIRE_NATS=1`.

use std::path::Path;

use sotto_conformance::replay::{self, Broker, Options, TraceSource};
use sotto_conformance::target::Target;
use sotto_conformance::wiretap;
use sotto_testkit::nats::TestNats;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_replay_and_the_wiretap_holds_on_a_nats_cluster() {
    let Some(nats) = TestNats::start().await else {
        return;
    };
    let mut traces = replay::load_traces(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces"))
        .expect("committed traces");
    let filter = std::env::var("SOTTO_REPLAY_TRACE").unwrap_or_else(|_| "small/".to_owned());
    traces.retain(|t| format!("{}/{}", t.config, t.name).contains(&filter));
    let ev = replay::run(&Options {
        broker: Broker::Nats,
        nats: Some(nats.cluster()),
        traces: TraceSource::Traces(traces),
        full: true,
        adapter: None,
    })
    .await
    .expect("replay runs");
    assert!(
        ev.failures.is_empty(),
        "{} of {} traces diverged from the model on NATS:\n{}",
        ev.failures.len(),
        ev.traces,
        ev.failures.join("\n")
    );
    assert!(ev.traces_passed > 0, "nothing replayed: {ev:?}");
    eprintln!(
        "replayed {} traces, {} steps, on nats; prefixes only: {:?}",
        ev.traces_passed, ev.steps, ev.unmapped
    );

    let evidence = wiretap::run(Target::nats(nats.cluster()))
        .await
        .expect("wiretap run");
    assert!(
        evidence.findings.is_empty(),
        "findings on NATS: {:#?}",
        evidence.findings
    );
    assert!(evidence.acknowledged_envelopes > 0);
    assert!(
        evidence.retention_source.contains("NATS"),
        "{}",
        evidence.retention_source
    );
}
