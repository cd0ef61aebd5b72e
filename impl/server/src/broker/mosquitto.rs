//! The Mosquitto profile: the same rules (TLS-1, BROKER-1..4) expressed as a Mosquitto 2.0
//! configuration, for deployments that run an external broker.
//!
//! ```text
//!  <dir>/mosquitto.conf  listener on loopback, mTLS (require_certificate, CN = username = client id)
//!  <dir>/acl             pattern read i/%u, pattern write i/+
//!  <dir>/ca.pem server.pem server.key (0600)   from ca::Pki
//!  <dir>/data/           persistence: queued messages survive a restart (unlike the embedded broker)
//! ```
//!
//! [`InternalMosquitto`] is the other way to use Mosquitto: as the internal broker *behind* the
//! authorizing front ([`super::front::Front`]), in place of the embedded broker, on a plain
//! loopback listener (see its documentation for what that listener may and may not be used for).
//!
//! Differences from the embedded front (documented by the conformance work):
//! - BROKER-1: `use_username_as_clientid` replaces the client id with the certificate CN instead
//!   of refusing a foreign one; a session takeover is impossible either way.
//! - BROKER-3: the ACL allows `i/+`, so the 16-character form of the user id is not checked;
//!   an oversize packet closes the connection (`max_packet_size`); retain closes it too
//!   (`retain_available false`); a QoS 1 publish denied by the ACL is PUBACKed and dropped.
//! - BROKER-5: not met. An inbox takes up to 1,000,000 envelopes; beyond that Mosquitto drops
//!   what comes while acknowledging it to the sender.
//! - BROKER-6: not met. Clients publish under their own client id, and Mosquitto's persistence
//!   file keeps each queued message's source client id: a sender -> recipient link on disk until
//!   delivery. Deployments use Mosquitto behind the front ([`InternalMosquitto`]), which
//!   `sotto serve --broker mosquitto` starts; this profile is for `--mosquitto-direct` and
//!   `--mosquitto-external` only, which say so when they start.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use super::front::Upstream;
use super::port::PortReservation;
use super::{BrokerError, InboxLimits, random_secret};
use crate::ca::{self, Pki};
use sotto_wire::filter::{INBOX_PREFIX, KEEP_ALIVE_MAX, MAX_ENVELOPE, USER_ID_LEN};

/// `max_packet_size`, as Mosquitto 2.0 counts it (remaining length + 1, the length varint left
/// out): 1 + topic `i/<user id>` (2 + 18) + packet id (2) + a LIM-1 payload = 8,215. A PUBLISH
/// with 8,193 payload bytes to an inbox is one byte over and closes the connection.
pub const MAX_PACKET_SIZE: usize = 1 + 2 + INBOX_PREFIX.len() + USER_ID_LEN + 2 + MAX_ENVELOPE;
/// Seconds between two writes of the persistence file: how long an acknowledged envelope can
/// outlive its PUBACK on disk (Req6; in Mosquitto's memory it goes at the PUBACK).
pub const AUTOSAVE_INTERVAL_S: u64 = 2;
/// Largest keep-alive, seconds (same as the front).
pub const MAX_KEEPALIVE: u16 = KEEP_ALIVE_MAX;
/// How long [`MosquittoProcess::spawn`] waits for the port.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`MosquittoProcess::stop`] waits after SIGTERM before killing.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A written Mosquitto configuration.
#[derive(Debug, Clone)]
pub struct MosquittoProfile {
    dir: PathBuf,
    listen: SocketAddr,
    /// Holds a port picked by [`MosquittoProfile::write`] until Mosquitto and every process
    /// spawned from this profile are gone (see [`super::port`]).
    reserved: Option<Arc<PortReservation>>,
}

impl MosquittoProfile {
    /// Writes `mosquitto.conf`, `acl` and the certificates of `pki` into `dir`, for a listener on
    /// `listen` (port 0: a free port is picked now and held for this profile's processes).
    pub fn write(
        pki: &Pki,
        dir: &Path,
        listen: SocketAddr,
    ) -> Result<MosquittoProfile, BrokerError> {
        let reserved = if listen.port() == 0 {
            Some(Arc::new(PortReservation::new(listen)?))
        } else {
            None
        };
        let listen = reserved.as_ref().map_or(listen, |r| r.addr());
        crate::private::private_dir(dir)?;
        crate::private::private_dir(&dir.join("data"))?;
        fs::write(dir.join("ca.pem"), pki.ca_pem())?;
        fs::write(dir.join("server.pem"), pki.server_cert_pem())?;
        ca::write_private(&dir.join("server.key"), pki.server_key_pem())?;
        fs::write(dir.join("acl"), acl())?;
        let conf_path = dir.join("mosquitto.conf");
        fs::write(&conf_path, "")?;
        let as_root = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&conf_path)?.uid() == 0
        };
        fs::write(&conf_path, config(dir, listen, as_root))?;
        Ok(MosquittoProfile {
            dir: dir.to_owned(),
            listen,
            reserved,
        })
    }

    /// The configuration file.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("mosquitto.conf")
    }

    /// The listener address.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Mosquitto's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("mosquitto.log")
    }

    /// The directory with the configuration, the ACL, the log and `data/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Mosquitto's persistence file (`data/mosquitto.db`; written on a graceful stop and every
    /// autosave interval).
    pub fn persistence_file(&self) -> PathBuf {
        self.dir.join("data").join("mosquitto.db")
    }
}

/// The ACL: read only the own inbox (BROKER-2), write only inbox topics (BROKER-3).
pub fn acl() -> String {
    format!(
        "# Sotto: BROKER-2, BROKER-3\npattern read {INBOX_PREFIX}%u\npattern write {INBOX_PREFIX}+\n"
    )
}

/// The `mosquitto.conf` text. `as_root`: keep running as root (otherwise Mosquitto started as root
/// switches to the `mosquitto` user, which cannot read a private temporary directory).
pub fn config(dir: &Path, listen: SocketAddr, as_root: bool) -> String {
    let d = dir.display();
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Sotto message service, Mosquitto profile (TLS-1, BROKER-1..4)"
    );
    if as_root {
        let _ = writeln!(c, "user root");
    }
    let _ = writeln!(c, "per_listener_settings false");
    let _ = writeln!(c, "allow_anonymous false");
    let _ = writeln!(c, "acl_file {d}/acl");
    let _ = writeln!(c, "persistence true");
    let _ = writeln!(c, "persistence_location {d}/data/");
    let _ = writeln!(c, "autosave_interval {AUTOSAVE_INTERVAL_S}");
    let _ = writeln!(c, "max_packet_size {MAX_PACKET_SIZE}");
    // Mosquitto drops what comes beyond this bound and still acknowledges it to the sender
    // (silent loss), so it is set far above any real inbox (Debian's 2.0.11 mishandles 0,
    // "no bound"). Bounded inboxes that refuse (BROKER-5) need the front: `internal_config`.
    let _ = writeln!(c, "max_queued_messages 1000000");
    let _ = writeln!(c, "max_queued_bytes 0");
    let _ = writeln!(c, "queue_qos0_messages false");
    let _ = writeln!(c, "retain_available false");
    let _ = writeln!(c, "max_keepalive {MAX_KEEPALIVE}");
    let _ = writeln!(c, "log_dest file {d}/mosquitto.log");
    // Errors and warnings only, no connection records: the log names no user and no address.
    let _ = writeln!(c, "log_type error");
    let _ = writeln!(c, "log_type warning");
    let _ = writeln!(c, "connection_messages false");
    let _ = writeln!(c);
    let _ = writeln!(c, "listener {} {}", listen.port(), listen.ip());
    let _ = writeln!(c, "cafile {d}/ca.pem");
    let _ = writeln!(c, "certfile {d}/server.pem");
    let _ = writeln!(c, "keyfile {d}/server.key");
    let _ = writeln!(c, "tls_version tlsv1.3");
    let _ = writeln!(c, "require_certificate true");
    let _ = writeln!(c, "use_identity_as_username true");
    let _ = writeln!(c, "use_username_as_clientid true");
    // Listener options: placed before `listener` they would open a default listener on 1883.
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
    addr: SocketAddr,
    _reserved: Option<Arc<PortReservation>>,
}

impl MosquittoProcess {
    /// Starts Mosquitto with `profile` and waits until its port accepts connections.
    pub async fn spawn(profile: &MosquittoProfile) -> Result<MosquittoProcess, BrokerError> {
        let stderr = fs::File::create(profile.dir.join("mosquitto.stderr"))?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(profile.conf_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(BrokerError::MosquittoMissing)?;
        let mut process = MosquittoProcess {
            child,
            addr: profile.addr(),
            _reserved: profile.reserved.clone(),
        };
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = process.child.try_wait()? {
                let log = fs::read_to_string(profile.dir.join("mosquitto.stderr"))
                    .unwrap_or_default()
                    + &fs::read_to_string(profile.log_path()).unwrap_or_default();
                return Err(BrokerError::MosquittoExited {
                    status: status.to_string(),
                    log,
                });
            }
            if tokio::net::TcpStream::connect(process.addr).await.is_ok() {
                tracing::info!(addr = %process.addr, "mosquitto ready");
                return Ok(process);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(BrokerError::NotReady(process.addr));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The listener address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
    /// Its connections are closed by the kernel.
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

/// Mosquitto's `max_inflight_messages` behind the front (QoS 1 messages in flight to one client).
pub const INTERNAL_MAX_INFLIGHT: usize = 100;

/// The `mosquitto.conf` text of [`InternalMosquitto`]: one plain listener on `listen` (which must
/// be a loopback address), anonymous connections allowed, the same ACL and persistence as
/// [`config`]. `as_root`: as in [`config`].
pub fn internal_config(
    dir: &Path,
    listen: SocketAddr,
    as_root: bool,
    limits: InboxLimits,
) -> String {
    let d = dir.display();
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# Sotto message service: Mosquitto behind the authorizing front (BROKER-2..4)"
    );
    let _ = writeln!(
        c,
        "# Plain loopback listener, no password file: only the front may connect (see InternalMosquitto)."
    );
    if as_root {
        let _ = writeln!(c, "user root");
    }
    let _ = writeln!(c, "per_listener_settings false");
    let _ = writeln!(c, "allow_anonymous true");
    let _ = writeln!(c, "acl_file {d}/acl");
    let _ = writeln!(c, "persistence true");
    let _ = writeln!(c, "persistence_location {d}/data/");
    let _ = writeln!(c, "autosave_interval {AUTOSAVE_INTERVAL_S}");
    let _ = writeln!(c, "max_inflight_messages {INTERNAL_MAX_INFLIGHT}");
    // A fuse behind the front's ledger (BROKER-5), which refuses at the limits themselves.
    let _ = writeln!(
        c,
        "max_queued_messages {}",
        limits.max_envelopes.saturating_mul(2)
    );
    let _ = writeln!(c, "max_queued_bytes {}", limits.max_bytes.saturating_mul(2));
    let _ = writeln!(c, "queue_qos0_messages false");
    let _ = writeln!(c, "retain_available false");
    let _ = writeln!(c, "max_keepalive {MAX_KEEPALIVE}");
    let _ = writeln!(c, "log_dest file {d}/mosquitto.log");
    // Errors and warnings only, no connection records: the log names no user and no address.
    let _ = writeln!(c, "log_type error");
    let _ = writeln!(c, "log_type warning");
    let _ = writeln!(c, "connection_messages false");
    let _ = writeln!(c);
    let _ = writeln!(c, "listener {} {}", listen.port(), listen.ip());
    // Listener options: placed before `listener` they would open a default listener on 1883.
    let _ = writeln!(c, "max_qos 1");
    c
}

/// Mosquitto as the internal broker behind the front: a child process with a **plain** listener
/// on `127.0.0.1:<free port>`, persistence in its own data directory, the profile's ACL
/// ([`acl`]: `pattern read i/%u`, `pattern write i/+`), `max_inflight_messages`
/// [`INTERNAL_MAX_INFLIGHT`], and queue limits twice the front's inbox limits (a fuse: the
/// front's ledger refuses first, BROKER-5).
///
/// ```text
///  device --mTLS (CN = user id)--> front --filter--> mosquitto (127.0.0.1:<internal>, plain)
///                                    CONNECT: client id = username = user id, password = secret
/// ```
///
/// **For use behind the front only.** The listener has `allow_anonymous true` and no password
/// file: Mosquitto ignores the front's password and takes the username as given, and the ACL's
/// `%u` is that username. Any process on the same host that can reach the loopback port can
/// therefore connect as any user; the listener is bound to loopback only, and this mode is meant
/// for a single-tenant machine (tests, the conformance wiretap, a demo). Deployments that face
/// clients use the TLS profile ([`MosquittoProfile`]).
///
/// Dropping it kills the child process (without the graceful stop of
/// [`InternalMosquitto::stop`], so queued messages since the last autosave may be lost).
#[derive(Debug)]
pub struct InternalMosquitto {
    profile: MosquittoProfile,
    secret: Arc<str>,
    process: Option<MosquittoProcess>,
}

impl InternalMosquitto {
    /// Writes the configuration and the ACL into `dir` (created if missing), picks a free
    /// loopback port and starts Mosquitto; returns once the port accepts connections.
    pub async fn start(dir: &Path, limits: InboxLimits) -> Result<InternalMosquitto, BrokerError> {
        crate::private::private_dir(dir)?;
        crate::private::private_dir(&dir.join("data"))?;
        let reserved = PortReservation::loopback()?;
        let listen = reserved.addr();
        fs::write(dir.join("acl"), acl())?;
        let conf_path = dir.join("mosquitto.conf");
        fs::write(&conf_path, "")?;
        let as_root = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&conf_path)?.uid() == 0
        };
        fs::write(&conf_path, internal_config(dir, listen, as_root, limits))?;
        let profile = MosquittoProfile {
            dir: dir.to_owned(),
            listen,
            reserved: Some(Arc::new(reserved)),
        };
        let process = MosquittoProcess::spawn(&profile).await?;
        Ok(InternalMosquitto {
            profile,
            secret: random_secret()?.into(),
            process: Some(process),
        })
    }

    /// Where the front connects. The secret is random per instance and sent as the CONNECT
    /// password; this listener does not check it (see the type's documentation).
    pub fn upstream(&self) -> Upstream {
        Upstream {
            addr: self.profile.addr(),
            secret: self.secret.clone(),
        }
    }

    /// The listener address (plain MQTT, loopback).
    pub fn addr(&self) -> SocketAddr {
        self.profile.addr()
    }

    /// The directory with the configuration, the ACL, the log and `data/`.
    pub fn dir(&self) -> &Path {
        &self.profile.dir
    }

    /// Mosquitto's persistence file (`data/mosquitto.db`; written on a graceful stop and every
    /// autosave interval).
    pub fn persistence_file(&self) -> PathBuf {
        self.profile.persistence_file()
    }

    /// Whether the child process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Stops Mosquitto gracefully (SIGTERM: it writes its persistence file; killed after 10 s).
    /// Relayed connections close; the front answers new ones only once the port is back.
    pub async fn stop(&mut self) -> Result<(), BrokerError> {
        match self.process.take() {
            Some(process) => process.stop().await,
            None => Ok(()),
        }
    }

    /// Kills Mosquitto at once (SIGKILL, as a crash would: what changed since the last autosave
    /// is lost) and starts it again on the same port.
    pub async fn kill_and_restart(&mut self) -> Result<(), BrokerError> {
        if let Some(process) = self.process.take() {
            process.kill()?;
        }
        self.process = Some(MosquittoProcess::spawn(&self.profile).await?);
        Ok(())
    }

    /// Stops Mosquitto, deletes the persistence file first when `keep_queues` is false (every
    /// session and queued message is lost), and starts it again on the same port.
    pub async fn restart(&mut self, keep_queues: bool) -> Result<(), BrokerError> {
        self.stop().await?;
        if !keep_queues {
            match fs::remove_file(self.persistence_file()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.process = Some(MosquittoProcess::spawn(&self.profile).await?);
        Ok(())
    }
}
