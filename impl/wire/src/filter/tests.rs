//! Unit and property tests of the MQTT front filter (BROKER-1..3).

use super::*;
use crate::mqtt::{encode_connect, push_bytes, push_remaining_len};
use proptest::prelude::*;

const ME: &str = "abcdefghijklmnop";
const PEER: &str = "qrstuvwxyz234567";

fn packet(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    push_remaining_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn publish(topic: &str, qos: u8, retain: bool, payload_len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    push_bytes(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&7u16.to_be_bytes());
    }
    body.extend(std::iter::repeat_n(0xab, payload_len));
    packet(0x30 | (qos << 1) | u8::from(retain), &body)
}

fn subscribe(pkid: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    let mut body = pkid.to_be_bytes().to_vec();
    for (f, q) in filters {
        push_bytes(&mut body, f.as_bytes());
        body.push(*q);
    }
    packet(0x82, &body)
}

fn connect(client_id: &str, keep_alive: u16, clean: bool) -> Vec<u8> {
    let mut body = Vec::new();
    push_bytes(&mut body, b"MQTT");
    body.push(4);
    body.push(if clean { 0x02 } else { 0 });
    body.extend_from_slice(&keep_alive.to_be_bytes());
    push_bytes(&mut body, client_id.as_bytes());
    packet(0x10, &body)
}

fn inbox(id: &str) -> String {
    format!("{INBOX_PREFIX}{id}")
}

fn reason(v: Verdict) -> Refusal {
    match v {
        Verdict::Refuse { reason, .. } | Verdict::Disconnect { reason, .. } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn id1_user_ids() {
    assert!(is_user_id(ME));
    assert!(!is_user_id("abcdefghijklmno"));
    assert!(!is_user_id("abcdefghijklmnoP"));
    assert!(!is_user_id("abcdefghijklmno1"));
    assert!(is_inbox_topic(&inbox(PEER)));
    assert!(!is_inbox_topic("i/+"));
    assert!(!is_inbox_topic(&format!("i/{PEER}/x")));
}

#[test]
fn packet_len_frames_and_refuses_large_headers() {
    assert_eq!(packet_len(&[], 10), Ok(None));
    assert_eq!(packet_len(&[0x30], 10), Ok(None));
    assert_eq!(packet_len(&[0xc0, 0x00], 10), Ok(Some(2)));
    assert_eq!(packet_len(&[0x30, 0x80], 10), Ok(None));
    assert_eq!(
        packet_len(&[0x30, 0xff, 0x7f], 1 << 20),
        Ok(Some(3 + 16383))
    );
    assert_eq!(
        packet_len(&[0x30, 0xff, 0x7f], 8192),
        Err(ParseError::TooLarge {
            remaining: 16383,
            limit: 8192
        })
    );
    assert_eq!(
        packet_len(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], usize::MAX),
        Err(ParseError::MalformedLength)
    );
    assert_eq!(packet_len(&[0x00, 0x00], 10), Err(ParseError::ReservedType));
    assert_eq!(packet_len(&[0xf0, 0x00], 10), Err(ParseError::ReservedType));
}

#[test]
fn broker1_connect_with_own_id_is_accepted() {
    let mut f = ClientFilter::new(ME);
    assert_eq!(
        f.check(&connect(ME, 60, false)),
        Verdict::Connect {
            clean_session: false,
            keep_alive: 60
        }
    );
    assert!(f.is_connected());
    assert_eq!(
        reason(f.check(&connect(ME, 60, false))),
        Refusal::DuplicateConnect
    );
}

#[test]
fn broker1_connect_with_other_client_id_is_refused_with_connack() {
    let v = inspect(ME, &connect(PEER, 60, false));
    assert_eq!(
        v,
        Verdict::Disconnect {
            reason: Refusal::ClientIdMismatch,
            reply: Some(connack(CONNACK_BAD_CLIENT_ID))
        }
    );
    assert_eq!(
        reason(inspect(ME, &connect("", 60, true))),
        Refusal::ClientIdMismatch
    );
}

#[test]
fn connect_rules() {
    assert_eq!(
        reason(inspect(ME, &connect(ME, 0, false))),
        Refusal::KeepAlive(0)
    );
    assert_eq!(
        reason(inspect(ME, &connect(ME, 5000, false))),
        Refusal::KeepAlive(5000)
    );
    // MQTT 5 (level 5) and 3.1 ("MQIsdp", level 3).
    let mut v5 = connect(ME, 60, false);
    v5[8] = 5;
    assert_eq!(reason(inspect(ME, &v5)), Refusal::ProtocolLevel(5));
    // Will flag with a will topic and message.
    let mut body = Vec::new();
    push_bytes(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0x04, 0, 60]);
    push_bytes(&mut body, ME.as_bytes());
    push_bytes(&mut body, inbox(PEER).as_bytes());
    push_bytes(&mut body, b"bye");
    assert_eq!(reason(inspect(ME, &packet(0x10, &body))), Refusal::Will);
    // Reserved flag bit.
    let mut bad = connect(ME, 60, false);
    bad[9] |= 0x01;
    assert_eq!(
        reason(inspect(ME, &bad)),
        Refusal::Malformed(ParseError::ConnectFlags)
    );
    // Username and password are accepted (and replaced by the front).
    let mut body = Vec::new();
    push_bytes(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0xc0, 0, 60]);
    push_bytes(&mut body, ME.as_bytes());
    push_bytes(&mut body, b"user");
    push_bytes(&mut body, b"secret");
    assert!(matches!(
        inspect(ME, &packet(0x10, &body)),
        Verdict::Connect { .. }
    ));
}

#[test]
fn packets_before_connect_close_the_connection() {
    let mut f = ClientFilter::new(ME);
    assert_eq!(
        reason(f.check(&publish(&inbox(PEER), 1, false, 10))),
        Refusal::NotConnected
    );
    assert!(!f.is_connected());
}

#[test]
fn broker2_subscribe_own_inbox_only() {
    assert_eq!(
        inspect(ME, &subscribe(3, &[(&inbox(ME), 1)])),
        Verdict::Forward
    );
    assert_eq!(
        inspect(ME, &subscribe(3, &[(&inbox(ME), 0)])),
        Verdict::Forward
    );
    for bad in [
        inbox(PEER),
        "#".to_owned(),
        "i/#".to_owned(),
        "i/+".to_owned(),
        format!("{}/x", inbox(ME)),
    ] {
        let v = inspect(ME, &subscribe(9, &[(&bad, 1)]));
        assert_eq!(
            v,
            Verdict::Refuse {
                reason: Refusal::Subscribe,
                reply: Some(vec![0x90, 3, 0, 9, 0x80])
            }
        );
    }
    // QoS 2 on the own inbox, and a mixed packet: all filters fail.
    assert_eq!(
        reason(inspect(ME, &subscribe(3, &[(&inbox(ME), 2)]))),
        Refusal::Subscribe
    );
    let v = inspect(ME, &subscribe(4, &[(&inbox(ME), 1), (&inbox(PEER), 1)]));
    assert_eq!(
        v,
        Verdict::Refuse {
            reason: Refusal::Subscribe,
            reply: Some(vec![0x90, 4, 0, 4, 0x80, 0x80])
        }
    );
}

#[test]
fn broker3_publish_rules() {
    assert_eq!(
        inspect(ME, &publish(&inbox(PEER), 1, false, MAX_ENVELOPE)),
        Verdict::Forward
    );
    assert_eq!(
        inspect(ME, &publish(&inbox(ME), 1, false, 0)),
        Verdict::Forward
    );
    assert_eq!(
        reason(inspect(ME, &publish(&inbox(PEER), 0, false, 1))),
        Refusal::PublishQos(0)
    );
    assert_eq!(
        reason(inspect(ME, &publish(&inbox(PEER), 1, true, 1))),
        Refusal::PublishRetain
    );
    assert_eq!(
        reason(inspect(ME, &publish(&inbox(PEER), 2, false, 1))),
        Refusal::PublishQos(2)
    );
    assert_eq!(
        reason(inspect(ME, &publish("x/y", 1, false, 1))),
        Refusal::PublishTopic
    );
    assert_eq!(
        reason(inspect(ME, &publish("i/#", 1, false, 1))),
        Refusal::PublishTopic
    );
    assert_eq!(
        reason(inspect(
            ME,
            &publish(&inbox(PEER), 1, false, MAX_ENVELOPE + 1)
        )),
        Refusal::PayloadTooLarge(MAX_ENVELOPE + 1)
    );
    // Too large for the frame limit: refused from the header alone.
    let huge = publish(&inbox(PEER), 1, false, MAX_CLIENT_REMAINING + 1);
    assert!(matches!(
        reason(inspect(ME, &huge[..5])),
        Refusal::Malformed(ParseError::TooLarge { .. })
    ));
    assert!(matches!(
        packet_len(&huge[..3], MAX_CLIENT_REMAINING),
        Err(ParseError::TooLarge { .. })
    ));
}

#[test]
fn other_packets() {
    assert_eq!(inspect(ME, &[0xc0, 0x00]), Verdict::Forward);
    assert_eq!(inspect(ME, &[0xe0, 0x00]), Verdict::Forward);
    assert_eq!(inspect(ME, &[0x40, 0x02, 0x00, 0x07]), Verdict::Forward);
    assert_eq!(
        reason(inspect(ME, &[0x40, 0x02, 0x00, 0x00])),
        Refusal::Malformed(ParseError::ZeroPacketId)
    );
    assert_eq!(
        reason(inspect(ME, &[0x50, 0x02, 0x00, 0x07])),
        Refusal::Unexpected(PacketType::PubRec)
    );
    assert_eq!(
        reason(inspect(ME, &[0x62, 0x02, 0x00, 0x07])),
        Refusal::Unexpected(PacketType::PubRel)
    );
    assert_eq!(
        reason(inspect(ME, &[0x20, 0x02, 0x00, 0x00])),
        Refusal::Unexpected(PacketType::ConnAck)
    );
    assert_eq!(
        reason(inspect(ME, &[0xc1, 0x00])),
        Refusal::Malformed(ParseError::InvalidFlags)
    );
    assert_eq!(
        reason(inspect(ME, &[0xc0, 0x01, 0x00])),
        Refusal::Malformed(ParseError::Trailing)
    );
    assert_eq!(
        reason(inspect(ME, &[0x80, 0x00])),
        Refusal::Malformed(ParseError::InvalidFlags)
    );
    let mut unsub = 5u16.to_be_bytes().to_vec();
    push_bytes(&mut unsub, b"#");
    assert_eq!(inspect(ME, &packet(0xa2, &unsub)), Verdict::Forward);
    assert_eq!(
        reason(inspect(ME, &packet(0xa2, &[0, 5]))),
        Refusal::Malformed(ParseError::NoFilter)
    );
    assert_eq!(
        reason(inspect(ME, &[0x30])),
        Refusal::Malformed(ParseError::Truncated)
    );
}

#[test]
fn refusal_display_names_no_topic_or_payload() {
    let text = reason(inspect(ME, &publish(&format!("x/{PEER}"), 1, false, 3))).to_string();
    assert!(!text.contains(PEER));
    let bytes = publish(&inbox(PEER), 1, false, 3);
    let p = parse(&bytes).expect("parse");
    assert!(!format!("{p:?}").contains(PEER));
}

#[test]
fn encoded_connect_parses_back() {
    let bytes = encode_connect(ME, 60, false, ME, b"internal-secret");
    match parse(&bytes).expect("parse") {
        Packet::Connect(c) => {
            assert_eq!(c.client_id, ME);
            assert_eq!(c.keep_alive, 60);
            assert!(!c.clean_session);
            assert!(c.has_username && c.has_password);
        }
        other => panic!("not a CONNECT: {other:?}"),
    }
    assert_eq!(
        parse(&suback_failure(1, 200)).expect("suback"),
        Packet::ServerOnly(PacketType::SubAck)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = packet_len(&bytes, MAX_CLIENT_REMAINING);
        let _ = parse(&bytes);
        let _ = inspect(ME, &bytes);
        let mut f = ClientFilter::new(ME);
        let _ = f.check(&connect(ME, 60, true));
        let _ = f.check(&bytes);
    }

    #[test]
    fn framed_garbage_never_panics(kind in 0u8..=255, body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let p = packet(kind, &body);
        prop_assert_eq!(packet_len(&p, usize::MAX).ok().flatten().unwrap_or(p.len()), p.len());
        let _ = inspect(ME, &p);
    }

    #[test]
    fn inbox_publishes_within_lim1_are_forwarded(len in 0usize..=MAX_ENVELOPE) {
        prop_assert_eq!(inspect(ME, &publish(&inbox(PEER), 1, false, len)), Verdict::Forward);
    }
}
