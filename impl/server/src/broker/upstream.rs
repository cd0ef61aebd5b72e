//! The internal broker as the front sees it: where it listens ([`InternalAddr`]: a loopback TCP
//! port for the embedded broker, a Unix socket in a private directory for Mosquitto, the MQTT ports
//! of a cluster's nodes for NATS), the credentials of the front's CONNECT ([`Upstream`]), and the
//! two halves of one connection to it ([`InternalAddr::connect`], which fails over between a
//! cluster's nodes). The front and a [`super::Hop`] reach the broker only through this.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream, tcp, unix};

/// Where the internal broker listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InternalAddr {
    /// A loopback TCP port (the embedded broker, which refuses every CONNECT without the
    /// front's secret; or a hop in front of a broker).
    Tcp(SocketAddr),
    /// A Unix socket (Mosquitto), inside a directory only the service's users can enter.
    Unix(PathBuf),
    /// The MQTT ports of a clustered broker's nodes (NATS): each connection goes to the next
    /// node in turn and, if that node does not answer, to the others.
    Nodes(Arc<[SocketAddr]>),
}

/// How long one node of [`InternalAddr::Nodes`] may take to accept a TCP connection before the
/// next is tried.
pub const NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the next connection to a cluster starts (spreads the connections over the nodes).
static NEXT_NODE: AtomicUsize = AtomicUsize::new(0);

impl std::fmt::Display for InternalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InternalAddr::Tcp(addr) => write!(f, "{addr}"),
            InternalAddr::Unix(path) => write!(f, "unix:{}", path.display()),
            InternalAddr::Nodes(nodes) => {
                let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                write!(f, "nodes:{}", nodes.join(","))
            }
        }
    }
}

impl InternalAddr {
    /// Opens one connection (TCP with `TCP_NODELAY`), split into owned halves.
    pub async fn connect(&self) -> io::Result<(InternalRead, InternalWrite)> {
        match self {
            InternalAddr::Tcp(addr) => tcp_halves(TcpStream::connect(addr).await?),
            InternalAddr::Unix(path) => {
                let (rd, wr) = UnixStream::connect(path).await?.into_split();
                Ok((InternalRead::Unix(rd), InternalWrite::Unix(wr)))
            }
            InternalAddr::Nodes(nodes) => {
                let start = NEXT_NODE.fetch_add(1, Ordering::Relaxed);
                let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no cluster nodes");
                for k in 0..nodes.len() {
                    let node = nodes[(start + k) % nodes.len()];
                    match tokio::time::timeout(NODE_CONNECT_TIMEOUT, TcpStream::connect(node)).await
                    {
                        Ok(Ok(tcp)) => return tcp_halves(tcp),
                        Ok(Err(e)) => last = e,
                        Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, node.to_string()),
                    }
                }
                Err(last)
            }
        }
    }
}

fn tcp_halves(tcp: TcpStream) -> io::Result<(InternalRead, InternalWrite)> {
    let _ = tcp.set_nodelay(true);
    let (rd, wr) = tcp.into_split();
    Ok((InternalRead::Tcp(rd), InternalWrite::Tcp(wr)))
}

/// The internal broker the front relays to.
#[derive(Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: InternalAddr,
    /// The password of the front's CONNECT (never logged).
    pub secret: Arc<str>,
    /// The username of the front's CONNECTs: `None` for the client id, which is the user id
    /// or a publisher id (Mosquitto runs with `use_username_as_clientid`; the embedded broker
    /// checks only the secret); one fixed user for an engine that gives the fronts one account
    /// (NATS).
    pub user: Option<Arc<str>>,
    /// The engine several fronts share, if any (NATS): asked what it holds for an inbox before
    /// this front's ledger refuses a PUBLISH (BROKER-5 across fronts, `super::ledger`).
    pub engine: Option<super::nats::NatsCluster>,
}

impl Upstream {
    /// The username of a CONNECT with `client_id` (see [`Upstream::user`]).
    pub fn username<'a>(&'a self, client_id: &'a str) -> &'a str {
        self.user.as_deref().unwrap_or(client_id)
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// The reading half of a connection to the internal broker.
#[derive(Debug)]
pub enum InternalRead {
    /// Over TCP.
    Tcp(tcp::OwnedReadHalf),
    /// Over a Unix socket.
    Unix(unix::OwnedReadHalf),
}

/// The writing half of a connection to the internal broker (dropping it shuts the write side).
#[derive(Debug)]
pub enum InternalWrite {
    /// Over TCP.
    Tcp(tcp::OwnedWriteHalf),
    /// Over a Unix socket.
    Unix(unix::OwnedWriteHalf),
}

impl AsyncRead for InternalRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalRead::Tcp(rd) => Pin::new(rd).poll_read(cx, buf),
            InternalRead::Unix(rd) => Pin::new(rd).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for InternalWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InternalWrite::Tcp(wr) => Pin::new(wr).poll_write(cx, buf),
            InternalWrite::Unix(wr) => Pin::new(wr).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            InternalWrite::Tcp(wr) => Pin::new(wr).poll_write_vectored(cx, bufs),
            InternalWrite::Unix(wr) => Pin::new(wr).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalWrite::Tcp(wr) => Pin::new(wr).poll_flush(cx),
            InternalWrite::Unix(wr) => Pin::new(wr).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            InternalWrite::Tcp(wr) => Pin::new(wr).poll_shutdown(cx),
            InternalWrite::Unix(wr) => Pin::new(wr).poll_shutdown(cx),
        }
    }
}
