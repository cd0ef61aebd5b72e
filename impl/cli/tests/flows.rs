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
