//! Maps model actions to real operations and reads the abstract state back from the real system.
//! The client side goes through the adapter protocol ([`Subject`]): the same steps, the same
//! comparison, whether the reference adapter answers in-process or another implementation's
//! adapter answers over JSON lines.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rand_core::{OsRng, RngCore};
use sotto_adapter::protocol::{
    self as wire, Compromised, Done, Due, Forged, GroupCreated, GroupSent, Outcome, Request,
    Resent, SignedUp,
};
use sotto_core::envelope::Header;
use sotto_core::{Device, UserId};
use sotto_model::action::{Action, Forgery, Injection};
use sotto_model::scenario::{Config, Intent};
use sotto_model::state::What;
use sotto_model::term::Dev;
use sotto_model::trace::{AbstractState, DeviceView, SessionView, Trace};

use super::stack::Stack;
use super::subject::{AdapterCommand, StepError, Subject};
use super::{Broker, ReplayError, TraceOutcome};
use crate::target::Target;

/// Upper bound of every wait of one step.
const STEP_WAIT: Duration = Duration::from_secs(15);
/// How often settling looks again.
const POLL: Duration = Duration::from_millis(15);

struct Person {
    /// Where the device keeps everything (the adapter is told; Steal searches it).
    dir: PathBuf,
    /// The user id (text form) once signed up.
    user: Option<String>,
    online: bool,
}

/// Why one step failed (becomes the trace's failure), or stopped (an op the adapter lacks).
type StepResult = Result<(), StepError>;

/// A device's outbox entries awaiting a receipt (message id, recipient), and its group's epoch
/// and members.
type OutboxAndGroup = (Vec<(String, String)>, Option<(u32, Vec<String>)>);

pub(crate) struct Driver {
    stack: Stack,
    subject: Subject,
    config: Config,
    people: BTreeMap<Dev, Person>,
    /// Texts sent: (from, to, what) -> (message id hex, envelope for `to`).
    sent: BTreeMap<(Dev, Dev, What), (String, Vec<u8>)>,
    /// Message id (hex) -> model name (`m1`, `g2`).
    names: BTreeMap<String, String>,
    /// Control messages awaiting receipts: (from, to, model name) -> message id, for Resend.
    control: BTreeMap<(Dev, Dev, String), String>,
    /// Key updates sent, per device (the model numbers them).
    key_updates: BTreeMap<Dev, u8>,
    /// Canaries in the texts, by model name.
    canaries: BTreeMap<String, String>,
    /// The scenario's group (hex).
    group: Option<String>,
    leaked: Vec<Dev>,
}

fn envelope_kind(payload: &[u8]) -> &'static str {
    match sotto_core::envelope::Envelope::decode(payload).map(|e| e.header().clone()) {
        Ok(Header::First { .. }) => "first",
        Ok(Header::Data { .. }) => "data",
        Ok(Header::EpochStart { .. }) => "epoch-start",
        Ok(Header::Group { .. }) => "group",
        Err(_) => "other",
    }
}

fn canary() -> String {
    let mut b = [0u8; 12];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A text's model name (`m1`, `g2`, `forged0`), as opposed to a control message
/// (`group-key(e0)`, `key-update1`).
fn is_text(s: &str) -> bool {
    let mut c = s.chars();
    s.starts_with("forged")
        || (matches!(c.next(), Some('m' | 'g')) && c.next().is_some_and(|d| d.is_ascii_digit()))
}

fn unhex(field: &str, text: &str) -> Result<Vec<u8>, StepError> {
    hex::decode(text).map_err(|e| StepError::Failed(format!("{field} is not hex: {e}")))
}

/// Model actions the driver cannot run against the real stack, with the reason. A trace that
/// takes one is replayed up to it and counted as a prefix ([`super::ReplayEvidence::unmapped`]).
pub fn unmapped() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "Commit",
            "exists only in the broken variant ack-before-commit, whose traces are not replayed",
        ),
        (
            RESTART_ON_NATS,
            "the model's Restart loses every queue; a NATS cluster keeps its queues through a node \
             loss (the cluster fault tests), and the service does not run it, so cannot restart it",
        ),
        (
            "Inject GroupKeyAs",
            "a group key signed by a member who is not the admin: sotto-core has no API to build \
             a membership signed by another member's identity from the harness",
        ),
    ]
}

/// The entry of [`unmapped`] for the model's `Restart` on a NATS cluster.
const RESTART_ON_NATS: &str = "Restart on nats";

/// The entry of [`unmapped`] an action falls under on `broker`, if any.
fn unmapped_on(broker: Broker, a: &Action) -> Option<&'static str> {
    match a {
        Action::Restart if broker == Broker::Nats => Some(RESTART_ON_NATS),
        _ => unmapped_action(a),
    }
}

/// The entry of [`unmapped`] an action falls under on every broker, if any.
pub fn unmapped_action(a: &Action) -> Option<&'static str> {
    match a {
        Action::Commit(_) => Some("Commit"),
        Action::Inject {
            injection: Injection::GroupKeyAs(_),
            ..
        } => Some("Inject GroupKeyAs"),
        _ => None,
    }
}

/// The parts of the model's view the implementation can show.
fn project(state: &AbstractState) -> (Vec<DeviceView>, Vec<Vec<String>>) {
    let devices = state
        .devices
        .iter()
        .map(|d| {
            let mut d = d.clone();
            d.store.retain(|s| is_text(s));
            d.store.sort();
            d.outbox = d
                .outbox
                .iter()
                .map(|o| {
                    if is_text(o) {
                        o.clone()
                    } else {
                        let to = o.rsplit("->").next().unwrap_or("?");
                        format!("control->{to}")
                    }
                })
                .collect();
            d.outbox.sort();
            d
        })
        .collect();
    let queues = state
        .queues
        .iter()
        .map(|q| q.iter().map(|p| p.kind.clone()).collect())
        .collect();
    (devices, queues)
}

fn diff(model: &DeviceView, real: &DeviceView) -> Vec<String> {
    let mut out = Vec::new();
    let d = model.dev;
    macro_rules! field {
        ($f:ident) => {
            if model.$f != real.$f {
                out.push(format!(
                    "{d}.{}: model {:?}, real {:?}",
                    stringify!($f),
                    model.$f,
                    real.$f
                ));
            }
        };
    }
    field!(signed_up);
    field!(online);
    field!(contacts);
    field!(sessions);
    field!(store);
    field!(outbox);
    field!(hold);
    field!(retry);
    field!(group_epoch);
    out
}

impl Driver {
    pub(crate) async fn replay(
        target: &Target,
        adapter: Option<&AdapterCommand>,
        trace: &Trace,
    ) -> Result<TraceOutcome, ReplayError> {
        let config = Config::named(&trace.config).ok_or_else(|| ReplayError::BadTrace {
            file: trace.name.clone(),
            error: format!("unknown configuration {}", trace.config),
        })?;
        let stack = Stack::start(target).await?;
        let (subject, _implementation) = match Subject::start(adapter, stack.dir.path()).await {
            Ok(s) => s,
            Err(e) => {
                stack.shutdown().await;
                return Err(ReplayError::Adapter(e));
            }
        };
        let people = (0..usize::from(config.devices))
            .map(|i| {
                let dev = Dev::from_ix(i);
                (
                    dev,
                    Person {
                        dir: stack.dir.path().join(format!("{dev}")),
                        user: None,
                        online: true,
                    },
                )
            })
            .collect();
        let mut driver = Driver {
            stack,
            subject,
            config,
            people,
            sent: BTreeMap::new(),
            names: BTreeMap::new(),
            control: BTreeMap::new(),
            key_updates: BTreeMap::new(),
            canaries: BTreeMap::new(),
            group: None,
            leaked: Vec::new(),
        };
        let mut outcome = TraceOutcome::default();
        for (i, step) in trace.steps.iter().enumerate() {
            let kind = step.action.name();
            if let Some(what) = unmapped_on(target.broker, &step.action) {
                outcome.unmapped = Some(what.to_owned());
                break;
            }
            let mut result = driver.apply(&step.action).await;
            if let (Ok(()), Action::Receive(d)) = (&result, &step.action) {
                // RX-4: the acknowledgement went out, so the commit must already be there.
                result = driver.committed_at_ack(*d, &step.state).await;
            }
            let result = match result {
                Ok(()) => driver.settle().await,
                Err(e) => Err(e),
            };
            let result = match result {
                Ok(()) => driver.compare(&step.state).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {}
                Err(StepError::Unsupported(op)) => {
                    outcome.unsupported = Some(format!("{kind} ({op})"));
                    break;
                }
                Err(StepError::Failed(e)) => {
                    outcome.steps += 1;
                    *outcome.actions.entry(kind.to_owned()).or_default() += 1;
                    outcome.failure = Some(format!(
                        "step {} ({}): {e}{}",
                        i + 1,
                        step.says,
                        driver.subject.stderr_tail()
                    ));
                    break;
                }
            }
            outcome.steps += 1;
            *outcome.actions.entry(kind.to_owned()).or_default() += 1;
        }
        if outcome.failure.is_none() {
            if let Err(e) = driver.search_relayed() {
                outcome.failure = Some(e);
            }
        }
        driver.shutdown().await;
        Ok(outcome)
    }

    fn user(&self, d: Dev) -> Result<String, StepError> {
        self.people
            .get(&d)
            .and_then(|p| p.user.clone())
            .ok_or_else(|| StepError::Failed(format!("{d} has no user id")))
    }

    fn person(&mut self, d: Dev) -> Result<&mut Person, StepError> {
        self.people
            .get_mut(&d)
            .ok_or_else(|| StepError::Failed(format!("no device {d}")))
    }

    /// Asks the subject something about device `d`.
    async fn ask<T: serde::de::DeserializeOwned>(&mut self, r: Request) -> Result<T, StepError> {
        self.subject.ask(r).await
    }

    /// The device's observable state, as the adapter reports it.
    async fn state(&mut self, d: Dev) -> Result<wire::State, StepError> {
        self.ask(Request::State {
            device: d.to_string(),
        })
        .await
    }

    /// From one `state` of `d`: the messages awaiting a receipt in its outbox (message id,
    /// recipient), and the epoch and members of the group it is in, if any (the scenarios have
    /// one group).
    async fn outbox_and_group(&mut self, d: Dev) -> Result<OutboxAndGroup, StepError> {
        let state = self.state(d).await?;
        let awaiting = state
            .outbox
            .into_iter()
            .map(|p| (p.message_id, p.to))
            .collect();
        let group = state
            .groups
            .into_iter()
            .next()
            .map(|g| (g.epoch, g.members));
        Ok((awaiting, group))
    }

    /// The devices by user id.
    fn devs(&self) -> BTreeMap<String, Dev> {
        self.people
            .iter()
            .filter_map(|(d, p)| p.user.clone().map(|u| (u, *d)))
            .collect()
    }

    /// Names the control messages an action put in the outbox (group keys, removal notices,
    /// key updates, leaves, handovers), as the model does, so that a later Resend finds them.
    /// A Receive names those the burst's group changes queued: the admin's removal of a member
    /// that left (GRP-11), the new admin's first keys (GRP-12).
    async fn apply(&mut self, action: &Action) -> StepResult {
        let sender = match action {
            Action::GroupCreate { admin }
            | Action::GroupAdd { admin, .. }
            | Action::GroupRemove { admin, .. }
            | Action::GroupHandover { admin, .. } => Some(*admin),
            Action::GroupLeave { member } => Some(*member),
            Action::KeyUpdate { from, .. } => Some(*from),
            Action::Receive(d) => Some(*d),
            _ => None,
        };
        let Some(sender) = sender else {
            return self.apply_action(action).await;
        };
        let signed_up = self.people.get(&sender).is_some_and(|p| p.user.is_some());
        if matches!(action, Action::Receive(_)) && !signed_up {
            return self.apply_action(action).await;
        }
        let (before, held) = self.outbox_and_group(sender).await?;
        if matches!(action, Action::Receive(_)) && held.is_none() {
            return self.apply_action(action).await;
        }
        let epoch_before = held.map_or(0, |(e, _)| e);
        self.apply_action(action).await?;
        let (after, group) = self.outbox_and_group(sender).await?;
        let (epoch, members) = group.unwrap_or_default();
        let users = self.devs();
        for (id, to) in after.into_iter().filter(|r| !before.contains(r)) {
            let Some(to_dev) = users.get(&to).copied() else {
                continue;
            };
            let e8 = |e: u32| u8::try_from(e).unwrap_or(u8::MAX);
            let name = match action {
                Action::GroupRemove { member, .. } if *member == to_dev => {
                    What::GroupRemoved(e8(epoch)).to_string()
                }
                Action::GroupLeave { .. } => What::GroupLeave(e8(epoch_before)).to_string(),
                Action::GroupHandover { .. } => {
                    What::GroupHandover(e8(epoch_before.saturating_add(1))).to_string()
                }
                Action::Receive(_) if !members.contains(&to) => {
                    What::GroupRemoved(e8(epoch)).to_string()
                }
                Action::KeyUpdate { .. } => {
                    let n = self.key_updates.entry(sender).or_default();
                    let name = What::KeyUpdate(*n).to_string();
                    *n += 1;
                    name
                }
                _ => What::GroupKey(e8(epoch)).to_string(),
            };
            self.control.insert((sender, to_dev, name), id);
        }
        Ok(())
    }

    async fn apply_action(&mut self, action: &Action) -> StepResult {
        match action {
            Action::Signup(d) => self.signup(*d).await,
            Action::ScanCard { by, of } => {
                let card: wire::Card = self
                    .ask(Request::Card {
                        device: of.to_string(),
                    })
                    .await?;
                // A refused card (e.g. an identity change) changes nothing, as in the model.
                let _: Outcome = self
                    .ask(Request::AddCard {
                        device: by.to_string(),
                        card: card.card,
                    })
                    .await?;
                Ok(())
            }
            Action::FetchBundle { by, of } => {
                let user_id = self.user(*of)?;
                let _: Outcome = self
                    .ask(Request::AddFromDirectory {
                        device: by.to_string(),
                        user_id,
                    })
                    .await?;
                Ok(())
            }
            Action::ForgeBundle { by, of, forgery } => {
                let victim = self.user(*of)?;
                let real: wire::Bundle = self
                    .ask(Request::Bundle {
                        device: of.to_string(),
                    })
                    .await?;
                let real = unhex("bundle", &real.bundle)?;
                let bytes = forged_bundle(&victim, *forgery, &real)?;
                // The device checks it exactly as a directory answer (KEY-5) and adds it if it
                // passes; the state comparison shows whether it should have.
                let _: Outcome = self
                    .ask(Request::AddBundle {
                        device: by.to_string(),
                        user_id: victim,
                        bundle: hex::encode(bytes),
                    })
                    .await?;
                Ok(())
            }
            Action::Send { from, to, msg } => {
                let what = What::Text(*msg);
                let name = what.to_string();
                let canary = canary();
                let to_user = self.user(*to)?;
                let sent: wire::Sent = self
                    .ask(Request::Send {
                        device: from.to_string(),
                        to: to_user,
                        text: format!("{name} {canary}"),
                    })
                    .await?;
                let envelope = unhex("envelope", &sent.envelope)?;
                self.sent
                    .insert((*from, *to, what), (sent.message_id.clone(), envelope));
                self.names.insert(sent.message_id, name.clone());
                self.canaries.insert(name, canary);
                Ok(())
            }
            Action::GroupSend { from, msg } => {
                let group_id = self.group.clone().ok_or("no group yet")?;
                let name = What::GroupText(*msg).to_string();
                let canary = canary();
                let sent: GroupSent = self
                    .ask(Request::GroupSend {
                        device: from.to_string(),
                        group_id,
                        text: format!("{name} {canary}"),
                    })
                    .await?;
                self.names.insert(sent.message_id, name.clone());
                self.canaries.insert(name, canary);
                Ok(())
            }
            Action::GroupCreate { admin } => {
                let members: Vec<Dev> = self
                    .config
                    .script
                    .iter()
                    .find_map(|i| match i {
                        Intent::GroupCreate { admin: a, members } if a == admin => {
                            Some(members.clone())
                        }
                        _ => None,
                    })
                    .ok_or("no GroupCreate in the scenario")?;
                let members = members
                    .iter()
                    .filter(|m| *m != admin)
                    .map(|m| self.user(*m))
                    .collect::<Result<Vec<_>, _>>()?;
                let created: GroupCreated = self
                    .ask(Request::GroupCreate {
                        device: admin.to_string(),
                        members,
                    })
                    .await?;
                self.group = Some(created.group_id);
                Ok(())
            }
            Action::GroupAdd { admin, member } | Action::GroupRemove { admin, member } => {
                let group_id = self.group.clone().ok_or("no group yet")?;
                let member = self.user(*member)?;
                let device = admin.to_string();
                let request = if matches!(action, Action::GroupAdd { .. }) {
                    Request::GroupAdd {
                        device,
                        group_id,
                        member,
                    }
                } else {
                    Request::GroupRemove {
                        device,
                        group_id,
                        member,
                    }
                };
                let _: Done = self.ask(request).await?;
                Ok(())
            }
            Action::GroupLeave { member } => {
                let group_id = self.group.clone().ok_or("no group yet")?;
                let _: Done = self
                    .ask(Request::GroupLeave {
                        device: member.to_string(),
                        group_id,
                    })
                    .await?;
                Ok(())
            }
            Action::GroupHandover { admin, to } => {
                let group_id = self.group.clone().ok_or("no group yet")?;
                let to = self.user(*to)?;
                let _: Done = self
                    .ask(Request::GroupHandover {
                        device: admin.to_string(),
                        group_id,
                        to,
                    })
                    .await?;
                Ok(())
            }
            Action::GoOffline(d) => {
                let _: Done = self
                    .ask(Request::GoOffline {
                        device: d.to_string(),
                    })
                    .await?;
                self.person(*d)?.online = false;
                Ok(())
            }
            Action::GoOnline(d) => {
                let _: Done = self
                    .ask(Request::GoOnline {
                        device: d.to_string(),
                    })
                    .await?;
                self.person(*d)?.online = true;
                Ok(())
            }
            Action::Receive(d) => {
                let user = self.user(*d)?;
                self.stack
                    .relay
                    .deliver(&user, STEP_WAIT)
                    .await
                    .map_err(|e| StepError::Failed(e.to_string()))
            }
            Action::Resend { from, to, what } => {
                let to_user = self.user(*to)?;
                let id = match what {
                    What::Text(_) => self
                        .sent
                        .get(&(*from, *to, *what))
                        .map(|(id, _)| id.clone()),
                    What::GroupText(_) => self
                        .names
                        .iter()
                        .find(|(_, n)| **n == what.to_string())
                        .map(|(id, _)| id.clone()),
                    _ => self.control.get(&(*from, *to, what.to_string())).cloned(),
                }
                .ok_or_else(|| format!("no record of {what} from {from} to {to}"))?;
                let resent: Resent = self
                    .ask(Request::Resend {
                        device: from.to_string(),
                        message_id: id,
                        to: to_user,
                    })
                    .await?;
                if resent.resent {
                    Ok(())
                } else {
                    Err(format!("{what} is not in {from}'s outbox").into())
                }
            }
            Action::Drop { inbox, index } => {
                let user = self.user(*inbox)?;
                self.stack
                    .relay
                    .drop_packet(&user, usize::from(*index))
                    .map_err(|e| StepError::Failed(e.to_string()))
            }
            Action::Duplicate { inbox, index } => {
                let user = self.user(*inbox)?;
                self.stack
                    .relay
                    .duplicate(&user, usize::from(*index))
                    .map_err(|e| StepError::Failed(e.to_string()))
            }
            Action::Reorder { inbox } => {
                let user = self.user(*inbox)?;
                self.stack
                    .relay
                    .reorder(&user)
                    .map_err(|e| StepError::Failed(e.to_string()))
            }
            Action::Replay { inbox, from, what } => {
                let env = self
                    .sent
                    .get(&(*from, *inbox, *what))
                    .map(|(_, e)| e.clone())
                    .ok_or_else(|| format!("no recorded envelope of {what} from {from}"))?;
                let user = self.user(*inbox)?;
                self.stack.relay.inject(&user, Bytes::from(env));
                Ok(())
            }
            Action::Restart => self
                .stack
                .restart_broker()
                .await
                .map_err(|e| StepError::Failed(e.to_string())),
            Action::Compromise(d) => {
                // The leak: the whole device state, as the attacker would get it.
                let leaked: Compromised = self
                    .ask(Request::Compromise {
                        device: d.to_string(),
                    })
                    .await?;
                if leaked.state_bytes == 0 {
                    return Err("empty device state".into());
                }
                self.leaked.push(*d);
                Ok(())
            }
            Action::Steal(d) => self.steal(*d),
            Action::KeyUpdate { from, to } => {
                let to = self.user(*to)?;
                let _: Done = self
                    .ask(Request::KeyUpdate {
                        device: from.to_string(),
                        to,
                    })
                    .await?;
                Ok(())
            }
            Action::IssueCert(d) => {
                // The CA (the attacker) certifies a key of its own under d's user id.
                let user = self.user(*d)?;
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| e.to_string())?;
                let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
                self.stack
                    .service
                    .pki()
                    .issue_client_cert(&user, &spki)
                    .map(|_| ())
                    .map_err(|e| StepError::Failed(format!("issue certificate: {e}")))
            }
            Action::Inject { inbox, injection } => {
                let target = self.user(*inbox)?;
                let forged: Forged = match injection {
                    // A first message as `claim` without a one-time prekey (forged1). Building it
                    // takes what the model's attacker holds (DH(IKd_claim, SPK_target) from either
                    // side's leaked keys): the claimant's device builds it (an attacker hook of
                    // the adapter) from the target's public bundle. With `FirstWithOwnKeys`, the
                    // same under identity keys of the server's own (mis-binding): RX-9 refuses
                    // it for a known user id.
                    Injection::FirstAs(claim) | Injection::FirstWithOwnKeys(claim) => {
                        let bundle: wire::Bundle = self
                            .ask(Request::Bundle {
                                device: inbox.to_string(),
                            })
                            .await?;
                        self.ask(Request::ForgeFirst {
                            device: claim.to_string(),
                            to: target.clone(),
                            bundle: bundle.bundle,
                            own_keys: matches!(injection, Injection::FirstWithOwnKeys(_)),
                            text: "forged1 injected".to_owned(),
                        })
                        .await?
                    }
                    Injection::GroupKeyAs(_) => {
                        return Err(format!("{} is not mapped", action.name()).into());
                    }
                    // A data message on the target's newest receiving chain from `peer`
                    // (forged0), from the target's state as a compromise leaks it.
                    Injection::DataAs(peer) => {
                        let peer = self.user(*peer)?;
                        self.ask(Request::ForgeData {
                            device: inbox.to_string(),
                            peer,
                            text: "forged0 injected".to_owned(),
                        })
                        .await?
                    }
                };
                let bytes = unhex("envelope", &forged.envelope)?;
                self.stack.relay.inject(&target, Bytes::from(bytes));
                Ok(())
            }
            Action::Commit(_) => Err(format!("{} is not mapped", action.name()).into()),
        }
    }

    async fn signup(&mut self, d: Dev) -> StepResult {
        let membership_url = self.stack.service.membership_url();
        let ca_pem = self.stack.service.pki().ca_pem().to_owned();
        let store_dir = self.person(d)?.dir.display().to_string();
        let signed: SignedUp = self
            .ask(Request::Signup {
                device: d.to_string(),
                membership_url,
                ca_pem,
                store_dir,
            })
            .await?;
        let p = self.person(d)?;
        p.user = Some(signed.user_id);
        p.online = true;
        Ok(())
    }

    /// Waits until nothing is in flight: every online device connected with nothing due, every
    /// publish acknowledged by the broker, everything for online devices arrived at the relay.
    async fn settle(&mut self) -> StepResult {
        let deadline = tokio::time::Instant::now() + STEP_WAIT;
        loop {
            let online: Vec<(Dev, String)> = self
                .people
                .iter()
                .filter(|(_, p)| p.online)
                .filter_map(|(d, p)| p.user.clone().map(|u| (*d, u)))
                .collect();
            let users: Vec<String> = online.iter().map(|(_, u)| u.clone()).collect();
            let mut quiet = self.stack.relay.settled(&users);
            if quiet {
                for (d, _) in &online {
                    let due: Due = self
                        .ask(Request::Due {
                            device: d.to_string(),
                        })
                        .await?;
                    if due.due > 0 {
                        quiet = false;
                        break;
                    }
                }
            }
            // Quiet twice in a row: a publish may be on its way between the two looks.
            if quiet {
                tokio::time::sleep(POLL).await;
                if self.stack.relay.settled(&users) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the system did not settle within {STEP_WAIT:?} (queues: {}; unplaced: {:?})",
                    self.queue_summary(),
                    self.stack.relay.unexpected()
                )
                .into());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn queue_summary(&self) -> String {
        self.people
            .iter()
            .filter_map(|(d, p)| {
                let q = self.stack.relay.queue(p.user.as_ref()?);
                Some(format!(
                    "{d}: {:?}",
                    q.iter()
                        .map(|e| format!("{:?}", e.place))
                        .collect::<Vec<_>>()
                ))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn compare(&mut self, model: &AbstractState) -> StepResult {
        let (want_devices, want_queues) = project(model);
        let mut problems = Vec::new();
        for want in &want_devices {
            let real = self.view(want.dev).await?;
            problems.extend(diff(want, &real));
        }
        for (i, want) in want_queues.iter().enumerate() {
            let dev = Dev::from_ix(i);
            let real: Vec<String> = match self.people.get(&dev).and_then(|p| p.user.as_ref()) {
                Some(u) => self
                    .stack
                    .relay
                    .queue(u)
                    .iter()
                    .map(|e| envelope_kind(&e.payload).to_owned())
                    .collect(),
                None => Vec::new(),
            };
            if *want != real {
                problems.push(format!("queue of {dev}: model {want:?}, real {real:?}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; ").into())
        }
    }

    /// Right after the device's PUBACK of a Receive, before anything else runs: what the model
    /// committed in that step (texts, kept envelopes) must already be in the store (RX-4).
    async fn committed_at_ack(&mut self, d: Dev, model: &AbstractState) -> StepResult {
        let (want, _) = project(model);
        let Some(want) = want.iter().find(|v| v.dev == d) else {
            return Ok(());
        };
        let real = self.view(d).await?;
        if real.store != want.store || real.retry != want.retry {
            return Err(format!(
                "at {d}'s acknowledgement (RX-4: commit before ack): {d}.store {:?}, kept {}; \
                 the model: {d}.store {:?}, kept {}",
                real.store, real.retry, want.store, want.retry
            )
            .into());
        }
        Ok(())
    }

    /// The device's state in the model's terms.
    async fn view(&mut self, d: Dev) -> Result<DeviceView, StepError> {
        let p = self.person(d)?;
        let online = p.online;
        if p.user.is_none() {
            return Ok(DeviceView {
                dev: d,
                signed_up: false,
                online: true,
                contacts: Vec::new(),
                sessions: Vec::new(),
                store: Vec::new(),
                outbox: Vec::new(),
                hold: "idle".to_owned(),
                retry: 0,
                group_epoch: None,
            });
        }
        let state = self.state(d).await?;
        let users = self.devs();
        let dev_of = |u: &str| users.get(u).copied();
        let verified: BTreeMap<&str, bool> = state
            .contacts
            .iter()
            .map(|c| (c.user_id.as_str(), c.verified))
            .collect();
        let mut contacts: Vec<(Dev, bool)> = state
            .contacts
            .iter()
            .filter_map(|c| Some((dev_of(&c.user_id)?, c.verified)))
            .collect();
        contacts.sort();
        let sessions = state
            .sessions
            .iter()
            .filter_map(|s| {
                Some(SessionView {
                    peer: dev_of(&s.peer)?,
                    initiator: s.initiator,
                    verified: verified.get(s.peer.as_str()) == Some(&true),
                    epoch: u8::try_from(s.epoch).unwrap_or(u8::MAX),
                })
            })
            .collect();
        let mut store: Vec<String> = state
            .received
            .iter()
            .map(|m| {
                let word = m.text.split(' ').next().unwrap_or("");
                let from = dev_of(&m.sender).map_or("?".to_owned(), |d| d.to_string());
                format!("{word}<-{from}")
            })
            .collect();
        store.sort();
        let mut outbox: Vec<String> = state
            .outbox
            .iter()
            .map(|r| {
                let what = self
                    .names
                    .get(&r.message_id)
                    .cloned()
                    .unwrap_or_else(|| "control".to_owned());
                let to = dev_of(&r.to).map_or("?".to_owned(), |d| d.to_string());
                format!("{what}->{to}")
            })
            .collect();
        outbox.sort();
        let group_epoch = state
            .groups
            .first()
            .map(|g| u8::try_from(g.epoch).unwrap_or(u8::MAX));
        Ok(DeviceView {
            dev: d,
            signed_up: true,
            online,
            contacts,
            sessions,
            store,
            outbox,
            hold: "idle".to_owned(),
            retry: usize::try_from(state.kept).unwrap_or(usize::MAX),
            group_epoch,
        })
    }

    /// Steal (Req7): the files of the device's directory as a thief copies them; no text may be
    /// readable.
    fn steal(&mut self, d: Dev) -> StepResult {
        let dir = self.person(d)?.dir.clone();
        let mut found = Vec::new();
        let mut todo = vec![dir];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
                let path = entry.map_err(|e| e.to_string())?.path();
                if path.is_dir() {
                    todo.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
                for (name, canary) in &self.canaries {
                    if contains(&bytes, canary.as_bytes()) {
                        found.push(format!("the text of {name} in {}", path.display()));
                    }
                }
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!("Req7: the stolen store shows {}", found.join(", ")).into())
        }
    }

    /// Req8 over the replay: no canary in any byte the relay carried between front and broker.
    fn search_relayed(&self) -> Result<(), String> {
        let frames = self.stack.relay.frames();
        for (name, canary) in &self.canaries {
            if frames.iter().any(|f| contains(f, canary.as_bytes())) {
                return Err(format!(
                    "Req8: the text of {name} crossed the broker in clear"
                ));
            }
        }
        // Message ids (CHAIN-3) are derived from chain keys and never sent in the clear.
        for (id, name) in &self.names {
            let id = hex::decode(id).unwrap_or_default();
            if frames.iter().any(|f| contains(f, &id)) {
                return Err(format!(
                    "Req8: the message id of {name} crossed the broker in clear"
                ));
            }
        }
        Ok(())
    }

    async fn shutdown(self) {
        self.subject.shutdown().await;
        self.stack.shutdown().await;
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A bundle the server forges for `victim` (the model's ForgeBundle); `real` is the victim's own
/// bundle, as the directory holds it.
fn forged_bundle(victim: &str, forgery: Forgery, real: &[u8]) -> Result<Vec<u8>, String> {
    // version (1) || user id (10) || IKs (32) || IKd || sig_ikd || SPK ...
    const IKS: std::ops::Range<usize> = 11..43;
    let victim = UserId::parse(victim).map_err(|e| format!("user id {victim}: {e}"))?;
    // The server's own device, claiming the victim's user id.
    let server = Device::new(&mut OsRng, victim);
    let mut bytes = server.bundle(None).map_err(|e| e.to_string())?.to_bytes();
    if forgery == Forgery::SwapKeys {
        // The victim's real IKs beside the server's IKd and SPK, whose signatures cannot
        // verify under it.
        let iks = real.get(IKS).ok_or("the victim's bundle is too short")?;
        bytes
            .get_mut(IKS)
            .ok_or("bundle too short")?
            .copy_from_slice(iks);
    }
    Ok(bytes)
}
