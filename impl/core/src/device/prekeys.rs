//! The device's prekeys: the signed prekeys it keeps (LIM-9) and rotates (KEY-3), its one-time
//! prekeys (KEY-4), the bundle the directory serves (KEY-5) and the signup request (SIGNUP-1).

use crate::crypto::CryptoRng;
use crate::error::{MisuseError, Result};
use crate::keys::{OneTimePreKey, OneTimePreKeyPair, PreKeyBundle};
use crate::limits::{MAX_OPK_UPLOAD, MAX_SIGNED_PREKEYS};
use crate::signup::SignupRequest;

use super::Device;

impl Device {
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
}

#[cfg(feature = "test-utils")]
impl Device {
    /// Fills the first-message replay cache (X3DH-8) with synthetic entries of the current
    /// signed prekey until it holds `n` (at most LIM-8), as a device that accepted that many
    /// first messages; for benchmarks of the commit cost with a full cache (feature
    /// `test-utils`).
    pub fn fill_replay_cache(&mut self, n: usize) -> Result<()> {
        let spk = self.current_spk()?.public().id();
        self.replay.fill(spk, n);
        Ok(())
    }

    /// Entries in the first-message replay cache (X3DH-8), for tests (feature `test-utils`).
    pub fn replay_cache_len(&self) -> usize {
        self.replay.len()
    }
}
