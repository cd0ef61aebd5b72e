//! `sotto-conformance`: check or regenerate the known-answer vectors.
//!
//! ```text
//! sotto-conformance vectors [DIR]            check DIR (default: vectors/) and print a per-case table
//! sotto-conformance generate-vectors [DIR]   write DIR/<area>-new.json (default: vectors/)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use sotto_conformance::vectors;

const USAGE: &str = "usage: sotto-conformance vectors [DIR] | generate-vectors [DIR]\n\
  vectors [DIR]           check every <area>.json in DIR (default: vectors/) against sotto-core\n\
  generate-vectors [DIR]  write <area>-new.json into DIR (default: vectors/); diff them with the committed files";

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
