//! Signup challenges (SIGNUP-3): fresh random values that bind a proof of work to this service and to
//! this moment, so work cannot be computed ahead of time or spent twice.
//!
//! Held in memory only (a restart forgets them, which only costs a device one more `GET
//! /v1/challenge`), bounded in number ([`MAX_CHALLENGES`], the oldest is dropped first) and in age
//! ([`CHALLENGE_TTL`]), and single-use: [`Challenges::take`] removes the value it accepts.
//! Time is an argument, so the tests need no clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sotto_core::crypto::CryptoRng;
use sotto_core::limits::MAX_CHALLENGE;

/// Most challenges outstanding at once.
pub const MAX_CHALLENGES: usize = 10_000;

/// How long a challenge stays valid.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

/// A challenge value (SIGNUP-1 allows up to 32 bytes; the service always uses 32).
pub type Challenge = [u8; MAX_CHALLENGE];

/// The outstanding challenges.
#[derive(Debug, Default)]
pub struct Challenges {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    // Outstanding values and when each was issued.
    live: HashMap<Challenge, Instant>,
    // Issue order, oldest first; may still name values already taken (skipped when popped).
    order: VecDeque<(Challenge, Instant)>,
}

impl Challenges {
    /// An empty set.
    pub fn new() -> Self {
        Challenges::default()
    }

    /// Issues a fresh challenge at `now`, dropping expired ones and, when full, the oldest.
    pub fn issue(&self, rng: &mut impl CryptoRng, now: Instant) -> Challenge {
        let mut value = [0u8; MAX_CHALLENGE];
        rng.fill_bytes(&mut value);
        let mut s = self.lock();
        s.expire(now);
        while s.order.len() >= MAX_CHALLENGES {
            if let Some((old, at)) = s.order.pop_front() {
                s.remove_if_issued_at(&old, at);
            }
        }
        s.live.insert(value, now);
        s.order.push_back((value, now));
        value
    }

    /// Consumes `value` if it was issued and has not expired or been used; true if it was valid.
    pub fn take(&self, value: &[u8], now: Instant) -> bool {
        let Ok(key) = Challenge::try_from(value) else {
            return false;
        };
        let mut s = self.lock();
        match s.live.remove(&key) {
            Some(at) => now.saturating_duration_since(at) < CHALLENGE_TTL,
            None => false,
        }
    }

    /// Challenges outstanding (expired ones may still be counted until the next issue).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether no challenge is outstanding.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a harmful way: at
        // worst a challenge is forgotten. Recover instead of propagating the poison.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some(&(value, at)) = self.order.front() {
            if now.saturating_duration_since(at) < CHALLENGE_TTL {
                break;
            }
            self.order.pop_front();
            self.remove_if_issued_at(&value, at);
        }
    }

    fn remove_if_issued_at(&mut self, value: &Challenge, at: Instant) {
        if self.live.get(value) == Some(&at) {
            self.live.remove(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn single_use_signup_3() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let c = Challenges::new();
        let t0 = Instant::now();
        let v = c.issue(&mut rng, t0);
        assert!(!c.take(&[0u8; 32], t0));
        assert!(!c.take(&v[..31], t0));
        assert!(c.take(&v, t0));
        assert!(!c.take(&v, t0), "a challenge is single-use");
    }

    #[test]
    fn expires_signup_3() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let c = Challenges::new();
        let t0 = Instant::now();
        let v = c.issue(&mut rng, t0);
        assert!(!c.take(&v, t0 + CHALLENGE_TTL));
        let w = c.issue(&mut rng, t0);
        // Issuing later drops the expired ones.
        let _ = c.issue(&mut rng, t0 + CHALLENGE_TTL);
        assert_eq!(c.len(), 1);
        assert!(!c.take(&w, t0 + CHALLENGE_TTL));
    }

    #[test]
    fn bounded() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let c = Challenges::new();
        let t0 = Instant::now();
        let first = c.issue(&mut rng, t0);
        for _ in 0..MAX_CHALLENGES {
            let _ = c.issue(&mut rng, t0);
        }
        assert_eq!(c.len(), MAX_CHALLENGES);
        assert!(!c.take(&first, t0), "the oldest was dropped");
    }
}
