//! The device engine: everything one device knows, driven by `send` and `receive` (sans-IO).
//!
//! It ties the pieces together: contacts and their trust (CARD-4, RX-9), the prekeys and the replay
//! cache for first messages (X3DH-6..X3DH-9), sessions found by routing tag (RX-1), simultaneous
//! initiation (RX-10), duplicate suppression (RX-7), and groups (GRP-*).
//!
//! Contract with the shell: [`Device::receive`] returns `Err` only when nothing changed, so the shell
//! can drop (or, if [`crate::Error::is_retryable`], park) the envelope; on `Ok` the shell commits the
//! message and the device state in one transaction and then acknowledges the PUBLISH (RX-4). Problems
//! with a message's *content* found after its keys were consumed come back as [`Event::Rejected`].

use std::collections::{BTreeMap, VecDeque};

use crate::card::{ContactCard, SafetyNumber};
use crate::crypto::{CryptoRng, DhSecret, SignPublic};
use crate::dedup::DeliveredIds;
use crate::envelope::{Envelope, Header};
use crate::error::{Error, GroupError, MisuseError, Result, SessionError};
use crate::group::membership::{Member, Membership};
use crate::group::{Group, GroupEpoch};
use crate::ids::{GroupId, MessageId, UserId};
use crate::inner::{Content, GroupKey};
use crate::keys::{
    Identity, OneTimePreKey, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair,
};
use crate::keyshare::KeyShare;
use crate::limits::{MAX_GROUPS, MAX_OPK_UPLOAD, MAX_SESSIONS_PER_PEER, MAX_SIGNED_PREKEYS};
use crate::persist::{Persist, STATE_VERSION};
use crate::replay::{ReplayCache, Seen};
use crate::session::{Session, SessionSummary};
use crate::signup::SignupRequest;

/// How far a contact's identity is trusted (CARD-4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Trust {
    /// Scanned in person or compared safety numbers.
    Verified,
    /// From the directory or a first message: trust on first use.
    Unverified,
}

/// Something the person should see besides the message itself.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A first message from an unknown user id created an unverified contact (RX-9).
    NewContact(UserId),
    /// The device joined a group, or learned a new epoch of it (GRP-4).
    GroupKey {
        /// The group.
        group: GroupId,
        /// Its epoch.
        epoch: u32,
    },
    /// The admin removed this device from a group; its keys are deleted (GRP-6).
    RemovedFromGroup(GroupId),
    /// A member confirmed holding a group epoch's key (GRP-9).
    MemberConfirmed {
        /// The group.
        group: GroupId,
        /// The epoch.
        epoch: u32,
        /// The member's index.
        index: u8,
    },
    /// The message opened, but its content was refused (for example a group key not from the admin).
    Rejected(Error),
}

/// A message to publish to each recipient's inbox (ID-5).
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Recipients; one for a pairwise message, every other member for a group message (GRP-8).
    pub to: Vec<UserId>,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// The message id a receipt will name (ID-3).
    pub id: MessageId,
    /// The group, for a group message.
    pub group: Option<GroupId>,
}

/// A message received and opened.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The sender.
    pub from: UserId,
    /// The sender's identity key.
    pub identity: SignPublic,
    /// How far the sender is trusted.
    pub trust: Trust,
    /// The message id (ID-3).
    pub id: MessageId,
    /// The sender's server-corrected send time, ms.
    pub sent_at: u64,
    /// What it says.
    pub content: Content,
    /// The group, for a group message.
    pub group: Option<GroupId>,
    /// Things to show besides the message.
    pub events: Vec<Event>,
}

// What a receive path produced before the content is applied.
struct Opening {
    from: UserId,
    group_sender: Option<(GroupId, SignPublic)>,
    opened: crate::session::Opened,
    events: Vec<Event>,
}

#[derive(Clone, Debug)]
struct Contact {
    identity: PublicIdentity,
    trust: Trust,
    bundle: Option<PreKeyBundle>,
    sessions: Vec<u64>,
    sending: Option<u64>,
}

/// One device's protocol state.
#[derive(Clone, Debug)]
pub struct Device {
    user_id: UserId,
    identity: Identity,
    spks: VecDeque<SignedPreKeyPair>,
    opks: BTreeMap<u32, OneTimePreKeyPair>,
    next_opk_id: u32,
    contacts: BTreeMap<UserId, Contact>,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    replay: ReplayCache,
    tags: BTreeMap<[u8; 8], u64>,
    groups: BTreeMap<GroupId, Group>,
    group_tags: BTreeMap<[u8; 8], GroupId>,
    left_groups: BTreeMap<GroupId, u32>,
    delivered: DeliveredIds,
    bucket: usize,
}

impl Device {
    /// A new device with a fresh identity and signed prekey 1, for the user id the membership service
    /// assigned.
    pub fn new(rng: &mut impl CryptoRng, user_id: UserId) -> Self {
        let identity = Identity::generate(rng);
        let spk = identity.new_signed_prekey(rng, 1);
        Device::from_keys(user_id, identity, spk)
    }

    /// A device from existing keys (restored state, vectors).
    pub fn from_keys(user_id: UserId, identity: Identity, spk: SignedPreKeyPair) -> Self {
        Device {
            user_id,
            identity,
            spks: VecDeque::from([spk]),
            opks: BTreeMap::new(),
            next_opk_id: 1,
            contacts: BTreeMap::new(),
            sessions: BTreeMap::new(),
            next_session: 1,
            replay: ReplayCache::default(),
            tags: BTreeMap::new(),
            groups: BTreeMap::new(),
            group_tags: BTreeMap::new(),
            left_groups: BTreeMap::new(),
            delivered: DeliveredIds::default(),
            bucket: 0,
        }
    }

    /// Pads every inner plaintext to a multiple of `bucket` bytes (IN-4); 0 or 1 turns padding off.
    pub fn set_padding(&mut self, bucket: usize) {
        self.bucket = bucket;
    }

    /// This device's user id.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// This device's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    fn current_spk(&self) -> Result<&SignedPreKeyPair> {
        self.spks
            .back()
            .ok_or_else(|| SessionError::UnknownSignedPrekey.into())
    }

    /// The contact card to show (CARD-2).
    pub fn card(&self) -> Result<ContactCard> {
        Ok(ContactCard::new(
            self.user_id,
            *self.identity.public(),
            *self.current_spk()?.public(),
        ))
    }

    /// Rotates the signed prekey (KEY-3); the oldest beyond LIM-9 is deleted with its replay-cache
    /// entries (X3DH-8).
    pub fn rotate_signed_prekey(&mut self, rng: &mut impl CryptoRng) -> Result<()> {
        let id = self
            .current_spk()?
            .public()
            .id()
            .checked_add(1)
            .ok_or(MisuseError::LimitReached)?;
        self.spks
            .push_back(self.identity.new_signed_prekey(rng, id));
        while self.spks.len() > MAX_SIGNED_PREKEYS {
            if let Some(old) = self.spks.pop_front() {
                self.replay.retire_prekey(old.public().id());
            }
        }
        Ok(())
    }

    /// Makes `count` (at most LIM-15) new one-time prekeys and returns their public parts to upload.
    pub fn generate_one_time_prekeys(
        &mut self,
        rng: &mut impl CryptoRng,
        count: usize,
    ) -> Result<Vec<OneTimePreKey>> {
        if count > MAX_OPK_UPLOAD {
            return Err(MisuseError::LimitReached.into());
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let id = self.next_opk_id;
            self.next_opk_id = id.checked_add(1).ok_or(MisuseError::LimitReached)?;
            let pair = OneTimePreKeyPair::generate(rng, id)?;
            out.push(*pair.public());
            self.opks.insert(id, pair);
        }
        Ok(out)
    }

    /// The signup request body (SIGNUP-1) with `opk_count` fresh one-time prekeys.
    pub fn signup_request(
        &mut self,
        rng: &mut impl CryptoRng,
        tls_spki: &[u8],
        opk_count: usize,
        challenge: &[u8],
        difficulty: u8,
    ) -> Result<SignupRequest> {
        let opks = self.generate_one_time_prekeys(rng, opk_count)?;
        let spk = *self.current_spk()?.public();
        SignupRequest::build(&self.identity, tls_spki, &spk, &opks, challenge, difficulty)
    }

    /// This device's bundle as the directory would serve it, with one-time prekey `opk_id` if it is
    /// still unused (for in-memory directories and tests).
    pub fn bundle(&self, opk_id: Option<u32>) -> Result<PreKeyBundle> {
        let opk = opk_id
            .and_then(|id| self.opks.get(&id))
            .map(|o| *o.public());
        Ok(PreKeyBundle::new(
            self.user_id,
            *self.identity.public(),
            *self.current_spk()?.public(),
            opk,
        ))
    }

    /// Adds a one-time prekey with known keys (restored state, vectors).
    pub fn insert_one_time_prekey(&mut self, pair: OneTimePreKeyPair) {
        let id = pair.public().id();
        self.next_opk_id = self.next_opk_id.max(id.saturating_add(1));
        self.opks.insert(id, pair);
    }

    /// Ids of the one-time prekeys not used yet.
    pub fn unused_one_time_prekeys(&self) -> impl Iterator<Item = u32> + '_ {
        self.opks.keys().copied()
    }

    // ------------------------------------------------------------------ contacts (CARD-4, RX-9)

    /// Adds a contact from a card scanned in person: verified (CARD-4). Scanning is the explicit act
    /// that may also replace a changed identity.
    pub fn add_contact_from_card(&mut self, card: &ContactCard) {
        self.set_contact(card.bundle(), Trust::Verified, true);
    }

    /// Adds a contact from a directory bundle: unverified (CARD-4). A known user id with a different
    /// identity is `identity_changed` (RX-9); use [`Device::replace_contact`] to accept it.
    pub fn add_contact_from_bundle(&mut self, bundle: &PreKeyBundle) -> Result<()> {
        if let Some(c) = self.contacts.get(bundle.user_id()) {
            if c.identity.iks() != bundle.identity().iks() {
                return Err(SessionError::IdentityChanged.into());
            }
        }
        self.set_contact(*bundle, Trust::Unverified, false);
        Ok(())
    }

    /// Accepts a changed identity from the directory: the contact becomes unverified and its old
    /// sessions are dropped (RX-9).
    pub fn replace_contact(&mut self, bundle: &PreKeyBundle) {
        self.set_contact(*bundle, Trust::Unverified, true);
    }

    fn set_contact(&mut self, bundle: PreKeyBundle, trust: Trust, replace: bool) {
        let user = *bundle.user_id();
        let same = self
            .contacts
            .get(&user)
            .is_some_and(|c| c.identity.iks() == bundle.identity().iks());
        if same {
            if let Some(c) = self.contacts.get_mut(&user) {
                c.bundle = Some(bundle);
                if trust == Trust::Verified {
                    c.trust = Trust::Verified;
                }
            }
            return;
        }
        if !replace && self.contacts.contains_key(&user) {
            return;
        }
        if let Some(old) = self.contacts.remove(&user) {
            for sid in old.sessions {
                self.drop_session(sid);
            }
        }
        self.contacts.insert(
            user,
            Contact {
                identity: *bundle.identity(),
                trust,
                bundle: Some(bundle),
                sessions: Vec::new(),
                sending: None,
            },
        );
    }

    /// Marks a contact verified after the people compared safety numbers (SAFE-1).
    pub fn mark_verified(&mut self, user: &UserId) -> Result<()> {
        let c = self
            .contacts
            .get_mut(user)
            .ok_or(MisuseError::UnknownPeer)?;
        c.trust = Trust::Verified;
        Ok(())
    }

    /// A contact's trust and identity.
    pub fn contact(&self, user: &UserId) -> Option<(Trust, &PublicIdentity)> {
        self.contacts.get(user).map(|c| (c.trust, &c.identity))
    }

    /// All contacts' user ids.
    pub fn contacts(&self) -> impl Iterator<Item = &UserId> + '_ {
        self.contacts.keys()
    }

    /// The safety number with a contact (SAFE-1).
    pub fn safety_number(&self, user: &UserId) -> Result<SafetyNumber> {
        let c = self.contacts.get(user).ok_or(MisuseError::UnknownPeer)?;
        Ok(SafetyNumber::compute(
            (&self.user_id, self.identity.public().iks()),
            (user, c.identity.iks()),
        ))
    }

    /// The shape of the sending session with a contact.
    pub fn session_summary(&self, user: &UserId) -> Option<SessionSummary> {
        let sid = self.contacts.get(user)?.sending?;
        self.sessions.get(&sid).map(Session::summary)
    }

    /// Every session, oldest first, with its peer and shape (for conformance and diagnostics;
    /// nothing secret).
    pub fn sessions_overview(&self) -> Vec<(UserId, SessionSummary)> {
        self.sessions
            .values()
            .map(|s| (*s.peer_user(), s.summary()))
            .collect()
    }

    /// A data message claiming to come from `peer`, built from this device's own state on its
    /// newest session with `peer` (see [`Session::forge_as_peer`]): what an attacker holding a
    /// leaked copy of this state can send this device. For the conformance replay.
    pub fn forge_data_as(&self, peer: &UserId, now: u64, content: &Content) -> Result<Vec<u8>> {
        let sid = self
            .contacts
            .get(peer)
            .and_then(|c| c.sessions.last().copied())
            .ok_or(MisuseError::UnknownPeer)?;
        let session = self.sessions.get(&sid).ok_or(MisuseError::UnknownPeer)?;
        session.forge_as_peer(now, content, self.bucket)
    }

    // ------------------------------------------------------------------ sending

    /// Seals `content` for `to`, starting a session from the contact's bundle if there is none.
    pub fn send(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        to: &UserId,
        content: &Content,
    ) -> Result<Outgoing> {
        let sid = self.sending_session(rng, now, to)?;
        let bucket = self.bucket;
        let session = self
            .sessions
            .get_mut(&sid)
            .ok_or(MisuseError::UnknownPeer)?;
        let epoch = session.latest_epoch();
        let sealed = session.seal(rng, now, content, bucket)?;
        if session.latest_epoch() != epoch {
            self.reindex(sid);
        }
        Ok(Outgoing {
            to: vec![*to],
            envelope: sealed.bytes,
            id: sealed.id,
            group: None,
        })
    }

    fn sending_session(&mut self, rng: &mut impl CryptoRng, now: u64, to: &UserId) -> Result<u64> {
        let contact = self.contacts.get(to).ok_or(MisuseError::UnknownPeer)?;
        if let Some(sid) = contact.sending {
            return Ok(sid);
        }
        let bundle = contact.bundle.ok_or(MisuseError::UnknownPeer)?;
        let session = Session::initiate(rng, now, &self.user_id, &self.identity, &bundle)?;
        let sid = self.insert_session(session)?;
        if let Some(c) = self.contacts.get_mut(to) {
            c.sending = Some(sid);
            // A one-time prekey is good for one session only.
            if let Some(b) = c.bundle.as_mut() {
                *b = PreKeyBundle::new(*b.user_id(), *b.identity(), *b.signed_prekey(), None);
            }
        }
        Ok(sid)
    }

    /// Adds an existing session (restored state, vectors) as the sending session for its peer, who
    /// must be a contact.
    pub fn adopt_session(&mut self, session: Session) -> Result<()> {
        let user = *session.peer_user();
        if !self.contacts.contains_key(&user) {
            return Err(MisuseError::UnknownPeer.into());
        }
        let sid = self.insert_session(session)?;
        if let Some(c) = self.contacts.get_mut(&user) {
            c.sending = Some(sid);
        }
        Ok(())
    }

    fn insert_session(&mut self, session: Session) -> Result<u64> {
        let sid = self.next_session;
        self.next_session = sid.checked_add(1).ok_or(MisuseError::LimitReached)?;
        let user = *session.peer_user();
        self.sessions.insert(sid, session);
        if let Some(c) = self.contacts.get_mut(&user) {
            c.sessions.push(sid);
            while c.sessions.len() > MAX_SESSIONS_PER_PEER {
                let old = c.sessions.remove(0);
                if c.sending == Some(old) {
                    c.sending = None;
                }
                self.sessions.remove(&old);
                self.tags.retain(|_, s| *s != old);
            }
        }
        self.reindex(sid);
        Ok(sid)
    }

    fn drop_session(&mut self, sid: u64) {
        self.sessions.remove(&sid);
        self.tags.retain(|_, s| *s != sid);
    }

    fn reindex(&mut self, sid: u64) {
        self.tags.retain(|_, s| *s != sid);
        if let Some(session) = self.sessions.get(&sid) {
            for tag in session.routing_tags() {
                self.tags.insert(tag, sid);
            }
        }
    }

    // ------------------------------------------------------------------ receiving

    /// Opens an envelope (RX-1..RX-10). See the module docs for the contract.
    pub fn receive(&mut self, now: u64, bytes: &[u8]) -> Result<Incoming> {
        let env = Envelope::decode(bytes)?;
        let Opening {
            from,
            group_sender,
            opened,
            mut events,
        } = match env.header() {
            Header::First { .. } => self.receive_first(now, &env)?,
            Header::Data { tag, .. } | Header::EpochStart { prev_tag: tag, .. } => {
                let sid = *self.tags.get(tag).ok_or(SessionError::UnknownRoutingTag)?;
                let session = self
                    .sessions
                    .get_mut(&sid)
                    .ok_or(SessionError::UnknownRoutingTag)?;
                let epoch = session.latest_epoch();
                let opened = session.open(now, &env)?;
                let from = *session.peer_user();
                if session.latest_epoch() != epoch {
                    self.reindex(sid);
                }
                Opening {
                    from,
                    group_sender: None,
                    opened,
                    events: Vec::new(),
                }
            }
            Header::Group { tag, index, .. } => {
                let gid = *self.group_tags.get(tag).ok_or(GroupError::UnknownGroup)?;
                let group = self.groups.get_mut(&gid).ok_or(GroupError::UnknownGroup)?;
                let _ = index;
                let (opened, member) = group.open(now, &env)?;
                Opening {
                    from: member.user,
                    group_sender: Some((gid, member.iks)),
                    opened,
                    events: Vec::new(),
                }
            }
        };
        if !self.delivered.insert(opened.id) {
            // The chain consumed the key already, so this cannot happen for an honest sender; report
            // it rather than deliver twice (RX-7).
            events.push(Event::Rejected(SessionError::Duplicate.into()));
        }
        let contact = self
            .contacts
            .get(&from)
            .map(|c| (c.trust, *c.identity.iks()));
        let (trust, identity) = match (group_sender, contact) {
            // A group member is known by the key the admin signed into the membership (GRP-2).
            (Some((_, iks)), Some((trust, known))) if known == iks => (trust, iks),
            (Some((_, iks)), _) => (Trust::Unverified, iks),
            (None, Some(c)) => c,
            (None, None) => return Err(MisuseError::UnknownPeer.into()),
        };
        let group = group_sender.map(|(g, _)| g);
        if group.is_none() {
            if let Err(e) = self.apply_control(&from, &identity, &opened.inner.content, &mut events)
            {
                events.push(Event::Rejected(e));
            }
        }
        Ok(Incoming {
            from,
            identity,
            trust,
            id: opened.id,
            sent_at: opened.sent_at,
            content: opened.inner.content,
            group,
            events,
        })
    }

    fn receive_first(&mut self, now: u64, env: &Envelope<'_>) -> Result<Opening> {
        let Header::First {
            ek, spk_id, opk_id, ..
        } = env.header()
        else {
            return Err(SessionError::UnknownRoutingTag.into());
        };
        if let Seen::Session(sid) = self.replay.check(*spk_id, ek) {
            // X3DH-8: a resend or replay goes to the session it created.
            let session = self
                .sessions
                .get_mut(&sid)
                .ok_or(SessionError::ReplayedFirstMessage)?;
            let opened = session.open(now, env)?;
            let from = *session.peer_user();
            self.reindex(sid);
            return Ok(Opening {
                from,
                group_sender: None,
                opened,
                events: Vec::new(),
            });
        }
        self.replay.ensure_room()?;
        let spk = self
            .spks
            .iter()
            .find(|s| s.public().id() == *spk_id)
            .ok_or(SessionError::UnknownSignedPrekey)?;
        let opk = match *opk_id {
            0 => None,
            id => Some(
                self.opks
                    .get(&id)
                    .ok_or(SessionError::UnknownOneTimePrekey)?,
            ),
        };
        let (session, opened) = Session::accept_first(now, &self.identity, spk, opk, env)?;
        let from = *session.peer_user();
        let peer = *session.peer_identity();
        let mut events = Vec::new();
        // RX-9: never silently accept a changed identity.
        match self.contacts.get(&from) {
            Some(c) if c.identity.iks() != peer.iks() => {
                return Err(SessionError::IdentityChanged.into());
            }
            Some(_) => {}
            None => {
                self.contacts.insert(
                    from,
                    Contact {
                        identity: peer,
                        trust: Trust::Unverified,
                        bundle: None,
                        sessions: Vec::new(),
                        sending: None,
                    },
                );
                events.push(Event::NewContact(from));
            }
        }
        // Commit (RX-3, X3DH-8, X3DH-9).
        let our_iks = *self.identity.public().iks();
        let sid = self.insert_session(session)?;
        self.replay.insert(*spk_id, ek, sid)?;
        if *opk_id != 0 {
            self.opks.remove(opk_id);
        }
        self.choose_sending_session(&from, sid, &our_iks, &peer);
        Ok(Opening {
            from,
            group_sender: None,
            opened,
            events,
        })
    }

    // RX-10: which session to send on after a new inbound session.
    fn choose_sending_session(
        &mut self,
        from: &UserId,
        new_sid: u64,
        our_iks: &SignPublic,
        peer: &PublicIdentity,
    ) {
        let current = self.contacts.get(from).and_then(|c| c.sending);
        let keep_ours = current.is_some_and(|sid| {
            self.sessions
                .get(&sid)
                .is_some_and(|s| s.is_initiator() && !s.heard_from_peer())
                && our_iks < peer.iks()
        });
        if let Some(c) = self.contacts.get_mut(from) {
            if !keep_ours {
                c.sending = Some(new_sid);
            }
        }
    }

    // ------------------------------------------------------------------ groups (GRP-*)

    fn apply_control(
        &mut self,
        from: &UserId,
        from_iks: &SignPublic,
        content: &Content,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        match content {
            Content::GroupKey(gk) => self.install_group_key(from_iks, gk, events),
            Content::GroupRemoved(m) => {
                let group = self.groups.get(m.group()).ok_or(GroupError::UnknownGroup)?;
                check_from_admin(m, from_iks)?;
                group.check_removal(m)?;
                if m.index_of(&self.user_id).is_some() {
                    return Err(GroupError::NotAMember.into());
                }
                let gid = *m.group();
                self.groups.remove(&gid);
                self.group_tags.retain(|_, g| *g != gid);
                // Remember the removal so that a late, older group key cannot bring the group back.
                self.left_groups.insert(gid, m.epoch());
                while self.left_groups.len() > MAX_GROUPS {
                    self.left_groups.pop_first();
                }
                events.push(Event::RemovedFromGroup(gid));
                Ok(())
            }
            Content::GroupAck(ack) => {
                let group = self
                    .groups
                    .get(&ack.group)
                    .ok_or(GroupError::UnknownGroup)?;
                let epoch = group.current();
                let member = epoch
                    .membership()
                    .member(ack.index)
                    .ok_or(GroupError::NotAMember)?;
                if !group.is_admin() || member.user != *from || !epoch.check_ack(ack) {
                    return Err(GroupError::NotAMember.into());
                }
                events.push(Event::MemberConfirmed {
                    group: ack.group,
                    epoch: ack.epoch,
                    index: ack.index,
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn install_group_key(
        &mut self,
        from_iks: &SignPublic,
        gk: &GroupKey,
        events: &mut Vec<Event>,
    ) -> Result<()> {
        let m = &gk.membership;
        check_from_admin(m, from_iks)?;
        let index = m.index_of(&self.user_id).ok_or(GroupError::NotAMember)?;
        if m.member(index).map(|x| x.iks) != Some(*self.identity.public().iks()) {
            return Err(GroupError::NotAMember.into());
        }
        let gid = *m.group();
        if self
            .left_groups
            .get(&gid)
            .is_some_and(|left| m.epoch() <= *left)
        {
            return Err(GroupError::StaleGroupEpoch.into());
        }
        let epoch = GroupEpoch::new(m.clone(), gk.keys.clone(), index);
        let number = epoch.epoch();
        match self.groups.get_mut(&gid) {
            Some(group) => group.install(epoch)?,
            None => {
                if self.groups.len() >= MAX_GROUPS {
                    return Err(MisuseError::LimitReached.into());
                }
                self.groups.insert(gid, Group::new(epoch));
            }
        }
        self.reindex_group(&gid);
        events.push(Event::GroupKey {
            group: gid,
            epoch: number,
        });
        Ok(())
    }

    fn reindex_group(&mut self, gid: &GroupId) {
        self.group_tags.retain(|_, g| g != gid);
        if let Some(group) = self.groups.get(gid) {
            for tag in group.tags() {
                self.group_tags.insert(tag, *gid);
            }
        }
    }

    fn member_of(&self, user: &UserId) -> Result<Member> {
        if *user == self.user_id {
            return Ok(Member {
                user: self.user_id,
                iks: *self.identity.public().iks(),
            });
        }
        let c = self.contacts.get(user).ok_or(MisuseError::UnknownPeer)?;
        Ok(Member {
            user: *user,
            iks: *c.identity.iks(),
        })
    }

    /// Creates a group with this device as admin and sends its key to every member (GRP-1, GRP-3).
    pub fn create_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        members: &[UserId],
    ) -> Result<(GroupId, Vec<Outgoing>)> {
        if self.groups.len() >= MAX_GROUPS {
            return Err(MisuseError::LimitReached.into());
        }
        let mut list = vec![self.member_of(&self.user_id.clone())?];
        for u in members {
            if *u != self.user_id {
                list.push(self.member_of(u)?);
            }
        }
        let gid = GroupId::random(rng);
        let membership = Membership::sign(&self.identity, gid, 0, list)?;
        let epoch = GroupEpoch::new(membership, KeyShare::random(rng, now), 0);
        let out = self.distribute(rng, now, &epoch, &[])?;
        self.groups.insert(gid, Group::new(epoch));
        self.reindex_group(&gid);
        Ok((gid, out))
    }

    /// Adds a member: a new epoch with fresh keys for everyone (GRP-6).
    pub fn add_to_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        user: &UserId,
    ) -> Result<Vec<Outgoing>> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let mut list = group.current().membership().members().to_vec();
        if list.iter().any(|m| m.user == *user) {
            return Ok(Vec::new());
        }
        list.push(self.member_of(user)?);
        self.rekey(rng, now, gid, list, &[])
    }

    /// Removes a member: a new epoch without them, and a removal notice to them (GRP-6).
    pub fn remove_from_group(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        user: &UserId,
    ) -> Result<Vec<Outgoing>> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let list: Vec<Member> = group
            .current()
            .membership()
            .members()
            .iter()
            .filter(|m| m.user != *user)
            .copied()
            .collect();
        if *user == self.user_id {
            return Err(GroupError::NotGroupAdmin.into());
        }
        self.rekey(rng, now, gid, list, &[*user])
    }

    fn rekey(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
        list: Vec<Member>,
        removed: &[UserId],
    ) -> Result<Vec<Outgoing>> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let next = group.rekey(&self.identity, list, KeyShare::random(rng, now))?;
        let out = self.distribute(rng, now, &next, removed)?;
        if let Some(group) = self.groups.get_mut(gid) {
            group.install(next)?;
        }
        self.reindex_group(gid);
        Ok(out)
    }

    // Sends the group key to every member but self, and the removal notice to `removed`.
    fn distribute(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        epoch: &GroupEpoch,
        removed: &[UserId],
    ) -> Result<Vec<Outgoing>> {
        let key = Content::GroupKey(Box::new(epoch.group_key()));
        let notice = Content::GroupRemoved(Box::new(epoch.membership().clone()));
        let mut out = Vec::new();
        for m in epoch.membership().members() {
            if m.user != self.user_id {
                out.push(self.send(rng, now, &m.user, &key)?);
            }
        }
        for u in removed {
            out.push(self.send(rng, now, u, &notice)?);
        }
        Ok(out)
    }

    /// The confirmation to send the admin after joining an epoch (GRP-9).
    pub fn group_ack(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        gid: &GroupId,
    ) -> Result<Outgoing> {
        let group = self.groups.get(gid).ok_or(GroupError::UnknownGroup)?;
        let ack = group.current().ack();
        let admin = group
            .current()
            .membership()
            .admin()
            .map(|m| m.user)
            .ok_or(GroupError::UnknownGroup)?;
        self.send(rng, now, &admin, &Content::GroupAck(ack))
    }

    /// Sends to a group: one envelope for every other member's inbox (GRP-7, GRP-8).
    pub fn send_group(&mut self, now: u64, gid: &GroupId, content: &Content) -> Result<Outgoing> {
        let bucket = self.bucket;
        let group = self.groups.get_mut(gid).ok_or(GroupError::UnknownGroup)?;
        let sealed = group.seal(&self.identity, now, content, bucket)?;
        let to = group
            .current()
            .membership()
            .members()
            .iter()
            .filter(|m| m.user != self.user_id)
            .map(|m| m.user)
            .collect();
        Ok(Outgoing {
            to,
            envelope: sealed.bytes,
            id: sealed.id,
            group: Some(*gid),
        })
    }

    /// The members of a group (admin first) and its epoch.
    pub fn group_members(&self, gid: &GroupId) -> Option<(u32, Vec<UserId>)> {
        self.groups.get(gid).map(|g| {
            (
                g.current().epoch(),
                g.current()
                    .membership()
                    .members()
                    .iter()
                    .map(|m| m.user)
                    .collect(),
            )
        })
    }

    /// The groups this device is in.
    pub fn groups(&self) -> impl Iterator<Item = &GroupId> + '_ {
        self.groups.keys()
    }
}

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

fn check_from_admin(m: &Membership, from_iks: &SignPublic) -> Result<()> {
    if m.admin().map(|a| &a.iks) != Some(from_iks) {
        return Err(GroupError::NotGroupAdmin.into());
    }
    Ok(())
}
