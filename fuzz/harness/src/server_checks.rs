//! The bodies of the server-side fuzz targets: the authorizing MQTT front's packet filter
//! (`filter`), the membership API's binary request bodies (`membership`) and the NATS frames
//! the service reads from a cluster (`nats`).
//!
//! The code under test is what the front and the membership service run: `sotto_wire::filter`
//! (with `sotto_wire::mqtt`) and `sotto_wire::membership_api`, I/O-free, so the fuzz build does not
//! pull in the service's runtime (tokio, rustls, SQLCipher). `tests/corpus.rs` replays
//! the committed corpus through these same functions on stable Rust.
//!
//! Every function returns whether the input was accepted and panics only when an invariant breaks.

use std::sync::OnceLock;

use bytes::BytesMut;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::Packet as Oracle;
use sotto_core::Identity;

use sotto_wire::filter::{
    ClientFilter, MAX_CLIENT_REMAINING, MAX_ENVELOPE, Verdict, is_inbox_topic,
};
use sotto_wire::membership_api::{PrekeyUpload, RenewRequest};
use sotto_wire::mqtt::{SUBACK_FAILURE, encode_connect, packet_len};

/// The certificate user id the `filter` target's connection is authenticated as.
pub const FILTER_USER: &str = "abcdefghijklmnop";
/// A string that is not a user id (too short), for the inputs whose first byte is odd.
pub const FILTER_BAD_USER: &str = "mallory";
/// At most this many packets are judged per input (the filter is per packet; more adds nothing).
pub const FILTER_MAX_PACKETS: usize = 64;

/// Seed of the fixed identity that owns the `membership` target's uploads.
pub const OWNER_SEED: u64 = 0x5077_0f12_0000_0002;

/// The fixed owner of the `membership` target's prekey uploads and renew requests.
pub fn owner() -> &'static Identity {
    static OWNER: OnceLock<Identity> = OnceLock::new();
    OWNER.get_or_init(|| Identity::generate(&mut ChaCha20Rng::seed_from_u64(OWNER_SEED)))
}

/// `filter`: BROKER-1..3. Input: one byte choosing the certificate's user id (even: a valid id,
/// odd: a non-id), then a stream of client packets, split with `packet_len` exactly as the front
/// splits its TLS stream and judged by one `ClientFilter` until it disconnects.
///
/// Everything the filter lets through is parsed by an independent MQTT 3.1.1 parser (rumqttc's
/// `mqttbytes`) and must be a packet the policy allows: a CONNECT as the certificate's user id
/// without a will (the canonical CONNECT the front sends in its place), a PUBLISH to an inbox topic at QoS <= 1 without retain and with at most LIM-1
/// payload bytes, a SUBSCRIBE of only the own inbox, or an UNSUBSCRIBE, PUBACK, PINGREQ or
/// DISCONNECT. Nothing passes before a CONNECT. A refusal's reply is a SUBACK of failures for that
/// SUBSCRIBE; a disconnect's reply, if any, a CONNACK refusal. Returns whether any packet passed.
pub fn filter(data: &[u8]) -> bool {
    let Some((&choice, mut rest)) = data.split_first() else {
        return false;
    };
    let user = if choice % 2 == 0 {
        FILTER_USER
    } else {
        FILTER_BAD_USER
    };
    let mut judge = ClientFilter::new(user);
    let mut passed = false;
    for _ in 0..FILTER_MAX_PACKETS {
        let len = match packet_len(rest, MAX_CLIENT_REMAINING) {
            // The front waits for the rest of a packet whose header it has read; the input ends.
            Ok(Some(len)) if len > rest.len() => break,
            Ok(Some(len)) => len,
            // An incomplete header waits for more bytes; an oversized or malformed one closes.
            Ok(None) | Err(_) => break,
        };
        assert!(len >= 2, "packet_len {len}");
        let (packet, next) = rest.split_at(len);
        rest = next;
        let connected = judge.is_connected();
        match judge.check(packet) {
            Verdict::Forward => {
                assert!(connected, "a packet passed before CONNECT: {packet:02x?}");
                allowed(user, packet, false);
                passed = true;
            }
            Verdict::Connect {
                keep_alive,
                clean_session,
            } => {
                assert!(!connected, "a second CONNECT passed");
                assert_eq!(
                    user, FILTER_USER,
                    "CONNECT passed for a certificate without an id"
                );
                // The client's CONNECT itself never reaches the broker: the front sends its own.
                // Where the oracle parses the client's (it reads the password as UTF-8, MQTT 3.1.1
                // allows any bytes) the two must agree on what was judged.
                if let Some(Oracle::Connect(c)) = oracle(packet) {
                    assert_eq!(c.client_id, user, "CONNECT with a foreign client id passed");
                    assert!(c.last_will.is_none(), "CONNECT with a will passed");
                    assert_eq!(c.keep_alive, keep_alive);
                    assert_eq!(c.clean_session, clean_session);
                }
                let canonical = encode_connect(user, keep_alive, clean_session, user, b"secret");
                match allowed(user, &canonical, true) {
                    Oracle::Connect(c) => {
                        assert_eq!((c.keep_alive, c.clean_session), (keep_alive, clean_session));
                    }
                    other => panic!("Connect verdict for {other:?}"),
                }
                passed = true;
            }
            Verdict::Refuse { reply, .. } => {
                assert_eq!(packet[0], 0x82, "refused a packet that is not a SUBSCRIBE");
                let reply = reply.expect("a refused SUBSCRIBE is answered");
                let Some(Oracle::SubAck(ack)) = oracle(&reply) else {
                    panic!("refusal reply is not a SUBACK: {reply:02x?}");
                };
                assert_eq!(ack.pkid.to_be_bytes(), packet[len_of_header(packet)..][..2]);
                assert!(!ack.return_codes.is_empty());
                assert!(
                    reply[reply.len() - ack.return_codes.len()..]
                        .iter()
                        .all(|&c| c == SUBACK_FAILURE)
                );
                if let Some(Oracle::Subscribe(sub)) = oracle(packet) {
                    assert_eq!(ack.return_codes.len(), sub.filters.len());
                }
            }
            Verdict::Disconnect { reply, .. } => {
                if let Some(reply) = reply {
                    match oracle(&reply) {
                        Some(Oracle::ConnAck(ack)) => {
                            assert!(!matches!(ack.code, rumqttc::ConnectReturnCode::Success));
                        }
                        other => panic!("disconnect reply is not a CONNACK refusal: {other:?}"),
                    }
                }
                break;
            }
        }
    }
    passed
}

/// Length of the fixed header (type byte and remaining-length varint) of a whole packet.
fn len_of_header(packet: &[u8]) -> usize {
    1 + packet[1..].iter().take_while(|&&b| b & 0x80 != 0).count() + 1
}

/// Parses one whole packet with the independent parser; `None` if it refuses it or if the packet
/// is not exactly one frame.
fn oracle(packet: &[u8]) -> Option<Oracle> {
    let mut buf = BytesMut::from(packet);
    let parsed = Oracle::read(&mut buf, MAX_CLIENT_REMAINING + 5).ok()?;
    buf.is_empty().then_some(parsed)
}

/// Asserts that a packet the filter let through is one the policy allows; returns its parse.
fn allowed(user: &str, packet: &[u8], connect: bool) -> Oracle {
    let Some(parsed) = oracle(packet) else {
        panic!("forwarded a packet an MQTT 3.1.1 parser refuses: {packet:02x?}");
    };
    match &parsed {
        Oracle::Connect(c) => {
            assert!(connect, "CONNECT forwarded as an ordinary packet");
            assert_eq!(c.client_id, user, "CONNECT with a foreign client id passed");
            assert!(c.last_will.is_none(), "CONNECT with a will passed");
        }
        Oracle::Publish(p) => {
            assert!(is_inbox_topic(&p.topic), "PUBLISH to {:?} passed", p.topic);
            assert!(!p.retain, "retained PUBLISH passed");
            assert!(p.qos != QoS::ExactlyOnce, "QoS 2 PUBLISH passed");
            assert!(p.payload.len() <= MAX_ENVELOPE, "oversize PUBLISH passed");
        }
        Oracle::Subscribe(s) => {
            assert!(!s.filters.is_empty(), "empty SUBSCRIBE passed");
            for f in &s.filters {
                assert_eq!(f.path, format!("i/{user}"), "foreign SUBSCRIBE passed");
                assert!(f.qos != QoS::ExactlyOnce, "QoS 2 SUBSCRIBE passed");
            }
        }
        Oracle::Unsubscribe(_) | Oracle::PubAck(_) | Oracle::PingReq | Oracle::Disconnect => {}
        other => panic!("forwarded {other:?}"),
    }
    assert!(
        connect == matches!(parsed, Oracle::Connect(_)),
        "verdict and packet type disagree: {parsed:?}"
    );
    parsed
}

/// `membership`: the binary bodies of `POST /v1/renew` and `POST /v1/prekeys` (KEY-3, KEY-4,
/// LIM-15, LIM-16). The first byte picks the body (even: renew, odd: prekey upload), the rest is
/// the body. A decoded body re-encodes to exactly the input; a renew request's signature check
/// against the fixed [`owner`] never panics; an upload is only accepted with prekeys the owner
/// signed (its decode checks the signed prekey's signature).
pub fn membership(data: &[u8]) -> bool {
    let Some((&choice, body)) = data.split_first() else {
        return false;
    };
    let owner = owner().public();
    if choice % 2 == 0 {
        let Ok(req) = RenewRequest::from_bytes(body) else {
            return false;
        };
        assert_eq!(req.to_bytes(), body, "renew request does not re-encode");
        assert!(!req.tls_spki().is_empty());
        let verified = req.verify(owner).is_ok();
        assert_eq!(RenewRequest::from_bytes(&req.to_bytes()).ok(), Some(req));
        verified
    } else {
        let Ok(upload) = PrekeyUpload::from_bytes(body, owner) else {
            return false;
        };
        assert_eq!(upload.to_bytes(), body, "prekey upload does not re-encode");
        assert_eq!(PrekeyUpload::from_bytes(body, owner).ok(), Some(upload));
        true
    }
}

/// `nats`: the NATS client protocol frames the service reads from a NATS cluster
/// (`sotto_wire::nats`). The input is a byte stream from a node: frames are taken off its front
/// until one is incomplete or refused. Each frame takes at least one byte and no more than
/// there are; a `MSG` written back in NATS's format parses to the same frame, taking exactly
/// what was written. Returns whether at least one `MSG` was read.
pub fn nats(data: &[u8]) -> bool {
    use sotto_wire::nats::{Frame, parse_frame};
    let mut rest = data;
    let mut msgs = false;
    while let Ok(Some((frame, used))) = parse_frame(rest) {
        assert!(
            used > 0 && used <= rest.len(),
            "took {used} of {}",
            rest.len()
        );
        if let Frame::Msg {
            subject,
            sid,
            reply,
            payload,
        } = &frame
        {
            msgs = true;
            let reply = reply
                .as_deref()
                .map(|r| format!("{r} "))
                .unwrap_or_default();
            let mut again =
                format!("MSG {subject} {sid} {reply}{}\r\n", payload.len()).into_bytes();
            again.extend_from_slice(payload);
            again.extend_from_slice(b"\r\n");
            assert_eq!(
                parse_frame(&again),
                Ok(Some((frame.clone(), again.len()))),
                "a MSG written back does not parse the same"
            );
        }
        rest = &rest[used..];
    }
    msgs
}
