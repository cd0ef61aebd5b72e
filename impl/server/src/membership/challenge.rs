//! Signup challenges (SIGNUP-3): fresh random values that bind a proof of work to this service and to
//! this moment, so work cannot be computed ahead of time or spent twice.
//!
//! Held in memory only (a restart forgets them, which only costs a device one more `GET
//! /v1/challenge`), bounded in number ([`MAX_CHALLENGES`], the oldest is dropped first), per source
//! ([`MAX_CHALLENGES_PER_SOURCE`]: a source asking for more drops its own oldest, so one client's
//! flood never drops another's challenge) and in age ([`CHALLENGE_TTL`]), and single-use:
//! [`Challenges::take`] removes the value it accepts. Time is an argument, so the tests need no
//! clock. With the directory on PostgreSQL the instances share their challenges through it
//! ([`super::directory::Directory::offer_challenge`], `redeem_challenge`): a challenge one
//! instance issued is redeemed once, at any instance.

use std::collections::{HashMap, VecDeque};

use crate::admission::SourceKey;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sotto_core::crypto::CryptoRng;
use sotto_core::limits::MAX_CHALLENGE;

/// Most challenges outstanding at once.
pub const MAX_CHALLENGES: usize = 10_000;

/// Most challenges one source ([`SourceKey`]) has outstanding at once.
pub const MAX_CHALLENGES_PER_SOURCE: usize = 16;

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
    // Outstanding values, when each was issued and to which source.
    live: HashMap<Challenge, (Instant, SourceKey)>,
    // Issue order, oldest first; may still name values already taken (skipped when popped).
    order: VecDeque<(Challenge, Instant)>,
    // Each source's outstanding values, oldest first.
    by_source: HashMap<SourceKey, VecDeque<Challenge>>,
}

impl Challenges {
    /// An empty set.
    pub fn new() -> Self {
        Challenges::default()
    }

    /// Issues a fresh challenge to `source` at `now`, dropping expired ones, the source's own
    /// oldest when it holds [`MAX_CHALLENGES_PER_SOURCE`], and, when full, the oldest of all.
    pub fn issue(&self, rng: &mut impl CryptoRng, source: SourceKey, now: Instant) -> Challenge {
        self.issue_dropping(rng, source, now).0
    }

    /// [`Challenges::issue`], also returning the outstanding values it dropped for the bounds
    /// (not the expired ones): a directory shared by several instances forgets them too
    /// ([`super::directory::Directory::offer_challenge`]).
    pub fn issue_dropping(
        &self,
        rng: &mut impl CryptoRng,
        source: SourceKey,
        now: Instant,
    ) -> (Challenge, Vec<Challenge>) {
        let mut value = [0u8; MAX_CHALLENGE];
        rng.fill_bytes(&mut value);
        let mut dropped = Vec::new();
        let mut s = self.lock();
        s.expire(now);
        let own = s.by_source.get(&source).map_or(0, VecDeque::len);
        if own >= MAX_CHALLENGES_PER_SOURCE {
            if let Some(old) = s.by_source.get_mut(&source).and_then(VecDeque::pop_front) {
                s.live.remove(&old);
                dropped.push(old);
            }
        }
        while s.live.len() >= MAX_CHALLENGES {
            let Some((old, at)) = s.order.pop_front() else {
                break;
            };
            if s.remove_if_issued_at(&old, at) {
                dropped.push(old);
            }
        }
        s.live.insert(value, (now, source));
        s.order.push_back((value, now));
        s.by_source.entry(source).or_default().push_back(value);
        // `order` keeps the values a source dropped or a signup took until they come up; keep it
        // bounded by compacting it.
        if s.order.len() > 2 * MAX_CHALLENGES {
            let State { live, order, .. } = &mut *s;
            order.retain(|(v, at)| live.get(v).is_some_and(|(issued, _)| issued == at));
        }
        (value, dropped)
    }

    /// Consumes `value` if it was issued and has not expired or been used; true if it was valid.
    pub fn take(&self, value: &[u8], now: Instant) -> bool {
        let Ok(key) = Challenge::try_from(value) else {
            return false;
        };
        let mut s = self.lock();
        match s.live.remove(&key) {
            Some((at, source)) => {
                s.forget(&key, source);
                now.saturating_duration_since(at) < CHALLENGE_TTL
            }
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
            let _ = self.remove_if_issued_at(&value, at);
        }
    }

    /// Removes `value` if it is still the one issued at `at`; whether it was.
    fn remove_if_issued_at(&mut self, value: &Challenge, at: Instant) -> bool {
        if let Some(&(issued, source)) = self.live.get(value) {
            if issued == at {
                self.live.remove(value);
                self.forget(value, source);
                return true;
            }
        }
        false
    }

    /// Removes `value` from its source's list (at most [`MAX_CHALLENGES_PER_SOURCE`] long).
    fn forget(&mut self, value: &Challenge, source: SourceKey) {
        if let Some(own) = self.by_source.get_mut(&source) {
            own.retain(|v| v != value);
            if own.is_empty() {
                self.by_source.remove(&source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::SourceKeys;
    use rand_core::SeedableRng;
    use std::net::{IpAddr, Ipv4Addr};

    fn src(n: u32) -> SourceKey {
        SourceKeys::new([4; 32]).key(IpAddr::V4(Ipv4Addr::from(n)))
    }

    #[test]
    fn single_use_signup_3() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let c = Challenges::new();
        let t0 = Instant::now();
        let v = c.issue(&mut rng, src(1), t0);
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
        let v = c.issue(&mut rng, src(1), t0);
        assert!(!c.take(&v, t0 + CHALLENGE_TTL));
        let w = c.issue(&mut rng, src(1), t0);
        // Issuing later drops the expired ones.
        let _ = c.issue(&mut rng, src(1), t0 + CHALLENGE_TTL);
        assert_eq!(c.len(), 1);
        assert!(!c.take(&w, t0 + CHALLENGE_TTL));
    }

    #[test]
    fn bounded() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let c = Challenges::new();
        let t0 = Instant::now();
        let first = c.issue(&mut rng, src(0), t0);
        for n in 0..MAX_CHALLENGES as u32 {
            let _ = c.issue(&mut rng, src(n + 1), t0);
        }
        assert_eq!(c.len(), MAX_CHALLENGES);
        assert!(!c.take(&first, t0), "the oldest was dropped");
    }

    #[test]
    fn a_flood_from_one_source_drops_only_its_own() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);
        let c = Challenges::new();
        let t0 = Instant::now();
        let honest = c.issue(&mut rng, src(1), t0);
        let mut flood = Vec::new();
        for _ in 0..MAX_CHALLENGES + 100 {
            flood.push(c.issue(&mut rng, src(2), t0));
        }
        assert_eq!(c.len(), 1 + MAX_CHALLENGES_PER_SOURCE);
        assert!(
            c.take(&honest, t0),
            "the honest challenge survived the flood"
        );
        assert!(!c.take(&flood[0], t0), "the flood's oldest went");
        assert!(c.take(&flood[flood.len() - 1], t0));
    }

    #[test]
    fn what_the_bounds_drop_is_named() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let c = Challenges::new();
        let t0 = Instant::now();
        let own: Vec<Challenge> = (0..MAX_CHALLENGES_PER_SOURCE)
            .map(|_| c.issue(&mut rng, src(1), t0))
            .collect();
        let (_, dropped) = c.issue_dropping(&mut rng, src(1), t0);
        assert_eq!(dropped, vec![own[0]], "the source's own oldest");
        // Expired ones are not named: they are dead everywhere anyway.
        let (_, dropped) = c.issue_dropping(&mut rng, src(2), t0 + CHALLENGE_TTL);
        assert!(dropped.is_empty());
    }
}
