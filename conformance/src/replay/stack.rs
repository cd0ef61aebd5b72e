//! The real stack of one replay: the service through its one builder (`sotto_server::Service`:
//! PKI, membership service, the authorizing front, a broker behind it) with the relay interposed
//! between the front and the broker, all on loopback in a temp dir.
//!
//! ```text
//!  sotto_client::Client --mTLS--> front --> Relay --> embedded | Mosquitto   (Service + interpose)
//!         \--HTTPS--> membership (signup, directory, time)
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use sotto_server::broker::Hop;
use sotto_server::broker::upstream::InternalAddr;
use sotto_server::{BrokerStop, Service};

use crate::target::Target;

use super::ReplayError;
use super::relay::Relay;

/// Proof-of-work difficulty of the replay's membership service (small; the path still runs).
const DIFFICULTY: u8 = 4;

impl Hop for Relay {
    fn local_addr(&self) -> SocketAddr {
        Relay::local_addr(self)
    }

    fn retarget(&self, broker: InternalAddr) {
        self.restart(broker);
    }
}

/// A running stack.
pub(crate) struct Stack {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) service: Service,
    pub(crate) relay: Arc<Relay>,
}

fn stack_err(what: &str, e: impl std::fmt::Display) -> ReplayError {
    ReplayError::Stack(format!("{what}: {e}"))
}

impl Stack {
    pub(crate) async fn start(target: &Target) -> Result<Stack, ReplayError> {
        let dir = tempfile::tempdir()?;
        let mut service = target
            .builder(dir.path().join("server"))
            .difficulty(DIFFICULTY)
            .start()
            .await
            .map_err(|e| stack_err("service", e))?;
        let internal = service.internal_broker_addr();
        let relay = Arc::new(
            Relay::start(internal)
                .await
                .map_err(|e| stack_err("relay", e))?,
        );
        service.interpose(relay.clone());
        Ok(Stack {
            dir,
            service,
            relay,
        })
    }

    /// The broker restarts and loses every queue (the model's Restart); the front gives every
    /// inbox its session back, and the relay follows the broker.
    pub(crate) async fn restart_broker(&mut self) -> Result<(), ReplayError> {
        self.service
            .restart_broker(BrokerStop::Fresh)
            .await
            .map_err(|e| stack_err("broker restart", e))
    }

    pub(crate) async fn shutdown(self) {
        self.service.shutdown().await;
    }
}
