//! The embedded broker: Sotto's own in-process MQTT 3.1.1 broker on an internal loopback port,
//! reachable only through the front. Its state is the I/O-free [`engine::Engine`]; this module
//! only moves bytes between it and the sockets, and times connections out.
//!
//! It replaced rumqttd 0.20, which kept every acknowledged envelope in its in-memory per-topic
//! commit log until the log rotated (Req6 false) and overwrote unread envelopes once the log was
//! full (silent loss). Here an envelope is held exactly until its recipient's PUBACK, then zeroized
//! and freed; a full inbox refuses (see [`engine`]).
//!
//! It listens in plain TCP on `127.0.0.1:<free port>` and accepts only CONNECTs carrying a
//! per-start random secret as password (the front's, see [`sotto_wire::mqtt::encode_connect`]).
//! Inboxes live in memory: they are lost when the process (or this broker) stops; a restart is a
//! new broker with an empty engine on a new port.

pub mod engine;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::upstream::{InternalAddr, Upstream};
use super::{BrokerError, InboxLimits, random_secret};
use engine::{ConnId, Engine, Holdings, Limits, Out};
use sotto_wire::filter::MAX_CLIENT_REMAINING;
use sotto_wire::mqtt;

/// Largest packet the engine reads (above the front's limit; the front enforces LIM-1).
const MAX_REMAINING: usize = 4 * MAX_CLIENT_REMAINING;
/// Time a connection gets to send its CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the writer gets to flush a last answer before the close.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Deliveries awaiting a PUBACK per connection. A client commits what it was delivered in one
/// transaction before it acknowledges (RX-4), so this bounds its bursts: with 100, a drain of
/// 10,000 envelopes through the full client ran at about 7,400 msg/s, with 400 at about 21,700
/// (one run each, 2026-12-03).
pub const WINDOW: usize = 400;

/// A packet or a close for one connection's writer.
enum Cmd {
    Packet(Vec<u8>),
    Close,
}

type Writers = Arc<Mutex<BTreeMap<ConnId, mpsc::UnboundedSender<Cmd>>>>;

/// A running embedded broker.
pub struct EmbeddedBroker {
    upstream: Upstream,
    engine: Arc<Mutex<Engine>>,
    writers: Writers,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("addr", &self.upstream.addr)
            .finish_non_exhaustive()
    }
}

/// The engine's limits for the service's inbox limits: twice those the front's ledger applies,
/// a fuse that only a ledger out of step with the engine could reach.
pub fn engine_limits(inbox: InboxLimits) -> Limits {
    Limits {
        max_envelopes: inbox.max_envelopes.saturating_mul(2),
        max_bytes: inbox.max_bytes.saturating_mul(2),
        window: WINDOW,
    }
}

impl EmbeddedBroker {
    /// Starts the broker on a free `127.0.0.1` port.
    pub async fn start(limits: InboxLimits) -> Result<EmbeddedBroker, BrokerError> {
        let secret: Arc<str> = random_secret()?.into();
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let engine = Arc::new(Mutex::new(Engine::new(
            secret.as_bytes(),
            engine_limits(limits),
        )));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(expire_sessions(engine.clone(), stop_rx.clone()));
        let writers = Writers::default();
        tokio::spawn(accept_loop(
            listener,
            engine.clone(),
            writers.clone(),
            stop_rx,
        ));
        tracing::info!(%addr, "embedded broker ready");
        Ok(EmbeddedBroker {
            upstream: Upstream {
                addr: InternalAddr::Tcp(addr),
                secret,
                user: None,
                engine: None,
            },
            engine,
            writers,
            stop,
        })
    }

    /// Drops `user`'s session and queue now and closes its connection ([`Engine::forget`]; an
    /// account deleted, `crate::departure`). Returns how many envelopes went.
    pub fn forget(&self, user: &str) -> usize {
        forget(&self.engine, &self.writers, user)
    }

    /// What [`EmbeddedBroker::forget`] does, as a handle that outlives a borrow of the broker
    /// (the purge of `crate::departure::Departures`).
    pub(crate) fn purge(&self) -> crate::departure::Purge {
        let (engine, writers) = (self.engine.clone(), self.writers.clone());
        Arc::new(move |user: String| {
            let gone = forget(&engine, &writers, &user);
            Box::pin(async move {
                tracing::debug!(envelopes = gone, "a departed inbox dropped");
            })
        })
    }

    /// Where the front connects, and with which secret.
    pub fn upstream(&self) -> Upstream {
        self.upstream.clone()
    }

    /// What the broker holds now (envelopes queued or awaiting their PUBACK).
    pub fn holdings(&self) -> Holdings {
        self.engine.lock().map(|e| e.holdings()).unwrap_or_default()
    }

    /// A copy of every envelope the broker holds (the broker-side Req6 check).
    pub fn held_envelopes(&self) -> Vec<Vec<u8>> {
        self.engine
            .lock()
            .map(|e| e.held_envelopes())
            .unwrap_or_default()
    }

    /// Stops accepting, closes every connection and forgets every inbox.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        if let Ok(mut e) = self.engine.lock() {
            let limits = e.limits();
            *e = Engine::new(&[], limits);
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Once a day until the broker stops: [`Engine::expire_idle`] with
/// [`super::SESSION_EXPIRY_DAYS`], logging only how many sessions went.
async fn expire_sessions(engine: Arc<Mutex<Engine>>, mut stop: watch::Receiver<bool>) {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + DAY, DAY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let gone = engine
                    .lock()
                    .map(|mut e| e.expire_idle(super::SESSION_EXPIRY_DAYS))
                    .unwrap_or(0);
                if gone > 0 {
                    tracing::info!(sessions = gone, "expired idle sessions");
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

fn forget(engine: &Mutex<Engine>, writers: &Writers, user: &str) -> usize {
    let mut out = Vec::new();
    let gone = engine
        .lock()
        .map(|mut e| e.forget(user, &mut out))
        .unwrap_or(0);
    dispatch(writers, out);
    gone
}

async fn accept_loop(
    listener: TcpListener,
    engine: Arc<Mutex<Engine>>,
    writers: Writers,
    mut stop: watch::Receiver<bool>,
) {
    let mut next: ConnId = 1;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let conn = next;
                next += 1;
                let engine = engine.clone();
                let writers = writers.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(conn, tcp, &engine, &writers, stop).await {
                        tracing::debug!(conn, error = %e, "internal connection ended");
                    }
                    if let Ok(mut w) = writers.lock() {
                        w.remove(&conn);
                    }
                    if let Ok(mut e) = engine.lock() {
                        e.closed(conn);
                    }
                });
            }
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
}

/// Why an internal connection ended.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("framing: {0}")]
    Frame(#[from] mqtt::ParseError),
    #[error("{0}")]
    Engine(#[from] engine::EngineError),
    #[error("keep-alive or CONNECT timeout")]
    Timeout,
}

/// Hands the engine's output to the connections' writers.
fn dispatch(writers: &Writers, out: Vec<Out>) {
    let Ok(w) = writers.lock() else { return };
    for o in out {
        let (conn, cmd) = match o {
            Out::Send(c, p) => (c, Cmd::Packet(p)),
            Out::Close(c) => (c, Cmd::Close),
        };
        if let Some(tx) = w.get(&conn) {
            let _ = tx.send(cmd);
        }
    }
}

async fn serve(
    conn: ConnId,
    tcp: TcpStream,
    engine: &Mutex<Engine>,
    writers: &Writers,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ConnError> {
    let _ = tcp.set_nodelay(true);
    let (mut rd, mut wr) = tcp.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Cmd>();
    if let Ok(mut w) = writers.lock() {
        w.insert(conn, tx);
    }
    let writer = async move {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Cmd::Packet(p) => wr.write_all(&p).await?,
                Cmd::Close => break,
            }
        }
        let _ = wr.shutdown().await;
        Ok::<(), std::io::Error>(())
    };
    let reader = async {
        let mut buf = BytesMut::with_capacity(4096);
        let mut idle = CONNECT_TIMEOUT;
        loop {
            let packet = tokio::time::timeout(idle, read_packet(&mut rd, &mut buf))
                .await
                .map_err(|_| ConnError::Timeout)??;
            let Some(packet) = packet else { return Ok(()) };
            let mut out = Vec::new();
            let result = match engine.lock() {
                Ok(mut e) => {
                    let was_connected = e.is_connected(conn);
                    let r = e.packet(conn, &packet, &mut out);
                    if !was_connected && r.is_ok() {
                        // MQTT-3.1.2-24: one and a half keep-alives without a packet end it.
                        if let Ok(mqtt::Packet::Connect(c)) = mqtt::parse(&packet) {
                            idle = keep_alive_timeout(c.keep_alive);
                        }
                    }
                    r
                }
                Err(_) => return Ok(()),
            };
            dispatch(writers, out);
            result?;
        }
    };
    tokio::pin!(writer);
    tokio::select! {
        r = reader => {
            // Let the writer flush what the engine answered last (e.g. a CONNACK refusal).
            if let Ok(w) = writers.lock() {
                if let Some(tx) = w.get(&conn) {
                    let _ = tx.send(Cmd::Close);
                }
            }
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, &mut writer).await;
            r
        }
        w = &mut writer => w.map_err(ConnError::from),
        _ = stop.changed() => Ok(()),
    }
}

fn keep_alive_timeout(keep_alive: u16) -> Duration {
    if keep_alive == 0 {
        Duration::from_secs(u64::from(u16::MAX))
    } else {
        Duration::from_millis(u64::from(keep_alive) * 1500)
    }
}

/// Reads one whole packet; `None` on a clean EOF.
async fn read_packet(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Option<Vec<u8>>, ConnError> {
    loop {
        if let Some(len) = mqtt::packet_len(buf, MAX_REMAINING)? {
            if buf.len() >= len {
                let packet = buf.split_to(len).to_vec();
                return Ok(Some(packet));
            }
            buf.reserve(len - buf.len());
        }
        if rd.read_buf(buf).await? == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(ConnError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            };
        }
    }
}
