//! Trace replay: the model drives the real stack, and after every step the implementation's
//! observable state must equal the model's.
//!
//! ```text
//!   traces/*.json (sotto-model export-traces)          fresh stack per trace (stack.rs)
//!   step: Action ──> real operation ──────────────────> clients, membership, front, relay, broker
//!                    (driver.rs)        settle: nothing in flight, every online device connected
//!   model AbstractState  ==?  AbstractState read from the stores, the core and the relay
//!                    mismatch: trace, step, action and a field-by-field difference
//! ```
//!
//! Each model action maps to what a person, the network or the attacker does to the real system:
//! `Signup` signs up over HTTPS with a proof of work, `ScanCard` moves a real card URI,
//! `FetchBundle` asks the directory, `ForgeBundle` hands the client a bundle the server forged
//! (checked exactly as a directory answer), `Send`/`GroupSend` seal into the outbox and publish,
//! `GoOffline`/`GoOnline` stop and reconnect the MQTT session, `Receive` releases one held packet
//! through the relay ([`relay`]) and waits for the client's acknowledgement (sent only after its
//! commit), `Resend` publishes the identical envelope again, `Drop`/`Duplicate`/`Reorder`/`Replay`
//! are the relay's, `Restart` restarts the broker, `Steal` copies the store's files and searches
//! them, `Compromise` exports the device state (the leak itself changes nothing observable).
//! `KeyUpdate` sends a key update, `IssueCert` has the CA certify a key of the attacker's under the
//! user id, `Inject` queues a first message as the claimed sender or a data message on the target's
//! receiving chain, built from the keys the model's attacker holds. `Commit` exists only in the
//! broken variant `ack-before-commit`, whose traces are not replayed; a trace that has it is
//! replayed up to it and counted in [`ReplayEvidence::unmapped`].
//!
//! What is compared per device: signed up, online, contacts and their verification, sessions
//! (peer, initiator, verified, newest epoch, oldest first), the texts committed (`m1<-A`), the
//! messages awaiting a receipt (`m1->B`, group keys and notices as `control->B`), envelopes kept
//! for retry, the group epoch; per inbox: the waiting envelopes by type. The texts carry random
//! canaries; no canary may appear in any byte the relay carried (Req8), nor in a stolen store (Req7).

mod driver;
pub use driver::{unmapped, unmapped_action};
pub mod relay;
mod stack;
mod subject;
pub use subject::AdapterCommand;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sotto_model::trace::Trace;

use crate::evidence::ReplayEvidence;
use crate::target::Target;

/// Which broker runs behind the front (the service's one word for it).
pub use sotto_server::Broker;

/// Where the traces come from.
#[derive(Clone, Debug)]
pub enum TraceSource {
    /// Every `*.json` trace under a directory (recursively), in name order.
    Dir(PathBuf),
    /// Traces already in memory.
    Traces(Vec<Trace>),
}

/// What to replay, against what.
#[derive(Clone, Debug)]
pub struct Options {
    /// The broker.
    pub broker: Broker,
    /// With [`Broker::Nats`]: the cluster every trace's service runs on.
    pub nats: Option<sotto_server::broker::nats::NatsCluster>,
    /// The traces.
    pub traces: TraceSource,
    /// Replay every trace; otherwise at most [`DEFAULT_TRACES`] traces, the discoveries first.
    pub full: bool,
    /// The client implementation: `None`, the reference adapter in this process (`sotto
    /// check`); else an adapter process speaking the adapter protocol (`sotto-conformance
    /// drive`, docs/adapter.md).
    pub adapter: Option<AdapterCommand>,
}

/// Traces of the default run (it fits CI).
pub const DEFAULT_TRACES: usize = 40;

/// Why a replay could not run (a mismatch is not an error: it is a failure in the evidence).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the traces.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A trace file is not a trace.
    #[error("{file}: {error}")]
    BadTrace {
        /// The file.
        file: String,
        /// The parse error.
        error: String,
    },
    /// No traces found.
    #[error("no traces in {0}")]
    NoTraces(String),
    /// The real stack could not start.
    #[error("stack: {0}")]
    Stack(String),
    /// The adapter could not start or did not greet (`hello`): no trace can run.
    #[error("adapter: {0}")]
    Adapter(String),
}

/// Reads every trace under `dir`, recursively, in path order.
pub fn load_traces(dir: &Path) -> Result<Vec<Trace>, ReplayError> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let trace: Trace = serde_json::from_str(&text).map_err(|e| ReplayError::BadTrace {
            file: f.display().to_string(),
            error: e.to_string(),
        })?;
        out.push(trace);
    }
    if out.is_empty() {
        return Err(ReplayError::NoTraces(dir.display().to_string()));
    }
    Ok(out)
}

/// The outcome of one trace.
#[derive(Clone, Debug, Default)]
pub struct TraceOutcome {
    /// Steps replayed and compared.
    pub steps: usize,
    /// Action kinds replayed.
    pub actions: BTreeMap<String, usize>,
    /// The first unmapped action kind, if the replay stopped there.
    pub unmapped: Option<String>,
    /// The action (and the adapter op) the adapter answered `unsupported`, if the replay
    /// stopped there.
    pub unsupported: Option<String>,
    /// The failure: step, action and difference.
    pub failure: Option<String>,
}

/// Replays one trace against a fresh stack on `target`, the client side through `adapter`
/// (`None`: the reference adapter in this process).
pub async fn replay_trace(
    target: impl Into<Target>,
    adapter: Option<&AdapterCommand>,
    trace: &Trace,
) -> Result<TraceOutcome, ReplayError> {
    driver::Driver::replay(&target.into(), adapter, trace).await
}

/// Starts the adapter `adapter` in a scratch directory, exchanges `hello` and ends it: what
/// it says it is, or why it cannot run.
pub async fn greet(adapter: &AdapterCommand) -> Result<String, ReplayError> {
    let dir = tempfile::tempdir()?;
    let (subject, implementation) = subject::Subject::start(Some(adapter), dir.path())
        .await
        .map_err(ReplayError::Adapter)?;
    subject.shutdown().await;
    Ok(implementation)
}

/// Replays the traces of `opts` and gathers the evidence.
pub async fn run(opts: &Options) -> Result<ReplayEvidence, ReplayError> {
    let mut traces = match &opts.traces {
        TraceSource::Dir(d) => load_traces(d)?,
        TraceSource::Traces(t) => t.clone(),
    };
    traces.retain(|t| t.variant == "none");
    if !opts.full {
        // Discoveries first (each shows one property), then the covering runs.
        traces.sort_by_key(|t| !t.name.starts_with("sometimes"));
        traces.truncate(DEFAULT_TRACES);
    }
    let mut ev = ReplayEvidence {
        broker: opts.broker.name().to_owned(),
        ..ReplayEvidence::default()
    };
    for trace in &traces {
        let started = Instant::now();
        let label = format!("{}/{}", trace.config, trace.name);
        let target = Target {
            broker: opts.broker,
            nats: opts.nats.clone(),
        };
        let outcome = replay_trace(target, opts.adapter.as_ref(), trace).await?;
        ev.steps += outcome.steps;
        for (k, n) in &outcome.actions {
            *ev.actions.entry(k.clone()).or_default() += n;
        }
        let verdict = match (&outcome.failure, &outcome.unmapped, &outcome.unsupported) {
            (Some(f), _, _) => {
                ev.traces += 1;
                ev.failures.push(format!("{label}: {f}"));
                "FAIL"
            }
            (None, Some(kind), _) => {
                *ev.unmapped.entry(kind.clone()).or_default() += 1;
                "prefix"
            }
            (None, None, Some(what)) => {
                *ev.unsupported.entry(what.clone()).or_default() += 1;
                "prefix (unsupported by the adapter)"
            }
            (None, None, None) => {
                ev.traces += 1;
                ev.traces_passed += 1;
                ev.shown.push(trace.name.clone());
                ev.kinds
                    .insert(label.clone(), outcome.actions.keys().cloned().collect());
                "ok"
            }
        };
        tracing::info!(
            trace = %label,
            steps = outcome.steps,
            verdict,
            ms = started.elapsed().as_millis() as u64,
            "replayed"
        );
        eprintln!(
            "  {} [{}] {label}: {} steps, {verdict}{} ({:.1} s)",
            if opts.adapter.is_some() {
                "drive"
            } else {
                "replay"
            },
            opts.broker.name(),
            outcome.steps,
            outcome
                .unmapped
                .as_ref()
                .or(outcome.unsupported.as_ref())
                .map(|k| format!(" up to {k}"))
                .unwrap_or_default(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ev)
}
