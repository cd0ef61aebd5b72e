//! The embedded broker's state, without I/O: the inbox of each user, the packets each connection
//! must be sent, and nothing else. The shell (`super`) feeds it whole MQTT packets from the
//! internal loopback connections and writes out what it returns.
//!
//! It is inbox-centric, because the front lets nothing else through (BROKER-1..3): the only topics
//! are inboxes `i/<user id>`, and only their owner subscribes to them.
//!
//! ```text
//!  PUBLISH i/<r> QoS 1 --copy--> inbox r: queue ──(owner online and subscribed, window)──> inflight
//!        │                                                                    PUBACK <pkid> │
//!        └── PUBACK to the sender once the copy is held          zeroized and freed (Req6) <┘
//! ```
//!
//! - An inbox exists from its first message or its owner's first persistent CONNECT; envelopes
//!   sent to a user who never connected are queued all the same (no restore needed).
//! - BROKER-4 / Req6: an envelope is held exactly until its recipient's PUBACK; then its bytes are
//!   zeroized and freed, and an empty inbox gives its buffers back. [`Engine::holdings`] and
//!   [`Engine::held_envelopes`] read this state for the broker-side Req6 check.
//! - A full inbox is never overwritten: a PUBLISH beyond [`Limits`] is an error and the shell
//!   closes the sender's connection without a PUBACK (the front's inbox ledger refuses such a
//!   PUBLISH with a notice before it gets here, BROKER-5; this is the fuse behind it).
//! - A second CONNECT with the same client id takes the session over: the old connection is
//!   closed and its unacknowledged deliveries go out again (DUP) on the new one.
//! - `clean_session = 1` ends the session's delivery state at connect and at close; the inbox
//!   itself (what others sent) is kept.
//! - Sessions expire: [`Engine::expire_idle`], called once a day by the shell, drops an inbox
//!   (session and queue, zeroized) whose owner has not been connected for that many calls, as
//!   Mosquitto's `persistent_client_expiration` does.
//! - A departed account ([`Engine::forget`], `crate::departure`): its session and queue go at
//!   once (zeroized), its connection is closed, and a PUBLISH to it that was on its way is
//!   acknowledged without being held (the front refuses later ones with a notice, BROKER-5).
//! - Only the front may connect: a CONNECT must carry the per-start secret as password and the
//!   client id as username.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use sotto_wire::mqtt::{self, Packet, PacketType, ParseError};
use zeroize::Zeroizing;

/// One connection to the engine, numbered by the shell.
pub type ConnId = u64;

/// An envelope held for its recipient; zeroized when dropped.
type Held = Zeroizing<Vec<u8>>;

/// Bounds of one inbox and of deliveries in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Envelopes one inbox holds at most (queued and in flight).
    pub max_envelopes: usize,
    /// Payload bytes one inbox holds at most.
    pub max_bytes: usize,
    /// Deliveries awaiting their PUBACK per connection.
    pub window: usize,
}

/// What the engine asks the shell to do.
#[derive(Clone, PartialEq, Eq)]
pub enum Out {
    /// Write `packet` to connection `conn`.
    Send(ConnId, Vec<u8>),
    /// Close connection `conn` (its DISCONNECT, or taken over by a newer CONNECT).
    Close(ConnId),
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Out::Send(c, p) => write!(f, "Send({c}, {} bytes)", p.len()),
            Out::Close(c) => write!(f, "Close({c})"),
        }
    }
}

/// Why a connection must be closed. `Display` names no id, topic or payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Not a valid MQTT 3.1.1 packet.
    #[error("malformed packet: {0}")]
    Malformed(#[from] ParseError),
    /// A CONNECT without the internal secret, or whose username is not its client id.
    #[error("CONNECT not authorized")]
    NotAuthorized,
    /// A packet before CONNECT, a second CONNECT, or a packet the engine does not take.
    #[error("unexpected {0:?}")]
    Unexpected(Option<PacketType>),
    /// A PUBLISH that is not QoS 1 to an inbox topic without retain.
    #[error("PUBLISH outside the inbox rules")]
    Publish,
    /// The recipient's inbox holds its limit: the PUBLISH is not taken (never overwritten).
    #[error("the recipient's inbox is full")]
    InboxFull,
}

/// What the engine holds, for the Req6 check and the memory figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Envelopes held (queued or in flight).
    pub envelopes: usize,
    /// Their payload bytes.
    pub bytes: usize,
    /// Inboxes with at least one envelope.
    pub inboxes: usize,
}

#[derive(Default)]
struct Inbox {
    queue: VecDeque<Held>,
    inflight: VecDeque<(u16, Held)>,
    next_pkid: u16,
    online: Option<ConnId>,
    subscribed: bool,
    clean: bool,
    bytes: usize,
    /// Calls of [`Engine::expire_idle`] since the owner was last connected.
    idle_sweeps: u32,
    /// Mutation `BrokerKeepsAcknowledged`: what a commit-log broker keeps after the PUBACK.
    #[cfg(feature = "mutations")]
    retired: Vec<Held>,
}

impl Inbox {
    fn len(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    /// The next packet id not in flight (1..=65535; the window is far below 65535).
    fn take_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            let id = self.next_pkid;
            if !self.inflight.iter().any(|(p, _)| *p == id) {
                return id;
            }
        }
    }

    /// Gives the buffers of an emptied inbox back.
    fn shrink(&mut self) {
        if self.queue.is_empty() {
            self.queue = VecDeque::new();
        }
        if self.inflight.is_empty() {
            self.inflight = VecDeque::new();
        }
    }
}

/// The embedded broker's state.
pub struct Engine {
    secret: Vec<u8>,
    limits: Limits,
    inboxes: BTreeMap<String, Inbox>,
    conns: BTreeMap<ConnId, String>,
    /// Users [`Engine::forget`] dropped: nothing is held for them again.
    forgotten: BTreeSet<String>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("limits", &self.limits)
            .field("holdings", &self.holdings())
            .finish_non_exhaustive()
    }
}

/// The inbox topic of `user`.
fn topic(user: &str) -> String {
    format!("{}{user}", sotto_wire::filter::INBOX_PREFIX)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Engine {
    /// An empty engine that accepts CONNECTs carrying `secret` as password.
    pub fn new(secret: &[u8], limits: Limits) -> Engine {
        Engine {
            secret: secret.to_vec(),
            limits,
            inboxes: BTreeMap::new(),
            conns: BTreeMap::new(),
            forgotten: BTreeSet::new(),
        }
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether `conn` has an accepted CONNECT.
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// One whole packet from `conn`. On `Err` the shell closes `conn` (and calls
    /// [`Engine::closed`]).
    pub fn packet(
        &mut self,
        conn: ConnId,
        packet: &[u8],
        out: &mut Vec<Out>,
    ) -> Result<(), EngineError> {
        let parsed = mqtt::parse(packet)?;
        let Some(user) = self.conns.get(&conn).cloned() else {
            return match parsed {
                Packet::Connect(c) => self.connect(conn, packet, c.clean_session, out),
                other => Err(EngineError::Unexpected(kind_of(&other))),
            };
        };
        match parsed {
            Packet::Publish(p) => {
                let recipient = p
                    .topic
                    .strip_prefix(sotto_wire::filter::INBOX_PREFIX)
                    .filter(|r| sotto_wire::filter::is_user_id(r))
                    .ok_or(EngineError::Publish)?;
                let pkid = match (p.qos, p.pkid, p.retain) {
                    (1, Some(pkid), false) => pkid,
                    _ => return Err(EngineError::Publish),
                };
                let payload = mqtt::publish_payload(packet)?;
                self.enqueue(recipient, payload)?;
                out.push(Out::Send(conn, mqtt::puback(pkid)));
                let recipient = recipient.to_owned();
                self.deliver(&recipient, out);
            }
            Packet::Ack {
                kind: PacketType::PubAck,
                pkid,
            } => {
                if let Some(inbox) = self.inboxes.get_mut(&user) {
                    if let Some(at) = inbox.inflight.iter().position(|(p, _)| *p == pkid) {
                        if let Some((_, held)) = inbox.inflight.remove(at) {
                            inbox.bytes -= held.len();
                            #[cfg(feature = "mutations")]
                            if sotto_core::mutation::active(
                                sotto_core::mutation::Mutation::BrokerKeepsAcknowledged,
                            ) {
                                inbox.retired.push(held);
                            }
                        }
                        inbox.shrink();
                    }
                }
                self.deliver(&user, out);
            }
            Packet::Subscribe { pkid, filters } => {
                let own = topic(&user);
                let codes: Vec<u8> = filters
                    .iter()
                    .map(|(f, qos)| {
                        if *f == own && *qos <= 1 {
                            1
                        } else {
                            mqtt::SUBACK_FAILURE
                        }
                    })
                    .collect();
                if codes.contains(&1) {
                    self.inboxes.entry(user.clone()).or_default().subscribed = true;
                }
                out.push(Out::Send(conn, mqtt::suback(pkid, &codes)));
                self.deliver(&user, out);
            }
            Packet::Unsubscribe { pkid, filters } => {
                if filters.contains(&topic(&user).as_str()) {
                    if let Some(inbox) = self.inboxes.get_mut(&user) {
                        inbox.subscribed = false;
                    }
                }
                out.push(Out::Send(conn, mqtt::unsuback(pkid)));
            }
            Packet::PingReq => out.push(Out::Send(conn, mqtt::pingresp())),
            Packet::Disconnect => out.push(Out::Close(conn)),
            other => return Err(EngineError::Unexpected(kind_of(&other))),
        }
        Ok(())
    }

    fn connect(
        &mut self,
        conn: ConnId,
        packet: &[u8],
        clean: bool,
        out: &mut Vec<Out>,
    ) -> Result<(), EngineError> {
        let login = mqtt::connect_login(packet)?;
        let authorized = login.username == Some(login.client_id)
            && login
                .password
                .is_some_and(|p| constant_time_eq(p, &self.secret));
        if !authorized {
            out.push(Out::Send(conn, mqtt::connack(mqtt::CONNACK_NOT_AUTHORIZED)));
            return Err(EngineError::NotAuthorized);
        }
        let user = login.client_id.to_owned();
        let inbox = self.inboxes.entry(user.clone()).or_default();
        if let Some(old) = inbox.online.take() {
            self.conns.remove(&old);
            out.push(Out::Close(old));
        }
        let inbox = self.inboxes.entry(user.clone()).or_default();
        let session_present = !clean && !inbox.clean && inbox.subscribed;
        if clean || inbox.clean {
            // A clean start: no subscription, deliveries in flight go back to the queue.
            inbox.subscribed = false;
            requeue(inbox);
        }
        inbox.clean = clean;
        inbox.online = Some(conn);
        inbox.idle_sweeps = 0;
        self.conns.insert(conn, user.clone());
        out.push(Out::Send(conn, mqtt::connack_accepted(session_present)));
        // A resumed session: what was in flight goes out again first, with DUP.
        if session_present {
            for (pkid, held) in &inbox.inflight {
                out.push(Out::Send(
                    conn,
                    mqtt::encode_publish(&topic(&user), Some(*pkid), true, held),
                ));
            }
        }
        self.deliver(&user, out);
        Ok(())
    }

    /// `conn` is gone (closed by either side).
    pub fn closed(&mut self, conn: ConnId) {
        let Some(user) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(inbox) = self.inboxes.get_mut(&user) {
            if inbox.online == Some(conn) {
                inbox.online = None;
                if inbox.clean {
                    inbox.subscribed = false;
                    requeue(inbox);
                }
            }
            if inbox.len() == 0 && !inbox.subscribed {
                self.inboxes.remove(&user);
            }
        }
    }

    fn enqueue(&mut self, recipient: &str, payload: &[u8]) -> Result<(), EngineError> {
        if self.forgotten.contains(recipient) {
            // A departed account: nothing to hold it for (a PUBLISH that passed the front just
            // before the departure).
            return Ok(());
        }
        let inbox = self.inboxes.entry(recipient.to_owned()).or_default();
        if inbox.len() >= self.limits.max_envelopes
            || inbox.bytes + payload.len() > self.limits.max_bytes
        {
            if inbox.len() == 0 && !inbox.subscribed && inbox.online.is_none() {
                self.inboxes.remove(recipient);
            }
            return Err(EngineError::InboxFull);
        }
        inbox.bytes += payload.len();
        inbox.queue.push_back(Zeroizing::new(payload.to_vec()));
        Ok(())
    }

    /// Sends queued envelopes of `user`'s inbox while its owner is online, subscribed and the
    /// window has room.
    fn deliver(&mut self, user: &str, out: &mut Vec<Out>) {
        let window = self.limits.window;
        let Some(inbox) = self.inboxes.get_mut(user) else {
            return;
        };
        let Some(conn) = inbox.online.filter(|_| inbox.subscribed) else {
            return;
        };
        let topic = topic(user);
        while inbox.inflight.len() < window {
            let Some(held) = inbox.queue.pop_front() else {
                break;
            };
            let pkid = inbox.take_pkid();
            out.push(Out::Send(
                conn,
                mqtt::encode_publish(&topic, Some(pkid), false, &held),
            ));
            inbox.inflight.push_back((pkid, held));
        }
        inbox.shrink();
    }

    /// One expiry sweep (the shell calls it once a day): every inbox whose owner is offline
    /// counts one more idle sweep, and one that reaches `after` goes with its session and its
    /// queue (zeroized); an owner online now resets the count. Returns how many went.
    pub fn expire_idle(&mut self, after: u32) -> usize {
        let before = self.inboxes.len();
        self.inboxes.retain(|_, inbox| {
            if inbox.online.is_some() {
                inbox.idle_sweeps = 0;
                return true;
            }
            inbox.idle_sweeps = inbox.idle_sweeps.saturating_add(1);
            inbox.idle_sweeps < after
        });
        before - self.inboxes.len()
    }

    /// `user`'s account was deleted (`crate::departure`): its session and every envelope queued
    /// or in flight for it go now (zeroized), its connection is closed (`out`), and nothing is
    /// held for it again. Returns how many envelopes went.
    pub fn forget(&mut self, user: &str, out: &mut Vec<Out>) -> usize {
        self.forgotten.insert(user.to_owned());
        let gone = self.inboxes.remove(user).map_or(0, |inbox| inbox.len());
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, u)| u.as_str() == user)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.conns.remove(&conn);
            out.push(Out::Close(conn));
        }
        gone
    }

    /// What the engine holds now.
    pub fn holdings(&self) -> Holdings {
        let mut h = Holdings::default();
        for inbox in self.inboxes.values() {
            let n = inbox.len();
            #[cfg(feature = "mutations")]
            let n = n + inbox.retired.len();
            if n > 0 {
                h.inboxes += 1;
                h.envelopes += n;
                h.bytes += inbox.bytes;
                #[cfg(feature = "mutations")]
                {
                    h.bytes += inbox.retired.iter().map(|r| r.len()).sum::<usize>();
                }
            }
        }
        h
    }

    /// A copy of every envelope held, for the broker-side Req6 check (conformance), which looks
    /// for delivered ciphertexts among them.
    pub fn held_envelopes(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for inbox in self.inboxes.values() {
            all.extend(inbox.queue.iter().map(|h| h.to_vec()));
            all.extend(inbox.inflight.iter().map(|(_, h)| h.to_vec()));
            #[cfg(feature = "mutations")]
            all.extend(inbox.retired.iter().map(|h| h.to_vec()));
        }
        all
    }
}

/// Puts the deliveries in flight back at the head of the queue, in their order.
fn requeue(inbox: &mut Inbox) {
    while let Some((_, held)) = inbox.inflight.pop_back() {
        inbox.queue.push_front(held);
    }
}

fn kind_of(p: &Packet<'_>) -> Option<PacketType> {
    Some(match p {
        Packet::Connect(_) => PacketType::Connect,
        Packet::Publish(_) => PacketType::Publish,
        Packet::Subscribe { .. } => PacketType::Subscribe,
        Packet::Unsubscribe { .. } => PacketType::Unsubscribe,
        Packet::Ack { kind, .. } => *kind,
        Packet::PingReq => PacketType::PingReq,
        Packet::Disconnect => PacketType::Disconnect,
        Packet::ServerOnly(kind) => *kind,
        // `Packet` is non-exhaustive: a kind added later is unexpected all the same.
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
