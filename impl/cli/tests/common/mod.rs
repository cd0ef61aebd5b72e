//! Shared by the integration tests of the built `sotto` binary: `sotto serve` in the background,
//! person commands as separate processes with their own stores, free loopback ports, reading a
//! store directly. Every wait is bounded and every child is killed when its guard drops.

// Each test crate uses its own subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sotto_server::broker::port::PortReservation;

use sotto::serve_child::ServeChild;
use sotto_store::{Chat, Store, StoredMessage};

pub const SOTTO: &str = env!("CARGO_BIN_EXE_sotto");
/// Upper bound of one person command (signup connects once, send and inbox sync once).
pub const COMMAND_WAIT: Duration = Duration::from_secs(90);
/// Upper bound of the server's start.
pub const SERVE_WAIT: Duration = Duration::from_secs(60);
/// Upper bound of a graceful stop (SIGTERM) before SIGKILL.
pub const STOP_WAIT: Duration = Duration::from_secs(10);
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A child process killed on drop: SIGKILL, or for a graceful guard SIGTERM first (so that
/// `sotto serve` stops the Mosquitto it started) and SIGKILL after [`STOP_WAIT`].
pub struct Guard {
    pub child: Child,
    graceful: bool,
}

impl Guard {
    /// Killed with SIGKILL on drop.
    pub fn new(child: Child) -> Guard {
        Guard {
            child,
            graceful: false,
        }
    }

    /// Stopped with SIGTERM on drop (SIGKILL if it does not exit in time).
    pub fn graceful(child: Child) -> Guard {
        Guard {
            child,
            graceful: true,
        }
    }

    /// SIGKILL now and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then SIGKILL after [`STOP_WAIT`].
    pub fn terminate(&mut self) {
        let _ = sotto_server::process::terminate_blocking(&mut self.child, STOP_WAIT);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.graceful {
            self.terminate();
        } else {
            self.kill();
        }
    }
}

/// A free loopback port, held (without listening) for as long as the reservation lives, so that
/// `sotto serve` can bind it, and bind it again after a restart, while no other socket gets it.
pub fn free_addr() -> PortReservation {
    PortReservation::loopback().expect("reserve a free port")
}

/// `sotto serve` in the background ([`ServeChild`]); stopped gracefully (SIGTERM, so that it stops
/// the Mosquitto it started, then SIGKILL after [`STOP_WAIT`]) when dropped.
pub struct Server {
    child: ServeChild,
    pub url: String,
    pub ca: PathBuf,
    pub fingerprint: String,
    pub data: PathBuf,
}

impl Server {
    /// `sotto serve` with the embedded broker on free loopback ports.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &["--listen", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
    }

    /// `sotto serve` with `broker` on free loopback ports, and `extra` arguments; `None` (after
    /// saying the test is skipped) when that broker is not installed.
    pub fn with_broker(
        data: &Path,
        broker: sotto_server::Broker,
        extra: &[&str],
    ) -> Option<Server> {
        if !broker.is_available() {
            eprintln!("SKIPPED for {broker}: not installed (apt-get install {broker})");
            return None;
        }
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--broker",
            broker.name(),
        ];
        args.extend(extra);
        Some(Server::start_with(data, &args))
    }

    /// `sotto serve <args> --difficulty 2 --data <data>`; waits for `ready`.
    pub fn start_with(data: &Path, args: &[&str]) -> Server {
        Server::start_logging(data, args, Stdio::inherit())
    }

    /// [`Server::start_with`], its stderr (the log) going to `stderr`.
    pub fn start_logging(data: &Path, args: &[&str], stderr: Stdio) -> Server {
        let mut all: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
        all.extend(["--difficulty".into(), "2".into(), "--data".into()]);
        all.push(data.into());
        let child = ServeChild::start(Path::new(SOTTO), all, stderr, SERVE_WAIT)
            .expect("sotto serve prints `ready` in time");
        Server {
            url: child.url().to_owned(),
            ca: child.ca_file().to_owned(),
            fingerprint: child.fingerprint().to_owned(),
            data: data.to_owned(),
            child,
        }
    }

    /// SIGKILL: the process dies without any cleanup (a crash).
    pub fn kill(mut self) {
        self.child.kill();
    }

    /// The CA file as a `&str` argument.
    pub fn ca_arg(&self) -> &str {
        self.ca.to_str().expect("utf-8 path")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.terminate(STOP_WAIT);
    }
}

/// What a finished command printed.
pub struct Output {
    pub ok: bool,
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {} (code {:?})\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.code, self.stdout, self.stderr
        )
    }
}

impl Output {
    /// A failure that says what went wrong: exit code 1 (not a panic's 101, not a signal), every
    /// `needle` on stderr, no panic message and no backtrace.
    pub fn assert_clear_error(&self, needles: &[&str]) {
        assert!(!self.ok, "expected a failure: {self:?}");
        assert_eq!(self.code, Some(1), "a plain error exit: {self:?}");
        let all = format!("{}{}", self.stdout, self.stderr).to_lowercase();
        assert!(
            !all.contains("panicked") && !all.contains("backtrace"),
            "no panic: {self:?}"
        );
        assert!(
            self.stderr.lines().any(|l| l.starts_with("error: ")),
            "an `error:` line: {self:?}"
        );
        for n in needles {
            assert!(self.stderr.contains(n), "{n:?} on stderr: {self:?}");
        }
    }
}

/// A `sotto` person command running in the background.
pub struct Running {
    pub guard: Guard,
    what: String,
    out_path: PathBuf,
    err_path: PathBuf,
}

static OUTPUT_FILES: AtomicU64 = AtomicU64::new(0);

impl Running {
    /// Starts `sotto <args>` on `store` with `passphrase`; its output goes to files in `dir`.
    pub fn spawn(dir: &Path, store: &Path, passphrase: &str, args: &[&str]) -> Running {
        Running::spawn_env(dir, store, passphrase, args, &[])
    }

    /// [`Running::spawn`] with more environment variables.
    pub fn spawn_env(
        dir: &Path,
        store: &Path,
        passphrase: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Running {
        let n = OUTPUT_FILES.fetch_add(1, Ordering::Relaxed);
        let out_path = dir.join(format!("out-{n}"));
        let err_path = dir.join(format!("err-{n}"));
        let child = Command::new(SOTTO)
            .args(args)
            .env("SOTTO_STORE", store)
            .env("SOTTO_PASSPHRASE", passphrase)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .env_remove("RUST_BACKTRACE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .spawn()
            .expect("sotto starts");
        Running {
            guard: Guard::new(child),
            what: format!("sotto {}", args.join(" ")),
            out_path,
            err_path,
        }
    }

    /// The output if the command has finished.
    pub fn try_finish(&mut self) -> Option<Output> {
        let status = self.guard.child.try_wait().expect("wait")?;
        Some(Output {
            ok: status.success(),
            code: status.code(),
            stdout: std::fs::read_to_string(&self.out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.err_path).unwrap_or_default(),
        })
    }

    /// Waits for the end, bounded by [`COMMAND_WAIT`].
    pub fn wait(mut self) -> Output {
        let deadline = Instant::now() + COMMAND_WAIT;
        loop {
            if let Some(out) = self.try_finish() {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "`{}` did not finish within {COMMAND_WAIT:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `sotto serve` on loopback (any free ports, data in `data`) with `args`, expected to stop at
/// once with an error: its stderr (asserted: exit code 1, no panic). No password comes from the
/// environment (`SOTTO_DIRECTORY` and `SOTTO_NATS_PASSWORD` removed).
pub fn serve_error(data: &Path, args: &[&str]) -> String {
    let out = Command::new(SOTTO)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .args(args)
        .env_remove("SOTTO_DIRECTORY")
        .env_remove("SOTTO_NATS_PASSWORD")
        .output()
        .expect("sotto runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "a plain error exit: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Runs `sotto <args>` on `store` with `passphrase`, bounded by [`COMMAND_WAIT`].
pub fn sotto(dir: &Path, store: &Path, passphrase: &str, args: &[&str]) -> Output {
    Running::spawn(dir, store, passphrase, args).wait()
}

/// The user id `sotto whoami` prints.
pub fn user_id(dir: &Path, store: &Path) -> String {
    let out = sotto(dir, store, PASSPHRASE, &["whoami"]);
    assert!(out.ok, "{out:?}");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("user id:"))
        .map(|v| v.trim().to_owned())
        .expect("whoami prints the user id")
}

/// `sotto signup` with the CA file on `server`; returns the user id.
pub fn signup(dir: &Path, store: &Path, server: &Server) -> String {
    let out = sotto(
        dir,
        store,
        PASSPHRASE,
        &["signup", "--server", &server.url, "--ca", server.ca_arg()],
    );
    assert!(out.ok, "{out:?}");
    user_id(dir, store)
}

/// The card URI `sotto card` prints.
pub fn card(dir: &Path, store: &Path) -> String {
    let out = sotto(dir, store, PASSPHRASE, &["card"]);
    assert!(out.ok, "{out:?}");
    out.stdout
        .lines()
        .find(|l| l.starts_with("sotto:"))
        .expect("the card URI")
        .to_owned()
}

/// `sotto add <card of whom>` on `store`: a verified contact.
pub fn add_card(dir: &Path, store: &Path, whom: &Path) -> Output {
    let uri = card(dir, whom);
    sotto(dir, store, PASSPHRASE, &["add", &uri])
}

/// The messages of the conversation with `peer` in the store at `store`, read directly (no
/// network; the store must not be open in a running command).
pub fn stored_messages(store: &Path, peer: &str) -> Vec<StoredMessage> {
    let peer = sotto_core::UserId::parse(peer).expect("a user id");
    let store = Store::open(store, PASSPHRASE.as_bytes()).expect("the store opens");
    store
        .messages_with(&Chat::User(peer))
        .expect("messages listed")
}
