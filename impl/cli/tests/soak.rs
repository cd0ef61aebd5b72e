//! The load test, small: `sotto soak` through the embedded broker and Mosquitto (when installed)
//! with random disconnects; every message must arrive exactly once and the figures must be
//! printed. The full run is `cargo run --release -p sotto -- soak` (200 clients x 500 messages).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SOTTO: &str = env!("CARGO_BIN_EXE_sotto");
/// The soak's own bound (`--timeout`), and a margin on top for the process.
const SOAK_TIMEOUT_S: u64 = 240;
const WAIT: Duration = Duration::from_secs(SOAK_TIMEOUT_S + 60);

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a finished `sotto soak` printed, and how long it took.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `sotto <args>` with its store files in `dir`, bounded by `wait`.
fn sotto(dir: &std::path::Path, args: &[&str], wait: Duration) -> Run {
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let child = Command::new(SOTTO)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("sotto soak starts");
    let mut guard = Guard(child);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < wait,
            "`sotto {}` did not finish within {wait:?}",
            args.join(" ")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    Run {
        ok: status.success(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        took: started.elapsed(),
    }
}

#[test]
fn a_small_soak_delivers_everything_exactly_once_through_each_broker() {
    let broker = if sotto_server::broker::mosquitto::mosquitto_available() {
        "both"
    } else {
        eprintln!("mosquitto is not installed: the soak runs through the embedded broker only");
        "embedded"
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let timeout = SOAK_TIMEOUT_S.to_string();
    #[rustfmt::skip]
    let args = [
        "soak", "--clients", "8", "--messages", "15", "--peers", "2", "--window", "4",
        "--disconnect", "0.1", "--offline", "300ms", "--seed", "1", "--broker", broker,
        "--timeout", &timeout,
    ];
    let run = sotto(dir.path(), &args, WAIT);
    let stdout = &run.stdout;
    eprintln!(
        "sotto soak took {:.1} s\n--- stdout\n{stdout}\n--- stderr\n{}",
        run.took.as_secs_f64(),
        run.stderr
    );
    assert!(run.ok, "sotto soak failed");
    let runs = if broker == "both" { 2 } else { 1 };
    for figure in [
        "delivered:   120 of 120 messages, 0 missing, 0 duplicated; 120 receipts",
        "throughput:",
        "latency:     p50",
        "server peak memory:",
        "reconnects:",
    ] {
        assert_eq!(
            stdout.matches(figure).count(),
            runs,
            "{figure:?} once per broker in:\n{stdout}"
        );
    }
    assert!(stdout.contains("soak through the embedded broker"));
    if broker == "both" {
        assert!(stdout.contains("soak through the mosquitto broker"));
        assert!(stdout.contains("+ mosquitto"), "both processes measured");
    }
    assert!(stdout.contains("soak: PASS"), "{stdout}");
    assert!(!stdout.contains("PROBLEM"), "{stdout}");
}

#[test]
fn a_soak_past_its_timeout_fails_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    #[rustfmt::skip]
    let args = [
        "soak", "--clients", "4", "--messages", "5000", "--broker", "embedded", "--timeout", "5",
    ];
    let run = sotto(dir.path(), &args, Duration::from_secs(90));
    assert!(!run.ok, "a timeout must fail: {}", run.stdout);
    assert!(
        run.stderr.contains("the soak failed") && run.stderr.contains("timeout"),
        "{}",
        run.stderr
    );
}
