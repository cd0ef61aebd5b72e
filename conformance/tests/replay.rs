//! The model's traces replayed against the real stack, on both brokers (issue 5, items 1-2).
//!
//! By default the `small` configuration's traces (every action kind but the group ones, in about
//! a minute per broker); `sotto check` replays all of them (`small`, `default`, `deep`).
//! `SOTTO_REPLAY_TRACE=<substring>` selects by `<config>/<name>` instead (`/` for all).

use std::path::{Path, PathBuf};

use sotto_conformance::replay::{self, Broker, Options, TraceSource};

fn traces_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces")
}

fn selected() -> TraceSource {
    let mut traces = replay::load_traces(&traces_dir()).expect("committed traces");
    let filter = std::env::var("SOTTO_REPLAY_TRACE").unwrap_or_else(|_| "small/".to_owned());
    traces.retain(|t| format!("{}/{}", t.config, t.name).contains(&filter));
    TraceSource::Traces(traces)
}

fn mosquitto_installed() -> bool {
    std::process::Command::new("mosquitto")
        .arg("-h")
        .output()
        .is_ok()
}

async fn replay_all(broker: Broker) {
    let ev = replay::run(&Options {
        broker,
        nats: None,
        traces: selected(),
        full: true,
        adapter: None,
    })
    .await
    .expect("replay runs");
    assert!(
        ev.failures.is_empty(),
        "{} of {} traces diverged from the model:\n{}",
        ev.failures.len(),
        ev.traces,
        ev.failures.join("\n")
    );
    assert!(
        ev.traces_passed > 0 && ev.steps > 0,
        "nothing replayed: {ev:?}"
    );
    eprintln!(
        "replayed {} traces, {} steps, on {}; prefixes only: {:?}",
        ev.traces_passed,
        ev.steps,
        broker.name(),
        ev.unmapped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_replay_on_the_embedded_broker() {
    replay_all(Broker::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_replay_on_mosquitto() {
    if !mosquitto_installed() {
        eprintln!("mosquitto is not installed: skipped (CI installs it)");
        return;
    }
    replay_all(Broker::Mosquitto).await;
}

/// The comparison is not vacuous: a trace whose recorded state is wrong in one field (B never
/// committed the text the model says it did) fails at that step, with the field named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_recorded_state_fails_the_replay() {
    let mut traces = replay::load_traces(&traces_dir().join("small")).expect("traces");
    let mut trace = traces
        .drain(..)
        .find(|t| t.name.contains("Req5 a message from a verified contact"))
        .expect("the Req5 discovery");
    let last = trace.steps.len();
    let step = trace.steps.last_mut().expect("steps");
    let b = step
        .state
        .devices
        .iter_mut()
        .find(|d| !d.store.is_empty())
        .expect("someone committed a text");
    b.store.clear();
    let out = replay::replay_trace(Broker::Embedded, None, &trace)
        .await
        .expect("replay runs");
    let failure = out.failure.expect("the wrong state is caught");
    assert!(
        failure.starts_with(&format!("step {last} ")) && failure.contains(".store"),
        "{failure}"
    );
}

/// The committed traces still describe the model: every action is enabled and every recorded
/// state equal (after a model change, `sotto-model export-traces traces/<config> --config
/// <config>` writes them again).
#[test]
fn committed_traces_match_the_model() {
    use sotto_model::scenario::Config;
    use sotto_model::{SottoModel, Variant};
    let traces = replay::load_traces(&traces_dir()).expect("committed traces");
    let mut checked = 0;
    for t in &traces {
        let config = Config::named(&t.config).expect("known configuration");
        let variant = Variant::named(&t.variant).expect("known variant");
        let model = SottoModel::new(config, variant);
        if let Err(e) = t.replay(&model) {
            panic!("{e}: export the traces again");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} traces committed");
}
