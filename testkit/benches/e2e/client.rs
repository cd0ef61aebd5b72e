//! Phase 3, the full `Client` on both sides: `Online::send` (a window of calls in flight, which
//! the online loop commits together) seals and commits to SQLCipher and the outbox;
//! the receiver's online loop opens, commits, acknowledges and sends a receipt back, counted at
//! the sender as `Delivered`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sotto_client::{Client, ClientEvent, Config, Online, UserId};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::R;
use crate::clock::{TAG_CLIENT, parse, plaintext};
use crate::report::{Received, Row, summarize};
use crate::stack::SETUP_WAIT;

/// A client's online loop and its events.
type Session = (Online, mpsc::Receiver<ClientEvent>);

/// Phase 3, one round: every pair's sender sends `k` messages through its online loop to its
/// receiver. Returns the round's row and the clients (sender, receiver), shut down, for the next.
pub async fn client_phase(
    broker: &'static str,
    pairs: Vec<(Client, Client)>,
    k: usize,
    timeout: Duration,
) -> R<(Row, Vec<(Client, Client)>)> {
    let deadline = Instant::now() + timeout;
    let n = pairs.len();
    let (go_tx, go_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let delivered = Arc::new(AtomicUsize::new(0));
    for (a, b) in pairs {
        let to = b.user_id();
        let [(ha, ea), (hb, eb)] = connect_pair(a, b).await?;
        tokio::spawn(count_receipts(ea, delivered.clone()));
        receivers.push(tokio::spawn(receive(hb, eb, k, deadline)));
        senders.push(tokio::spawn(send(ha, to, k, go_rx.clone(), deadline)));
    }
    let start = Instant::now();
    go_tx.send(true)?;
    let mut received = Vec::new();
    let mut online = Vec::new();
    let mut errors = Vec::new();
    for (r, s) in receivers.into_iter().zip(senders) {
        let (out, hb) = r.await?;
        received.push(out);
        let (error, ha) = s.await?;
        errors.extend(error);
        online.push((ha, hb));
    }
    let receipts = receipts_back(&delivered, n * k).await;
    let mut clients = Vec::new();
    for (ha, hb) in online {
        clients.push((ha.shutdown().await?, hb.shutdown().await?));
    }
    let mut summary = summarize(start, &received, n * k, errors);
    summary.note.push_str(&format!(
        "; receipts back at the senders: {receipts}/{}",
        n * k
    ));
    let row = Row::new(
        broker,
        "encrypted, full Client (SQLCipher commits, receipts)",
        format!("{n} x {k}"),
        "as above".into(),
        summary,
    );
    Ok((row, clients))
}

/// Connects both accounts of a pair, then waits for each to be connected.
///
/// Not `sotto_testkit::go_online`: its collector takes the events, and this phase needs them
/// itself (the receiver times each message as it arrives, the sender counts the receipts).
async fn connect_pair(a: Client, b: Client) -> R<[Session; 2]> {
    let mut sessions = [a.connect(), b.connect()];
    for (_, events) in &mut sessions {
        tokio::time::timeout(SETUP_WAIT, connected(events))
            .await
            .map_err(|_| "client not connected in time")??;
    }
    Ok(sessions)
}

/// Until the session is connected.
async fn connected(events: &mut mpsc::Receiver<ClientEvent>) -> Result<(), &'static str> {
    while let Some(ev) = events.recv().await {
        if matches!(ev, ClientEvent::Connected { .. }) {
            return Ok(());
        }
    }
    Err("session ended before connecting")
}

/// The sender's events: counts the receipts (`Delivered`) as they come back.
async fn count_receipts(mut events: mpsc::Receiver<ClientEvent>, delivered: Arc<AtomicUsize>) {
    while let Some(ev) = events.recv().await {
        if matches!(ev, ClientEvent::Delivered { .. }) {
            delivered.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The receiver: times the messages of this phase until `k` arrived or the deadline; returns
/// what it saw and its online loop.
async fn receive(
    handle: Online,
    mut events: mpsc::Receiver<ClientEvent>,
    k: usize,
    deadline: Instant,
) -> (Received, Online) {
    let mut out = Received::default();
    while out.count < k {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => {
                out.error = Some("phase timeout".into());
                break;
            }
            Ok(None) => {
                out.error = Some("receiver session ended".into());
                break;
            }
            Ok(Some(ClientEvent::Message(msg))) => out.record(parse(&msg.text, TAG_CLIENT)),
            Ok(Some(_)) => {}
        }
    }
    (out, handle)
}

/// The sender: waits for `go`, then sends `k` messages to `to` with up to the client's window
/// (`Config::max_inflight`) of calls in flight, as an app that queues messages does (the loop
/// commits the sends queued together in one transaction); returns the first error and its online
/// loop.
async fn send(
    handle: Online,
    to: UserId,
    k: usize,
    mut go: watch::Receiver<bool>,
    deadline: Instant,
) -> (Option<String>, Online) {
    let _ = go.wait_for(|g| *g).await;
    let handle = Arc::new(handle);
    let window = Arc::new(Semaphore::new(Config::default().max_inflight));
    let mut calls = Vec::with_capacity(k);
    let mut error = None;
    for seq in 0..k {
        let permit = match tokio::time::timeout_at(deadline, window.clone().acquire_owned()).await {
            Ok(Ok(p)) => p,
            _ => {
                error = Some("phase timeout".into());
                break;
            }
        };
        let h = handle.clone();
        calls.push(tokio::spawn(async move {
            let r = tokio::time::timeout_at(deadline, h.send(to, plaintext(TAG_CLIENT, seq))).await;
            drop(permit);
            match r {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(format!("send: {e}")),
                Err(_) => Some("phase timeout".to_owned()),
            }
        }));
    }
    for c in calls {
        if let Ok(Some(e)) = c.await {
            error.get_or_insert(e);
        }
    }
    let handle = match Arc::try_unwrap(handle) {
        Ok(h) => h,
        Err(_) => unreachable!("every call has returned"),
    };
    (error, handle)
}

/// Gives the receipts a moment (10 s) to come back (reported, not timed); how many did.
async fn receipts_back(delivered: &AtomicUsize, expected: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    delivered.load(Ordering::SeqCst)
}
