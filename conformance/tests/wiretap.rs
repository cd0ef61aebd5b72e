//! The Req8 wiretap: the real stack (membership + the authorizing front + a broker) with three
//! people, and everything the server side saw or wrote searched for every secret. The search is
//! shown to work on a frame that does contain a canary, so that an empty result means something.

use bytes::Bytes;
use sotto_conformance::wiretap::{self, Needle, WiretapError};
use sotto_server::Broker;
use sotto_server::broker::front::{TapDirection, TapRecord};
use sotto_server::broker::mosquitto;

fn assert_clean(evidence: &sotto_conformance::evidence::WiretapEvidence) {
    println!(
        "{}: {} MQTT packets ({} bytes), {} HTTP exchanges, {} files, {} needles, {} findings",
        evidence.broker,
        evidence.frames,
        evidence.bytes,
        evidence.http_exchanges,
        evidence.files,
        evidence.needles,
        evidence.findings.len()
    );
    assert!(
        evidence.findings.is_empty(),
        "the server side saw secrets:\n{}",
        evidence.findings.join("\n")
    );
    assert!(evidence.frames > 0, "no MQTT packet recorded");
    assert!(evidence.http_exchanges > 0, "no HTTP exchange recorded");
    assert!(evidence.files > 0, "no server file searched");
    assert!(evidence.needles > 0, "nothing searched for");
    println!(
        "{}: secrets per class {:?}",
        evidence.broker, evidence.classes
    );
    let missing: Vec<&str> = sotto_conformance::evidence::SECRET_CLASSES
        .into_iter()
        .filter(|c| evidence.classes.get(*c).copied().unwrap_or(0) == 0)
        .collect();
    assert!(
        missing.is_empty(),
        "secret classes not searched: {missing:?}"
    );
    assert!(
        evidence.acknowledged_envelopes > 0,
        "Req6 at the broker looked at nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiretap_embedded_sees_no_plaintext() {
    let evidence = wiretap::run(Broker::Embedded).await.expect("wiretap run");
    assert_eq!(evidence.broker, "embedded");
    assert_clean(&evidence);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiretap_mosquitto_sees_no_plaintext() {
    if !mosquitto::mosquitto_available() {
        println!("SKIPPED: `mosquitto` binary not found (apt-get install mosquitto)");
        return;
    }
    let evidence = match wiretap::run(Broker::Mosquitto).await {
        Ok(e) => e,
        Err(WiretapError::MosquittoMissing) => unreachable!("checked above"),
        Err(e) => panic!("wiretap run: {e}"),
    };
    assert_eq!(evidence.broker, "mosquitto");
    assert_clean(&evidence);
}

/// A PUBLISH to `i/<user>` at QoS 1 carrying `payload`.
fn publish(user: &str, payload: &[u8]) -> Bytes {
    let topic = format!("i/{user}");
    let mut body = Vec::new();
    body.extend_from_slice(&u16::try_from(topic.len()).unwrap().to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&[0x00, 0x01]);
    body.extend_from_slice(payload);
    let mut packet = vec![0x32];
    let mut len = body.len();
    loop {
        let byte = u8::try_from(len % 128).unwrap();
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    Bytes::from(packet)
}

#[test]
fn wiretap_search_finds_a_planted_canary() {
    let canary = "0123456789abcdef01234567";
    let id = [0xa5u8; 16];
    let needles = [
        Needle::text("canary", "planted", canary),
        Needle::binary("message-id", "planted", &id),
    ];
    let mut payload = b"\x01some envelope bytes ".to_vec();
    payload.extend_from_slice(format!("hi bob {canary}").as_bytes());
    payload.extend_from_slice(hex::encode(id).as_bytes());
    let frames = [
        TapRecord {
            conn: 3,
            direction: TapDirection::ClientToBroker { forwarded: true },
            packet: publish("aaaaaaaaaaaaaaaa", b"ciphertext only"),
        },
        TapRecord {
            conn: 4,
            direction: TapDirection::BrokerToClient,
            packet: publish("aaaaaaaaaaaaaaaa", &payload),
        },
    ];
    let findings = wiretap::search_frames(&needles, &frames);
    assert_eq!(findings.len(), 2, "{findings:?}");
    let canary_at = 2
        + 2
        + 18
        + 2
        + payload
            .windows(canary.len())
            .position(|w| w == canary.as_bytes())
            .unwrap();
    assert_eq!(
        findings[0],
        format!("canary planted in mqtt packet 1 (conn 4, broker->client) at offset {canary_at}")
    );
    assert!(
        findings[1].starts_with("message-id (hex) planted in mqtt packet 1"),
        "{}",
        findings[1]
    );
    // The findings name the needle, never the secret.
    assert!(findings.iter().all(|f| !f.contains(canary)));
    // Nothing is found where nothing is.
    assert!(wiretap::search_frames(&needles, &frames[..1]).is_empty());
    // Every byte offset is tried, the first and the last included.
    let whole = canary.as_bytes();
    assert_eq!(wiretap::search(&needles, "x", whole).len(), 1);
    let mut tail = vec![0u8; 7];
    tail.extend_from_slice(whole);
    assert_eq!(
        wiretap::search(&needles, "x", &tail),
        ["canary planted in x at offset 7"]
    );
    assert_eq!(
        wiretap::search(&needles, "x", &id),
        ["message-id planted in x at offset 0"]
    );
}
