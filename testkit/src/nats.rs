//! A throwaway 3-node NATS cluster for tests: `nats-server` (Debian `nats-server`, 2.9 or later)
//! with JetStream and the MQTT listener on every node, all on free loopback ports, data in a
//! temporary directory, one user for the fronts with a random password. The same configuration
//! as `deploy/cluster/nats-start.sh` (MQTT streams and consumers replicated on 3 nodes), with a
//! short `ack_wait` ([`ACK_WAIT`]): NATS sends an unacknowledged QoS 1 message again only when
//! that timer runs out, not at a reconnect.
//!
//! A node can be killed (SIGKILL) and started again on its data, where it rejoins
//! ([`TestNats::kill_node`], [`TestNats::start_node`]). Every node is killed on drop.
//!
//! [`TestNats::start`] returns `None` (with a line on stderr) where `nats-server` is not
//! installed, so a caller can skip; CI installs it and sets `SOTTO_REQUIRE_NATS=1`, which turns
//! that into a panic.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sotto_server::broker::nats::{NatsCluster, nats_server_available};

/// NATS's `mqtt.ack_wait` in the test clusters.
pub const ACK_WAIT: Duration = Duration::from_secs(3);

/// The fronts' NATS user.
pub const USER: &str = "sotto";

/// One node's ports.
#[derive(Clone, Copy, Debug)]
struct Ports {
    client: u16,
    cluster: u16,
    mqtt: u16,
    http: u16,
}

/// A running throwaway NATS cluster.
pub struct TestNats {
    nodes: Vec<Option<Child>>,
    ports: Vec<Ports>,
    password: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestNats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNats")
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

impl TestNats {
    /// Starts 3 nodes and waits until the cluster takes the fronts' CONNECT, or `None` if
    /// `nats-server` is not installed (unless `SOTTO_REQUIRE_NATS=1`: then it panics).
    pub async fn start() -> Option<TestNats> {
        if !nats_server_available() {
            assert!(
                std::env::var_os("SOTTO_REQUIRE_NATS").is_none(),
                "SOTTO_REQUIRE_NATS is set but `nats-server` is not installed"
            );
            eprintln!("nats-server is not installed (apt-get install nats-server): skipped");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("sotto-nats-")
            .tempdir()
            .expect("temp dir");
        let ports: Vec<Ports> = (0..3)
            .map(|_| Ports {
                client: crate::free_loopback().port(),
                cluster: crate::free_loopback().port(),
                mqtt: crate::free_loopback().port(),
                http: crate::free_loopback().port(),
            })
            .collect();
        let password = hex(&rand_bytes());
        let routes: Vec<String> = ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{}\"", p.cluster))
            .collect();
        for (i, p) in ports.iter().enumerate() {
            let node = dir.path().join(format!("n{}", i + 1));
            std::fs::create_dir_all(node.join("js")).expect("node dir");
            let conf = format!(
                r#"server_name: n{n}
host: 127.0.0.1
port: {client}
http: "127.0.0.1:{http}"
authorization {{ user: {USER}, password: "{password}" }}
jetstream {{ store_dir: "{js}", max_memory_store: 64MB, max_file_store: 1GB }}
cluster {{ name: sotto, listen: "127.0.0.1:{cluster}", routes: [ {routes} ] }}
mqtt {{ host: 127.0.0.1, port: {mqtt}, stream_replicas: 3, consumer_replicas: 3, ack_wait: "{ack}s", max_ack_pending: 1000 }}
"#,
                n = i + 1,
                client = p.client,
                http = p.http,
                js = node.join("js").display(),
                cluster = p.cluster,
                routes = routes.join(", "),
                mqtt = p.mqtt,
                ack = ACK_WAIT.as_secs(),
            );
            std::fs::write(node.join("nats.conf"), conf).expect("node config");
        }
        let mut nats = TestNats {
            nodes: (0..3).map(|_| None).collect(),
            ports,
            password,
            dir,
        };
        for i in 0..3 {
            nats.spawn(i);
        }
        for i in 0..3 {
            nats.wait_node(i).await;
        }
        Some(nats)
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}", i + 1))
    }

    fn spawn(&mut self, i: usize) {
        let node = self.node_dir(i);
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(node.join("nats.conf"))
            .arg("-l")
            .arg(node.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.nodes[i] = Some(child);
    }

    /// Waits until node `i` takes the fronts' CONNECT on its MQTT port (JetStream has its
    /// leaders).
    async fn wait_node(&self, i: usize) {
        let one = NatsCluster::new(
            vec![loopback(self.ports[i].mqtt)],
            vec![loopback(self.ports[i].client)],
            USER,
            &self.password,
        )
        .expect("one node");
        if let Err(e) = one.wait_ready().await {
            let log =
                std::fs::read_to_string(self.node_dir(i).join("nats.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            panic!("NATS node {} is not ready: {e}\n{}", i + 1, tail.join("\n"));
        }
    }

    /// The cluster as a service sees it: every node's MQTT and client port, the fronts' user.
    pub fn cluster(&self) -> NatsCluster {
        NatsCluster::new(
            self.ports.iter().map(|p| loopback(p.mqtt)).collect(),
            self.ports.iter().map(|p| loopback(p.client)).collect(),
            USER,
            &self.password,
        )
        .expect("three nodes")
    }

    /// The MQTT listeners, node 1 first.
    pub fn mqtt_addrs(&self) -> Vec<SocketAddr> {
        self.ports.iter().map(|p| loopback(p.mqtt)).collect()
    }

    /// The fronts' password (for `sotto serve --broker nats`, through `SOTTO_NATS_PASSWORD`).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// SIGKILLs node `i` (0-based): its connections drop, the others elect new leaders.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again on its data and waits until it takes CONNECTs.
    pub async fn start_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {} is running", i + 1);
        self.spawn(i);
        self.wait_node(i).await;
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("random bytes");
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
