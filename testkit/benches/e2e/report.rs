//! The figures and the printed report: what a receiver saw ([`Received`]), a phase's
//! [`Summary`], the table's [`Row`]s and the merging of rounds, percentiles, and everything
//! printed on stdout (preamble, table, throughput ratios).

use sotto_client::Config;
use sotto_server::Broker;
use tokio::time::Instant;

use crate::args::Args;
use crate::clock::{PLAINTEXT_SIZE, micros};

/// What a receiver saw.
#[derive(Default)]
pub struct Received {
    /// Messages of this phase opened.
    pub count: usize,
    /// Latencies, µs.
    pub latencies: Vec<u64>,
    /// When the first message of this phase was opened.
    pub first_at: Option<Instant>,
    /// When the last message of this phase was opened.
    pub last_at: Option<Instant>,
    /// Envelopes that did not open or were not of this phase (stale redeliveries).
    pub other: usize,
    /// Why the receiver stopped early, if it did.
    pub error: Option<String>,
}

impl Received {
    /// Counts a message of this phase sent at `sent` ([`micros`]), or one that did not open or
    /// was of another phase (`None`).
    pub fn record(&mut self, sent: Option<u64>) {
        match sent {
            Some(t) => {
                let now = Instant::now();
                self.latencies.push(micros().saturating_sub(t));
                self.count += 1;
                self.first_at.get_or_insert(now);
                self.last_at = Some(now);
            }
            None => self.other += 1,
        }
    }
}

/// A phase's figures.
pub struct Summary {
    /// Messages per second.
    pub rate: f64,
    /// Median latency, ms.
    pub p50: Option<f64>,
    /// 99th percentile of the latency, ms.
    pub p99: Option<f64>,
    /// Duration, shortfall, ignored messages, first error.
    pub note: String,
    /// Messages counted.
    pub count: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Latencies, µs, sorted.
    pub latencies: Vec<u64>,
}

/// Throughput and latency of a phase: `received` over the time from `start` to the last open.
pub fn summarize(
    start: Instant,
    received: &[Received],
    expected: usize,
    errors: Vec<String>,
) -> Summary {
    let total: usize = received.iter().map(|r| r.count).sum();
    let end = received.iter().filter_map(|r| r.last_at).max();
    let elapsed = end.map(|e| e.duration_since(start).as_secs_f64());
    let rate = match elapsed {
        Some(s) if s > 0.0 => total as f64 / s,
        _ => 0.0,
    };
    let mut lat: Vec<u64> = received
        .iter()
        .flat_map(|r| r.latencies.iter().copied())
        .collect();
    lat.sort_unstable();
    let other: usize = received.iter().map(|r| r.other).sum();
    let mut note = if total == expected {
        format!("{:.2} s", elapsed.unwrap_or(0.0))
    } else {
        format!(
            "PARTIAL: {total}/{expected} in {:.2} s",
            elapsed.unwrap_or(0.0)
        )
    };
    if other > 0 {
        note.push_str(&format!("; {other} stale/unopened ignored"));
    }
    let mut errors: Vec<String> = errors
        .into_iter()
        .chain(received.iter().filter_map(|r| r.error.clone()))
        .collect();
    errors.dedup();
    if let Some(e) = errors.first() {
        note.push_str(&format!("; {e}"));
    }
    Summary {
        rate,
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        note,
        count: total,
        seconds: elapsed.unwrap_or(0.0),
        latencies: lat,
    }
}

/// One line of the table.
pub struct Row {
    /// The broker's name.
    pub broker: &'static str,
    /// What was measured.
    pub path: String,
    /// Pairs x messages (x rounds).
    pub load: String,
    /// Bytes on the wire per message.
    pub wire: String,
    /// Messages per second.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile of the latency, ms.
    pub p99_ms: Option<f64>,
    /// Notes.
    pub note: String,
    /// Messages counted, seconds measured, latencies (µs): to merge rounds.
    pub count: usize,
    /// Seconds measured.
    pub seconds: f64,
    /// Latencies, µs.
    pub latencies: Vec<u64>,
}

impl Row {
    /// The row of a phase summed up in `s`.
    pub fn new(broker: &'static str, path: &str, load: String, wire: String, s: Summary) -> Row {
        Row {
            broker,
            path: path.into(),
            load,
            wire,
            rate: s.rate,
            p50_ms: s.p50,
            p99_ms: s.p99,
            note: s.note,
            count: s.count,
            seconds: s.seconds,
            latencies: s.latencies,
        }
    }
}

/// One row for several rounds of the same measurement: messages over summed time, pooled
/// latencies.
pub fn merge(mut rows: Vec<Row>) -> Option<Row> {
    if rows.is_empty() {
        return None;
    }
    let mut first = rows.remove(0);
    let rounds = rows.len() + 1;
    let mut notes = vec![first.note.clone()];
    for r in rows {
        first.count += r.count;
        first.seconds += r.seconds;
        first.latencies.extend(r.latencies);
        notes.push(r.note);
    }
    first.latencies.sort_unstable();
    first.rate = if first.seconds > 0.0 {
        first.count as f64 / first.seconds
    } else {
        0.0
    };
    first.p50_ms = percentile(&first.latencies, 0.50);
    first.p99_ms = percentile(&first.latencies, 0.99);
    if rounds > 1 {
        first.load = format!("{} x {rounds} rounds", first.load);
        first.note = format!("rounds: {}", notes.join(" / "));
    }
    Some(first)
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|us| *us as f64 / 1000.0)
}

// ---------------------------------------------------------------------------------- printing

/// The title and the conditions of the run.
pub fn preamble(args: &Args) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("# Sotto end-to-end benchmark");
    println!(
        "{cores} cores (tokio multi-thread runtime, {cores} workers); one run on a shared machine: \
         indicative figures, not a guarantee. Loopback, mutual TLS 1.3, QoS 1, {PLAINTEXT_SIZE}-byte \
         plaintexts; {} pairs x {} messages x {} rounds (full Client: {} per pair), drain {}, \
         phase timeout {} s.",
        args.pairs,
        args.messages,
        args.rounds,
        args.client_messages,
        args.drain,
        args.timeout.as_secs()
    );
    println!(
        "Latency: from before sealing (or Client send) to after opening, under full load \
         (window of {} publishes in flight per sender).",
        Config::default().max_inflight
    );
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// The table's header.
pub fn header() {
    println!("| broker | path | messages | bytes on the wire | msgs/s | p50 ms | p99 ms | notes |");
    println!("|---|---|---|---|---:|---:|---:|---|");
}

/// One line of the table.
pub fn print_row(r: &Row) {
    println!(
        "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
        r.broker,
        r.path,
        r.load,
        r.wire,
        r.rate,
        fmt_ms(r.p50_ms),
        fmt_ms(r.p99_ms),
        r.note
    );
}

/// Per broker that has both figures: the throughput of the path starting with `path` over that of
/// plain MQTT, measured in the same run.
fn share_of_plain<'a>(
    all: &'a [Row],
    path: &'a str,
) -> impl Iterator<Item = (&'static str, f64)> + 'a {
    Broker::ALL
        .map(Broker::name)
        .into_iter()
        .filter_map(move |broker| {
            let rate = |prefix: &str| {
                all.iter()
                    .find(|r| r.broker == broker && r.path.starts_with(prefix))
                    .map(|r| r.rate)
            };
            match (rate("plain"), rate(path)) {
                (Some(plain), Some(other)) if plain > 0.0 => Some((broker, other / plain)),
                _ => None,
            }
        })
}

/// Per broker with both raw figures: the encrypted throughput as a share of the plain one.
pub fn ratios(all: &[Row]) {
    for (broker, share) in share_of_plain(all, "encrypted, raw") {
        let ratio = share * 100.0;
        println!(
            "{broker}: encrypted/plain throughput = {ratio:.1}%; encryption cost: {:.1}% of \
             plain MQTT throughput (target: <= 10%)",
            100.0 - ratio
        );
    }
}

/// Per broker with the plain and the full-client figures: `full-client/plain throughput = 0.NN
/// (BROKER)`, the full client's throughput as a share of plain MQTT's through the same broker in
/// the same run.
pub fn full_client_ratios(all: &[Row]) -> Vec<String> {
    share_of_plain(all, "encrypted, full Client")
        .map(|(broker, share)| format!("full-client/plain throughput = {share:.2} ({broker})"))
        .collect()
}
