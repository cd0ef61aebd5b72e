//! The raw MQTT endpoints of phases 1, 2 and 4, with the client's connection settings: the
//! [`receiver`] (subscribes to its inbox, opens or reads each message, acknowledges it after
//! opening) and the [`sender`] (publishes the payloads of a [`Source`] at QoS 1 and counts the
//! PUBACKs).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand_core::OsRng;
use rumqttc::{AsyncClient, Event, EventLoop, Outgoing, Packet, QoS};
use sotto_client::UserId;
use sotto_core::{Content, Device};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::R;
use crate::clock::{now_ms, parse, plaintext};
use crate::report::Received;
use crate::stack::{Creds, SETUP_WAIT};

/// rumqttc request channel capacity (publishes waiting for the in-flight window, acks).
const REQUEST_CAPACITY: usize = 64;

/// Waits up to [`SETUP_WAIT`] for each of `ready` (a receiver's SUBACK, a sender's CONNACK);
/// `late` is the error if one does not come in time.
pub async fn all_ready(ready: Vec<oneshot::Receiver<()>>, late: &'static str) -> R<()> {
    for r in ready {
        tokio::time::timeout(SETUP_WAIT, r)
            .await
            .map_err(|_| late)??;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------- receiver

/// Connects as `creds`, subscribes to the own inbox, and opens (`device`) or reads (plain)
/// messages tagged `tag` until `expect` arrived or the deadline; acknowledges each after opening
/// (RX-4). `ready` fires at the SUBACK.
pub async fn receiver(
    creds: Creds,
    mut device: Option<Device>,
    tag: u8,
    expect: usize,
    deadline: Instant,
    ready: oneshot::Sender<()>,
) -> Received {
    let (client, mut el) = AsyncClient::new(creds.options(), REQUEST_CAPACITY);
    let inbox = creds.id.inbox_topic();
    let mut out = Received::default();
    let mut ready = Some(ready);
    let mut acks: VecDeque<rumqttc::Publish> = VecDeque::new();
    while ready.is_some() || out.count < expect {
        let ev = match tokio::time::timeout_at(deadline, el.poll()).await {
            Err(_) => {
                out.error = Some("phase timeout".into());
                break;
            }
            Ok(Err(e)) => {
                out.error = Some(format!("connection: {e}"));
                break;
            }
            Ok(Ok(ev)) => ev,
        };
        match ev {
            Event::Incoming(Packet::ConnAck(_)) => {
                if let Err(e) = client.try_subscribe(inbox.clone(), QoS::AtLeastOnce) {
                    out.error = Some(format!("subscribe: {e}"));
                    break;
                }
            }
            Event::Incoming(Packet::SubAck(_)) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            Event::Incoming(Packet::Publish(p)) => {
                out.record(open(device.as_mut(), &p.payload, tag));
                acks.push_back(p);
            }
            _ => {}
        }
        while let Some(p) = acks.front() {
            if client.try_ack(p).is_err() {
                break;
            }
            acks.pop_front();
        }
    }
    hang_up(&client, &mut el, &acks).await;
    out
}

/// The send time of a payload of this phase (tagged `tag`): opened with `device`, or read as
/// plain text; `None` if it does not open or belongs to another phase.
fn open(device: Option<&mut Device>, payload: &[u8], tag: u8) -> Option<u64> {
    match device {
        Some(d) => match d.receive(now_ms(), payload) {
            Ok(inc) => match &inc.content {
                Content::Text(t) => parse(t, tag),
                _ => None,
            },
            Err(_) => None,
        },
        None => std::str::from_utf8(payload)
            .ok()
            .and_then(|t| parse(t, tag)),
    }
}

/// Hands the remaining acks over, then DISCONNECTs (FIFO: the acks go out first); bounded.
async fn hang_up(client: &AsyncClient, el: &mut EventLoop, acks: &VecDeque<rumqttc::Publish>) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for p in acks {
            let _ = client.ack(p).await;
        }
        let _ = client.try_disconnect();
        loop {
            match el.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = client.try_ack(&p);
                }
                Ok(_) => {}
            }
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------- sender

/// What a sender did.
#[derive(Default)]
pub struct Sent {
    /// Publishes handed to rumqttc.
    pub published: usize,
    /// PUBACKs received.
    pub acked: usize,
    /// Size of the first payload.
    pub envelope_len: usize,
    /// Envelope type of the measured messages (0x11 data, 0x12 first, 0x13 epoch start), if
    /// encrypted.
    pub envelope_type: Option<u8>,
    /// The first error, if any.
    pub error: Option<String>,
}

/// Where a sender's payloads come from.
pub enum Source {
    /// Built at send time: the tagged plaintext, sealed for `to` if there is a device.
    Live {
        /// The sender's device (warmed up), or `None` for plain MQTT.
        device: Option<Box<Device>>,
        /// The recipient.
        to: UserId,
        /// The phase's tag.
        tag: u8,
    },
    /// Prepared beforehand.
    Prepared(Vec<Vec<u8>>),
}

impl Source {
    fn payload(&mut self, seq: usize) -> R<Vec<u8>> {
        match self {
            Source::Live { device, to, tag } => {
                let text = plaintext(*tag, seq);
                match device {
                    Some(d) => Ok(d
                        .send(&mut OsRng, now_ms(), to, &Content::Text(text))?
                        .envelope),
                    None => Ok(text.into_bytes()),
                }
            }
            Source::Prepared(v) => Ok(std::mem::take(v.get_mut(seq).ok_or("no payload")?)),
        }
    }

    /// Sealed at send time (the envelope type is reported).
    fn is_sealed(&self) -> bool {
        matches!(
            self,
            Source::Live {
                device: Some(_),
                ..
            }
        )
    }
}

/// Polls a sender's event loop, counting PUBACKs; `connected` fires at the CONNACK.
fn drive_sender(
    client: AsyncClient,
    mut el: EventLoop,
    acked: Arc<AtomicUsize>,
    connected: oneshot::Sender<()>,
) -> JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let mut connected = Some(connected);
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(c) = connected.take() {
                        let _ = c.send(());
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                // The sender's own inbox (persistent subscription from signup): ack and ignore.
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = client.try_ack(&p);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => return None,
                Ok(_) => {}
                Err(e) => return Some(format!("connection: {e}")),
            }
        }
    })
}

/// Connects as `creds`, signals `ready`, waits for `go`, publishes `count` payloads to `to`'s
/// inbox at QoS 1 and waits for their PUBACKs (or the deadline).
pub async fn sender(
    creds: Creds,
    mut source: Source,
    to: UserId,
    count: usize,
    ready: oneshot::Sender<()>,
    mut go: watch::Receiver<bool>,
    deadline: Instant,
) -> Sent {
    let mut out = Sent::default();
    let (client, el) = AsyncClient::new(creds.options(), REQUEST_CAPACITY);
    let acked = Arc::new(AtomicUsize::new(0));
    let (conn_tx, conn_rx) = oneshot::channel();
    let driver = drive_sender(client.clone(), el, acked.clone(), conn_tx);
    if tokio::time::timeout(SETUP_WAIT, conn_rx).await.is_err() {
        out.error = Some("no CONNACK".into());
        driver.abort();
        return out;
    }
    let _ = ready.send(());
    let _ = go.wait_for(|g| *g).await;
    publish_all(&client, &mut source, &to, count, deadline, &mut out).await;
    while acked.load(Ordering::SeqCst) < out.published && Instant::now() < deadline {
        if driver.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    out.acked = acked.load(Ordering::SeqCst);
    let _ = client.try_disconnect();
    if let Ok(Ok(Some(e))) = tokio::time::timeout(Duration::from_secs(5), driver).await {
        if out.error.is_none() && out.acked < out.published {
            out.error = Some(e);
        }
    }
    out
}

/// Publishes `count` payloads of `source` to `to`'s inbox at QoS 1 until the deadline, noting
/// in `out` what was published and the first payload's size and envelope type.
async fn publish_all(
    client: &AsyncClient,
    source: &mut Source,
    to: &UserId,
    count: usize,
    deadline: Instant,
    out: &mut Sent,
) {
    let topic = to.inbox_topic();
    for seq in 0..count {
        let payload = match source.payload(seq) {
            Ok(p) => p,
            Err(e) => {
                out.error = Some(format!("seal: {e}"));
                break;
            }
        };
        if seq == 0 {
            out.envelope_len = payload.len();
            if source.is_sealed() {
                out.envelope_type = payload.first().copied();
            }
        }
        let publish = client.publish(topic.clone(), QoS::AtLeastOnce, false, payload);
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(())) => out.published += 1,
            Ok(Err(e)) => {
                out.error = Some(format!("publish: {e}"));
                break;
            }
            Err(_) => {
                out.error = Some("phase timeout".into());
                break;
            }
        }
    }
}
