//! `sotto serve` as a child process, for whoever measures or breaks the service from outside the
//! process that runs it: `sotto soak` and the command-line tests. It starts the binary, reads its
//! start-up lines ([`crate::banner`]) until `ready` within a deadline, and stops it (SIGTERM, a
//! bounded wait, SIGKILL) or kills it as a crash would.
//!
//! ```text
//!  ServeChild::start(exe, ["--listen", "127.0.0.1:0", ...]) ── sotto serve ... (stdout piped)
//!      a thread reads stdout line by line ──> Banner: URL, CA file, fingerprint ── `ready`
//! ```

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sotto_server::process::{self, Stopped};

use crate::banner::Banner;

/// Why `sotto serve` did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeChildError {
    /// The binary could not be started.
    #[error("cannot start `sotto serve`: {0}")]
    Spawn(#[source] std::io::Error),
    /// It ended before printing `ready`.
    #[error("`sotto serve` ended before it was ready")]
    Ended,
    /// It did not print `ready` in time (it was killed).
    #[error("`sotto serve` was not ready within {0:?}")]
    NotReady(Duration),
    /// A start-up line is missing (the value named).
    #[error("`sotto serve` printed no {0}")]
    Banner(&'static str),
}

/// A running `sotto serve`; killed (SIGKILL) when dropped unless stopped before.
#[derive(Debug)]
pub struct ServeChild {
    child: Child,
    url: String,
    ca_file: PathBuf,
    fingerprint: String,
    /// The rest of stdout (kept so the child never blocks on a full pipe).
    lines: mpsc::Receiver<String>,
}

impl ServeChild {
    /// Runs `exe serve <args>` with `stderr` and waits, at most `wait`, for its `ready` line.
    pub fn start<I, S>(
        exe: &Path,
        args: I,
        stderr: Stdio,
        wait: Duration,
    ) -> Result<ServeChild, ServeChildError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(exe)
            .arg("serve")
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(ServeChildError::Spawn)?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ServeChildError::Ended);
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut started = ServeChild {
            child,
            url: String::new(),
            ca_file: PathBuf::new(),
            fingerprint: String::new(),
            lines: rx,
        };
        let deadline = Instant::now() + wait;
        let mut banner = Banner::default();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match started.lines.recv_timeout(left) {
                Ok(line) if banner.read_line(&line) => break,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    started.kill();
                    return Err(ServeChildError::NotReady(wait));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    started.kill();
                    return Err(ServeChildError::Ended);
                }
            }
        }
        started.url = banner
            .membership_url
            .ok_or(ServeChildError::Banner("membership URL"))?;
        started.ca_file = banner.ca_file.ok_or(ServeChildError::Banner("CA file"))?;
        started.fingerprint = banner
            .ca_fingerprint
            .ok_or(ServeChildError::Banner("CA fingerprint"))?;
        Ok(started)
    }

    /// The membership service's URL, as printed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA file, as printed.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA certificate's SHA-256 fingerprint, as printed.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after `wait`, and reaps it (blocking).
    pub fn terminate(&mut self, wait: Duration) -> std::io::Result<Stopped> {
        process::terminate_blocking(&mut self.child, wait)
    }

    /// [`ServeChild::terminate`] without blocking the runtime's thread.
    pub async fn terminate_async(&mut self, wait: Duration) -> std::io::Result<Stopped> {
        process::terminate(&mut self.child, wait).await
    }

    /// SIGKILL now and reap it: the process dies without any cleanup (a crash).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
