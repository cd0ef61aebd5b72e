//! `sotto serve`: the whole service in one process.
//!
//! ```text
//!  DIR/ca.pem, ca.key, server.pem, server.key   sotto_server::ca::Pki (created on first start)
//!  DIR/membership.db                            membership service, HTTPS on --listen
//!  message service on --mqtt:
//!     embedded   authorizing mTLS front -> in-process broker (BROKER-1..6)
//!     mosquitto  authorizing mTLS front -> `mosquitto` child on a Unix socket (BROKER-1..6),
//!                DIR/mosquitto/{mosquitto.conf, acl, run/}; restarted if it dies
//!                --mosquitto-external: the same files, for a Mosquitto you run; same front
//!     nats       authorizing mTLS front -> the MQTT listeners of a NATS cluster you run (--nats;
//!                --nats-api for its inbox counts), as one NATS user (--nats-user,
//!                SOTTO_NATS_PASSWORD); any number of `sotto serve` share it (with
//!                --directory postgresql://... and the same CA)
//! ```
//!
//! Everything is started by `sotto_server::Service`, the builder the demo, the conformance runs
//! and the tests use too.
//!
//! Runs until Ctrl-C or SIGTERM, then stops accepting, closes the connections and exits 0. The
//! first lines on stdout say where everything is (the tests read them).

use sotto_server::{Broker, Service, ServiceError};

use crate::cli::ServeArgs;
use crate::errors::hinted;
use sotto::banner;

/// `sotto serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    for (what, addr) in [("--listen", args.listen), ("--mqtt", args.mqtt)] {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "{what} is not a loopback address: the service is reachable from the network");
            eprintln!("warning: {what} {addr} is reachable from other machines");
        }
    }
    if args.mosquitto_external && args.broker != Broker::Mosquitto {
        return Err(hinted(
            "--mosquitto-external needs --broker mosquitto",
            "run `sotto serve --broker mosquitto --mosquitto-external`",
        ));
    }
    let nats = args.nats.cluster(args.broker)?;
    let data = args.data.clone();
    let mut builder = Service::builder(&data)
        .broker(args.broker)
        .membership_listen(args.listen)
        .mqtt_listen(args.mqtt)
        .difficulty(args.difficulty)
        .directory(args.directory.clone())
        .membership_quotas(
            sotto_server::membership::quota::QuotaLimits::DEFAULT
                .with_signup_burst(args.signup_burst),
        );
    if args.mosquitto_external {
        // The files for a Mosquitto the operator runs, behind the front as always.
        builder = builder.mosquitto_external();
    }
    if let Some(cluster) = nats {
        builder = builder.nats(cluster);
    }
    if let Some(addr) = args.metrics {
        if !addr.ip().is_loopback() {
            eprintln!("warning: --metrics {addr} is reachable from other machines (totals only)");
        }
        builder = builder.metrics_listen(addr);
    }
    if !args.names.is_empty() {
        builder = builder.server_names(args.names.clone());
    }
    if let Some(public) = &args.public_broker {
        builder = builder.advertise_broker(public.clone());
    }
    let mut service = builder.start().await.map_err(|e| explain(e, &args))?;

    if let Some(conf) = service.mosquitto_conf().filter(|_| args.mosquitto_external) {
        println!("mosquitto config: {}", conf.display());
        println!("  start it with: mosquitto -c {}", conf.display());
    }
    let kind = match (service.broker(), args.mosquitto_external) {
        (Broker::Embedded, _) => "embedded broker behind the mTLS front",
        (Broker::Mosquitto, false) => "mosquitto behind the mTLS front",
        (Broker::Mosquitto, true) => "mosquitto, started by you, behind the mTLS front",
        (Broker::Nats, _) => "NATS cluster behind the mTLS front",
    };
    println!("{}", banner::line("data directory:", data.display()));
    if let sotto_server::membership::DirectoryBackend::Postgres { .. } = args.directory {
        // The URL may hold a password: only the kind is printed.
        println!("{}", banner::line("directory:", "PostgreSQL (--directory)"));
    }
    println!(
        "{}",
        banner::line(banner::MEMBERSHIP, service.membership_url())
    );
    println!(
        "{}",
        banner::line(
            "broker:",
            format!("{} ({kind})", service.advertised_broker())
        )
    );
    println!(
        "{}",
        banner::line(banner::CA_FILE, service.ca_file().display())
    );
    println!(
        "{}",
        banner::line(banner::CA_SHA256, service.pki().ca_fingerprint())
    );
    if let Some(addr) = service.metrics_addr() {
        println!("metrics: http://{addr}/metrics, health: http://{addr}/health");
    }
    println!("signup difficulty: {} bits", args.difficulty);
    println!(
        "people sign up with: sotto signup --server {} --ca {}",
        service.membership_url(),
        service.ca_file().display()
    );
    println!("{}; Ctrl-C stops the service", banner::READY);

    supervise(&mut service).await;
    eprintln!("stopping ...");
    service.shutdown().await;
    eprintln!("stopped");
    Ok(())
}

/// A start-up failure with what to do about it, by the part that failed.
fn explain(e: ServiceError, args: &ServeArgs) -> anyhow::Error {
    use sotto_server::membership::StoreError;
    match &e {
        ServiceError::Pki(sotto_server::ca::CaError::BadServerName(name)) => hinted(
            format!("--name {name:?} is not a host name or an IP address"),
            "give a DNS name such as chat.example (no wildcard, no trailing dot) or an address",
        ),
        ServiceError::Io(_) | ServiceError::Pki(_) => hinted(
            format!(
                "cannot load or create the CA in {}: {e}",
                args.data.display()
            ),
            "check that the directory is writable and that ca.key / server.key are mode 0600",
        ),
        ServiceError::Broker(_) if args.broker == Broker::Nats => hinted(
            format!("cannot reach the NATS cluster: {e}"),
            "check --nats (the nodes' MQTT listeners), --nats-user and SOTTO_NATS_PASSWORD; a \
             fresh cluster needs a few seconds to elect its JetStream leaders",
        ),
        ServiceError::Broker(_) if args.broker == Broker::Mosquitto => hinted(
            format!("cannot start mosquitto: {e}"),
            "install Mosquitto 2 (`apt-get install mosquitto`), free the --mqtt port, or use \
             --broker embedded",
        ),
        ServiceError::Broker(_) => hinted(
            format!("cannot start the message service on {}: {e}", args.mqtt),
            "is the port in use? choose another with --mqtt (port 0: any free port)",
        ),
        ServiceError::Metrics(_) => hinted(
            format!("cannot serve the metrics on {:?}: {e}", args.metrics),
            "is the port in use? choose another with --metrics (port 0: any free port)",
        ),
        ServiceError::Membership(sotto_server::membership::MembershipError::Store(
            store @ (StoreError::Postgres(_) | StoreError::Pool(_) | StoreError::Config(_)),
        )) => hinted(
            format!("cannot open the membership directory on PostgreSQL: {store}"),
            "check --directory (or SOTTO_DIRECTORY): the server must run, the database and user \
             exist, and the URL read postgresql://USER@HOST:PORT/DB",
        ),
        ServiceError::Membership(_) => hinted(
            format!(
                "cannot start the membership service on {}: {e}",
                args.listen
            ),
            "is the port in use? choose another with --listen (port 0: any free port)",
        ),
        _ => anyhow::Error::new(e),
    }
}

/// Waits for Ctrl-C or SIGTERM; meanwhile starts the Mosquitto child again whenever it has died
/// (checked every second).
async fn supervise(service: &mut Service) {
    let stop = wait_for_stop();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {
                match service.revive_broker().await {
                    Ok(true) => eprintln!("mosquitto had exited; started it again"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "starting mosquitto again");
                        eprintln!("error: cannot start mosquitto again: {e}");
                    }
                }
            }
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
