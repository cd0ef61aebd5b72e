//! `sotto serve --directory postgresql://...` (issue 17): two `sotto serve` instances share one
//! membership directory on PostgreSQL and the same CA files (docs/operations.md). Someone who
//! signed up at one instance is found, by user id, by someone who signed up at the other; a
//! directory that cannot be reached is a clear error naming the flag.

mod common;

use common::{PASSPHRASE, Server, serve_error, sotto, user_id};
use sotto_testkit::postgres::TestPostgres;

#[test]
fn two_instances_share_one_directory_on_postgresql() {
    let Some(pg) = TestPostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let data = d.join("server");
    let url = pg.url();
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--mqtt",
        "127.0.0.1:0",
        "--directory",
        &url,
    ];
    // Two instances on one data directory: the same CA files.
    let a = Server::start_with(&data, &args);
    let b = Server::start_with(&data, &args);
    assert_ne!(a.url, b.url);
    let (alice, bob) = (d.join("alice.db"), d.join("bob.db"));
    for (store, server) in [(&alice, &a), (&bob, &b)] {
        let out = sotto(
            d,
            store,
            PASSPHRASE,
            &["signup", "--server", &server.url, "--ca", server.ca_arg()],
        );
        assert!(out.ok, "{out:?}");
    }
    // Bob, of instance B, finds Alice, who signed up at instance A.
    let alice_id = user_id(d, &alice);
    let out = sotto(d, &bob, PASSPHRASE, &["add", &alice_id]);
    assert!(out.ok, "{out:?}");
    assert!(out.stdout.contains("from the directory"), "{out:?}");
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "2");
    // The embedded default keeps no membership.db when the directory is on PostgreSQL.
    assert!(!data.join("membership.db").exists());
}

#[test]
fn an_unreachable_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Port 1 on loopback: nothing listens there.
    let stderr = serve_error(
        &dir.path().join("server"),
        &["--directory", "postgresql://sotto:secret@127.0.0.1:1/sotto"],
    );
    assert!(
        stderr.contains("cannot open the membership directory on PostgreSQL"),
        "{stderr}"
    );
    assert!(stderr.contains("--directory"), "{stderr}");
    assert!(
        !stderr.contains("secret"),
        "the password is never printed: {stderr}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sotto"))
        .args(["serve", "--directory", "mysql://x"])
        .output()
        .expect("sotto runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected `sqlite` or a PostgreSQL URL"));
}
