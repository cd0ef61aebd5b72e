//! Stopping a child process: SIGTERM, a bounded wait, then SIGKILL. Used for Mosquitto
//! ([`crate::broker::mosquitto::MosquittoProcess`]) and by the command line for `sotto serve`
//! children (the soak test, the integration tests).

use std::io;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often the wait looks at the child.
const POLL: Duration = Duration::from_millis(20);

/// How a child ended under [`terminate`] or [`terminate_blocking`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited by itself within the wait (after SIGTERM, or before it).
    Exited(ExitStatus),
    /// It was still running after the wait and was killed (SIGKILL) and reaped.
    Killed,
}

/// Sends `signal` (a name such as `TERM` or `KILL`) to `pid` with the system's `kill`. A process
/// that is already gone is not an error.
pub fn signal(pid: u32, signal: &str) -> io::Result<()> {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(drop)
}

/// SIGTERM, then waits up to `wait` for the child to exit (polling without blocking the async
/// runtime); kills and reaps it if it has not.
pub async fn terminate(child: &mut Child, wait: Duration) -> io::Result<Stopped> {
    let deadline = begin(child, wait)?;
    loop {
        if let Some(stopped) = poll(child, deadline)? {
            return Ok(stopped);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`terminate`] for synchronous code (a `Drop`, a test guard): sleeps the thread between polls.
pub fn terminate_blocking(child: &mut Child, wait: Duration) -> io::Result<Stopped> {
    let deadline = begin(child, wait)?;
    loop {
        if let Some(stopped) = poll(child, deadline)? {
            return Ok(stopped);
        }
        std::thread::sleep(POLL);
    }
}

/// Sends SIGTERM unless the child has already exited; the deadline of the wait.
fn begin(child: &mut Child, wait: Duration) -> io::Result<Instant> {
    if child.try_wait()?.is_none() {
        signal(child.id(), "TERM")?;
    }
    Ok(Instant::now() + wait)
}

/// The end, once the child has exited (its status is kept once reaped) or the deadline passed
/// (killed and reaped).
fn poll(child: &mut Child, deadline: Instant) -> io::Result<Option<Stopped>> {
    if let Some(status) = child.try_wait()? {
        return Ok(Some(Stopped::Exited(status)));
    }
    if Instant::now() < deadline {
        return Ok(None);
    }
    // A child that exited since the last look makes `kill` fail; the wait reaps it either way.
    let _ = child.kill();
    child.wait()?;
    Ok(Some(Stopped::Killed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// Starts `sh -c script` and waits until it has written something or closed its output, so
    /// that the script's own set-up (a trap) is in place before it is signalled.
    fn spawn_ready(script: &str) -> Child {
        let mut child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh");
        let mut first = [0u8; 1];
        let _ = child.stdout.take().expect("stdout").read(&mut first);
        child
    }

    #[tokio::test]
    async fn a_child_that_honours_sigterm_exits() {
        let mut child = spawn_ready("echo up; exec sleep 30");
        let stopped = terminate(&mut child, Duration::from_secs(10))
            .await
            .expect("terminate");
        // Ended by SIGTERM itself (no exit code), not by the SIGKILL fallback.
        assert!(
            matches!(stopped, Stopped::Exited(s) if s.code().is_none()),
            "{stopped:?}"
        );
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed_after_the_wait() {
        // An ignored signal stays ignored across `exec`.
        let mut child = spawn_ready("trap '' TERM; echo up; exec sleep 30");
        let stopped = terminate_blocking(&mut child, Duration::from_millis(300)).expect("stop");
        assert_eq!(stopped, Stopped::Killed);
        assert!(child.try_wait().expect("reaped").is_some());
    }

    #[test]
    fn a_child_that_already_exited_keeps_its_status() {
        // Its output closes as it exits; a SIGTERM that arrives while it exits changes nothing.
        let mut child = spawn_ready("exit 3");
        let stopped = terminate_blocking(&mut child, Duration::from_secs(10)).expect("stop");
        assert!(
            matches!(stopped, Stopped::Exited(s) if s.code() == Some(3)),
            "{stopped:?}"
        );
    }
}
