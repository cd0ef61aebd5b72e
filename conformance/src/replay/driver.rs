//! Maps model actions to real operations and reads the abstract state back from the real system.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use rand_core::{OsRng, RngCore};
use sotto_client::{
    Backoff, Chat, Client, ClientEvent, Config as ClientConfig, Direction, KdfParams, Online, Trust,
};
use sotto_core::envelope::Header;
use sotto_core::{Content, Device, GroupId, Identity, MessageId, UserId};
use sotto_model::action::{Action, Forgery, Injection};
use sotto_model::scenario::{Config, Intent};
use sotto_model::state::What;
use sotto_model::term::Dev;
use sotto_model::trace::{AbstractState, DeviceView, SessionView, Trace};
use tokio::sync::mpsc;

use super::stack::Stack;
use super::{Broker, ReplayError, TraceOutcome};
use crate::target::Target;

/// Upper bound of every wait of one step.
const STEP_WAIT: Duration = Duration::from_secs(15);
/// How often settling looks again.
const POLL: Duration = Duration::from_millis(15);
/// Passphrase of every replay store.
const PASSPHRASE: &[u8] = b"conformance replay passphrase";
/// Resends happen only when the trace says so.
const NO_RESEND: Backoff = Backoff {
    first_ms: 24 * 3_600_000,
    max_ms: 24 * 3_600_000,
};

enum Link {
    None,
    Offline(Box<Client>),
    Online {
        handle: Online,
        _events: mpsc::Receiver<ClientEvent>,
    },
}

struct Person {
    path: PathBuf,
    user: Option<UserId>,
    link: Link,
}

/// Why one step failed (becomes the trace's failure).
type StepResult = Result<(), String>;

pub(crate) struct Driver {
    stack: Stack,
    config: Config,
    people: BTreeMap<Dev, Person>,
    /// Texts sent: (from, to, what) -> (message id, envelope for `to`).
    sent: BTreeMap<(Dev, Dev, What), (MessageId, Vec<u8>)>,
    /// Message id -> model name (`m1`, `g2`).
    names: BTreeMap<MessageId, String>,
    /// Control messages awaiting receipts: (from, to, model name) -> message id, for Resend.
    control: BTreeMap<(Dev, Dev, String), MessageId>,
    /// Key updates sent, per device (the model numbers them).
    key_updates: BTreeMap<Dev, u8>,
    /// Canaries in the texts, by model name.
    canaries: BTreeMap<String, String>,
    group: Option<GroupId>,
    leaked: Vec<Dev>,
}

async fn call<T: Send + 'static>(
    p: &mut Person,
    f: impl FnOnce(&mut Client) -> T + Send + 'static,
) -> Result<T, String> {
    match &mut p.link {
        Link::None => Err("not signed up".to_owned()),
        Link::Offline(c) => Ok(f(c.as_mut())),
        Link::Online { handle, .. } => handle.call(f).await.map_err(|e| e.to_string()),
    }
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
        trace: &Trace,
    ) -> Result<TraceOutcome, ReplayError> {
        let config = Config::named(&trace.config).ok_or_else(|| ReplayError::BadTrace {
            file: trace.name.clone(),
            error: format!("unknown configuration {}", trace.config),
        })?;
        let stack = Stack::start(target).await?;
        let people = (0..usize::from(config.devices))
            .map(|i| {
                let dev = Dev::from_ix(i);
                (
                    dev,
                    Person {
                        path: stack.dir.path().join(format!("{dev}")).join("store.db"),
                        user: None,
                        link: Link::None,
                    },
                )
            })
            .collect();
        let mut driver = Driver {
            stack,
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
            outcome.steps += 1;
            *outcome.actions.entry(kind.to_owned()).or_default() += 1;
            if let Err(e) = result {
                outcome.failure = Some(format!("step {} ({}): {e}", i + 1, step.says));
                break;
            }
        }
        if outcome.failure.is_none() {
            if let Err(e) = driver.search_relayed() {
                outcome.failure = Some(e);
            }
        }
        driver.shutdown().await;
        Ok(outcome)
    }

    fn user(&self, d: Dev) -> Result<UserId, String> {
        self.people
            .get(&d)
            .and_then(|p| p.user)
            .ok_or_else(|| format!("{d} has no user id"))
    }

    fn person(&mut self, d: Dev) -> Result<&mut Person, String> {
        self.people
            .get_mut(&d)
            .ok_or_else(|| format!("no device {d}"))
    }

    /// The messages awaiting a receipt in `d`'s outbox: (message id, recipient).
    async fn awaiting(&mut self, d: Dev) -> Result<Vec<(MessageId, UserId)>, String> {
        call(self.person(d)?, |c| {
            c.store().due_outbox(u64::MAX / 2, 10_000).map(|rows| {
                rows.into_iter()
                    .filter(|r| r.until_receipt)
                    .map(|r| (r.message_id, r.recipient))
                    .collect()
            })
        })
        .await?
        .map_err(|e| e.to_string())
    }

    /// The epoch and members of the group `d` is in, if any (the scenarios have one group).
    async fn group_of(&mut self, d: Dev) -> Result<Option<(u32, Vec<UserId>)>, String> {
        call(self.person(d)?, |c| {
            c.groups().first().map(|g| (g.epoch, g.members.clone()))
        })
        .await
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
        let held = self.group_of(sender).await?;
        if matches!(action, Action::Receive(_)) && held.is_none() {
            return self.apply_action(action).await;
        }
        let epoch_before = held.map_or(0, |(e, _)| e);
        let before = self.awaiting(sender).await?;
        self.apply_action(action).await?;
        let after = self.awaiting(sender).await?;
        let (epoch, members) = self.group_of(sender).await?.unwrap_or_default();
        let users: BTreeMap<UserId, Dev> = self
            .people
            .iter()
            .filter_map(|(d, p)| p.user.map(|u| (u, *d)))
            .collect();
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
                let card = call(self.person(*of)?, |c| c.card())
                    .await?
                    .map_err(|e| e.to_string())?;
                // A refused card (e.g. an identity change) changes nothing, as in the model.
                let _ = call(self.person(*by)?, move |c| c.add_card(&card)).await?;
                Ok(())
            }
            Action::FetchBundle { by, of } => {
                let user = self.user(*of)?;
                let p = self.person(*by)?;
                let _ = match &mut p.link {
                    Link::Online { handle, .. } => handle.add_from_directory(user).await,
                    Link::Offline(c) => c.as_mut().add_from_directory(&user).await,
                    Link::None => return Err(format!("{by} is not signed up")),
                };
                Ok(())
            }
            Action::ForgeBundle { by, of, forgery } => {
                let victim = self.user(*of)?;
                let iks = call(self.person(*of)?, |c| {
                    c.device().identity().public().iks().0
                })
                .await?;
                let bytes = forged_bundle(victim, *forgery, iks)?;
                // Checked exactly as a directory answer (KEY-5), then added if it passes.
                if let Ok(bundle) = sotto_client::check_bundle(&bytes, &victim) {
                    let _ = call(self.person(*by)?, move |c| c.add_bundle(&bundle)).await?;
                }
                Ok(())
            }
            Action::Send { from, to, msg } => {
                let what = What::Text(*msg);
                let name = what.to_string();
                let canary = canary();
                let text = format!("{name} {canary}");
                let to_user = self.user(*to)?;
                let (id, envelope) = call(self.person(*from)?, move |c| {
                    let id = c.send(&to_user, &text)?;
                    let env = c
                        .store()
                        .due_outbox(u64::MAX / 2, 10_000)?
                        .into_iter()
                        .find(|r| r.message_id == id && r.recipient == to_user)
                        .map(|r| r.envelope)
                        .unwrap_or_default();
                    Ok::<_, sotto_client::ClientError>((id, env))
                })
                .await?
                .map_err(|e| format!("send: {e}"))?;
                self.sent.insert((*from, *to, what), (id, envelope));
                self.names.insert(id, name.clone());
                self.canaries.insert(name, canary);
                Ok(())
            }
            Action::GroupSend { from, msg } => {
                let gid = self.group.ok_or("no group yet")?;
                let name = What::GroupText(*msg).to_string();
                let canary = canary();
                let text = format!("{name} {canary}");
                let id = call(self.person(*from)?, move |c| c.send_group(&gid, &text))
                    .await?
                    .map_err(|e| format!("group send: {e}"))?;
                self.names.insert(id, name.clone());
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
                let users = members
                    .iter()
                    .filter(|m| *m != admin)
                    .map(|m| self.user(*m))
                    .collect::<Result<Vec<_>, _>>()?;
                let gid = call(self.person(*admin)?, move |c| c.create_group(&users))
                    .await?
                    .map_err(|e| format!("create group: {e}"))?;
                self.group = Some(gid);
                Ok(())
            }
            Action::GroupAdd { admin, member } | Action::GroupRemove { admin, member } => {
                let gid = self.group.ok_or("no group yet")?;
                let user = self.user(*member)?;
                let add = matches!(action, Action::GroupAdd { .. });
                call(self.person(*admin)?, move |c| {
                    if add {
                        c.add_to_group(&gid, &user)
                    } else {
                        c.remove_from_group(&gid, &user)
                    }
                })
                .await?
                .map_err(|e| format!("group change: {e}"))
            }
            Action::GroupLeave { member } => {
                let gid = self.group.ok_or("no group yet")?;
                call(self.person(*member)?, move |c| c.leave_group(&gid))
                    .await?
                    .map_err(|e| format!("leave group: {e}"))
            }
            Action::GroupHandover { admin, to } => {
                let gid = self.group.ok_or("no group yet")?;
                let user = self.user(*to)?;
                call(self.person(*admin)?, move |c| {
                    c.hand_over_group(&gid, &user)
                })
                .await?
                .map_err(|e| format!("hand over group: {e}"))
            }
            Action::GoOffline(d) => {
                let p = self.person(*d)?;
                match std::mem::replace(&mut p.link, Link::None) {
                    Link::Online { handle, .. } => {
                        let client = handle.shutdown().await.map_err(|e| e.to_string())?;
                        p.link = Link::Offline(Box::new(client));
                        Ok(())
                    }
                    other => {
                        p.link = other;
                        Err(format!("{d} is not online"))
                    }
                }
            }
            Action::GoOnline(d) => {
                let p = self.person(*d)?;
                match std::mem::replace(&mut p.link, Link::None) {
                    Link::Offline(client) => {
                        let (handle, events) = (*client).connect();
                        p.link = Link::Online {
                            handle,
                            _events: events,
                        };
                        Ok(())
                    }
                    other => {
                        p.link = other;
                        Err(format!("{d} is not offline"))
                    }
                }
            }
            Action::Receive(d) => {
                let user = self.user(*d)?.to_text();
                self.stack
                    .relay
                    .deliver(&user, STEP_WAIT)
                    .await
                    .map_err(|e| e.to_string())
            }
            Action::Resend { from, to, what } => {
                let to_user = self.user(*to)?;
                let id = match what {
                    What::Text(_) => self.sent.get(&(*from, *to, *what)).map(|(id, _)| *id),
                    What::GroupText(_) => self
                        .names
                        .iter()
                        .find(|(_, n)| **n == what.to_string())
                        .map(|(id, _)| *id),
                    _ => self.control.get(&(*from, *to, what.to_string())).copied(),
                }
                .ok_or_else(|| format!("no record of {what} from {from} to {to}"))?;
                let hit = call(self.person(*from)?, move |c| c.resend_now(&id, &to_user))
                    .await?
                    .map_err(|e| e.to_string())?;
                if hit {
                    Ok(())
                } else {
                    Err(format!("{what} is not in {from}'s outbox"))
                }
            }
            Action::Drop { inbox, index } => {
                let user = self.user(*inbox)?.to_text();
                self.stack
                    .relay
                    .drop_packet(&user, usize::from(*index))
                    .map_err(|e| e.to_string())
            }
            Action::Duplicate { inbox, index } => {
                let user = self.user(*inbox)?.to_text();
                self.stack
                    .relay
                    .duplicate(&user, usize::from(*index))
                    .map_err(|e| e.to_string())
            }
            Action::Reorder { inbox } => {
                let user = self.user(*inbox)?.to_text();
                self.stack.relay.reorder(&user).map_err(|e| e.to_string())
            }
            Action::Replay { inbox, from, what } => {
                let env = self
                    .sent
                    .get(&(*from, *inbox, *what))
                    .map(|(_, e)| e.clone())
                    .ok_or_else(|| format!("no recorded envelope of {what} from {from}"))?;
                let user = self.user(*inbox)?.to_text();
                self.stack.relay.inject(&user, Bytes::from(env));
                Ok(())
            }
            Action::Restart => self.stack.restart_broker().await.map_err(|e| e.to_string()),
            Action::Compromise(d) => {
                // The leak: the whole device state, as the attacker would get it.
                let state = call(self.person(*d)?, |c| c.device().export().len()).await?;
                if state == 0 {
                    return Err("empty device state".to_owned());
                }
                self.leaked.push(*d);
                Ok(())
            }
            Action::Steal(d) => self.steal(*d),
            Action::KeyUpdate { from, to } => {
                let to_user = self.user(*to)?;
                call(self.person(*from)?, move |c| c.key_update(&to_user))
                    .await?
                    .map(|_| ())
                    .map_err(|e| format!("key update: {e}"))
            }
            Action::IssueCert(d) => {
                // The CA (the attacker) certifies a key of its own under d's user id.
                let user = self.user(*d)?.to_text();
                let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                    .map_err(|e| e.to_string())?;
                let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
                self.stack
                    .service
                    .pki()
                    .issue_client_cert(&user, &spki)
                    .map(|_| ())
                    .map_err(|e| format!("issue certificate: {e}"))
            }
            Action::Inject { inbox, injection } => {
                let target = self.user(*inbox)?;
                let bytes = match injection {
                    // A first message as `claim` without a one-time prekey (forged1). Building it
                    // takes what the model's attacker holds (DH(IKd_claim, SPK_target) from either
                    // side's leaked keys); the harness computes the same envelope from claim's
                    // identity, which gives the same bytes for the same ephemeral keys.
                    // With `FirstWithOwnKeys`, the same under identity keys of the server's own
                    // (mis-binding): RX-9 refuses it for a known user id.
                    Injection::FirstAs(claim) | Injection::FirstWithOwnKeys(claim) => {
                        let own_keys = matches!(injection, Injection::FirstWithOwnKeys(_));
                        let bundle = call(self.person(*inbox)?, |c| c.device().bundle(None))
                            .await?
                            .map_err(|e| e.to_string())?;
                        let claim_user = self.user(*claim)?;
                        call(self.person(*claim)?, move |c| {
                            let identity = if own_keys {
                                Identity::generate(&mut OsRng)
                            } else {
                                c.device().identity().clone()
                            };
                            let spk = identity.new_signed_prekey(&mut OsRng, 1);
                            let mut forger = Device::from_keys(claim_user, identity, spk);
                            forger.add_contact_from_bundle(&bundle)?;
                            let content = Content::Text("forged1 injected".to_owned());
                            forger
                                .send(&mut OsRng, c.now(), &target, &content)
                                .map(|o| o.envelope)
                        })
                        .await?
                        .map_err(|e| format!("forging a first message: {e}"))?
                    }
                    Injection::GroupKeyAs(_) => {
                        return Err(format!("{} is not mapped", action.name()));
                    }
                    // A data message on the target's newest receiving chain from `peer`
                    // (forged0), from the target's state as a compromise leaks it.
                    Injection::DataAs(peer) => {
                        let peer_user = self.user(*peer)?;
                        call(self.person(*inbox)?, move |c| {
                            let content = Content::Text("forged0 injected".to_owned());
                            c.device().forge_data_as(&peer_user, c.now(), &content)
                        })
                        .await?
                        .map_err(|e| format!("forging a data message: {e}"))?
                    }
                };
                self.stack
                    .relay
                    .inject(&target.to_text(), Bytes::from(bytes));
                Ok(())
            }
            Action::Commit(_) => Err(format!("{} is not mapped", action.name())),
        }
    }

    async fn signup(&mut self, d: Dev) -> StepResult {
        let url = self.stack.service.membership_url();
        let ca = self.stack.service.pki().ca_pem().to_owned();
        let path = self.person(d)?.path.clone();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        let config = ClientConfig {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            signup_one_time_prekeys: 10,
            establish_inbox: Some(STEP_WAIT),
            resend: NO_RESEND,
            ..ClientConfig::default()
        };
        let client = Client::signup_with(&url, &ca, &path, PASSPHRASE, config)
            .await
            .map_err(|e| format!("signup: {e}"))?;
        let user = client.user_id();
        let (handle, events) = client.connect();
        let p = self.person(d)?;
        p.user = Some(user);
        p.link = Link::Online {
            handle,
            _events: events,
        };
        Ok(())
    }

    /// Waits until nothing is in flight: every online client connected with nothing due, every
    /// publish acknowledged by the broker, everything for online devices arrived at the relay.
    async fn settle(&mut self) -> StepResult {
        let deadline = tokio::time::Instant::now() + STEP_WAIT;
        loop {
            let online: Vec<String> = self
                .people
                .values()
                .filter(|p| matches!(p.link, Link::Online { .. }))
                .filter_map(|p| p.user.map(|u| u.to_text()))
                .collect();
            let mut quiet = self.stack.relay.settled(&online);
            if quiet {
                for p in self.people.values_mut() {
                    if let Link::Online { .. } = p.link {
                        let due = call(p, |c| {
                            let now = c.now();
                            c.store().due_outbox(now, 1).map(|r| r.len()).unwrap_or(1)
                        })
                        .await?;
                        if due > 0 {
                            quiet = false;
                            break;
                        }
                    }
                }
            }
            // Quiet twice in a row: a publish may be on its way between the two looks.
            if quiet {
                tokio::time::sleep(POLL).await;
                if self.stack.relay.settled(&online) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the system did not settle within {STEP_WAIT:?} (queues: {}; unplaced: {:?})",
                    self.queue_summary(),
                    self.stack.relay.unexpected()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn queue_summary(&self) -> String {
        self.people
            .iter()
            .filter_map(|(d, p)| {
                let u = p.user?.to_text();
                let q = self.stack.relay.queue(&u);
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
            let real: Vec<String> = match self.people.get(&dev).and_then(|p| p.user) {
                Some(u) => self
                    .stack
                    .relay
                    .queue(&u.to_text())
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
            Err(problems.join("; "))
        }
    }

    /// Right after the client's PUBACK of a Receive, before anything else runs: what the model
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
            ));
        }
        Ok(())
    }

    async fn view(&mut self, d: Dev) -> Result<DeviceView, String> {
        let users: BTreeMap<UserId, Dev> = self
            .people
            .iter()
            .filter_map(|(d, p)| p.user.map(|u| (u, *d)))
            .collect();
        let names = self.names.clone();
        // The scenario's group: its messages stay in the store of a member that left or was
        // removed (GRP-6, GRP-11), as in the model, though the group is no longer held.
        let scenario_group = self.group;
        let p = self.person(d)?;
        let online = matches!(p.link, Link::Online { .. });
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
        let view = call(
            p,
            move |c| -> Result<DeviceView, sotto_client::ClientError> {
                let dev_of = |u: &UserId| users.get(u).copied();
                let entries = c.contacts()?;
                let trust: BTreeMap<UserId, Trust> =
                    entries.iter().map(|e| (e.user, e.trust)).collect();
                let mut contacts: Vec<(Dev, bool)> = entries
                    .iter()
                    .filter_map(|e| Some((dev_of(&e.user)?, e.trust == Trust::Verified)))
                    .collect();
                contacts.sort();
                let sessions = c
                    .device()
                    .sessions_overview()
                    .into_iter()
                    .filter_map(|(peer, s)| {
                        Some(SessionView {
                            peer: dev_of(&peer)?,
                            initiator: s.initiator,
                            verified: trust.get(&peer) == Some(&Trust::Verified),
                            epoch: u8::try_from(s.latest_epoch).unwrap_or(u8::MAX),
                        })
                    })
                    .collect();
                let mut chats: Vec<Chat> = entries.iter().map(|e| Chat::User(e.user)).collect();
                let groups = c.groups();
                chats.extend(groups.iter().map(|g| Chat::Group(g.id)));
                if let Some(g) = scenario_group.filter(|g| !groups.iter().any(|h| h.id == *g)) {
                    chats.push(Chat::Group(g));
                }
                let mut store = Vec::new();
                for chat in chats {
                    for m in c.messages(&chat)? {
                        if m.direction != Direction::In {
                            continue;
                        }
                        let word = m.text.split(' ').next().unwrap_or("").to_owned();
                        let from = m
                            .sender
                            .as_ref()
                            .and_then(dev_of)
                            .map_or("?".to_owned(), |d| d.to_string());
                        store.push(format!("{word}<-{from}"));
                    }
                }
                store.sort();
                let mut outbox: Vec<String> = c
                    .store()
                    .due_outbox(u64::MAX / 2, 10_000)?
                    .into_iter()
                    .filter(|r| r.until_receipt)
                    .map(|r| {
                        let what = names
                            .get(&r.message_id)
                            .cloned()
                            .unwrap_or_else(|| "control".to_owned());
                        let to = dev_of(&r.recipient).map_or("?".to_owned(), |d| d.to_string());
                        format!("{what}->{to}")
                    })
                    .collect();
                outbox.sort();
                let retry = c.store().parked()?.len();
                let group_epoch = groups
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
                    retry,
                    group_epoch,
                })
            },
        )
        .await?
        .map_err(|e| format!("reading {d}'s state: {e}"))?;
        Ok(view)
    }

    /// Steal (Req7): the store's files as a thief copies them; no text may be readable.
    fn steal(&mut self, d: Dev) -> StepResult {
        let dir = self
            .person(d)?
            .path
            .parent()
            .map(PathBuf::from)
            .ok_or("no store directory")?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            for (name, canary) in &self.canaries {
                if contains(&bytes, canary.as_bytes()) {
                    found.push(format!("the text of {name} in {}", path.display()));
                }
            }
        }
        if found.is_empty() {
            Ok(())
        } else {
            Err(format!("Req7: the stolen store shows {}", found.join(", ")))
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
            if frames.iter().any(|f| contains(f, &id.0)) {
                return Err(format!(
                    "Req8: the message id of {name} crossed the broker in clear"
                ));
            }
        }
        Ok(())
    }

    async fn shutdown(mut self) {
        for p in self.people.values_mut() {
            if let Link::Online { handle, .. } = std::mem::replace(&mut p.link, Link::None) {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle.shutdown()).await;
            }
        }
        self.stack.shutdown().await;
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// A bundle the server forges for `victim` (the model's ForgeBundle).
fn forged_bundle(
    victim: UserId,
    forgery: Forgery,
    victim_iks: [u8; 32],
) -> Result<Vec<u8>, String> {
    // The server's own device, claiming the victim's user id.
    let server = Device::new(&mut OsRng, victim);
    let mut bytes = server.bundle(None).map_err(|e| e.to_string())?.to_bytes();
    if forgery == Forgery::SwapKeys {
        // version (1) || user id (10) || IKs (32) || IKd || sig_ikd || SPK ...: the victim's
        // real IKs beside the server's IKd and SPK, whose signatures cannot verify under it.
        let iks = bytes.get_mut(11..43).ok_or("bundle too short")?;
        iks.copy_from_slice(&victim_iks);
    }
    Ok(bytes)
}
