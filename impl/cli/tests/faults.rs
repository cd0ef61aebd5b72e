//! Process-level fault injection with the built `sotto` binary (issue 6, item 2): `sotto serve`,
//! Mosquitto and every person are separate processes with their own stores, and the test crashes
//! them with SIGKILL at the worst moments. Each scenario runs against the embedded broker and
//! against Mosquitto (skipped with a note when `mosquitto` is not installed). Afterwards every
//! message is in its recipient's store exactly once, no inbox shows one twice, the sender sees
//! it delivered, and every command that failed meanwhile exited 1 with an `error:` that says what
//! to do (no panic, no backtrace).
//!
//! 1. **A client killed between receiving and committing (RX-4, BROKER-4).** The recipient
//!    reaches the broker through a loopback TCP proxy in this test (`serve --public-broker`
//!    advertises the proxy at signup). The proxy follows the TLS records from the broker to the
//!    client; a message is a record of several KB (texts near the LIM-2 limit of 4,000 bytes), larger than anything
//!    else on that stream. Right after forwarding such a record it SIGKILLs the recipient's
//!    `sotto inbox`, which has the PUBLISH but has (almost surely) not committed it yet: the
//!    client commits before it acknowledges, so the broker still holds the message. One message
//!    per round, with kill delays from 0 to 30 ms; after each kill the test reads the store
//!    directly, then runs `sotto inbox` again: the message is in the store exactly once, and
//!    that inbox shows it once (new until shown: the killed one showed nothing). At least one kill must have landed before the commit, otherwise the test did
//!    not exercise the window.
//! 2. **The broker killed mid-traffic and restarted (BROKER-4, RX-6).** A sender runs a series
//!    of `sotto send` processes while the recipient is offline. Embedded: the whole
//!    `sotto serve` is SIGKILLed as the third send starts and started again on the same ports with
//!    the same data directory; the in-memory embedded broker loses its queues, so the sender's outbox
//!    must resend (after the default backoff of 30 s). Mosquitto: `serve --mosquitto-external`
//!    (its front) stays up and the test SIGKILLs and restarts the Mosquitto it runs behind that
//!    front, as an operator's service manager would (same configuration and socket; what it had
//!    not autosaved is lost). While down, `send` and `inbox` fail with "could not reach the
//!    message service" (the front answers "server unavailable"; `send` says the message stays in
//!    the outbox); embedded, a signup fails too (the membership service died with the process).
//!    Afterwards all messages arrive exactly once and end delivered.
//! 3. **`sotto serve` killed while an external Mosquitto keeps its queues.** Only a separate
//!    broker makes this different from scenario 2. The test SIGKILLs `sotto serve --mosquitto-external`
//!    (membership and front) while the Mosquitto behind it runs on with a message queued for an
//!    offline user: meanwhile sends, inboxes, directory lookups (KEY-5) and signups (SIGNUP-4)
//!    fail clearly; after the restart on the same ports the queued message is still delivered, the
//!    outbox sends the one that failed, and everything arrives exactly once.
//!
//! Every wait is bounded (commands by `COMMAND_WAIT`, loops by deadlines), children are killed
//! when their guards drop, only loopback addresses are used, and nothing asserts on speed.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{
    COMMAND_WAIT, Guard, Output, PASSPHRASE, Running, SERVE_WAIT, Server, add_card, free_addr,
    signup, sotto, stored_messages,
};
use sotto_server::Broker;
use sotto_store::{Direction, MessageState, StoredMessage};

/// A broker->client TLS record at least this long carries a message: the texts of scenario 1
/// are near the 4000-byte limit, while the handshake, CONNACK, SUBACK, pings and receipts are
/// far shorter.
const LARGE_RECORD: usize = 3000;
/// Upper bound for everything to arrive after a fault (covers the 30 s resend backoff, RX-6).
const CONVERGE_WAIT: Duration = Duration::from_secs(240);
/// How long a `send` or `inbox` keeps trying while the service is down.
const SHORT_TIMEOUT: &str = "4s";
/// The error of a command that could not reach the broker.
const BROKER_DOWN: &str = "could not reach the message service";

/// `true` if `broker` can run here; otherwise says that the test is skipped.
fn broker_available(broker: Broker, test: &str) -> bool {
    let found = broker.is_available();
    if !found {
        eprintln!("{test}: SKIPPED, {broker} is not installed (apt-get install {broker})");
    }
    found
}

/// `sotto serve` on the given ports with `broker` (`extra` appended).
fn serve(
    data: &Path,
    broker: Broker,
    listen: SocketAddr,
    mqtt: SocketAddr,
    extra: &[&str],
) -> Server {
    let (listen, mqtt) = (listen.to_string(), mqtt.to_string());
    let mut args = vec![
        "--listen",
        &listen,
        "--mqtt",
        &mqtt,
        "--broker",
        broker.name(),
    ];
    args.extend(extra);
    Server::start_with(data, &args)
}

/// Mosquitto with the configuration `serve --mosquitto-external` wrote, started by the test as
/// an operator would; returns once its Unix socket (behind the front) accepts connections.
fn start_mosquitto(data: &Path) -> Guard {
    static STARTS: AtomicU64 = AtomicU64::new(0);
    let dir = data.join("mosquitto");
    let n = STARTS.fetch_add(1, Ordering::Relaxed);
    let stderr = std::fs::File::create(dir.join(format!("stderr-{n}"))).expect("stderr file");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("mosquitto starts");
    let mut guard = Guard::new(child);
    let socket = dir.join("run").join("mqtt.sock");
    let deadline = Instant::now() + SERVE_WAIT;
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto listens on {} in time",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        matches!(guard.child.try_wait(), Ok(None)),
        "mosquitto is still running (see {})",
        dir.display()
    );
    guard
}

/// A text near the size limit, unique by its marker `[<tag> mNN]`.
fn big_text(tag: &str, k: usize) -> String {
    let mut text = format!("[{tag} m{k:02}] ");
    while text.len() < 3900 {
        text.push_str("all work and no play makes a long message. ");
    }
    text.truncate(3900);
    text
}

fn marker(text: &str) -> &str {
    text.split_once(']').map(|(m, _)| m).unwrap_or(text)
}

/// How often `needle` occurs in `haystack`.
fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The messages from `from` in `store`, each text exactly once and nothing else.
fn assert_each_once(store: &Path, from: &str, texts: &[String]) {
    let got: Vec<StoredMessage> = stored_messages(store, from)
        .into_iter()
        .filter(|m| m.direction == Direction::In)
        .collect();
    for t in texts {
        let n = got.iter().filter(|m| &m.text == t).count();
        assert_eq!(n, 1, "{} is stored exactly once (found {n})", marker(t));
    }
    assert_eq!(got.len(), texts.len(), "no other message is stored");
}

/// Whether every message `store` sent to `to` is delivered (its receipt came back, RX-5).
fn all_delivered(store: &Path, to: &str) -> bool {
    stored_messages(store, to)
        .iter()
        .filter(|m| m.direction == Direction::Out)
        .all(|m| m.state == MessageState::Delivered)
}

/// Runs `inbox` for each store in turn until `done` holds, bounded by [`CONVERGE_WAIT`]; returns
/// the stdout of every inbox run, per store.
fn converge(dir: &Path, stores: &[&Path], done: impl Fn() -> bool) -> Vec<String> {
    let mut shown = vec![String::new(); stores.len()];
    let started = Instant::now();
    let deadline = started + CONVERGE_WAIT;
    for round in 1.. {
        for (i, s) in stores.iter().enumerate() {
            let out = sotto(dir, s, PASSPHRASE, &["inbox"]);
            assert!(out.ok, "{out:?}");
            shown[i].push_str(&out.stdout);
        }
        if done() {
            eprintln!(
                "converged after {round} round(s) of inbox, {:?}",
                started.elapsed()
            );
            return shown;
        }
        assert!(
            Instant::now() < deadline,
            "everything arrived and was receipted within {CONVERGE_WAIT:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    unreachable!("the loop ends by its deadline")
}

// ------------------------------------------------------------------ the killing proxy

/// Follows TLS records in a byte stream.
#[derive(Default)]
struct Records {
    head: [u8; 5],
    have: usize,
    len: usize,
    left: usize,
}

impl Records {
    /// Feeds bytes that were just forwarded; `true` if a record of at least `min` bytes ended in
    /// them.
    fn feed(&mut self, mut bytes: &[u8], min: usize) -> bool {
        let mut hit = false;
        while !bytes.is_empty() {
            if self.left == 0 {
                let take = (5 - self.have).min(bytes.len());
                self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                self.have += take;
                bytes = &bytes[take..];
                if self.have == 5 {
                    self.have = 0;
                    self.len = usize::from(u16::from_be_bytes([self.head[3], self.head[4]]));
                    self.left = self.len;
                }
            } else {
                let take = self.left.min(bytes.len());
                self.left -= take;
                bytes = &bytes[take..];
                if self.left == 0 && self.len >= min {
                    hit = true;
                }
            }
        }
        hit
    }
}

/// The proxy's shared state.
#[derive(Default)]
struct Trap {
    /// Kill the victim at the next large record (then disarm).
    armed: AtomicBool,
    /// Wait this long after forwarding the record, µs.
    delay_us: AtomicU64,
    /// The process to kill.
    victim: Mutex<Option<Running>>,
    stop: AtomicBool,
}

/// A loopback TCP proxy to the broker that SIGKILLs its victim right after forwarding a large
/// broker->client record.
struct KillProxy {
    addr: SocketAddr,
    trap: Arc<Trap>,
}

impl KillProxy {
    fn start(upstream: SocketAddr) -> KillProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr");
        let trap = Arc::new(Trap::default());
        let t = trap.clone();
        std::thread::spawn(move || {
            while !t.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(broker) = TcpStream::connect(upstream) else {
                            continue;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = broker.set_nodelay(true);
                        pipe(client, broker, t.clone());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        KillProxy { addr, trap }
    }

    /// Runs `run` as the victim of the next large record, `delay` after it was forwarded; waits
    /// until it ended (killed or not) and returns its output.
    fn run_trapped(&self, run: Running, delay: Duration) -> Output {
        let delay_us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.trap.delay_us.store(delay_us, Ordering::SeqCst);
        *self.trap.victim.lock().expect("lock") = Some(run);
        self.trap.armed.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + COMMAND_WAIT;
        let out = loop {
            {
                let mut slot = self.trap.victim.lock().expect("lock");
                if let Some(out) = slot.as_mut().and_then(Running::try_finish) {
                    break out;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the trapped command ended within {COMMAND_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.trap.armed.store(false, Ordering::SeqCst);
        // Dropping the guard reaps the process.
        drop(self.trap.victim.lock().expect("lock").take());
        out
    }
}

impl Drop for KillProxy {
    fn drop(&mut self) {
        self.trap.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies both ways; watches broker->client for the trap. Both sockets close when either side
/// ends.
fn pipe(client: TcpStream, broker: TcpStream, trap: Arc<Trap>) {
    let (Ok(mut c_read), Ok(mut b_write)) = (client.try_clone(), broker.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = c_read.read(&mut buf) {
            if n == 0 || b_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = b_write.shutdown(Shutdown::Both);
        let _ = c_read.shutdown(Shutdown::Both);
    });
    let (mut b_read, mut c_write) = (broker, client);
    std::thread::spawn(move || {
        let mut buf = [0u8; 32 * 1024];
        let mut records = Records::default();
        while let Ok(n) = b_read.read(&mut buf) {
            if n == 0 || c_write.write_all(&buf[..n]).is_err() {
                break;
            }
            if records.feed(&buf[..n], LARGE_RECORD) && trap.armed.swap(false, Ordering::SeqCst) {
                let delay = trap.delay_us.load(Ordering::SeqCst);
                if delay > 0 {
                    std::thread::sleep(Duration::from_micros(delay));
                }
                if let Some(run) = trap.victim.lock().expect("lock").as_mut() {
                    let _ = run.guard.child.kill();
                }
            }
        }
        let _ = c_write.shutdown(Shutdown::Both);
        let _ = b_read.shutdown(Shutdown::Both);
    });
}

// ------------------------------------------------------------------ scenario 1

fn kill_between_receiving_and_committing(broker: Broker) {
    let test = format!("kill_between_receiving_and_committing({broker:?})");
    if !broker_available(broker, &test) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (listen_port, mqtt_port) = (free_addr(), free_addr());
    let (listen, mqtt) = (listen_port.addr(), mqtt_port.addr());
    let proxy = KillProxy::start(mqtt);
    let public = proxy.addr.to_string();
    let server = serve(
        &d.join("server"),
        broker,
        listen,
        mqtt,
        &["--public-broker", &public],
    );
    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    let alice_id = signup(d, &alice, &server);
    let bob_id = signup(d, &bob, &server);
    let out = add_card(d, &alice, &bob);
    assert!(out.ok, "{out:?}");

    // Kill delays after the record was forwarded: at once (the commit cannot have happened),
    // then later and later (the kill may land after the commit, before or after the ack).
    let delays_ms = [0u64, 0, 0, 1, 3, 10, 30];
    let (mut texts, mut shown) = (Vec::new(), String::new());
    let mut before_commit = 0;
    for (k, delay) in delays_ms.into_iter().enumerate() {
        let text = big_text("rx4", k);
        // Bob is offline: the broker queues it.
        let out = sotto(d, &alice, PASSPHRASE, &["send", &bob_id, &text]);
        assert!(out.ok, "{out:?}");
        texts.push(text.clone());

        // Bob comes online and dies as the message reaches him.
        let victim = Running::spawn(d, &bob, PASSPHRASE, &["inbox"]);
        let out = proxy.run_trapped(victim, Duration::from_millis(delay));
        assert_eq!(
            out.code, None,
            "bob's inbox was killed by the proxy: {out:?}"
        );
        let stored = stored_messages(&bob, &alice_id)
            .iter()
            .filter(|m| m.text == text)
            .count();
        assert!(stored <= 1, "{} stored {stored} times", marker(&text));
        if stored == 0 {
            before_commit += 1;
        }
        eprintln!(
            "{test}: round {k}, kill {delay} ms after the record: {}",
            if stored == 0 {
                "before the commit"
            } else {
                "after the commit"
            }
        );

        // Bob again: what he had not acknowledged comes again, and is committed once; the
        // killed inbox showed nothing, so this one shows the message as new either way.
        let out = sotto(d, &bob, PASSPHRASE, &["inbox"]);
        assert!(out.ok, "{out:?}");
        let n = count(&out.stdout, marker(&text));
        assert_eq!(
            n, 1,
            "shown once, by the inbox that was not killed: {out:?}"
        );
        shown.push_str(&out.stdout);
        assert_each_once(&bob, &alice_id, &texts);
    }
    assert!(
        before_commit >= 1,
        "at least one kill landed between receiving and committing"
    );
    for t in &texts {
        assert_eq!(count(&shown, marker(t)), 1, "{} shown once", marker(t));
    }

    // Alice collects the receipts: everything delivered.
    converge(d, &[&alice, &bob], || all_delivered(&alice, &bob_id));
    assert_each_once(&bob, &alice_id, &texts);
    drop(server);
}

#[test]
fn a_client_killed_between_receiving_and_committing_gets_each_message_once_rx_4_embedded() {
    kill_between_receiving_and_committing(Broker::Embedded);
}

#[test]
fn a_client_killed_between_receiving_and_committing_gets_each_message_once_rx_4_mosquitto() {
    kill_between_receiving_and_committing(Broker::Mosquitto);
}

// ------------------------------------------------------------------ scenario 2

fn broker_killed_mid_traffic(broker: Broker) {
    let test = format!("broker_killed_mid_traffic({broker:?})");
    if !broker_available(broker, &test) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().to_owned();
    let data = d.join("server");
    let (listen_port, mqtt_port) = (free_addr(), free_addr());
    let (listen, mqtt) = (listen_port.addr(), mqtt_port.addr());
    let extra: &[&str] = match broker {
        Broker::Embedded => &[],
        Broker::Mosquitto => &["--mosquitto-external"],
        Broker::Nats => unreachable!("run for Broker::ALL, the brokers a service runs itself"),
    };
    let mut server = Some(serve(&data, broker, listen, mqtt, extra));
    let mut mosquitto = (broker == Broker::Mosquitto).then(|| start_mosquitto(&data));
    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    let alice_id = signup(&d, &alice, server.as_ref().expect("up"));
    let bob_id = signup(&d, &bob, server.as_ref().expect("up"));
    let out = add_card(&d, &alice, &bob);
    assert!(out.ok, "{out:?}");

    // Alice sends a series, one `sotto send` after the other; Bob is offline.
    const N: usize = 8;
    let texts: Vec<String> = (0..N)
        .map(|i| format!("[crash m{i:02}] sent around a broker crash"))
        .collect();
    let (tx, rx) = mpsc::channel::<Output>();
    let sender = {
        let (d, alice, bob_id, texts) = (d.clone(), alice.clone(), bob_id.clone(), texts.clone());
        std::thread::spawn(move || {
            for t in &texts {
                let args = ["send", &bob_id, t, "--timeout", SHORT_TIMEOUT];
                if tx.send(sotto(&d, &alice, PASSPHRASE, &args)).is_err() {
                    break;
                }
            }
        })
    };
    let mut sends = Vec::new();
    let wait_sends = |sends: &mut Vec<Output>, n: usize| {
        while sends.len() < n {
            let out = rx
                .recv_timeout(COMMAND_WAIT)
                .expect("the sender finishes its sends");
            sends.push(out);
        }
    };

    // Two go through, then the broker dies under the third.
    wait_sends(&mut sends, 2);
    let started = Instant::now();
    match broker {
        Broker::Embedded => server.take().expect("up").kill(),
        Broker::Mosquitto => mosquitto.take().expect("up").kill(),
        Broker::Nats => unreachable!("run for Broker::ALL, the brokers a service runs itself"),
    }

    // While it is down: Bob's inbox fails clearly; embedded, the membership service is gone
    // too and a signup fails clearly.
    let out = sotto(&d, &bob, PASSPHRASE, &["inbox", "--timeout", SHORT_TIMEOUT]);
    out.assert_clear_error(&[BROKER_DOWN, "is `sotto serve` running?"]);
    eprintln!("{test}: inbox while the broker is down:\n{}", out.stderr);
    if broker == Broker::Embedded {
        let url = format!("https://{listen}");
        let ca = data.join("ca.pem");
        let ca = ca.to_str().expect("utf-8 path");
        let out = sotto(
            &d,
            &d.join("carol.db"),
            PASSPHRASE,
            &["signup", "--server", &url, "--ca", ca],
        );
        out.assert_clear_error(&["is `sotto serve` running at that URL"]);
        eprintln!("{test}: signup while the service is down:\n{}", out.stderr);
        assert!(!d.join("carol.db").exists(), "no half-made store is left");
    }
    // The send under the crash and the next one (entirely while down) are done.
    wait_sends(&mut sends, 5);
    eprintln!(
        "{test}: down for {:?}, restarting",
        Instant::now().duration_since(started)
    );
    match broker {
        Broker::Embedded => server = Some(serve(&data, broker, listen, mqtt, extra)),
        Broker::Mosquitto => mosquitto = Some(start_mosquitto(&data)),
        Broker::Nats => unreachable!("run for Broker::ALL, the brokers a service runs itself"),
    }
    wait_sends(&mut sends, N);
    sender.join().expect("the sender thread ends");

    for (i, out) in sends.iter().enumerate() {
        if out.ok {
            assert!(out.stdout.contains(&bob_id), "{i}: {out:?}");
        } else {
            out.assert_clear_error(&[BROKER_DOWN, "saved in the outbox"]);
        }
    }
    assert!(sends[0].ok && sends[1].ok, "{sends:?}");
    assert!(
        !sends[4].ok,
        "the send entirely during the outage failed: {sends:?}"
    );
    eprintln!(
        "{test}: send while the broker is down:\n{}",
        sends[4].stderr
    );

    // Everything arrives exactly once (the outbox resends what the crash lost, RX-6) and is
    // receipted.
    let shown = converge(&d, &[&bob, &alice], || {
        let bob_has = stored_messages(&bob, &alice_id).len() == N;
        bob_has && all_delivered(&alice, &bob_id)
    });
    assert_each_once(&bob, &alice_id, &texts);
    for t in &texts {
        assert_eq!(count(&shown[0], marker(t)), 1, "{} shown once", marker(t));
    }
    drop(mosquitto);
    drop(server);
}

#[test]
fn the_embedded_broker_killed_mid_traffic_and_restarted_loses_nothing_broker_4_rx_6_embedded() {
    broker_killed_mid_traffic(Broker::Embedded);
}

#[test]
fn mosquitto_killed_mid_traffic_and_restarted_loses_nothing_broker_4_rx_6_mosquitto() {
    broker_killed_mid_traffic(Broker::Mosquitto);
}

// ------------------------------------------------------------------ scenario 3

#[test]
fn sotto_serve_killed_and_restarted_while_mosquitto_keeps_its_queues_signup_4_key_5_mosquitto() {
    let broker = Broker::Mosquitto;
    let test = "serve_restart(Mosquitto)";
    if !broker_available(broker, test) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let data = d.join("server");
    let (listen_port, mqtt_port) = (free_addr(), free_addr());
    let (listen, mqtt) = (listen_port.addr(), mqtt_port.addr());
    let extra = ["--mosquitto-external"];
    let server = serve(&data, broker, listen, mqtt, &extra);
    let _mosquitto = start_mosquitto(&data);
    let (alice, bob, carol) = (d.join("alice.db"), d.join("bob.db"), d.join("carol.db"));
    let alice_id = signup(d, &alice, &server);
    let bob_id = signup(d, &bob, &server);
    let carol_id = signup(d, &carol, &server);
    let out = add_card(d, &alice, &bob);
    assert!(out.ok, "{out:?}");
    let texts: Vec<String> = (0..3)
        .map(|i| format!("[member m{i:02}] while sotto serve restarts"))
        .collect();
    // Queued in Mosquitto for Bob, who is offline.
    let out = sotto(d, &alice, PASSPHRASE, &["send", &bob_id, &texts[0]]);
    assert!(out.ok, "{out:?}");

    // `sotto serve` (membership and front) crashes; Mosquitto keeps running with Bob's queue.
    let url = server.url.clone();
    let ca: PathBuf = server.ca.clone();
    server.kill();

    // Everything fails clearly: messages (the front is gone; the text stays in the outbox), a
    // directory lookup, a signup.
    let args = ["send", &bob_id, &texts[1], "--timeout", SHORT_TIMEOUT];
    let out = sotto(d, &alice, PASSPHRASE, &args);
    out.assert_clear_error(&[BROKER_DOWN, "saved in the outbox"]);
    eprintln!("{test}: send while sotto serve is down:\n{}", out.stderr);
    let out = sotto(d, &bob, PASSPHRASE, &["inbox", "--timeout", SHORT_TIMEOUT]);
    out.assert_clear_error(&[BROKER_DOWN, "is `sotto serve` running?"]);
    let out = sotto(d, &carol, PASSPHRASE, &["add", &alice_id]);
    out.assert_clear_error(&["is `sotto serve` running at that URL"]);
    eprintln!(
        "{test}: add from the directory while membership is down:\n{}",
        out.stderr
    );
    let dave = d.join("dave.db");
    let ca_arg = ca.to_str().expect("utf-8 path");
    let out = sotto(
        d,
        &dave,
        PASSPHRASE,
        &["signup", "--server", &url, "--ca", ca_arg],
    );
    out.assert_clear_error(&["is `sotto serve` running at that URL"]);
    eprintln!("{test}: signup while membership is down:\n{}", out.stderr);
    assert!(!dave.exists(), "no half-made store is left");

    // Back on the same ports: the queued message is still there, the outbox sends the other,
    // the directory works again.
    let server = serve(&data, broker, listen, mqtt, &extra);
    let out = sotto(d, &carol, PASSPHRASE, &["add", &alice_id]);
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &carol, PASSPHRASE, &["send", &alice_id, &texts[2]]);
    assert!(out.ok, "{out:?}");
    signup(d, &dave, &server);
    let mut shown = String::new();

    let all = converge(d, &[&alice, &bob, &carol], || {
        all_delivered(&alice, &bob_id) && all_delivered(&carol, &alice_id)
    });
    shown.push_str(&all[1]);
    assert_each_once(&bob, &alice_id, &texts[..2]);
    assert_each_once(&alice, &carol_id, &texts[2..]);
    for t in &texts[..2] {
        assert_eq!(count(&shown, marker(t)), 1, "{} shown once", marker(t));
    }
    assert_eq!(count(&all[0], marker(&texts[2])), 1, "shown once");
}
