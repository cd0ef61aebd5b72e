//! Traces for the implementation: actions and the abstract state after each step, as JSON.
//!
//! The abstract state is what an implementation can observe and compare: per device its
//! contacts, sessions (peer, epoch, verified), committed messages, outbox and group epoch; per
//! inbox the waiting envelopes by type; and which texts and personal terms the server knows. Term
//! ids never appear, so a trace means the same thing in every run.
//!
//! `export-traces DIR` writes one file per `sometimes` discovery and a covering set of bounded
//! runs (random walks from fixed seeds, kept while they exercise an action or outcome no earlier
//! run did). [`Trace::replay`] checks a trace against the model: every action must be enabled
//! and every recorded abstract state must match.

use crate::action::Action;
use crate::check::replay;
use crate::model::SottoModel;
use crate::state::{Hold, State};
use crate::term::{Atom, Const, Dev, Party, Shape, Term};
use serde::{Deserialize, Serialize};
use stateright::Model;
use std::collections::BTreeSet;

/// A device as an implementation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Which device.
    pub dev: Dev,
    /// Signed up.
    pub signed_up: bool,
    /// Connected.
    pub online: bool,
    /// Contacts as (user id, verified).
    pub contacts: Vec<(Dev, bool)>,
    /// Sessions.
    pub sessions: Vec<SessionView>,
    /// Committed messages, as `what<-from`.
    pub store: Vec<String>,
    /// Messages awaiting a receipt, as `what->to`.
    pub outbox: Vec<String>,
    /// Held packet: `idle`, or `acked` (acknowledged, not committed: variant only).
    pub hold: String,
    /// Envelopes kept for retry.
    pub retry: usize,
    /// Group epoch held, if a member.
    pub group_epoch: Option<u8>,
}

/// A session as an implementation sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// Peer user id.
    pub peer: Dev,
    /// Started by this device.
    pub initiator: bool,
    /// Peer verified.
    pub verified: bool,
    /// Newest epoch.
    pub epoch: u8,
}

/// A waiting packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketView {
    /// Envelope type: `first`, `data`, `epoch-start`, `group`.
    pub kind: String,
}

/// The abstract state after a step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbstractState {
    /// Position in the scenario.
    pub scenario_step: u8,
    /// Devices.
    pub devices: Vec<DeviceView>,
    /// Broker queues, per inbox.
    pub queues: Vec<Vec<PacketView>>,
    /// Texts, group texts and personal terms the server knows.
    pub server_knows: Vec<String>,
    /// Compromised device.
    pub compromised: Option<Dev>,
    /// Device whose store was stolen.
    pub stolen: Option<Dev>,
}

/// One step of a trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The action, in protocol vocabulary.
    pub action: Action,
    /// Readable description.
    pub says: String,
    /// Abstract state after it.
    pub state: AbstractState,
}

/// A recorded run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// Configuration name.
    pub config: String,
    /// Variant name.
    pub variant: String,
    /// What the run shows: a property name, or `run <seed>`.
    pub name: String,
    /// The initial abstract state.
    pub initial: AbstractState,
    /// Steps.
    pub steps: Vec<Step>,
}

fn envelope_kind(m: &SottoModel, env: crate::term::TermId) -> String {
    let t = m.t();
    let shape = t
        .fields(env)
        .and_then(|f| f.first().copied())
        .map(|x| t.get(x));
    match shape {
        Some(Term::Const(Const::Shape(Shape::First))) => "first",
        Some(Term::Const(Const::Shape(Shape::Data))) => "data",
        Some(Term::Const(Const::Shape(Shape::EpochStart))) => "epoch-start",
        Some(Term::Const(Const::Shape(Shape::Group))) => "group",
        _ => "other",
    }
    .to_string()
}

/// Secrets worth naming in reports: texts, group texts, personal terms, identity keys.
fn named_secrets(m: &SottoModel, s: &State) -> BTreeSet<String> {
    let t = m.t().read();
    s.knowledge
        .iter()
        .filter_map(|id| match t.term(id) {
            Term::Atom(a @ (Atom::Text(_) | Atom::GroupText(_) | Atom::Personal(_))) => {
                Some(crate::term::show_atom(a))
            }
            Term::Atom(a @ (Atom::IdDh(Party::Dev(_)) | Atom::GroupKey(_))) => {
                Some(crate::term::show_atom(a))
            }
            _ => None,
        })
        .collect()
}

/// Named secrets the server learned between two states.
pub fn newly_known(m: &SottoModel, before: &State, after: &State) -> Vec<String> {
    let b = named_secrets(m, before);
    named_secrets(m, after)
        .into_iter()
        .filter(|x| !b.contains(x))
        .collect()
}

impl AbstractState {
    /// The abstract view of a model state.
    pub fn of(m: &SottoModel, s: &State) -> AbstractState {
        let devices = m
            .devs()
            .map(|d| {
                let x = s.dev(d);
                DeviceView {
                    dev: d,
                    signed_up: x.signed_up,
                    online: x.online,
                    contacts: x.contacts.iter().map(|c| (c.peer, c.verified)).collect(),
                    sessions: x
                        .sessions
                        .iter()
                        .map(|ses| SessionView {
                            peer: ses.peer,
                            initiator: ses.initiator,
                            verified: ses.verified,
                            epoch: ses.newest,
                        })
                        .collect(),
                    store: x
                        .store
                        .iter()
                        .map(|st| format!("{}<-{}", st.what, st.from))
                        .collect(),
                    outbox: x
                        .outbox
                        .iter()
                        .map(|o| format!("{}->{}", o.what, o.to))
                        .collect(),
                    hold: match x.hold {
                        Hold::Idle => "idle",
                        Hold::Acked(_) => "acked",
                    }
                    .to_string(),
                    retry: x.retry.len(),
                    group_epoch: x.group.as_ref().map(|g| g.epoch),
                }
            })
            .collect();
        let queues = s
            .queues
            .iter()
            .map(|q| {
                q.iter()
                    .map(|p| PacketView {
                        kind: envelope_kind(m, p.env),
                    })
                    .collect()
            })
            .collect();
        AbstractState {
            scenario_step: s.pc,
            devices,
            queues,
            server_knows: named_secrets(m, s).into_iter().collect(),
            compromised: s.compromised,
            stolen: s.stolen,
        }
    }
}

impl Trace {
    /// A file-name form of a trace's name: lower-case letters and digits, words joined by `-`,
    /// at most eight words (`export-traces` and the runner's charts name files with it).
    pub fn slug(name: &str) -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect::<String>()
            .split('-')
            .filter(|w| !w.is_empty())
            .take(8)
            .collect::<Vec<_>>()
            .join("-")
    }

    /// Records a run of the model.
    pub fn record(m: &SottoModel, name: &str, actions: &[Action]) -> Option<Trace> {
        let path = replay(m, actions)?;
        let states = path.into_states();
        Some(Trace {
            config: m.config.name.clone(),
            variant: m.variant.name().to_string(),
            name: name.to_string(),
            initial: AbstractState::of(m, &states[0]),
            steps: actions
                .iter()
                .zip(states.iter().skip(1))
                .map(|(a, s)| Step {
                    action: a.clone(),
                    says: a.to_string(),
                    state: AbstractState::of(m, s),
                })
                .collect(),
        })
    }

    /// Checks the trace against a model: every action enabled, every abstract state equal.
    pub fn replay(&self, m: &SottoModel) -> Result<(), String> {
        let actions: Vec<Action> = self.steps.iter().map(|s| s.action.clone()).collect();
        let path = replay(m, &actions).ok_or_else(|| {
            format!(
                "trace `{}`: an action is not enabled in the model",
                self.name
            )
        })?;
        let states = path.into_states();
        if AbstractState::of(m, &states[0]) != self.initial {
            return Err(format!("trace `{}`: initial state differs", self.name));
        }
        for (i, (step, s)) in self.steps.iter().zip(states.iter().skip(1)).enumerate() {
            if AbstractState::of(m, s) != step.state {
                return Err(format!(
                    "trace `{}`: state after step {} differs",
                    self.name,
                    i + 1
                ));
            }
        }
        Ok(())
    }
}

/// A small deterministic generator for the covering runs (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// Bounded random walks that together take every action kind the model enables: a walk is kept
/// when it takes an action kind (by vocabulary name and actor) that no kept walk took before.
pub fn covering_runs(m: &SottoModel, attempts: u64, max_steps: usize) -> Vec<(u64, Vec<Action>)> {
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let mut kept = Vec::new();
    for seed in 1..=attempts {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut s = m.init_states().remove(0);
        let mut actions = Vec::new();
        let mut new = BTreeSet::new();
        for _ in 0..max_steps {
            let mut enabled = Vec::new();
            m.actions(&s, &mut enabled);
            let steps: Vec<(Action, State)> = enabled
                .into_iter()
                .filter_map(|a| m.next_state(&s, a.clone()).map(|n| (a, n)))
                .collect();
            if steps.is_empty() {
                break;
            }
            let (a, n) = steps[rng.below(steps.len())].clone();
            let key = format!("{}/{}", a.name(), outcome_key(&a));
            if !covered.contains(&key) {
                new.insert(key);
            }
            actions.push(a);
            s = n;
        }
        if !new.is_empty() {
            covered.extend(new);
            kept.push((seed, actions));
        }
    }
    kept
}

fn outcome_key(a: &Action) -> String {
    match a {
        Action::Inject { injection, .. } => format!("{injection:?}"),
        Action::ForgeBundle { forgery, .. } => format!("{forgery:?}"),
        _ => String::new(),
    }
}
