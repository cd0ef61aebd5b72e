//! The chat flows people expect from the command line, end to end over the real stack on each
//! broker (Mosquitto skipped with a notice when it is not installed): naming a contact and using
//! the name, `inbox` showing what is new once, `history` with message numbers and read marks,
//! deleting a message and a conversation from the store, and changing the store's passphrase.
//! Bad input to each gets a clear error.

mod common;

use common::{PASSPHRASE, Running, Server, add_card, signup, sotto};
use sotto_server::Broker;

fn flows(broker: Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Some(server) = Server::with_broker(&d.join("server"), broker, &[]) else {
        return;
    };
    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    let alice_id = signup(d, &alice, &server);
    let bob_id = signup(d, &bob, &server);
    assert!(add_card(d, &alice, &bob).ok);
    assert!(add_card(d, &bob, &alice).ok);

    // A name, used in place of the user id.
    let out = sotto(d, &alice, PASSPHRASE, &["name", &bob_id, "Bob"]);
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["contacts"]);
    assert!(out.stdout.contains("Bob"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["send", "bob", "hello by name"]);
    assert!(out.ok, "{out:?}");
    for bad in ["", "tab\there", &bob_id] {
        let out = sotto(d, &alice, PASSPHRASE, &["name", &bob_id, bad]);
        out.assert_clear_error(&["contact name"]);
    }
    let out = sotto(d, &alice, PASSPHRASE, &["name", "nobody-known", "X"]);
    out.assert_clear_error(&["not a user id, a contact's name"]);

    // `inbox` shows what is new, once.
    let out = sotto(d, &bob, PASSPHRASE, &["inbox"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("hello by name"), "{out:?}");
    assert!(out.stdout.contains("1 new message(s)"), "{out:?}");
    let out = sotto(d, &bob, PASSPHRASE, &["inbox"]);
    assert!(out.stdout.contains("no new messages"), "{out:?}");

    // `history` numbers the messages; what was shown is no longer new.
    let out = sotto(d, &bob, PASSPHRASE, &["history", &alice_id]);
    assert!(out.ok, "{out:?}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("hello by name"))
        .expect("the message in the history")
        .to_owned();
    assert!(!line.contains("NEW"), "{line}");
    let number = line
        .strip_prefix('#')
        .and_then(|l| l.split_whitespace().next())
        .expect("#N")
        .to_owned();
    let out = sotto(d, &alice, PASSPHRASE, &["history", "Bob"]);
    assert!(out.stdout.contains("hello by name"), "{out:?}");
    assert!(out.stdout.contains("conversation with Bob ("), "{out:?}");

    // Deleting: one message on Bob's side, the whole conversation on Alice's.
    let out = sotto(d, &bob, PASSPHRASE, &["delete", "--message", &number]);
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &bob, PASSPHRASE, &["history", &alice_id]);
    assert!(!out.stdout.contains("hello by name"), "{out:?}");
    let out = sotto(d, &bob, PASSPHRASE, &["delete", "--message", &number]);
    out.assert_clear_error(&["no message #"]);
    let out = sotto(d, &alice, PASSPHRASE, &["delete", "--conversation", "Bob"]);
    assert!(out.stdout.contains("1 message(s) deleted"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["history", "Bob"]);
    assert!(out.stdout.contains(": 0 message(s)"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["delete"]);
    assert!(!out.ok && out.stderr.contains("--message"), "{out:?}");
    // A contact deleted: gone from the list, nothing can be sent to it, its card adds it again.
    let out = sotto(d, &alice, PASSPHRASE, &["delete", "--contact", "Bob"]);
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["contacts"]);
    assert!(!out.stdout.contains(&bob_id), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["send", &bob_id, "x"]);
    out.assert_clear_error(&["is not a contact"]);
    assert!(add_card(d, &alice, &bob).ok);

    // A new passphrase: the old one no longer opens the store, the new one does.
    let new = "a completely different passphrase";
    let out = Running::spawn_env(
        d,
        &bob,
        PASSPHRASE,
        &["passphrase"],
        &[("SOTTO_NEW_PASSPHRASE", new)],
    )
    .wait();
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &bob, PASSPHRASE, &["whoami"]);
    out.assert_clear_error(&["the passphrase does not open this store"]);
    let out = sotto(d, &bob, new, &["whoami"]);
    assert!(out.ok && out.stdout.contains(&bob_id), "{out:?}");
    let out = Running::spawn_env(
        d,
        &bob,
        new,
        &["passphrase"],
        &[("SOTTO_NEW_PASSPHRASE", "")],
    )
    .wait();
    out.assert_clear_error(&["SOTTO_NEW_PASSPHRASE is empty"]);
    // Messages still flow with the new passphrase.
    let out = sotto(
        d,
        &alice,
        PASSPHRASE,
        &["send", &bob_id, "after the change"],
    );
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &bob, new, &["inbox"]);
    assert!(out.stdout.contains("after the change"), "{out:?}");
}

#[test]
fn names_inbox_history_delete_and_passphrase_embedded() {
    flows(Broker::Embedded);
}

#[test]
fn names_inbox_history_delete_and_passphrase_mosquitto() {
    flows(Broker::Mosquitto);
}

/// `sotto delete --account`: refused without a confirmation (stdin is not a terminal here),
/// then with `--yes` the account goes at the service and the store goes from the disk; a
/// contact's next message says plainly that it cannot be delivered, and is not retried.
fn delete_account(broker: Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Some(server) = Server::with_broker(&d.join("server"), broker, &[]) else {
        return;
    };
    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    signup(d, &alice, &server);
    let bob_id = signup(d, &bob, &server);
    assert!(add_card(d, &alice, &bob).ok);
    assert!(add_card(d, &bob, &alice).ok);
    // Before: a message to Bob goes out as usual.
    let out = sotto(d, &alice, PASSPHRASE, &["send", &bob_id, "before"]);
    assert!(out.ok && out.stdout.contains("sent to"), "{out:?}");
    assert!(!out.stdout.contains("NOT delivered"), "{out:?}");

    let out = sotto(d, &bob, PASSPHRASE, &["delete", "--account"]);
    out.assert_clear_error(&["not deleted: not confirmed", "--yes"]);
    assert!(bob.exists(), "nothing deleted without a confirmation");
    let out = sotto(d, &bob, PASSPHRASE, &["delete", "--yes", "--message", "1"]);
    out.assert_clear_error(&["--yes confirms only the deletion of the account"]);

    let out = sotto(d, &bob, PASSPHRASE, &["delete", "--account", "--yes"]);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains(&format!("account {bob_id} deleted")),
        "{out:?}"
    );
    let left: Vec<_> = std::fs::read_dir(d)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bob.db"))
        .collect();
    assert!(
        left.is_empty(),
        "the store and its files are gone: {left:?}"
    );
    let out = sotto(d, &bob, PASSPHRASE, &["whoami"]);
    out.assert_clear_error(&["no store at"]);

    // After: the message is refused for good, and the history says so.
    let out = sotto(d, &alice, PASSPHRASE, &["send", &bob_id, "after"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("UNDELIVERABLE"), "{out:?}");
    assert!(
        out.stdout.contains("NOT delivered") && out.stdout.contains("deleted their account"),
        "{out:?}"
    );
    let out = sotto(d, &alice, PASSPHRASE, &["history", &bob_id]);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("after"))
        .expect("the message in the history")
        .to_owned();
    assert!(line.contains("UNDELIVERABLE"), "{line}");
    // Not tried again by the next sync.
    let out = sotto(d, &alice, PASSPHRASE, &["inbox"]);
    assert!(out.ok && !out.stdout.contains("UNDELIVERABLE"), "{out:?}");
}

#[test]
fn delete_account_embedded() {
    delete_account(Broker::Embedded);
}

#[test]
fn delete_account_mosquitto() {
    delete_account(Broker::Mosquitto);
}
