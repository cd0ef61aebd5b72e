//! The internal broker as the front sees it: where it listens ([`InternalAddr`]: a loopback TCP
//! port for the embedded broker, a Unix socket in a private directory for Mosquitto), the secret of
//! the front's CONNECT ([`Upstream`]), and the two halves of one connection to it
//! ([`InternalAddr::connect`]). The front and a [`super::Hop`] reach the broker only through this.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
}

impl std::fmt::Display for InternalAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InternalAddr::Tcp(addr) => write!(f, "{addr}"),
            InternalAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl InternalAddr {
    /// Opens one connection (TCP with `TCP_NODELAY`), split into owned halves.
    pub async fn connect(&self) -> io::Result<(InternalRead, InternalWrite)> {
        match self {
            InternalAddr::Tcp(addr) => {
                let tcp = TcpStream::connect(addr).await?;
                let _ = tcp.set_nodelay(true);
                let (rd, wr) = tcp.into_split();
                Ok((InternalRead::Tcp(rd), InternalWrite::Tcp(wr)))
            }
            InternalAddr::Unix(path) => {
                let (rd, wr) = UnixStream::connect(path).await?.into_split();
                Ok((InternalRead::Unix(rd), InternalWrite::Unix(wr)))
            }
        }
    }
}

/// The internal broker the front relays to.
#[derive(Clone)]
pub struct Upstream {
    /// Where it listens.
    pub addr: InternalAddr,
    /// The password of the front's CONNECT (never logged).
    pub secret: Arc<str>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("addr", &self.addr)
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
