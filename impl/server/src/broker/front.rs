//! The authorizing mutual-TLS front of every broker (TLS-1, BROKER-1..3, BROKER-5, BROKER-6).
//!
//! ```text
//!  client ==TLS 1.3, client cert==> front --plain--> embedded broker (TCP) | Mosquitto (Unix socket) | NATS nodes (TCP)
//!           CN = user id               | client->broker: packet_len + ClientFilter per packet;
//!                                      |   a DISCONNECT ends the relay (not passed on)
//!                                      | broker->client: framed only, relayed as they are
//!                                      | CONNECT replaced by encode_connect(user id, secret)
//! ```
//!
//! Per connection: TLS handshake (certificate required, chained to the service CA), the CN is the
//! user id; the first packet must be an acceptable CONNECT, only then is the internal broker
//! dialled, with the front's own CONNECT carrying the internal secret (so no other local process
//! can use the internal port). Three tasks relay afterwards: client reader (filter), broker
//! reader, and one client writer fed by a bounded channel (so the front's own SUBACK failures never
//! interleave with a broker packet). Any change of the upstream (broker stopped or restarted)
//! closes every relayed connection. Logs name rules and connection numbers, never topics,
//! payloads or secrets.
//!
//! Departed accounts ([`crate::departure`]): a PUBLISH to the inbox of a user who deleted their
//! account (or whose account expired) is refused with a refusal notice of reason 2
//! (`NoSuchRecipient`, BROKER-5) and its PUBACK; the departed user's own connections close at the
//! departure, and its certificate is revoked.
//!
//! For the conformance wiretap (Req8), [`Front::wiretap`] yields every MQTT packet seen in
//! plaintext on the client side of the front: client packets as received (forwarded or not) and
//! broker packets as relayed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::ledger::{InboxLedger, InboxLimits, Ticket};
pub use super::upstream::Upstream;
use super::upstream::{InternalRead, InternalWrite};
use crate::admission::AdmissionLimits;
use crate::ca;
use crate::departure::{self, Departures};
use crate::gate::{Gate, Pass};
use crate::metrics::{Metrics, Report};
use crate::revocation::Revocations;
use sotto_wire::filter::{ClientFilter, INBOX_PREFIX, MAX_CLIENT_REMAINING, Verdict, is_user_id};
use sotto_wire::mqtt::{self, Packet, PacketType, ParseError, encode_connect};
use sotto_wire::notice::{RefusalNotice, RefusalReason};

/// Time allowed for the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed between the handshake and a complete CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest remaining length accepted from the internal broker (trusted; only framed).
const MAX_BROKER_REMAINING: usize = 1 << 20;
/// Packets queued towards one client before the broker reader waits.
const CLIENT_QUEUE: usize = 64;
/// Time the writer gets to flush a last reply (e.g. a CONNACK refusal) before the close.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// CONNACK return code: server unavailable (the internal broker is stopped).
const CONNACK_UNAVAILABLE: u8 = 0x03;

#[derive(Clone, Debug)]
enum State {
    Running(Upstream),
    Paused,
    Shutdown,
}

/// Why one connection ended abnormally (logged at debug level).
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Frame(#[from] ParseError),
    #[error("timeout")]
    Timeout,
    #[error("connection closed inside a packet")]
    Eof,
    #[error("certificate without a valid user id")]
    NoIdentity,
    #[error("certificate revoked by a renewal")]
    Revoked,
    #[error("the account was deleted")]
    Departed,
}

/// Which way a tapped packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapDirection {
    /// From the client; `forwarded` is false when the filter refused it.
    ClientToBroker {
        /// Whether the packet reached the broker (a CONNECT is replaced by the front's own).
        forwarded: bool,
    },
    /// From the broker to the client.
    BrokerToClient,
    /// The front's own answer to the client (a refusal notice and its PUBACK, BROKER-5).
    FrontToClient,
}

/// One packet seen by the front (see [`Front::wiretap`]).
#[derive(Debug, Clone)]
pub struct TapRecord {
    /// Connection number (per front, from 1).
    pub conn: u64,
    /// Direction.
    pub direction: TapDirection,
    /// The whole MQTT packet.
    pub packet: Bytes,
}

type TapSlot = Arc<std::sync::Mutex<Option<mpsc::UnboundedSender<TapRecord>>>>;

fn record(tap: &TapSlot, conn: u64, direction: TapDirection, packet: &Bytes) {
    if let Ok(mut slot) = tap.lock() {
        if let Some(tx) = slot.as_ref() {
            if tx
                .send(TapRecord {
                    conn,
                    direction,
                    packet: packet.clone(),
                })
                .is_err()
            {
                *slot = None;
            }
        }
    }
}

/// A running front: a TLS listener relaying to the internal broker.
pub struct Front {
    local_addr: SocketAddr,
    state: watch::Sender<State>,
    accept_task: Option<JoinHandle<()>>,
    tap: TapSlot,
    seen: SeenUsers,
    ledger: Ledger,
    departures: Departures,
}

/// The front's inbox ledger (BROKER-5), shared by every connection.
type Ledger = Arc<std::sync::Mutex<InboxLedger>>;

/// User ids whose CONNECT the front relayed (their inbox sessions live in the broker).
type SeenUsers = Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>;

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Front {
    /// Binds `listen` (use port 0 for any free port) and serves TLS with `tls`
    /// ([`crate::ca::Pki::mqtt_server_config`]), relaying to `upstream` (`None`: every CONNECT is
    /// answered "server unavailable" until [`Front::set_upstream`]), refusing PUBLISHes to
    /// inboxes that hold `limits` (BROKER-5), and taking connections within `admission`
    /// ([`crate::admission`]); a client certificate in `revocations` is refused
    /// ([`crate::revocation`]), and so is a PUBLISH to a user in `departures`
    /// ([`crate::departure`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn bind(
        listen: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        upstream: Option<Upstream>,
        limits: InboxLimits,
        admission: AdmissionLimits,
        revocations: Revocations,
        departures: Departures,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Front> {
        let gate = Gate::new("mqtt front", admission, metrics.front.clone())?;
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let initial = upstream.map_or(State::Paused, State::Running);
        let (state, state_rx) = watch::channel(initial);
        let tap = TapSlot::default();
        let seen = SeenUsers::default();
        let ledger = Ledger::new(std::sync::Mutex::new(InboxLedger::new(limits)));
        let accept_task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(tls),
            state_rx,
            gate,
            Shared {
                tap: tap.clone(),
                seen: seen.clone(),
                ledger: ledger.clone(),
                revocations,
                departures: departures.clone(),
                metrics: metrics.clone(),
            },
        ));
        register_probe(&metrics, state.subscribe(), ledger.clone());
        tracing::info!(
            %local_addr,
            max_connections = admission.total,
            "MQTT front listening"
        );
        Ok(Front {
            local_addr,
            state,
            accept_task: Some(accept_task),
            tap,
            seen,
            ledger,
            departures,
        })
    }

    /// Envelopes and bytes the ledger counts for `user`'s inbox.
    pub fn ledger_count(&self, user: &str) -> (usize, usize) {
        self.ledger.lock().map(|l| l.count(user)).unwrap_or((0, 0))
    }

    /// The broker lost its queues: the ledger starts from zero.
    pub fn reset_ledger(&self) {
        if let Ok(mut l) = self.ledger.lock() {
            l.reset();
        }
    }

    /// The user ids whose sessions the front has relayed since it started: after a broker
    /// restart that lost them, [`restore_sessions`] gives each its inbox session back. A
    /// departed user ([`crate::departure`]) is not among them: its inbox is gone for good.
    pub fn seen_users(&self) -> Vec<String> {
        self.seen
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|u| !self.departures.is_departed(u))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Starts a wiretap (replacing any previous one): every packet of every connection from now
    /// on, in plaintext. For tests and the conformance wiretap only.
    pub fn wiretap(&self) -> mpsc::UnboundedReceiver<TapRecord> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut slot) = self.tap.lock() {
            *slot = Some(tx);
        }
        rx
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Switches the internal broker (`None`: paused). Closes every relayed connection.
    pub fn set_upstream(&self, upstream: Option<Upstream>) {
        self.state
            .send_replace(upstream.map_or(State::Paused, State::Running));
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(mut self) {
        self.close().await;
    }

    /// [`Front::shutdown`] in place: once it returns, the address is free again.
    pub async fn close(&mut self) {
        self.state.send_replace(State::Shutdown);
        if let Some(task) = self.accept_task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.state.send_replace(State::Shutdown);
        if let Some(task) = &self.accept_task {
            task.abort();
        }
    }
}

/// What every connection of one front shares.
#[derive(Clone)]
struct Shared {
    tap: TapSlot,
    seen: SeenUsers,
    ledger: Ledger,
    revocations: Revocations,
    departures: Departures,
    metrics: Arc<Metrics>,
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut state: watch::Receiver<State>,
    gate: Gate,
    shared: Shared,
) {
    let next_id = AtomicU64::new(1);
    loop {
        if matches!(*state.borrow_and_update(), State::Shutdown) {
            break;
        }
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Refused: closed at once, counted in the gate's periodic report.
                let Some(pass) = gate.admit(peer) else {
                    continue;
                };
                let conn = next_id.fetch_add(1, Ordering::Relaxed);
                let ticket = pass.ticket();
                let acceptor = acceptor.clone();
                let state = state.clone();
                let shared = shared.clone();
                let task = tokio::spawn(async move {
                    if let Err(e) = serve(conn, tcp, acceptor, state, shared, &pass).await {
                        tracing::debug!(conn, error = %e, "connection ended");
                    }
                    drop(pass);
                });
                gate.track(ticket, task.abort_handle());
            }
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
    }
    tracing::info!("MQTT front stopped");
}

/// The front's part of the operator's metrics: up while the broker behind it accepts a
/// connection; the envelopes and bytes its inbox ledger counts (BROKER-5), over all inboxes.
fn register_probe(metrics: &Metrics, state: watch::Receiver<State>, ledger: Ledger) {
    metrics.register("front", move || {
        let upstream = match &*state.borrow() {
            State::Running(up) => Some(up.addr.clone()),
            State::Paused | State::Shutdown => None,
        };
        let (envelopes, bytes) = ledger.lock().map(|l| l.totals()).unwrap_or_default();
        async move {
            let up = match upstream {
                Some(addr) => matches!(
                    tokio::time::timeout(CONNECT_TIMEOUT, addr.connect()).await,
                    Ok(Ok(_))
                ),
                None => false,
            };
            Report {
                gauges: vec![
                    (
                        "sotto_queued_envelopes",
                        "Envelopes queued for inboxes or on their way to the broker (the front's ledger).",
                        envelopes as f64,
                    ),
                    (
                        "sotto_queued_bytes",
                        "Their payload bytes.",
                        bytes as f64,
                    ),
                ],
                up,
            }
        }
    });
}

/// Gives each user back its persistent inbox session (BROKER-4) on a broker that lost them (a
/// restart of the embedded broker, or of Mosquitto without its persistence file): a CONNECT with
/// the user's client id and `clean_session = 0`, a QoS 1 SUBSCRIBE to `i/<user id>`, and a close
/// (not a DISCONNECT packet, see `is_disconnect`). Messages published to an offline user after the
/// restart are then queued again instead of being dropped for want of a subscriber. Anything the
/// broker delivers on this connection is left unacknowledged, so it stays queued for the user.
pub async fn restore_sessions(upstream: &Upstream, users: &[String]) -> std::io::Result<()> {
    for user in users {
        let (mut rd, mut wr, mut buf) = connect_as(upstream, user, false).await?;
        wr.write_all(&mqtt::encode_subscribe(1, &format!("i/{user}")))
            .await?;
        // Wait for the SUBACK (packets delivered before it are left unacknowledged).
        let suback = tokio::time::timeout(CONNECT_TIMEOUT, async {
            loop {
                match read_packet(&mut rd, &mut buf, MAX_BROKER_REMAINING).await {
                    Ok(Some(p)) if p.first().is_some_and(|b| b >> 4 == 9) => return Ok(()),
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(std::io::Error::other("closed before SUBACK")),
                    Err(e) => return Err(std::io::Error::other(e.to_string())),
                }
            }
        })
        .await
        .map_err(|_| std::io::Error::other("no SUBACK"))?;
        suback?;
        // Closed without a DISCONNECT packet (see `is_disconnect`).
        let _ = wr.shutdown().await;
    }
    Ok(())
}

/// Drops `user`'s persistent session and everything queued in it from a broker reached over a
/// socket (Mosquitto; [`crate::departure`]): a CONNECT with the user's client id and
/// `clean_session = 1`, which makes the broker discard the previous session (MQTT-3.1.2-6) and
/// close a connection that still has it, then a close, which ends the clean one.
pub async fn purge_session(upstream: &Upstream, user: &str) -> std::io::Result<()> {
    let (_, mut wr, _) = connect_as(upstream, user, true).await?;
    // Closed without a DISCONNECT packet (see `is_disconnect`): the clean session ends with it.
    let _ = wr.shutdown().await;
    Ok(())
}

/// Connects to the broker as `user` (the front's own CONNECT, with its secret) and waits for a
/// CONNACK that accepts it; returns the halves and the read buffer.
pub(crate) async fn connect_as(
    upstream: &Upstream,
    user: &str,
    clean_session: bool,
) -> std::io::Result<(InternalRead, InternalWrite, BytesMut)> {
    let (mut rd, mut wr) = upstream.addr.connect().await?;
    wr.write_all(&encode_connect(
        user,
        30,
        clean_session,
        upstream.username(user),
        upstream.secret.as_bytes(),
    ))
    .await?;
    let mut buf = BytesMut::with_capacity(256);
    let connack = tokio::time::timeout(
        CONNECT_TIMEOUT,
        read_packet(&mut rd, &mut buf, MAX_BROKER_REMAINING),
    )
    .await
    .map_err(|_| std::io::Error::other("no CONNACK"))?
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    if connack.as_deref().and_then(|c| c.get(3)) != Some(&0) {
        return Err(std::io::Error::other(
            "the broker refused the front's CONNECT",
        ));
    }
    Ok((rd, wr, buf))
}

/// Reads one whole packet (refusing oversize ones from their header); `None` on a clean EOF.
async fn read_packet<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max_remaining: usize,
) -> Result<Option<Bytes>, ConnError> {
    loop {
        if let Some(len) = mqtt::packet_len(buf, max_remaining)? {
            if buf.len() >= len {
                return Ok(Some(buf.split_to(len).freeze()));
            }
            buf.reserve(len - buf.len());
        }
        if rd.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ConnError::Eof)
            };
        }
    }
}

fn is_publish(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b >> 4 == 3)
}

fn is_pingreq(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b >> 4 == 12)
}

/// A fresh client id for a publisher connection: `p-` and 24 random hex digits (never a user
/// id, which is 16 base32 characters; never reused).
pub(crate) fn publisher_id() -> std::io::Result<String> {
    let id =
        super::random_hex::<12>().map_err(|_| std::io::Error::other("random source failed"))?;
    Ok(format!("p-{id}"))
}

/// Whether `packet` is a DISCONNECT. The front never passes one to the internal broker: closing
/// the socket disconnects exactly once (a broker that also acts on the packet may tear down the
/// connection twice; rumqttd 0.20, the embedded broker before Sotto's own, closed the next client
/// given the same id that way). Since wills are refused (BROKER-3), a close ends the session
/// exactly as a DISCONNECT would.
fn is_disconnect(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b >> 4 == 14)
}

async fn write_and_close<W: AsyncWrite + Unpin>(wr: &mut W, reply: Option<&[u8]>) {
    let _ = tokio::time::timeout(FLUSH_TIMEOUT, async {
        if let Some(reply) = reply {
            wr.write_all(reply).await?;
        }
        wr.shutdown().await
    })
    .await;
}

/// The ledger tickets of one connection's PUBLISHes awaiting the broker's PUBACK, by packet id.
type Pending = Arc<std::sync::Mutex<std::collections::BTreeMap<u16, Ticket>>>;

/// What the front does with a client PUBLISH the filter let through.
enum Admission {
    Forward,
    /// Refused with a notice of this reason and a PUBACK of this packet id (BROKER-5).
    Refuse(u16, RefusalReason),
    /// This front's count says the recipient's inbox is full, but the engine other fronts share
    /// has not confirmed it lately: ask it ([`InboxLedger::resync`]), then decide again; the
    /// packet id and the refusal it gets if the front cannot ask.
    AskEngine(u16, RefusalReason, String),
}

/// How long a front waits for the engine's count of one inbox before refusing on its own count.
const ENGINE_ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Milliseconds since this process first asked (the ledger's clock for its engine asks).
fn monotonic_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// Asks `engine` what it holds for `recipient` and gives the ledger the answer (or its absence).
async fn ask_engine(ledger: &Ledger, engine: &super::nats::NatsCluster, recipient: &str) {
    if let Ok(mut ledger) = ledger.lock() {
        ledger.resync_begin(recipient);
    }
    let held = match tokio::time::timeout(ENGINE_ASK_TIMEOUT, engine.inbox_count(recipient)).await {
        Ok(Ok(n)) => usize::try_from(n).ok(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the engine did not say what an inbox holds");
            None
        }
        Err(_) => {
            tracing::warn!("the engine did not say in time what an inbox holds");
            None
        }
    };
    if let Ok(mut ledger) = ledger.lock() {
        ledger.resync(recipient, held, monotonic_ms());
    }
}

/// Ledger bookkeeping for a client packet the filter forwards: a QoS 1 PUBLISH to a departed
/// user is refused ([`crate::departure`]), any other reserves room in the recipient's inbox (or
/// is refused), the owner's PUBACK frees what it acknowledges.
fn count_from_client(
    ledger: &Ledger,
    departures: &Departures,
    pending: &Pending,
    owner: &str,
    packet: &[u8],
    shared_engine: bool,
) -> Admission {
    let Ok(parsed) = mqtt::parse(packet) else {
        return Admission::Forward;
    };
    if let Packet::Publish(p) = &parsed {
        if let (Some(pkid), Some(recipient)) = (p.pkid, p.topic.strip_prefix(INBOX_PREFIX)) {
            if departures.is_departed(recipient) {
                return Admission::Refuse(pkid, RefusalReason::NoSuchRecipient);
            }
        }
    }
    let Ok(mut ledger) = ledger.lock() else {
        return Admission::Forward;
    };
    match parsed {
        Packet::Publish(p) => {
            let (Some(pkid), Some(recipient)) = (p.pkid, p.topic.strip_prefix(INBOX_PREFIX)) else {
                return Admission::Forward;
            };
            match ledger.reserve(recipient, p.payload_len) {
                Ok(ticket) => {
                    if let Ok(mut pending) = pending.lock() {
                        // A resend of a packet id still pending replaces its reservation.
                        if let Some(old) = pending.insert(pkid, ticket) {
                            ledger.release(old);
                        }
                    }
                    Admission::Forward
                }
                Err(_) if shared_engine && ledger.resync_due(recipient, monotonic_ms()) => {
                    Admission::AskEngine(pkid, RefusalReason::InboxFull, recipient.to_owned())
                }
                Err(_) => Admission::Refuse(pkid, RefusalReason::InboxFull),
            }
        }
        Packet::Ack {
            kind: PacketType::PubAck,
            pkid,
        } => {
            ledger.acked(owner, pkid);
            Admission::Forward
        }
        _ => Admission::Forward,
    }
}

/// Ledger bookkeeping for a broker packet relayed to the client: the broker's PUBACK commits the
/// reservation, a QoS 1 delivery to the owner is remembered until the owner's PUBACK.
fn count_from_broker(ledger: &Ledger, pending: &Pending, owner: &str, packet: &[u8]) {
    let Ok(parsed) = mqtt::parse(packet) else {
        return;
    };
    match parsed {
        Packet::Ack {
            kind: PacketType::PubAck,
            pkid,
        } => {
            let ticket = pending.lock().ok().and_then(|mut p| p.remove(&pkid));
            if let (Some(ticket), Ok(mut ledger)) = (ticket, ledger.lock()) {
                ledger.commit(ticket);
            }
        }
        Packet::Publish(p) => {
            if let (Some(pkid), Ok(mut ledger)) = (p.pkid, ledger.lock()) {
                ledger.delivered(owner, pkid, p.payload_len);
            }
        }
        _ => {}
    }
}

/// The connection ended: its reservations without a PUBACK are released (the sender sends
/// those PUBLISHes again).
fn release_pending(ledger: &Ledger, pending: &Pending) {
    let tickets = pending
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    if let Ok(mut ledger) = ledger.lock() {
        for (_, t) in tickets {
            ledger.release(t);
        }
    }
}

async fn serve(
    conn: u64,
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    mut state: watch::Receiver<State>,
    shared: Shared,
    pass: &Pass,
) -> Result<(), ConnError> {
    let Shared {
        tap,
        seen,
        ledger,
        revocations,
        departures,
        metrics,
    } = shared;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| ConnError::Timeout)??;
    let cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first());
    // A certificate a renewal replaced (crate::revocation): the connection ends here.
    if cert.is_some_and(|c| revocations.is_revoked_cert(c)) {
        return Err(ConnError::Revoked);
    }
    let user_id = cert
        .and_then(ca::common_name)
        .filter(|cn| is_user_id(cn))
        .ok_or(ConnError::NoIdentity)?;
    // Subscribed before the check: a departure from here on ends the relay below.
    let mut departed_rx = departures.subscribe();
    if departures.is_departed(&user_id) {
        return Err(ConnError::Departed);
    }
    let (mut client_rd, mut client_wr) = tokio::io::split(tls);
    let mut filter = ClientFilter::new(&user_id);
    let mut client_buf = BytesMut::with_capacity(1024);

    // The first packet must be an acceptable CONNECT.
    let first = tokio::time::timeout(
        CONNECT_TIMEOUT,
        read_packet(&mut client_rd, &mut client_buf, MAX_CLIENT_REMAINING),
    )
    .await
    .map_err(|_| ConnError::Timeout)??;
    let Some(first) = first else { return Ok(()) };
    let verdict = filter.check(&first);
    let accepted = matches!(verdict, Verdict::Connect { .. });
    record(
        &tap,
        conn,
        TapDirection::ClientToBroker {
            forwarded: accepted,
        },
        &first,
    );
    let (clean_session, keep_alive) = match verdict {
        Verdict::Connect {
            clean_session,
            keep_alive,
        } => (clean_session, keep_alive),
        Verdict::Disconnect { reason, reply } | Verdict::Refuse { reason, reply } => {
            metrics.mqtt_refused.inc();
            tracing::info!(conn, %reason, "refused CONNECT");
            write_and_close(&mut client_wr, reply.as_deref()).await;
            return Ok(());
        }
        Verdict::Forward => {
            write_and_close(&mut client_wr, None).await;
            return Ok(());
        }
    };
    let upstream = match &*state.borrow_and_update() {
        State::Running(up) => Some(up.clone()),
        State::Paused | State::Shutdown => None,
    };
    let Some(upstream) = upstream else {
        tracing::info!(conn, "internal broker unavailable");
        write_and_close(&mut client_wr, Some(&mqtt::connack(CONNACK_UNAVAILABLE))).await;
        return Ok(());
    };
    // Authenticated: from here the connection is no longer pending (never evicted for a newer
    // one); if it was evicted meanwhile, it ends.
    if !pass.established() {
        return Ok(());
    }
    // A broker that is down (an external Mosquitto stopped, a child being restarted) gets the
    // same answer as a paused one: "server unavailable", which the device retries.
    let (mut broker_rd, mut broker_wr) =
        match tokio::time::timeout(CONNECT_TIMEOUT, upstream.addr.connect()).await {
            Ok(Ok(halves)) => halves,
            Ok(Err(e)) => {
                tracing::warn!(conn, error = %e, "internal broker unreachable");
                write_and_close(&mut client_wr, Some(&mqtt::connack(CONNACK_UNAVAILABLE))).await;
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(conn, "internal broker did not answer");
                write_and_close(&mut client_wr, Some(&mqtt::connack(CONNACK_UNAVAILABLE))).await;
                return Ok(());
            }
        };
    broker_wr
        .write_all(&encode_connect(
            &user_id,
            keep_alive,
            clean_session,
            upstream.username(&user_id),
            upstream.secret.as_bytes(),
        ))
        .await?;
    // The publisher connection (BROKER-6): the client's PUBLISHes reach the broker under a random
    // client id with a clean session, so nothing the broker keeps (Mosquitto's persistence file
    // records each message's source client and username) or logs names the sender.
    let (mut pub_rd, mut pub_wr) = tokio::time::timeout(CONNECT_TIMEOUT, upstream.addr.connect())
        .await
        .map_err(|_| ConnError::Timeout)??;
    let pub_id = publisher_id()?;
    pub_wr
        .write_all(&encode_connect(
            &pub_id,
            keep_alive,
            true,
            upstream.username(&pub_id),
            upstream.secret.as_bytes(),
        ))
        .await?;
    if !clean_session {
        if let Ok(mut s) = seen.lock() {
            s.insert(user_id.clone());
        }
    }
    metrics.mqtt_sessions.inc();
    tracing::debug!(conn, "relaying");

    let (tx, mut rx) = mpsc::channel::<Bytes>(CLIENT_QUEUE);
    let mut writer = tokio::spawn(async move {
        while let Some(packet) = rx.recv().await {
            if client_wr.write_all(&packet).await.is_err() {
                return;
            }
        }
        write_and_close(&mut client_wr, None).await;
    });
    let broker_tx = tx.clone();
    let broker_tap = tap.clone();
    let pending = Pending::default();
    let broker_pending = pending.clone();
    let broker_ledger = ledger.clone();
    let owner = user_id.clone();
    let mut broker_reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        while let Some(packet) = read_packet(&mut broker_rd, &mut buf, MAX_BROKER_REMAINING).await?
        {
            record(&broker_tap, conn, TapDirection::BrokerToClient, &packet);
            count_from_broker(&broker_ledger, &broker_pending, &owner, &packet);
            if broker_tx.send(packet).await.is_err() {
                break;
            }
        }
        Ok::<(), ConnError>(())
    });
    // The publisher connection's answers: its CONNACK and PINGRESPs stay here, its PUBACKs go
    // to the client.
    let pub_tx = tx.clone();
    let pub_tap = tap.clone();
    let pub_pending = pending.clone();
    let pub_ledger = ledger.clone();
    let pub_owner = user_id.clone();
    let mut publisher_reader = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(1024);
        while let Some(packet) = read_packet(&mut pub_rd, &mut buf, MAX_BROKER_REMAINING).await? {
            match mqtt::parse(&packet) {
                Ok(Packet::Ack {
                    kind: PacketType::PubAck,
                    ..
                }) => {
                    record(&pub_tap, conn, TapDirection::BrokerToClient, &packet);
                    count_from_broker(&pub_ledger, &pub_pending, &pub_owner, &packet);
                    if pub_tx.send(packet).await.is_err() {
                        break;
                    }
                }
                Ok(Packet::ServerOnly(PacketType::ConnAck)) if packet.get(3) == Some(&0) => {}
                Ok(Packet::ServerOnly(PacketType::PingResp)) => {}
                // A refused CONNACK or anything else: the publisher is unusable; end the relay.
                _ => break,
            }
        }
        Ok::<(), ConnError>(())
    });
    let client_reader = async {
        loop {
            let Some(packet) =
                read_packet(&mut client_rd, &mut client_buf, MAX_CLIENT_REMAINING).await?
            else {
                return Ok::<(), ConnError>(());
            };
            let verdict = filter.check(&packet);
            let disconnect = is_disconnect(&packet);
            let forwarded = matches!(verdict, Verdict::Forward) && !disconnect;
            record(
                &tap,
                conn,
                TapDirection::ClientToBroker { forwarded },
                &packet,
            );
            match verdict {
                // The client's DISCONNECT ends the relay: closing the internal socket is the
                // only disconnect the broker sees (see `is_disconnect`).
                Verdict::Forward if disconnect => return Ok(()),
                Verdict::Forward => {
                    let count = |shared| {
                        count_from_client(&ledger, &departures, &pending, &user_id, &packet, shared)
                    };
                    let mut admission = count(upstream.engine.is_some());
                    if let (Admission::AskEngine(_, _, recipient), Some(engine)) =
                        (&admission, &upstream.engine)
                    {
                        ask_engine(&ledger, engine, recipient).await;
                        admission = count(false);
                    }
                    match admission {
                        Admission::Forward if is_publish(&packet) => {
                            pub_wr.write_all(&packet).await?;
                            metrics.mqtt_publishes.inc();
                        }
                        Admission::Forward => {
                            broker_wr.write_all(&packet).await?;
                            if is_pingreq(&packet) {
                                // Keeps the publisher connection alive at the client's rhythm.
                                pub_wr.write_all(&packet).await?;
                            }
                        }
                        Admission::Refuse(pkid, reason) | Admission::AskEngine(pkid, reason, _) => {
                            if reason == RefusalReason::NoSuchRecipient {
                                metrics.mqtt_no_recipient.inc();
                            } else {
                                metrics.mqtt_inbox_full.inc();
                            }
                            tracing::info!(conn, %reason, "refused a PUBLISH");
                            let notice = RefusalNotice { pkid, reason };
                            for reply in [notice.encode(), mqtt::puback(pkid)] {
                                let reply = Bytes::from(reply);
                                record(&tap, conn, TapDirection::FrontToClient, &reply);
                                if tx.send(reply).await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                    }
                }
                Verdict::Refuse { reason, reply } => {
                    metrics.mqtt_refused.inc();
                    tracing::info!(conn, %reason, "refused packet");
                    if let Some(reply) = reply {
                        if tx.send(Bytes::from(reply)).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Verdict::Disconnect { reason, reply } => {
                    metrics.mqtt_refused.inc();
                    tracing::info!(conn, %reason, "refused packet; closing the connection");
                    if let Some(reply) = reply {
                        let _ = tx.send(Bytes::from(reply)).await;
                    }
                    return Ok(());
                }
                Verdict::Connect { .. } => return Ok(()),
            }
        }
    };

    let result = tokio::select! {
        r = client_reader => r,
        r = &mut broker_reader => r.unwrap_or(Ok(())),
        r = &mut publisher_reader => r.unwrap_or(Ok(())),
        _ = state.changed() => {
            tracing::debug!(conn, "upstream changed; closing");
            Ok(())
        }
        _ = departure::departed(&mut departed_rx, &departures, &user_id) => {
            tracing::debug!(conn, "the account was deleted; closing");
            Ok(())
        }
    };
    broker_reader.abort();
    publisher_reader.abort();
    release_pending(&ledger, &pending);
    drop(broker_wr);
    drop(pub_wr);
    drop(tx);
    if tokio::time::timeout(FLUSH_TIMEOUT, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    result
}
