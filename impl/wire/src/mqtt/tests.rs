//! The encoders round-trip through the parser.

use super::*;

#[test]
fn encoders_parse_back() {
    assert_eq!(
        parse(&connack_accepted(true)),
        Ok(Packet::ServerOnly(PacketType::ConnAck))
    );
    assert_eq!(connack_accepted(false), [0x20, 2, 0, 0]);
    assert_eq!(suback(7, &[1, 0x80]), [0x90, 4, 0, 7, 1, 0x80]);
    assert_eq!(
        parse(&puback(0x1234)),
        Ok(Packet::Ack {
            kind: PacketType::PubAck,
            pkid: 0x1234
        })
    );
    assert_eq!(
        parse(&unsuback(9)),
        Ok(Packet::Ack {
            kind: PacketType::UnsubAck,
            pkid: 9
        })
    );
    assert_eq!(pingresp(), [0xd0, 0]);
    for (pkid, dup) in [(None, false), (Some(1), false), (Some(65535), true)] {
        let payload = vec![0xab; 300];
        let p = encode_publish("i/abcdefghijklmnop", pkid, dup, &payload);
        let Ok(Packet::Publish(parsed)) = parse(&p) else {
            panic!("not a PUBLISH")
        };
        assert_eq!(parsed.topic, "i/abcdefghijklmnop");
        assert_eq!(parsed.pkid, pkid);
        assert_eq!(parsed.dup, dup);
        assert_eq!(parsed.qos, u8::from(pkid.is_some()));
        assert_eq!(publish_payload(&p), Ok(&payload[..]));
    }
}

#[test]
fn connect_login_reads_what_encode_connect_wrote() {
    let p = encode_connect("abcdefghijklmnop", 30, false, "abcdefghijklmnop", b"secret");
    let login = connect_login(&p).expect("a CONNECT");
    assert_eq!(login.client_id, "abcdefghijklmnop");
    assert_eq!(login.username, Some("abcdefghijklmnop"));
    assert_eq!(login.password, Some(&b"secret"[..]));
    assert!(!format!("{login:?}").contains("secret"));
    assert!(!format!("{login:?}").contains("abcdefghijklmnop"));
    assert!(connect_login(&puback(1)).is_err());
    assert!(connect_login(&p[..p.len() - 1]).is_err());
}
