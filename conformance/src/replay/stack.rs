//! The real stack of one replay: PKI, membership service, the authorizing front, the relay and a
//! broker (the embedded rumqttd or Mosquitto behind the front), all on loopback in a temp dir.
//!
//! ```text
//!  sotto_client::Client --mTLS--> Front --> Relay --> EmbeddedBroker | InternalMosquitto
//!         \--HTTPS--> Membership (signup, directory, time)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use sotto_server::broker::embedded::EmbeddedBroker;
use sotto_server::broker::front::{Front, Upstream};
use sotto_server::broker::mosquitto::InternalMosquitto;
use sotto_server::ca::Pki;
use sotto_server::membership::{Membership, MembershipConfig, MembershipHandle};

use super::relay::Relay;
use super::{Broker, ReplayError};

/// Proof-of-work difficulty of the replay's membership service (small; the path still runs).
const DIFFICULTY: u8 = 4;

enum Backend {
    Embedded(EmbeddedBroker),
    Mosquitto(InternalMosquitto),
}

impl Backend {
    fn upstream(&self) -> Upstream {
        match self {
            Backend::Embedded(b) => b.upstream(),
            Backend::Mosquitto(m) => m.upstream(),
        }
    }
}

/// A running stack.
pub(crate) struct Stack {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) pki: Arc<Pki>,
    pub(crate) membership: MembershipHandle,
    pub(crate) relay: Relay,
    front: Front,
    backend: Backend,
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn stack_err(what: &str, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Stack(format!("{what}: {e}"))
}

impl Stack {
    pub(crate) async fn start(broker: Broker) -> Result<Stack, ReplayError> {
        let dir = tempfile::tempdir()?;
        let pki = Arc::new(
            Pki::load_or_create(&dir.path().join("pki")).map_err(|e| stack_err("PKI", e))?,
        );
        let backend = match broker {
            Broker::Embedded => Backend::Embedded(
                EmbeddedBroker::start()
                    .await
                    .map_err(|e| stack_err("embedded broker", e))?,
            ),
            Broker::Mosquitto => Backend::Mosquitto(
                InternalMosquitto::start(&dir.path().join("mosquitto"))
                    .await
                    .map_err(|e| stack_err("mosquitto", e))?,
            ),
        };
        let up = backend.upstream();
        let relay = Relay::start(up.addr)
            .await
            .map_err(|e| stack_err("relay", e))?;
        let tls = pki.mqtt_server_config().map_err(|e| stack_err("TLS", e))?;
        let front = Front::bind(
            loopback(),
            tls,
            Some(Upstream {
                addr: relay.local_addr(),
                secret: up.secret,
            }),
        )
        .await
        .map_err(|e| stack_err("front", e))?;
        let membership = Membership::start(
            MembershipConfig {
                data_dir: dir.path().join("membership"),
                listen: loopback(),
                difficulty: DIFFICULTY,
                broker_addr: front.local_addr().to_string(),
            },
            pki.clone(),
        )
        .await
        .map_err(|e| stack_err("membership", e))?;
        Ok(Stack {
            dir,
            pki,
            membership,
            relay,
            front,
            backend,
        })
    }

    /// The broker restarts and loses every queue (the model's Restart).
    pub(crate) async fn restart_broker(&mut self) -> Result<(), ReplayError> {
        match &mut self.backend {
            Backend::Embedded(b) => {
                b.stop();
                *b = EmbeddedBroker::start()
                    .await
                    .map_err(|e| stack_err("embedded broker", e))?;
            }
            Backend::Mosquitto(m) => m
                .restart(false)
                .await
                .map_err(|e| stack_err("mosquitto", e))?,
        }
        let up = self.backend.upstream();
        // The broker lost its sessions too; the front gives every inbox its session back.
        sotto_server::broker::front::restore_sessions(&up, &self.front.seen_users())
            .await
            .map_err(|e| stack_err("session restore", e))?;
        self.relay.restart(up.addr);
        // The front's CONNECT to the new broker must carry the new secret.
        self.front.set_upstream(Some(Upstream {
            addr: self.relay.local_addr(),
            secret: up.secret,
        }));
        Ok(())
    }

    pub(crate) async fn shutdown(self) {
        self.membership.shutdown().await;
        self.front.shutdown().await;
        if let Backend::Embedded(b) = &self.backend {
            b.stop();
        }
    }
}
