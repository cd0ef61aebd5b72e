//! The cluster profile as an operator starts it (issue 17): `deploy/cluster/profile-start.sh`
//! (3 NATS nodes, PostgreSQL, two `sotto serve --broker nats` instances with one CA), then people
//! on the `sotto` command line: Alice signs up at instance 1, Bob at instance 2, they scan each
//! other's cards and chat while a NATS node is SIGKILLed and Bob's instance is SIGKILLed and
//! started again (`deploy/cluster/profile-node.sh`). Every text arrives exactly once, and once
//! everything is acknowledged the engine holds nothing (read from NATS itself, `STREAM.INFO`).
//! Then a small `sotto soak --broker nats` on the same cluster (20 clients x 20 messages).
//!
//! Needs `nats-server`, PostgreSQL and `mosquitto_pub` (the scripts' readiness probe); skips
//! without them unless `SOTTO_REQUIRE_NATS=1` (CI installs them).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{PASSPHRASE, SOTTO, add_card, serve_error, sotto, user_id};
use sotto_server::broker::nats::NatsCluster;

/// Added to every port of the profile (its defaults stay free for an operator's own run).
const PORT_BASE: u16 = 300;

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/cluster")
        .join(name)
}

/// Runs a profile script with the profile's environment; panics with its output if it fails.
fn run(base: &Path, name: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("240")
        .arg(script(name))
        .args(args)
        .env("BASE", base)
        .env("PORT_BASE", PORT_BASE.to_string())
        .env("PROFILE_TTL", "600")
        .env("SOTTO", SOTTO)
        .env("DIFFICULTY", "8")
        .output()
        .expect("the script runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} {args:?} failed:\n{text}");
    text
}

/// Stops the profile whatever happens to the test.
struct Profile(PathBuf);

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = Command::new(script("profile-stop.sh"))
            .env("BASE", &self.0)
            .output();
    }
}

/// Whether `program` is on the PATH.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

/// Receives on `store` until `want` texts have arrived in all (at most `within`); returns every
/// text printed.
fn inbox_until(dir: &Path, store: &Path, want: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut texts = Vec::new();
    while texts.len() < want && Instant::now() < deadline {
        let out = sotto(dir, store, PASSPHRASE, &["inbox", "--timeout", "10s"]);
        if out.ok {
            texts.extend(
                out.stdout
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .filter_map(|l| l.split_once(": ").map(|(_, t)| t))
                    .map(|t| t.trim_end_matches("NEW").trim().to_owned()),
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    texts
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn the_cluster_profile_starts_and_chats_through_node_and_front_kills() {
    let missing: Vec<&str> = ["nats-server", "mosquitto_pub", "curl"]
        .into_iter()
        .filter(|p| !installed(p))
        .chain(
            sotto_testkit::postgres::bin_dir()
                .is_none()
                .then_some("postgresql"),
        )
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("SOTTO_REQUIRE_NATS").is_none(),
            "SOTTO_REQUIRE_NATS is set but {missing:?} are not installed"
        );
        eprintln!("{missing:?} not installed: skipped");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let base = d.join("profile");
    let _profile = Profile(base.clone());
    let started = run(&base, "profile-start.sh", &[]);
    let ready = started
        .lines()
        .find_map(|l| l.strip_prefix("PROFILE_READY "))
        .unwrap_or_else(|| panic!("no PROFILE_READY line:\n{started}"));
    let urls: Vec<&str> = ready
        .split_whitespace()
        .find_map(|f| f.strip_prefix("membership="))
        .expect("membership URLs")
        .split(',')
        .collect();
    let ca = ready
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ca="))
        .expect("the CA file");
    assert_eq!(urls.len(), 2, "{ready}");

    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    for (store, url) in [(&alice, urls[0]), (&bob, urls[1])] {
        let out = sotto(
            d,
            store,
            PASSPHRASE,
            &["signup", "--server", url, "--ca", ca],
        );
        assert!(out.ok, "{out:?}");
    }
    assert!(add_card(d, &alice, &bob).ok);
    assert!(add_card(d, &bob, &alice).ok);
    let (alice_id, bob_id) = (user_id(d, &alice), user_id(d, &bob));

    let send = |n: usize| {
        let text = format!("through the cluster {n}");
        let out = sotto(d, &alice, PASSPHRASE, &["send", &bob_id, &text]);
        assert!(out.ok, "{out:?}");
        text
    };
    let mut sent: Vec<String> = (0..3).map(send).collect();
    run(&base, "profile-node.sh", &["kill", "n1"]);
    sent.extend((3..6).map(send));
    run(&base, "profile-node.sh", &["kill", "s2"]);
    run(&base, "profile-node.sh", &["start", "s2"]);
    let got = inbox_until(d, &bob, sent.len(), Duration::from_secs(60));
    let mut sorted = got.clone();
    sorted.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(sorted, expected, "every text exactly once at Bob's");

    // Bob answers through instance 2, Alice reads it through instance 1; node 1 comes back.
    run(&base, "profile-node.sh", &["start", "n1"]);
    let out = sotto(d, &bob, PASSPHRASE, &["send", &alice_id, "answer"]);
    assert!(out.ok, "{out:?}");
    let got = inbox_until(d, &alice, 1, Duration::from_secs(60));
    assert_eq!(got, vec!["answer".to_owned()]);
    // Alice's receipts for Bob's answer, and Bob's for hers, are taken.
    inbox_until(d, &bob, 1, Duration::from_secs(3));
    inbox_until(d, &alice, 1, Duration::from_secs(3));

    // Req6 on the engine's own state: nothing held once everything was acknowledged.
    let password = std::fs::read_to_string(base.join("nats-password")).expect("the password");
    let cluster = NatsCluster::new(
        (1..=3).map(|i| loopback(1880 + i + PORT_BASE)).collect(),
        (1..=3).map(|i| loopback(4220 + i + PORT_BASE)).collect(),
        "sotto",
        password.trim(),
    )
    .expect("the cluster");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let held = runtime.block_on(cluster.held()).expect("STREAM.INFO");
        if held.messages == 0 || Instant::now() >= deadline {
            break held;
        }
        // Receipts still on their way are taken by the next inbox.
        inbox_until(d, &alice, 1, Duration::from_secs(1));
        inbox_until(d, &bob, 1, Duration::from_secs(1));
    };
    assert_eq!(held.messages, 0, "NATS still holds {held:?}");

    // The soak, small, on the same cluster (its own `sotto serve` beside s1 and s2): every
    // message exactly once with random disconnects.
    let list = |base: u16| {
        (1..=3)
            .map(|i| loopback(base + i + PORT_BASE).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let out = Command::new("timeout")
        .arg("300")
        .arg(SOTTO)
        .args(["soak", "--broker", "nats", "--nats", &list(1880)])
        .args(["--nats-api", &list(4220)])
        .args(["--clients", "20", "--messages", "20", "--timeout", "4m"])
        .arg("--dir")
        .arg(d)
        .env("SOTTO_NATS_PASSWORD", password.trim())
        .output()
        .expect("sotto soak runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("soak: PASS"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("400 of 400 messages"), "{stdout}");
}

/// `sotto serve --broker nats` without the cluster's addresses or password says what is missing.
#[test]
fn nats_without_its_cluster_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let serve = |args: &[&str]| serve_error(&dir.path().join("server"), args);
    let err = serve(&["--broker", "nats"]);
    assert!(
        err.contains("--broker nats and --nats go together"),
        "{err}"
    );
    let err = serve(&["--nats", "127.0.0.1:1"]);
    assert!(
        err.contains("--broker nats and --nats go together"),
        "{err}"
    );
    let err = serve(&["--broker", "nats", "--nats", "127.0.0.1:1"]);
    assert!(err.contains("--nats-api"), "{err}");
    let err = serve(&[
        "--broker",
        "nats",
        "--nats",
        "127.0.0.1:1",
        "--nats-api",
        "127.0.0.1:1",
    ]);
    assert!(err.contains("SOTTO_NATS_PASSWORD"), "{err}");
}
