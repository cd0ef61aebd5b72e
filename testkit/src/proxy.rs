//! A loopback TCP proxy that cuts connections on command, for the fault tests.
//!
//! ```text
//!  device ──TCP──> proxy (127.0.0.1:<port>) ──TCP──> broker
//!                  forwards the bytes as they are (TLS passes through untouched); when armed,
//!                  the next chunk of at least `min` bytes going `dir` is cut (see [`Cut`]), then
//!                  both sides of that connection are closed.
//! ```
//!
//! A "chunk" is what one `read` returned. On loopback a TLS record written at once arrives at
//! once, so a chunk of a few KB is the record of one large MQTT packet (a PUBLISH with a long
//! text), while handshakes, acks and keep-alives stay below the threshold the tests use.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Which way the bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Device to broker.
    Up,
    /// Broker to device.
    Down,
}

/// What to do with the chunk that triggers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Forward the first half of the chunk only, then close both sides: the peer holds a
    /// truncated TLS record.
    MidChunk {
        /// The direction watched.
        dir: Dir,
        /// The smallest chunk that triggers.
        min: usize,
    },
    /// Forward the whole chunk, then let nothing else pass: for a moment the peer's answers (such
    /// as a PUBACK) are read and dropped, so the peer surely reads the whole chunk, then both
    /// sides close.
    AfterChunk {
        /// The direction watched.
        dir: Dir,
        /// The smallest chunk that triggers.
        min: usize,
    },
}

impl Cut {
    fn matches(&self, dir: Dir, len: usize) -> bool {
        match *self {
            Cut::MidChunk { dir: d, min } | Cut::AfterChunk { dir: d, min } => {
                d == dir && len >= min
            }
        }
    }
}

/// An armed cut and who to tell when it fired (the chunk's length).
type Armed = Option<(Cut, oneshot::Sender<usize>)>;

/// The running proxy. Dropping it stops accepting; relayed connections end with their peers.
pub struct Proxy {
    addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    armed: Arc<Mutex<Armed>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and relays every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("proxy listener");
        let addr = listener.local_addr().expect("proxy address");
        let armed: Arc<Mutex<Armed>> = Arc::new(Mutex::new(None));
        let shared = armed.clone();
        let target = Arc::new(Mutex::new(upstream));
        let current = target.clone();
        let task = tokio::spawn(async move {
            while let Ok((device, _)) = listener.accept().await {
                let shared = shared.clone();
                let upstream = *current.lock().expect("proxy lock");
                tokio::spawn(async move {
                    // The broker is down: the device sees its connection close.
                    if let Ok(broker) = TcpStream::connect(upstream).await {
                        relay(device, broker, shared).await;
                    }
                });
            }
        });
        Proxy {
            addr,
            upstream: target,
            armed,
            task,
        }
    }

    /// Relays connections accepted from now on to `upstream` (what a TCP load balancer in front
    /// of several fronts does when one goes away); relayed ones stay where they are.
    pub fn retarget(&self, upstream: SocketAddr) {
        *self.upstream.lock().expect("proxy lock") = upstream;
    }

    /// Where devices connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Arms `cut` (once; replaces an armed one). The receiver gets the length of the chunk that
    /// triggered it.
    pub fn arm(&self, cut: Cut) -> oneshot::Receiver<usize> {
        let (tx, rx) = oneshot::channel();
        *self.armed.lock().expect("proxy lock") = Some((cut, tx));
        rx
    }

    /// Disarms a cut that did not fire.
    pub fn disarm(&self) {
        *self.armed.lock().expect("proxy lock") = None;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays one connection until either side closes or a cut fires; then both sockets close.
async fn relay(device: TcpStream, broker: TcpStream, armed: Arc<Mutex<Armed>>) {
    let _ = device.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let (device_r, device_w) = device.into_split();
    let (broker_r, broker_w) = broker.into_split();
    // Whichever direction ends first ends the other: dropping its halves closes both sockets.
    let severed = AtomicBool::new(false);
    tokio::select! {
        _ = pump(Dir::Up, device_r, broker_w, &armed, &severed) => {}
        _ = pump(Dir::Down, broker_r, device_w, &armed, &severed) => {}
    }
}

/// How long an `AfterChunk` cut keeps both sockets open, dropping what arrives, before closing
/// them: closing a socket with unread data in it resets the connection, and a reset can discard
/// the chunk before the peer read it.
const AFTER_CHUNK_GRACE: Duration = Duration::from_millis(200);

/// Copies one direction chunk by chunk, applying an armed cut that matches.
async fn pump(
    dir: Dir,
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    armed: &Mutex<Armed>,
    severed: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let fired = {
            let mut slot = armed.lock().expect("proxy lock");
            match slot.as_ref() {
                Some((cut, _)) if cut.matches(dir, n) => slot.take(),
                _ => None,
            }
        };
        match fired {
            // An `AfterChunk` cut fired the other way: read and drop.
            None if severed.load(Ordering::SeqCst) => {}
            None => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Some((cut, tell)) => {
                let keep = match cut {
                    Cut::MidChunk { .. } => n / 2,
                    Cut::AfterChunk { .. } => n,
                };
                if let Cut::AfterChunk { .. } = cut {
                    severed.store(true, Ordering::SeqCst);
                }
                let _ = to.write_all(&buf[..keep]).await;
                let _ = to.flush().await;
                let _ = tell.send(n);
                if let Cut::AfterChunk { .. } = cut {
                    tokio::time::sleep(AFTER_CHUNK_GRACE).await;
                }
                return;
            }
        }
    }
}
