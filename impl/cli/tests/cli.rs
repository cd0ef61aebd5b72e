//! The built `sotto` binary end to end: `sotto serve` in the background on free loopback ports,
//! people as separate processes with their own stores, the demo. Every wait is bounded and every
//! child is killed when its guard drops (helpers in `common/mod.rs`, shared with `faults.rs`).

mod common;

use common::{PASSPHRASE, Server, signup, sotto, user_id};

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
    // A store another process holds open (STORE-4): refused at once, with what to do.
    let held = sotto_store::Store::open(&store, PASSPHRASE.as_bytes()).expect("open store");
    let out = sotto(dir.path(), &store, PASSPHRASE, &["whoami"]);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr.contains("another process has this store open")
            && out.stderr.contains("finish the other"),
        "{out:?}"
    );
    held.close().expect("close store");
    user_id(dir.path(), &store);
    // A second signup onto the same store is refused.
    let out = sotto(
        dir.path(),
        &store,
        PASSPHRASE,
        &["signup", "--server", &server.url, "--ca", ca],
    );
    assert!(!out.ok && out.stderr.contains("already exists"), "{out:?}");

    // A damaged store file (one byte flipped in every page but the first, as in the store's own
    // `damaged_pages_are_corrupt_not_a_panic`): a typed error with what to do, no panic.
    let good = std::fs::read(&store).expect("read store");
    let mut bad = good.clone();
    for page in (4096..bad.len()).step_by(4096) {
        bad[page + 100] ^= 0x01;
    }
    std::fs::write(&store, &bad).expect("damage store");
    let out = sotto(dir.path(), &store, PASSPHRASE, &["whoami"]);
    assert!(!out.ok, "{out:?}");
    assert!(
        out.stderr.contains("restore the store from a backup"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("panicked") && out.stdout.is_empty(),
        "{out:?}"
    );
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

/// BROKER-6 for the operator's `-vvv`: the server's log names no user and no client address, and
/// the libraries under it (TLS, HTTP) stay at warnings, while two people sign up, fetch each other
/// from the directory, and exchange a message and its receipt.
#[test]
fn serve_at_trace_level_logs_no_user_and_no_library_internals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let server = Server::start_logging(
        &dir.path().join("server"),
        &["-vvv", "--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"],
        log.into(),
    );
    let alice = dir.path().join("alice.db");
    let bob = dir.path().join("bob.db");
    let alice_id = signup(dir.path(), &alice, &server);
    let bob_id = signup(dir.path(), &bob, &server);
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["add", &alice_id]);
    assert!(out.ok, "{out:?}");
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["send", &alice_id, "hello"]);
    assert!(out.ok, "{out:?}");
    let out = sotto(dir.path(), &alice, PASSPHRASE, &["inbox"]);
    assert!(out.ok && out.stdout.contains("hello"), "{out:?}");
    let out = sotto(dir.path(), &bob, PASSPHRASE, &["inbox"]);
    assert!(out.ok, "{out:?}");
    drop(server);

    let text = std::fs::read_to_string(&log_path).expect("the log");
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "-vvv raised Sotto's own level: {text}"
    );
    for id in [&alice_id, &bob_id] {
        let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !text.contains(id.as_str()) && !text.contains(&hex),
            "a user id in the log: {text}"
        );
    }
    for library in ["rustls::", "hyper::", "tokio::", "h2::"] {
        assert!(
            !text.contains(library),
            "{library}'s own debug output in the log: {text}"
        );
    }
}
