//! The command line: [`Args`], their defaults, [`USAGE`] and [`parse_args`].

use std::time::Duration;

use sotto_server::Broker;

/// What to run, and how much of it.
#[derive(Clone, Debug)]
pub struct Args {
    /// Sender -> receiver pairs of phases 1 to 3.
    pub pairs: usize,
    /// Messages per pair and round of phases 1 and 2.
    pub messages: usize,
    /// Messages per pair and round of phase 3 (0: skipped).
    pub client_messages: usize,
    /// The brokers asked for (the unavailable ones are skipped).
    pub brokers: Vec<Broker>,
    /// Envelopes of phases 4 and 5 (0: skipped).
    pub drain: usize,
    /// Messages of each half of phase 6, the commit cost (0: skipped).
    pub commit_messages: usize,
    /// Rounds of phases 1, 2 and 3, in turn.
    pub rounds: usize,
    /// Rounds of phase 6, empty and full replay cache alternating.
    pub commit_rounds: usize,
    /// Bound of every phase.
    pub timeout: Duration,
}

const USAGE: &str = "usage: cargo bench -p sotto-testkit --bench e2e -- [--pairs N (4)] \
[--messages M (2000)] [--client-messages K per round (2000)] [--broker embedded|mosquitto|both|nats (both)] \
[--drain D (10000)] [--commit-messages C (5000)] [--rounds R of plain, encrypted and full client (3)] \
[--commit-rounds R of the commit cost (5)] [--timeout SECONDS per phase (120)]";

/// The arguments of the process; `--help` prints [`USAGE`] and exits.
pub fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        pairs: 4,
        messages: 2000,
        client_messages: 2000,
        brokers: Broker::ALL.to_vec(),
        drain: 10_000,
        commit_messages: 5000,
        rounds: 3,
        commit_rounds: 5,
        timeout: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            // `cargo bench` passes `--bench` to harness-less benchmarks.
            "--bench" => {}
            "--pairs" => args.pairs = number(value()?)?.max(1),
            "--messages" => args.messages = number(value()?)?,
            "--client-messages" => args.client_messages = number(value()?)?,
            "--drain" => args.drain = number(value()?)?,
            "--commit-messages" => args.commit_messages = number(value()?)?,
            "--rounds" => args.rounds = number(value()?)?.max(1),
            "--commit-rounds" => args.commit_rounds = number(value()?)?.max(1),
            "--timeout" => args.timeout = Duration::from_secs(number(value()?)? as u64),
            "--broker" => {
                args.brokers = match value()?.as_str() {
                    "both" => Broker::ALL.to_vec(),
                    one => vec![
                        one.parse()
                            .map_err(|_| format!("--broker: unknown broker {one}"))?,
                    ],
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}
