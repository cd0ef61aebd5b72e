//! Phases 5 and 6, the full `Client` draining an offline queue: `--drain` texts queued for an
//! offline recipient (sealed and committed by the sender's client, published by its sync), then
//! the recipient's online loop opens, commits into its encrypted store, acknowledges and sends
//! the receipts; timed from `connect` to the last message committed. Phase 6 repeats a smaller
//! drain into two recipients, one with an empty replay cache and one with a full one (LIM-8),
//! alternating for some rounds, and reports the ratio of the median times per message: the
//! commit cost does not grow with the cache.

use std::time::Duration;

use sotto_client::{Chat, Client, ClientEvent};
use tokio::time::Instant;

use crate::R;
use crate::clock::{TAG_CLIENT_DRAIN, plaintext};
use crate::report::{Row, Summary};
use crate::stack::CommitAccounts;

/// Sends per transaction while queueing (the online loop coalesces up to this many too).
const QUEUE_BATCH: usize = 256;

/// What one drain through the full client measured.
pub struct Drained {
    /// Messages committed by the recipient.
    pub count: usize,
    /// From `connect` to the last message committed, seconds.
    pub seconds: f64,
    /// From the first message committed to the last, seconds: the drain without the connection's
    /// set-up (TLS, CONNACK, the broker starting the queue).
    pub steady_seconds: f64,
    /// Resident memory of the whole benchmark process before the drain and at its peak during
    /// it, KiB (the client's share is at most the difference).
    pub rss_kib: (u64, u64),
    /// Why it stopped early, if it did.
    pub error: Option<String>,
}

impl Drained {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.seconds.max(1e-9)
    }
}

/// Queues `d` texts from `sender` for the offline `recipient`, then drains them through the
/// recipient's online loop. Returns what it measured and both accounts.
pub async fn drain_through_client(
    mut sender: Client,
    recipient: Client,
    d: usize,
    timeout: Duration,
) -> R<(Drained, Client, Client)> {
    let to = recipient.user_id();
    // The receipts of an earlier drain first: the session is then confirmed, and every text
    // below is an ordinary data envelope (type 0x11), whatever ran before.
    sender.sync(timeout).await?;
    let seqs: Vec<usize> = (0..d).collect();
    for chunk in seqs.chunks(QUEUE_BATCH) {
        let texts: Vec<(Chat, String)> = chunk
            .iter()
            .map(|seq| (Chat::User(to), plaintext(TAG_CLIENT_DRAIN, *seq)))
            .collect();
        for r in sender.send_many(&texts)? {
            r?;
        }
    }
    // Publish everything (a sync ends when the broker has been quiet for a moment; run it again
    // until every row is out, within the phase's time).
    let until = Instant::now() + timeout;
    let mut published = 0;
    let mut held = 0;
    while published < d && Instant::now() < until {
        let report = sender.sync(timeout).await?;
        published += report.published;
        held += report
            .events
            .iter()
            .filter(|e| matches!(e, ClientEvent::Held { .. }))
            .count();
    }
    if published < d {
        return Err(format!(
            "queued {published} of {d} before the drain ({held} refused by the service)"
        )
        .into());
    }

    let deadline = Instant::now() + timeout;
    let rss_before = rss_kib();
    let mut peak = rss_before;
    let start = Instant::now();
    let (online, mut events) = recipient.connect();
    let mut count = 0;
    let mut last = start;
    let mut first = None;
    let mut error = None;
    let mut sample = tokio::time::interval(Duration::from_millis(20));
    while count < d {
        tokio::select! {
            ev = tokio::time::timeout_at(deadline, events.recv()) => match ev {
                Err(_) => {
                    error = Some("phase timeout".to_owned());
                    break;
                }
                Ok(None) => {
                    error = Some("recipient session ended".to_owned());
                    break;
                }
                Ok(Some(ClientEvent::Message(m))) if m.text.as_bytes().first() == Some(&TAG_CLIENT_DRAIN) => {
                    count += 1;
                    last = Instant::now();
                    first.get_or_insert(last);
                }
                Ok(Some(_)) => {}
            },
            _ = sample.tick() => peak = peak.max(rss_kib()),
        }
    }
    peak = peak.max(rss_kib());
    let recipient = online.shutdown().await?;
    Ok((
        Drained {
            count,
            seconds: last.duration_since(start).as_secs_f64(),
            steady_seconds: last.duration_since(first.unwrap_or(last)).as_secs_f64(),
            rss_kib: (rss_before, peak),
            error,
        },
        sender,
        recipient,
    ))
}

/// The table row of a drain through the full client.
pub fn drain_row(broker: &'static str, d: usize, wire: &str, what: &Drained) -> Row {
    let mut note = format!(
        "{}/{d} committed in {:.2} s, from CONNECT; process RSS {} -> peak {} MiB",
        what.count,
        what.seconds,
        what.rss_kib.0 / 1024,
        what.rss_kib.1 / 1024
    );
    if let Some(e) = &what.error {
        note.push_str(&format!("; stopped: {e}"));
    }
    Row::new(
        broker,
        "drain: full Client (open, commit to SQLCipher, ack, receipts)",
        format!("1 x {d}"),
        wire.to_owned(),
        Summary {
            rate: what.rate(),
            p50: None,
            p99: None,
            note,
            count: what.count,
            seconds: what.seconds,
            latencies: Vec::new(),
        },
    )
}

/// Phase 6: the time per message of drains of `k` into a recipient whose replay cache is empty
/// and into one whose cache is full (LIM-8 entries, committed beforehand), alternating for
/// `rounds` rounds so that both stores grow alike; the median of the rounds' ratios, full / empty
/// (a slow moment of the machine then spoils one round, not the figure).
pub async fn commit_cost(
    broker: &'static str,
    accounts: CommitAccounts,
    k: usize,
    rounds: usize,
    timeout: Duration,
) -> R<(Row, f64, CommitAccounts)> {
    let CommitAccounts {
        mut sender,
        empty,
        full,
    } = accounts;
    let mut recipients = [Some(empty), Some(full)];
    // A first text to each, not measured: the sessions start (a first message needs room in the
    // replay cache, LIM-8), and the texts measured below are ordinary data envelopes.
    for slot in &mut recipients {
        sender = drain_into(sender, slot, 1, timeout).await?.1;
    }
    if let Some(full) = &mut recipients[1] {
        full.fill_replay_cache(sotto_core::limits::MAX_REPLAY_ENTRIES)?;
    }
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut errors = Vec::new();
    let mut last = None;
    for _ in 0..rounds.max(1) {
        for (i, which) in ["empty", "full"].into_iter().enumerate() {
            let (d, s) = drain_into(sender, &mut recipients[i], k, timeout).await?;
            sender = s;
            // The messages after the first, over the time after the first: the cost of a commit,
            // without the connection's set-up, which is the same whatever the cache holds.
            times[i].push(d.steady_seconds / d.count.saturating_sub(1).max(1) as f64);
            if let Some(e) = &d.error {
                errors.push(format!("{which}: stopped: {e}"));
            }
            last = Some(d);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    // Each round's two drains ran back to back: the ratio of a round compares like with like.
    let ratios: Vec<f64> = times[1]
        .iter()
        .zip(&times[0])
        .map(|(f, e)| f / e.max(1e-12))
        .collect();
    let ratio = median(ratios);
    let (per_empty, per_full) = (median(times[0].clone()), median(times[1].clone()));
    let ms = |v: &[f64]| {
        v.iter()
            .map(|t| format!("{:.4}", t * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut note = format!(
        "median {:.4} ms per message with an empty replay cache, {:.4} ms with a full one ({} \
         entries); rounds, ms per message: empty {}; full {}",
        per_empty * 1e3,
        per_full * 1e3,
        sotto_core::limits::MAX_REPLAY_ENTRIES,
        ms(&times[0]),
        ms(&times[1]),
    );
    for e in errors {
        note.push_str(&format!("; {e}"));
    }
    let last = last.ok_or("no round")?;
    let row = Row::new(
        broker,
        "commit cost: full Client drain, replay cache full vs empty",
        format!("{} rounds x 2 x {k}", rounds.max(1)),
        "as above".into(),
        Summary {
            rate: 1.0 / per_full.max(1e-12),
            p50: None,
            p99: None,
            note,
            count: last.count,
            seconds: last.seconds,
            latencies: Vec::new(),
        },
    );
    let [Some(empty), Some(full)] = recipients else {
        return Err("recipient".into());
    };
    Ok((
        row,
        ratio,
        CommitAccounts {
            sender,
            empty,
            full,
        },
    ))
}

/// [`drain_through_client`] into the recipient held in `slot`, which gets it back afterwards.
async fn drain_into(
    sender: Client,
    slot: &mut Option<Client>,
    k: usize,
    timeout: Duration,
) -> R<(Drained, Client)> {
    let recipient = slot.take().ok_or("recipient")?;
    let (d, sender, recipient) = drain_through_client(sender, recipient, k, timeout).await?;
    *slot = Some(recipient);
    Ok((d, sender))
}

/// The process's resident memory, KiB (0 where /proc is not there).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
