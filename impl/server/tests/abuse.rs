//! Attacks on the service's availability, repeated on loopback against the running service (the
//! embedded broker behind the front, and Mosquitto behind the front when it is installed): each
//! one must fail, and a legitimate signup and message must go through while it runs.
//!
//! The attacker's sockets come from other loopback addresses (127.0.0.2 and up) than the honest
//! users' (127.0.0.1): the limits are per source. Every attack is bounded in sockets and time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use sotto_client::ClientEvent;
use sotto_server::Broker;
use sotto_server::admission::AdmissionLimits;
use sotto_testkit::{TestStack, WAIT, exchange_cards, sync, texts};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// How long a socket the service keeps must stay open to count as kept.
const HELD: Duration = Duration::from_millis(1500);

/// Opens `n` TCP connections to `to` from `from`, sending nothing (an idle or slow client).
async fn idle_sockets(from: Ipv4Addr, to: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::new(IpAddr::V4(from), 0))
            .expect("bind a loopback source");
        // The backlog may refuse under the flood: that socket is simply not held.
        if let Ok(Ok(s)) = tokio::time::timeout(WAIT, socket.connect(to)).await {
            out.push(s);
        }
    }
    out
}

/// How many of `sockets` the service still holds open after [`HELD`] (the others it closed).
async fn still_open(sockets: Vec<TcpStream>) -> usize {
    let mut checks = Vec::new();
    for mut s in sockets {
        checks.push(tokio::spawn(async move {
            let mut b = [0u8; 1];
            // Open: the read waits (the service sends nothing before the client speaks).
            tokio::time::timeout(HELD, s.read(&mut b)).await.is_err()
        }));
    }
    let mut open = 0;
    for c in checks {
        if c.await.unwrap_or(false) {
            open += 1;
        }
    }
    open
}

/// A legitimate user's whole path while the attack holds: two signups, a message from one to the
/// other through the broker, and its receipt.
async fn honest_users_get_through(stack: &TestStack) {
    let work = async {
        let mut alice = stack.signup("alice").await;
        let mut bob = stack.signup("bob").await;
        exchange_cards(&mut alice, &mut bob);
        let id = alice.send(&bob.user_id(), "still here").expect("send");
        assert!(sync(&mut alice).await.published >= 1, "published");
        assert_eq!(texts(&sync(&mut bob).await), ["still here"]);
        let back = sync(&mut alice).await;
        assert!(
            back.events
                .iter()
                .any(|e| matches!(e, ClientEvent::Delivered { id: d, .. } if *d == id)),
            "the receipt came back: {:?}",
            back.events
        );
    };
    tokio::time::timeout(4 * WAIT, work)
        .await
        .expect("an honest signup and message within the bound");
}

/// 530 idle sockets from one address took the membership service down and 10,050 blocked
/// other users' CONNECTs: now one source holds at most its pending share on each listener, the
/// rest are closed at once, and honest users keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_source_hold_only_their_share() {
    // As `sotto serve` does: this process may need more sockets than a default soft limit.
    sotto_server::gate::open_file_limit();
    for broker in sotto_testkit::available_brokers() {
        let stack = TestStack::start(broker).await;
        let attacker = Ipv4Addr::new(127, 0, 0, 2);
        let membership = stack.service.membership_addr();
        let mqtt = stack.broker_addr();
        let on_membership = idle_sockets(attacker, membership, 600).await;
        let on_front = idle_sockets(attacker, mqtt, 300).await;
        honest_users_get_through(&stack).await;
        let share = AdmissionLimits::MEMBERSHIP.per_source_pending;
        let held = still_open(on_membership).await;
        assert!(
            held <= share,
            "{broker:?}: the membership service holds {held} idle sockets of one source (share {share})"
        );
        let share = AdmissionLimits::FRONT.per_source_pending;
        let held = still_open(on_front).await;
        assert!(
            held <= share,
            "{broker:?}: the front holds {held} idle sockets of one source (share {share})"
        );
        stack.service.shutdown().await;
    }
}

/// Idle sockets from many addresses, more than the listeners take: each new connection makes the
/// oldest idle one go, so an honest user arriving after the flood still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_sources_makes_the_oldest_idle_sockets_go() {
    let limits = AdmissionLimits {
        total: 64,
        pending: 32,
        per_source: 16,
        per_source_pending: 8,
    };
    for broker in sotto_testkit::available_brokers() {
        let stack = TestStack::build(broker, |b| {
            b.front_admission(limits).membership_admission(limits)
        })
        .await;
        let membership = stack.service.membership_addr();
        let mqtt = stack.broker_addr();
        let mut sockets = Vec::new();
        // 20 sources of 8 idle sockets on each listener: 160 each, five times what they take.
        for n in 2..22u8 {
            let from = Ipv4Addr::new(127, 0, 0, n);
            sockets.extend(idle_sockets(from, membership, 8).await);
            sockets.extend(idle_sockets(from, mqtt, 8).await);
        }
        honest_users_get_through(&stack).await;
        let held = still_open(sockets).await;
        assert!(
            held <= 2 * limits.pending,
            "{broker:?}: {held} idle sockets held, more than both listeners' pending places"
        );
        stack.service.shutdown().await;
    }
}

/// `membership.db` was created world-readable: now the data directory is 0700 and the directory
/// database 0600 on both brokers, after a signup wrote to them. With Mosquitto started by root
/// (it runs as the `mosquitto` user), the directories on the way to its own are shared with the
/// `mosquitto` group for traversal only (0710) and its working directory is its own (0700).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_files_the_service_creates_are_private() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = |p: &std::path::Path| {
        std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let mode = |p: &std::path::Path| meta(p).permissions().mode() & 0o777;
    let root = running_as_root();
    for broker in sotto_testkit::available_brokers() {
        let stack = TestStack::start(broker).await;
        let _alice = stack.signup("alice").await;
        let data = stack.service.data_dir().to_owned();
        let shared = root && broker == Broker::Mosquitto;
        let dir_mode = if shared { 0o710 } else { 0o700 };
        assert_eq!(mode(&data), dir_mode, "{broker:?}: the data directory");
        assert_eq!(mode(&data.join("membership.db")), 0o600, "{broker:?}");
        assert_eq!(mode(&data.join("ca.key")), 0o600, "{broker:?}");
        if let Some(files) = stack.service.mosquitto_files() {
            assert_eq!(mode(files.dir()), dir_mode, "Mosquitto's directory");
            let conf_mode = if shared { 0o640 } else { 0o600 };
            assert_eq!(mode(&files.conf_path()), conf_mode, "mosquitto.conf");
            assert_eq!(mode(&files.run_dir()), 0o700, "its working directory");
            if shared {
                assert_ne!(meta(&files.run_dir()).uid(), 0, "run/ belongs to mosquitto");
            }
        }
        stack.service.shutdown().await;
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Mosquitto behind the front listened on a loopback TCP port with anonymous access, so any
/// local process could connect as any user, and it ran as root when started by root. Now it
/// listens on no TCP port at all (its only listener is the Unix socket), another local user
/// cannot even see that socket, it runs as the `mosquitto` user when the service runs as root,
/// and honest users get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_is_reachable_only_through_the_front_and_not_root() {
    use std::os::unix::fs::MetadataExt;
    if !Broker::Mosquitto.is_available() {
        println!("SKIPPED: `mosquitto` binary not found (apt-get install mosquitto)");
        return;
    }
    let stack = TestStack::start(Broker::Mosquitto).await;
    let pid = stack.service.mosquitto_pid().expect("a Mosquitto child");
    let files = stack.service.mosquitto_files().expect("Mosquitto's files");
    let socket = files.socket_path();

    // Its process runs as a user other than root whenever the service runs as root.
    let uid = std::fs::metadata(format!("/proc/{pid}"))
        .expect("the Mosquitto process")
        .uid();
    if running_as_root() {
        assert_ne!(uid, 0, "Mosquitto runs as root");
    }

    // No TCP listener among its sockets.
    let listening = tcp_listening_inodes();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("its file descriptors");
    for fd in fds.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            assert!(
                !listening.contains(inode),
                "Mosquitto listens on a TCP port (socket inode {inode})"
            );
        }
    }
    assert!(socket.exists(), "its Unix socket");

    // Another local user cannot reach the socket (only testable as root, which can switch).
    if running_as_root() {
        use std::os::unix::process::CommandExt;
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("test -e '{}'", socket.display()))
            .uid(65534)
            .gid(65534)
            .status()
            .expect("run as nobody");
        assert!(
            !status.success(),
            "user nobody can reach Mosquitto's socket"
        );
    } else {
        println!("NOTE: not root; the other-user check of the socket needs root to switch users");
    }
    honest_users_get_through(&stack).await;
    stack.service.shutdown().await;
}

/// The inodes of every listening TCP socket on this host (IPv4 and IPv6).
fn tcp_listening_inodes() -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if fields.get(3) == Some(&"0A") {
                if let Some(inode) = fields.get(9) {
                    out.insert((*inode).to_owned());
                }
            }
        }
    }
    out
}

/// `cert_not_after_ms` recorded the moment of a signup to the second (a year later), defeating
/// the deliberately coarse `created_day`: now every time the directory keeps is a UTC midnight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_keeps_days_not_moments_req1() {
    let stack = TestStack::start(Broker::Embedded).await;
    let _alice = stack.signup("alice").await;
    let _bob = stack.signup("bob").await;
    let db = stack.service.data_dir().join("membership.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the directory");
    let mut stmt = conn
        .prepare("SELECT created_day, cert_not_after_ms FROM users")
        .expect("query");
    let rows: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows.len(), 2);
    const DAY_MS: i64 = 86_400_000;
    for (created, not_after) in rows {
        assert_eq!(created % DAY_MS, 0, "created_day is a day");
        assert_eq!(
            not_after % DAY_MS,
            0,
            "cert_not_after_ms is a day: {not_after}"
        );
        assert!(
            not_after - created >= 365 * DAY_MS,
            "valid for a year at least"
        );
    }
    stack.service.shutdown().await;
}

/// Old certificates kept working after a renewal (no revocation): now the certificate a renewal
/// replaced is refused by the MQTT front and by the membership service's certificate endpoints,
/// also after the membership service restarts, while the new one works; both brokers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_revokes_the_replaced_certificate() {
    use rand_core::SeedableRng;
    use sotto_client::membership::MembershipClient;
    use sotto_testkit::mqtt::{DeviceTlsKey, Identity, options, start};
    use sotto_wire::membership_api::RenewRequest;

    for broker in sotto_testkit::available_brokers() {
        let mut stack = TestStack::start(broker).await;
        let anonymous = MembershipClient::new(&stack.url(), stack.ca_pem(), None).expect("client");
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(77);
        let mut device = sotto_core::Device::new(&mut rng, sotto_core::UserId([0; 10]));
        let old_tls = DeviceTlsKey::generate();
        let (challenge, difficulty) = anonymous.challenge().await.expect("challenge");
        let request = device
            .signup_request(&mut rng, &old_tls.spki_der, 1, &challenge, difficulty)
            .expect("signup request")
            .to_bytes();
        let proving = |tls: &DeviceTlsKey, stack: &TestStack| {
            let proof = tls.proof_pem();
            MembershipClient::new(&stack.url(), stack.ca_pem(), Some((&proof, &tls.key_pem)))
                .expect("client")
        };
        let signup = proving(&old_tls, &stack)
            .signup(&request)
            .await
            .expect("signup");
        let user = sotto_core::UserId::parse(&signup.user_id).expect("user id");
        let old = Identity {
            user_id: signup.user_id.clone(),
            cert_pem: signup.certificate_pem.clone(),
            key_pem: old_tls.key_pem.clone(),
        };
        let mqtt_ok = |id: &Identity, stack: &TestStack| {
            let opts = options(id, stack.broker_addr(), stack.ca_pem(), true);
            async move { start(opts).connack().await.is_ok() }
        };
        assert!(
            mqtt_ok(&old, &stack).await,
            "{broker:?}: before the renewal"
        );

        let new_tls = DeviceTlsKey::generate();
        let now = anonymous.time().await.expect("time");
        let renew = RenewRequest::sign(device.identity(), user, &new_tls.spki_der, now)
            .expect("renew request");
        let renewed = proving(&new_tls, &stack)
            .renew(&renew)
            .await
            .expect("renew");
        let new = Identity {
            user_id: signup.user_id.clone(),
            cert_pem: renewed.certificate_pem.clone(),
            key_pem: new_tls.key_pem.clone(),
        };
        let with = |id: &Identity, stack: &TestStack| {
            MembershipClient::new(
                &stack.url(),
                stack.ca_pem(),
                Some((&id.cert_pem, &id.key_pem)),
            )
            .expect("client")
        };
        for round in [
            "after the renewal",
            "after a restart of the membership service",
        ] {
            assert!(
                !mqtt_ok(&old, &stack).await,
                "{broker:?}: old, MQTT, {round}"
            );
            assert!(
                mqtt_ok(&new, &stack).await,
                "{broker:?}: new, MQTT, {round}"
            );
            let e = with(&old, &stack).prekey_count().await.unwrap_err();
            assert!(
                matches!(&e, sotto_client::ClientError::Refused { status: 401, .. }),
                "{broker:?}: old, membership, {round}: {e:?}"
            );
            assert_eq!(with(&new, &stack).prekey_count().await.expect("new"), 1);
            stack.stop_membership().await;
            stack.start_membership(None).await;
        }
        stack.service.shutdown().await;
    }
}
