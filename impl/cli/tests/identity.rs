//! Key changes people can act on (RX-9), from the command line over the real stack: `sotto
//! identity` compares a contact with the directory; when the directory substitutes another
//! identity under the contact's user id (played here by rewriting membership.db, as `A1` could),
//! it says CHANGED with both safety numbers and what to do; `sotto accept` takes the new identity,
//! unverified until `sotto verify`. `sotto block` refuses everything from a user, `sotto unblock`
//! lifts it. Each on the embedded default and on Mosquitto (skipped with a notice when it is not
//! installed).

mod common;

use common::{PASSPHRASE, Server, add_card, signup, sotto, stored_messages};
use sotto_core::UserId;
use sotto_server::Broker;

/// The directory hands out `victim`'s user id with `other`'s identity and signed prekey.
fn substitute(db: &std::path::Path, victim: &str, other: &str) {
    let victim = UserId::parse(victim).expect("user id").0;
    let other = UserId::parse(other).expect("user id").0;
    let conn = rusqlite::Connection::open(db).expect("membership.db");
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .expect("busy timeout");
    conn.execute(
        "UPDATE users SET identity = (SELECT identity FROM users WHERE user_id = ?2)
         WHERE user_id = ?1",
        rusqlite::params![&victim[..], &other[..]],
    )
    .expect("identity");
    conn.execute(
        "DELETE FROM signed_prekeys WHERE user_id = ?1",
        [&victim[..]],
    )
    .expect("old signed prekeys");
    conn.execute(
        "INSERT INTO signed_prekeys (user_id, prekey_id, body)
         SELECT ?1, prekey_id, body FROM signed_prekeys WHERE user_id = ?2",
        rusqlite::params![&victim[..], &other[..]],
    )
    .expect("new signed prekeys");
    conn.execute(
        "DELETE FROM one_time_prekeys WHERE user_id = ?1",
        [&victim[..]],
    )
    .expect("one-time prekeys");
}

fn a_changed_identity_is_shown_with_both_safety_numbers_and_accepted_on_request(broker: Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Some(server) = Server::with_broker(&d.join("server"), broker, &[]) else {
        return;
    };
    let (alice, bob, carol) = (d.join("alice.db"), d.join("bob.db"), d.join("carol.db"));
    signup(d, &alice, &server);
    let bob_id = signup(d, &bob, &server);
    let carol_id = signup(d, &carol, &server);
    let out = sotto(d, &alice, PASSPHRASE, &["add", &bob_id]);
    assert!(out.ok, "{out:?}");

    let out = sotto(d, &alice, PASSPHRASE, &["identity", &bob_id]);
    assert!(out.ok, "{out:?}");
    assert!(
        out.stdout.contains("holds the identity you have"),
        "{out:?}"
    );

    substitute(&server.data.join("membership.db"), &bob_id, &carol_id);
    let out = sotto(d, &alice, PASSPHRASE, &["identity", &bob_id]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("CHANGED"), "{out:?}");
    let numbers: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, n)| n.trim()))
        .filter(|n| n.chars().all(|c| c.is_ascii_digit() || c == ' '))
        .collect();
    assert_eq!(numbers.len(), 2, "both safety numbers: {out:?}");
    assert_ne!(numbers[0], numbers[1], "{out:?}");
    assert!(
        out.stdout.contains(&format!("sotto accept {bob_id}")),
        "{out:?}"
    );

    let out = sotto(d, &alice, PASSPHRASE, &["accept", &bob_id]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("UNVERIFIED"), "{out:?}");
    assert!(out.stdout.contains(numbers[1]), "the new number: {out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["identity", &bob_id]);
    assert!(
        out.stdout.contains("holds the identity you have"),
        "{out:?}"
    );
    let out = sotto(d, &alice, PASSPHRASE, &["accept", &bob_id]);
    assert!(out.stdout.contains("nothing to accept"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["identity", "nobody"]);
    out.assert_clear_error(&["not a user id, a contact's name"]);
}

fn a_blocked_user_is_not_read_and_cannot_be_written_to(broker: Broker) {
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
    let out = sotto(d, &alice, PASSPHRASE, &["name", &bob_id, "Bob"]);
    assert!(out.ok, "{out:?}");

    let out = sotto(d, &alice, PASSPHRASE, &["block", "Bob"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("is blocked"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["contacts"]);
    assert!(out.stdout.contains("BLOCKED"), "{out:?}");
    let out = sotto(d, &bob, PASSPHRASE, &["send", &alice_id, "let me in"]);
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["inbox"]);
    assert!(out.ok, "{out:?}");
    assert!(!out.stdout.contains("let me in"), "{out:?}");
    assert!(out.stdout.contains("no new messages"), "{out:?}");
    assert!(stored_messages(&alice, &bob_id).is_empty());
    let out = sotto(d, &alice, PASSPHRASE, &["send", "Bob", "hi"]);
    out.assert_clear_error(&["blocked"]);
    // Nothing is held for a decision either.
    let out = sotto(d, &alice, PASSPHRASE, &["reject", "Bob"]);
    assert!(out.stdout.contains("no held message"), "{out:?}");

    let out = sotto(d, &alice, PASSPHRASE, &["unblock", "Bob"]);
    assert!(out.stdout.contains("no longer blocked"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["unblock", "Bob"]);
    assert!(out.stdout.contains("was not blocked"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["contacts"]);
    assert!(!out.stdout.contains("BLOCKED"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["send", "Bob", "welcome back"]);
    assert!(out.ok, "{out:?}");
    let out = sotto(d, &bob, PASSPHRASE, &["inbox"]);
    assert!(out.stdout.contains("welcome back"), "{out:?}");
    let out = sotto(d, &alice, PASSPHRASE, &["block", "nobody"]);
    out.assert_clear_error(&["not a user id, a contact's name"]);
}

#[test]
fn a_changed_identity_is_shown_with_both_safety_numbers_and_accepted_on_request_rx_9() {
    a_changed_identity_is_shown_with_both_safety_numbers_and_accepted_on_request(Broker::Embedded);
}

#[test]
fn a_changed_identity_is_shown_with_both_safety_numbers_and_accepted_on_request_rx_9_mosquitto() {
    a_changed_identity_is_shown_with_both_safety_numbers_and_accepted_on_request(Broker::Mosquitto);
}

#[test]
fn a_blocked_user_is_not_read_and_cannot_be_written_to_rx_11() {
    a_blocked_user_is_not_read_and_cannot_be_written_to(Broker::Embedded);
}

#[test]
fn a_blocked_user_is_not_read_and_cannot_be_written_to_rx_11_mosquitto() {
    a_blocked_user_is_not_read_and_cannot_be_written_to(Broker::Mosquitto);
}
