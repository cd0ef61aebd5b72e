//! Every `sotto group` command end to end over the real stack on each broker (Mosquitto skipped
//! with a notice when it is not installed): create, send from the admin and from a member, list,
//! remove (the removed member reads nothing sent after), add back (a new epoch reaches it), the
//! group's history, handover (the new admin fetches a member's bundle it lacks and takes over),
//! leave (a member, then the old admin); bad input gets a clear error (a member who is not the
//! admin, a group that does not exist, someone who is not a contact, an admin that leaves).

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
    let alice_id = signup(d, &alice, &server);
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

    // The admin cannot leave; it hands the group over to Bob (GRP-12), who has no session with
    // Carol: his device fetches her bundle from the directory and takes over in one inbox.
    let out = sotto(d, &alice, PASSPHRASE, &["group", "leave", &group]);
    out.assert_clear_error(&["sotto group handover"]);
    let out = sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "handover", &group, "ffffffff"],
    );
    out.assert_clear_error(&[]);
    ok(sotto(
        d,
        &alice,
        PASSPHRASE,
        &["group", "handover", &group, &bob_id],
    ));
    let out = sotto(d, &alice, PASSPHRASE, &["group", "remove", &group, &bob_id]);
    out.assert_clear_error(&["only the group's admin"]);
    let out = ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("handed you the admin role"), "{out:?}");
    assert!(out.stdout.contains("you are its admin now"), "{out:?}");
    for who in [&alice, &carol] {
        let out = ok(sotto(d, who, PASSPHRASE, &["inbox"]));
        assert!(out.stdout.contains("key for epoch 3"), "{out:?}");
        let out = ok(sotto(d, who, PASSPHRASE, &["group", "list"]));
        assert!(out.stdout.contains(&format!("{bob_id}  admin")), "{out:?}");
    }
    ok(sotto(
        d,
        &carol,
        PASSPHRASE,
        &["group", "send", &group, "bob is the admin"],
    ));
    let out = ok(sotto(d, &alice, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("bob is the admin"), "{out:?}");

    // Carol leaves (GRP-11): her keys go at once; Bob removes her with a new epoch.
    ok(sotto(d, &carol, PASSPHRASE, &["group", "leave", &group]));
    let out = ok(sotto(d, &carol, PASSPHRASE, &["group", "list"]));
    assert!(!out.stdout.contains(&group), "{out:?}");
    let out = ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains(&format!("{carol_id} left")), "{out:?}");
    ok(sotto(d, &alice, PASSPHRASE, &["inbox"]));
    ok(sotto(
        d,
        &bob,
        PASSPHRASE,
        &["group", "send", &group, "after carol left"],
    ));
    let out = ok(sotto(d, &alice, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("after carol left"), "{out:?}");
    let out = ok(sotto(d, &carol, PASSPHRASE, &["inbox"]));
    assert!(!out.stdout.contains("after carol left"), "{out:?}");
    let out = sotto(d, &carol, PASSPHRASE, &["group", "leave", &group]);
    out.assert_clear_error(&["sotto group list"]);

    // The old admin is a member now and may leave too.
    ok(sotto(d, &alice, PASSPHRASE, &["group", "leave", &group]));
    let out = ok(sotto(d, &bob, PASSPHRASE, &["inbox"]));
    assert!(out.stdout.contains("left"), "{out:?}");
    let out = ok(sotto(d, &bob, PASSPHRASE, &["group", "list"]));
    assert!(
        !out.stdout.contains(&format!("{carol_id}  member")),
        "{out:?}"
    );
    assert!(!out.stdout.contains(&alice_id), "{out:?}");
}

#[test]
fn every_group_command_works_end_to_end_embedded() {
    groups(Broker::Embedded);
}

#[test]
fn every_group_command_works_end_to_end_mosquitto() {
    groups(Broker::Mosquitto);
}
