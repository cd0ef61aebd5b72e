//! The reference adapter: `sotto-client` behind the adapter protocol. One [`Reference`] holds the
//! devices of one run, each a [`Client`] offline or online; [`Reference::handle`] answers one
//! request. The `sotto-adapter` binary runs it over stdio; the in-process replay of
//! `sotto check` calls it directly, so both paths answer with the same code.
//!
//! ```text
//!   Request --handle--> device label -> Person { store dir, Link: None | Offline(Client) | Online }
//!                                    -> sotto_client::Client / Online::call -> JSON result
//! ```
//!
//! What the runner needs from a device and the client's configuration for it: automatic resends
//! are off (a resend happens only on `resend`, as the model's Resend), the inbox is established
//! before `signup` answers, and the store's key derivation is cheap (test stores).

mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rand_core::OsRng;
use serde::Serialize;
use serde_json::Value;
use sotto_client::{Backoff, Client, ClientEvent, Config, KdfParams, Online};
use sotto_core::{Content, Device, GroupId, Identity, MessageId, UserId};
use tokio::sync::mpsc;

use crate::protocol::{
    Bundle, Card, Compromised, Done, Due, Failure, FailureKind, Forged, GroupCreated, GroupSent,
    Hello, Outcome, Request, Resent, SignedUp, VERSION,
};

/// Upper bound of the waits of one request (the inbox at signup, a shutdown).
const WAIT: Duration = Duration::from_secs(15);
/// Passphrase of every store of a run.
const PASSPHRASE: &[u8] = b"sotto adapter run passphrase";
/// One-time prekeys uploaded at signup.
const ONE_TIME_PREKEYS: usize = 10;
/// Resends happen only when the runner asks (`resend`).
const NO_RESEND: Backoff = Backoff {
    first_ms: 24 * 3_600_000,
    max_ms: 24 * 3_600_000,
};

enum Link {
    Offline(Box<Client>),
    Online {
        handle: Online,
        _events: mpsc::Receiver<ClientEvent>,
    },
}

struct Person {
    user: UserId,
    /// `None` only after a failed transition (the client stopped): every later request fails.
    link: Option<Link>,
}

/// The devices of one run.
#[derive(Default)]
pub struct Reference {
    people: BTreeMap<String, Person>,
}

/// The result of one request: its JSON object, or why not.
pub type Answer = Result<Value, Failure>;

fn bad(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::BadRequest, message)
}

fn failed(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(FailureKind::Failed, format!("{what}: {e}"))
}

fn json(v: impl Serialize) -> Answer {
    serde_json::to_value(v).map_err(|e| failed("encoding the answer", e))
}

fn user(text: &str) -> Result<UserId, Failure> {
    UserId::parse(text).map_err(|e| bad(format!("user id {text:?}: {e}")))
}

fn bytes(field: &str, text: &str) -> Result<Vec<u8>, Failure> {
    hex::decode(text).map_err(|e| bad(format!("{field}: not hex: {e}")))
}

fn id16(field: &str, text: &str) -> Result<[u8; 16], Failure> {
    bytes(field, text)?
        .try_into()
        .map_err(|_| bad(format!("{field}: not 16 bytes")))
}

fn group(text: &str) -> Result<GroupId, Failure> {
    id16("group_id", text).map(GroupId)
}

/// Runs `f` on the device's account, offline or inside its online loop.
async fn call<T: Send + 'static>(
    p: &mut Person,
    f: impl FnOnce(&mut Client) -> T + Send + 'static,
) -> Result<T, Failure> {
    match &mut p.link {
        Some(Link::Offline(c)) => Ok(f(c.as_mut())),
        Some(Link::Online { handle, .. }) => {
            handle.call(f).await.map_err(|e| failed("the device", e))
        }
        None => Err(failed(
            "the device",
            "its client stopped earlier in the run",
        )),
    }
}

/// Runs a fallible client operation on the device; its error fails the request.
async fn op<T: Send + 'static>(
    p: &mut Person,
    what: &'static str,
    f: impl FnOnce(&mut Client) -> sotto_client::Result<T> + Send + 'static,
) -> Result<T, Failure> {
    call(p, f).await?.map_err(|e| failed(what, e))
}

fn outcome<T>(r: sotto_client::Result<T>) -> Answer {
    json(match r {
        Ok(_) => Outcome {
            added: true,
            reason: None,
        },
        Err(e) => Outcome {
            added: false,
            reason: Some(e.to_string()),
        },
    })
}

impl Reference {
    /// No devices yet.
    pub fn new() -> Reference {
        Reference::default()
    }

    fn person(&mut self, device: &str) -> Result<&mut Person, Failure> {
        self.people
            .get_mut(device)
            .ok_or_else(|| bad(format!("no device {device:?} (signup creates it)")))
    }

    /// Answers one request.
    pub async fn handle(&mut self, request: Request) -> Answer {
        match request {
            Request::Hello { versions } => hello(&versions),
            Request::Signup {
                device,
                membership_url,
                ca_pem,
                store_dir,
            } => {
                self.signup(device, &membership_url, &ca_pem, store_dir)
                    .await
            }
            Request::GoOffline { device } => {
                let p = self.person(&device)?;
                match p.link.take() {
                    Some(Link::Online { handle, .. }) => {
                        let client = handle
                            .shutdown()
                            .await
                            .map_err(|e| failed("go_offline", e))?;
                        p.link = Some(Link::Offline(Box::new(client)));
                        json(Done {})
                    }
                    other => {
                        p.link = other;
                        Err(failed("go_offline", "the device is not online"))
                    }
                }
            }
            Request::GoOnline { device } => {
                let p = self.person(&device)?;
                match p.link.take() {
                    Some(Link::Offline(client)) => {
                        let (handle, events) = (*client).connect();
                        p.link = Some(Link::Online {
                            handle,
                            _events: events,
                        });
                        json(Done {})
                    }
                    other => {
                        p.link = other;
                        Err(failed("go_online", "the device is not offline"))
                    }
                }
            }
            Request::Card { device } => {
                let card = op(self.person(&device)?, "card", |c| c.card()).await?;
                json(Card { card })
            }
            Request::AddCard { device, card } => {
                outcome(call(self.person(&device)?, move |c| c.add_card(&card)).await?)
            }
            Request::AddFromDirectory { device, user_id } => {
                let user = user(&user_id)?;
                let p = self.person(&device)?;
                let r = match &mut p.link {
                    Some(Link::Online { handle, .. }) => handle.add_from_directory(user).await,
                    Some(Link::Offline(c)) => c.as_mut().add_from_directory(&user).await,
                    None => return Err(failed("the device", "its client stopped")),
                };
                outcome(r)
            }
            Request::AddBundle {
                device,
                user_id,
                bundle,
            } => {
                let user = user(&user_id)?;
                let bytes = bytes("bundle", &bundle)?;
                // Exactly as a directory answer (KEY-5), then added if it passes.
                let checked = match sotto_client::check_bundle(&bytes, &user) {
                    Ok(b) => b,
                    Err(e) => return outcome::<()>(Err(e)),
                };
                outcome(call(self.person(&device)?, move |c| c.add_bundle(&checked)).await?)
            }
            Request::Bundle { device } => {
                let bundle = op(self.person(&device)?, "bundle", |c| {
                    Ok(c.device().bundle(None)?.to_bytes())
                })
                .await?;
                json(Bundle {
                    bundle: hex::encode(bundle),
                })
            }
            Request::Send { device, to, text } => {
                let to = user(&to)?;
                let (id, envelope) = op(self.person(&device)?, "send", move |c| {
                    let id = c.send(&to, &text)?;
                    let envelope = c
                        .store()
                        .due_outbox(u64::MAX / 2, 10_000)?
                        .into_iter()
                        .find(|r| r.message_id == id && r.recipient == to)
                        .map(|r| r.envelope)
                        .unwrap_or_default();
                    Ok((id, envelope))
                })
                .await?;
                json(crate::protocol::Sent {
                    message_id: hex::encode(id.0),
                    envelope: hex::encode(envelope),
                })
            }
            Request::GroupCreate { device, members } => {
                let users = members
                    .iter()
                    .map(|m| user(m))
                    .collect::<Result<Vec<_>, _>>()?;
                let gid = op(self.person(&device)?, "group_create", move |c| {
                    c.create_group(&users)
                })
                .await?;
                json(GroupCreated {
                    group_id: hex::encode(gid.0),
                })
            }
            Request::GroupSend {
                device,
                group_id,
                text,
            } => {
                let gid = group(&group_id)?;
                let id = op(self.person(&device)?, "group_send", move |c| {
                    c.send_group(&gid, &text)
                })
                .await?;
                json(GroupSent {
                    message_id: hex::encode(id.0),
                })
            }
            Request::GroupAdd {
                device,
                group_id,
                member,
            } => {
                let (gid, member) = (group(&group_id)?, user(&member)?);
                op(self.person(&device)?, "group_add", move |c| {
                    c.add_to_group(&gid, &member)
                })
                .await?;
                json(Done {})
            }
            Request::GroupRemove {
                device,
                group_id,
                member,
            } => {
                let (gid, member) = (group(&group_id)?, user(&member)?);
                op(self.person(&device)?, "group_remove", move |c| {
                    c.remove_from_group(&gid, &member)
                })
                .await?;
                json(Done {})
            }
            Request::GroupLeave { device, group_id } => {
                let gid = group(&group_id)?;
                op(self.person(&device)?, "group_leave", move |c| {
                    c.leave_group(&gid)
                })
                .await?;
                json(Done {})
            }
            Request::GroupHandover {
                device,
                group_id,
                to,
            } => {
                let (gid, to) = (group(&group_id)?, user(&to)?);
                op(self.person(&device)?, "group_handover", move |c| {
                    c.hand_over_group(&gid, &to)
                })
                .await?;
                json(Done {})
            }
            Request::KeyUpdate { device, to } => {
                let to = user(&to)?;
                op(self.person(&device)?, "key_update", move |c| {
                    c.key_update(&to)
                })
                .await?;
                json(Done {})
            }
            Request::Resend {
                device,
                message_id,
                to,
            } => {
                let id = MessageId(id16("message_id", &message_id)?);
                let to = user(&to)?;
                let resent = op(self.person(&device)?, "resend", move |c| {
                    c.resend_now(&id, &to)
                })
                .await?;
                json(Resent { resent })
            }
            Request::Compromise { device } => {
                let n = call(self.person(&device)?, |c| c.device().export().len()).await?;
                json(Compromised {
                    state_bytes: n as u64,
                })
            }
            Request::ForgeFirst {
                device,
                to,
                bundle,
                own_keys,
                text,
            } => {
                let to = user(&to)?;
                let bundle = sotto_core::keys::PreKeyBundle::from_bytes(&bytes("bundle", &bundle)?)
                    .map_err(|e| bad(format!("bundle: {e}")))?;
                let p = self.person(&device)?;
                let claim = p.user;
                let envelope = op(p, "forge_first", move |c| {
                    let identity = if own_keys {
                        Identity::generate(&mut OsRng)
                    } else {
                        c.device().identity().clone()
                    };
                    let spk = identity.new_signed_prekey(&mut OsRng, 1);
                    let mut forger = Device::from_keys(claim, identity, spk);
                    forger.add_contact_from_bundle(&bundle)?;
                    let out = forger.send(&mut OsRng, c.now(), &to, &Content::Text(text))?;
                    Ok(out.envelope)
                })
                .await?;
                json(Forged {
                    envelope: hex::encode(envelope),
                })
            }
            Request::ForgeData { device, peer, text } => {
                let peer = user(&peer)?;
                let envelope = op(self.person(&device)?, "forge_data", move |c| {
                    Ok(c.device()
                        .forge_data_as(&peer, c.now(), &Content::Text(text))?)
                })
                .await?;
                json(Forged {
                    envelope: hex::encode(envelope),
                })
            }
            Request::Due { device } => {
                let due = op(self.person(&device)?, "due", |c| {
                    let now = c.now();
                    Ok(c.store().due_outbox(now, 1)?.len())
                })
                .await?;
                json(Due { due: due as u64 })
            }
            Request::State { device } => {
                let state = op(self.person(&device)?, "state", state::export).await?;
                json(state)
            }
            Request::Shutdown => {
                self.shutdown().await;
                json(Done {})
            }
        }
    }

    async fn signup(
        &mut self,
        device: String,
        url: &str,
        ca_pem: &str,
        store_dir: String,
    ) -> Answer {
        if self.people.contains_key(&device) {
            return Err(bad(format!("device {device:?} exists already")));
        }
        let dir = PathBuf::from(store_dir);
        std::fs::create_dir_all(&dir).map_err(|e| failed("store_dir", e))?;
        let config = Config {
            kdf: KdfParams::INSECURE_FOR_TESTS,
            signup_one_time_prekeys: ONE_TIME_PREKEYS,
            establish_inbox: Some(WAIT),
            resend: NO_RESEND,
            ..Config::default()
        };
        let client = Client::signup_with(url, ca_pem, &dir.join("store.db"), PASSPHRASE, config)
            .await
            .map_err(|e| failed("signup", e))?;
        let user = client.user_id();
        let (handle, events) = client.connect();
        self.people.insert(
            device,
            Person {
                user,
                link: Some(Link::Online {
                    handle,
                    _events: events,
                }),
            },
        );
        json(SignedUp {
            user_id: user.to_text(),
        })
    }

    /// Every device goes offline and closes its store.
    pub async fn shutdown(&mut self) {
        for (_, p) in std::mem::take(&mut self.people) {
            let client = match p.link {
                Some(Link::Online { handle, .. }) => tokio::time::timeout(WAIT, handle.shutdown())
                    .await
                    .ok()
                    .and_then(Result::ok),
                Some(Link::Offline(c)) => Some(*c),
                None => None,
            };
            if let Some(c) = client {
                let _ = c.close();
            }
        }
    }
}

fn hello(versions: &[u32]) -> Answer {
    if versions.contains(&VERSION) {
        json(Hello {
            version: VERSION,
            implementation: format!("sotto-client {}", env!("CARGO_PKG_VERSION")),
        })
    } else {
        Err(Failure::new(
            FailureKind::Unsupported,
            format!("this adapter speaks version {VERSION}, not {versions:?}"),
        ))
    }
}
