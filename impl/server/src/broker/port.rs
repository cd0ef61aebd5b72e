//! Loopback ports picked now for a server that binds them later (the embedded broker, a
//! Mosquitto child process, a `sotto serve` started by a test).
//!
//! Picking a port by binding port 0 and closing the socket leaves a window in which any other
//! socket on the machine may be given the same port (another test's listener, or the local end
//! of an outgoing connection); the late server then fails with "address in use", or a readiness
//! probe talks to the wrong process. A [`PortReservation`] keeps the port bound, with
//! `SO_REUSEADDR` and without listening, for as long as it lives: the kernel hands that port to
//! no other bind to port 0 and to no outgoing connection, while a server that sets
//! `SO_REUSEADDR` itself (tokio and mio listeners, Mosquitto) can still bind and listen
//! on it. Only one listener at a time: a second server on the same port is refused as usual.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpSocket;

/// A port held (bound, not listening) until dropped; see the module documentation.
#[derive(Debug)]
pub struct PortReservation {
    _socket: TcpSocket,
    addr: SocketAddr,
}

impl PortReservation {
    /// Reserves `addr`; port 0 picks a free port.
    pub fn new(addr: SocketAddr) -> io::Result<PortReservation> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        let addr = socket.local_addr()?;
        Ok(PortReservation {
            _socket: socket,
            addr,
        })
    }

    /// A free port on `127.0.0.1`.
    pub fn loopback() -> io::Result<PortReservation> {
        PortReservation::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// The reserved address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reserved_port_is_given_to_no_one_else_but_a_listener_can_bind_it() {
        let reserved = PortReservation::loopback().expect("reserve");
        // Other port-0 binds never get it (bounded loop, no timing).
        for _ in 0..2_000 {
            let other = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            assert_ne!(other.local_addr().expect("addr"), reserved.addr());
        }
        // A server binds and listens on it (tokio sets SO_REUSEADDR), and is reachable there.
        let listener = tokio::net::TcpListener::bind(reserved.addr())
            .await
            .expect("listener on the reserved port");
        let client = tokio::net::TcpStream::connect(reserved.addr());
        let (accepted, connected) = tokio::join!(listener.accept(), client);
        accepted.expect("accept");
        connected.expect("connect");
        // A second listener is refused while the first listens.
        let second = tokio::net::TcpListener::bind(reserved.addr()).await;
        assert_eq!(
            second.expect_err("second listener").kind(),
            io::ErrorKind::AddrInUse
        );
    }
}
