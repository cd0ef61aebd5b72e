//! The device row: the device state as the core exports it (one blob, encrypted with the whole
//! file), and the `contacts` table that mirrors the state's contacts beside what only the person
//! knows (their names).

use rusqlite::{Transaction, params};
use sotto_core::Device;

use crate::error::{Result, StoreError};
use crate::rows::trust_code;

/// Saves the device state and mirrors its contacts into the `contacts` list.
pub(crate) fn save_device(tx: &Transaction<'_>, device: &Device, now: i64) -> Result<()> {
    let state = device.export();
    let n = tx.execute("UPDATE device SET state = ?1 WHERE id = 1", [&state[..]])?;
    if n != 1 {
        return Err(StoreError::Corrupt("no device row"));
    }
    sync_contacts(tx, device, now)
}

/// The `contacts` table lists the device's contacts with what only the person knows (names); the
/// device state is the authority on trust, mirrored here at every commit.
pub(crate) fn sync_contacts(tx: &Transaction<'_>, device: &Device, now: i64) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO contacts (user_id, trust, name, added_at) VALUES (?1, ?2, NULL, ?3)
         ON CONFLICT (user_id) DO UPDATE SET trust = excluded.trust
         WHERE trust <> excluded.trust",
    )?;
    for user in device.contacts() {
        if let Some((trust, _)) = device.contact(user) {
            stmt.execute(params![&user.0[..], trust_code(trust), now])?;
        }
    }
    Ok(())
}
