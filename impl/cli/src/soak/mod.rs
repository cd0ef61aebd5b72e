//! `sotto soak`: a bounded load test through each broker.
//!
//! ```text
//!  child process: sotto serve --listen 127.0.0.1:0 --mqtt 127.0.0.1:0 --difficulty 0 [--broker mosquitto]
//!                   (its VmHWM, and its mosquitto child's, are the server's peak memory)
//!  this process:  N clients (SQLCipher stores in a temp dir, cheap Argon2 parameters)
//!                 cards exchanged along a circulant graph: client i writes to i+o1, .., i+oK (mod N)
//!                 each client sends M texts round robin to its K peers, at most W on the way;
//!                 after any send it may disconnect (probability P) and stay offline up to T:
//!                 its inbox queues at the broker, what it sends meanwhile waits in its outbox
//!  at the end:    every store holds every text sent to it exactly once, every sent text is
//!                 Delivered (receipt) at its sender; throughput, latency p50/p99/max, peak memory
//! ```
//!
//! Each text carries its sender, sequence number, recipient and send time (microseconds since the
//! start of the run, one process clock): `soak <sender> <seq> <to> <t_us>`. The latency of a
//! message is the time from just before its send call until the recipient's online loop reports it
//! committed. Every random choice (peer offsets, disconnects, offline times) comes from `--seed`;
//! the interleaving of the network does not. Every wait is bounded by `--timeout`.
//!
//! This module holds the command (`run`: each broker in turn, the verdict) and one run through a
//! broker as a sequence of steps (`run_one`). The steps live in: `plan` (who writes to whom, the
//! seeded choices, the texts), `server` (`sotto serve` as a child, its peak memory), `clients`
//! (signups and cards), `tally` (what the online loops observe), `traffic` (clients online and
//! offline, the load), `audit` (the stores read and judged) and `report` (the figures, as text
//! or JSON).

mod audit;
mod clients;
mod plan;
mod report;
mod server;
mod tally;
mod traffic;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use sotto_client::{Client, UserId};
use tokio::time::Instant;

use self::plan::Plan;
use self::report::{Report, Run};
use self::server::Server;
use self::tally::Shared;
use crate::cli::{Broker, NatsArgs, SoakArgs};
use crate::errors::hinted;

/// The throwaway stores' passphrase.
const PASSPHRASE: &[u8] = b"soak test store, deleted at the end";
/// Signups running at once.
const SIGNUP_CONCURRENCY: usize = 8;
/// How long the server may take to print `ready`.
const SERVE_WAIT: Duration = Duration::from_secs(60);
/// How long the server may take to stop after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(15);
/// How often the end phase looks at the counters.
const POLL: Duration = Duration::from_millis(100);
/// Most problems listed by name in a report.
const MAX_LISTED: usize = 10;
/// Largest client count (file descriptors: a TLS connection and a store per client).
const MAX_CLIENTS: usize = 2_000;

/// `sotto soak`: runs through each broker in turn, prints the figures, and fails unless every
/// message arrived exactly once everywhere.
pub async fn run(args: SoakArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let plan = Plan::new(&args)?;
    let brokers = args.broker.each();
    let nats = match brokers.as_slice() {
        [Broker::Nats] => Some(args.nats.clone()),
        _ => {
            args.nats.cluster(Broker::Embedded)?;
            None
        }
    };
    if let Some(n) = &nats {
        n.cluster(Broker::Nats)?;
        if std::env::var_os("SOTTO_NATS_PASSWORD").is_none() {
            return Err(hinted(
                "the soak's `sotto serve` reads the NATS password from SOTTO_NATS_PASSWORD",
                "set SOTTO_NATS_PASSWORD instead of --nats-password",
            ));
        }
    }
    let deadline = Instant::now() + args.timeout;
    let base = match &args.dir {
        Some(d) => tempfile::Builder::new().prefix("sotto-soak-").tempdir_in(d),
        None => tempfile::Builder::new().prefix("sotto-soak-").tempdir(),
    }
    .context("creating the temporary directory of the soak")?;

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for broker in brokers {
        eprintln!(
            "soak: {} broker, {} clients x {} messages ...",
            broker.name(),
            plan.n,
            plan.m
        );
        let dir = base.path().join(broker.name());
        match run_one(broker, nats.as_ref(), &plan, &dir, deadline).await {
            Ok(report) => {
                if !args.json {
                    report.print(&plan, out)?;
                }
                if !report.problems.is_empty() {
                    failures.push(format!("{}: {}", broker.name(), report.problems.join("; ")));
                }
                reports.push(report);
            }
            Err(e) => {
                let e = format!("{e:#}");
                if !args.json {
                    writeln!(out, "soak through {}: FAILED: {e}", broker.name())?;
                }
                failures.push(format!("{}: {e}", broker.name()));
            }
        }
    }
    if args.json {
        writeln!(out, "{}", report::json(&plan, &reports, &failures))?;
    }
    out.flush()?;
    if failures.is_empty() {
        if !args.json {
            writeln!(
                out,
                "soak: PASS (every message delivered exactly once, every receipt back)"
            )?;
        }
        Ok(())
    } else {
        Err(hinted(
            format!("the soak failed: {}", failures.join(" | ")),
            "rerun with the same --seed and -v for the client logs; a timeout names what was \
             missing when it passed (raise --timeout for a slow machine)",
        ))
    }
}

/// One run through `broker`, its files in `dir`: the server, the clients signed up and
/// introduced, every client online, the load, the wait until everything is received, then every
/// store read and judged.
async fn run_one(
    broker: Broker,
    nats: Option<&NatsArgs>,
    plan: &Plan,
    dir: &Path,
    deadline: Instant,
) -> anyhow::Result<Report> {
    let setup_start = Instant::now();
    let server = Server::start(broker, nats, &dir.join("server"), plan.n, deadline).await?;
    let stores = dir.join("stores");
    std::fs::create_dir_all(&stores).with_context(|| format!("creating {}", stores.display()))?;
    let mut clients = clients::sign_up(plan, &server, &stores, deadline).await?;
    clients::exchange_cards(plan, &mut clients)?;

    let ids: Vec<UserId> = clients.iter().map(Client::user_id).collect();
    let plan = Arc::new(plan.clone());
    let shared = Arc::new(Shared::new(&plan, ids));
    let online = traffic::all_online(clients, &plan, &shared, deadline).await?;
    let setup = setup_start.elapsed();
    eprintln!(
        "soak: {} clients online after {:.1} s; sending",
        plan.n,
        setup.as_secs_f64()
    );

    let online = traffic::load(online, &plan, &shared, deadline).await?;
    let timed_out = traffic::settle(&plan, &shared, deadline).await;
    let memory = server.memory();

    // Every client offline, then the stores are the judges.
    let clients = traffic::all_offline(online, deadline).await?;
    let problems = timed_out.into_iter().collect();
    let mut audit = audit::read_stores(&plan, &clients, &shared.ids, problems)?;
    for client in clients {
        let _ = client.close();
    }
    server.stop().await?;

    let tally = std::mem::take(&mut *shared.lock());
    audit.judge(&plan, &tally);
    let run = Run {
        broker,
        setup,
        memory,
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        tally,
        audit,
    };
    Ok(Report::new(&plan, run))
}
