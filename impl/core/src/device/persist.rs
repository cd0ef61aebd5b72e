//! The whole device state as bytes ([`Device::export`]) and back ([`Device::import`]), kept only
//! in the encrypted store (STORE-1); the encoding of the contact records it holds.

use std::collections::{BTreeMap, VecDeque};

use crate::crypto::DhSecret;
use crate::dedup::DeliveredIds;
use crate::error::Result;
use crate::group::Group;
use crate::ids::{GroupId, UserId};
use crate::keys::{Identity, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair};
use crate::persist::{Persist, STATE_VERSION};
use crate::replay::ReplayCache;
use crate::session::Session;

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

impl Device {
    /// The whole device state as bytes (keys, contacts, sessions, groups, caches), to be kept only in
    /// the encrypted store (STORE-1). Restore it with [`Device::import`].
    pub fn export(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut w = crate::codec::Writer::with_capacity(64 * 1024);
        w.u8(STATE_VERSION);
        self.user_id.write(&mut w);
        self.identity.signing().to_seed().write(&mut w);
        self.identity.dh().write(&mut w);
        let spks: Vec<(u32, DhSecret)> = self
            .spks
            .iter()
            .map(|s| (s.public().id(), s.secret().clone()))
            .collect();
        spks.write(&mut w);
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
        zeroize::Zeroizing::new(w.into_vec())
    }

    /// Restores a device from [`Device::export`]: a corrupted state is a typed error.
    pub fn import(bytes: &[u8]) -> Result<Self> {
        let mut r = crate::codec::Reader::new(bytes);
        if r.u8()? != STATE_VERSION {
            return Err(crate::error::DecodeError::UnknownVersion.into());
        }
        let user_id = UserId::read(&mut r)?;
        let seed: crate::crypto::Secret<32> = Persist::read(&mut r)?;
        let dh = DhSecret::read(&mut r)?;
        let identity =
            Identity::from_secrets(crate::crypto::SignSecret::from_seed(*seed.expose()), dh);
        let spks: Vec<(u32, DhSecret)> = Persist::read(&mut r)?;
        let spks: VecDeque<SignedPreKeyPair> = spks
            .into_iter()
            .map(|(id, s)| identity.signed_prekey_from(id, s))
            .collect();
        if spks.is_empty() {
            return Err(crate::error::DecodeError::LengthOutOfRange.into());
        }
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
        r.finish()?;
        let mut d = Device {
            user_id,
            identity,
            spks,
            opks,
            next_opk_id,
            contacts: contacts.into_iter().collect(),
            sessions: sessions.into_iter().collect(),
            next_session,
            replay,
            tags: BTreeMap::new(),
            groups: groups.into_iter().map(|g| (*g.id(), g)).collect(),
            group_tags: BTreeMap::new(),
            left_groups: left_groups.into_iter().collect(),
            delivered,
            bucket,
        };
        let sids: Vec<u64> = d.sessions.keys().copied().collect();
        for sid in sids {
            d.reindex(sid);
        }
        let gids: Vec<GroupId> = d.groups.keys().copied().collect();
        for gid in gids {
            d.reindex_group(&gid);
        }
        Ok(d)
    }
}
