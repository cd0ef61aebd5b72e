//! Pairwise messages: sending on a contact's session (starting one from its bundle if needed),
//! receiving by routing tag (RX-1), first messages with the replay cache (X3DH-6..X3DH-9), the
//! choice of the sending session after simultaneous initiation (RX-10), and duplicate
//! suppression (RX-7). Control messages go on to [`super::groups`].

use crate::crypto::{CryptoRng, SignPublic};
use crate::envelope::{Envelope, Header};
use crate::error::{GroupError, MisuseError, Result, SessionError};
use crate::ids::{GroupId, UserId};
use crate::inner::Content;
use crate::keys::{OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair};
use crate::limits::MAX_SESSIONS_PER_PEER;
use crate::replay::Seen;
use crate::session::Session;

use super::{Contact, Device, Event, Incoming, Outgoing, Trust};

// What a receive path produced before the content is applied.
struct Opening {
    from: UserId,
    group_sender: Option<(GroupId, SignPublic)>,
    opened: crate::session::Opened,
    events: Vec<Event>,
}

impl Device {
    /// Seals `content` for `to`, starting a session from the contact's bundle if there is none.
    pub fn send(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        to: &UserId,
        content: &Content,
    ) -> Result<Outgoing> {
        self.refuse_blocked(to)?;
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
            while c.sessions.len() > MAX_SESSIONS_PER_PEER
                && !mutated!(Mutation::SkipSessionsPerPeerBound)
            {
                // Every caller chooses the sending session right after (`sending_session`,
                // `adopt_session`, `choose_sending_session`, which never keeps a dropped one).
                let old = c.sessions.remove(0);
                self.sessions.remove(&old);
                self.tags.retain(|_, s| *s != old);
            }
        }
        self.reindex(sid);
        Ok(sid)
    }

    pub(super) fn drop_session(&mut self, sid: u64) {
        self.sessions.remove(&sid);
        self.tags.retain(|_, s| *s != sid);
    }

    pub(super) fn reindex(&mut self, sid: u64) {
        self.tags.retain(|_, s| *s != sid);
        if let Some(session) = self.sessions.get(&sid) {
            for tag in session.routing_tags() {
                self.tags.insert(tag, sid);
            }
        }
    }

    /// Opens an envelope (RX-1..RX-10). See the module docs for the contract.
    pub fn receive(&mut self, now: u64, bytes: &[u8]) -> Result<Incoming> {
        let env = Envelope::decode(bytes)?;
        // Keys that may open parked envelopes (RX-8): a new session or a new epoch.
        let sessions_before = self.next_session;
        let mut new_epoch = false;
        let Opening {
            from,
            group_sender,
            opened,
            mut events,
        } = match env.header() {
            Header::First { .. } => self.receive_first(now, &env)?,
            Header::Data { tag, .. } | Header::EpochStart { prev_tag: tag, .. } => {
                let sid = *self.tags.get(tag).ok_or(SessionError::UnknownRoutingTag)?;
                if let Some(peer) = self.sessions.get(&sid).map(|s| *s.peer_user()) {
                    self.refuse_blocked(&peer)?;
                }
                let session = self
                    .sessions
                    .get_mut(&sid)
                    .ok_or(SessionError::UnknownRoutingTag)?;
                let epoch = session.latest_epoch();
                let opened = session.open(now, &env)?;
                let from = *session.peer_user();
                if session.latest_epoch() != epoch {
                    new_epoch = true;
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
                if let Some(sender) = self.groups.get(&gid).and_then(|g| g.sender(tag, *index)) {
                    self.refuse_blocked(&sender)?;
                }
                let group = self.groups.get_mut(&gid).ok_or(GroupError::UnknownGroup)?;
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
        let new_keys = new_epoch
            || self.next_session != sessions_before
            || events.iter().any(|e| matches!(e, Event::GroupKey { .. }));
        Ok(Incoming {
            from,
            identity,
            trust,
            id: opened.id,
            sent_at: opened.sent_at,
            content: opened.inner.content,
            group,
            events,
            new_keys,
        })
    }

    /// The signed prekey and one-time prekey a first message names (X3DH-6).
    pub(super) fn first_message_keys(
        &self,
        env: &Envelope<'_>,
    ) -> Result<(&SignedPreKeyPair, Option<&OneTimePreKeyPair>)> {
        let Header::First { spk_id, opk_id, .. } = env.header() else {
            return Err(SessionError::UnknownRoutingTag.into());
        };
        let spk = self
            .spks
            .iter()
            .find(|s| s.public().id() == *spk_id || mutated!(Mutation::AnySignedPrekey))
            .ok_or(SessionError::UnknownSignedPrekey)?;
        let opk = match *opk_id {
            0 => None,
            id => Some(
                self.opks
                    .get(&id)
                    .ok_or(SessionError::UnknownOneTimePrekey)?,
            ),
        };
        Ok((spk, opk))
    }

    fn receive_first(&mut self, now: u64, env: &Envelope<'_>) -> Result<Opening> {
        let Header::First {
            ek, spk_id, opk_id, ..
        } = env.header()
        else {
            return Err(SessionError::UnknownRoutingTag.into());
        };
        if let (Seen::Session(sid), false) = (
            self.replay.check(*spk_id, ek),
            mutated!(Mutation::SkipReplayCache),
        ) {
            // X3DH-8: a resend or replay goes to the session it created.
            let from = *self
                .sessions
                .get(&sid)
                .ok_or(SessionError::ReplayedFirstMessage)?
                .peer_user();
            self.refuse_blocked(&from)?;
            let session = self
                .sessions
                .get_mut(&sid)
                .ok_or(SessionError::ReplayedFirstMessage)?;
            let opened = session.open(now, env)?;
            self.reindex(sid);
            return Ok(Opening {
                from,
                group_sender: None,
                opened,
                events: Vec::new(),
            });
        }
        self.replay.ensure_room()?;
        let (spk, opk) = self.first_message_keys(env)?;
        let (session, opened) = match Session::accept_first(now, &self.identity, spk, opk, env) {
            Ok(accepted) => accepted,
            Err(e) => {
                if mutated!(Mutation::ConsumePrekeyOnFailure) {
                    self.opks.remove(opk_id);
                }
                return Err(e);
            }
        };
        let from = *session.peer_user();
        let peer = *session.peer_identity();
        self.refuse_blocked(&from)?;
        let mut events = Vec::new();
        // RX-9: never silently accept a changed identity.
        match self.contacts.get(&from) {
            Some(c)
                if c.identity.iks() != peer.iks()
                    && !mutated!(Mutation::SkipIdentityComparison) =>
            {
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
        // Id 0 means none was used, and no prekey is ever kept under 0 (ID-4).
        if !mutated!(Mutation::KeepUsedOneTimePrekeys) {
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
                // Only a session this side initiated can be unheard: accepting a first message
                // is hearing from the peer.
                .is_some_and(|s| !s.heard_from_peer())
                && our_iks < peer.iks()
        });
        if let Some(c) = self.contacts.get_mut(from) {
            if !keep_ours {
                c.sending = Some(new_sid);
            }
        }
    }
}
