//! `sotto-conformance`: check or regenerate the known-answer vectors; drive another client
//! implementation through the model's traces.
//!
//! ```text
//! sotto-conformance vectors [DIR]            check DIR (default: vectors/) and print a per-case table
//! sotto-conformance generate-vectors [DIR]   write DIR/<area>-new.json (default: vectors/)
//! sotto-conformance drive --adapter CMD [--traces DIR] [--broker embedded|mosquitto|both] [--json FILE] [--charts DIR]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use sotto_conformance::drive::{self, DriveOptions};
use sotto_conformance::replay::{AdapterCommand, Broker};
use sotto_conformance::vectors;

const USAGE: &str = "usage: sotto-conformance vectors [DIR] | generate-vectors [DIR] | drive --adapter CMD [...]\n\
  vectors [DIR]           check every <area>.json in DIR (default: vectors/) against sotto-core\n\
  generate-vectors [DIR]  write <area>-new.json into DIR (default: vectors/); diff them with the committed files\n\
  drive --adapter CMD     drive the client behind the adapter CMD (run by sh -c; docs/adapter.md) through\n\
                          every trace against the real server, comparing its state with the model's\n\
                          after every step; exit 0 only on PASS\n\
    --traces DIR          the model's traces (default: traces/default)\n\
    --broker B            embedded (default), mosquitto, or both\n\
    --json FILE           also write the report as JSON\n\
    --charts DIR          also write each trace as a message sequence chart (SVG) beside its steps (text)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = |i: usize| PathBuf::from(args.get(i).map_or("vectors", String::as_str));
    match args.first().map(String::as_str) {
        Some("vectors") => {
            let reports = vectors::check_dir(&dir(1));
            print!("{}", vectors::render(&reports));
            if reports.iter().any(|r| r.result.is_err()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Some("generate-vectors") => match vectors::generate_dir(&dir(1)) {
            Ok(paths) => {
                for p in paths {
                    println!("wrote {}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot write vectors: {e}");
                ExitCode::FAILURE
            }
        },
        Some("drive") => match parse_drive(&args[1..]) {
            Ok((opts, json)) => drive_main(opts, json),
            Err(e) => {
                eprintln!("error: {e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The options of `drive`, and where its JSON goes.
fn parse_drive(args: &[String]) -> Result<(DriveOptions, Option<PathBuf>), String> {
    let mut adapter = None;
    let mut traces = PathBuf::from("traces/default");
    let mut brokers = vec![Broker::Embedded];
    let mut json = None;
    let mut charts = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--adapter" => adapter = Some(AdapterCommand(value()?)),
            "--traces" => traces = PathBuf::from(value()?),
            "--json" => json = Some(PathBuf::from(value()?)),
            "--charts" => charts = Some(PathBuf::from(value()?)),
            "--broker" => {
                brokers = match value()?.as_str() {
                    "embedded" => vec![Broker::Embedded],
                    "mosquitto" => vec![Broker::Mosquitto],
                    "both" => Broker::ALL.to_vec(),
                    other => {
                        return Err(format!(
                            "--broker {other}: drive runs on `embedded`, `mosquitto` or `both` \
                             (a NATS cluster: sotto check --broker nats)"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let adapter = adapter.ok_or("drive needs --adapter CMD (e.g. target/release/sotto-adapter)")?;
    if adapter.0.trim().is_empty() {
        return Err("--adapter is empty".into());
    }
    Ok((
        DriveOptions {
            adapter,
            traces,
            brokers,
            charts,
        },
        json,
    ))
}

fn drive_main(opts: DriveOptions, json: Option<PathBuf>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(drive::run(&opts)) {
        Ok(report) => {
            print!("{}", report.render());
            if let Some(path) = json {
                if let Err(e) = std::fs::write(&path, report.to_json()) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the drive could not run: {e}");
            ExitCode::FAILURE
        }
    }
}
