//! The controllable relay between the front and the broker: the broker side of the model.
//!
//! ```text
//!  client ==mTLS==> front --plain MQTT--> relay --plain MQTT--> broker (embedded | Mosquitto)
//!                                           | client PUBLISH i/X: forwarded, noted in X's queue
//!                                           | broker PUBLISH i/X: held, never forwarded by itself
//!                                           | Receive(X): the first packet of X's queue goes out;
//!                                           |   the client's PUBACK goes on to the broker
//! ```
//!
//! The relay keeps, per inbox, the model's queue: every envelope published to it, in order, each
//! either still at the broker (published, not delivered yet: the recipient is offline), held by
//! the relay (the broker delivered it on the recipient's connection, unacknowledged), or made by
//! the attacker (a duplicate, a replayed or injected envelope: the broker never saw it). A
//! `Receive` releases the first one; the client's PUBACK is what tells the broker to drop its copy
//! (Req6). Drop acknowledges a packet to the broker without delivering it; Duplicate, Reorder,
//! Replay and Inject change only the relay's queue. A connection that closes hands its held
//! packets back to the broker, which delivers them again on the next connection (persistent
//! session, QoS 1); the relay recognises them by their bytes and keeps their place.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::{Packet, PubAck, Publish, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use sotto_server::broker::upstream::InternalAddr;
use sotto_wire::mqtt;

/// Largest packet the relay accepts either way.
const MAX_PACKET: usize = 1 << 20;

/// Where a queued envelope is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// Published and accepted by the broker, not delivered yet (the recipient is offline).
    AtBroker,
    /// Delivered by the broker on connection `conn` with packet id `pkid`, held by the relay.
    Held {
        /// Relay connection number.
        conn: u64,
        /// The broker's packet id.
        pkid: u16,
    },
    /// Made by the attacker (duplicate, replay, injection): the broker never had it.
    Attacker,
}

/// One envelope in an inbox queue.
#[derive(Clone, Debug)]
pub struct Queued {
    /// The envelope bytes (the MQTT payload).
    pub payload: Bytes,
    /// Where it is.
    pub place: Place,
    /// Dropped by the attacker while still at the broker: acknowledged as soon as it arrives.
    pub dropped: bool,
}

/// Why a relay operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The inbox has no packet at that position.
    #[error("inbox {inbox} has no packet {index}")]
    NoPacket {
        /// Inbox owner (user id).
        inbox: String,
        /// Position.
        index: usize,
    },
    /// The recipient is not connected through the relay.
    #[error("{0} is not connected")]
    NotConnected(String),
    /// Waiting for the broker or the client took too long.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// Socket error.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

struct Conn {
    user: Option<String>,
    to_client: mpsc::UnboundedSender<Bytes>,
    to_broker: mpsc::UnboundedSender<Bytes>,
    subscribed: bool,
    next_pkid: u16,
    /// Relay packet id -> broker packet id (None: an attacker's packet).
    delivered: HashMap<u16, Option<u16>>,
    /// Client publishes awaiting the broker's PUBACK.
    outstanding: usize,
    /// The broker's packets on this connection in delivery order, until their PUBACK went up:
    /// MQTT 3.1.1 wants acknowledgements in that order (a broker may close the connection on one out
    /// of order), so an acknowledgement waits for every earlier one.
    order: std::collections::VecDeque<Pending>,
    closer: Option<tokio::sync::oneshot::Sender<()>>,
}

struct Pending {
    pkid: u16,
    payload: Bytes,
    acked: bool,
}

impl Conn {
    /// Marks the broker's packet `pkid` acknowledged and sends every acknowledgement now in order.
    fn ack_upstream(&mut self, pkid: u16) {
        if let Some(p) = self.order.iter_mut().find(|p| p.pkid == pkid && !p.acked) {
            p.acked = true;
        }
        while self.order.front().is_some_and(|p| p.acked) {
            if let Some(p) = self.order.pop_front() {
                let _ = self.to_broker.send(encode_puback(p.pkid));
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    inboxes: BTreeMap<String, Vec<Queued>>,
    /// Per inbox, packets the client (or a Drop) acknowledged whose PUBACK could not go up before
    /// the connection closed: the broker delivers them again, and the relay acknowledges them
    /// without queueing them a second time.
    ghosts: BTreeMap<String, Vec<Bytes>>,
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    /// Client PUBACKs for released packets, by (conn, relay pkid).
    acked: Vec<(u64, u16)>,
    /// Every packet seen (both directions), for the wiretap of a replay.
    log: Vec<Bytes>,
    unexpected: Vec<String>,
}

/// The relay (see the module docs).
pub struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<InternalAddr>>,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("addr", &self.addr).finish()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn inbox_of(topic: &str) -> Option<&str> {
    topic.strip_prefix("i/")
}

fn encode_publish(topic: &str, payload: &Bytes, pkid: u16) -> Bytes {
    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
    p.pkid = pkid;
    let mut buf = BytesMut::new();
    // Writing to a BytesMut cannot fail for a well-formed topic.
    let _ = p.write(&mut buf);
    buf.freeze()
}

fn encode_puback(pkid: u16) -> Bytes {
    let mut buf = BytesMut::new();
    let _ = PubAck::new(pkid).write(&mut buf);
    buf.freeze()
}

/// Splits one MQTT packet off `buf`, if complete, with the front's framing.
fn split_packet(buf: &mut BytesMut) -> Result<Option<Bytes>, mqtt::ParseError> {
    match mqtt::packet_len(buf, MAX_PACKET)? {
        Some(len) if buf.len() >= len => Ok(Some(buf.split_to(len).freeze())),
        _ => Ok(None),
    }
}

fn parse(frame: &Bytes) -> Option<Packet> {
    let mut b = BytesMut::from(&frame[..]);
    Packet::read(&mut b, MAX_PACKET).ok()
}

impl Relay {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: InternalAddr) -> Result<Relay, RelayError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let upstream = Arc::new(Mutex::new(upstream));
        let inner = Arc::new(Mutex::new(Inner::default()));
        let changed = Arc::new(Notify::new());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream.clone(),
            inner.clone(),
            changed.clone(),
        ));
        Ok(Relay {
            addr,
            upstream,
            inner,
            changed,
            accept,
        })
    }

    /// Where the front connects.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Points the relay at a new broker (after a restart) and closes every connection: the
    /// broker lost every queue, and so does the relay's view of them.
    pub fn restart(&self, upstream: InternalAddr) {
        if let Ok(mut u) = self.upstream.lock() {
            *u = upstream;
        }
        let mut g = lock(&self.inner);
        g.inboxes.clear();
        g.ghosts.clear();
        for c in g.conns.values_mut() {
            if let Some(tx) = c.closer.take() {
                let _ = tx.send(());
            }
        }
        drop(g);
        self.changed.notify_waiters();
    }

    /// The visible queue of an inbox (dropped packets left out).
    pub fn queue(&self, inbox: &str) -> Vec<Queued> {
        lock(&self.inner)
            .inboxes
            .get(inbox)
            .map(|q| q.iter().filter(|e| !e.dropped).cloned().collect())
            .unwrap_or_default()
    }

    fn position(q: &[Queued], index: usize) -> Option<usize> {
        q.iter()
            .enumerate()
            .filter(|(_, e)| !e.dropped)
            .nth(index)
            .map(|(i, _)| i)
    }

    /// Drop: the packet is acknowledged to the broker (now, or when it arrives) and never
    /// delivered.
    pub fn drop_packet(&self, inbox: &str, index: usize) -> Result<(), RelayError> {
        let mut g = lock(&self.inner);
        let q = g.inboxes.entry(inbox.to_owned()).or_default();
        let i = Self::position(q, index).ok_or_else(|| RelayError::NoPacket {
            inbox: inbox.to_owned(),
            index,
        })?;
        match q.get(i).map(|e| e.place.clone()) {
            Some(Place::Held { conn, pkid }) => {
                q.remove(i);
                if let Some(c) = g.conns.get_mut(&conn) {
                    c.ack_upstream(pkid);
                }
            }
            Some(Place::AtBroker) => {
                if let Some(e) = q.get_mut(i) {
                    e.dropped = true;
                }
            }
            Some(Place::Attacker) | None => {
                q.remove(i);
            }
        }
        Ok(())
    }

    /// Duplicate: a second copy right after the packet.
    pub fn duplicate(&self, inbox: &str, index: usize) -> Result<(), RelayError> {
        let mut g = lock(&self.inner);
        let q = g.inboxes.entry(inbox.to_owned()).or_default();
        let i = Self::position(q, index).ok_or_else(|| RelayError::NoPacket {
            inbox: inbox.to_owned(),
            index,
        })?;
        let payload = q.get(i).map(|e| e.payload.clone()).unwrap_or_default();
        q.insert(
            i + 1,
            Queued {
                payload,
                place: Place::Attacker,
                dropped: false,
            },
        );
        Ok(())
    }

    /// Reorder: the newest packet moves to the front.
    pub fn reorder(&self, inbox: &str) -> Result<(), RelayError> {
        let mut g = lock(&self.inner);
        let q = g.inboxes.entry(inbox.to_owned()).or_default();
        let last = q
            .iter()
            .rposition(|e| !e.dropped)
            .ok_or_else(|| RelayError::NoPacket {
                inbox: inbox.to_owned(),
                index: 0,
            })?;
        let e = q.remove(last);
        q.insert(0, e);
        Ok(())
    }

    /// Replay or Inject: the attacker queues an envelope of its choice.
    pub fn inject(&self, inbox: &str, payload: Bytes) {
        let mut g = lock(&self.inner);
        g.inboxes.entry(inbox.to_owned()).or_default().push(Queued {
            payload,
            place: Place::Attacker,
            dropped: false,
        });
    }

    /// Whether `user` has a subscribed connection.
    pub fn is_connected(&self, user: &str) -> bool {
        lock(&self.inner)
            .conns
            .values()
            .any(|c| c.subscribed && c.user.as_deref() == Some(user))
    }

    /// Quiet: no client publish awaits its PUBACK, nothing for a connected user is still at the
    /// broker, and every user in `online` is connected.
    pub fn settled(&self, online: &[String]) -> bool {
        let g = lock(&self.inner);
        if g.conns.values().any(|c| c.outstanding > 0) {
            return false;
        }
        online.iter().all(|u| {
            g.conns
                .values()
                .any(|c| c.subscribed && c.user.as_deref() == Some(u.as_str()))
                && g.inboxes
                    .get(u)
                    .is_none_or(|q| q.iter().all(|e| e.place != Place::AtBroker))
        })
    }

    /// Waits until `cond` holds, up to `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Relay) -> bool,
    ) -> Result<(), RelayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if cond(self) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return if cond(self) {
                    Ok(())
                } else {
                    Err(RelayError::Timeout(what.to_owned()))
                };
            }
        }
    }

    /// Receive: releases the first packet of `user`'s queue to its connection and waits for the
    /// client's PUBACK (sent only after its commit, RX-4).
    pub async fn deliver(&self, user: &str, timeout: Duration) -> Result<(), RelayError> {
        // The first packet must have reached the relay (the broker delivers on connection).
        self.wait_for("the first packet to arrive", timeout, |r| {
            let g = lock(&r.inner);
            g.inboxes
                .get(user)
                .and_then(|q| q.iter().find(|e| !e.dropped))
                .is_some_and(|e| e.place != Place::AtBroker)
        })
        .await?;
        let ticket = {
            let mut g = lock(&self.inner);
            let conn_id = g
                .conns
                .iter()
                .find(|(_, c)| c.subscribed && c.user.as_deref() == Some(user))
                .map(|(id, _)| *id)
                .ok_or_else(|| RelayError::NotConnected(user.to_owned()))?;
            let q = g.inboxes.entry(user.to_owned()).or_default();
            let i = Self::position(q, 0).ok_or_else(|| RelayError::NoPacket {
                inbox: user.to_owned(),
                index: 0,
            })?;
            let e = q.remove(i);
            let upstream = match e.place {
                Place::Held { conn, pkid } if conn == conn_id => Some(pkid),
                Place::Held { .. } | Place::AtBroker => {
                    return Err(RelayError::NotConnected(user.to_owned()));
                }
                Place::Attacker => None,
            };
            let c = g
                .conns
                .get_mut(&conn_id)
                .ok_or_else(|| RelayError::NotConnected(user.to_owned()))?;
            c.next_pkid = c.next_pkid.checked_add(1).unwrap_or(1).max(1);
            let pkid = c.next_pkid;
            c.delivered.insert(pkid, upstream);
            let _ = c
                .to_client
                .send(encode_publish(&format!("i/{user}"), &e.payload, pkid));
            (conn_id, pkid)
        };
        self.wait_for("the client's PUBACK", timeout, |r| {
            lock(&r.inner).acked.contains(&ticket)
        })
        .await
    }

    /// Every packet relayed so far, both directions, as it crossed.
    pub fn frames(&self) -> Vec<Bytes> {
        lock(&self.inner).log.clone()
    }

    /// What the relay could not place (a broker packet nobody published, a foreign topic).
    pub fn unexpected(&self) -> Vec<String> {
        lock(&self.inner).unexpected.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        let mut g = lock(&self.inner);
        for c in g.conns.values_mut() {
            if let Some(tx) = c.closer.take() {
                let _ = tx.send(());
            }
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<Mutex<InternalAddr>>,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let addr = match upstream.lock() {
            Ok(a) => a.clone(),
            Err(_) => return,
        };
        let inner = inner.clone();
        let changed = changed.clone();
        tokio::spawn(async move {
            let Ok(broker) = addr.connect().await else {
                return;
            };
            relay_conn(client, broker, inner, changed).await;
        });
    }
}

async fn relay_conn(
    client: TcpStream,
    broker: (
        impl AsyncRead + Unpin + Send + 'static,
        impl AsyncWrite + Unpin + Send + 'static,
    ),
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
) {
    let _ = client.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (broker_rd, broker_wr) = broker;
    let (to_client, client_q) = mpsc::unbounded_channel::<Bytes>();
    let (to_broker, broker_q) = mpsc::unbounded_channel::<Bytes>();
    let (closer, mut closed) = tokio::sync::oneshot::channel::<()>();
    let id = {
        let mut g = lock(&inner);
        g.next_conn += 1;
        let id = g.next_conn;
        g.conns.insert(
            id,
            Conn {
                user: None,
                to_client: to_client.clone(),
                to_broker: to_broker.clone(),
                subscribed: false,
                next_pkid: 0,
                delivered: HashMap::new(),
                outstanding: 0,
                order: std::collections::VecDeque::new(),
                closer: Some(closer),
            },
        );
        id
    };
    let writer_c = tokio::spawn(write_all(client_q, client_wr));
    let writer_b = tokio::spawn(write_all(broker_q, broker_wr));
    let from_client = read_all(
        client_rd,
        inner.clone(),
        changed.clone(),
        move |frame, g| on_client_packet(id, frame, g, &to_broker),
    );
    let from_broker = read_all(
        broker_rd,
        inner.clone(),
        changed.clone(),
        move |frame, g| on_broker_packet(id, frame, g, &to_client),
    );
    tokio::select! {
        _ = from_client => {},
        _ = from_broker => {},
        _ = &mut closed => {},
    }
    {
        let mut g = lock(&inner);
        if let Some(c) = g.conns.remove(&id) {
            if let Some(user) = c.user {
                let acked: Vec<Bytes> = c
                    .order
                    .into_iter()
                    .filter(|p| p.acked)
                    .map(|p| p.payload)
                    .collect();
                g.ghosts.entry(user).or_default().extend(acked);
            }
        }
        // Held packets go back to the broker: it delivers them again on the next connection.
        for q in g.inboxes.values_mut() {
            for e in q.iter_mut() {
                if matches!(e.place, Place::Held { conn, .. } if conn == id) {
                    e.place = Place::AtBroker;
                }
            }
        }
    }
    changed.notify_waiters();
    writer_c.abort();
    writer_b.abort();
}

/// Writes what the channel brings until it closes, then shuts the socket down.
async fn write_all(mut q: mpsc::UnboundedReceiver<Bytes>, mut wr: impl AsyncWrite + Unpin) {
    while let Some(p) = q.recv().await {
        if wr.write_all(&p).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads whole packets until the socket closes, handing each to `on_packet`.
async fn read_all(
    mut rd: impl AsyncRead + Unpin,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    on_packet: impl Fn(Bytes, &Mutex<Inner>),
) {
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match split_packet(&mut buf) {
            Ok(Some(frame)) => {
                on_packet(frame, &inner);
                changed.notify_waiters();
                continue;
            }
            Ok(None) => {}
            // A malformed length: the connection closes (the broker and the front frame strictly).
            Err(_) => return,
        }
        if rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
}

fn count(g: &mut Inner, frame: &Bytes) {
    g.log.push(frame.clone());
}

fn on_client_packet(
    id: u64,
    frame: Bytes,
    inner: &Mutex<Inner>,
    to_broker: &mpsc::UnboundedSender<Bytes>,
) {
    let mut g = lock(inner);
    count(&mut g, &frame);
    match parse(&frame) {
        Some(Packet::Connect(c)) => {
            if let Some(conn) = g.conns.get_mut(&id) {
                conn.user = Some(c.client_id.clone());
            }
        }
        Some(Packet::Publish(p)) if p.qos == QoS::AtLeastOnce => {
            if let Some(inbox) = inbox_of(&p.topic) {
                g.inboxes.entry(inbox.to_owned()).or_default().push(Queued {
                    payload: p.payload.clone(),
                    place: Place::AtBroker,
                    dropped: false,
                });
            }
            if let Some(conn) = g.conns.get_mut(&id) {
                conn.outstanding += 1;
            }
        }
        Some(Packet::PubAck(ack)) => {
            // The client acknowledges a packet the relay released: on to the broker if it came
            // from there (the broker drops its copy), swallowed if the attacker made it.
            if let Some(c) = g.conns.get_mut(&id) {
                if let Some(Some(pkid)) = c.delivered.remove(&ack.pkid) {
                    c.ack_upstream(pkid);
                }
            }
            g.acked.push((id, ack.pkid));
            return;
        }
        _ => {}
    }
    let _ = to_broker.send(frame);
}

fn on_broker_packet(
    id: u64,
    frame: Bytes,
    inner: &Mutex<Inner>,
    to_client: &mpsc::UnboundedSender<Bytes>,
) {
    let mut g = lock(inner);
    count(&mut g, &frame);
    match parse(&frame) {
        Some(Packet::Publish(p)) if p.qos == QoS::AtLeastOnce => {
            let Some(user) = inbox_of(&p.topic).map(str::to_owned) else {
                g.unexpected
                    .push(format!("broker PUBLISH on topic {}", p.topic));
                return;
            };
            if let Some(c) = g.conns.get_mut(&id) {
                c.order.push_back(Pending {
                    pkid: p.pkid,
                    payload: p.payload.clone(),
                    acked: false,
                });
            }
            // Acknowledged before the last connection closed: acknowledge again, queue nothing.
            let ghosts = g.ghosts.entry(user.clone()).or_default();
            if let Some(i) = ghosts.iter().position(|b| *b == p.payload) {
                ghosts.remove(i);
                if let Some(c) = g.conns.get_mut(&id) {
                    c.ack_upstream(p.pkid);
                }
                return;
            }
            let q = g.inboxes.entry(user).or_default();
            let place = Place::Held {
                conn: id,
                pkid: p.pkid,
            };
            match q
                .iter()
                .position(|e| e.place == Place::AtBroker && e.payload == p.payload)
            {
                Some(i) => {
                    let dropped = q.get(i).is_some_and(|e| e.dropped);
                    if dropped {
                        q.remove(i);
                        if let Some(c) = g.conns.get_mut(&id) {
                            c.ack_upstream(p.pkid);
                        }
                    } else if let Some(e) = q.get_mut(i) {
                        e.place = place;
                    }
                }
                None => {
                    q.push(Queued {
                        payload: p.payload.clone(),
                        place,
                        dropped: false,
                    });
                    g.unexpected
                        .push("the broker delivered a packet nobody published".to_owned());
                }
            }
            // Held: released by `deliver` only.
        }
        Some(Packet::PubAck(_)) => {
            if let Some(c) = g.conns.get_mut(&id) {
                c.outstanding = c.outstanding.saturating_sub(1);
            }
            let _ = to_client.send(frame);
        }
        Some(Packet::SubAck(_)) => {
            if let Some(c) = g.conns.get_mut(&id) {
                c.subscribed = true;
            }
            let _ = to_client.send(frame);
        }
        _ => {
            let _ = to_client.send(frame);
        }
    }
}
