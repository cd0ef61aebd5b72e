//! Req6 at the broker: after its recipient's PUBACK, no copy of an envelope remains in the
//! broker, read from the broker's own state (not from the relay, not from the front's tap).
//!
//! ```text
//!  tap: broker -> recipient PUBLISH (conn c, pkid q, envelope E)  +  recipient -> broker PUBACK q on c
//!       => E is acknowledged
//!  embedded broker: MessageService::embedded_held_envelopes()  (the engine's inboxes)  must not hold E
//!  Mosquitto:       run/mosquitto.db rewritten after the last PUBACK (autosave, AUTOSAVE_INTERVAL_S;
//!                   a dump of its in-memory store)                                      must not hold E
//!  NATS:            every message of the stream $MQTT_msgs (STREAM.INFO, then STREAM.MSG.GET
//!                   per sequence number; JetStream's own view)                          must not hold E
//! ```
//!
//! The control that keeps this from passing vacuously is in the scenario: while B is offline, the
//! envelope queued for B must be found by the same reading of the broker's state.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sotto_server::Service;
use sotto_server::broker::front::{TapDirection, TapRecord};
use sotto_server::broker::mosquitto::AUTOSAVE_INTERVAL_S;
use sotto_wire::mqtt::{self, Packet, PacketType};

use super::WiretapError;
use super::needles::offsets;

/// How long NATS may take to drop an acknowledged message from its stream.
const NATS_ACK_APPLY: Duration = Duration::from_secs(5);

/// What the broker's state said about the acknowledged envelopes.
pub(super) struct Retention {
    /// Envelopes delivered and acknowledged during the run.
    pub(super) acknowledged: usize,
    /// Where the state was read.
    pub(super) source: String,
    /// One finding per acknowledged envelope the broker still holds.
    pub(super) findings: Vec<String>,
}

/// The envelopes the broker delivered that their recipient acknowledged, in delivery order.
pub(super) fn acknowledged(frames: &[TapRecord]) -> Vec<Vec<u8>> {
    let mut delivered: BTreeMap<(u64, u16), Vec<u8>> = BTreeMap::new();
    let mut acked = Vec::new();
    for r in frames {
        match (r.direction, mqtt::parse(&r.packet)) {
            (TapDirection::BrokerToClient, Ok(Packet::Publish(p))) => {
                if let (Some(pkid), Ok(payload)) = (p.pkid, mqtt::publish_payload(&r.packet)) {
                    delivered.insert((r.conn, pkid), payload.to_vec());
                }
            }
            (
                TapDirection::ClientToBroker { forwarded: true },
                Ok(Packet::Ack {
                    kind: PacketType::PubAck,
                    pkid,
                }),
            ) => {
                if let Some(e) = delivered.remove(&(r.conn, pkid)) {
                    acked.push(e);
                }
            }
            _ => {}
        }
    }
    acked
}

/// The envelopes the broker holds now, as bytes to search: the embedded engine's inboxes, or
/// Mosquitto's persistence file once rewritten after `since`.
pub(super) async fn broker_state(
    service: &Service,
    since: SystemTime,
) -> Result<(String, Vec<Vec<u8>>), WiretapError> {
    if let Some(held) = service.message_service().embedded_held_envelopes() {
        return Ok(("the embedded broker's inboxes".to_owned(), held));
    }
    if let Some(cluster) = service.message_service().nats() {
        let held = cluster
            .held_payloads()
            .await
            .map_err(|e| WiretapError::Scenario(format!("reading NATS's message stream: {e}")))?;
        return Ok((
            "the NATS cluster's MQTT message stream ($MQTT_msgs, every held message through \
             the JetStream API)"
                .to_owned(),
            held,
        ));
    }
    let file = service.mosquitto_persistence_file().ok_or_else(|| {
        WiretapError::Scenario("no broker state to read (neither embedded nor Mosquitto)".into())
    })?;
    let bytes = rewritten_after(&file, since).await?;
    Ok((
        format!("Mosquitto's persistence file {}", file.display()),
        vec![bytes],
    ))
}

/// Waits (up to five autosave intervals) until `file` was written after `since`, then reads it.
async fn rewritten_after(file: &Path, since: SystemTime) -> Result<Vec<u8>, WiretapError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5 * AUTOSAVE_INTERVAL_S + 2);
    loop {
        let written = std::fs::metadata(file).and_then(|m| m.modified()).ok();
        // One second of margin: file times may be coarser than the clock.
        if written.is_some_and(|w| w >= since + Duration::from_secs(1)) {
            return Ok(std::fs::read(file)?);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(WiretapError::Scenario(format!(
                "Mosquitto did not rewrite {} within {} s",
                file.display(),
                5 * AUTOSAVE_INTERVAL_S + 2
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the broker's state after every delivery was acknowledged and looks for each
/// acknowledged envelope in it.
pub(super) async fn check(
    service: &Service,
    frames: &[TapRecord],
    last_ack: SystemTime,
) -> Result<Retention, WiretapError> {
    let acked = acknowledged(frames);
    if acked.is_empty() {
        return Err(WiretapError::Scenario(
            "no delivery was acknowledged: nothing to check Req6 on".into(),
        ));
    }
    // NATS drops an acknowledged message once its Raft group has applied the ack: read again
    // for up to NATS_ACK_APPLY while an acknowledged envelope is still there.
    let deadline = tokio::time::Instant::now() + NATS_ACK_APPLY;
    let (source, findings) = loop {
        let (source, state) = broker_state(service, last_ack).await?;
        let mut findings = Vec::new();
        for (i, e) in acked.iter().enumerate() {
            if state.iter().any(|h| !offsets(h, e).is_empty()) {
                findings.push(format!(
                    "acknowledged envelope {} of {} ({} bytes) still held: {source} (Req6, BROKER-4)",
                    i + 1,
                    acked.len(),
                    e.len()
                ));
            }
        }
        let nats = service.message_service().nats().is_some();
        if findings.is_empty() || !nats || tokio::time::Instant::now() >= deadline {
            break (source, findings);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok(Retention {
        acknowledged: acked.len(),
        source,
        findings,
    })
}

/// Whether the broker's state holds `envelope` now (the scenario's control while it is queued).
pub(super) async fn holds(
    service: &Service,
    envelope: &[u8],
    since: SystemTime,
) -> Result<bool, WiretapError> {
    let (_, state) = broker_state(service, since).await?;
    Ok(state.iter().any(|h| !offsets(h, envelope).is_empty()))
}
