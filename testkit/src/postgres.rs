//! A throwaway PostgreSQL server for tests: `initdb` in a temporary directory, `postgres`
//! listening on a private Unix socket and a free loopback port, one database `sotto`, stopped
//! and deleted on drop. It needs the PostgreSQL server binaries (Debian: `postgresql-15`, found
//! under `/usr/lib/postgresql/*/bin` or on the PATH); when run as root, the server runs as the
//! system's `postgres` user (PostgreSQL refuses root).
//!
//! [`TestPostgres::start`] returns `None` (with a line on stderr) where PostgreSQL is not
//! installed, so a caller can skip; CI installs it and sets `SOTTO_REQUIRE_POSTGRES=1`, which
//! turns that into a panic.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running throwaway PostgreSQL server.
#[derive(Debug)]
pub struct TestPostgres {
    child: Child,
    port: u16,
    socket_dir: PathBuf,
    _dir: tempfile::TempDir,
}

/// The directory of the PostgreSQL server binaries, if installed.
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// The uid and gid of the system's `postgres` user (read from `/etc/passwd`).
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.first() == Some(&"postgres") && f.len() > 3)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .flatten()
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A command that runs as the `postgres` user when this process is root.
fn command(bin: &Path, owner: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(bin);
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd.env_remove("PGDATA").env("LC_ALL", "C");
    cmd
}

fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown for postgres");
    }
}

impl TestPostgres {
    /// Starts a server, or `None` if PostgreSQL is not installed (unless
    /// `SOTTO_REQUIRE_POSTGRES=1`: then it panics).
    pub fn start() -> Option<TestPostgres> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("SOTTO_REQUIRE_POSTGRES").is_none(),
                "SOTTO_REQUIRE_POSTGRES is set but no PostgreSQL server is installed"
            );
            eprintln!("PostgreSQL is not installed (apt-get install postgresql): skipped");
            return None;
        };
        let owner = if is_root() {
            Some(postgres_user().expect("a `postgres` user to run PostgreSQL as (not as root)"))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("sotto-pg-")
            .tempdir()
            .expect("temp dir");
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::create_dir(&socket_dir).expect("socket dir");
        for p in [dir.path(), &data, &socket_dir] {
            chown_tree(p, owner);
        }
        run_ok(
            command(&bin.join("initdb"), owner)
                .arg("-D")
                .arg(&data)
                .args(["-U", "sotto", "--auth=trust", "--no-sync", "-E", "UTF8"]),
        );
        let port = crate::free_loopback().port();
        let child = command(&bin.join("postgres"), owner)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=100"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let mut pg = TestPostgres {
            child,
            port,
            socket_dir,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let ready = pg
                .client(&bin.join("pg_isready"))
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if let Ok(Some(status)) = pg.child.try_wait() {
                panic!("postgres exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "postgres did not start in time");
            std::thread::sleep(Duration::from_millis(100));
        }
        run_ok(pg.client(&bin.join("createdb")).arg("sotto"));
        Some(pg)
    }

    /// The connection URL of database `sotto` over loopback TCP.
    pub fn url(&self) -> String {
        format!("postgresql://sotto@127.0.0.1:{}/sotto", self.port)
    }

    /// The connection URL of database `sotto` over the server's Unix socket.
    pub fn socket_url(&self) -> String {
        format!(
            "postgresql://sotto@/sotto?host={}&port={}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// `program` (a PostgreSQL client tool) with the options that reach this server as `sotto`
    /// over loopback TCP.
    fn client(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "sotto",
        ]);
        cmd
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` with `psql` and returns its unaligned, tuples-only output (tests read the
    /// database itself with it).
    pub fn psql(&self, sql: &str) -> String {
        let bin = bin_dir().expect("PostgreSQL binaries");
        let psql = ["/usr/bin/psql".into(), bin.join("psql")]
            .into_iter()
            .find(|p: &PathBuf| p.is_file())
            .expect("psql");
        let out = run_ok(self.client(&psql).args([
            "-d",
            "sotto",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// Runs `cmd` to its end and returns its output; panics with its stderr if it failed.
fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("a PostgreSQL tool runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's fast shutdown (its backends end, its shared memory is released);
        // SIGKILL if it has not stopped within 10 s.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
