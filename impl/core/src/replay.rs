//! The first-message replay cache (X3DH-8): `SHA-256(EK_A)[0..16]` of every accepted first message,
//! per signed prekey, for as long as the device keeps that prekey.

use std::collections::BTreeMap;

use crate::crypto::{self, DhPublic};
use crate::error::{Result, SessionError};
use crate::limits::MAX_REPLAY_ENTRIES;
use crate::persist::Persist;
use crate::records::{ChangeSet, Record, RecordKind, Tracked};

/// What the cache knows about an ephemeral key.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Seen {
    /// Never accepted.
    New,
    /// Accepted before; the session it created has this id.
    Session(u64),
}

/// The replay cache, bounded by LIM-8.
#[derive(Clone, Debug, Default)]
pub struct ReplayCache {
    // (spk id, hash of EK) -> session id; one record each (RecordKind::ReplayEntry)
    entries: Tracked<(u32, [u8; 16]), u64>,
}

fn key(spk_id: u32, ek: &DhPublic) -> (u32, [u8; 16]) {
    let h = crypto::sha256(&[&ek.0]);
    let mut k = [0u8; 16];
    for (o, b) in k.iter_mut().zip(h.iter()) {
        *o = *b;
    }
    (spk_id, k)
}

impl ReplayCache {
    /// Looks up `EK_A` under signed prekey `spk_id`.
    pub fn check(&self, spk_id: u32, ek: &DhPublic) -> Seen {
        match self.entries.get(&key(spk_id, ek)) {
            Some(s) => Seen::Session(*s),
            None => Seen::New,
        }
    }

    /// Fails with `replay_cache_full` when no new entry fits (LIM-8).
    pub fn ensure_room(&self) -> Result<()> {
        if self.entries.len() >= MAX_REPLAY_ENTRIES {
            return Err(SessionError::ReplayCacheFull.into());
        }
        Ok(())
    }

    /// Records an accepted first message.
    pub fn insert(&mut self, spk_id: u32, ek: &DhPublic, session: u64) -> Result<()> {
        self.ensure_room()?;
        self.entries.insert(key(spk_id, ek), session);
        Ok(())
    }

    /// Forgets every entry of a retired signed prekey.
    pub fn retire_prekey(&mut self, spk_id: u32) {
        self.entries.retain(|(id, _), _| *id != spk_id);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fills the cache with synthetic entries under signed prekey `spk_id` until it holds `n` (at
    /// most LIM-8): the state of a device that accepted that many first messages, for benchmarks
    /// and tests (feature `test-utils`). Each entry names session 0, which no device holds.
    #[cfg(feature = "test-utils")]
    pub(crate) fn fill(&mut self, spk_id: u32, n: usize) {
        let n = n.min(MAX_REPLAY_ENTRIES);
        let mut i: u64 = 0;
        while self.entries.len() < n {
            let mut ek = [0xa5u8; 32];
            ek[..8].copy_from_slice(&i.to_be_bytes());
            let k = key(spk_id, &DhPublic(ek));
            if !self.entries.contains_key(&k) {
                self.entries.insert(k, 0);
            }
            i += 1;
        }
    }

    /// The entries added or removed since the last commit.
    pub(crate) fn changes(&self, out: &mut ChangeSet) {
        self.entries.changes(RecordKind::ReplayEntry, out);
    }

    /// Every entry as a record.
    pub(crate) fn records(&self, out: &mut Vec<Record>) {
        self.entries.records(RecordKind::ReplayEntry, out);
    }

    /// Forgets the marks after a commit.
    pub(crate) fn clear_marks(&mut self) {
        self.entries.clear_marks();
    }

    /// The cache from its records (nothing marked).
    pub(crate) fn loaded(entries: BTreeMap<(u32, [u8; 16]), u64>) -> Self {
        ReplayCache {
            entries: Tracked::loaded(entries),
        }
    }
}

impl Persist for ReplayCache {
    fn write(&self, w: &mut crate::codec::Writer) {
        let entries: Vec<(u32, [u8; 16], u64)> = self
            .entries
            .iter()
            .map(|((s, h), id)| (*s, *h, *id))
            .collect();
        entries.write(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let entries: Vec<(u32, [u8; 16], u64)> = Persist::read(r)?;
        Ok(ReplayCache {
            entries: Tracked::all_marked(
                entries.into_iter().map(|(s, h, id)| ((s, h), id)).collect(),
            ),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_prekey_x3dh_8() {
        let mut c = ReplayCache::default();
        let ek = DhPublic([5; 32]);
        assert_eq!(c.check(1, &ek), Seen::New);
        c.insert(1, &ek, 7).unwrap();
        assert_eq!((c.len(), c.is_empty()), (1, false));
        assert_eq!(c.check(1, &ek), Seen::Session(7));
        assert_eq!(c.check(2, &ek), Seen::New);
        c.retire_prekey(1);
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_cache_refuses_new_first_messages_lim_8() {
        let mut c = ReplayCache::default();
        for i in 0..MAX_REPLAY_ENTRIES as u64 {
            let mut ek = [0; 32];
            ek[..8].copy_from_slice(&i.to_le_bytes());
            c.insert(1, &DhPublic(ek), i).unwrap();
        }
        assert_eq!(c.len(), MAX_REPLAY_ENTRIES);
        assert!(c.ensure_room().is_err());
        let err = c.insert(1, &DhPublic([0xff; 32]), 0).unwrap_err();
        assert_eq!(err.code(), "replay_cache_full");
        // Entries already there still answer (X3DH-8), and retiring the prekey makes room.
        assert_eq!(c.check(1, &DhPublic([0; 32])), Seen::Session(0));
        c.retire_prekey(1);
        c.insert(1, &DhPublic([0xff; 32]), 0).unwrap();
    }
}
