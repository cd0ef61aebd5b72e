//! Files and directories the service creates are private to its user: the data directory and
//! Mosquitto's directory 0700, the directory database 0600 (SQLite gives its journal the
//! database's mode). A directory or file already there is tightened to the same mode: it holds
//! the CA key, the directory of public keys and the queued envelopes.
//!
//! One exception, for Mosquitto started by root: it must not run as root, so it runs as the
//! system's `mosquitto` user ([`RunAs`]), which then needs to reach its own directory. The
//! directories on the way are shared with the `mosquitto` group for traversal only
//! ([`group_dir`]: 0710, nobody else may enter or list them), its configuration is readable by
//! that group ([`group_file`]: 0640), and its working directory is its own ([`owned_dir`]: 0700).

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, chown};
use std::path::Path;

/// Creates `dir` (and its parents) if missing and gives it mode 0700. A directory already there
/// keeps a group search bit ([`group_dir`] set it for Mosquitto) and loses every other right of
/// its group and of others.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    let keep = match fs::metadata(dir) {
        Ok(meta) => meta.permissions().mode() & 0o010,
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700 | keep))
}

/// Creates `file` empty with mode 0600 if it is missing (never readable by others in between),
/// or gives the existing file mode 0600.
pub(crate) fn private_file(file: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::set_permissions(file, fs::Permissions::from_mode(0o600))
        }
        Err(e) => Err(e),
    }
}

/// The unprivileged system user a child process runs as when the service runs as root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// Whether this process runs as root (effective user id 0).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The user id and primary group of the local user `name`, from `/etc/passwd` (the system users
/// of Debian packages live there); `None` if there is none.
pub(crate) fn system_user(name: &str) -> io::Result<Option<RunAs>> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    Ok(passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs { uid, gid })
    }))
}

/// Creates `dir` if missing; owned by this process's user with group `gid`, mode 0710: members
/// of the group may pass through it to a path they know, not list or change it.
pub(crate) fn group_dir(dir: &Path, gid: u32) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    chown(dir, None, Some(gid))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o710))
}

/// Writes `file` with group `gid`, mode 0640 (read-only for the group, nothing for others).
pub(crate) fn group_file(file: &Path, contents: &str, gid: u32) -> io::Result<()> {
    private_file(file)?;
    chown(file, None, Some(gid))?;
    fs::write(file, contents)?;
    fs::set_permissions(file, fs::Permissions::from_mode(0o640))
}

/// Creates `dir` if missing and gives it, and everything directly in it, to `owner` (mode 0700
/// for the directory): the working directory of a child process that runs as `owner`.
pub(crate) fn owned_dir(dir: &Path, owner: RunAs) -> io::Result<()> {
    private_dir(dir)?;
    chown(dir, Some(owner.uid), Some(owner.gid))?;
    for entry in fs::read_dir(dir)? {
        chown(entry?.path(), Some(owner.uid), Some(owner.gid))?;
    }
    Ok(())
}
