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
//! message is the time from just before its send call until the recipient's session reports it
//! committed. Every random choice (peer offsets, disconnects, offline times) comes from `--seed`;
//! the interleaving of the network does not. Every wait is bounded by `--timeout`.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use sotto_client::{
    Chat, Client, ClientEvent, Direction, KdfParams, MessageId, MessageState, SessionHandle,
    SignupOptions, UserId,
};
use sotto_server::process::{self, Stopped};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::banner::Banner;
use crate::cli::{Broker, SoakArgs};
use crate::errors::hinted;

/// The throwaway stores' passphrase.
const PASSPHRASE: &[u8] = b"soak test store, deleted at the end";
/// Signups running at once.
const SIGNUP_CONCURRENCY: usize = 8;
/// One-time prekeys per signup: at the low-water mark, so the signup uploads no more.
const ONE_TIME_PREKEYS: usize = sotto_client::PREKEY_LOW_WATER as usize;
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
        match run_one(broker, &plan, &dir, deadline).await {
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
        writeln!(out, "{}", json(&plan, &reports, &failures))?;
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

// ---------------------------------------------------------------------------------- the plan

/// Who writes to whom, how much, and how often clients drop.
#[derive(Clone, Debug)]
struct Plan {
    n: usize,
    m: usize,
    window: usize,
    disconnect: f64,
    offline: Duration,
    seed: u64,
    /// Client i writes to `(i + o) % n` for each offset `o`, message `seq` to offset `seq % K`.
    offsets: Vec<usize>,
}

impl Plan {
    fn new(args: &SoakArgs) -> anyhow::Result<Plan> {
        let n = args.clients;
        ensure!(
            (2..=MAX_CLIENTS).contains(&n),
            "--clients must be between 2 and {MAX_CLIENTS}"
        );
        ensure!(args.messages >= 1, "--messages must be at least 1");
        ensure!(
            args.messages <= 1_000_000,
            "--messages must be at most 1000000"
        );
        ensure!(args.window >= 1, "--window must be at least 1");
        ensure!(
            (0.0..=1.0).contains(&args.disconnect),
            "--disconnect is a probability: between 0 and 1"
        );
        ensure!(args.peers >= 1, "--peers must be at least 1");
        let k = args.peers.min(n - 1);
        // K distinct offsets from 1..n, chosen by the seed (a partial Fisher-Yates shuffle).
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let mut pool: Vec<usize> = (1..n).collect();
        for i in 0..k {
            let j = i + below(&mut rng, pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool.sort_unstable();
        Ok(Plan {
            n,
            m: args.messages,
            window: args.window,
            disconnect: args.disconnect,
            offline: args.offline,
            seed: args.seed,
            offsets: pool,
        })
    }

    fn total(&self) -> usize {
        self.n * self.m
    }

    /// The recipient of message `seq` of client `i`.
    fn target(&self, i: usize, seq: usize) -> usize {
        let k = self.offsets.len().max(1);
        let off = self.offsets.get(seq % k).copied().unwrap_or(1);
        (i + off) % self.n
    }

    /// Everyone `i` writes to or hears from.
    fn contacts(&self, i: usize) -> Vec<usize> {
        let mut c: Vec<usize> = self
            .offsets
            .iter()
            .flat_map(|o| [(i + o) % self.n, (i + self.n - o) % self.n])
            .collect();
        c.sort_unstable();
        c.dedup();
        c.retain(|&j| j != i);
        c
    }

    /// The index of message `seq` of client `i` in the tallies.
    fn slot(&self, i: usize, seq: usize) -> usize {
        i * self.m + seq
    }

    /// Client `i`'s own random stream.
    fn rng(&self, i: usize) -> ChaCha8Rng {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        seed[16..24].copy_from_slice(b"soak\0cli");
        ChaCha8Rng::from_seed(seed)
    }
}

/// Uniform in `0..n` (`n >= 1`; the modulo bias is irrelevant here).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// `true` with probability `p`.
fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit < p
}

/// The text of message `seq` from `from` to `to`, sent `t_us` after the start.
fn text(from: usize, seq: usize, to: usize, t_us: u64) -> String {
    format!("soak {from} {seq} {to} {t_us}")
}

/// `(from, seq, to, t_us)` of a soak text.
fn parse(text: &str) -> Option<(usize, usize, usize, u64)> {
    let mut it = text.split(' ');
    if it.next()? != "soak" {
        return None;
    }
    let from = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let to = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((from, seq, to, t))
}

// ---------------------------------------------------------------------------------- the server

/// `sotto serve` as a child process; stopped (SIGTERM, then killed) when dropped.
struct Server {
    child: Child,
    url: String,
    ca_pem: String,
    /// The mosquitto child of `sotto serve --broker mosquitto`.
    mosquitto: Option<u32>,
    stderr_path: PathBuf,
    lines: mpsc::UnboundedReceiver<String>,
}

/// Peak resident memory (VmHWM), KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Memory {
    serve_kib: u64,
    mosquitto_kib: Option<u64>,
}

impl Memory {
    fn total_kib(&self) -> u64 {
        self.serve_kib + self.mosquitto_kib.unwrap_or(0)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `VmHWM` of a process, KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// The children of a process named `name` (any of its threads may have spawned them).
fn child_named(pid: u32, name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == name {
                return Some(child);
            }
        }
    }
    None
}

impl Server {
    async fn start(broker: Broker, data: &Path, deadline: Instant) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating the server directory {}", data.display()))?;
        let exe = std::env::current_exe().context("finding the sotto binary")?;
        let stderr_path = data.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
            .args(["--difficulty", "0", "--data"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if broker == Broker::Mosquitto {
            cmd.args(["--broker", "mosquitto"]);
        }
        let mut child = cmd.spawn().context("starting `sotto serve`")?;
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::unbounded_channel();
        let mut server = Server {
            child,
            url: String::new(),
            ca_pem: String::new(),
            mosquitto: None,
            stderr_path,
            lines: rx,
        };
        let Some(stdout) = stdout else {
            bail!("`sotto serve` has no stdout");
        };
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let until = deadline.min(Instant::now() + SERVE_WAIT);
        let mut banner = Banner::default();
        loop {
            let line = match tokio::time::timeout_at(until, server.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => bail!(
                    "`sotto serve` ended before it was ready: {}",
                    server.stderr_tail()
                ),
                Err(_) => bail!(
                    "`sotto serve` was not ready within {SERVE_WAIT:?}: {}",
                    server.stderr_tail()
                ),
            };
            if banner.read_line(&line) {
                break;
            }
        }
        let ca_file = banner
            .ca_file
            .ok_or_else(|| anyhow!("`sotto serve` printed no CA file"))?;
        server.url = banner
            .membership_url
            .ok_or_else(|| anyhow!("`sotto serve` printed no URL"))?;
        server.ca_pem = std::fs::read_to_string(&ca_file)
            .with_context(|| format!("reading the CA {}", ca_file.display()))?;
        if broker == Broker::Mosquitto {
            server.mosquitto = child_named(server.child.id(), "mosquitto");
            ensure!(
                server.mosquitto.is_some(),
                "`sotto serve --broker mosquitto` runs no mosquitto child"
            );
        }
        Ok(server)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
        if tail.is_empty() {
            format!("(nothing on stderr, {})", self.stderr_path.display())
        } else {
            tail
        }
    }

    /// The peak memory so far.
    fn memory(&self) -> Memory {
        Memory {
            serve_kib: vm_hwm(self.child.id()).unwrap_or(0),
            mosquitto_kib: self.mosquitto.and_then(vm_hwm),
        }
    }

    /// Stops the server: SIGTERM, a bounded wait, then SIGKILL.
    async fn stop(mut self) -> anyhow::Result<()> {
        match process::terminate(&mut self.child, STOP_WAIT).await? {
            Stopped::Exited(status) => ensure!(
                status.success(),
                "`sotto serve` stopped with {status}: {}",
                self.stderr_tail()
            ),
            Stopped::Killed => {
                bail!("`sotto serve` did not stop within {STOP_WAIT:?} of SIGTERM (killed)")
            }
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = process::terminate_blocking(&mut self.child, Duration::from_secs(5));
        // If `sotto serve` had to be killed its mosquitto is left behind: end it too.
        if let Some(pid) = self.mosquitto {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "mosquitto" {
                let _ = process::signal(pid, "KILL");
            }
        }
    }
}

// ---------------------------------------------------------------------------------- the tallies

/// What the sessions observed, shared by every task of a run.
struct Shared {
    start: std::time::Instant,
    ids: Vec<UserId>,
    /// Per sender: messages it may still put on the way.
    windows: Vec<Semaphore>,
    /// Per client: its current session reported Connected.
    connected: Vec<AtomicBool>,
    tally: Mutex<Tally>,
    reconnects: AtomicUsize,
}

#[derive(Default)]
struct Tally {
    /// Message events per message (slot).
    seen: Vec<u8>,
    distinct: usize,
    duplicate_events: usize,
    latencies_us: Vec<u64>,
    /// Messages with a complete receipt at their sender.
    receipts: HashSet<MessageId>,
    first_send: Option<std::time::Instant>,
    last_receive: Option<std::time::Instant>,
    refused: usize,
    lost_connections: usize,
    problems: Vec<String>,
}

impl Tally {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_LISTED {
            self.problems.push(p);
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panicking task cannot leave a tally half-updated in a way that matters here.
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn index(&self, user: &UserId) -> Option<usize> {
        self.ids.iter().position(|u| u == user)
    }
}

/// Reads the events of one session of client `me` until the session ends.
async fn consume(
    me: usize,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    mut events: mpsc::Receiver<ClientEvent>,
) {
    while let Some(event) = events.recv().await {
        match event {
            ClientEvent::Connected { .. } => {
                if let Some(c) = shared.connected.get(me) {
                    c.store(true, Ordering::SeqCst);
                }
            }
            ClientEvent::Disconnected { .. } => shared.lock().lost_connections += 1,
            ClientEvent::Message(msg) => {
                let now = std::time::Instant::now();
                let from = shared.index(&msg.from);
                let mut tally = shared.lock();
                let Some((sender, seq, to, t_us)) = parse(&msg.text) else {
                    tally.problem(format!("client {me} received a text not of the soak"));
                    continue;
                };
                if from != Some(sender)
                    || to != me
                    || seq >= plan.m
                    || sender >= plan.n
                    || plan.target(sender, seq) != me
                {
                    tally.problem(format!(
                        "client {me} received message {seq} of {sender} not meant for it"
                    ));
                    continue;
                }
                let slot = plan.slot(sender, seq);
                let Some(count) = tally.seen.get_mut(slot) else {
                    continue;
                };
                *count = count.saturating_add(1);
                if *count == 1 {
                    tally.distinct += 1;
                    let sent = shared.start + Duration::from_micros(t_us);
                    let latency = now.saturating_duration_since(sent);
                    tally
                        .latencies_us
                        .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
                    tally.last_receive = Some(now);
                    drop(tally);
                    if let Some(w) = shared.windows.get(sender) {
                        w.add_permits(1);
                    }
                } else {
                    tally.duplicate_events += 1;
                }
            }
            ClientEvent::Delivered {
                id, complete: true, ..
            } => {
                shared.lock().receipts.insert(id);
            }
            ClientEvent::Refused(_) | ClientEvent::ContentRejected(_) => {
                shared.lock().refused += 1;
            }
            _ => {}
        }
    }
}

/// A client's connected session and the task reading its events.
struct Online {
    handle: SessionHandle,
    reader: JoinHandle<()>,
}

fn go_online(me: usize, client: Client, plan: &Arc<Plan>, shared: &Arc<Shared>) -> Online {
    let (handle, events) = client.connect();
    let reader = tokio::spawn(consume(me, plan.clone(), shared.clone(), events));
    Online { handle, reader }
}

async fn go_offline(me: usize, online: Online) -> anyhow::Result<Client> {
    let client = online
        .handle
        .shutdown()
        .await
        .with_context(|| format!("client {me}: the session did not stop cleanly"))?;
    // The reader ends with the session's event channel, after the last event.
    let _ = online.reader.await;
    Ok(client)
}

/// Where a client is.
enum State {
    Online(Online),
    Offline { client: Box<Client>, until: Instant },
}

/// Client `me` sends its messages, disconnecting at random; returns its session (online).
async fn drive(
    me: usize,
    online: Online,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    deadline: Instant,
) -> anyhow::Result<Online> {
    let mut rng = plan.rng(me);
    let mut state = State::Online(online);
    let window = shared
        .windows
        .get(me)
        .ok_or_else(|| anyhow!("no window for client {me}"))?;
    for seq in 0..plan.m {
        // A place in the window; an offline client comes back when its time is up.
        loop {
            if let State::Offline { until, .. } = &state {
                if Instant::now() >= *until {
                    state = reconnect(me, state, &plan, &shared);
                }
            }
            let wait = match &state {
                State::Offline { until, .. } => (*until).min(deadline),
                State::Online(_) => deadline,
            };
            match tokio::time::timeout_at(wait, window.acquire()).await {
                Ok(Ok(permit)) => {
                    permit.forget();
                    break;
                }
                Ok(Err(_)) => bail!("client {me}: the window closed"),
                Err(_) if Instant::now() >= deadline => bail!(
                    "the timeout passed while client {me} waited to send message {seq} of {} \
                     (at most {} on the way)",
                    plan.m,
                    plan.window
                ),
                Err(_) => {}
            }
        }
        let to = plan.target(me, seq);
        let to_id = *shared
            .ids
            .get(to)
            .ok_or_else(|| anyhow!("no client {to}"))?;
        let sent_at = std::time::Instant::now();
        {
            let mut tally = shared.lock();
            tally.first_send.get_or_insert(sent_at);
        }
        let t_us = u64::try_from(sent_at.duration_since(shared.start).as_micros()).unwrap_or(0);
        let body = text(me, seq, to, t_us);
        match &mut state {
            State::Online(o) => {
                o.handle
                    .send(to_id, body)
                    .await
                    .with_context(|| format!("client {me} could not send message {seq}"))?;
            }
            State::Offline { client, .. } => {
                client.send(&to_id, &body).with_context(|| {
                    format!("client {me} could not queue message {seq} while offline")
                })?;
            }
        }
        if matches!(state, State::Online(_)) && chance(&mut rng, plan.disconnect) {
            let offline_ms = u64::try_from(plan.offline.as_millis()).unwrap_or(0);
            let pause = Duration::from_millis(rng.next_u64() % (offline_ms + 1));
            if let State::Online(o) = state {
                let client = go_offline(me, o).await?;
                shared.reconnects.fetch_add(1, Ordering::Relaxed);
                state = State::Offline {
                    client: Box::new(client),
                    until: Instant::now() + pause,
                };
            } else {
                bail!("client {me}: inconsistent state");
            }
        }
    }
    if let State::Offline { until, .. } = &state {
        tokio::time::sleep_until((*until).min(deadline)).await;
    }
    match reconnect(me, state, &plan, &shared) {
        State::Online(o) => Ok(o),
        State::Offline { .. } => bail!("client {me} could not come back online"),
    }
}

fn reconnect(me: usize, state: State, plan: &Arc<Plan>, shared: &Arc<Shared>) -> State {
    match state {
        State::Offline { client, .. } => {
            if let Some(c) = shared.connected.get(me) {
                c.store(false, Ordering::SeqCst);
            }
            State::Online(go_online(me, *client, plan, shared))
        }
        online => online,
    }
}

// ---------------------------------------------------------------------------------- one run

/// The figures of one run.
#[derive(Debug)]
struct Report {
    broker: Broker,
    setup: Duration,
    wall: Duration,
    delivered: usize,
    receipts: usize,
    latency_p50: Duration,
    latency_p99: Duration,
    latency_max: Duration,
    memory: Memory,
    reconnects: usize,
    lost_connections: usize,
    refused: usize,
    duplicate_events: usize,
    missing: usize,
    duplicates: usize,
    undelivered: usize,
    problems: Vec<String>,
}

impl Report {
    fn throughput(&self) -> f64 {
        let s = self.wall.as_secs_f64();
        if s > 0.0 {
            self.delivered as f64 / s
        } else {
            0.0
        }
    }

    fn print(&self, plan: &Plan, out: &mut dyn Write) -> anyhow::Result<()> {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            out,
            "soak through the {} broker: {} clients x {} messages, {} peers each, window {}, \
             disconnect p={} (offline up to {:?}), seed {}",
            self.broker.name(),
            plan.n,
            plan.m,
            plan.offsets.len(),
            plan.window,
            plan.disconnect,
            plan.offline,
            plan.seed
        )?;
        writeln!(
            out,
            "  setup:       {:.1} s (signups, cards, sessions)",
            self.setup.as_secs_f64()
        )?;
        writeln!(
            out,
            "  delivered:   {} of {} messages, {} missing, {} duplicated; {} receipts",
            self.delivered,
            plan.total(),
            self.missing,
            self.duplicates,
            self.receipts
        )?;
        writeln!(
            out,
            "  wall time:   {:.2} s (first send to last message received)",
            self.wall.as_secs_f64()
        )?;
        writeln!(out, "  throughput:  {:.1} messages/s", self.throughput())?;
        writeln!(
            out,
            "  latency:     p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(self.latency_p50),
            ms(self.latency_p99),
            ms(self.latency_max)
        )?;
        match self.memory.mosquitto_kib {
            Some(m) => writeln!(
                out,
                "  server peak memory: {:.1} MiB (sotto serve {:.1} MiB + mosquitto {:.1} MiB, VmHWM)",
                mib(self.memory.total_kib()),
                mib(self.memory.serve_kib),
                mib(m)
            )?,
            None => writeln!(
                out,
                "  server peak memory: {:.1} MiB (sotto serve, VmHWM)",
                mib(self.memory.serve_kib)
            )?,
        }
        writeln!(
            out,
            "  reconnects:  {} random disconnects; {} connections lost otherwise; {} envelopes \
             refused",
            self.reconnects, self.lost_connections, self.refused
        )?;
        for p in &self.problems {
            writeln!(out, "  PROBLEM: {p}")?;
        }
        Ok(())
    }
}

fn percentile(sorted: &[u64], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Duration::from_micros(sorted.get(rank - 1).copied().unwrap_or(0))
}

async fn run_one(
    broker: Broker,
    plan: &Plan,
    dir: &Path,
    deadline: Instant,
) -> anyhow::Result<Report> {
    let setup_start = Instant::now();
    let server = Server::start(broker, &dir.join("server"), deadline).await?;
    let stores = dir.join("stores");
    std::fs::create_dir_all(&stores).with_context(|| format!("creating {}", stores.display()))?;

    // Signups, a few at a time.
    let options = SignupOptions {
        kdf: KdfParams::INSECURE_FOR_TESTS,
        one_time_prekeys: ONE_TIME_PREKEYS,
        establish_inbox: None,
    };
    let gate = Arc::new(Semaphore::new(SIGNUP_CONCURRENCY));
    let mut signups = Vec::with_capacity(plan.n);
    for i in 0..plan.n {
        let (url, ca, path, options, gate) = (
            server.url.clone(),
            server.ca_pem.clone(),
            stores.join(format!("client-{i}.db")),
            options.clone(),
            gate.clone(),
        );
        signups.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            Client::signup_with(&url, &ca, path, PASSPHRASE, &options).await
        }));
    }
    let mut clients = Vec::with_capacity(plan.n);
    for (i, s) in signups.into_iter().enumerate() {
        let client = tokio::time::timeout_at(deadline, s)
            .await
            .map_err(|_| anyhow!("client {i} had not signed up at the timeout"))?
            .map_err(|_| anyhow!("the signup task of client {i} failed"))?
            .with_context(|| format!("client {i} could not sign up"))?;
        clients.push(client);
    }

    // Cards, exchanged along the graph (verified contacts).
    let mut cards = Vec::with_capacity(plan.n);
    for (i, c) in clients.iter().enumerate() {
        cards.push(
            c.card()
                .with_context(|| format!("the card of client {i}"))?,
        );
    }
    for (i, c) in clients.iter_mut().enumerate() {
        for j in plan.contacts(i) {
            let card = cards.get(j).ok_or_else(|| anyhow!("no card {j}"))?;
            c.add_card(card)
                .with_context(|| format!("client {i} could not add the card of client {j}"))?;
        }
    }

    let ids: Vec<UserId> = clients.iter().map(Client::user_id).collect();
    let plan = Arc::new(plan.clone());
    let shared = Arc::new(Shared {
        start: std::time::Instant::now(),
        ids: ids.clone(),
        windows: (0..plan.n).map(|_| Semaphore::new(plan.window)).collect(),
        connected: (0..plan.n).map(|_| AtomicBool::new(false)).collect(),
        tally: Mutex::new(Tally {
            seen: vec![0; plan.total()],
            ..Tally::default()
        }),
        reconnects: AtomicUsize::new(0),
    });

    // Every session up (the broker keeps a persistent session per inbox from now on).
    let mut sessions: Vec<Online> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| go_online(i, c, &plan, &shared))
        .collect();
    loop {
        let up = shared
            .connected
            .iter()
            .filter(|c| c.load(Ordering::SeqCst))
            .count();
        if up == plan.n {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "only {up} of {} sessions had connected at the timeout",
                plan.n
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let setup = setup_start.elapsed();
    eprintln!(
        "soak: {} sessions up after {:.1} s; sending",
        plan.n,
        setup.as_secs_f64()
    );

    // The load.
    let mut drivers = Vec::with_capacity(plan.n);
    for (i, online) in sessions.drain(..).enumerate() {
        drivers.push(tokio::spawn(drive(
            i,
            online,
            plan.clone(),
            shared.clone(),
            deadline,
        )));
    }
    let mut first_error = None;
    for (i, d) in drivers.into_iter().enumerate() {
        match d.await {
            Ok(Ok(online)) => sessions.push(online),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("the task of client {i} failed"));
            }
        }
    }
    if let Some(e) = first_error {
        let tally = shared.lock();
        return Err(e.context(format!(
            "{} of {} messages received, {} receipts",
            tally.distinct,
            plan.total(),
            tally.receipts.len()
        )));
    }

    // Everything received and every receipt back, or the timeout.
    let total = plan.total();
    let mut timed_out = None;
    loop {
        let (distinct, receipts) = {
            let t = shared.lock();
            (t.distinct, t.receipts.len())
        };
        if distinct >= total && receipts >= total {
            break;
        }
        if Instant::now() >= deadline {
            let why = format!(
                "the timeout passed with {distinct} of {total} messages received and {receipts} \
                 receipts"
            );
            eprintln!("soak: {why}; checking the stores");
            timed_out = Some(why);
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let memory = server.memory();

    // Sessions down, then the stores are the judges.
    let mut clients = Vec::with_capacity(plan.n);
    for (i, online) in sessions.into_iter().enumerate() {
        let until = (Instant::now() + Duration::from_secs(30)).max(deadline);
        let client = tokio::time::timeout_at(until, go_offline(i, online))
            .await
            .map_err(|_| anyhow!("the session of client {i} did not stop"))??;
        clients.push(client);
    }
    let mut counts = vec![0u32; total];
    let mut problems: Vec<String> = timed_out.into_iter().collect();
    let mut undelivered = 0usize;
    let mut sent = 0usize;
    for (i, client) in clients.iter().enumerate() {
        for j in plan.contacts(i) {
            let peer = ids.get(j).ok_or_else(|| anyhow!("no client {j}"))?;
            let messages = client
                .messages(&Chat::User(*peer))
                .with_context(|| format!("reading the store of client {i}"))?;
            for msg in messages {
                let Some((from, seq, to, _)) = parse(&msg.text) else {
                    problems.push(format!("client {i} holds a text not of the soak"));
                    continue;
                };
                match msg.direction {
                    Direction::In => {
                        if from != j
                            || to != i
                            || seq >= plan.m
                            || plan.target(from, seq) != i
                            || msg.sender != Some(*peer)
                        {
                            problems.push(format!(
                                "client {i} holds message {seq} of {from} not meant for it"
                            ));
                            continue;
                        }
                        if let Some(c) = counts.get_mut(plan.slot(from, seq)) {
                            *c += 1;
                        }
                    }
                    Direction::Out => {
                        if from != i || to != j {
                            problems.push(format!("client {i} holds a foreign sent message"));
                            continue;
                        }
                        sent += 1;
                        if msg.state != MessageState::Delivered {
                            undelivered += 1;
                        }
                    }
                }
            }
        }
    }
    for client in clients {
        let _ = client.close();
    }
    server.stop().await?;

    let missing = counts.iter().filter(|&&c| c == 0).count();
    let duplicates = counts.iter().filter(|&&c| c > 1).count();
    let tally = std::mem::take(&mut *shared.lock());
    if missing > 0 {
        let names: Vec<String> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == 0)
            .take(MAX_LISTED)
            .map(|(k, _)| format!("{}#{}", k / plan.m, k % plan.m))
            .collect();
        problems.push(format!(
            "{missing} messages missing from their recipients' stores (sender#seq: {}{})",
            names.join(", "),
            if missing > MAX_LISTED { ", ..." } else { "" }
        ));
    }
    if duplicates > 0 {
        problems.push(format!(
            "{duplicates} messages stored more than once by their recipient"
        ));
    }
    if sent != total {
        problems.push(format!(
            "the senders' stores hold {sent} sent messages, not {total}"
        ));
    }
    if undelivered > 0 {
        problems.push(format!(
            "{undelivered} sent messages without their receipt (not Delivered at the sender)"
        ));
    }
    if tally.duplicate_events > 0 {
        problems.push(format!(
            "{} messages reported twice by a session",
            tally.duplicate_events
        ));
    }
    if tally.refused > 0 {
        problems.push(format!("{} envelopes refused", tally.refused));
    }
    problems.extend(tally.problems.iter().cloned());

    let mut lat = tally.latencies_us.clone();
    lat.sort_unstable();
    let wall = match (tally.first_send, tally.last_receive) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    Ok(Report {
        broker,
        setup,
        wall,
        delivered: total - missing,
        receipts: sent.saturating_sub(undelivered),
        latency_p50: percentile(&lat, 0.50),
        latency_p99: percentile(&lat, 0.99),
        latency_max: lat
            .last()
            .map(|&us| Duration::from_micros(us))
            .unwrap_or_default(),
        memory,
        reconnects: shared.reconnects.load(Ordering::Relaxed),
        lost_connections: tally.lost_connections,
        refused: tally.refused,
        duplicate_events: tally.duplicate_events,
        missing,
        duplicates,
        undelivered,
        problems,
    })
}

// ---------------------------------------------------------------------------------- JSON

/// The whole soak as one JSON object (`--json`): the plan, one object per broker, the failures.
fn json(plan: &Plan, reports: &[Report], failures: &[String]) -> String {
    // Seconds and milliseconds to the microsecond, as the text report prints them.
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let ms = |d: Duration| round(d.as_secs_f64() * 1000.0);
    let runs: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "broker": r.broker.name(),
                "setup_s": round(r.setup.as_secs_f64()),
                "wall_s": round(r.wall.as_secs_f64()),
                "delivered": r.delivered,
                "receipts": r.receipts,
                "missing": r.missing,
                "duplicates": r.duplicates,
                "undelivered": r.undelivered,
                "throughput_per_s": (r.throughput() * 10.0).round() / 10.0,
                "latency_ms": {
                    "p50": ms(r.latency_p50),
                    "p99": ms(r.latency_p99),
                    "max": ms(r.latency_max),
                },
                "server_peak_kib": {
                    "serve": r.memory.serve_kib,
                    "mosquitto": r.memory.mosquitto_kib,
                    "total": r.memory.total_kib(),
                },
                "reconnects": r.reconnects,
                "lost_connections": r.lost_connections,
                "refused": r.refused,
                "duplicate_events": r.duplicate_events,
                "problems": r.problems,
            })
        })
        .collect();
    serde_json::json!({
        "clients": plan.n,
        "messages": plan.m,
        "peers": plan.offsets.len(),
        "window": plan.window,
        "disconnect": plan.disconnect,
        "offline_ms": plan.offline.as_millis(),
        "seed": plan.seed,
        "pass": failures.is_empty(),
        "runs": runs,
        "failures": failures,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        assert_eq!(parse(&text(3, 17, 5, 12345)), Some((3, 17, 5, 12345)));
        assert_eq!(parse("soak 1 2 3"), None);
        assert_eq!(parse("hello 1 2 3 4"), None);
        assert_eq!(parse("soak 1 2 3 4 5"), None);
    }

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_micros(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
