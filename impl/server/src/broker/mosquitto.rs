//! Mosquitto as the broker behind the authorizing front: its files, its configuration and its
//! process. The front is the one enforcement point for every broker (TLS-1, BROKER-1..6, the
//! admission limits); Mosquitto faces only the front, never a device.
//!
//! ```text
//!  device --mTLS (CN = user id)--> front --filter--> mosquitto (unix:<dir>/run/mqtt.sock, plain MQTT)
//!                                    CONNECT: client id = username = user id, password = secret
//!
//!  <dir>/                 0700 (0710, group mosquitto, when run as root)
//!    mosquitto.conf acl   0600 (0640, group mosquitto, when run as root)
//!    run/                 0700, Mosquitto's own: mqtt.sock, mosquitto.log, mosquitto.db
//! ```
//!
//! - **The listener** is a Unix socket inside `run/`, which only the service's user (and, when
//!   run as root, the `mosquitto` user) can enter: no other local process reaches the broker
//!   (a loopback TCP port would let any local user connect as anyone, since Mosquitto takes the
//!   front's username as given).
//! - **Not root**: started by root, Mosquitto runs as the system's `mosquitto` user (the Debian
//!   package creates it); without one it refuses to start ([`BrokerError::MosquittoUser`]).
//! - **Limits** (fuses behind the front, which refuses first): queued messages and bytes per
//!   client twice the front's inbox limits (BROKER-5), connections ([`InternalMosquitto::start`]),
//!   packets [`MAX_PACKET_SIZE`], keep-alive [`MAX_KEEPALIVE`], QoS at most 1, no retain.
//! - **Sessions expire** after [`super::SESSION_EXPIRY_DAYS`] days without a connection
//!   (`persistent_client_expiration`): the inbox of a device gone that long is dropped.
//! - **Persistence**: queued envelopes survive a restart (`run/mosquitto.db`, rewritten every
//!   [`AUTOSAVE_INTERVAL_S`] s); the log has errors and warnings only, no connection records.
//!
//! [`InternalMosquitto::start`] runs Mosquitto as a child process; [`InternalMosquitto::external`]
//! only writes the files, for a Mosquitto the operator runs (`mosquitto -c <dir>/mosquitto.conf`,
//! for example under systemd) with the front connecting to its socket.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::front::Upstream;
use super::upstream::InternalAddr;
use super::{BrokerError, InboxLimits, SESSION_EXPIRY_DAYS, random_secret};
use crate::private;
use sotto_wire::filter::{INBOX_PREFIX, KEEP_ALIVE_MAX, MAX_ENVELOPE, USER_ID_LEN};

/// `max_packet_size`, as Mosquitto 2.0 counts it (remaining length + 1, the length varint left
/// out): 1 + topic `i/<user id>` (2 + 18) + packet id (2) + a LIM-1 payload = 8,215. The front
/// refuses larger PUBLISHes first; this is a fuse.
pub const MAX_PACKET_SIZE: usize = 1 + 2 + INBOX_PREFIX.len() + USER_ID_LEN + 2 + MAX_ENVELOPE;
/// Seconds between two writes of the persistence file: how long an acknowledged envelope can
/// outlive its PUBACK on disk (Req6; in Mosquitto's memory it goes at the PUBACK).
pub const AUTOSAVE_INTERVAL_S: u64 = 2;
/// Largest keep-alive, seconds (same as the front, which refuses larger ones and 0).
pub const MAX_KEEPALIVE: u16 = KEEP_ALIVE_MAX;
/// Mosquitto's `max_inflight_messages` (QoS 1 messages in flight to one client).
pub const INTERNAL_MAX_INFLIGHT: usize = 100;
/// The system user Mosquitto runs as when the service runs as root.
pub const MOSQUITTO_USER: &str = "mosquitto";
/// Longest Unix socket path (`sun_path` holds 108 bytes with the final NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long [`MosquittoProcess::spawn`] waits for the socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`MosquittoProcess::stop`] waits after SIGTERM before killing.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The ACL: read only the own inbox (BROKER-2), write only inbox topics (BROKER-3). The front
/// enforces both before a packet gets here.
pub fn acl() -> String {
    format!(
        "# Sotto: BROKER-2, BROKER-3\npattern read {INBOX_PREFIX}%u\npattern write {INBOX_PREFIX}+\n"
    )
}

/// Mosquitto's written files: configuration, ACL and working directory.
#[derive(Debug, Clone)]
pub struct MosquittoFiles {
    dir: PathBuf,
}

impl MosquittoFiles {
    /// Writes `mosquitto.conf` and `acl` into `dir` and prepares `run/` (see the module
    /// documentation), for queues bounded at twice `limits` and at most `max_connections`.
    pub fn write(
        dir: &Path,
        limits: InboxLimits,
        max_connections: usize,
    ) -> Result<MosquittoFiles, BrokerError> {
        let files = MosquittoFiles {
            dir: dir.to_owned(),
        };
        let socket = files.socket_path();
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(BrokerError::SocketPath(socket));
        }
        let run_as = if private::is_root() {
            Some(private::system_user(MOSQUITTO_USER)?.ok_or(BrokerError::MosquittoUser)?)
        } else {
            None
        };
        let text = config(&files, run_as.is_some(), limits, max_connections);
        match run_as {
            Some(user) => {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    private::group_dir(parent, user.gid)?;
                }
                private::group_dir(dir, user.gid)?;
                private::group_file(&files.conf_path(), &text, user.gid)?;
                private::group_file(&dir.join("acl"), &acl(), user.gid)?;
                private::owned_dir(&files.run_dir(), user)?;
            }
            None => {
                private::private_dir(dir)?;
                write_private(&files.conf_path(), &text)?;
                write_private(&dir.join("acl"), &acl())?;
                private::private_dir(&files.run_dir())?;
            }
        }
        Ok(files)
    }

    /// The configuration file.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("mosquitto.conf")
    }

    /// The directory with the configuration, the ACL and `run/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mosquitto's working directory (socket, log, persistence file).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// The Unix socket Mosquitto listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.run_dir().join("mqtt.sock")
    }

    /// Mosquitto's log file.
    pub fn log_path(&self) -> PathBuf {
        self.run_dir().join("mosquitto.log")
    }

    /// Mosquitto's persistence file (written on a graceful stop and every autosave interval).
    pub fn persistence_file(&self) -> PathBuf {
        self.run_dir().join("mosquitto.db")
    }
}

fn write_private(file: &Path, contents: &str) -> std::io::Result<()> {
    private::private_file(file)?;
    fs::write(file, contents)
}

/// The `mosquitto.conf` text (see the module documentation). `drop_root`: run as
/// [`MOSQUITTO_USER`] (the service runs as root).
pub fn config(
    files: &MosquittoFiles,
    drop_root: bool,
    limits: InboxLimits,
    max_connections: usize,
) -> String {
    let d = files.dir.display();
    let run = files.run_dir();
    let run = run.display();
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Sotto message service: Mosquitto behind the authorizing front (BROKER-1..6 at the front)"
    );
    let _ = writeln!(
        c,
        "# A Unix socket only the service's users can reach; the front is its only client."
    );
    if drop_root {
        let _ = writeln!(c, "user {MOSQUITTO_USER}");
    }
    let _ = writeln!(c, "per_listener_settings false");
    let _ = writeln!(c, "allow_anonymous true");
    let _ = writeln!(c, "acl_file {d}/acl");
    let _ = writeln!(c, "persistence true");
    let _ = writeln!(c, "persistence_location {run}/");
    let _ = writeln!(c, "autosave_interval {AUTOSAVE_INTERVAL_S}");
    let _ = writeln!(c, "persistent_client_expiration {SESSION_EXPIRY_DAYS}d");
    let _ = writeln!(c, "max_inflight_messages {INTERNAL_MAX_INFLIGHT}");
    // Fuses behind the front's ledger (BROKER-5), which refuses at the limits themselves.
    let _ = writeln!(
        c,
        "max_queued_messages {}",
        limits.max_envelopes.saturating_mul(2)
    );
    let _ = writeln!(c, "max_queued_bytes {}", limits.max_bytes.saturating_mul(2));
    let _ = writeln!(c, "queue_qos0_messages false");
    let _ = writeln!(c, "retain_available false");
    let _ = writeln!(c, "max_packet_size {MAX_PACKET_SIZE}");
    let _ = writeln!(c, "max_keepalive {MAX_KEEPALIVE}");
    let _ = writeln!(c, "log_dest file {run}/mosquitto.log");
    // Errors and warnings only, no connection records: the log names no user and no address.
    let _ = writeln!(c, "log_type error");
    let _ = writeln!(c, "log_type warning");
    let _ = writeln!(c, "connection_messages false");
    let _ = writeln!(c);
    let _ = writeln!(c, "listener 0 {}", files.socket_path().display());
    // Listener options: placed before `listener` they would open a default listener on 1883.
    let _ = writeln!(c, "max_connections {max_connections}");
    let _ = writeln!(c, "max_qos 1");
    c
}

/// Whether a `mosquitto` binary is on the PATH.
pub fn mosquitto_available() -> bool {
    Command::new("mosquitto")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A `mosquitto -c <conf>` child process, killed on drop.
#[derive(Debug)]
pub struct MosquittoProcess {
    child: Child,
}

impl MosquittoProcess {
    /// Starts Mosquitto with `files` and waits until its socket accepts connections.
    pub async fn spawn(files: &MosquittoFiles) -> Result<MosquittoProcess, BrokerError> {
        let socket = files.socket_path();
        // A socket left by a killed Mosquitto would answer "refused" until the new one binds.
        match fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let stderr_path = files.dir.join("mosquitto.stderr");
        let stderr = fs::File::create(&stderr_path)?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(files.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(BrokerError::MosquittoMissing)?;
        let mut process = MosquittoProcess { child };
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.child.try_wait()? {
                let log = fs::read_to_string(&stderr_path).unwrap_or_default()
                    + &fs::read_to_string(files.log_path()).unwrap_or_default();
                return Err(BrokerError::MosquittoExited {
                    status: status.to_string(),
                    log,
                });
            }
            if tokio::net::UnixStream::connect(&socket).await.is_ok() {
                tracing::info!("mosquitto ready");
                return Ok(process);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(BrokerError::NotReady(InternalAddr::Unix(socket)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops Mosquitto gracefully (SIGTERM: it writes its persistence file), killing it after
    /// 10 s.
    pub async fn stop(mut self) -> Result<(), BrokerError> {
        crate::process::terminate(&mut self.child, STOP_WAIT).await?;
        Ok(())
    }

    /// Kills Mosquitto at once (SIGKILL), as a crash would, and reaps it: nothing is written, so
    /// whatever changed since its last autosave (`autosave_interval`) or graceful stop is lost
    /// (queued messages, sessions, subscriptions); the persistence file keeps its older state.
    pub fn kill(mut self) -> Result<(), BrokerError> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
        }
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for MosquittoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Mosquitto behind the front (see the module documentation): its files, the secret the front
/// sends, and the child process when the service runs it.
///
/// Dropping it kills the child process (without the graceful stop of
/// [`InternalMosquitto::stop`], so queued messages since the last autosave may be lost).
#[derive(Debug)]
pub struct InternalMosquitto {
    files: MosquittoFiles,
    secret: Arc<str>,
    process: Option<MosquittoProcess>,
    managed: bool,
}

impl InternalMosquitto {
    /// Writes the files into `dir` (created if missing; see [`MosquittoFiles::write`]) and starts
    /// Mosquitto; returns once its socket accepts connections.
    pub async fn start(
        dir: &Path,
        limits: InboxLimits,
        max_connections: usize,
    ) -> Result<InternalMosquitto, BrokerError> {
        let files = MosquittoFiles::write(dir, limits, max_connections)?;
        let process = MosquittoProcess::spawn(&files).await?;
        Ok(InternalMosquitto {
            files,
            secret: random_secret()?.into(),
            process: Some(process),
            managed: true,
        })
    }

    /// Writes the files into `dir` for a Mosquitto the operator runs
    /// (`mosquitto -c <dir>/mosquitto.conf`); the front connects to its socket once it is there.
    /// Stopping or restarting it is the operator's business ([`BrokerError::NotManaged`]).
    pub fn external(
        dir: &Path,
        limits: InboxLimits,
        max_connections: usize,
    ) -> Result<InternalMosquitto, BrokerError> {
        Ok(InternalMosquitto {
            files: MosquittoFiles::write(dir, limits, max_connections)?,
            secret: random_secret()?.into(),
            process: None,
            managed: false,
        })
    }

    /// Where the front connects. The secret is random per instance and sent as the CONNECT
    /// password; Mosquitto does not check it: the socket's directory keeps everyone else out.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            addr: InternalAddr::Unix(self.files.socket_path()),
            secret: self.secret.clone(),
            user: None,
            engine: None,
        }
    }

    /// Its files.
    pub fn files(&self) -> &MosquittoFiles {
        &self.files
    }

    /// The directory with the configuration, the ACL and `run/`.
    pub fn dir(&self) -> &Path {
        self.files.dir()
    }

    /// Mosquitto's persistence file (`run/mosquitto.db`; written on a graceful stop and every
    /// autosave interval).
    pub fn persistence_file(&self) -> PathBuf {
        self.files.persistence_file()
    }

    /// The child process's id, while the service runs Mosquitto.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(MosquittoProcess::pid)
    }

    /// Whether the child process is running (not stopped); false for an external Mosquitto.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    fn managed(&self) -> Result<(), BrokerError> {
        if self.managed {
            Ok(())
        } else {
            Err(BrokerError::NotManaged)
        }
    }

    /// Stops Mosquitto gracefully (SIGTERM: it writes its persistence file; killed after 10 s).
    /// Relayed connections close; the front answers new ones only once the socket is back.
    pub async fn stop(&mut self) -> Result<(), BrokerError> {
        self.managed()?;
        match self.process.take() {
            Some(process) => process.stop().await,
            None => Ok(()),
        }
    }

    /// Kills Mosquitto at once (SIGKILL, as a crash would: what changed since the last autosave
    /// is lost) and starts it again.
    pub async fn kill_and_restart(&mut self) -> Result<(), BrokerError> {
        self.managed()?;
        if let Some(process) = self.process.take() {
            process.kill()?;
        }
        self.process = Some(MosquittoProcess::spawn(&self.files).await?);
        Ok(())
    }

    /// Starts Mosquitto again if its process has exited by itself (a crash, or a kill from
    /// outside); returns whether it did. What changed since the last autosave is lost, as with
    /// [`InternalMosquitto::kill_and_restart`].
    pub async fn revive(&mut self) -> Result<bool, BrokerError> {
        let exited = match self.process.as_mut() {
            Some(process) => process.child.try_wait()?,
            None => return Ok(false),
        };
        let Some(status) = exited else {
            return Ok(false);
        };
        tracing::warn!(%status, "mosquitto exited; starting it again");
        self.process = None;
        self.process = Some(MosquittoProcess::spawn(&self.files).await?);
        Ok(true)
    }

    /// Stops Mosquitto, deletes the persistence file first when `keep_queues` is false (every
    /// session and queued message is lost), and starts it again.
    pub async fn restart(&mut self, keep_queues: bool) -> Result<(), BrokerError> {
        self.stop().await?;
        if !keep_queues {
            match fs::remove_file(self.persistence_file()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.process = Some(MosquittoProcess::spawn(&self.files).await?);
        Ok(())
    }
}
