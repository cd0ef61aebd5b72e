//! End-to-end benchmark of the message path (issue 4, item 6): a real stack in-process (test PKI,
//! membership service, message service: the embedded front + broker, and Mosquitto if the binary
//! is on the PATH), real signups, cards exchanged, mutual TLS on loopback, QoS 1.
//!
//! ```text
//! cargo bench -p sotto-testkit --bench e2e -- [--pairs 4] [--messages 2000] [--client-messages 2000]
//!     [--broker embedded|mosquitto|both] [--drain 10000] [--commit-messages 5000] [--rounds 3]
//!     [--timeout 120]
//! ```
//!
//! Per broker, each phase bounded by `--timeout` seconds (partial figures are printed if hit):
//! 1. plain MQTT: N sender -> receiver pairs, M payloads of 100 bytes each, no crypto (phases 1,
//!    2 and 3 alternate for `--rounds` rounds, so that all three see the same background load;
//!    the figures are messages over summed time, latencies pooled);
//! 2. encrypted, raw device path: the same pairs and connection settings; each payload is the same
//!    100-byte text sealed with `Device::send` and opened with `Device::receive` (sessions set up
//!    through the real signup and cards, warmed up by one message and its receipt), no store;
//! 3. encrypted, full `Client`: `Online::send` (SQLCipher commit + outbox) and the receiver's
//!    online loop (open, commit, receipt back), `--client-messages` per pair and round;
//! 4. drain: `--drain` envelopes queued for an offline recipient (persistent session), then the
//!    recipient connects and opens each (raw device path);
//! 5. drain through the full `Client`: `--drain` texts queued by the sender's client, then the
//!    recipient's online loop opens, commits to its encrypted store, acks and sends receipts;
//! 6. commit cost: a drain of `--commit-messages` through the full client with the recipient's
//!    replay cache empty, then full (LIM-8); the ratio of the time per message.
//!
//! The last lines, one per broker, are for scripts:
//! `full-client/plain throughput = 0.NN (BROKER)`, `full-client drain N = N msg/s (BROKER)`,
//! `commit cost full/empty replay cache = N.NN (BROKER)`.
//!
//! Latency is measured from just before sealing (or the `send` call) to just after opening, with
//! the send time carried in the plaintext. Nothing asserts on speed: these are figures of one run.
//!
//! ```text
//!  main      the run per broker, the report's frame
//!  ├─ args       the command line
//!  ├─ stack      service, signups, pairs, raw-connection credentials, warm-up
//!  ├─ raw        phases 1 and 2 ─┐
//!  ├─ drain      phase 4 ────────┴─ endpoints: raw MQTT receiver and sender
//!  ├─ client     phase 3 (the full Client)
//!  ├─ client_drain phases 5 and 6 (the full Client draining a queue, the commit cost)
//!  ├─ clock      micros, now_ms, the timestamped plaintext
//!  └─ report     Received, Summary, Row, merging rounds, percentiles, printing
//! ```

mod args;
mod client;
mod client_drain;
mod clock;
mod drain;
mod endpoints;
mod raw;
mod report;
mod stack;

use std::error::Error;

use sotto_server::Broker;

use crate::args::{Args, parse_args};
use crate::report::{Row, header, print_row};

/// The result of a setup step or a phase.
type R<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Phases 1, 2 and 3 in turn for `--rounds` rounds, so that the full client and plain MQTT see
/// the same background load (their ratio is the figure); one row each, the rounds merged
/// (messages over summed time). The pairs' clients are shut down and closed at the end.
async fn rounds(name: &'static str, mut pairs: Vec<stack::Pair>, args: &Args) -> R<Vec<Row>> {
    let (mut plain, mut sealed, mut full) = (Vec::new(), Vec::new(), Vec::new());
    // `--rounds` is at least 1 (`args`).
    for round in 1..=args.rounds {
        let [p, s] = raw::round(name, &pairs, round, args).await?;
        plain.push(p);
        sealed.push(s);
        if args.client_messages > 0 {
            eprintln!("[{name}] round {round}: full client ...");
            let (clients, creds): (Vec<_>, Vec<_>) = pairs
                .into_iter()
                .map(|p| ((p.a, p.b), (p.ca, p.cb)))
                .unzip();
            let (row, clients) =
                client::client_phase(name, clients, args.client_messages, args.timeout).await?;
            eprintln!("[{name}]   {:.0} msgs/s; {}", row.rate, row.note);
            full.push(row);
            pairs = clients
                .into_iter()
                .zip(creds)
                .map(|((a, b), (ca, cb))| stack::Pair { a, b, ca, cb })
                .collect();
        }
    }
    for p in pairs {
        let _ = p.a.close();
        let _ = p.b.close();
    }
    let rows: Vec<Row> = [plain, sealed, full]
        .into_iter()
        .filter_map(report::merge)
        .collect();
    for row in &rows {
        print_row(row);
    }
    Ok(rows)
}

/// Every phase against one broker; prints each row as it is known.
/// The rows of one broker, and its lines for scripts (the drain and the commit cost).
async fn run_broker(broker: Broker, args: &Args) -> R<(Vec<Row>, Vec<String>)> {
    let name = broker.name();
    let (stack, _nats) = stack::start_stack(broker).await?;
    let stack::Accounts {
        pairs,
        drain_pair,
        client_drain_pair,
        commit,
    } = stack::accounts(&stack, args.pairs).await?;
    eprintln!(
        "[{name}] {} accounts signed up, cards exchanged",
        2 * args.pairs + 7
    );

    let mut rows = rounds(name, pairs, args).await?;
    let mut lines = Vec::new();
    if args.drain > 0 {
        eprintln!("[{name}] drain ...");
        let (sender, recipient) = &drain_pair;
        let drain_rows =
            drain::drain_phase(name, sender, recipient, args.drain, args.timeout).await?;
        for r in &drain_rows {
            print_row(r);
        }
        rows.extend(drain_rows);
    }
    let _ = drain_pair.0.close();
    let _ = drain_pair.1.close();
    let (mut sender, mut recipient) = client_drain_pair;
    if args.drain > 0 {
        eprintln!("[{name}] drain through the full client ...");
        let (drained, s, r) =
            client_drain::drain_through_client(sender, recipient, args.drain, args.timeout).await?;
        (sender, recipient) = (s, r);
        let row = client_drain::drain_row(name, args.drain, "as above", &drained);
        print_row(&row);
        rows.push(row);
        lines.push(format!(
            "full-client drain {} = {:.0} msg/s ({name})",
            args.drain,
            drained.rate()
        ));
    }
    let _ = sender.close();
    let _ = recipient.close();
    let mut commit = Some(commit);
    if args.commit_messages > 0 {
        eprintln!("[{name}] commit cost, replay cache empty and full, alternating ...");
        let (row, ratio, accounts) = client_drain::commit_cost(
            name,
            commit.take().ok_or("commit accounts")?,
            args.commit_messages,
            args.commit_rounds,
            args.timeout,
        )
        .await?;
        commit = Some(accounts);
        print_row(&row);
        rows.push(row);
        lines.push(format!(
            "commit cost full/empty replay cache = {ratio:.2} ({name})"
        ));
    }
    if let Some(c) = commit {
        let _ = c.sender.close();
        let _ = c.empty.close();
        let _ = c.full.close();
    }

    stack.service.shutdown().await;
    Ok((rows, lines))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let _ = clock::micros();
    report::preamble(&args);
    let (brokers, unavailable): (Vec<Broker>, Vec<Broker>) =
        args.brokers.iter().partition(|b| b.is_available());
    let skipped = unavailable
        .first()
        .map(|b| format!("{b}: skipped (no `{b}` binary on the PATH)"));
    println!();
    header();
    let mut all: Vec<Row> = Vec::new();
    let mut lines: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for broker in brokers {
        match run_broker(broker, &args).await {
            Ok((rows, l)) => {
                all.extend(rows);
                lines.extend(l);
            }
            Err(e) => failures.push(format!("{broker}: failed: {e}")),
        }
    }
    println!();
    report::ratios(&all);
    if let Some(s) = skipped {
        println!("{s}");
    }
    for f in &failures {
        println!("{f}");
    }
    // Last, for scripts: one line per figure and broker.
    for l in report::full_client_ratios(&all).into_iter().chain(lines) {
        println!("{l}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
