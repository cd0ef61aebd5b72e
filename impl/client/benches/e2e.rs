//! End-to-end benchmark of the message path (issue 4, item 6): a real stack in-process (test PKI,
//! membership service, message service: the embedded front + rumqttd, and Mosquitto if the binary
//! is on the PATH), real signups, cards exchanged, mutual TLS on loopback, QoS 1.
//!
//! ```text
//! cargo bench -p sotto-client --bench e2e -- [--pairs 4] [--messages 2000] [--client-messages 200]
//!     [--broker embedded|mosquitto|both] [--drain 10000] [--rounds 3] [--timeout 120]
//! ```
//!
//! Per broker, each phase bounded by `--timeout` seconds (partial figures are printed if hit):
//! 1. plain MQTT: N sender -> receiver pairs, M payloads of 100 bytes each, no crypto (phases 1
//!    and 2 alternate for `--rounds` rounds; the figures are messages over summed time);
//! 2. encrypted, raw device path: the same pairs and connection settings; each payload is the same
//!    100-byte text sealed with `Device::send` and opened with `Device::receive` (sessions set up
//!    through the real signup and cards, warmed up by one message and its receipt), no store;
//! 3. encrypted, full `Client`: `SessionHandle::send` (SQLCipher commit + outbox) and the
//!    receiver's session (open, commit, receipt back), `--client-messages` per pair;
//! 4. drain: `--drain` envelopes queued for an offline recipient (persistent session), then the
//!    recipient connects and opens each (raw device path).
//!
//! Latency is measured from just before sealing (or the `send` call) to just after opening, with
//! the send time carried in the plaintext. Nothing asserts on speed: these are figures of one run.

use std::collections::VecDeque;
use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration, Transport,
};
use sotto_client::{
    Client, ClientEvent, KEEP_ALIVE, KdfParams, MAX_INFLIGHT, MAX_PACKET, SignupOptions, UserId,
};
use sotto_core::{Content, Device};
use sotto_server::broker::MessageService;
use sotto_server::broker::mosquitto::{MosquittoProcess, MosquittoProfile, mosquitto_available};
use sotto_server::ca::Pki;
use sotto_server::membership::{Membership, MembershipConfig, MembershipHandle};
use sotto_store::Setting;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

type R<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Plaintext size of every message (the plain MQTT payload has exactly this size).
const PLAINTEXT_SIZE: usize = 100;
/// Bound of every setup step (signup, connect, subscribe).
const SETUP_WAIT: Duration = Duration::from_secs(30);
/// Proof-of-work difficulty of the benchmark's membership service.
const DIFFICULTY: u8 = 4;
/// rumqttc request channel capacity (publishes waiting for the in-flight window, acks).
const REQUEST_CAPACITY: usize = 64;
/// Message tags (first byte of the plaintext), so that a stale redelivery is never counted.
const TAG_PLAIN: u8 = b'P';
const TAG_SEALED: u8 = b'E';
const TAG_CLIENT: u8 = b'C';
const TAG_DRAIN: u8 = b'D';

// ---------------------------------------------------------------------------------- arguments

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Which {
    Embedded,
    Mosquitto,
    Both,
}

#[derive(Clone, Debug)]
struct Args {
    pairs: usize,
    messages: usize,
    client_messages: usize,
    broker: Which,
    drain: usize,
    rounds: usize,
    timeout: Duration,
}

const USAGE: &str = "usage: cargo bench -p sotto-client --bench e2e -- [--pairs N (4)] \
[--messages M (2000)] [--client-messages K (200)] [--broker embedded|mosquitto|both (both)] \
[--drain D (10000)] [--rounds R of plain/encrypted (3)] [--timeout SECONDS per phase (120)]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pairs: 4,
        messages: 2000,
        client_messages: 200,
        broker: Which::Both,
        drain: 10_000,
        rounds: 3,
        timeout: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            // `cargo bench` passes `--bench` to harness-less benchmarks.
            "--bench" => {}
            "--pairs" => args.pairs = number(value()?)?.max(1),
            "--messages" => args.messages = number(value()?)?,
            "--client-messages" => args.client_messages = number(value()?)?,
            "--drain" => args.drain = number(value()?)?,
            "--rounds" => args.rounds = number(value()?)?.max(1),
            "--timeout" => args.timeout = Duration::from_secs(number(value()?)? as u64),
            "--broker" => {
                args.broker = match value()?.as_str() {
                    "embedded" => Which::Embedded,
                    "mosquitto" => Which::Mosquitto,
                    "both" => Which::Both,
                    other => return Err(format!("--broker: unknown broker {other}")),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------- clocks

static BASE: OnceLock<std::time::Instant> = OnceLock::new();

/// Microseconds since the start of the process (the send time carried in the plaintext).
fn micros() -> u64 {
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Unix time in ms (the devices' clock; the services run on the same machine).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The 100-byte plaintext: tag, send time (µs), sequence number, padding.
fn plaintext(tag: u8, seq: usize) -> String {
    let mut s = format!("{}{:016} {:08} ", tag as char, micros(), seq);
    while s.len() < PLAINTEXT_SIZE {
        s.push('x');
    }
    s
}

/// The send time of a plaintext carrying `tag`.
fn parse(text: &str, tag: u8) -> Option<u64> {
    if text.as_bytes().first() != Some(&tag) {
        return None;
    }
    text.get(1..17)?.parse().ok()
}

// ---------------------------------------------------------------------------------- the stack

enum BrokerProcess {
    Embedded(MessageService),
    Mosquitto(MosquittoProcess),
}

struct Stack {
    dir: tempfile::TempDir,
    pki: Arc<Pki>,
    membership: MembershipHandle,
    broker: BrokerProcess,
}

fn loopback() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Stack {
    async fn start(which: Which) -> R<Stack> {
        let dir = tempfile::tempdir()?;
        let pki = Arc::new(Pki::load_or_create(&dir.path().join("pki"))?);
        let (broker, addr) = match which {
            Which::Mosquitto => {
                let profile =
                    MosquittoProfile::write(&pki, &dir.path().join("mosquitto"), loopback())?;
                let process = MosquittoProcess::spawn(&profile).await?;
                let addr = process.addr();
                (BrokerProcess::Mosquitto(process), addr)
            }
            _ => {
                let service = MessageService::start_embedded(&pki, loopback()).await?;
                let addr = service.local_addr();
                (BrokerProcess::Embedded(service), addr)
            }
        };
        let membership = Membership::start(
            MembershipConfig {
                data_dir: dir.path().join("membership"),
                listen: loopback(),
                difficulty: DIFFICULTY,
                broker_addr: addr.to_string(),
            },
            pki.clone(),
        )
        .await?;
        Ok(Stack {
            dir,
            pki,
            membership,
            broker,
        })
    }

    async fn shutdown(self) {
        self.membership.shutdown().await;
        match self.broker {
            BrokerProcess::Embedded(s) => s.shutdown().await,
            BrokerProcess::Mosquitto(m) => {
                let _ = m.stop().await;
            }
        }
        drop(self.dir);
    }

    /// Signs up `n` users concurrently (cheap Argon2, inbox session established: BROKER-4).
    async fn signup(&self, n: usize) -> R<Vec<Client>> {
        let mut tasks = Vec::new();
        for i in 0..n {
            let url = self.membership.url();
            let ca = self.pki.ca_pem().to_owned();
            let path = self.dir.path().join(format!("user{i}.db"));
            tasks.push(tokio::spawn(async move {
                let options = SignupOptions {
                    kdf: KdfParams::INSECURE_FOR_TESTS,
                    one_time_prekeys: 10,
                    establish_inbox: Some(SETUP_WAIT),
                };
                Client::signup_with(&url, &ca, path, b"benchmark passphrase", &options).await
            }));
        }
        let mut clients = Vec::new();
        for t in tasks {
            clients.push(t.await??);
        }
        Ok(clients)
    }
}

/// What a raw connection needs: the user id and TLS credentials from the account's store.
#[derive(Clone)]
struct Creds {
    id: UserId,
    host: String,
    port: u16,
    tls: TlsConfiguration,
}

impl Creds {
    fn of(client: &Client) -> R<Creds> {
        let store = client.store();
        let get = |s: Setting| -> R<String> {
            Ok(store.setting_text(s)?.ok_or("setting missing")?.to_string())
        };
        let tls = sotto_server::ca::client_config(
            &get(Setting::CaPem)?,
            Some((&get(Setting::CertificatePem)?, &get(Setting::TlsKeyPem)?)),
        )?;
        let (host, port) = client
            .broker_address()
            .rsplit_once(':')
            .ok_or("broker address")?;
        Ok(Creds {
            id: client.user_id(),
            host: host.to_owned(),
            port: port.parse()?,
            tls: TlsConfiguration::Rustls(tls),
        })
    }

    /// The same MQTT settings as the client's transport: mutual TLS, client id = user id,
    /// persistent session, manual acks, the client's in-flight window.
    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(self.id.to_text(), self.host.clone(), self.port);
        o.set_transport(Transport::tls_with_config(self.tls.clone()));
        o.set_clean_session(false);
        o.set_manual_acks(true);
        o.set_keep_alive(KEEP_ALIVE);
        o.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        o.set_inflight(MAX_INFLIGHT as u16);
        o
    }
}

/// Alice and Bob scan each other's cards (verified contacts).
fn exchange_cards(a: &mut Client, b: &mut Client) -> R<()> {
    let card_a = a.card()?;
    let card_b = b.card()?;
    a.add_card(&card_b)?;
    b.add_card(&card_a)?;
    Ok(())
}

/// Envelope type of a data message (ENV-1).
const TYPE_DATA: u8 = 0x11;

/// Messages and their receipts until the sender's epoch is acknowledged and its envelopes are
/// ordinary data envelopes (EPOCH-3), as in a running conversation.
fn warm_up(a: &mut Device, b: &mut Device) -> R<()> {
    for _ in 0..4 {
        let now = now_ms();
        let out = a.send(&mut OsRng, now, b.user_id(), &Content::Text("hello".into()))?;
        b.receive(now, &out.envelope)?;
        if out.envelope.first() == Some(&TYPE_DATA) {
            return Ok(());
        }
        let receipt = b.send(
            &mut OsRng,
            now,
            a.user_id(),
            &Content::Receipt(vec![out.id]),
        )?;
        a.receive(now, &receipt.envelope)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------- raw path

/// What a receiver saw.
#[derive(Default)]
struct Received {
    /// Messages of this phase opened.
    count: usize,
    /// Latencies, µs.
    latencies: Vec<u64>,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    /// Envelopes that did not open or were not of this phase (stale redeliveries).
    other: usize,
    error: Option<String>,
}

/// Connects as `creds`, subscribes to the own inbox, and opens (`device`) or reads (plain)
/// messages tagged `tag` until `expect` arrived or the deadline; acknowledges each after opening
/// (RX-4). `ready` fires at the SUBACK.
async fn receiver(
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
                let sent = match device.as_mut() {
                    Some(d) => match d.receive(now_ms(), &p.payload) {
                        Ok(inc) => match &inc.content {
                            Content::Text(t) => parse(t, tag),
                            _ => None,
                        },
                        Err(_) => None,
                    },
                    None => std::str::from_utf8(&p.payload)
                        .ok()
                        .and_then(|t| parse(t, tag)),
                };
                match sent {
                    Some(t) => {
                        let now = Instant::now();
                        out.latencies.push(micros().saturating_sub(t));
                        out.count += 1;
                        out.first_at.get_or_insert(now);
                        out.last_at = Some(now);
                    }
                    None => out.other += 1,
                }
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
    // Hand the remaining acks over, then DISCONNECT (FIFO: the acks go out first).
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for p in &acks {
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
    out
}

/// What a sender did.
#[derive(Default)]
struct Sent {
    published: usize,
    acked: usize,
    envelope_len: usize,
    /// Envelope type of the measured messages (0x11 data, 0x12 first, 0x13 epoch start), if
    /// encrypted.
    envelope_type: Option<u8>,
    error: Option<String>,
}

/// Where a sender's payloads come from.
enum Source {
    /// Built at send time: the tagged plaintext, sealed for `to` if there is a device.
    Live {
        device: Option<Box<Device>>,
        to: UserId,
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
async fn sender(
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
            if matches!(
                source,
                Source::Live {
                    device: Some(_),
                    ..
                }
            ) {
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

// ---------------------------------------------------------------------------------- figures

/// One line of the table.
struct Row {
    broker: &'static str,
    path: String,
    load: String,
    wire: String,
    rate: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    note: String,
    /// Messages counted, seconds measured, latencies (µs): to merge rounds.
    count: usize,
    seconds: f64,
    latencies: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map(|us| *us as f64 / 1000.0)
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

fn header() {
    println!("| broker | path | messages | bytes on the wire | msgs/s | p50 ms | p99 ms | notes |");
    println!("|---|---|---|---|---:|---:|---:|---|");
}

fn print_row(r: &Row) {
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

/// Throughput and latency of a phase: `received` over the time from `start` to the last open.
fn summarize(
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

/// A phase's figures.
struct Summary {
    rate: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    note: String,
    count: usize,
    seconds: f64,
    latencies: Vec<u64>,
}

/// One row for several rounds of the same measurement: messages over summed time, pooled
/// latencies.
fn merge(mut rows: Vec<Row>) -> Option<Row> {
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

// ---------------------------------------------------------------------------------- phases

/// A sender -> receiver pair: accounts for the full `Client` phase, credentials and warmed-up
/// device copies for the raw phases.
struct Pair {
    a: Client,
    b: Client,
    ca: Creds,
    cb: Creds,
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
    let mut receivers = Vec::new();
    let mut ready = Vec::new();
    let mut senders_input = Vec::new();
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
        senders_input.push((p.ca.clone(), da, p.cb.id));
    }
    for r in ready {
        tokio::time::timeout(SETUP_WAIT, r)
            .await
            .map_err(|_| "receiver not subscribed in time")??;
    }
    let (go_tx, go_rx) = watch::channel(false);
    let mut senders = Vec::new();
    let mut ready = Vec::new();
    for (creds, device, to) in senders_input {
        let (tx, rx) = oneshot::channel();
        ready.push(rx);
        let source = Source::Live {
            device: device.map(Box::new),
            to,
            tag,
        };
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
    for r in ready {
        tokio::time::timeout(SETUP_WAIT, r)
            .await
            .map_err(|_| "sender not connected in time")??;
    }
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
    let errors = sent.iter().filter_map(|s| s.error.clone()).collect();
    let Summary {
        rate,
        p50,
        p99,
        mut note,
        count,
        seconds,
        latencies,
    } = summarize(start, &received, pairs.len() * m, errors);
    let wire = sent.first().map(|s| s.envelope_len).unwrap_or(0);
    if let Some(t) = sent.first().and_then(|s| s.envelope_type) {
        note.push_str(&format!("; envelope type 0x{t:02x}"));
    }
    Ok(Row {
        broker,
        path: if encrypted {
            "encrypted, raw device path (Device::send/receive, no store)".into()
        } else {
            "plain MQTT (no crypto)".into()
        },
        load: format!("{} x {m}", pairs.len()),
        wire: if encrypted {
            format!("{wire} (envelope of a {PLAINTEXT_SIZE}-byte text)")
        } else {
            format!("{wire}")
        },
        rate,
        p50_ms: p50,
        p99_ms: p99,
        note,
        count,
        seconds,
        latencies,
    })
}

/// Phase 3: the full client on both sides (`SessionHandle::send` commits to SQLCipher and the
/// outbox; the receiver opens, commits, acks and sends a receipt back).
async fn client_phase(
    broker: &'static str,
    pairs: Vec<Pair>,
    k: usize,
    timeout: Duration,
) -> R<Row> {
    let deadline = Instant::now() + timeout;
    let n = pairs.len();
    let (go_tx, go_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let delivered = Arc::new(AtomicUsize::new(0));
    for p in pairs {
        let to = p.b.user_id();
        let (ha, mut ea) = p.a.connect();
        let (hb, mut eb) = p.b.connect();
        for events in [&mut ea, &mut eb] {
            tokio::time::timeout(SETUP_WAIT, async {
                while let Some(ev) = events.recv().await {
                    if matches!(ev, ClientEvent::Connected { .. }) {
                        return Ok(());
                    }
                }
                Err("session ended before connecting")
            })
            .await
            .map_err(|_| "client not connected in time")??;
        }
        // The sender's events: count the receipts (Delivered) as they come back.
        let d = delivered.clone();
        tokio::spawn(async move {
            while let Some(ev) = ea.recv().await {
                if matches!(ev, ClientEvent::Delivered { .. }) {
                    d.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        receivers.push(tokio::spawn(async move {
            let mut out = Received::default();
            while out.count < k {
                match tokio::time::timeout_at(deadline, eb.recv()).await {
                    Err(_) => {
                        out.error = Some("phase timeout".into());
                        break;
                    }
                    Ok(None) => {
                        out.error = Some("receiver session ended".into());
                        break;
                    }
                    Ok(Some(ClientEvent::Message(msg))) => match parse(&msg.text, TAG_CLIENT) {
                        Some(t) => {
                            let now = Instant::now();
                            out.latencies.push(micros().saturating_sub(t));
                            out.count += 1;
                            out.first_at.get_or_insert(now);
                            out.last_at = Some(now);
                        }
                        None => out.other += 1,
                    },
                    Ok(Some(_)) => {}
                }
            }
            (out, hb)
        }));
        let mut go = go_rx.clone();
        senders.push(tokio::spawn(async move {
            let _ = go.wait_for(|g| *g).await;
            let mut error = None;
            for seq in 0..k {
                let send = ha.send(to, plaintext(TAG_CLIENT, seq));
                match tokio::time::timeout_at(deadline, send).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        error = Some(format!("send: {e}"));
                        break;
                    }
                    Err(_) => {
                        error = Some("phase timeout".into());
                        break;
                    }
                }
            }
            (error, ha)
        }));
    }
    let start = Instant::now();
    go_tx.send(true)?;
    let mut received = Vec::new();
    let mut handles = Vec::new();
    for r in receivers {
        let (out, hb) = r.await?;
        received.push(out);
        handles.push(hb);
    }
    let mut errors = Vec::new();
    for s in senders {
        let (error, ha) = s.await?;
        errors.extend(error);
        handles.push(ha);
    }
    // Give the receipts a moment to come back (reported, not timed).
    let receipts_deadline = Instant::now() + Duration::from_secs(10);
    while delivered.load(Ordering::SeqCst) < n * k && Instant::now() < receipts_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let receipts = delivered.load(Ordering::SeqCst);
    for h in handles {
        if let Ok(client) = h.shutdown().await {
            let _ = client.close();
        }
    }
    let Summary {
        rate,
        p50,
        p99,
        mut note,
        count,
        seconds,
        latencies,
    } = summarize(start, &received, n * k, errors);
    note.push_str(&format!(
        "; receipts back at the senders: {receipts}/{}",
        n * k
    ));
    Ok(Row {
        broker,
        path: "encrypted, full Client (SQLCipher commits, receipts)".into(),
        load: format!("{n} x {k}"),
        wire: "as above".into(),
        rate,
        p50_ms: p50,
        p99_ms: p99,
        note,
        count,
        seconds,
        latencies,
    })
}

/// Phase 4: `d` envelopes queued for an offline recipient, then drained (each opened).
async fn drain_phase(
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

    // The recipient's persistent session exists (signup connected once); connect once more so
    // that its subscription is certainly in place, then go offline.
    let (tx, _rx) = oneshot::channel();
    let setup = receiver(
        cr.clone(),
        None,
        TAG_DRAIN,
        0,
        Instant::now() + SETUP_WAIT,
        tx,
    )
    .await;
    if let Some(e) = setup.error {
        return Err(format!("recipient setup: {e}").into());
    }

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

    let deadline = Instant::now() + timeout;
    let (tx, rx) = oneshot::channel();
    let (go_tx, go_rx) = watch::channel(false);
    let queue = tokio::spawn(sender(
        cs,
        Source::Prepared(envelopes),
        cr.id,
        d,
        tx,
        go_rx,
        deadline,
    ));
    tokio::time::timeout(SETUP_WAIT, rx)
        .await
        .map_err(|_| "drain sender not connected in time")??;
    let queue_start = Instant::now();
    go_tx.send(true)?;
    let sent = queue.await?;
    let queue_s = queue_start.elapsed().as_secs_f64();

    let deadline = Instant::now() + timeout;
    let start = Instant::now();
    let (tx, _rx) = oneshot::channel();
    let drained = receiver(cr, Some(dr), TAG_DRAIN, d, deadline, tx).await;
    let first_s = drained
        .first_at
        .map(|f| f.duration_since(start).as_secs_f64());
    let Summary {
        rate,
        mut note,
        count,
        seconds,
        ..
    } = summarize(start, std::slice::from_ref(&drained), d, Vec::new());
    note.push_str(&format!(
        "; from CONNECT; first message after {:.2} s",
        first_s.unwrap_or(0.0)
    ));
    let queue_rate = if queue_s > 0.0 {
        sent.acked as f64 / queue_s
    } else {
        0.0
    };
    let mut queue_note = format!(
        "{}/{d} PUBACKed in {queue_s:.2} s; sealing beforehand: {:.0} msgs/s",
        sent.acked,
        d as f64 / seal_s.max(1e-9)
    );
    if let Some(e) = sent.error {
        queue_note.push_str(&format!("; {e}"));
    }
    Ok(vec![
        Row {
            broker,
            path: "queue for an offline recipient (publish + PUBACK)".into(),
            load: format!("1 x {d}"),
            wire: format!("{wire}"),
            rate: queue_rate,
            p50_ms: None,
            p99_ms: None,
            note: queue_note,
            count: sent.acked,
            seconds: queue_s,
            latencies: Vec::new(),
        },
        Row {
            broker,
            path: "drain: recipient connects, opens each (raw device path)".into(),
            load: format!("1 x {d}"),
            wire: format!("{wire}"),
            rate,
            p50_ms: None,
            p99_ms: None,
            note,
            count,
            seconds,
            latencies: Vec::new(),
        },
    ])
}

/// Every phase against one broker.
async fn run_broker(which: Which, args: &Args) -> R<Vec<Row>> {
    let name: &'static str = match which {
        Which::Mosquitto => "mosquitto",
        _ => "embedded",
    };
    let stack = Stack::start(which).await?;
    let mut accounts = stack.signup(2 * args.pairs + 2).await?;
    let recipient = accounts.pop().ok_or("signup")?;
    let drain_sender = accounts.pop().ok_or("signup")?;
    let mut drain_pair = (drain_sender, recipient);
    exchange_cards(&mut drain_pair.0, &mut drain_pair.1)?;
    let mut pairs = Vec::new();
    while let (Some(mut b), Some(mut a)) = (accounts.pop(), accounts.pop()) {
        exchange_cards(&mut a, &mut b)?;
        let (ca, cb) = (Creds::of(&a)?, Creds::of(&b)?);
        pairs.push(Pair { a, b, ca, cb });
    }
    eprintln!(
        "[{name}] {} accounts signed up, cards exchanged",
        2 * args.pairs + 2
    );

    let mut rows = Vec::new();
    // Plain and encrypted alternate, so that both see the same background load.
    let (mut plain, mut sealed) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        for encrypted in [false, true] {
            eprintln!(
                "[{name}] round {round}: {} ...",
                if encrypted { "encrypted" } else { "plain" }
            );
            let row = raw_phase(name, &pairs, args.messages, encrypted, args.timeout).await?;
            eprintln!("[{name}]   {:.0} msgs/s; {}", row.rate, row.note);
            if encrypted {
                sealed.push(row);
            } else {
                plain.push(row);
            }
        }
    }
    for row in [merge(plain), merge(sealed)].into_iter().flatten() {
        print_row(&row);
        rows.push(row);
    }
    if args.client_messages > 0 {
        eprintln!("[{name}] full client ...");
        let row = client_phase(name, pairs, args.client_messages, args.timeout).await?;
        print_row(&row);
        rows.push(row);
    }
    if args.drain > 0 {
        eprintln!("[{name}] drain ...");
        let drain_rows =
            drain_phase(name, &drain_pair.0, &drain_pair.1, args.drain, args.timeout).await?;
        for r in &drain_rows {
            print_row(r);
        }
        rows.extend(drain_rows);
    }
    let _ = drain_pair.0.close();
    let _ = drain_pair.1.close();
    stack.shutdown().await;
    Ok(rows)
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
    let _ = micros();
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
         (window of {MAX_INFLIGHT} publishes in flight per sender)."
    );
    let mut brokers = Vec::new();
    if matches!(args.broker, Which::Embedded | Which::Both) {
        brokers.push(Which::Embedded);
    }
    let mut skipped = None;
    if matches!(args.broker, Which::Mosquitto | Which::Both) {
        if mosquitto_available() {
            brokers.push(Which::Mosquitto);
        } else {
            skipped = Some("mosquitto: skipped (no `mosquitto` binary on the PATH)");
        }
    }
    println!();
    header();
    let mut all: Vec<Row> = Vec::new();
    let mut failures = Vec::new();
    for which in brokers {
        match run_broker(which, &args).await {
            Ok(rows) => all.extend(rows),
            Err(e) => failures.push(format!("{which:?}: failed: {e}")),
        }
    }
    println!();
    for broker in ["embedded", "mosquitto"] {
        let rate = |prefix: &str| {
            all.iter()
                .find(|r| r.broker == broker && r.path.starts_with(prefix))
                .map(|r| r.rate)
        };
        if let (Some(plain), Some(sealed)) = (rate("plain"), rate("encrypted, raw")) {
            if plain > 0.0 {
                let ratio = sealed / plain * 100.0;
                println!(
                    "{broker}: encrypted/plain throughput = {ratio:.1}%; encryption cost: {:.1}% of \
                     plain MQTT throughput (target: <= 10%)",
                    100.0 - ratio
                );
            }
        }
    }
    if let Some(s) = skipped {
        println!("{s}");
    }
    for f in &failures {
        println!("{f}");
    }
}
