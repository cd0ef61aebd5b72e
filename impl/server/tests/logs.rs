//! BROKER-6 in the server's own logs: at the most verbose level (`trace`, what `sotto serve -vvv`
//! sets), nothing the server side logs names a user or a client's address, while two people sign
//! up, fetch each other from the directory, exchange messages (one offline) and take receipts,
//! through each broker behind the front.
//!
//! One test per file binary: the capturing subscriber is process-global. Client-side targets
//! (`sotto_client`, `rumqttc`, `reqwest`, `hyper_util::client`) are left out: a device may log its own contacts.

use std::io::Write;
use std::sync::{Arc, Mutex};

use sotto_server::Broker;
use sotto_testkit::{TestStack, sync, texts};

/// Everything logged, shared with the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

/// Two people through `broker`; returns their user ids as text.
async fn exchange(broker: Broker) -> Vec<String> {
    let stack = TestStack::start(broker).await;
    let mut alice = stack.signup("alice").await;
    let mut bob = stack.signup("bob").await;
    // From the directory (KEY-5): the membership service serves Bob's bundle to Alice.
    alice
        .add_from_directory(&bob.user_id())
        .await
        .expect("bundle");
    alice.send(&bob.user_id(), "hello").expect("send");
    sync(&mut alice).await;
    assert_eq!(texts(&sync(&mut bob).await), ["hello"]);
    bob.send(&alice.user_id(), "hi").expect("send");
    sync(&mut bob).await;
    assert_eq!(texts(&sync(&mut alice).await), ["hi"]);
    sync(&mut bob).await;
    let ids = vec![alice.user_id().to_text(), bob.user_id().to_text()];
    drop((alice, bob));
    let TestStack { service, dir } = stack;
    service.shutdown().await;
    drop(dir);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_no_user_and_no_address_at_trace_level() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,sotto_client=off,rumqttc=off,reqwest=off,hyper_util::client=off,sotto_testkit=off",
        ))
        .with_ansi(false)
        .with_writer(captured.clone())
        .init();

    let mut ids = exchange(Broker::Embedded).await;
    if Broker::Mosquitto.is_available() {
        ids.extend(exchange(Broker::Mosquitto).await);
    } else {
        eprintln!("mosquitto is not installed: embedded broker only");
    }

    let log = String::from_utf8_lossy(&captured.0.lock().expect("log")).into_owned();
    // Control: the capture really holds the server's trace output.
    assert!(
        log.contains("sotto_server") && log.lines().count() > 50,
        "the capture holds the server's log ({} lines)",
        log.lines().count()
    );
    let mut found: Vec<String> = Vec::new();
    for line in log.lines() {
        for id in &ids {
            if line.contains(id.as_str()) {
                found.push(format!("user id: {line}"));
            }
        }
        // A client's address: the loopback address with a port other than a listener's. The
        // server logs where it listens (`addr=127.0.0.1:<port>` on a "listening"/"ready" line).
        let listening = line.contains("listening") || line.contains("ready");
        if !listening && (line.contains("127.0.0.1:") || line.contains("[::1]:")) {
            found.push(format!("address: {line}"));
        }
    }
    assert!(
        found.is_empty(),
        "{} log lines name a user or an address:\n{}",
        found.len(),
        found
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
