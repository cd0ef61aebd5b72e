//! How values are kept in SQLite columns: times as `i64` milliseconds, user ids as 10-byte
//! blobs, message ids as 16-byte blobs, trust as 0/1. Reading back checks each value: a store altered outside this crate is a
//! typed `Corrupt` error, never a panic.

use sotto_core::{MessageId, Trust, UserId};

use crate::error::{Result, StoreError};

/// A time in ms from the caller's clock, as SQLite stores it.
pub(crate) fn ms(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::Invalid("time beyond i64 milliseconds"))
}

/// A time that came from a peer or was computed: clamped rather than refused, so that no value a
/// peer chooses can make a commit fail.
pub(crate) fn ms_clamped(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A time read back from the store.
pub(crate) fn from_ms(v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt("negative time"))
}

/// A user id read back from the store.
pub(crate) fn user_from(b: &[u8]) -> Result<UserId> {
    Ok(UserId(
        b.try_into()
            .map_err(|_| StoreError::Corrupt("user id length"))?,
    ))
}

/// A message id read back from the store.
pub(crate) fn message_id_from(b: &[u8]) -> Result<MessageId> {
    Ok(MessageId(
        b.try_into()
            .map_err(|_| StoreError::Corrupt("message id length"))?,
    ))
}

pub(crate) fn trust_code(t: Trust) -> i64 {
    match t {
        Trust::Verified => 1,
        Trust::Unverified => 0,
    }
}
