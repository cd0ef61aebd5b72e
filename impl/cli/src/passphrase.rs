//! The store passphrase (STORE-1): from `SOTTO_PASSPHRASE`, or typed at the terminal without echo.
//!
//! Echo is switched off with `stty -echo` on the controlling terminal (the crate forbids unsafe
//! code, so no termios calls), and switched back on even when reading fails.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use crate::errors::hinted;

/// The environment variable holding the passphrase (for scripts and tests).
pub const ENV: &str = "SOTTO_PASSPHRASE";

/// The passphrase to open an existing store.
pub fn for_open() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    prompt("passphrase of the store: ")
}

/// The environment variable of a new passphrase for `sotto passphrase`.
pub const NEW_ENV: &str = "SOTTO_NEW_PASSPHRASE";

/// The new passphrase of `sotto passphrase`: from [`NEW_ENV`], or typed twice.
pub fn for_change() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Ok(p) = std::env::var(NEW_ENV) {
        if p.is_empty() {
            return Err(hinted(
                format!("{NEW_ENV} is empty"),
                "choose a passphrase; it encrypts everything on this device",
            ));
        }
        return Ok(Zeroizing::new(p.into_bytes()));
    }
    typed_twice()
}

/// The passphrase for a new store: typed twice when prompted.
pub fn for_create() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    if let Some(p) = from_env() {
        return Ok(p);
    }
    typed_twice()
}

fn typed_twice() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let first = prompt("new passphrase for the store: ")?;
    if first.is_empty() {
        return Err(hinted(
            "the passphrase is empty",
            "choose a passphrase; it encrypts everything on this device",
        ));
    }
    let second = prompt("the same passphrase again: ")?;
    if first != second {
        return Err(hinted(
            "the two passphrases differ",
            "run the command again and type the same passphrase twice",
        ));
    }
    Ok(first)
}

fn from_env() -> Option<Zeroizing<Vec<u8>>> {
    std::env::var_os(ENV).map(|v| Zeroizing::new(v.into_encoded_bytes()))
}

/// Reads one line from the terminal with echo off.
fn prompt(label: &str) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let no_terminal = || {
        hinted(
            "no passphrase: SOTTO_PASSPHRASE is not set and there is no terminal to ask on",
            "set SOTTO_PASSPHRASE, or run the command in a terminal",
        )
    };
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| no_terminal())?;
    let mut out = tty.try_clone().map_err(|_| no_terminal())?;
    let _ = write!(out, "{label}");
    let _ = out.flush();
    let echo_off = stty(&tty, "-echo");
    let mut line = Zeroizing::new(String::new());
    let read = BufReader::new(&tty).read_line(&mut line);
    if echo_off {
        stty(&tty, "echo");
    }
    let _ = writeln!(out);
    read.map_err(|_| no_terminal())?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    Ok(Zeroizing::new(trimmed.as_bytes().to_vec()))
}

fn stty(tty: &std::fs::File, arg: &str) -> bool {
    let Ok(input) = tty.try_clone() else {
        return false;
    };
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
