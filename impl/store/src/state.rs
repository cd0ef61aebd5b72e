//! The device state as records (`sotto_core::records`): one row of `records` per record, written
//! from each step's change set, so that a commit costs what the step changed, not the size of
//! the device's history; and the `contacts` table that mirrors the state's contacts beside what
//! only the person knows (their names).

use rusqlite::{Connection, Transaction, params};
use sotto_core::Device;
use sotto_core::records::{ChangeSet, RecordKind};
use zeroize::Zeroizing;

use crate::error::{Result, StoreError};
use crate::rows::{trust_code, user_from};

/// Writes `changes` (the device's [`Device::changes`]) and mirrors the changed contacts into the
/// `contacts` list. The caller commits `tx`, then calls [`Device::mark_committed`].
pub(crate) fn save_changes(
    tx: &Transaction<'_>,
    device: &Device,
    changes: &ChangeSet,
    now: i64,
) -> Result<()> {
    write_records(tx, changes)?;
    let mut contact = tx.prepare_cached(
        "INSERT INTO contacts (user_id, trust, name, added_at) VALUES (?1, ?2, NULL, ?3)
         ON CONFLICT (user_id) DO UPDATE SET trust = excluded.trust
         WHERE trust <> excluded.trust",
    )?;
    for r in changes
        .put
        .iter()
        .filter(|r| r.id.kind == RecordKind::Contact)
    {
        let user = user_from(&r.id.key)?;
        if let Some((trust, _)) = device.contact(&user) {
            contact.execute(params![&user.0[..], trust_code(trust), now])?;
        }
    }
    Ok(())
}

/// Applies a change set in its order: prefixes cleared, records deleted, records written.
fn write_records(tx: &Transaction<'_>, changes: &ChangeSet) -> Result<()> {
    if !changes.clear.is_empty() {
        // Keys are compared as bytes: those beginning with `prefix` are at or after it and
        // before the first key that does not begin with it (none if the prefix is all 0xff).
        let mut bounded =
            tx.prepare_cached("DELETE FROM records WHERE kind = ?1 AND key >= ?2 AND key < ?3")?;
        let mut open = tx.prepare_cached("DELETE FROM records WHERE kind = ?1 AND key >= ?2")?;
        for c in &changes.clear {
            match after_prefix(&c.key) {
                Some(end) => bounded.execute(params![c.kind.code(), &c.key[..], &end[..]])?,
                None => open.execute(params![c.kind.code(), &c.key[..]])?,
            };
        }
    }
    let mut delete = tx.prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")?;
    for d in &changes.delete {
        delete.execute(params![d.kind.code(), &d.key[..]])?;
    }
    let mut put = tx.prepare_cached(
        "INSERT INTO records (kind, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
    )?;
    for r in &changes.put {
        put.execute(params![r.id.kind.code(), &r.id.key[..], &r.value[..]])?;
    }
    Ok(())
}

/// The smallest key after every key that begins with `prefix`: the prefix without its trailing
/// 0xff bytes, its last byte plus one; `None` if there is none (empty or all 0xff).
fn after_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Every record of a device, as a change set that writes them all.
pub(crate) fn all_records(device: &Device) -> ChangeSet {
    ChangeSet {
        put: device.records(),
        ..ChangeSet::default()
    }
}

/// The device as its records say.
pub(crate) fn load(conn: &Connection) -> Result<Device> {
    let mut stmt = conn.prepare_cached("SELECT kind, key, value FROM records")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, u8>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            Zeroizing::new(r.get::<_, Vec<u8>>(2)?),
        ))
    })?;
    let mut records = Vec::new();
    for row in rows {
        records.push(row?);
    }
    if records.is_empty() {
        return Err(StoreError::Corrupt("no device records"));
    }
    Device::from_records(records.iter().map(|(k, key, v)| (*k, &key[..], &v[..])))
        .map_err(StoreError::DeviceState)
}

/// Migration to version 4: the state blob of `device` becomes records, and the blob is emptied
/// (secure delete overwrites its pages).
pub(crate) fn move_state_to_records(tx: &Transaction<'_>) -> Result<()> {
    let state: Zeroizing<Vec<u8>> = Zeroizing::new(
        match tx.query_row("SELECT state FROM device WHERE id = 1", [], |r| r.get(0)) {
            Ok(s) => s,
            Err(rusqlite::Error::QueryReturnedNoRows) => {
                return Err(StoreError::Corrupt("no device row"));
            }
            Err(e) => return Err(e.into()),
        },
    );
    let device = Device::import(&state).map_err(StoreError::DeviceState)?;
    // The contacts table already mirrors the state's contacts: only the records are written.
    write_records(tx, &all_records(&device))?;
    tx.execute("UPDATE device SET state = x'' WHERE id = 1", [])?;
    Ok(())
}

/// Migration to version 7: sessions and groups written with their skipped keys inside become
/// records of today's kinds, each skipped key a record of its own ([`Device::from_records`]
/// reports the old ones as changed; their change set deletes them and writes the new ones).
pub(crate) fn split_skipped_keys(tx: &Transaction<'_>) -> Result<()> {
    let device = load(tx)?;
    write_records(tx, &device.changes())
}

#[cfg(test)]
mod tests {
    use super::after_prefix;

    #[test]
    fn the_key_after_a_prefix() {
        assert_eq!(after_prefix(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(after_prefix(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(after_prefix(&[0xff, 0xff]), None);
        assert_eq!(after_prefix(&[]), None);
    }
}
