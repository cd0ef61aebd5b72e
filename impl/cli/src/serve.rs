//! `sotto serve`: the whole service in one process.
//!
//! ```text
//!  DIR/ca.pem, ca.key, server.pem, server.key   sotto_server::ca::Pki (created on first start)
//!  DIR/membership.db                            membership service, HTTPS on --listen
//!  message service on --mqtt:
//!     embedded   authorizing mTLS front -> in-process rumqttd (BROKER-1..4)
//!     mosquitto  DIR/mosquitto/{mosquitto.conf, acl, certs} -> `mosquitto -c ...` child
//!                (or, with --mosquitto-external, only the files for a Mosquitto run elsewhere)
//! ```
//!
//! Runs until Ctrl-C or SIGTERM, then stops accepting, closes the connections and exits 0. The
//! first lines on stdout say where everything is (the tests read them).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use sotto_server::broker::MessageService;
use sotto_server::broker::mosquitto::{MosquittoProcess, MosquittoProfile};
use sotto_server::ca::Pki;
use sotto_server::membership::{Membership, MembershipConfig};

use crate::banner;
use crate::cli::{BrokerKind, ServeArgs};
use crate::errors::hinted;

/// The running message service.
enum Broker {
    Embedded(MessageService),
    Mosquitto(MosquittoProcess),
    External,
}

/// The address devices are told, `host:port`: `localhost` stands in for an unspecified IP.
fn advertised(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    }
}

/// `sotto serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    for (what, addr) in [("--listen", args.listen), ("--mqtt", args.mqtt)] {
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "{what} is not a loopback address: the service is reachable from the network");
            eprintln!("warning: {what} {addr} is reachable from other machines");
        }
    }
    if args.mosquitto_external && args.broker != BrokerKind::Mosquitto {
        return Err(hinted(
            "--mosquitto-external needs --broker mosquitto",
            "run `sotto serve --broker mosquitto --mosquitto-external`",
        ));
    }
    let data = args.data.clone();
    let pki = {
        let dir = data.clone();
        tokio::task::spawn_blocking(move || Pki::load_or_create(&dir))
            .await?
            .map_err(|e| {
                hinted(
                    format!("cannot load or create the CA in {}: {e}", data.display()),
                    "check that the directory is writable and that ca.key / server.key are \
                     mode 0600",
                )
            })?
    };
    let pki = Arc::new(pki);

    let (broker, broker_addr) = match args.broker {
        BrokerKind::Embedded => {
            let service = MessageService::start_embedded(&pki, args.mqtt)
                .await
                .map_err(|e| {
                    hinted(
                        format!("cannot start the message service on {}: {e}", args.mqtt),
                        "is the port in use? choose another with --mqtt (port 0: any free port)",
                    )
                })?;
            let addr = service.local_addr();
            (Broker::Embedded(service), addr)
        }
        BrokerKind::Mosquitto => {
            let dir = data.join("mosquitto");
            let profile = MosquittoProfile::write(&pki, &dir, args.mqtt)
                .with_context(|| format!("writing the Mosquitto profile into {}", dir.display()))?;
            if args.mosquitto_external {
                println!("mosquitto config: {}", profile.conf_path().display());
                println!(
                    "  start it with: mosquitto -c {}",
                    profile.conf_path().display()
                );
                (Broker::External, profile.addr())
            } else {
                let process = MosquittoProcess::spawn(&profile).await.map_err(|e| {
                    hinted(
                        format!("cannot start mosquitto: {e}"),
                        "install Mosquitto 2 (`apt-get install mosquitto`), free the --mqtt \
                         port, or use --broker embedded",
                    )
                })?;
                let addr = process.addr();
                (Broker::Mosquitto(process), addr)
            }
        }
    };
    let broker_public = args
        .public_broker
        .clone()
        .unwrap_or_else(|| advertised(broker_addr));

    let membership = Membership::start(
        MembershipConfig {
            data_dir: data.clone(),
            listen: args.listen,
            difficulty: args.difficulty,
            broker_addr: broker_public.clone(),
        },
        pki.clone(),
    )
    .await
    .map_err(|e| {
        hinted(
            format!(
                "cannot start the membership service on {}: {e}",
                args.listen
            ),
            "is the port in use? choose another with --listen (port 0: any free port)",
        )
    })?;

    let kind = match &broker {
        Broker::Embedded(_) => "embedded rumqttd behind the mTLS front",
        Broker::Mosquitto(_) => "mosquitto",
        Broker::External => "mosquitto, started by you",
    };
    println!("{}", banner::line("data directory:", data.display()));
    println!("{}", banner::line(banner::MEMBERSHIP, membership.url()));
    println!(
        "{}",
        banner::line("broker:", format!("{broker_public} ({kind})"))
    );
    println!(
        "{}",
        banner::line(banner::CA_FILE, data.join("ca.pem").display())
    );
    println!("{}", banner::line(banner::CA_SHA256, pki.ca_fingerprint()));
    println!("signup difficulty: {} bits", args.difficulty);
    println!(
        "people sign up with: sotto signup --server {} --ca {}",
        membership.url(),
        data.join("ca.pem").display()
    );
    println!("{}; Ctrl-C stops the service", banner::READY);

    wait_for_stop().await;
    eprintln!("stopping ...");
    membership.shutdown().await;
    match broker {
        Broker::Embedded(service) => service.shutdown().await,
        Broker::Mosquitto(process) => process.stop().await?,
        Broker::External => {}
    }
    eprintln!("stopped");
    Ok(())
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
