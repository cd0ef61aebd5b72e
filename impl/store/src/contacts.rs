//! The contacts list: the device's contacts (mirrored from its state at every commit, which is the
//! authority on identity and trust, CARD-4) with what only the person knows, the name they chose.

use rusqlite::{OptionalExtension, params};
use sotto_core::{Trust, UserId};

use crate::error::{Result, StoreError};
use crate::rows::{from_ms, user_from};
use crate::store::Store;

/// Longest contact name, bytes of UTF-8.
pub const MAX_NAME: usize = 256;

/// A contact as listed. `Debug` hides the name.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactEntry {
    /// The contact's user id.
    pub user: UserId,
    /// How far the contact's identity is trusted (CARD-4).
    pub trust: Trust,
    /// The name the person gave the contact.
    pub name: Option<String>,
    /// When the contact first appeared in a commit, ms.
    pub added_at: u64,
}

impl core::fmt::Debug for ContactEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ContactEntry")
            .field("user", &self.user)
            .field("trust", &self.trust)
            .field("named", &self.name.is_some())
            .field("added_at", &self.added_at)
            .finish()
    }
}

type RawContact = (Vec<u8>, i64, Option<String>, i64);

fn check((user, trust, name, added_at): RawContact) -> Result<ContactEntry> {
    Ok(ContactEntry {
        user: user_from(&user)?,
        trust: match trust {
            1 => Trust::Verified,
            0 => Trust::Unverified,
            _ => return Err(StoreError::Corrupt("trust")),
        },
        name,
        added_at: from_ms(added_at)?,
    })
}

fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawContact> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

impl Store {
    /// Every contact, in the order they were added.
    pub fn contacts(&self) -> Result<Vec<ContactEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT user_id, trust, name, added_at FROM contacts ORDER BY added_at, user_id",
        )?;
        let raws = stmt
            .query_map([], read)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(check).collect()
    }

    /// One contact.
    pub fn contact(&self, user: &UserId) -> Result<Option<ContactEntry>> {
        self.conn
            .query_row(
                "SELECT user_id, trust, name, added_at FROM contacts WHERE user_id = ?1",
                [&user.0[..]],
                read,
            )
            .optional()?
            .map(check)
            .transpose()
    }

    /// Names a contact (or clears the name). Returns `false` if the user is not a contact.
    pub fn set_contact_name(&mut self, user: &UserId, name: Option<&str>) -> Result<bool> {
        if name.is_some_and(|n| n.len() > MAX_NAME) {
            return Err(StoreError::Invalid("contact name too long"));
        }
        let n = self.conn.execute(
            "UPDATE contacts SET name = ?2 WHERE user_id = ?1",
            params![&user.0[..], name],
        )?;
        Ok(n == 1)
    }
}
