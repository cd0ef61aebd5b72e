//! The built `sotto` binary end to end: `sotto serve` in the background on free loopback ports,
//! people as separate processes with their own stores, the demo. Every wait is bounded and every
//! child is killed when its guard drops.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SOTTO: &str = env!("CARGO_BIN_EXE_sotto");
/// Upper bound of one person command (signup connects once, send and inbox sync once).
const COMMAND_WAIT: Duration = Duration::from_secs(90);
/// Upper bound of the server's start.
const SERVE_WAIT: Duration = Duration::from_secs(60);
const PASSPHRASE: &str = "correct horse battery staple";

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sotto serve` on free loopback ports.
struct Server {
    _child: Guard,
    url: String,
    ca: PathBuf,
    fingerprint: String,
    _lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(SOTTO)
            .args(["serve", "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
            .args(["--difficulty", "2", "--data"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sotto serve starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let guard = Guard(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + SERVE_WAIT;
        let (mut url, mut ca, mut fingerprint) = (None, None, None);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("sotto serve prints `ready` in time");
            let value = |prefix: &str| {
                line.strip_prefix(prefix)
                    .map(|v| v.split_whitespace().next().unwrap_or_default().to_owned())
            };
            if let Some(v) = value("membership:") {
                url = Some(v);
            } else if let Some(v) = value("CA file:") {
                ca = Some(PathBuf::from(v));
            } else if let Some(v) = value("CA SHA-256:") {
                fingerprint = Some(v);
            } else if line.starts_with("ready") {
                break;
            }
        }
        Server {
            _child: guard,
            url: url.expect("membership URL printed"),
            ca: ca.expect("CA file printed"),
            fingerprint: fingerprint.expect("fingerprint printed"),
            _lines: rx,
        }
    }
}

/// What a finished command printed.
struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

/// Runs `sotto <args>` on `store` with `passphrase`, bounded by [`COMMAND_WAIT`].
fn sotto(dir: &Path, store: &Path, passphrase: &str, args: &[&str]) -> Output {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let out_path = dir.join(format!("out-{n}"));
    let err_path = dir.join(format!("err-{n}"));
    let child = Command::new(SOTTO)
        .args(args)
        .env("SOTTO_STORE", store)
        .env("SOTTO_PASSPHRASE", passphrase)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("sotto starts");
    let mut guard = Guard(child);
    let deadline = Instant::now() + COMMAND_WAIT;
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "`sotto {}` did not finish within {COMMAND_WAIT:?}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        ok: status.success(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// The user id `sotto whoami` prints.
fn user_id(dir: &Path, store: &Path) -> String {
    let out = sotto(dir, store, PASSPHRASE, &["whoami"]);
    assert!(out.ok, "{out:?}");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("user id:"))
        .map(|v| v.trim().to_owned())
        .expect("whoami prints the user id")
}

#[test]
fn a_message_to_someone_offline_arrives_with_their_inbox_req4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("server"));
    let alice = dir.path().join("alice.db");
    let bob = dir.path().join("bob.db");
    let ca = server.ca.to_str().expect("utf-8 path");

    let out = sotto(
        dir.path(),
        &alice,
        PASSPHRASE,
        &["signup", "--server", &server.url, "--ca", ca],
    );
    assert!(out.ok, "{out:?}");
    // Bob pins the CA by its fingerprint instead of the file.
    let out = sotto(
        dir.path(),
        &bob,
        PASSPHRASE,
        &[
            "signup",
            "--server",
            &server.url,
            "--ca-fingerprint",
            &server.fingerprint,
        ],
    );
    assert!(out.ok, "{out:?}");
    let bob_id = user_id(dir.path(), &bob);
    let alice_id = user_id(dir.path(), &alice);

    // Bob shows his card; Alice scans it (verified).
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["card"]);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains('▀') || out.stdout.contains('▄'),
        "a QR code: {out:?}"
    );
    let card = out
        .stdout
        .lines()
        .find(|l| l.starts_with("sotto:"))
        .expect("the card URI")
        .to_owned();
    let out = sotto(dir.path(), &alice, PASSPHRASE, &["add", &card]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("verified"), "{out:?}");

    // Bob is not connected; Alice sends.
    let out = sotto(
        dir.path(),
        &alice,
        PASSPHRASE,
        &["send", &bob_id, "dinner at 8, bob?"],
    );
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains(&format!("sent to {bob_id}")), "{out:?}");

    // Bob comes online and reads it: alice is new to him, so unverified.
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["inbox"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("dinner at 8, bob?"), "{out:?}");
    assert!(out.stdout.contains(&alice_id), "{out:?}");
    assert!(out.stdout.contains("1 new message"), "{out:?}");

    // Nothing twice.
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["inbox"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("no new messages"), "{out:?}");

    // Bob answers; Alice gets the answer and the receipt of her message.
    let out = sotto(
        dir.path(),
        &bob,
        PASSPHRASE,
        &["send", &alice_id, "yes, 8 works"],
    );
    assert!(out.ok, "{out:?}");
    let out = sotto(dir.path(), &alice, PASSPHRASE, &["inbox"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("yes, 8 works"), "{out:?}");
    assert!(
        out.stdout.contains(&format!("delivered to {bob_id}")),
        "{out:?}"
    );

    let out = sotto(dir.path(), &bob, PASSPHRASE, &["contacts"]);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains(&alice_id) && out.stdout.contains("UNVERIFIED"),
        "{out:?}"
    );
    let out = sotto(
        dir.path(),
        &bob,
        PASSPHRASE,
        &["verify", &alice_id, "--yes"],
    );
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("safety number"), "{out:?}");
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["contacts"]);
    assert!(!out.stdout.contains("UNVERIFIED"), "{out:?}");
}

#[test]
fn a_wrong_passphrase_or_no_store_says_what_to_do_req7() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nothing.db");
    let out = sotto(dir.path(), &missing, PASSPHRASE, &["inbox"]);
    assert!(!out.ok, "{out:?}");
    assert!(out.stderr.contains("run `sotto signup"), "{out:?}");

    let server = Server::start(&dir.path().join("server"));
    let store = dir.path().join("carol.db");
    let ca = server.ca.to_str().expect("utf-8 path");
    let out = sotto(
        dir.path(),
        &store,
        PASSPHRASE,
        &["signup", "--server", &server.url, "--ca", ca],
    );
    assert!(out.ok, "{out:?}");
    let out = sotto(dir.path(), &store, "not the passphrase", &["whoami"]);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr
            .contains("the passphrase does not open this store"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // The store is unchanged and still opens.
    user_id(dir.path(), &store);
    // A second signup onto the same store is refused.
    let out = sotto(
        dir.path(),
        &store,
        PASSPHRASE,
        &["signup", "--server", &server.url, "--ca", ca],
    );
    assert!(!out.ok && out.stderr.contains("already exists"), "{out:?}");
}

#[test]
fn the_demo_runs_and_the_server_saw_ciphertext_only_req8() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("unused.db");
    let out = sotto(dir.path(), &store, PASSPHRASE, &["demo"]);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout
            .contains("bob reads from alice (verified): \"hi bob, dinner tonight?\""),
        "{out:?}"
    );
    assert!(out.stdout.contains("ciphertext only"), "{out:?}");
    assert!(out.stdout.contains("demo finished"), "{out:?}");

    let out = sotto(
        dir.path(),
        &store,
        PASSPHRASE,
        &["demo", "--in-memory", "--seed", "7"],
    );
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains("the relay holds nothing now"),
        "{out:?}"
    );
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("unused.db");
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["signup", "--help"],
        vec!["card", "--help"],
        vec!["add", "--help"],
        vec!["verify", "--help"],
        vec!["send", "--help"],
        vec!["inbox", "--help"],
        vec!["chat", "--help"],
        vec!["group", "--help"],
        vec!["group", "create", "--help"],
        vec!["group", "send", "--help"],
        vec!["contacts", "--help"],
        vec!["whoami", "--help"],
        vec!["demo", "--help"],
    ] {
        let out = sotto(dir.path(), &store, PASSPHRASE, &cmd);
        assert!(out.ok, "{cmd:?}: {out:?}");
        assert!(out.stdout.contains("Usage: sotto"), "{cmd:?}: {out:?}");
    }
}
