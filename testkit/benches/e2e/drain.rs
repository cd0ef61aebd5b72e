//! Phase 4, the drain: `--drain` envelopes sealed beforehand and queued for an offline recipient
//! (its persistent session), then the recipient connects and opens each (raw device path). Two
//! rows: the queueing (publish + PUBACK) and the drain.

use std::time::Duration;

use rand_core::OsRng;
use sotto_client::{Client, UserId};
use sotto_core::{Content, Device};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::R;
use crate::clock::{TAG_DRAIN, now_ms, plaintext};
use crate::endpoints::{Sent, Source, all_ready, receiver, sender};
use crate::report::{Row, summarize};
use crate::stack::{Creds, SETUP_WAIT, warm_up};

/// Phase 4: `d` envelopes queued for an offline recipient, then drained (each opened).
pub async fn drain_phase(
    broker: &'static str,
    sender_account: &Client,
    recipient_account: &Client,
    d: usize,
    timeout: Duration,
) -> R<Vec<Row>> {
    let cs = Creds::of(sender_account)?;
    let cr = Creds::of(recipient_account)?;
    let mut ds = sender_account.device().clone();
    let mut dr = recipient_account.device().clone();
    warm_up(&mut ds, &mut dr)?;
    subscribe_once(&cr).await?;

    let seal_start = Instant::now();
    let mut envelopes = Vec::with_capacity(d);
    for seq in 0..d {
        let text = plaintext(TAG_DRAIN, seq);
        envelopes.push(
            ds.send(&mut OsRng, now_ms(), &cr.id, &Content::Text(text))?
                .envelope,
        );
    }
    let seal_s = seal_start.elapsed().as_secs_f64();
    let wire = envelopes.first().map(Vec::len).unwrap_or(0);

    let (sent, queue_s) = queue(cs, envelopes, cr.id, timeout).await?;
    let queued = queue_row(broker, sent, queue_s, d as f64 / seal_s.max(1e-9), d, wire);
    let drained = drain(broker, cr, dr, d, timeout, wire).await;
    Ok(vec![queued, drained])
}

/// The recipient's persistent session exists (signup connected once); connects once more so
/// that its subscription is certainly in place, then goes offline.
async fn subscribe_once(recipient: &Creds) -> R<()> {
    let (tx, _rx) = oneshot::channel();
    let setup = receiver(
        recipient.clone(),
        None,
        TAG_DRAIN,
        0,
        Instant::now() + SETUP_WAIT,
        tx,
    )
    .await;
    match setup.error {
        Some(e) => Err(format!("recipient setup: {e}").into()),
        None => Ok(()),
    }
}

/// Publishes the prepared `envelopes` to `to`'s inbox; what the sender did and how long it
/// took, from the go to the last PUBACK.
async fn queue(
    sender_creds: Creds,
    envelopes: Vec<Vec<u8>>,
    to: UserId,
    timeout: Duration,
) -> R<(Sent, f64)> {
    let d = envelopes.len();
    let deadline = Instant::now() + timeout;
    let (tx, rx) = oneshot::channel();
    let (go_tx, go_rx) = watch::channel(false);
    let queue = tokio::spawn(sender(
        sender_creds,
        Source::Prepared(envelopes),
        to,
        d,
        tx,
        go_rx,
        deadline,
    ));
    all_ready(vec![rx], "drain sender not connected in time").await?;
    let queue_start = Instant::now();
    go_tx.send(true)?;
    let sent = queue.await?;
    Ok((sent, queue_start.elapsed().as_secs_f64()))
}

/// The row of the queueing: `sent` of `d` envelopes of `wire` bytes in `queue_s` seconds, and
/// the sealing rate beforehand.
fn queue_row(
    broker: &'static str,
    sent: Sent,
    queue_s: f64,
    seal_rate: f64,
    d: usize,
    wire: usize,
) -> Row {
    let rate = if queue_s > 0.0 {
        sent.acked as f64 / queue_s
    } else {
        0.0
    };
    let mut note = format!(
        "{}/{d} PUBACKed in {queue_s:.2} s; sealing beforehand: {seal_rate:.0} msgs/s",
        sent.acked
    );
    if let Some(e) = sent.error {
        note.push_str(&format!("; {e}"));
    }
    Row {
        broker,
        path: "queue for an offline recipient (publish + PUBACK)".into(),
        load: format!("1 x {d}"),
        wire: format!("{wire}"),
        rate,
        p50_ms: None,
        p99_ms: None,
        note,
        count: sent.acked,
        seconds: queue_s,
        latencies: Vec::new(),
    }
}

/// The recipient connects and opens the `d` queued envelopes; the row of the drain, timed from
/// the CONNECT (no latencies: the messages waited in the queue).
async fn drain(
    broker: &'static str,
    recipient: Creds,
    device: Device,
    d: usize,
    timeout: Duration,
    wire: usize,
) -> Row {
    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    let (tx, _rx) = oneshot::channel();
    let drained = receiver(recipient, Some(device), TAG_DRAIN, d, deadline, tx).await;
    let first_s = drained
        .first_at
        .map(|f| f.duration_since(start).as_secs_f64());
    let mut summary = summarize(start, std::slice::from_ref(&drained), d, Vec::new());
    summary.note.push_str(&format!(
        "; from CONNECT; first message after {:.2} s",
        first_s.unwrap_or(0.0)
    ));
    Row {
        p50_ms: None,
        p99_ms: None,
        latencies: Vec::new(),
        ..Row::new(
            broker,
            "drain: recipient connects, opens each (raw device path)",
            format!("1 x {d}"),
            format!("{wire}"),
            summary,
        )
    }
}
