//! Phases 1 and 2, the raw device path: every pair's sender publishes `--messages` payloads to
//! its receiver, plain (no crypto) or sealed with `Device::send` and opened with
//! `Device::receive` (no store). One round runs both; `main` alternates them with phase 3.

use std::time::Duration;

use sotto_client::UserId;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::R;
use crate::args::Args;
use crate::clock::{PLAINTEXT_SIZE, TAG_PLAIN, TAG_SEALED};
use crate::endpoints::{Sent, Source, all_ready, receiver, sender};
use crate::report::{Received, Row, summarize};
use crate::stack::{Creds, Pair, warm_up};

/// Phases 1 and 2 of one round: plain, then encrypted. The rows of the rounds are merged by
/// the caller ([`crate::report::merge`]).
pub async fn round(broker: &'static str, pairs: &[Pair], round: usize, args: &Args) -> R<[Row; 2]> {
    let plain = logged_phase(broker, pairs, round, args, false).await?;
    let sealed = logged_phase(broker, pairs, round, args, true).await?;
    Ok([plain, sealed])
}

/// [`raw_phase`] with a line before and after it on stderr.
async fn logged_phase(
    broker: &'static str,
    pairs: &[Pair],
    round: usize,
    args: &Args,
    encrypted: bool,
) -> R<Row> {
    eprintln!(
        "[{broker}] round {round}: {} ...",
        if encrypted { "encrypted" } else { "plain" }
    );
    let row = raw_phase(broker, pairs, args.messages, encrypted, args.timeout).await?;
    eprintln!("[{broker}]   {:.0} msgs/s; {}", row.rate, row.note);
    Ok(row)
}

/// Phase 1 or 2: every pair's sender publishes `m` payloads to its receiver.
async fn raw_phase(
    broker: &'static str,
    pairs: &[Pair],
    m: usize,
    encrypted: bool,
    timeout: Duration,
) -> R<Row> {
    let tag = if encrypted { TAG_SEALED } else { TAG_PLAIN };
    let deadline = Instant::now() + timeout;
    let (receivers, sources) = start_receivers(pairs, m, encrypted, tag, deadline).await?;
    let (go_tx, go_rx) = watch::channel(false);
    let mut senders = Vec::new();
    let mut ready = Vec::new();
    for (creds, source, to) in sources {
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        senders.push(tokio::spawn(sender(
            creds,
            source,
            to,
            m,
            tx,
            go_rx.clone(),
            deadline,
        )));
    }
    all_ready(ready, "sender not connected in time").await?;
    let start = Instant::now();
    go_tx.send(true)?;
    let mut received = Vec::new();
    for r in receivers {
        received.push(r.await?);
    }
    let mut sent = Vec::new();
    for s in senders {
        sent.push(s.await?);
    }
    Ok(raw_row(
        broker,
        encrypted,
        pairs.len(),
        m,
        start,
        &received,
        &sent,
    ))
}

/// Starts every pair's receiver (with a warmed-up device copy if `encrypted`) and waits for
/// their subscriptions; returns them and what each pair's sender will send.
async fn start_receivers(
    pairs: &[Pair],
    m: usize,
    encrypted: bool,
    tag: u8,
    deadline: Instant,
) -> R<(Vec<JoinHandle<Received>>, Vec<(Creds, Source, UserId)>)> {
    let mut receivers = Vec::new();
    let mut ready = Vec::new();
    let mut sources = Vec::new();
    for p in pairs {
        let (da, db) = if encrypted {
            let mut da = p.a.device().clone();
            let mut db = p.b.device().clone();
            warm_up(&mut da, &mut db)?;
            (Some(da), Some(db))
        } else {
            (None, None)
        };
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        receivers.push(tokio::spawn(receiver(
            p.cb.clone(),
            db,
            tag,
            m,
            deadline,
            tx,
        )));
        let source = Source::Live {
            device: da.map(Box::new),
            to: p.cb.id,
            tag,
        };
        sources.push((p.ca.clone(), source, p.cb.id));
    }
    all_ready(ready, "receiver not subscribed in time").await?;
    Ok((receivers, sources))
}

/// The row of a raw phase: `n` pairs of `m` messages, timed from `start`.
fn raw_row(
    broker: &'static str,
    encrypted: bool,
    n: usize,
    m: usize,
    start: Instant,
    received: &[Received],
    sent: &[Sent],
) -> Row {
    let errors = sent.iter().filter_map(|s| s.error.clone()).collect();
    let mut summary = summarize(start, received, n * m, errors);
    let wire = sent.first().map(|s| s.envelope_len).unwrap_or(0);
    if let Some(t) = sent.first().and_then(|s| s.envelope_type) {
        summary.note.push_str(&format!("; envelope type 0x{t:02x}"));
    }
    let (path, wire) = if encrypted {
        (
            "encrypted, raw device path (Device::send/receive, no store)",
            format!("{wire} (envelope of a {PLAINTEXT_SIZE}-byte text)"),
        )
    } else {
        ("plain MQTT (no crypto)", format!("{wire}"))
    };
    Row::new(broker, path, format!("{n} x {m}"), wire, summary)
}
