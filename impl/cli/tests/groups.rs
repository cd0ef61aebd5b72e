//! Every `sotto group` command end to end over the real stack on each broker (Mosquitto skipped
//! with a notice when it is not installed): create, send from the admin and from a member, list,
//! remove (the removed member reads nothing sent after), add back (a new epoch reaches it), the
//! group's history; bad input gets a clear error (a member who is not the admin, a group that does
//! not exist, someone who is not a contact).

mod common;

use common::{Output, PASSPHRASE, Server, add_card, signup, sotto};
use sotto_server::Broker;

fn ok(out: Output) -> Output {
    assert!(out.ok, "{out:?}");
    out
}

fn groups(broker: Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Some(server) = Server::with_broker(&d.join("server"), broker, &[]) else {
        return;
    };
    let (alice, bob, carol) = (d.join("alice.db"), d.join("bob.db"), d.join("carol.db"));
    let _alice_id = signup(d, &alice, &server);
    let bob_id = signup(d, &bob, &server);
    let carol_id = signup(d, &carol, &server);
    for (a, b) in [
        (&alice, &bob),
        (&bob, &alice),
        (&alice, &carol),
        (&carol, &alice),
    ] {
        ok(add_card(d, a, b));
    }

    // Alice creates the group; its id is printed.
    let out = ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "create", "friends", &bob_id, &carol_id],
    ));
    let group = out
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .expect("the group id")
        .to_owned();
    let out = ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("key for epoch"), "{out:?}");
    let out = ok(sotto(d, &bob, PASSPHRASE, &["group", "list"]));
    assert!(out.stdout.contains(&group), "{out:?}");
    assert!(out.stdout.contains("admin"), "{out:?}");
    ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));

    // The admin and a member write; everyone else reads.
    ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "send", &group, "hello group"],
    ));
    ok(sotto(
        d,
        &bob,
        PASSPHRASE,
        &["group", "send", &group, "bob here"],
    ));
    let out = ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("hello group"), "{out:?}");
    assert!(out.stdout.contains("bob here"), "{out:?}");
    let out = ok(sotto(d, &alice, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("bob here"), "{out:?}");
    let out = ok(sotto(d, &bob, PASSPHRASE, &["history", &group]));
    assert!(
        out.stdout.contains("hello group") && out.stdout.contains("bob here"),
        "{out:?}"
    );

    // Carol is removed: she reads nothing sent after.
    ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "remove", &group, &carol_id],
    ));
    ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    let out = ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("removed you"), "{out:?}");
    ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "send", &group, "without carol"],
    ));
    let out = ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("without carol"), "{out:?}");
    let out = ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));
    assert!(!out.stdout.contains("without carol"), "{out:?}");

    // Added back: a new epoch reaches her, and what is sent from then on.
    ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "add", &group, &carol_id],
    ));
    let out = ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("key for epoch"), "{out:?}");
    ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "send", &group, "carol is back"],
    ));
    let out = ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("carol is back"), "{out:?}");
    assert!(!out.stdout.contains("without carol"), "{out:?}");

    // Bad input.
    let out = sotto(d, &bob, PASSPHRASE, &["group", "remove", &group, &carol_id]);
    out.assert_clear_error(&["only the group's admin"]);
    let out = sotto(d, &alice, PASSPHRASE, &["group", "send", "ffffffff", "x"]);
    out.assert_clear_error(&["sotto group list"]);
    let out = sotto(d, &bob, PASSPHRASE, &["group", "create", "mine", &carol_id]);
    out.assert_clear_error(&["is not a contact"]);
}

#[test]
fn every_group_command_works_end_to_end_embedded() {
    groups(Broker::Embedded);
}

#[test]
fn every_group_command_works_end_to_end_mosquitto() {
    groups(Broker::Mosquitto);
}
