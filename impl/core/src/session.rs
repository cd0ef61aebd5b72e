//! A pairwise session (protocol.md sections 7-13): epochs, chains, skipped keys and the envelopes that
//! carry them. Sans-IO: time (`now`, server-corrected ms) and randomness are arguments.
//!
//! ```text
//!   epoch:   0 (A)        1 (B)          2 (A)          3 (B) ...      even = initiator's
//!   header:  first msg    epoch start    epoch start    epoch start    until acknowledged (EPOCH-3)
//!   root:    RK_0 --KDF-5(DH(E_B1,E_A0))--> RK_1 --KDF-5(DH(E_A2,E_B1))--> RK_2 ...
//!   chains:  each epoch's chain comes from its owner's key-share block (MK, s1..s4, t0)
//! ```
//! [`Session::seal`] turns the epoch when it sends content and the newest epoch is the peer's
//! (EPOCH-2); receipts ride the current chain. Every message of an epoch carries the epoch's header
//! until the peer acknowledges it with a receipt or answers with a newer epoch (EPOCH-3).
//! [`Session::open`] verifies and decrypts, and changes state only once the payload opened (RX-3).

use std::collections::VecDeque;

use zeroize::Zeroizing;

use crate::chain::{Chain, MessageKeys, SkippedKeys};
use crate::crypto::{self, CryptoRng, DhPublic, DhSecret, Secret, TAG_LEN};
use crate::envelope::{self, Envelope, Header, IDENTITY_BOX_LEN};
use crate::error::{CryptoError, DecodeError, MisuseError, Result, SessionError};
use crate::ids::{MessageId, UserId};
use crate::inner::{Content, Inner};
use crate::kdf;
use crate::keys::{Identity, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair};
use crate::keyshare::KeyShare;
use crate::limits::{MAX_ENVELOPE, MAX_RECV_EPOCHS, MAX_RETIRED_TAGS, MAX_SKIP};
use crate::persist::Persist;
use crate::records::RecordKind;
use crate::x3dh;

/// Own epochs remembered for key confirmation and routing of the peer's epoch starts.
const MAX_OWN_EPOCHS: usize = 3;
/// Ids of an unacknowledged epoch's messages remembered to recognise a receipt (EPOCH-3).
const MAX_UNACKED_IDS: usize = 256;

/// The header a sending epoch attaches to its first message.
#[derive(Clone, Debug)]
enum StartHeader {
    First {
        ek: DhPublic,
        spk_id: u32,
        opk_id: u32,
        identity_box: Box<[u8; IDENTITY_BOX_LEN]>,
        keyshare_box: Box<[u8; KeyShare::SEALED_LEN]>,
    },
    Epoch {
        prev_tag: [u8; 8],
        e: DhPublic,
        confirm: [u8; 16],
        keyshare_box: Box<[u8; KeyShare::SEALED_LEN]>,
        pn: u32,
    },
}

/// A peer epoch whose chain was dropped: late messages may still open from its skipped keys.
#[derive(Clone, Debug)]
struct Retired {
    tag: [u8; 8],
    epoch: u32,
    t0: u64,
    /// Its ratchet key (`EK_A` for epoch 0), to recognise a repeated header.
    ratchet: DhPublic,
    /// Every counter below this was received or has a skipped key: the rest never existed.
    end: u32,
}

#[derive(Clone, Debug)]
struct SendEpoch {
    epoch: u32,
    tag: [u8; 8],
    t0: u64,
    chain: Chain,
    start: StartHeader,
    /// Whether the peer has the epoch (a receipt for one of its messages, or a newer peer epoch).
    acked: bool,
    /// Ids of messages sent while unacknowledged (the first LIM of them).
    unacked_ids: Vec<MessageId>,
}

impl SendEpoch {
    /// The header of message `n` of this epoch: the epoch's start header until the peer
    /// acknowledged the epoch (ENV-3, ENV-4), then a data header (ENV-2).
    fn header(&self, n: u32) -> Header {
        match (&self.start, self.acked) {
            (
                StartHeader::First {
                    ek,
                    spk_id,
                    opk_id,
                    identity_box,
                    keyshare_box,
                },
                false,
            ) => Header::First {
                ek: *ek,
                spk_id: *spk_id,
                opk_id: *opk_id,
                identity_box: identity_box.clone(),
                keyshare_box: keyshare_box.clone(),
                n,
            },
            (
                StartHeader::Epoch {
                    prev_tag,
                    e,
                    confirm,
                    keyshare_box,
                    pn,
                },
                false,
            ) => Header::EpochStart {
                prev_tag: *prev_tag,
                e: *e,
                confirm: *confirm,
                keyshare_box: keyshare_box.clone(),
                pn: *pn,
                n,
            },
            _ => Header::Data { tag: self.tag, n },
        }
    }
}

#[derive(Clone, Debug)]
struct OwnEpoch {
    epoch: u32,
    tag: [u8; 8],
    confirm: Secret<32>,
}

#[derive(Clone, Debug)]
struct RecvEpoch {
    epoch: u32,
    tag: [u8; 8],
    ratchet: DhPublic,
    confirm: Secret<32>,
    t0: u64,
    chain: Chain,
}

/// A sealed message ready to publish.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The envelope bytes (ENV-2..ENV-4).
    pub bytes: Vec<u8>,
    /// The message id (ID-3), which the receipt will name.
    pub id: MessageId,
    /// The epoch it was sent in.
    pub epoch: u32,
    /// Its counter.
    pub counter: u32,
}

/// An opened message.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The message id (ID-3).
    pub id: MessageId,
    /// The content and time delta.
    pub inner: Inner,
    /// The sender's server-corrected send time, ms (IN-2).
    pub sent_at: u64,
    /// The epoch it was sent in.
    pub epoch: u32,
    /// Its counter.
    pub counter: u32,
}

/// A snapshot of a session's public shape, for tests, the model's abstract state and conformance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionSummary {
    /// Whether this side initiated.
    pub initiator: bool,
    /// The newest epoch known.
    pub latest_epoch: u32,
    /// The sending epoch and its next counter, if any.
    pub sending: Option<(u32, u32)>,
    /// Receive epochs and their next counters.
    pub receiving: Vec<(u32, u32)>,
    /// Skipped keys kept.
    pub skipped: usize,
}

/// A pairwise session with one peer.
#[derive(Clone, Debug)]
pub struct Session {
    peer_user: UserId,
    peer: PublicIdentity,
    initiator: bool,
    root: Secret<32>,
    latest: u32,
    ratchet: Option<DhSecret>,
    peer_ratchet: Option<DhPublic>,
    send: Option<SendEpoch>,
    own: VecDeque<OwnEpoch>,
    recv: VecDeque<RecvEpoch>,
    skipped: SkippedKeys,
    /// Tags of every own epoch still routable (no secrets): epoch starts name them (EPOCH-3).
    own_tags: VecDeque<([u8; 8], u32)>,
    /// Dropped receive epochs, for late messages and duplicates (RX-8).
    retired: VecDeque<Retired>,
    first_ek: DhPublic,
    heard_from_peer: bool,
}

impl Session {
    /// Starts a session as initiator from a verified bundle (X3DH-1..X3DH-5).
    pub fn initiate(
        rng: &mut impl CryptoRng,
        now: u64,
        local_user: &UserId,
        local: &Identity,
        bundle: &PreKeyBundle,
    ) -> Result<Self> {
        let ek = DhSecret::random(rng);
        let e0 = DhSecret::random(rng);
        let share = KeyShare::random(rng, now);
        Session::initiate_with(local_user, local, bundle, ek, e0, share)
    }

    /// [`Session::initiate`] with explicit randomness (vectors): the ephemeral key `EK_A`, the epoch-0
    /// ratchet key `E_A0` and the epoch-0 key share. `EK_A` is dropped (zeroized) on return.
    pub fn initiate_with(
        local_user: &UserId,
        local: &Identity,
        bundle: &PreKeyBundle,
        ek: DhSecret,
        e0: DhSecret,
        share: KeyShare,
    ) -> Result<Self> {
        let secrets = x3dh::initiator_secrets(local, &ek, bundle)?;
        let ek_pub = ek.public();
        drop(ek);
        let spk_id = bundle.signed_prekey().id();
        let opk_id = bundle.one_time_prekey().map_or(0, |o| o.id());
        let mut ad = Vec::with_capacity(envelope::FIRST_KEYSHARE_AT);
        ad.push(envelope::TYPE_FIRST);
        ad.extend_from_slice(&ek_pub.0);
        ad.extend_from_slice(&spk_id.to_be_bytes());
        ad.extend_from_slice(&opk_id.to_be_bytes());
        let identity_box = x3dh::seal_identity(
            &secrets.identity_key,
            &ad,
            local_user,
            local.public(),
            &e0.public(),
        );
        ad.extend_from_slice(&identity_box);
        let keyshare_box = boxed_keyshare(share.seal(&secrets.ks0, &ad))?;
        let tag = share.routing_tag();
        Ok(Session {
            peer_user: *bundle.user_id(),
            peer: *bundle.identity(),
            initiator: true,
            root: secrets.rk0,
            latest: 0,
            ratchet: Some(e0),
            peer_ratchet: None,
            send: Some(SendEpoch {
                epoch: 0,
                tag,
                t0: share.t0(),
                chain: Chain::from_keyshare(&share),
                start: StartHeader::First {
                    ek: ek_pub,
                    spk_id,
                    opk_id,
                    identity_box: Box::new(identity_box),
                    keyshare_box,
                },
                acked: false,
                unacked_ids: Vec::new(),
            }),
            own: VecDeque::from([OwnEpoch {
                epoch: 0,
                tag,
                confirm: share.confirm_key(),
            }]),
            own_tags: VecDeque::from([(tag, 0)]),
            recv: VecDeque::new(),
            skipped: SkippedKeys::default(),
            retired: VecDeque::new(),
            first_ek: ek_pub,
            heard_from_peer: false,
        })
    }

    /// Accepts a first message as responder (X3DH-6): returns the new session and the message. The
    /// caller has found the prekeys by id and checked the replay cache; nothing is stored here.
    pub fn accept_first(
        now: u64,
        local: &Identity,
        spk: &SignedPreKeyPair,
        opk: Option<&OneTimePreKeyPair>,
        env: &Envelope<'_>,
    ) -> Result<(Self, Opened)> {
        let Header::First {
            ek,
            identity_box,
            keyshare_box,
            n,
            ..
        } = env.header()
        else {
            return Err(DecodeError::UnknownType.into());
        };
        let (dh2, identity_key) = x3dh::responder_identity_key(local, ek)?;
        let initiator =
            x3dh::open_identity(&identity_key, env.identity_box_ad(), &identity_box[..])?;
        let (peer_user, peer) = (initiator.user, initiator.identity);
        let secrets = x3dh::responder_secrets(local, spk, opk, ek, dh2, identity_key, &peer)?;
        let share = KeyShare::open(&secrets.ks0, env.keyshare_box_ad(), &keyshare_box[..])?;
        // Epoch 0 is recognised by EK_A (a repeated first-message header); its ratchet key is E_A0.
        let mut recv = RecvEpoch {
            epoch: 0,
            tag: share.routing_tag(),
            ratchet: *ek,
            confirm: share.confirm_key(),
            t0: share.t0(),
            chain: Chain::from_keyshare(&share),
        };
        let mut skipped = SkippedKeys::default();
        let ahead = recv.chain.read_ahead(*n)?;
        let inner = decrypt(&ahead.keys, env)?;
        let opened = opened(&ahead.keys, inner, recv.t0, 0, *n);
        ahead.commit(&mut recv.chain, &mut skipped, |m| (0, m), now);
        let session = Session {
            peer_user,
            peer,
            initiator: false,
            root: secrets.rk0,
            latest: 0,
            ratchet: None,
            peer_ratchet: Some(initiator.ratchet),
            send: None,
            own: VecDeque::new(),
            own_tags: VecDeque::new(),
            recv: VecDeque::from([recv]),
            skipped,
            retired: VecDeque::new(),
            first_ek: *ek,
            heard_from_peer: true,
        };
        Ok((session, opened))
    }

    /// The peer's user id.
    pub fn peer_user(&self) -> &UserId {
        &self.peer_user
    }

    /// The peer's identity.
    pub fn peer_identity(&self) -> &PublicIdentity {
        &self.peer
    }

    /// `EK_A` of the first message: the session's replay-cache key (X3DH-8).
    pub fn first_ek(&self) -> &DhPublic {
        &self.first_ek
    }

    /// Whether any message from the peer has been opened (RX-10).
    pub fn heard_from_peer(&self) -> bool {
        self.heard_from_peer
    }

    /// Routing tags of the receive epochs (data messages) and own epochs (epoch starts), for the
    /// device's index (RX-1).
    pub fn routing_tags(&self) -> impl Iterator<Item = [u8; 8]> + '_ {
        self.recv
            .iter()
            .map(|r| r.tag)
            .chain(self.own_tags.iter().map(|(t, _)| *t))
            .chain(self.retired.iter().map(|r| r.tag))
    }

    /// The newest epoch known (changes exactly when the routing tags do).
    pub fn latest_epoch(&self) -> u32 {
        self.latest
    }

    /// The public shape of the session.
    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            initiator: self.initiator,
            latest_epoch: self.latest,
            sending: self
                .send
                .as_ref()
                .map(|s| (s.epoch, s.chain.next_counter())),
            receiving: self
                .recv
                .iter()
                .map(|r| (r.epoch, r.chain.next_counter()))
                .collect(),
            skipped: self.skipped.len(),
        }
    }

    fn is_mine(&self, epoch: u32) -> bool {
        (epoch % 2 == 0) == self.initiator
    }

    /// Whether sealing `content` next starts a new epoch (EPOCH-2): content does when the newest
    /// epoch is the peer's; receipts and group acks ride the current chain if there is one.
    pub fn needs_new_epoch(&self, content: &Content) -> bool {
        match &self.send {
            None => true,
            Some(_) => !self.is_mine(self.latest) && content.turns_epoch(),
        }
    }

    /// Seals a message, turning the epoch first if EPOCH-2 says so.
    /// `bucket > 1` pads the inner plaintext to a multiple of `bucket` bytes (IN-4).
    pub fn seal(
        &mut self,
        rng: &mut impl CryptoRng,
        now: u64,
        content: &Content,
        bucket: usize,
    ) -> Result<Sealed> {
        let fresh = if self.needs_new_epoch(content) {
            Some((DhSecret::random(rng), KeyShare::random(rng, now)))
        } else {
            None
        };
        self.seal_with(now, content, bucket, fresh)
    }

    /// [`Session::seal`] with explicit randomness for a new epoch (vectors). `fresh` is ignored when
    /// no new epoch is needed and required when one is.
    pub fn seal_with(
        &mut self,
        now: u64,
        content: &Content,
        bucket: usize,
        fresh: Option<(DhSecret, KeyShare)>,
    ) -> Result<Sealed> {
        // Everything that can fail happens before the first state change.
        let turn = if self.needs_new_epoch(content) {
            let (e, share) = fresh.ok_or(MisuseError::LimitReached)?;
            Some(self.prepare_epoch(e, share)?)
        } else {
            None
        };
        let sending = match (&turn, &self.send) {
            (Some((send, ..)), _) | (None, Some(send)) => send,
            (None, None) => return Err(SessionError::EpochConflict.into()),
        };
        let delta = u32::try_from(now.saturating_sub(sending.t0) / 1000).unwrap_or(u32::MAX);
        let plain = Inner {
            delta,
            content: content.clone(),
        }
        .encode(bucket)?;
        // LIM-1 on the exact envelope, before the first state change.
        let n = sending.chain.next_counter();
        let mut buf = sending
            .header(n)
            .encode_with_room(plain.len().saturating_add(TAG_LEN));
        if buf
            .len()
            .saturating_add(plain.len())
            .saturating_add(TAG_LEN)
            > MAX_ENVELOPE
        {
            return Err(MisuseError::TooLarge.into());
        }
        if let Some((send, own, root, ratchet)) = turn {
            self.root = root;
            self.latest = self.latest.saturating_add(1);
            self.ratchet = Some(ratchet);
            self.send = Some(send);
            push_bounded(&mut self.own_tags, (own.tag, own.epoch), MAX_RETIRED_TAGS);
            push_bounded(&mut self.own, own, MAX_OWN_EPOCHS);
        }
        let send = self.send.as_mut().ok_or(SessionError::EpochConflict)?;
        let (counter, keys) = send.chain.advance()?;
        debug_assert_eq!(counter, n);
        if !send.acked && send.unacked_ids.len() < MAX_UNACKED_IDS {
            send.unacked_ids.push(keys.id);
        }
        let header_len = buf.len();
        buf.extend_from_slice(&plain);
        crypto::seal_in_place(&keys.key, &keys.nonce, &mut buf, header_len);
        // Mutation `PlaintextIdInClear`: the message id in the clear after the ciphertext.
        #[cfg(feature = "mutations")]
        if mutated!(Mutation::PlaintextIdInClear) {
            buf.extend_from_slice(&keys.id.0);
        }
        Ok(Sealed {
            bytes: buf,
            id: keys.id,
            epoch: send.epoch,
            counter: n,
        })
    }

    /// A data message *as the peer*, on the newest receiving epoch at its next counter: what
    /// anyone holding this session's state can build (the state is the key; a compromise hands it
    /// to the attacker). Nothing changes here. The conformance replay uses it for the model's
    /// `Inject DataAs` (docs/conformance.md); it is no capability beyond the state itself. Only
    /// with the feature `test-utils`.
    #[cfg(feature = "test-utils")]
    pub fn forge_as_peer(&self, now: u64, content: &Content, bucket: usize) -> Result<Vec<u8>> {
        let recv = self
            .recv
            .iter()
            .max_by_key(|r| r.epoch)
            .ok_or(SessionError::EpochConflict)?;
        let mut chain = recv.chain.clone();
        let (n, keys) = chain.advance()?;
        let delta = u32::try_from(now.saturating_sub(recv.t0) / 1000).unwrap_or(u32::MAX);
        let plain = Inner {
            delta,
            content: content.clone(),
        }
        .encode(bucket)?;
        let mut buf =
            Header::Data { tag: recv.tag, n }.encode_with_room(plain.len().saturating_add(TAG_LEN));
        let header_len = buf.len();
        buf.extend_from_slice(&plain);
        crypto::seal_in_place(&keys.key, &keys.nonce, &mut buf, header_len);
        // Mutation `PlaintextIdInClear`: the same envelope shape as `seal_with`.
        #[cfg(feature = "mutations")]
        if mutated!(Mutation::PlaintextIdInClear) {
            buf.extend_from_slice(&keys.id.0);
        }
        Ok(buf)
    }

    // EPOCH-2: the new sending epoch, its own-epoch record, the new root and ratchet secret.
    fn prepare_epoch(
        &self,
        e: DhSecret,
        share: KeyShare,
    ) -> Result<(SendEpoch, OwnEpoch, Secret<32>, DhSecret)> {
        let peer_ratchet = self.peer_ratchet.ok_or(SessionError::EpochConflict)?;
        let answered = self
            .recv
            .iter()
            .find(|r| r.epoch == self.latest)
            .ok_or(SessionError::EpochConflict)?;
        let epoch = self
            .latest
            .checked_add(1)
            .ok_or(SessionError::ChainExhausted)?;
        let dh = e.dh(&peer_ratchet)?;
        let (root, ks) = kdf::epoch_step(&self.root, &dh);
        let e_pub = e.public();
        let confirm = kdf::epoch_confirm(&answered.confirm, &answered.tag, &e_pub);
        let mut ad = Vec::with_capacity(envelope::EPOCH_KEYSHARE_AT);
        ad.push(envelope::TYPE_EPOCH);
        ad.extend_from_slice(&answered.tag);
        ad.extend_from_slice(&e_pub.0);
        ad.extend_from_slice(&confirm);
        let keyshare_box = boxed_keyshare(share.seal(&ks, &ad))?;
        let tag = share.routing_tag();
        let send = SendEpoch {
            epoch,
            tag,
            t0: share.t0(),
            chain: Chain::from_keyshare(&share),
            start: StartHeader::Epoch {
                prev_tag: answered.tag,
                e: e_pub,
                confirm,
                keyshare_box,
                pn: self.send.as_ref().map_or(0, |s| s.chain.next_counter()),
            },
            acked: false,
            unacked_ids: Vec::new(),
        };
        let own = OwnEpoch {
            epoch,
            tag,
            confirm: share.confirm_key(),
        };
        Ok((send, own, root, e))
    }

    /// Opens a data message, a repeated first message, or an epoch start (RX-1..RX-3, EPOCH-5).
    pub fn open(&mut self, now: u64, env: &Envelope<'_>) -> Result<Opened> {
        self.skipped.expire(now);
        let opened = match env.header() {
            Header::Data { tag, n } => self.open_data(now, env, tag, *n),
            Header::First { ek, n, .. } => {
                // Already set up (X3DH-8): the header was processed; only the chain matters.
                let tag = self
                    .processed_epoch(ek)
                    .filter(|_| !self.initiator)
                    .ok_or(SessionError::Duplicate)?;
                self.open_data(now, env, &tag, *n)
            }
            Header::EpochStart {
                prev_tag,
                e,
                confirm,
                keyshare_box,
                pn,
                n,
            } => self.open_epoch_start(now, env, prev_tag, e, confirm, &keyshare_box[..], *pn, *n),
            Header::Group { .. } => Err(DecodeError::UnknownType.into()),
        }?;
        self.note_opened(&opened);
        Ok(opened)
    }

    // EPOCH-3: the peer has our sending epoch once it answers with a newer epoch of its own or
    // receipts one of the epoch's messages; from then on the epoch's messages drop the header.
    fn note_opened(&mut self, opened: &Opened) {
        self.heard_from_peer = true;
        if let Some(send) = self.send.as_mut() {
            let receipted = match &opened.inner.content {
                Content::Receipt(ids) => ids.iter().any(|id| send.unacked_ids.contains(id)),
                _ => false,
            };
            if !send.acked && (opened.epoch > send.epoch || receipted) {
                send.acked = true;
                send.unacked_ids = Vec::new();
            }
        }
    }

    fn open_data(&mut self, now: u64, env: &Envelope<'_>, tag: &[u8; 8], n: u32) -> Result<Opened> {
        let Some(idx) = self.recv.iter().position(|r| r.tag == *tag) else {
            // A dropped epoch: only its skipped keys may remain (RX-8). Below its end, a message
            // without a key was received already.
            let (epoch, t0, end) = self
                .retired
                .iter()
                .find(|r| r.tag == *tag)
                .map(|r| (r.epoch, r.t0, r.end))
                .ok_or(SessionError::UnknownRoutingTag)?;
            let keys = self.skipped.get((epoch, n)).ok_or(if n < end {
                SessionError::Duplicate
            } else {
                SessionError::ExpiredEpoch
            })?;
            let inner = decrypt(keys, env)?;
            let opened = opened(keys, inner, t0, epoch, n);
            self.skipped.remove((epoch, n));
            return Ok(opened);
        };
        let recv = self
            .recv
            .get_mut(idx)
            .ok_or(SessionError::UnknownRoutingTag)?;
        let epoch = recv.epoch;
        if let Some(keys) = self.skipped.get((epoch, n)) {
            let inner = decrypt(keys, env)?;
            let opened = opened(keys, inner, recv.t0, epoch, n);
            self.skipped.remove((epoch, n));
            return Ok(opened);
        }
        let ahead = recv.chain.read_ahead(n)?;
        let inner = decrypt(&ahead.keys, env)?;
        let opened = opened(&ahead.keys, inner, recv.t0, epoch, n);
        ahead.commit(&mut recv.chain, &mut self.skipped, |m| (epoch, m), now);
        Ok(opened)
    }

    // The tag of a peer epoch whose header was processed, found by its ratchet key (EK_A for epoch 0),
    // whether its chain is kept or dropped.
    fn processed_epoch(&self, ratchet: &DhPublic) -> Option<[u8; 8]> {
        self.recv
            .iter()
            .find(|r| r.ratchet == *ratchet)
            .map(|r| r.tag)
            .or_else(|| {
                self.retired
                    .iter()
                    .find(|r| r.ratchet == *ratchet)
                    .map(|r| r.tag)
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn open_epoch_start(
        &mut self,
        now: u64,
        env: &Envelope<'_>,
        prev_tag: &[u8; 8],
        e: &DhPublic,
        confirm: &[u8; 16],
        keyshare_box: &[u8],
        pn: u32,
        n: u32,
    ) -> Result<Opened> {
        // A header already processed (repeated until acknowledged, EPOCH-3, or a resend or replay):
        // go on with the chain (EPOCH-5). A forgery with a known E fails to open, changing nothing.
        if let Some(tag) = self.processed_epoch(e) {
            return self.open_data(now, env, &tag, n);
        }
        let Some(own) = self.own.iter().find(|o| o.tag == *prev_tag) else {
            // It answers an own epoch older than those kept: its answer was processed long ago.
            return Err(if self.own_tags.iter().any(|(t, _)| t == prev_tag) {
                SessionError::ExpiredEpoch
            } else {
                SessionError::UnknownRoutingTag
            }
            .into());
        };
        let answered = own.epoch;
        let epoch = answered.checked_add(1).ok_or(SessionError::EpochConflict)?;
        if let Some(r) = self.recv.iter().find(|r| r.epoch == epoch) {
            // The epoch is known with another `E` (the same `E` went on with its chain above):
            // a second start of one epoch is refused (EPOCH-5).
            if !mutated!(Mutation::SkipEpochConflict) {
                return Err(SessionError::EpochConflict.into());
            }
            let tag = r.tag;
            return self.open_data(now, env, &tag, n);
        }
        if self.latest != answered || !self.is_mine(answered) {
            return Err(if self.latest > epoch {
                SessionError::ExpiredEpoch
            } else {
                SessionError::EpochConflict
            }
            .into());
        }
        let expected = kdf::epoch_confirm(&own.confirm, prev_tag, e);
        if !crypto::ct_eq(&expected, confirm) && !mutated!(Mutation::SkipKeyConfirmation) {
            return Err(CryptoError::KeyConfirmationFailed.into());
        }
        let ratchet = self.ratchet.as_ref().ok_or(SessionError::EpochConflict)?;
        let dh = ratchet.dh(e)?;
        let (root, ks) = kdf::epoch_step(&self.root, &dh);
        let share = KeyShare::open(&ks, env.keyshare_box_ad(), keyshare_box)?;
        let mut recv = RecvEpoch {
            epoch,
            tag: share.routing_tag(),
            ratchet: *e,
            confirm: share.confirm_key(),
            t0: share.t0(),
            chain: Chain::from_keyshare(&share),
        };
        let ahead = recv.chain.read_ahead(n)?;
        let inner = decrypt(&ahead.keys, env)?;
        let opened = opened(&ahead.keys, inner, recv.t0, epoch, n);
        // Commit (RX-3): the new root and the peer's ratchet key. Our sending chain stays, for receipts,
        // until our next content turns the epoch (EPOCH-2); the peer has it now (EPOCH-3).
        ahead.commit(&mut recv.chain, &mut self.skipped, |m| (epoch, m), now);
        self.root = root;
        self.latest = epoch;
        self.ratchet = None;
        self.peer_ratchet = Some(*e);
        // EPOCH-5: the peer's previous epoch is closed at `pn` messages: keep keys for those not yet
        // received (LIM-3), then drop its chain (forward secrecy).
        if let Some(prev) = epoch.checked_sub(2) {
            if let Some(i) = self.recv.iter().position(|r| r.epoch == prev) {
                if let Some(mut old) = self.recv.remove(i) {
                    let end = pn.min(old.chain.next_counter().saturating_add(MAX_SKIP));
                    while old.chain.next_counter() < end {
                        match old.chain.advance() {
                            Ok((m, keys)) => self.skipped.insert((prev, m), keys, now),
                            Err(_) => break,
                        }
                    }
                    self.retire(old);
                }
            }
        }
        self.recv.push_back(recv);
        self.bound_recv_epochs();
        Ok(opened)
    }
}

impl Session {
    /// LIM-6: at most 3 receiving epochs, the oldest retired first. (Each new epoch of the peer
    /// closes the peer's epoch before it, EPOCH-5, so one is held after every step: the bound is
    /// a safeguard that no sequence of messages reaches.)
    fn bound_recv_epochs(&mut self) {
        while self.recv.len() > MAX_RECV_EPOCHS {
            if let Some(old) = self.recv.pop_front() {
                self.retire(old);
            }
        }
    }

    fn retire(&mut self, old: RecvEpoch) {
        let retired = Retired {
            tag: old.tag,
            epoch: old.epoch,
            t0: old.t0,
            ratchet: old.ratchet,
            end: old.chain.next_counter(),
        };
        push_bounded(&mut self.retired, retired, MAX_RETIRED_TAGS);
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, max: usize) {
    q.push_back(v);
    while q.len() > max {
        q.pop_front();
    }
}

fn boxed_keyshare(sealed: Vec<u8>) -> Result<Box<[u8; KeyShare::SEALED_LEN]>> {
    let arr: [u8; KeyShare::SEALED_LEN] = sealed
        .try_into()
        .map_err(|_| DecodeError::LengthOutOfRange)?;
    Ok(Box::new(arr))
}

fn decrypt(keys: &MessageKeys, env: &Envelope<'_>) -> Result<Inner> {
    let plain = Zeroizing::new(crypto::open(
        &keys.key,
        &keys.nonce,
        env.header_bytes(),
        env.sealed(),
    )?);
    Inner::decode(&plain)
}

fn opened(keys: &MessageKeys, inner: Inner, t0: u64, epoch: u32, counter: u32) -> Opened {
    let sent_at = t0.saturating_add(u64::from(inner.delta).saturating_mul(1000));
    Opened {
        id: keys.id,
        inner,
        sent_at,
        epoch,
        counter,
    }
}

impl Persist for StartHeader {
    fn write(&self, w: &mut crate::codec::Writer) {
        match self {
            StartHeader::First {
                ek,
                spk_id,
                opk_id,
                identity_box,
                keyshare_box,
            } => {
                w.u8(0);
                ek.write(w);
                spk_id.write(w);
                opk_id.write(w);
                identity_box.write(w);
                keyshare_box.write(w);
            }
            StartHeader::Epoch {
                prev_tag,
                e,
                confirm,
                keyshare_box,
                pn,
            } => {
                w.u8(1);
                prev_tag.write(w);
                e.write(w);
                confirm.write(w);
                keyshare_box.write(w);
                pn.write(w);
            }
        }
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        Ok(match r.u8()? {
            0 => StartHeader::First {
                ek: Persist::read(r)?,
                spk_id: Persist::read(r)?,
                opk_id: Persist::read(r)?,
                identity_box: Box::new(Persist::read(r)?),
                keyshare_box: Box::new(Persist::read(r)?),
            },
            1 => StartHeader::Epoch {
                prev_tag: Persist::read(r)?,
                e: Persist::read(r)?,
                confirm: Persist::read(r)?,
                keyshare_box: Box::new(Persist::read(r)?),
                pn: Persist::read(r)?,
            },
            _ => return Err(DecodeError::LengthOutOfRange.into()),
        })
    }
}

crate::persist::persist_struct!(SendEpoch {
    epoch,
    tag,
    t0,
    chain,
    start,
    acked,
    unacked_ids
});
crate::persist::persist_struct!(Retired {
    tag,
    epoch,
    t0,
    ratchet,
    end
});
crate::persist::persist_struct!(OwnEpoch {
    epoch,
    tag,
    confirm
});
crate::persist::persist_struct!(RecvEpoch {
    epoch,
    tag,
    ratchet,
    confirm,
    t0,
    chain
});
/// The whole session, its skipped keys in the middle (the whole state, [`crate::Device::export`],
/// and the records of old stores).
impl Persist for Session {
    fn write(&self, w: &mut crate::codec::Writer) {
        self.write_parts(w, true);
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        Session::read_parts(r, true)
    }
}

impl Session {
    /// The fields in their order; the skipped keys only if `with_skipped`.
    fn write_parts(&self, w: &mut crate::codec::Writer, with_skipped: bool) {
        self.peer_user.write(w);
        self.peer.write(w);
        self.initiator.write(w);
        self.root.write(w);
        self.latest.write(w);
        self.ratchet.write(w);
        self.peer_ratchet.write(w);
        self.send.write(w);
        self.own.write(w);
        self.own_tags.write(w);
        self.recv.write(w);
        if with_skipped {
            self.skipped.write(w);
        }
        self.retired.write(w);
        self.first_ek.write(w);
        self.heard_from_peer.write(w);
    }

    /// Reads what [`Session::write_parts`] wrote.
    fn read_parts(r: &mut crate::codec::Reader<'_>, with_skipped: bool) -> Result<Self> {
        Ok(Session {
            peer_user: Persist::read(r)?,
            peer: Persist::read(r)?,
            initiator: Persist::read(r)?,
            root: Persist::read(r)?,
            latest: Persist::read(r)?,
            ratchet: Persist::read(r)?,
            peer_ratchet: Persist::read(r)?,
            send: Persist::read(r)?,
            own: Persist::read(r)?,
            own_tags: Persist::read(r)?,
            recv: Persist::read(r)?,
            skipped: if with_skipped {
                Persist::read(r)?
            } else {
                SkippedKeys::default()
            },
            retired: Persist::read(r)?,
            first_ek: Persist::read(r)?,
            heard_from_peer: Persist::read(r)?,
        })
    }
}

/// A session's record leaves its skipped keys out: each is a record of its own.
impl crate::records::HoldsSkippedKeys for Session {
    type At = (u32, u32);
    const KIND: RecordKind = RecordKind::Session;
    const SKIPPED: RecordKind = RecordKind::SessionSkippedKey;
    const LEGACY: RecordKind = RecordKind::LegacySession;
    fn write_lean(&self, w: &mut crate::codec::Writer) {
        self.write_parts(w, false);
    }
    fn read_lean(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        Session::read_parts(r, false)
    }
    fn skipped(&self) -> &SkippedKeys {
        &self.skipped
    }
    fn skipped_mut(&mut self) -> &mut SkippedKeys {
        &mut self.skipped
    }
}

#[cfg(feature = "test-utils")]
impl Session {
    /// Every secret this session holds, for the wiretap (feature `test-utils`): root key,
    /// ratchet secret, the chains of each epoch, confirmation keys, skipped message keys.
    pub(crate) fn held_secrets(&self, what: &str, out: &mut Vec<crate::device::HeldSecret>) {
        use crate::device::{HeldSecret, SecretClass};
        out.push(HeldSecret::new(
            SecretClass::RootKey,
            format!("{what} root key"),
            self.root.expose(),
        ));
        if let Some(r) = &self.ratchet {
            out.push(HeldSecret::new(
                SecretClass::RatchetSecret,
                format!("{what} ratchet secret"),
                r.to_bytes().expose(),
            ));
        }
        if let Some(s) = &self.send {
            s.chain
                .held_secrets(&format!("{what} sending epoch {}", s.epoch), out);
        }
        for o in &self.own {
            out.push(HeldSecret::new(
                SecretClass::ConfirmKey,
                format!("{what} own epoch {} confirmation key", o.epoch),
                o.confirm.expose(),
            ));
        }
        for r in &self.recv {
            out.push(HeldSecret::new(
                SecretClass::ConfirmKey,
                format!("{what} receiving epoch {} confirmation key", r.epoch),
                r.confirm.expose(),
            ));
            r.chain
                .held_secrets(&format!("{what} receiving epoch {}", r.epoch), out);
        }
        self.skipped.held_secrets(what, out);
    }
}
