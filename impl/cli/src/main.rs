//! # `sotto`: the command line
//!
//! One binary for both sides of the service:
//!
//! ```text
//!  operator:  sotto serve ──> CA (DIR/ca.pem) + membership (HTTPS) + message service (MQTT/mTLS)
//!                              prints the membership URL, the broker, the CA file and its SHA-256
//!
//!  person:    sotto signup --server URL --ca ca.pem      (creates ./sotto.db, SQLCipher, Req7)
//!             sotto card | add | verify | contacts | whoami
//!             sotto send <user> <text> | inbox | chat <user>
//!             sotto group create|add|remove|send|list
//!
//!  anyone:    sotto demo              (the whole stack in-process, then what the server saw, Req8)
//!             sotto demo --in-memory  (the protocol core alone, no network)
//!             sotto check             (Req1..Req8: model, vectors, replay, wiretap; exit 1 unless all pass)
//!             sotto soak              (load: N clients x M messages per broker, exactly once)
//! ```
//!
//! Person commands open the store at `--store` (or `SOTTO_STORE`, default `./sotto.db`) with the
//! passphrase from `SOTTO_PASSPHRASE` or a prompt without echo. Errors end with what to do next;
//! logs go to stderr through `tracing` (`RUST_LOG=sotto=debug,sotto_client=debug`).

mod check;
mod cli;
mod demo;
mod demo_live;
mod errors;
mod format;
mod group;
mod messaging;
mod passphrase;
mod person;
mod qr;
mod serve;
mod soak;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, DemoArgs, GroupCommand};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, matches!(cli.command, Command::Serve(_)));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // The embedded broker's threads never end by themselves: do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", errors::render(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut resolve = sotto_client::Resolve::none();
    for (name, addr) in &cli.resolve {
        resolve.insert(name, *addr);
    }
    let store = person::Device {
        store: cli.store,
        resolve,
    };
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Signup(args) => person::signup(&store, args).await,
        Command::Card(args) => person::card(&store, args).await,
        Command::Add(args) => person::add(&store, args).await,
        Command::Verify(args) => person::verify(&store, args).await,
        Command::Contacts => person::contacts(&store).await,
        Command::Name(args) => person::name(&store, args).await,
        Command::Identity(args) => person::identity(&store, args).await,
        Command::Accept(args) => person::accept(&store, args).await,
        Command::Reject(args) => person::reject(&store, args).await,
        Command::Block(args) => person::block(&store, args, true).await,
        Command::Unblock(args) => person::block(&store, args, false).await,
        Command::History(args) => messaging::history(&store, args).await,
        Command::Delete(args) => messaging::delete(&store, args).await,
        Command::Passphrase => person::passphrase(&store).await,
        Command::Whoami => person::whoami(&store).await,
        Command::Send(args) => messaging::send(&store, args).await,
        Command::Inbox(args) => messaging::inbox(&store, args).await,
        Command::Chat(args) => messaging::chat(&store, args).await,
        Command::Group(g) => match g {
            GroupCommand::Create(a) => group::create(&store, a).await,
            GroupCommand::Add(a) => group::add(&store, a).await,
            GroupCommand::Remove(a) => group::remove(&store, a).await,
            GroupCommand::Send(a) => group::send(&store, a).await,
            GroupCommand::List => group::list(&store).await,
            GroupCommand::Leave(a) => group::leave(&store, a).await,
            GroupCommand::Handover(a) => group::handover(&store, a).await,
        },
        Command::Check(args) => check::run(args, &mut std::io::stdout()).await,
        Command::Soak(args) => soak::run(args, &mut std::io::stdout()).await,
        Command::Demo(DemoArgs { in_memory, seed }) => {
            if in_memory {
                demo::run(seed, &mut std::io::stdout()).map_err(|e| anyhow::anyhow!("{e}"))
            } else {
                demo_live::run(&mut std::io::stdout()).await
            }
        }
    }
}

/// Logs to stderr; `RUST_LOG` wins over `-v`.
///
/// For the server (`serve`), `-v`, `-vv` and `-vvv` raise Sotto's own targets only: the libraries
/// below it (TLS, HTTP, the runtime) stay at warnings, since their debug and trace output is not
/// written with BROKER-6 in mind. `RUST_LOG` is the operator's explicit debug mode for them, and
/// the service says so when it starts.
fn init_logging(verbose: u8, server: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let default = if server {
        format!("warn,sotto={level},sotto_server={level},sotto_wire={level}")
    } else {
        level.to_owned()
    };
    let from_env = tracing_subscriber::EnvFilter::try_from_default_env().ok();
    let explicit = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    if server && explicit {
        tracing::warn!(
            "RUST_LOG is set: the libraries' own debug and trace output may name client \
             addresses and user ids (BROKER-6 covers Sotto's own log lines only)"
        );
    }
}
