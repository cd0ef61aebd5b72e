//! One MQTT connection: rumqttc over mutual TLS (TLS-1), client id = user id (BROKER-1), a
//! persistent session (BROKER-4), manual acknowledgements (RX-4).
//!
//! Each connection attempt gets a fresh rumqttc `EventLoop`, polled on its own task and stopped at
//! its first error: rumqttc's own retransmission state never outlives a connection, so the outbox
//! in the store is the only source of resends (RX-6), and the mapping of packet ids to outbox rows
//! (the online loop's machine) stays simple.

use std::collections::VecDeque;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, QoS,
    TlsConfiguration, Transport,
};
use sotto_core::UserId;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::account::Credentials;
use crate::config::Config;
use crate::error::{BrokerRefusal, Cause, ClientError, NetworkFailure, Result, Service};

/// Capacity of rumqttc's request channel (publishes, acks, subscribe, disconnect).
const REQUEST_CAPACITY: usize = 1024;

/// Splits `host:port` (IPv6 in brackets).
pub(crate) fn split_address(addr: &str) -> Result<(String, u16)> {
    const BAD: ClientError = ClientError::Invalid("the broker address must be host:port");
    let (host, port) = addr.rsplit_once(':').ok_or(BAD)?;
    let port: u16 = port.parse().map_err(|_| BAD)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(BAD);
    }
    Ok((host.to_owned(), port))
}

/// The rumqttc options for this device.
pub(crate) fn options(user: &UserId, creds: &Credentials, config: &Config) -> Result<MqttOptions> {
    let (host, port) = split_address(&creds.broker)?;
    let identity = Some((creds.cert_pem.as_str(), creds.key_pem.as_str()));
    // A name override: connect to its address, verify the certificate for the name.
    let (host, tls) = match config.resolve.lookup(&host) {
        Some(ip) => (
            ip.to_string(),
            crate::tls::client_config_verifying(&creds.ca_pem, identity, &host)?,
        ),
        None => (host, crate::tls::client_config(&creds.ca_pem, identity)?),
    };
    let mut opts = MqttOptions::new(user.to_text(), host, port);
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    opts.set_clean_session(false);
    opts.set_manual_acks(true);
    opts.set_keep_alive(config.keep_alive);
    opts.set_max_packet_size(config.max_packet, config.max_packet);
    // rumqttc stops reading requests (acks included) when its own window is full: keep it
    // above ours so that acknowledgements never wait behind publishes.
    opts.set_inflight(u16::try_from(4 * config.max_inflight).unwrap_or(u16::MAX));
    Ok(opts)
}

/// A live connection: the rumqttc client, its events, and the acknowledgements it has not
/// taken yet. What the loop knows of the connection is the machine's.
pub(crate) struct Connection {
    pub(crate) client: AsyncClient,
    pub(crate) events: mpsc::UnboundedReceiver<Result<Event, ConnectionError>>,
    task: JoinHandle<()>,
    /// The broker still had the inbox session at CONNACK.
    pub(crate) session_present: bool,
    /// Acknowledgements not yet accepted by rumqttc's request channel.
    pub(crate) acks: VecDeque<rumqttc::Publish>,
}

impl Connection {
    /// Starts the event loop of `opts` on its own task.
    pub(crate) fn start(opts: MqttOptions) -> Connection {
        let (client, eventloop) = AsyncClient::new(opts, REQUEST_CAPACITY);
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(eventloop, tx));
        Connection {
            client,
            events,
            task,
            session_present: false,
            acks: VecDeque::new(),
        }
    }

    /// Hands queued acknowledgements to rumqttc (RX-4: only ever after the commit).
    pub(crate) fn flush_acks(&mut self) {
        while let Some(p) = self.acks.front() {
            if self.client.try_ack(p).is_err() {
                break;
            }
            self.acks.pop_front();
        }
    }

    /// The error the event loop stopped with, if it has stopped and sent one: a request the
    /// engine made in answer to an earlier event (the SUBSCRIBE after a CONNACK) fails with
    /// rumqttc's "Failed to send mqtt requests to eventloop" once the loop has ended, while the
    /// reason (the broker closed the connection, ...) waits in the channel behind the events
    /// still queued. Those events are dropped: the connection is over and nothing of them was
    /// acknowledged.
    pub(crate) fn stop_reason(&mut self) -> Option<(ClientError, bool)> {
        while let Ok(ev) = self.events.try_recv() {
            if let Err(e) = ev {
                return Some(classify(e));
            }
        }
        None
    }

    /// Asks for a graceful DISCONNECT; `false` if rumqttc's request channel is full.
    pub(crate) fn disconnect(&mut self) -> bool {
        self.client.try_disconnect().is_ok()
    }

    /// Publishes an envelope to `to`'s inbox at QoS 1 (ID-5, BROKER-3). `false` if rumqttc's
    /// request channel is full.
    pub(crate) fn publish(&mut self, to: &UserId, envelope: Vec<u8>) -> bool {
        self.client
            .try_publish(to.inbox_topic(), QoS::AtLeastOnce, false, envelope)
            .is_ok()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the event loop until its first error (or a sent DISCONNECT), forwarding every event.
async fn drive(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<Result<Event, ConnectionError>>,
) {
    loop {
        let event = eventloop.poll().await;
        let stop = matches!(
            event,
            Err(_) | Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect))
        );
        if tx.send(event).is_err() || stop {
            break;
        }
    }
}

/// A connection error as a client error; `true` if retrying cannot help (the broker refused).
pub(crate) fn classify(e: ConnectionError) -> (ClientError, bool) {
    let failure = match &e {
        ConnectionError::ConnectionRefused(code) => {
            let refusal = match code {
                ConnectReturnCode::RefusedProtocolVersion => BrokerRefusal::UnacceptableProtocol,
                ConnectReturnCode::BadClientId => BrokerRefusal::IdentifierRejected,
                ConnectReturnCode::ServiceUnavailable => BrokerRefusal::ServerUnavailable,
                ConnectReturnCode::BadUserNamePassword => BrokerRefusal::BadCredentials,
                ConnectReturnCode::NotAuthorized => BrokerRefusal::NotAuthorized,
                ConnectReturnCode::Success => BrokerRefusal::Other,
            };
            return (ClientError::BrokerRefused(refusal), true);
        }
        ConnectionError::Tls(_) => NetworkFailure::Tls,
        ConnectionError::NetworkTimeout | ConnectionError::FlushTimeout => NetworkFailure::Timeout,
        ConnectionError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::AddrNotAvailable
            ) =>
        {
            NetworkFailure::Connect
        }
        _ => NetworkFailure::Closed,
    };
    let cause = Cause::new(e);
    let failure = if cause.is_wrong_name() {
        NetworkFailure::ServerName
    } else if cause.is_tls() {
        NetworkFailure::Tls
    } else {
        failure
    };
    (ClientError::network(Service::Broker, failure, cause), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_split() {
        assert_eq!(
            split_address("127.0.0.1:8883").ok(),
            Some(("127.0.0.1".to_owned(), 8883))
        );
        assert_eq!(split_address("[::1]:1").ok(), Some(("::1".to_owned(), 1)));
        assert_eq!(
            split_address("localhost:7883").ok(),
            Some(("localhost".to_owned(), 7883))
        );
        for bad in ["", "host", "host:", ":1", "host:0", "host:70000", "host:x"] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
    }
}
