//! MQTT 3.1.1 as Sotto speaks it: a panic-free parser of single packets and the few encoders the
//! server side writes itself. No I/O and no policy: the front's rules (BROKER-1..3) live in
//! [`crate::filter`], which judges what this module parses.
//!
//! ```text
//!  bytes --packet_len--> one whole packet --parse--> Packet (CONNECT, PUBLISH, SUBSCRIBE, ...)
//!  connack / suback_failure / encode_connect / encode_subscribe --> bytes
//! ```
//!
//! Only what a policy needs is kept: a PUBLISH is parsed to its header and the payload measured;
//! a CONNECT's password is skipped and never returned; `Debug` of a PUBLISH omits its topic, which
//! names the recipient.

use std::fmt;

/// CONNACK return code: unacceptable protocol version.
pub const CONNACK_BAD_PROTOCOL: u8 = 0x01;
/// CONNACK return code: identifier rejected.
pub const CONNACK_BAD_CLIENT_ID: u8 = 0x02;
/// CONNACK return code: not authorized.
pub const CONNACK_NOT_AUTHORIZED: u8 = 0x05;
/// SUBACK return code: failure.
pub const SUBACK_FAILURE: u8 = 0x80;

/// Why bytes are not a valid MQTT 3.1.1 packet. Carries no packet contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The remaining-length varint is longer than 4 bytes.
    #[error("malformed remaining length")]
    MalformedLength,
    /// The packet is larger than the limit (refused from its header).
    #[error("packet of {remaining} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Announced remaining length.
        remaining: usize,
        /// The limit applied.
        limit: usize,
    },
    /// The packet is shorter than its fields, or the buffer is not exactly one packet.
    #[error("truncated packet")]
    Truncated,
    /// Bytes left after the last field.
    #[error("trailing bytes in packet")]
    Trailing,
    /// Packet type 0 or 15.
    #[error("reserved packet type")]
    ReservedType,
    /// Fixed-header flags invalid for the packet type.
    #[error("invalid fixed-header flags")]
    InvalidFlags,
    /// A string is not UTF-8 or contains U+0000.
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// A QoS value of 3, or reserved bits set.
    #[error("invalid QoS or reserved bits")]
    InvalidQos,
    /// Packet identifier 0 where one is required.
    #[error("zero packet identifier")]
    ZeroPacketId,
    /// SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("no topic filter")]
    NoFilter,
    /// Invalid CONNECT flags (reserved bit, password without username, will flags without will).
    #[error("invalid CONNECT flags")]
    ConnectFlags,
}

/// Packet types, as in the fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PacketType {
    /// 1
    Connect,
    /// 2
    ConnAck,
    /// 3
    Publish,
    /// 4
    PubAck,
    /// 5
    PubRec,
    /// 6
    PubRel,
    /// 7
    PubComp,
    /// 8
    Subscribe,
    /// 9
    SubAck,
    /// 10
    Unsubscribe,
    /// 11
    UnsubAck,
    /// 12
    PingReq,
    /// 13
    PingResp,
    /// 14
    Disconnect,
}

impl PacketType {
    /// The packet type of a fixed header's high nibble; `None` for the reserved 0 and 15.
    pub fn from_nibble(n: u8) -> Option<PacketType> {
        Some(match n {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            _ => return None,
        })
    }
}

/// A will message announced in CONNECT (only its presence matters to the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Will QoS.
    pub qos: u8,
    /// Will retain flag.
    pub retain: bool,
}

/// A parsed CONNECT. The password is never kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect<'a> {
    /// Protocol name ("MQTT" for 3.1.1).
    pub protocol_name: &'a str,
    /// Protocol level (4 for 3.1.1).
    pub level: u8,
    /// The clean-session flag.
    pub clean_session: bool,
    /// Keep-alive, seconds.
    pub keep_alive: u16,
    /// The client identifier.
    pub client_id: &'a str,
    /// The will, if any.
    pub will: Option<Will>,
    /// Whether a username was sent (its value is ignored).
    pub has_username: bool,
    /// Whether a password was sent (its value is never kept).
    pub has_password: bool,
}

/// A parsed PUBLISH header; the payload is only measured.
#[derive(Clone, PartialEq, Eq)]
pub struct Publish<'a> {
    /// DUP flag.
    pub dup: bool,
    /// QoS 0..=2.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Topic name.
    pub topic: &'a str,
    /// Packet identifier (QoS > 0).
    pub pkid: Option<u16>,
    /// Payload length in bytes.
    pub payload_len: usize,
}

impl fmt::Debug for Publish<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The topic names the recipient: metadata, kept out of Debug output.
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("pkid", &self.pkid)
            .field("payload_len", &self.payload_len)
            .finish_non_exhaustive()
    }
}

/// One parsed client or server packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet<'a> {
    /// CONNECT.
    Connect(Connect<'a>),
    /// PUBLISH.
    Publish(Publish<'a>),
    /// SUBSCRIBE: packet id and (filter, requested QoS) pairs.
    Subscribe {
        /// Packet identifier.
        pkid: u16,
        /// Topic filters with their requested QoS.
        filters: Vec<(&'a str, u8)>,
    },
    /// UNSUBSCRIBE: packet id and filters.
    Unsubscribe {
        /// Packet identifier.
        pkid: u16,
        /// Topic filters.
        filters: Vec<&'a str>,
    },
    /// PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK: a packet id only.
    Ack {
        /// Which acknowledgement.
        kind: PacketType,
        /// Packet identifier.
        pkid: u16,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// Another packet only a server sends (CONNACK, SUBACK, PINGRESP), not parsed further.
    ServerOnly(PacketType),
}

/// The length of the first packet in `buf` once its fixed header is complete (`Ok(None)` while it
/// is not). Refuses a remaining length above `max_remaining` before the body is read.
pub fn packet_len(buf: &[u8], max_remaining: usize) -> Result<Option<usize>, ParseError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if PacketType::from_nibble(first >> 4).is_none() {
        return Err(ParseError::ReservedType);
    }
    let mut remaining: usize = 0;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        remaining |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            if remaining > max_remaining {
                return Err(ParseError::TooLarge {
                    remaining,
                    limit: max_remaining,
                });
            }
            return Ok(Some(1 + (i + 1) + remaining));
        }
    }
    Err(ParseError::MalformedLength)
}

/// A cursor over a packet body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, ParseError> {
        let (&b, rest) = self.buf.split_first().ok_or(ParseError::Truncated)?;
        self.buf = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ParseError> {
        let len = usize::from(self.u16()?);
        if self.buf.len() < len {
            return Err(ParseError::Truncated);
        }
        let (b, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(b)
    }

    fn string(&mut self) -> Result<&'a str, ParseError> {
        let s = std::str::from_utf8(self.bytes()?).map_err(|_| ParseError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(ParseError::InvalidUtf8);
        }
        Ok(s)
    }

    fn pkid(&mut self) -> Result<u16, ParseError> {
        match self.u16()? {
            0 => Err(ParseError::ZeroPacketId),
            id => Ok(id),
        }
    }

    fn end(&self) -> Result<(), ParseError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ParseError::Trailing)
        }
    }
}

/// Parses exactly one complete packet (as delimited by [`packet_len`] with no size limit).
pub fn parse(packet: &[u8]) -> Result<Packet<'_>, ParseError> {
    let total = packet_len(packet, usize::MAX)?.ok_or(ParseError::Truncated)?;
    if total != packet.len() {
        return Err(if total > packet.len() {
            ParseError::Truncated
        } else {
            ParseError::Trailing
        });
    }
    let header = packet[0];
    let flags = header & 0x0f;
    let kind = PacketType::from_nibble(header >> 4).ok_or(ParseError::ReservedType)?;
    let body_start = packet.len() - packet_body_len(packet);
    let mut r = Reader {
        buf: &packet[body_start..],
    };
    let expect_flags = |want: u8| {
        if flags == want {
            Ok(())
        } else {
            Err(ParseError::InvalidFlags)
        }
    };
    let parsed = match kind {
        PacketType::Connect => {
            expect_flags(0)?;
            Packet::Connect(parse_connect(&mut r)?)
        }
        PacketType::Publish => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(ParseError::InvalidQos);
            }
            let dup = flags & 0x08 != 0;
            if qos == 0 && dup {
                return Err(ParseError::InvalidFlags);
            }
            let topic = r.string()?;
            let pkid = if qos > 0 { Some(r.pkid()?) } else { None };
            let payload_len = r.buf.len();
            r.buf = &[];
            Packet::Publish(Publish {
                dup,
                qos,
                retain: flags & 0x01 != 0,
                topic,
                pkid,
                payload_len,
            })
        }
        PacketType::PubAck | PacketType::PubRec | PacketType::PubComp | PacketType::UnsubAck => {
            expect_flags(0)?;
            Packet::Ack {
                kind,
                pkid: r.pkid()?,
            }
        }
        PacketType::PubRel => {
            expect_flags(0x02)?;
            Packet::Ack {
                kind,
                pkid: r.pkid()?,
            }
        }
        PacketType::Subscribe => {
            expect_flags(0x02)?;
            let pkid = r.pkid()?;
            let mut filters = Vec::new();
            while !r.buf.is_empty() {
                let filter = r.string()?;
                let qos = r.u8()?;
                if qos > 2 {
                    return Err(ParseError::InvalidQos);
                }
                filters.push((filter, qos));
            }
            if filters.is_empty() {
                return Err(ParseError::NoFilter);
            }
            Packet::Subscribe { pkid, filters }
        }
        PacketType::Unsubscribe => {
            expect_flags(0x02)?;
            let pkid = r.pkid()?;
            let mut filters = Vec::new();
            while !r.buf.is_empty() {
                filters.push(r.string()?);
            }
            if filters.is_empty() {
                return Err(ParseError::NoFilter);
            }
            Packet::Unsubscribe { pkid, filters }
        }
        PacketType::PingReq => {
            expect_flags(0)?;
            Packet::PingReq
        }
        PacketType::Disconnect => {
            expect_flags(0)?;
            Packet::Disconnect
        }
        PacketType::ConnAck | PacketType::SubAck | PacketType::PingResp => {
            r.buf = &[];
            Packet::ServerOnly(kind)
        }
    };
    r.end()?;
    Ok(parsed)
}

/// Length of the body of a packet whose header [`packet_len`] accepted.
fn packet_body_len(packet: &[u8]) -> usize {
    let header_len = 1
        + packet
            .iter()
            .skip(1)
            .take(4)
            .take_while(|b| *b & 0x80 != 0)
            .count()
        + 1;
    packet.len().saturating_sub(header_len)
}

fn parse_connect<'a>(r: &mut Reader<'a>) -> Result<Connect<'a>, ParseError> {
    let protocol_name = r.string()?;
    let level = r.u8()?;
    let flags = r.u8()?;
    let keep_alive = r.u16()?;
    if flags & 0x01 != 0 {
        return Err(ParseError::ConnectFlags);
    }
    let has_username = flags & 0x80 != 0;
    let has_password = flags & 0x40 != 0;
    let will_retain = flags & 0x20 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_flag = flags & 0x04 != 0;
    if has_password && !has_username {
        return Err(ParseError::ConnectFlags);
    }
    if !will_flag && (will_retain || will_qos != 0) {
        return Err(ParseError::ConnectFlags);
    }
    if will_qos == 3 {
        return Err(ParseError::InvalidQos);
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let _topic = r.string()?;
        let _message = r.bytes()?;
        Some(Will {
            qos: will_qos,
            retain: will_retain,
        })
    } else {
        None
    };
    if has_username {
        let _username = r.string()?;
    }
    if has_password {
        let _password = r.bytes()?;
    }
    Ok(Connect {
        protocol_name,
        level,
        clean_session: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        has_username,
        has_password,
    })
}

/// A whole packet: its first byte (type and flags), the remaining length, then `body` as given
/// (for packets the encoders here do not build, such as the CONNECT variants the front refuses).
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(first);
    push_remaining_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// Appends the remaining-length varint of `len` (at most 4 bytes; `len` < 2^28).
pub(crate) fn push_remaining_len(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

pub(crate) fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&b[..usize::from(len)]);
}

/// The login of a CONNECT: what an internal broker checks (the front's canonical CONNECT carries
/// the user id as client id and username, and the internal secret as password).
#[derive(Clone, PartialEq, Eq)]
pub struct Login<'a> {
    /// The client identifier.
    pub client_id: &'a str,
    /// The username, if any.
    pub username: Option<&'a str>,
    /// The password, if any.
    pub password: Option<&'a [u8]>,
}

impl fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ids are metadata and the password a secret: neither goes to Debug output.
        f.debug_struct("Login")
            .field("has_username", &self.username.is_some())
            .field("has_password", &self.password.is_some())
            .finish_non_exhaustive()
    }
}

/// The login of one complete CONNECT packet ([`parse`] keeps no password; an internal broker
/// needs it).
pub fn connect_login(packet: &[u8]) -> Result<Login<'_>, ParseError> {
    if !matches!(parse(packet)?, Packet::Connect(_)) {
        return Err(ParseError::ReservedType);
    }
    let body_start = packet.len() - packet_body_len(packet);
    let mut r = Reader {
        buf: &packet[body_start..],
    };
    let _protocol = r.string()?;
    let _level = r.u8()?;
    let flags = r.u8()?;
    let _keep_alive = r.u16()?;
    let client_id = r.string()?;
    if flags & 0x04 != 0 {
        let _topic = r.string()?;
        let _message = r.bytes()?;
    }
    let username = if flags & 0x80 != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags & 0x40 != 0 {
        Some(r.bytes()?)
    } else {
        None
    };
    Ok(Login {
        client_id,
        username,
        password,
    })
}

/// The payload of one complete PUBLISH packet (the bytes after its topic and packet id).
pub fn publish_payload(packet: &[u8]) -> Result<&[u8], ParseError> {
    match parse(packet)? {
        Packet::Publish(p) => Ok(&packet[packet.len() - p.payload_len..]),
        _ => Err(ParseError::ReservedType),
    }
}

/// A CONNACK accepting the connection, with the session-present flag.
pub fn connack_accepted(session_present: bool) -> Vec<u8> {
    vec![0x20, 0x02, u8::from(session_present), 0x00]
}

/// A SUBACK with one return code per filter (0x00..=0x02 granted QoS, 0x80 failure).
pub fn suback(pkid: u16, codes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x90];
    push_remaining_len(&mut out, 2 + codes.len());
    out.extend_from_slice(&pkid.to_be_bytes());
    out.extend_from_slice(codes);
    out
}

/// A PUBACK for `pkid`.
pub fn puback(pkid: u16) -> Vec<u8> {
    let [hi, lo] = pkid.to_be_bytes();
    vec![0x40, 0x02, hi, lo]
}

/// An UNSUBACK for `pkid`.
pub fn unsuback(pkid: u16) -> Vec<u8> {
    let [hi, lo] = pkid.to_be_bytes();
    vec![0xb0, 0x02, hi, lo]
}

/// A PINGRESP.
pub fn pingresp() -> Vec<u8> {
    vec![0xd0, 0x00]
}

/// A PUBLISH of `payload` to `topic`: QoS 0 when `pkid` is `None`, else QoS 1 with that packet id
/// and the DUP flag as given (a redelivery). No retain.
pub fn encode_publish(topic: &str, pkid: Option<u16>, dup: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + topic.len() + payload.len());
    push_bytes(&mut body, topic.as_bytes());
    let header = match pkid {
        Some(id) => {
            body.extend_from_slice(&id.to_be_bytes());
            0x32 | if dup { 0x08 } else { 0 }
        }
        None => 0x30,
    };
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(header);
    push_remaining_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// A CONNACK with `code` and no session present.
pub fn connack(code: u8) -> Vec<u8> {
    vec![0x20, 0x02, 0x00, code]
}

/// A SUBACK answering `count` filters of `pkid` with failure (BROKER-2).
pub fn suback_failure(pkid: u16, count: usize) -> Vec<u8> {
    let mut out = vec![0x90];
    push_remaining_len(&mut out, 2 + count);
    out.extend_from_slice(&pkid.to_be_bytes());
    out.extend(std::iter::repeat_n(SUBACK_FAILURE, count));
    out
}

/// The canonical MQTT 3.1.1 CONNECT the front sends to the internal broker: the certificate's
/// user id as client id (BROKER-1) and username, the internal secret as password, no will.
/// Strings longer than 65535 bytes are truncated (ids are 16 bytes).
pub fn encode_connect(
    client_id: &str,
    keep_alive: u16,
    clean_session: bool,
    username: &str,
    password: &[u8],
) -> Vec<u8> {
    let mut body = Vec::with_capacity(32 + client_id.len() + username.len() + password.len());
    push_bytes(&mut body, b"MQTT");
    body.push(4);
    body.push(0x80 | 0x40 | if clean_session { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    push_bytes(&mut body, client_id.as_bytes());
    push_bytes(&mut body, username.as_bytes());
    push_bytes(&mut body, password);
    let mut out = vec![0x10];
    push_remaining_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// A SUBSCRIBE of one topic filter at QoS 1.
pub fn encode_subscribe(pkid: u16, topic: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + topic.len());
    body.extend_from_slice(&pkid.to_be_bytes());
    push_bytes(&mut body, topic.as_bytes());
    body.push(1);
    let mut out = vec![0x82];
    push_remaining_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests;
