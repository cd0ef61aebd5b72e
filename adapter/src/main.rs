//! `sotto-adapter`: the reference adapter, `sotto-client` behind the adapter protocol on stdio
//! (JSON lines; `docs/adapter.md`). The conformance runner starts it:
//!
//! ```text
//! sotto-conformance drive --adapter "target/release/sotto-adapter"
//! sotto-adapter --mutation ack-before-commit    (built with --features mutations: a broken client)
//! ```
//!
//! Diagnostics go to stderr; stdout carries only answer lines.

use std::process::ExitCode;

const USAGE: &str = "usage: sotto-adapter [--mutation NAME]\n\
  Serves the adapter protocol (docs/adapter.md) on stdin/stdout for sotto-conformance drive.\n\
  --mutation NAME  turn on one of sotto-core's mutation switches (build with --features mutations)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {}
        ["--mutation", name] => {
            if let Err(e) = mutate(name) {
                eprintln!("sotto-adapter: {e}");
                return ExitCode::from(2);
            }
        }
        ["-h" | "--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sotto-adapter: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let mut adapter = sotto_adapter::reference::Reference::new();
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        sotto_adapter::serve(&mut adapter, stdin, tokio::io::stdout()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sotto-adapter: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(feature = "mutations")]
fn mutate(name: &str) -> Result<(), String> {
    let m = sotto_core::mutation::Mutation::from_name(name)
        .ok_or_else(|| format!("no mutation {name:?}"))?;
    sotto_core::mutation::set(Some(m));
    eprintln!("sotto-adapter: mutation {name} is on: this adapter is broken on purpose");
    Ok(())
}

#[cfg(not(feature = "mutations"))]
fn mutate(name: &str) -> Result<(), String> {
    Err(format!(
        "--mutation {name}: this build has no mutation switches (cargo build -p sotto-adapter --features mutations)"
    ))
}
