//! `sotto`: the command line.
//!
//! Today it runs `demo`, an in-memory conversation through `sotto-core` with a broker that only
//! relays ciphertext (the real MQTT service, signup and device store arrive with the next issue).

mod demo;

use std::process::ExitCode;

const USAGE: &str = "\
sotto: private mobile chat, reference implementation

usage: sotto <command>

commands:
  demo [--seed N]   three people exchange cards in person, chat while one is offline, run a group
                    with a removal and rekey, and see what the server saw (ciphertext only).
                    In memory, no network; --seed makes a run reproducible (default: OS randomness).
  help              this text";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => {
            let seed = match args.get(1).map(String::as_str) {
                None => None,
                Some("--seed") => match args.get(2).map(|s| s.parse::<u64>()) {
                    Some(Ok(n)) => Some(n),
                    _ => {
                        eprintln!("error: --seed needs a number, e.g. `sotto demo --seed 7`");
                        return ExitCode::from(2);
                    }
                },
                Some(other) => {
                    eprintln!("error: unknown option {other:?} for demo; try `sotto help`");
                    return ExitCode::from(2);
                }
            };
            match demo::run(seed, &mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("error: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
