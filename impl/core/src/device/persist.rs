//! The whole device state as bytes ([`Device::export`]) and back ([`Device::import`]), and as
//! records ([`Device::records`], [`Device::from_records`]) with the change set of each step
//! ([`Device::changes`], [`Device::mark_committed`]); both kept only in the encrypted store
//! (STORE-1). The encoding of the contact and one-time prekey records.

use std::collections::{BTreeMap, VecDeque};

use crate::crypto::DhSecret;
use crate::dedup::DeliveredIds;
use crate::error::Result;
use crate::group::Group;
use crate::group::handover::Handover;
use crate::ids::{GroupId, UserId};
use crate::keys::{Identity, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair};
use crate::persist::{Persist, STATE_VERSION, STATE_VERSION_1, STATE_VERSION_2};
use crate::records::{ChangeSet, Loading, Record, RecordId, RecordKind, Tracked};
use crate::replay::ReplayCache;
use crate::session::Session;

use super::contacts::Blocked;
use super::{Contact, Device, Trust};

impl Persist for Trust {
    fn write(&self, w: &mut crate::codec::Writer) {
        w.u8(match self {
            Trust::Verified => 1,
            Trust::Unverified => 0,
        });
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        match r.u8()? {
            1 => Ok(Trust::Verified),
            0 => Ok(Trust::Unverified),
            _ => Err(crate::error::DecodeError::LengthOutOfRange.into()),
        }
    }
}

impl Persist for Contact {
    fn write(&self, w: &mut crate::codec::Writer) {
        self.identity.write(w);
        self.trust.write(w);
        self.bundle.map(|b| b.to_bytes()).write(w);
        self.sessions.write(w);
        self.sending.write(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let identity = PublicIdentity::read(r)?;
        let trust = Trust::read(r)?;
        let bundle = match Option::<Vec<u8>>::read(r)? {
            Some(b) => Some(PreKeyBundle::from_bytes(&b)?),
            None => None,
        };
        Ok(Contact {
            identity,
            trust,
            bundle,
            sessions: Persist::read(r)?,
            sending: Persist::read(r)?,
        })
    }
}

impl Persist for OneTimePreKeyPair {
    fn write(&self, w: &mut crate::codec::Writer) {
        self.public().id().write(w);
        self.secret().write(w);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let id = u32::read(r)?;
        OneTimePreKeyPair::from_secret(id, DhSecret::read(r)?)
    }
}

/// Version of the [`RecordKind::Meta`] record's layout (the first byte of its value).
pub const RECORDS_VERSION: u8 = 0x01;

/// The identity and counters: the [`RecordKind::Meta`] record.
struct Meta {
    user_id: UserId,
    identity: Identity,
    spks: VecDeque<SignedPreKeyPair>,
    next_opk_id: u32,
    next_session: u64,
    bucket: usize,
}

impl Device {
    /// The [`RecordKind::Meta`] record's value.
    fn meta(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = crate::codec::Writer::with_capacity(512);
        w.u8(RECORDS_VERSION);
        self.write_keys(&mut w);
        self.next_opk_id.write(&mut w);
        self.next_session.write(&mut w);
        u32::try_from(self.bucket).unwrap_or(u32::MAX).write(&mut w);
        zeroize::Zeroizing::new(w.into_vec())
    }

    fn read_meta(bytes: &[u8]) -> Result<Meta> {
        let mut r = crate::codec::Reader::new(bytes);
        if r.u8()? != RECORDS_VERSION {
            return Err(crate::error::DecodeError::UnknownVersion.into());
        }
        let (user_id, identity, spks) = Device::read_keys(&mut r)?;
        let next_opk_id = u32::read(&mut r)?;
        let next_session = u64::read(&mut r)?;
        let bucket = usize::try_from(u32::read(&mut r)?).unwrap_or(0);
        r.finish()?;
        Ok(Meta {
            user_id,
            identity,
            spks,
            next_opk_id,
            next_session,
            bucket,
        })
    }

    /// The user id, the identity's secrets and the signed prekeys: how both the whole state
    /// ([`Device::export`]) and the identity-and-counters record begin.
    fn write_keys(&self, w: &mut crate::codec::Writer) {
        self.user_id.write(w);
        self.identity.signing().to_seed().write(w);
        self.identity.dh().write(w);
        let spks: Vec<(u32, DhSecret)> = self
            .spks
            .iter()
            .map(|s| (s.public().id(), s.secret().clone()))
            .collect();
        spks.write(w);
    }

    /// Reads what [`Device::write_keys`] wrote; no signed prekey is an error.
    fn read_keys(
        r: &mut crate::codec::Reader<'_>,
    ) -> Result<(UserId, Identity, VecDeque<SignedPreKeyPair>)> {
        let user_id = UserId::read(r)?;
        let seed: crate::crypto::Secret<32> = Persist::read(r)?;
        let dh = DhSecret::read(r)?;
        let identity =
            Identity::from_secrets(crate::crypto::SignSecret::from_seed(*seed.expose()), dh);
        let spks: Vec<(u32, DhSecret)> = Persist::read(r)?;
        let spks: VecDeque<SignedPreKeyPair> = spks
            .into_iter()
            .map(|(id, s)| identity.signed_prekey_from(id, s))
            .collect();
        if spks.is_empty() {
            return Err(crate::error::DecodeError::LengthOutOfRange.into());
        }
        Ok((user_id, identity, spks))
    }

    /// The [`RecordKind::Meta`] record.
    fn meta_record(&self) -> Record {
        Record {
            id: RecordId {
                kind: RecordKind::Meta,
                key: Vec::new(),
            },
            value: self.meta(),
        }
    }

    /// What changed since the device was created, imported or last committed
    /// ([`Device::mark_committed`]), as records to write and delete: a commit writes only these.
    /// A device from [`Device::new`] or [`Device::import`] reports every record it holds; one from
    /// [`Device::from_records`] reports nothing until it changes.
    pub fn changes(&self) -> ChangeSet {
        let mut cs = ChangeSet::default();
        let meta = self.meta_record();
        if self.meta_committed != Some(crate::crypto::sha256(&[&meta.value])) {
            cs.put.push(meta);
        }
        self.opks.changes(RecordKind::OneTimePrekey, &mut cs);
        self.contacts.changes(RecordKind::Contact, &mut cs);
        self.sessions.changes_with_skipped(&mut cs);
        self.groups.changes_with_skipped(&mut cs);
        self.left_groups.changes(RecordKind::LeftGroup, &mut cs);
        self.blocked.changes(RecordKind::Blocked, &mut cs);
        self.handovers.changes(RecordKind::Handover, &mut cs);
        self.leaving.changes(RecordKind::Leaving, &mut cs);
        self.replay.changes(&mut cs);
        self.delivered.changes(&mut cs);
        cs.delete.extend(self.legacy.iter().cloned());
        cs
    }

    /// Records that the last [`Device::changes`] reached the store: the next change set starts
    /// from here. Call it only after the transaction that wrote them committed; if it failed, the
    /// next change set still carries everything (or reload the device from the store).
    pub fn mark_committed(&mut self) {
        self.meta_committed = Some(crate::crypto::sha256(&[&self.meta()]));
        self.opks.clear_marks();
        self.contacts.clear_marks();
        self.sessions.clear_marks_with_skipped();
        self.groups.clear_marks_with_skipped();
        self.left_groups.clear_marks();
        self.blocked.clear_marks();
        self.handovers.clear_marks();
        self.leaving.clear_marks();
        self.replay.clear_marks();
        self.delivered.clear_marks();
        self.legacy.clear();
    }

    /// The whole state as records (a new store, a migration from [`Device::export`]'s blob).
    pub fn records(&self) -> Vec<Record> {
        let mut out = vec![self.meta_record()];
        self.opks.records(RecordKind::OneTimePrekey, &mut out);
        self.contacts.records(RecordKind::Contact, &mut out);
        self.sessions.records_with_skipped(&mut out);
        self.groups.records_with_skipped(&mut out);
        self.left_groups.records(RecordKind::LeftGroup, &mut out);
        self.blocked.records(RecordKind::Blocked, &mut out);
        self.handovers.records(RecordKind::Handover, &mut out);
        self.leaving.records(RecordKind::Leaving, &mut out);
        self.replay.records(&mut out);
        self.delivered.records(&mut out);
        out
    }

    /// Restores a device from its records `(kind code, key, value)`, in any order; nothing is
    /// marked as changed, except the sessions and groups read from old records that held their
    /// skipped keys ([`RecordKind::LegacySession`], [`RecordKind::LegacyGroup`]): the next change
    /// set rewrites them as records of today's kinds and deletes the old ones. A missing or
    /// repeated identity record, an unknown kind, a record that does not decode, a group stored
    /// under another group's id, or a skipped key of no session or group is a typed error.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = (u8, &'a [u8], &'a [u8])>,
    ) -> Result<Self> {
        let bad = || -> crate::Error { crate::error::DecodeError::LengthOutOfRange.into() };
        let mut meta = None;
        let mut opks = BTreeMap::new();
        let mut contacts = BTreeMap::new();
        let mut sessions: Loading<u64, Session> = Loading::default();
        let mut groups: Loading<GroupId, Group> = Loading::default();
        let mut left = BTreeMap::new();
        let mut blocked = BTreeMap::new();
        let mut handovers = BTreeMap::new();
        let mut leaving = BTreeMap::new();
        let mut replay = BTreeMap::new();
        let mut delivered = BTreeMap::new();
        for (kind, key, value) in records {
            match RecordKind::from_code(kind)? {
                RecordKind::Meta => {
                    if !key.is_empty() || meta.is_some() {
                        return Err(bad());
                    }
                    meta = Some(Device::read_meta(value)?);
                }
                RecordKind::OneTimePrekey => {
                    Tracked::read_own_key(&mut opks, key, value, |p: &OneTimePreKeyPair| {
                        Some(p.public().id())
                    })?
                }
                RecordKind::Contact => Tracked::read_into(&mut contacts, key, value)?,
                k @ (RecordKind::Session
                | RecordKind::SessionSkippedKey
                | RecordKind::LegacySession) => sessions.read(k, key, value, |_| None)?,
                k @ (RecordKind::Group | RecordKind::GroupSkippedKey | RecordKind::LegacyGroup) => {
                    groups.read(k, key, value, |g: &Group| Some(*g.id()))?
                }
                RecordKind::LeftGroup => Tracked::read_into(&mut left, key, value)?,
                RecordKind::Blocked => Tracked::read_into(&mut blocked, key, value)?,
                RecordKind::Handover => Tracked::read_into(&mut handovers, key, value)?,
                RecordKind::Leaving => Tracked::read_into(&mut leaving, key, value)?,
                RecordKind::ReplayEntry => Tracked::read_into(&mut replay, key, value)?,
                RecordKind::DeliveredId => Tracked::read_into(&mut delivered, key, value)?,
            }
        }
        let meta = meta.ok_or_else(bad)?;
        let (sessions, mut legacy) = sessions.finish()?;
        let (groups, legacy_groups) = groups.finish()?;
        legacy.extend(legacy_groups);
        let mut d = Device {
            user_id: meta.user_id,
            identity: meta.identity,
            spks: meta.spks,
            opks: Tracked::loaded(opks),
            next_opk_id: meta.next_opk_id,
            contacts: Tracked::loaded(contacts),
            sessions,
            next_session: meta.next_session,
            replay: ReplayCache::loaded(replay),
            tags: BTreeMap::new(),
            groups,
            group_tags: BTreeMap::new(),
            left_groups: Tracked::loaded(left),
            blocked: Tracked::loaded(blocked),
            handovers: Tracked::loaded(handovers),
            leaving: Tracked::loaded(leaving),
            delivered: DeliveredIds::loaded(delivered)?,
            bucket: meta.bucket,
            meta_committed: None,
            legacy,
        };
        d.meta_committed = Some(crate::crypto::sha256(&[&d.meta()]));
        d.reindex_all();
        Ok(d)
    }

    fn reindex_all(&mut self) {
        let sids: Vec<u64> = self.sessions.keys().copied().collect();
        for sid in sids {
            self.reindex(sid);
        }
        let gids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in gids {
            self.reindex_group(&gid);
        }
    }

    /// The whole device state as bytes (keys, contacts, sessions, groups, caches), to be kept only in
    /// the encrypted store (STORE-1). Restore it with [`Device::import`].
    pub fn export(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = crate::codec::Writer::with_capacity(64 * 1024);
        w.u8(STATE_VERSION);
        self.write_keys(&mut w);
        let opks: Vec<(u32, DhSecret)> = self
            .opks
            .iter()
            .map(|(id, o)| (*id, o.secret().clone()))
            .collect();
        opks.write(&mut w);
        self.next_opk_id.write(&mut w);
        let contacts: Vec<(UserId, Contact)> =
            self.contacts.iter().map(|(u, c)| (*u, c.clone())).collect();
        contacts.write(&mut w);
        let sessions: Vec<(u64, Session)> = self
            .sessions
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        sessions.write(&mut w);
        self.next_session.write(&mut w);
        self.replay.write(&mut w);
        let groups: Vec<Group> = self.groups.values().cloned().collect();
        groups.write(&mut w);
        let left: Vec<(GroupId, u32)> = self.left_groups.iter().map(|(g, e)| (*g, *e)).collect();
        left.write(&mut w);
        self.delivered.write(&mut w);
        u32::try_from(self.bucket).unwrap_or(u32::MAX).write(&mut w);
        let blocked: Vec<UserId> = self.blocked.keys().copied().collect();
        blocked.write(&mut w);
        let handovers: Vec<(GroupId, Handover)> =
            self.handovers.iter().map(|(g, h)| (*g, *h)).collect();
        handovers.write(&mut w);
        let leaving: Vec<(GroupId, u32)> = self.leaving.iter().map(|(g, e)| (*g, *e)).collect();
        leaving.write(&mut w);
        zeroize::Zeroizing::new(w.into_vec())
    }

    /// Restores a device from [`Device::export`]: a corrupted state is a typed error. Every record
    /// of the device counts as changed ([`Device::changes`]), so a store that moves from the blob
    /// to records writes them all.
    pub fn import(bytes: &[u8]) -> Result<Self> {
        let mut r = crate::codec::Reader::new(bytes);
        let version = r.u8()?;
        if ![STATE_VERSION, STATE_VERSION_2, STATE_VERSION_1].contains(&version) {
            return Err(crate::error::DecodeError::UnknownVersion.into());
        }
        let (user_id, identity, spks) = Device::read_keys(&mut r)?;
        let opks: Vec<(u32, DhSecret)> = Persist::read(&mut r)?;
        let opks = opks
            .into_iter()
            .map(|(id, s)| OneTimePreKeyPair::from_secret(id, s).map(|p| (id, p)))
            .collect::<Result<BTreeMap<_, _>>>()?;
        let next_opk_id = u32::read(&mut r)?;
        let contacts: Vec<(UserId, Contact)> = Persist::read(&mut r)?;
        let sessions: Vec<(u64, Session)> = Persist::read(&mut r)?;
        let next_session = u64::read(&mut r)?;
        let replay = ReplayCache::read(&mut r)?;
        let groups: Vec<Group> = Persist::read(&mut r)?;
        let left_groups: Vec<(GroupId, u32)> = Persist::read(&mut r)?;
        let delivered = DeliveredIds::read(&mut r)?;
        let bucket = usize::try_from(u32::read(&mut r)?).unwrap_or(0);
        // Blocked user ids (RX-11) came with version 2: a version 1 state ends here.
        let blocked: Vec<UserId> = if version == STATE_VERSION_1 {
            Vec::new()
        } else {
            Persist::read(&mut r)?
        };
        // Group handovers (GRP-12) and leaves awaiting their removal notice (GRP-11) came with
        // version 3.
        let mut handovers: Vec<(GroupId, Handover)> = Vec::new();
        let mut leaving: Vec<(GroupId, u32)> = Vec::new();
        if version == STATE_VERSION {
            handovers = Persist::read(&mut r)?;
            leaving = Persist::read(&mut r)?;
        }
        r.finish()?;
        let mut d = Device {
            user_id,
            identity,
            spks,
            opks: Tracked::all_marked(opks),
            next_opk_id,
            contacts: Tracked::all_marked(contacts.into_iter().collect()),
            sessions: Tracked::all_marked(sessions.into_iter().collect()),
            next_session,
            replay,
            tags: BTreeMap::new(),
            groups: Tracked::all_marked(groups.into_iter().map(|g| (*g.id(), g)).collect()),
            group_tags: BTreeMap::new(),
            left_groups: Tracked::all_marked(left_groups.into_iter().collect()),
            blocked: Tracked::all_marked(blocked.into_iter().map(|u| (u, Blocked)).collect()),
            handovers: Tracked::all_marked(handovers.into_iter().collect()),
            leaving: Tracked::all_marked(leaving.into_iter().collect()),
            delivered,
            bucket,
            meta_committed: None,
            legacy: Vec::new(),
        };
        d.reindex_all();
        Ok(d)
    }
}

#[cfg(feature = "test-utils")]
impl Device {
    /// The records as stores before schema version 7 held them: sessions and groups with their
    /// skipped keys inside ([`RecordKind::LegacySession`], [`RecordKind::LegacyGroup`]), to test
    /// that they are read and rewritten (feature `test-utils`).
    pub fn legacy_records(&self) -> Vec<Record> {
        let mut out: Vec<Record> = self
            .records()
            .into_iter()
            .filter(|r| {
                !matches!(
                    r.id.kind,
                    RecordKind::Session
                        | RecordKind::Group
                        | RecordKind::SessionSkippedKey
                        | RecordKind::GroupSkippedKey
                )
            })
            .collect();
        self.sessions.records(RecordKind::LegacySession, &mut out);
        self.groups.records(RecordKind::LegacyGroup, &mut out);
        out
    }
}
