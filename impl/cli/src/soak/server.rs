//! The server under load: `sotto serve` as a child process, started for one broker and stopped
//! after the run (or killed when dropped), and its peak memory (VmHWM of it and of its Mosquitto
//! child) read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use sotto::serve_child::ServeChild;
use sotto_server::process::{self, Stopped};
use tokio::time::Instant;

use super::{SERVE_WAIT, STOP_WAIT};
use crate::cli::{Broker, NatsArgs};

/// `sotto serve` as a child process ([`ServeChild`]), with its stderr in a file and the pid of
/// its Mosquitto child; stopped (SIGTERM, then killed) when dropped.
pub(super) struct Server {
    child: ServeChild,
    pub(super) url: String,
    pub(super) ca_pem: String,
    /// The mosquitto child of `sotto serve --broker mosquitto`.
    mosquitto: Option<u32>,
    stderr_path: PathBuf,
}

/// Peak resident memory (VmHWM), KiB.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Memory {
    pub(super) serve_kib: u64,
    pub(super) mosquitto_kib: Option<u64>,
}

impl Memory {
    pub(super) fn total_kib(&self) -> u64 {
        self.serve_kib + self.mosquitto_kib.unwrap_or(0)
    }
}

/// `VmHWM` of a process, KiB.
fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// The children of a process named `name` (any of its threads may have spawned them).
fn child_named(pid: u32, name: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == name {
                return Some(child);
            }
        }
    }
    None
}

/// The arguments of `sotto serve` for `broker`, its data in `data`: loopback, ports picked by
/// the system, no proof of work.
fn serve_args(
    broker: Broker,
    nats: Option<&NatsArgs>,
    data: &Path,
    clients: usize,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        vec!["--signup-burst".into(), clients.to_string().into()];
    args.extend(
        [
            "--listen",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--difficulty",
            "0",
            "--broker",
            broker.name(),
            "--data",
        ]
        .iter()
        .map(Into::into),
    );
    args.push(data.into());
    if let Some(nats) = nats {
        // The password is inherited (SOTTO_NATS_PASSWORD), never on the command line.
        let list = |addrs: &[std::net::SocketAddr]| {
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        for (flag, value) in [
            ("--nats", list(&nats.mqtt)),
            ("--nats-api", list(&nats.api)),
            ("--nats-user", nats.user.clone()),
        ] {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    args
}

impl Server {
    pub(super) async fn start(
        broker: Broker,
        nats: Option<&NatsArgs>,
        data: &Path,
        clients: usize,
        deadline: Instant,
    ) -> anyhow::Result<Server> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating the server directory {}", data.display()))?;
        let exe = std::env::current_exe().context("finding the sotto binary")?;
        let stderr_path = data.with_extension("stderr");
        let stderr = std::fs::File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        // Every client signs up from this one address.
        let args = serve_args(broker, nats, data, clients);
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(SERVE_WAIT);
        let started = tokio::task::spawn_blocking(move || {
            ServeChild::start(&exe, args, Stdio::from(stderr), wait)
        })
        .await
        .context("the task starting `sotto serve`")?;
        let tail = || stderr_tail(&stderr_path);
        let child = started.map_err(|e| anyhow!("{e}: {}", tail()))?;
        let ca_pem = std::fs::read_to_string(child.ca_file())
            .with_context(|| format!("reading the CA {}", child.ca_file().display()))?;
        let mosquitto = if broker == Broker::Mosquitto {
            let pid = child_named(child.pid(), "mosquitto");
            ensure!(
                pid.is_some(),
                "`sotto serve --broker mosquitto` runs no mosquitto child"
            );
            pid
        } else {
            None
        };
        Ok(Server {
            url: child.url().to_owned(),
            ca_pem,
            child,
            mosquitto,
            stderr_path,
        })
    }

    /// The peak memory so far.
    pub(super) fn memory(&self) -> Memory {
        Memory {
            serve_kib: vm_hwm(self.child.pid()).unwrap_or(0),
            mosquitto_kib: self.mosquitto.and_then(vm_hwm),
        }
    }

    /// Stops the server: SIGTERM, a bounded wait, then SIGKILL.
    pub(super) async fn stop(mut self) -> anyhow::Result<()> {
        match self.child.terminate_async(STOP_WAIT).await? {
            Stopped::Exited(status) => ensure!(
                status.success(),
                "`sotto serve` stopped with {status}: {}",
                stderr_tail(&self.stderr_path)
            ),
            Stopped::Killed => {
                bail!("`sotto serve` did not stop within {STOP_WAIT:?} of SIGTERM (killed)")
            }
        }
        Ok(())
    }
}

/// The last lines `sotto serve` wrote to its stderr file, for an error message.
fn stderr_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" / ");
    if tail.is_empty() {
        format!("(nothing on stderr, {})", path.display())
    } else {
        tail
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.terminate(Duration::from_secs(5));
        // If `sotto serve` had to be killed its mosquitto is left behind: end it too.
        if let Some(pid) = self.mosquitto {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "mosquitto" {
                let _ = process::signal(pid, "KILL");
            }
        }
    }
}
