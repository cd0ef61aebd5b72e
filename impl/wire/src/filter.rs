//! The rules of the message service, BROKER-1..3, as an I/O-free filter: given the user id of a
//! connection's client certificate (TLS-1), it decides for each whole client packet what reaches
//! the broker. The front (`sotto-server`) feeds packets in and acts on the [`Verdict`]; the fuzz
//! target `filter` drives it with arbitrary bytes.
//!
//! ```text
//!  client bytes --packet_len--> one packet --ClientFilter::check--> Verdict
//!     Forward                  relay the packet to the broker as it is
//!     Connect{..}              CONNECT accepted: the front sends its own canonical CONNECT
//!     Refuse{reason, reply}    do not forward; send `reply` (e.g. a SUBACK 0x80) to the client
//!     Disconnect{reason, reply} send `reply` if any (e.g. a CONNACK refusal), then close
//! ```
//!
//! Rules, given the user id of the client certificate (TLS-1):
//! - CONNECT: protocol "MQTT" level 4 only; client id == user id (BROKER-1); no will; keep-alive in
//!   [`KEEP_ALIVE_MIN`]..=[`KEEP_ALIVE_MAX`]; username/password are ignored (the front replaces them).
//! - SUBSCRIBE: only the own inbox `i/<user id>` (ID-5) at QoS <= 1; otherwise the whole SUBSCRIBE
//!   is answered by the front with a SUBACK failure (0x80) for every filter (BROKER-2).
//! - PUBLISH: only to `i/<16-char user id>`, no retain, QoS 1 (an inbox is delivered at least
//!   once, BROKER-4), payload <= LIM-1 bytes (BROKER-3). MQTT 3.1.1 has no negative PUBACK, so a
//!   refused PUBLISH closes the connection. (A full inbox is not the filter's business: the
//!   front's inbox ledger answers it with a refusal notice, BROKER-5.)
//! - Packets larger than [`MAX_CLIENT_REMAINING`] are refused from their fixed header, before
//!   they are buffered. QoS 2 flows and server-to-client packet types close the connection.

pub use sotto_core::limits::MAX_ENVELOPE;

use crate::mqtt::{
    CONNACK_BAD_CLIENT_ID, CONNACK_BAD_PROTOCOL, CONNACK_NOT_AUTHORIZED, Packet, PacketType,
    ParseError, connack, packet_len, parse, suback_failure,
};

/// ID-1: length of a user id in its base32 form.
pub const USER_ID_LEN: usize = 16;
/// ID-5: prefix of an inbox topic.
pub const INBOX_PREFIX: &str = "i/";
/// Largest remaining length accepted from a client: a PUBLISH with a LIM-1 payload to an inbox
/// topic needs 2 + 18 + 2 + 8192 = 8214 bytes; the margin covers CONNECT and SUBSCRIBE packets.
pub const MAX_CLIENT_REMAINING: usize = MAX_ENVELOPE + 256;
/// Smallest keep-alive accepted, seconds (0 would disable liveness checks).
pub const KEEP_ALIVE_MIN: u16 = 5;
/// Largest keep-alive accepted, seconds.
pub const KEEP_ALIVE_MAX: u16 = 1200;

/// Why a client packet was refused. `Display` names the rule only: no topics, ids or payloads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// Not a valid MQTT 3.1.1 packet.
    #[error("malformed packet: {0}")]
    Malformed(#[from] ParseError),
    /// Protocol other than MQTT 3.1.1.
    #[error("unsupported protocol level {0}")]
    ProtocolLevel(u8),
    /// BROKER-1: the client id is not the certificate's user id.
    #[error("client id does not match the certificate (BROKER-1)")]
    ClientIdMismatch,
    /// Will messages are not allowed.
    #[error("will message not allowed")]
    Will,
    /// Keep-alive outside the accepted range.
    #[error("keep-alive {0} s outside {KEEP_ALIVE_MIN}..={KEEP_ALIVE_MAX}")]
    KeepAlive(u16),
    /// A second CONNECT.
    #[error("duplicate CONNECT")]
    DuplicateConnect,
    /// Another packet before CONNECT.
    #[error("packet before CONNECT")]
    NotConnected,
    /// BROKER-2: a subscription to something other than the own inbox, or above QoS 1.
    #[error("subscription outside the own inbox or above QoS 1 (BROKER-2)")]
    Subscribe,
    /// BROKER-3: publish to a topic that is not an inbox.
    #[error("publish to a non-inbox topic (BROKER-3)")]
    PublishTopic,
    /// BROKER-3: retain flag.
    #[error("publish with retain (BROKER-3)")]
    PublishRetain,
    /// BROKER-3 / BROKER-4: QoS 0 or 2 (inboxes take QoS 1 only).
    #[error("publish with QoS {0} (BROKER-3: QoS 1 only)")]
    PublishQos(u8),
    /// BROKER-3: payload above LIM-1.
    #[error("payload of {0} bytes exceeds LIM-1 ({MAX_ENVELOPE})")]
    PayloadTooLarge(usize),
    /// A QoS 2 flow packet or a server-only packet from the client.
    #[error("unexpected {0:?} from client")]
    Unexpected(PacketType),
}

/// The decision for one client packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Relay the packet to the broker unchanged.
    Forward,
    /// An acceptable CONNECT: the front connects to the broker with its own canonical CONNECT
    /// ([`crate::mqtt::encode_connect`]) for the certificate's user id.
    Connect {
        /// The client's clean-session flag (BROKER-4 clients send false).
        clean_session: bool,
        /// The client's keep-alive, seconds.
        keep_alive: u16,
    },
    /// Drop the packet; send `reply` to the client if any; keep the connection.
    Refuse {
        /// Why.
        reason: Refusal,
        /// The front's own answer (e.g. a SUBACK failure).
        reply: Option<Vec<u8>>,
    },
    /// Send `reply` to the client if any, then close the connection.
    Disconnect {
        /// Why.
        reason: Refusal,
        /// The front's own answer (e.g. a CONNACK refusal).
        reply: Option<Vec<u8>>,
    },
}

/// ID-1: `[a-z2-7]{16}`.
pub fn is_user_id(s: &str) -> bool {
    s.len() == USER_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// ID-5: whether `topic` is `i/<user id>`.
pub fn is_inbox_topic(topic: &str) -> bool {
    topic.strip_prefix(INBOX_PREFIX).is_some_and(is_user_id)
}

/// The per-packet policy, stateless (CONNECT is judged wherever it appears). `packet` must be one
/// whole packet. This is the fuzzing entry point; the front uses [`ClientFilter`].
pub fn inspect(user_id: &str, packet: &[u8]) -> Verdict {
    if let Err(e) = packet_len(packet, MAX_CLIENT_REMAINING) {
        return disconnect(e.into(), None);
    }
    let parsed = match parse(packet) {
        Ok(p) => p,
        Err(e) => return disconnect(e.into(), None),
    };
    match parsed {
        Packet::Connect(c) => {
            if c.protocol_name != "MQTT" || c.level != 4 {
                disconnect(
                    Refusal::ProtocolLevel(c.level),
                    Some(connack(CONNACK_BAD_PROTOCOL)),
                )
            } else if c.client_id != user_id || !is_user_id(user_id) {
                disconnect(
                    Refusal::ClientIdMismatch,
                    Some(connack(CONNACK_BAD_CLIENT_ID)),
                )
            } else if c.will.is_some() {
                disconnect(Refusal::Will, Some(connack(CONNACK_NOT_AUTHORIZED)))
            } else if !(KEEP_ALIVE_MIN..=KEEP_ALIVE_MAX).contains(&c.keep_alive) {
                disconnect(
                    Refusal::KeepAlive(c.keep_alive),
                    Some(connack(CONNACK_NOT_AUTHORIZED)),
                )
            } else {
                Verdict::Connect {
                    clean_session: c.clean_session,
                    keep_alive: c.keep_alive,
                }
            }
        }
        Packet::Publish(p) => {
            if !is_inbox_topic(p.topic) {
                disconnect(Refusal::PublishTopic, None)
            } else if p.retain {
                disconnect(Refusal::PublishRetain, None)
            } else if p.qos != 1 {
                disconnect(Refusal::PublishQos(p.qos), None)
            } else if p.payload_len > MAX_ENVELOPE {
                disconnect(Refusal::PayloadTooLarge(p.payload_len), None)
            } else {
                Verdict::Forward
            }
        }
        Packet::Subscribe { pkid, filters } => {
            let own = filters
                .iter()
                .all(|(f, qos)| *qos <= 1 && f.strip_prefix(INBOX_PREFIX) == Some(user_id));
            if own && is_user_id(user_id) {
                Verdict::Forward
            } else {
                Verdict::Refuse {
                    reason: Refusal::Subscribe,
                    reply: Some(suback_failure(pkid, filters.len())),
                }
            }
        }
        Packet::Unsubscribe { .. } | Packet::PingReq | Packet::Disconnect => Verdict::Forward,
        Packet::Ack {
            kind: PacketType::PubAck,
            ..
        } => Verdict::Forward,
        Packet::Ack { kind, .. } => disconnect(Refusal::Unexpected(kind), None),
        Packet::ServerOnly(kind) => disconnect(Refusal::Unexpected(kind), None),
    }
}

fn disconnect(reason: Refusal, reply: Option<Vec<u8>>) -> Verdict {
    Verdict::Disconnect { reason, reply }
}

/// The per-connection filter: [`inspect`] plus the CONNECT-first rule.
#[derive(Debug, Clone)]
pub struct ClientFilter {
    user_id: String,
    connected: bool,
}

impl ClientFilter {
    /// A filter for a connection authenticated as `user_id` (the certificate CN).
    pub fn new(user_id: &str) -> ClientFilter {
        ClientFilter {
            user_id: user_id.to_owned(),
            connected: false,
        }
    }

    /// Whether a CONNECT has been accepted.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Judges the next whole packet from the client.
    pub fn check(&mut self, packet: &[u8]) -> Verdict {
        let is_connect = packet.first().is_some_and(|b| b >> 4 == 1);
        match (self.connected, is_connect) {
            (false, false) => disconnect(Refusal::NotConnected, None),
            (true, true) => disconnect(Refusal::DuplicateConnect, None),
            _ => {
                let verdict = inspect(&self.user_id, packet);
                if matches!(verdict, Verdict::Connect { .. }) {
                    self.connected = true;
                }
                verdict
            }
        }
    }
}

#[cfg(test)]
mod tests;
