//! The clocks and the timestamped plaintext: [`micros`] (the send time a message carries),
//! [`now_ms`] (the devices' clock), the 100-byte [`plaintext`] with its phase tag, and [`parse`].

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Plaintext size of every message (the plain MQTT payload has exactly this size).
pub const PLAINTEXT_SIZE: usize = 100;

/// Message tags (first byte of the plaintext), so that a stale redelivery is never counted.
pub const TAG_PLAIN: u8 = b'P';
/// Tag of phase 2 (encrypted, raw device path).
pub const TAG_SEALED: u8 = b'E';
/// Tag of phase 3 (full `Client`).
pub const TAG_CLIENT: u8 = b'C';
/// Tag of phase 4 (drain).
pub const TAG_DRAIN: u8 = b'D';
/// Tag of phases 5 and 6 (drain through the full `Client`).
pub const TAG_CLIENT_DRAIN: u8 = b'Q';

static BASE: OnceLock<std::time::Instant> = OnceLock::new();

/// Microseconds since the start of the process (the send time carried in the plaintext).
pub fn micros() -> u64 {
    BASE.get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Unix time in ms (the devices' clock; the services run on the same machine).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The 100-byte plaintext: tag, send time (µs), sequence number, padding.
pub fn plaintext(tag: u8, seq: usize) -> String {
    let mut s = format!("{}{:016} {:08} ", tag as char, micros(), seq);
    while s.len() < PLAINTEXT_SIZE {
        s.push('x');
    }
    s
}

/// The send time of a plaintext carrying `tag`.
pub fn parse(text: &str, tag: u8) -> Option<u64> {
    if text.as_bytes().first() != Some(&tag) {
        return None;
    }
    text.get(1..17)?.parse().ok()
}
