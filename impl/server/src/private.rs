//! Files and directories the service creates are private to its user: the data directory and
//! Mosquitto's directory 0700, the directory database 0600 (SQLite gives its journal the
//! database's mode). A directory or file already there is tightened to the same mode: it holds
//! the CA key, the directory of public keys and the queued envelopes.

use std::fs;
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and its parents) if missing and gives it mode 0700.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
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
