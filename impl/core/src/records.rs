//! The device state as records (STORE-3): one record per identity-and-counters block, one-time
//! prekey, contact, session, group, skipped key, left group, replay-cache entry, delivered id and
//! blocked user id,
//! and the change set of a step, so that the store writes only what a step changed. A session or
//! group record leaves its skipped keys out ([`RecordKind::SessionSkippedKey`]): a chain step rewrites its
//! session, not the up to LIM-4 keys it keeps; the records of older stores, which held them
//! inside, are read and rewritten ([`RecordKind::LegacySession`]).
//!
//! ```text
//!   Device::receive / send / ...        the collections are `Tracked`: every insert, removal or
//!          |                            mutable access marks its key
//!          v
//!   Device::changes() -> ChangeSet      the marked keys: the record's new bytes, or its deletion
//!   store: one transaction              (plus the identity-and-counters record when it changed)
//!   Device::mark_committed()            after the transaction committed: the marks are cleared
//! ```
//!
//! A record is `(kind, key, value)`: [`RecordKind`] is one byte, `key` identifies the record
//! within its kind, `value` is its bytes in the private state format of [`crate::persist`]. Like
//! [`Device::export`](crate::Device::export), values hold secrets and belong only in the
//! encrypted store (STORE-1). [`Device::from_records`](crate::Device::from_records) reads them
//! back; a corrupted record is a typed error, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use zeroize::Zeroizing;

use crate::chain::{MessageKeys, SkippedKeys};
use crate::codec::{Reader, Writer};
use crate::error::{DecodeError, Result};
use crate::persist::Persist;

/// What a record holds. The code is the `kind` column of the store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum RecordKind {
    /// The identity, the signed prekeys, the id counters and the padding bucket (empty key).
    Meta = 1,
    /// One one-time prekey (key: its id).
    OneTimePrekey = 2,
    /// One contact: identity, trust, bundle, sessions (key: the user id).
    Contact = 3,
    /// One pairwise session with its skipped keys inside, as stores before schema version 7
    /// wrote it (key: the session's local id). Read, never written: a device read from one
    /// reports it as changed, and its change set deletes it and writes a [`RecordKind::Session`]
    /// and its [`RecordKind::SessionSkippedKey`]s instead.
    LegacySession = 4,
    /// One group with its skipped keys inside, as stores before schema version 7 wrote it (key:
    /// the group id). Read, never written, like [`RecordKind::LegacySession`].
    LegacyGroup = 5,
    /// The last epoch of a group this device left (key: the group id).
    LeftGroup = 6,
    /// One entry of the first-message replay cache (key: signed prekey id and hash of `EK`).
    ReplayEntry = 7,
    /// One delivered message id (RX-7; key: its position in the first-in first-out order).
    DeliveredId = 8,
    /// One pairwise session with its chains, without its skipped keys (key: the session's local
    /// id).
    Session = 9,
    /// One group with its epochs, without its skipped keys (key: the group id).
    Group = 10,
    /// The keys of one skipped message of a session and when they were kept (key: the session's
    /// key, then the message's epoch and counter).
    SessionSkippedKey = 11,
    /// The keys of one skipped message of a group and when they were kept (key: the group id,
    /// then the message's epoch, member index and counter).
    GroupSkippedKey = 12,
    /// One user id the person blocked (RX-11; key: the user id, value: the byte 1).
    Blocked = 13,
    /// The handover of a group's admin role this device made or received and has not seen
    /// through yet, or by which it administers the group (GRP-12; key: the group id).
    Handover = 14,
    /// A group this device left whose removal notice has not come yet: the epoch it left at
    /// (GRP-11; key: the group id).
    Leaving = 15,
}

impl RecordKind {
    /// Every kind, in code order.
    pub const ALL: [RecordKind; 15] = [
        RecordKind::Meta,
        RecordKind::OneTimePrekey,
        RecordKind::Contact,
        RecordKind::LegacySession,
        RecordKind::LegacyGroup,
        RecordKind::LeftGroup,
        RecordKind::ReplayEntry,
        RecordKind::DeliveredId,
        RecordKind::Session,
        RecordKind::Group,
        RecordKind::SessionSkippedKey,
        RecordKind::GroupSkippedKey,
        RecordKind::Blocked,
        RecordKind::Handover,
        RecordKind::Leaving,
    ];

    /// The kind's code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind of a code; an unknown code is `unknown_version` (a store written by a newer
    /// implementation).
    pub fn from_code(code: u8) -> Result<RecordKind> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.code() == code)
            .ok_or_else(|| DecodeError::UnknownVersion.into())
    }
}

/// Which record: its kind and key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct RecordId {
    /// The kind.
    pub kind: RecordKind,
    /// The key within the kind (empty for [`RecordKind::Meta`]).
    pub key: Vec<u8>,
}

/// One record with its value. The value holds secrets: `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// Which record.
    pub id: RecordId,
    /// Its bytes (private state format), zeroized on drop.
    pub value: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Record {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Record")
            .field("kind", &self.id.kind)
            .field("key", &hex_short(&self.id.key))
            .field("value_len", &self.value.len())
            .finish()
    }
}

fn hex_short(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// What changed since the device was last committed: records to delete by key prefix, records
/// to delete and records to write (insert or replace). Apply them in one transaction, in that
/// order (`clear`, `delete`, `put`), then call
/// [`Device::mark_committed`](crate::Device::mark_committed).
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct ChangeSet {
    /// For each entry, delete every record of its kind whose key begins with its key (the
    /// skipped keys of a session or group that was removed, or whose keys are all rewritten);
    /// `put` may write some of them again.
    pub clear: Vec<RecordId>,
    /// Records to delete.
    pub delete: Vec<RecordId>,
    /// Records to insert or replace.
    pub put: Vec<Record>,
}

impl ChangeSet {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty() && self.clear.is_empty()
    }

    /// Number of records written or deleted, and of prefixes cleared.
    pub fn len(&self) -> usize {
        self.put.len() + self.delete.len() + self.clear.len()
    }

    /// Bytes of record values written.
    pub fn value_bytes(&self) -> usize {
        self.put.iter().map(|r| r.value.len()).sum()
    }
}

/// Encodes a value (or key) in the state format.
pub(crate) fn encode<T: Persist>(value: &T) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(64);
    value.write(&mut w);
    Zeroizing::new(w.into_vec())
}

/// `prefix` followed by the encoding of `key`.
fn prefixed<K: Persist>(prefix: &[u8], key: &K) -> Vec<u8> {
    let mut w = Writer::with_capacity(prefix.len() + 16);
    w.bytes(prefix);
    key.write(&mut w);
    w.into_vec()
}

/// Decodes a whole value (or key): trailing bytes are an error.
pub(crate) fn decode<T: Persist>(bytes: &[u8]) -> Result<T> {
    let mut r = Reader::new(bytes);
    let v = T::read(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// A map whose every change marks its key, so that [`ChangeSet`]s name exactly what changed.
/// Mutable access goes only through methods that mark: no change can escape the change set.
#[derive(Clone, Debug)]
pub(crate) struct Tracked<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    dirty: BTreeSet<K>,
}

impl<K: Ord + Clone, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked {
            map: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    /// A map loaded from records: nothing is marked.
    pub(crate) fn loaded(map: BTreeMap<K, V>) -> Self {
        Tracked {
            map,
            dirty: BTreeSet::new(),
        }
    }

    /// A map that came from elsewhere (an export): every key is marked.
    pub(crate) fn all_marked(map: BTreeMap<K, V>) -> Self {
        let dirty = map.keys().cloned().collect();
        Tracked { map, dirty }
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let v = self.map.get_mut(k)?;
        self.dirty.insert(k.clone());
        Some(v)
    }

    pub(crate) fn contains_key(&self, k: &K) -> bool {
        self.map.contains_key(k)
    }

    pub(crate) fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.dirty.insert(k.clone());
        self.map.insert(k, v)
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        let v = self.map.remove(k)?;
        self.dirty.insert(k.clone());
        Some(v)
    }

    pub(crate) fn pop_first(&mut self) -> Option<(K, V)> {
        let (k, v) = self.map.pop_first()?;
        self.dirty.insert(k.clone());
        Some((k, v))
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let dirty = &mut self.dirty;
        self.map.retain(|k, v| {
            let kept = keep(k, v);
            if !kept {
                dirty.insert(k.clone());
            }
            kept
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn keys(&self) -> impl DoubleEndedIterator<Item = &K> {
        self.map.keys()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    /// Marks a key as changed (a value read from an old record, to be written anew).
    pub(crate) fn mark(&mut self, k: &K) {
        if self.map.contains_key(k) {
            self.dirty.insert(k.clone());
        }
    }

    /// Forgets the marks (after a commit).
    pub(crate) fn clear_marks(&mut self) {
        self.dirty.clear();
    }
}

impl<K: Ord + Clone + Persist, V: Persist> Tracked<K, V> {
    /// Adds the marked keys to `out`: the value if present, a deletion if not.
    pub(crate) fn changes(&self, kind: RecordKind, out: &mut ChangeSet) {
        self.changes_under(kind, &[], out);
    }

    /// [`Tracked::changes`] with every key after `prefix` (the key of the record that owns them).
    pub(crate) fn changes_under(&self, kind: RecordKind, prefix: &[u8], out: &mut ChangeSet) {
        for k in &self.dirty {
            let key = prefixed(prefix, k);
            match self.map.get(k) {
                Some(v) => out.put.push(Record {
                    id: RecordId { kind, key },
                    value: encode(v),
                }),
                None => out.delete.push(RecordId { kind, key }),
            }
        }
    }

    /// Every entry as a record.
    pub(crate) fn records(&self, kind: RecordKind, out: &mut Vec<Record>) {
        self.records_under(kind, &[], out);
    }

    /// [`Tracked::records`] with every key after `prefix`.
    pub(crate) fn records_under(&self, kind: RecordKind, prefix: &[u8], out: &mut Vec<Record>) {
        for (k, v) in &self.map {
            out.push(Record {
                id: RecordId {
                    kind,
                    key: prefixed(prefix, k),
                },
                value: encode(v),
            });
        }
    }

    /// Reads one record into a map being loaded; a key given twice is an error.
    pub(crate) fn read_into(map: &mut BTreeMap<K, V>, key: &[u8], value: &[u8]) -> Result<()> {
        Tracked::read_own_key(map, key, value, |_| None)
    }

    /// [`Tracked::read_into`] for a value that names its own key (`own`, `None` if it does not):
    /// a record stored under another key is an error.
    pub(crate) fn read_own_key(
        map: &mut BTreeMap<K, V>,
        key: &[u8],
        value: &[u8],
        own: impl Fn(&V) -> Option<K>,
    ) -> Result<()> {
        insert_read(map, decode(key)?, decode(value)?, own)
    }
}

/// Adds a value read back under its key `k` to a map being loaded; a key given twice, or a value
/// that names another key than its own (`own`), is an error.
fn insert_read<K: Ord, V>(
    map: &mut BTreeMap<K, V>,
    k: K,
    v: V,
    own: impl Fn(&V) -> Option<K>,
) -> Result<()> {
    if own(&v).is_some_and(|o| o != k) || map.contains_key(&k) {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    map.insert(k, v);
    Ok(())
}

/// A value whose record leaves its skipped keys out: they are records of their own, one per key,
/// each keyed by the value's key and the key's position, so that a commit writes only the skipped
/// keys that came or went, not all of them with every chain step (a session, a group).
pub(crate) trait HoldsSkippedKeys: Persist + Sized {
    /// The position of a skipped key.
    type At: Ord + Copy + Persist;
    /// The kind of the value's record.
    const KIND: RecordKind;
    /// The kind of its skipped keys' records.
    const SKIPPED: RecordKind;
    /// The kind of the old record that held the value with its skipped keys ([`Persist`]).
    const LEGACY: RecordKind;
    /// The value without its skipped keys.
    fn write_lean(&self, w: &mut Writer);
    /// Reads what [`HoldsSkippedKeys::write_lean`] wrote; the skipped keys are attached after.
    fn read_lean(r: &mut Reader<'_>) -> Result<Self>;
    /// Its skipped keys.
    fn skipped(&self) -> &SkippedKeys<Self::At>;
    /// Its skipped keys, to attach those read back or to clear their marks.
    fn skipped_mut(&mut self) -> &mut SkippedKeys<Self::At>;
}

/// The record of `v` without its skipped keys.
fn lean<V: HoldsSkippedKeys>(v: &V) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::with_capacity(256);
    v.write_lean(&mut w);
    Zeroizing::new(w.into_vec())
}

impl<K: Ord + Clone + Persist, V: HoldsSkippedKeys> Tracked<K, V> {
    /// [`Tracked::changes`] for values with skipped keys: a changed value's record and its skipped
    /// keys that changed (all of them, after clearing the old ones, when the store holds none of
    /// them as they are: [`SkippedKeys::whole`]); a removed value's record and all its skipped
    /// keys deleted.
    pub(crate) fn changes_with_skipped(&self, out: &mut ChangeSet) {
        for k in &self.dirty {
            let key = encode(k).to_vec();
            match self.map.get(k) {
                Some(v) => {
                    let skipped = v.skipped();
                    if skipped.whole {
                        out.clear.push(RecordId {
                            kind: V::SKIPPED,
                            key: key.clone(),
                        });
                        skipped.keys.records_under(V::SKIPPED, &key, &mut out.put);
                    } else {
                        skipped.keys.changes_under(V::SKIPPED, &key, out);
                    }
                    out.put.push(Record {
                        id: RecordId { kind: V::KIND, key },
                        value: lean(v),
                    });
                }
                None => {
                    out.clear.push(RecordId {
                        kind: V::SKIPPED,
                        key: key.clone(),
                    });
                    out.delete.push(RecordId { kind: V::KIND, key });
                }
            }
        }
    }

    /// Every value and each of its skipped keys as records.
    pub(crate) fn records_with_skipped(&self, out: &mut Vec<Record>) {
        for (k, v) in &self.map {
            let key = encode(k).to_vec();
            v.skipped().keys.records_under(V::SKIPPED, &key, out);
            out.push(Record {
                id: RecordId { kind: V::KIND, key },
                value: lean(v),
            });
        }
    }

    /// [`Tracked::clear_marks`] for values with skipped keys: their keys' marks too.
    pub(crate) fn clear_marks_with_skipped(&mut self) {
        for k in &self.dirty {
            if let Some(v) = self.map.get_mut(k) {
                let skipped = v.skipped_mut();
                skipped.keys.clear_marks();
                skipped.whole = false;
            }
        }
        self.dirty.clear();
    }
}

/// The skipped keys of one value, by position, as read back.
type SkippedOf<V> = BTreeMap<<V as HoldsSkippedKeys>::At, (MessageKeys, u64)>;

/// Values with skipped keys being read back from their records (any order): the values (or their
/// old records), then their skipped keys attached by [`Loading::finish`].
pub(crate) struct Loading<K, V: HoldsSkippedKeys> {
    values: BTreeMap<K, V>,
    skipped: BTreeMap<K, SkippedOf<V>>,
    legacy: BTreeSet<K>,
}

impl<K, V: HoldsSkippedKeys> Default for Loading<K, V> {
    fn default() -> Self {
        Loading {
            values: BTreeMap::new(),
            skipped: BTreeMap::new(),
            legacy: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone + Persist, V: HoldsSkippedKeys> Loading<K, V> {
    /// Reads one record of kind [`HoldsSkippedKeys::KIND`], `SKIPPED` or `LEGACY` (any other kind
    /// is the caller's); `own` names the key a value belongs under, if it says. A key given twice,
    /// or a value under another value's key, is an error.
    pub(crate) fn read(
        &mut self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
        own: impl Fn(&V) -> Option<K>,
    ) -> Result<()> {
        let bad = || -> crate::Error { DecodeError::LengthOutOfRange.into() };
        if kind == V::SKIPPED {
            let mut r = Reader::new(key);
            let owner = K::read(&mut r)?;
            let at = V::At::read(&mut r)?;
            r.finish()?;
            let entry: (MessageKeys, u64) = decode(value)?;
            let keys = self.skipped.entry(owner).or_default();
            if keys.insert(at, entry).is_some() {
                return Err(bad());
            }
            return Ok(());
        }
        let k: K = decode(key)?;
        let v = if kind == V::LEGACY {
            self.legacy.insert(k.clone());
            decode(value)?
        } else {
            let mut r = Reader::new(value);
            let v = V::read_lean(&mut r)?;
            r.finish()?;
            v
        };
        insert_read(&mut self.values, k, v, own)
    }

    /// The values with their skipped keys attached, values read from old records marked as
    /// changed, and the old records to delete. A skipped key of no value, or of a value read from
    /// an old record (which holds its own), is an error.
    pub(crate) fn finish(mut self) -> Result<(Tracked<K, V>, Vec<RecordId>)> {
        for (k, v) in self.values.iter_mut() {
            if !self.legacy.contains(k) {
                let keys = self.skipped.remove(k).unwrap_or_default();
                *v.skipped_mut() = SkippedKeys::loaded(keys);
            }
        }
        if !self.skipped.is_empty() {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let mut values = Tracked::loaded(self.values);
        let mut old = Vec::with_capacity(self.legacy.len());
        for k in self.legacy {
            values.mark(&k);
            old.push(RecordId {
                kind: V::LEGACY,
                key: encode(&k).to_vec(),
            });
        }
        Ok((values, old))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_change_marks_its_key() {
        let mut t: Tracked<u32, u64> = Tracked::default();
        t.insert(1, 10);
        t.insert(2, 20);
        t.insert(3, 30);
        t.clear_marks();
        let mut cs = ChangeSet::default();
        t.changes(RecordKind::Session, &mut cs);
        assert!(cs.is_empty());

        *t.get_mut(&1).unwrap() = 11;
        t.remove(&2);
        t.retain(|k, _| *k != 3);
        t.insert(4, 40);
        assert!(t.get_mut(&9).is_none() && t.remove(&9).is_none());
        let mut cs = ChangeSet::default();
        t.changes(RecordKind::Session, &mut cs);
        let put: Vec<(Vec<u8>, Vec<u8>)> = cs
            .put
            .iter()
            .map(|r| (r.id.key.clone(), r.value.to_vec()))
            .collect();
        assert_eq!(
            put,
            vec![
                (1u32.to_be_bytes().to_vec(), 11u64.to_be_bytes().to_vec()),
                (4u32.to_be_bytes().to_vec(), 40u64.to_be_bytes().to_vec()),
            ]
        );
        let deleted: Vec<Vec<u8>> = cs.delete.iter().map(|d| d.key.clone()).collect();
        assert_eq!(
            deleted,
            vec![2u32.to_be_bytes().to_vec(), 3u32.to_be_bytes().to_vec()]
        );
        assert_eq!((cs.len(), cs.value_bytes()), (4, 16));
        assert!(!cs.is_empty());
        // Only writes, only deletions, only a prefix cleared: not empty either.
        let writes = ChangeSet {
            put: cs.put.clone(),
            ..ChangeSet::default()
        };
        let deletions = ChangeSet {
            delete: cs.delete.clone(),
            ..ChangeSet::default()
        };
        let cleared = ChangeSet {
            clear: cs.delete.clone(),
            ..ChangeSet::default()
        };
        assert!(!writes.is_empty() && !deletions.is_empty() && !cleared.is_empty());
        assert_eq!(cleared.len(), 2);
        assert!(ChangeSet::default().is_empty());
        assert_eq!(t.pop_first(), Some((1, 11)));
        assert_eq!((t.keys().collect::<Vec<_>>(), t.len()), (vec![&4], 1));
    }

    #[test]
    fn a_record_reads_back_once_and_whole() {
        let mut map = BTreeMap::new();
        Tracked::<u32, u64>::read_into(&mut map, &[0, 0, 0, 1], &[0, 0, 0, 0, 0, 0, 0, 7]).unwrap();
        assert_eq!(map.get(&1), Some(&7));
        // The same key twice, a short key, trailing bytes: typed errors.
        assert!(Tracked::<u32, u64>::read_into(&mut map, &[0, 0, 0, 1], &[0; 8]).is_err());
        assert!(Tracked::<u32, u64>::read_into(&mut map, &[0, 0, 1], &[0; 8]).is_err());
        assert!(Tracked::<u32, u64>::read_into(&mut map, &[0, 0, 0, 2], &[0; 9]).is_err());
        let all: Vec<u8> = RecordKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(all, (1..=15).collect::<Vec<u8>>());
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::from_code(k.code()).unwrap(), k);
        }
        assert_eq!(
            RecordKind::from_code(0).unwrap_err().code(),
            "unknown_version"
        );
        assert_eq!(
            RecordKind::from_code(16).unwrap_err().code(),
            "unknown_version"
        );
    }

    #[test]
    fn a_record_debug_shows_no_value() {
        let r = Record {
            id: RecordId {
                kind: RecordKind::Session,
                key: vec![0xab],
            },
            value: Zeroizing::new(vec![0x5e; 3]),
        };
        assert_eq!(
            format!("{r:?}"),
            "Record { kind: Session, key: \"ab\", value_len: 3 }"
        );
    }
}
