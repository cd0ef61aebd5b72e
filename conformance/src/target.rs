//! What a conformance run starts its services on ([`Target`]): a broker the service runs itself
//! (embedded, Mosquitto), or a NATS cluster someone else runs, which every service of the run
//! shares (each trace and the wiretap get a fresh service, front and membership, on it).

use std::path::Path;

use sotto_server::broker::nats::NatsCluster;
use sotto_server::{Broker, Service, ServiceBuilder};

/// The message service of a run.
#[derive(Clone, Debug)]
pub struct Target {
    /// The broker.
    pub broker: Broker,
    /// With [`Broker::Nats`]: the cluster.
    pub nats: Option<NatsCluster>,
}

impl Target {
    /// The NATS cluster `cluster`.
    pub fn nats(cluster: NatsCluster) -> Target {
        Target {
            broker: Broker::Nats,
            nats: Some(cluster),
        }
    }

    /// A service builder for a service with its data in `dir`, on this target.
    pub fn builder(&self, dir: impl AsRef<Path>) -> ServiceBuilder {
        let builder = Service::builder(dir.as_ref()).broker(self.broker);
        match &self.nats {
            Some(cluster) => builder.nats(cluster.clone()),
            None => builder,
        }
    }
}

impl From<Broker> for Target {
    fn from(broker: Broker) -> Target {
        Target { broker, nats: None }
    }
}
