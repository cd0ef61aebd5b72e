//! Message chains (protocol.md section 9, Req3) and the bounded store of skipped keys (RX-2, LIM-3..5).
//!
//! ```text
//!   CK_0 = Extract(s1, MK)
//!   CK_n --+--> K_n   = Expand(CK_n, "sotto/v1/msg")     message key, used once
//!          +--> ID_n  = Expand(CK_n, "sotto/v1/id")      message id
//!          +--> CK_n+1 = Expand(CK_n, "sotto/v1/chain")  CK_n deleted
//!   nonce_n = s2[0..12] XOR (0^8 || n)
//! ```
//! A chain only moves forward. Reading ahead (`keys_until`) computes the skipped keys without touching
//! the chain, so a message that fails to open changes nothing (RX-3).

use std::collections::BTreeMap;

use crate::crypto::Secret;
use crate::error::{Result, SessionError};
use crate::ids::MessageId;
use crate::kdf;
use crate::keyshare::KeyShare;
use crate::limits::{MAX_SKIP, MAX_SKIPPED_PER_SESSION, SKIPPED_KEY_TTL_MS};
use crate::persist::Persist;
use crate::records::Tracked;

/// The keys of one message.
#[derive(Clone, Debug)]
pub struct MessageKeys {
    /// `K_n`.
    pub key: Secret<32>,
    /// `ID_n`.
    pub id: MessageId,
    /// `nonce_n`.
    pub nonce: [u8; 12],
}

/// One direction of one epoch (or one group member's chain).
#[derive(Clone, Debug)]
pub struct Chain {
    ck: Secret<32>,
    next: u32,
    s2: Secret<16>,
    exhausted: bool,
}

impl Chain {
    /// A chain at `CK_0` of a key share (CHAIN-1).
    pub fn from_keyshare(share: &KeyShare) -> Self {
        Chain::new(share.chain_start(), share.nonce_seed().clone())
    }

    /// A chain at `CK_0 = ck` with nonce mask `s2`.
    pub fn new(ck: Secret<32>, s2: Secret<16>) -> Self {
        Chain {
            ck,
            next: 0,
            s2,
            exhausted: false,
        }
    }

    /// The counter of the next message.
    pub fn next_counter(&self) -> u32 {
        self.next
    }

    /// Keys of message `next`, advancing the chain and deleting `CK_n` (CHAIN-2, CHAIN-5).
    pub fn advance(&mut self) -> Result<(u32, MessageKeys)> {
        if self.exhausted {
            return Err(SessionError::ChainExhausted.into());
        }
        let n = self.next;
        let (key, id, next_ck) = kdf::chain_step(&self.ck);
        self.ck = next_ck;
        match self.next.checked_add(1) {
            Some(m) => self.next = m,
            None => self.exhausted = true,
        }
        let nonce = kdf::nonce(&self.s2, n);
        // Mutation `ReuseNonce`: the nonce of counter 0 for every message (breaks CHAIN-5).
        #[cfg(feature = "mutations")]
        let nonce = if mutated!(Mutation::ReuseNonce) {
            kdf::nonce(&self.s2, 0)
        } else {
            nonce
        };
        Ok((
            n,
            MessageKeys {
                key,
                id: MessageId(id),
                nonce,
            },
        ))
    }

    /// Computes, without changing the chain, the keys for counters `next..=n`: the skipped ones and
    /// `K_n` last. Fails if `n` is behind the chain (`duplicate`) or more than LIM-3 ahead.
    pub fn read_ahead(&self, n: u32) -> Result<ReadAhead> {
        if n < self.next || self.exhausted {
            return Err(SessionError::Duplicate.into());
        }
        if n.saturating_sub(self.next) > MAX_SKIP && !mutated!(Mutation::SkipSkippedKeysBound) {
            return Err(SessionError::TooManySkipped.into());
        }
        let mut probe = self.clone();
        let mut skipped = Vec::new();
        loop {
            let (m, keys) = probe.advance()?;
            if m == n {
                return Ok(ReadAhead {
                    skipped,
                    keys,
                    chain: probe,
                });
            }
            skipped.push((m, keys));
        }
    }
}

// Their encoding in the device state (`crate::persist`).
crate::persist::persist_struct!(MessageKeys { key, id, nonce });

/// The skipped keys inside the whole state ([`crate::Device::export`]) and the records of old
/// stores ([`crate::records::RecordKind::LegacySession`]); read back, they are all to be written.
impl<K: Persist + Ord + Copy> Persist for SkippedKeys<K> {
    fn write(&self, w: &mut crate::codec::Writer) {
        crate::persist::write_len(w, self.keys.len());
        for (k, (keys, at)) in self.keys.iter() {
            k.write(w);
            keys.write(w);
            at.write(w);
        }
    }
    fn read(r: &mut crate::codec::Reader<'_>) -> Result<Self> {
        let n = crate::persist::read_len(r)?;
        let mut s = SkippedKeys::default();
        for _ in 0..n {
            let k = K::read(r)?;
            let keys = MessageKeys::read(r)?;
            let at = u64::read(r)?;
            s.insert(k, keys, at);
        }
        Ok(s)
    }
}

crate::persist::persist_struct!(Chain {
    ck,
    next,
    s2,
    exhausted
});

/// The outcome of [`Chain::read_ahead`]: apply it with [`ReadAhead::commit`] once the message opened.
#[derive(Debug)]
pub struct ReadAhead {
    /// Keys of the messages skipped over, by counter.
    pub skipped: Vec<(u32, MessageKeys)>,
    /// The keys of the message itself.
    pub keys: MessageKeys,
    chain: Chain,
}

impl ReadAhead {
    /// The chain after the message.
    pub fn commit<K: Ord + Copy>(
        self,
        chain: &mut Chain,
        store: &mut SkippedKeys<K>,
        at: impl Fn(u32) -> K,
        now: u64,
    ) {
        *chain = self.chain;
        for (n, keys) in self.skipped {
            store.insert(at(n), keys, now);
        }
    }
}

/// Keys of skipped messages, by chain position `K` (epoch and counter; for groups epoch, member and
/// counter), bounded by LIM-4 and LIM-5. In the store each key is a record of its own
/// ([`crate::records::RecordKind::SessionSkippedKey`], [`crate::records::RecordKind::GroupSkippedKey`]):
/// every change marks its position, so that a commit writes only the keys that came or went.
#[derive(Clone, Debug)]
pub struct SkippedKeys<K: Ord + Clone = (u32, u32)> {
    /// The keys and when each was kept, by position; changes are marked for the store.
    pub(crate) keys: Tracked<K, (MessageKeys, u64)>,
    /// Whether the store holds none of these keys as they are, so the next change set replaces
    /// all of them (a new session or group, one read from the whole state or an old record).
    pub(crate) whole: bool,
}

impl<K: Ord + Clone> Default for SkippedKeys<K> {
    fn default() -> Self {
        SkippedKeys {
            keys: Tracked::default(),
            whole: true,
        }
    }
}

impl<K: Ord + Copy> SkippedKeys<K> {
    /// Keys read back from their records: nothing to write until they change.
    pub(crate) fn loaded(keys: BTreeMap<K, (MessageKeys, u64)>) -> Self {
        SkippedKeys {
            keys: Tracked::loaded(keys),
            whole: false,
        }
    }

    /// Adds the keys of a skipped message, evicting the oldest (smallest position) beyond LIM-4.
    pub fn insert(&mut self, at: K, keys: MessageKeys, now: u64) {
        self.keys.insert(at, (keys, now));
        while self.keys.len() > MAX_SKIPPED_PER_SESSION {
            self.keys.pop_first();
        }
    }

    /// The keys of a skipped message, if kept; they are removed by [`SkippedKeys::remove`] after use.
    pub fn get(&self, at: K) -> Option<&MessageKeys> {
        self.keys.get(&at).map(|(k, _)| k)
    }

    /// Deletes a used key (CHAIN-5).
    pub fn remove(&mut self, at: K) {
        if mutated!(Mutation::KeepUsedSkippedKeys) {
            return;
        }
        self.keys.remove(&at);
    }

    /// Deletes keys older than LIM-5.
    pub fn expire(&mut self, now: u64) {
        self.keys
            .retain(|_, (_, at)| now.saturating_sub(*at) <= SKIPPED_KEY_TTL_MS);
    }

    /// Deletes every key whose position fails `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.keys.retain(|k, _| keep(k));
    }

    /// Number of keys kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(feature = "test-utils")]
impl Chain {
    /// Every secret this chain holds, for the wiretap (feature `test-utils`): its chain key, its
    /// nonce seed, and the message key it would give next.
    pub(crate) fn held_secrets(&self, what: &str, out: &mut Vec<crate::device::HeldSecret>) {
        use crate::device::{HeldSecret, SecretClass};
        out.push(HeldSecret::new(
            SecretClass::ChainKey,
            format!("{what} chain key at {}", self.next),
            self.ck.expose(),
        ));
        out.push(HeldSecret::new(
            SecretClass::NonceSeed,
            format!("{what} nonce seed"),
            self.s2.expose(),
        ));
        if let Ok((n, keys)) = self.clone().advance() {
            out.push(HeldSecret::new(
                SecretClass::MessageKey,
                format!("{what} message key {n}"),
                keys.key.expose(),
            ));
        }
    }
}

#[cfg(feature = "test-utils")]
impl<K: Ord + Copy + core::fmt::Debug> SkippedKeys<K> {
    /// Every skipped message key kept, for the wiretap (feature `test-utils`).
    pub(crate) fn held_secrets(&self, what: &str, out: &mut Vec<crate::device::HeldSecret>) {
        for (at, (keys, _)) in self.keys.iter() {
            out.push(crate::device::HeldSecret::new(
                crate::device::SecretClass::MessageKey,
                format!("{what} skipped message key {at:?}"),
                keys.key.expose(),
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn chain() -> Chain {
        Chain::from_keyshare(&KeyShare::from_parts(
            [1; 32], [2; 16], [3; 16], [4; 16], [5; 16], 0,
        ))
    }

    #[test]
    fn the_last_counter_exhausts_the_chain_chain_6() {
        let mut c = chain();
        c.next = u32::MAX;
        let (n, _) = c.advance().unwrap();
        assert_eq!(n, u32::MAX);
        let err = c.advance().unwrap_err();
        assert_eq!(err.code(), "chain_exhausted");
        assert_eq!(c.advance().unwrap_err().code(), "chain_exhausted");
    }

    #[test]
    fn read_ahead_matches_advance_chain_2() {
        let mut a = chain();
        let b = chain();
        let ahead = b.read_ahead(3).unwrap();
        assert_eq!(ahead.skipped.len(), 3);
        for (n, keys) in &ahead.skipped {
            let (m, k) = a.advance().unwrap();
            assert_eq!(*n, m);
            assert_eq!(k.key.expose(), keys.key.expose());
            assert_eq!(k.id, keys.id);
        }
        let (_, k3) = a.advance().unwrap();
        assert_eq!(k3.key.expose(), ahead.keys.key.expose());
        assert_eq!(k3.nonce, kdf::nonce(&Secret::new([3; 16]), 3));
        // Ids of different messages differ.
        assert_ne!(ahead.skipped[0].1.id, ahead.keys.id);
    }

    #[test]
    fn bounds_rx_2() {
        let mut c = chain();
        c.advance().unwrap();
        assert_eq!(c.read_ahead(0).unwrap_err(), SessionError::Duplicate.into());
        assert_eq!(
            c.read_ahead(2 + MAX_SKIP).unwrap_err(),
            SessionError::TooManySkipped.into()
        );
        assert!(c.read_ahead(1 + MAX_SKIP).is_ok());
    }

    #[test]
    fn skipped_keys_are_bounded_and_expire_lim_4_lim_5() {
        let mut s = SkippedKeys::default();
        let mut c = chain();
        for i in 0..(MAX_SKIPPED_PER_SESSION as u32 + 5) {
            let (_, k) = c.advance().unwrap();
            s.insert((0u32, i), k, 1000);
        }
        assert_eq!(s.len(), MAX_SKIPPED_PER_SESSION);
        assert!(s.get((0, 0)).is_none());
        assert!(s.get((0, 5)).is_some());
        s.expire(1000 + SKIPPED_KEY_TTL_MS);
        assert_eq!(s.len(), MAX_SKIPPED_PER_SESSION);
        assert!(!s.is_empty());
        s.expire(1001 + SKIPPED_KEY_TTL_MS);
        assert!(s.is_empty());
    }
}
