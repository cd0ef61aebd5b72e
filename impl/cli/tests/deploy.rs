//! The deployment of docs/operations.md ("Deployment") with a name other than localhost: `sotto
//! serve --name chat.sotto.test` issues a server certificate for that name and tells devices to
//! reach the broker by it; people sign up, add each other and exchange a message through that
//! name, on both brokers. The name is mapped to a loopback address by each command's
//! `--resolve` (DNS does not know it), which still verifies the certificate for the name, so a
//! device that reaches the same server under a name the certificate does not carry is refused.

mod common;

use common::{PASSPHRASE, Server, sotto, user_id};
use sotto_server::Broker;

const NAME: &str = "chat.sotto.test";

fn reached_by_name(broker: Broker) {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let Some(server) = Server::with_broker(&d.join("server"), broker, &["--name", NAME]) else {
        return;
    };
    let port = server
        .url
        .strip_prefix(&format!("https://{NAME}:"))
        .unwrap_or_else(|| panic!("the membership URL names {NAME}: {}", server.url))
        .to_owned();
    let resolve = format!("{NAME}=127.0.0.1");
    let by_name = |store: &std::path::Path, args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--resolve", &resolve]);
        sotto(d, store, PASSPHRASE, &all)
    };

    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    for store in [&alice, &bob] {
        let out = by_name(
            store,
            &["signup", "--server", &server.url, "--ca", server.ca_arg()],
        );
        assert!(out.ok, "{out:?}");
    }
    let bob_id = user_id(d, &bob);
    let out = by_name(&alice, &["add", &bob_id]);
    assert!(out.ok, "{out:?}");
    let out = by_name(&alice, &["send", &bob_id, "reached by name"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains(&format!("sent to {bob_id}")), "{out:?}");
    let out = by_name(&bob, &["inbox"]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("reached by name"), "{out:?}");

    // The same server under a name its certificate does not carry: refused, clearly.
    let wrong = format!("https://wrong.sotto.test:{port}");
    let carol = d.join("carol.db");
    let out = sotto(
        d,
        &carol,
        PASSPHRASE,
        &[
            "signup",
            "--server",
            &wrong,
            "--ca",
            server.ca_arg(),
            "--resolve",
            "wrong.sotto.test=127.0.0.1",
        ],
    );
    out.assert_clear_error(&["not known by the name", "sotto serve --name"]);
    assert!(!carol.exists(), "no store is left by a refused signup");
    // A device that asks DNS for a name it does not know gets a clear error too.
    let out = sotto(
        d,
        &carol,
        PASSPHRASE,
        &["signup", "--server", &server.url, "--ca", server.ca_arg()],
    );
    out.assert_clear_error(&["could not reach the membership service", "--resolve"]);
}

#[test]
fn a_server_reached_by_its_name_is_verified_for_that_name_embedded() {
    reached_by_name(Broker::Embedded);
}

#[test]
fn a_server_reached_by_its_name_is_verified_for_that_name_mosquitto() {
    reached_by_name(Broker::Mosquitto);
}
