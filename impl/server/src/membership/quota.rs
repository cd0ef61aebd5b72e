//! Rate limits of the membership service, without I/O (time is an argument): signups per source
//! and in all, and one-time prekeys handed out per requester, per target and per pair of them.
//!
//! ```text
//!  POST /v1/signup     Quotas::signup(source, now)        Err(retry after) -> 429 rate_limited
//!  GET  /v1/bundle/B   Quotas::one_time_prekey(A, B, now) false -> the bundle without a
//!                                                          one-time prekey (KEY-4 allows it)
//! ```
//!
//! Each limit is a token bucket: it holds up to `burst` tokens, gains one every `every`, and each
//! act takes one. A source is a [`SourceKey`] (a keyed hash of the address, see
//! [`crate::admission`]); a requester, a target and a pair are keyed hashes of user ids under a
//! key drawn at each start, so the maps name no user and no address. A bucket that has filled up
//! again holds nothing worth keeping and is dropped; each map is bounded ([`MAX_TRACKED`]): when
//! it is full of buckets still in use, a new key is limited at once (the service errs towards
//! refusing, never towards forgetting a limit).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sotto_core::UserId;
use zeroize::Zeroizing;

use crate::admission::SourceKey;

/// Most keys one limit tracks at once.
pub const MAX_TRACKED: usize = 65_536;

/// A token bucket's shape: up to `burst` acts at once, one more every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Tokens when full.
    pub burst: u32,
    /// Time to gain one token.
    pub every: Duration,
}

/// The limits in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Signups from one source.
    pub signups_per_source: Rate,
    /// Signups in all.
    pub signups: Rate,
    /// One-time prekeys one requester takes, whoever the targets.
    pub prekeys_per_requester: Rate,
    /// One-time prekeys of one target, whoever the requesters.
    pub prekeys_per_target: Rate,
    /// One-time prekeys of one target one requester takes.
    pub prekeys_per_pair: Rate,
}

impl QuotaLimits {
    /// The service's defaults: 20 signups at once from a source, then one every 30 s; 100 at
    /// once in all, then ten a second; a requester takes 20 one-time prekeys at once, then one a
    /// minute; a target gives 10 at once, then one every 10 minutes; a requester takes 2 of one
    /// target at once, then one a day.
    pub const DEFAULT: QuotaLimits = QuotaLimits {
        signups_per_source: Rate {
            burst: 20,
            every: Duration::from_secs(30),
        },
        signups: Rate {
            burst: 100,
            every: Duration::from_millis(100),
        },
        prekeys_per_requester: Rate {
            burst: 20,
            every: Duration::from_secs(60),
        },
        prekeys_per_target: Rate {
            burst: 10,
            every: Duration::from_secs(600),
        },
        prekeys_per_pair: Rate {
            burst: 2,
            every: Duration::from_secs(24 * 3600),
        },
    };
}

impl QuotaLimits {
    /// These limits with `burst` signups at once from one source (and at least as many in all):
    /// for a load test, or many people behind one address.
    pub fn with_signup_burst(self, burst: u32) -> QuotaLimits {
        QuotaLimits {
            signups_per_source: Rate {
                burst,
                ..self.signups_per_source
            },
            signups: Rate {
                burst: self.signups.burst.max(burst),
                ..self.signups
            },
            ..self
        }
    }
}

/// A signup beyond a limit: try again after `retry_after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// When the next token comes.
    pub retry_after: Duration,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

/// The buckets of one limit, by key.
#[derive(Debug)]
struct Limit<K> {
    rate: Rate,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Copy> Limit<K> {
    fn new(rate: Rate) -> Self {
        Limit {
            rate: Rate {
                burst: rate.burst.max(1),
                every: rate.every.max(Duration::from_millis(1)),
            },
            buckets: HashMap::new(),
        }
    }

    /// The bucket of `key` brought up to `now`.
    fn refill(&self, b: Bucket, now: Instant) -> Bucket {
        let every = self.rate.every.as_nanos().max(1);
        let gained = now.saturating_duration_since(b.at).as_nanos() / every;
        if gained == 0 {
            return b;
        }
        let tokens = u128::from(b.tokens)
            .saturating_add(gained)
            .min(u128::from(self.rate.burst));
        let at = if tokens == u128::from(self.rate.burst) {
            now
        } else {
            // Keep the part of a period already gone.
            b.at + Duration::from_nanos(u64::try_from(gained * every).unwrap_or(u64::MAX))
        };
        Bucket {
            tokens: u32::try_from(tokens).unwrap_or(self.rate.burst),
            at,
        }
    }

    /// Whether `key` has a token at `now` (without taking it), and if not, when it will.
    fn check(&mut self, key: K, now: Instant) -> Result<(), Limited> {
        let b = match self.buckets.get(&key) {
            Some(b) => self.refill(*b, now),
            None => {
                if self.buckets.len() >= MAX_TRACKED {
                    self.prune(now);
                }
                if self.buckets.len() >= MAX_TRACKED {
                    return Err(Limited {
                        retry_after: self.rate.every,
                    });
                }
                return Ok(());
            }
        };
        if b.tokens > 0 {
            return Ok(());
        }
        let next = b.at + self.rate.every;
        Err(Limited {
            retry_after: next.saturating_duration_since(now),
        })
    }

    /// Takes a token of `key` (after a successful [`Limit::check`] at the same `now`).
    fn take(&mut self, key: K, now: Instant) {
        let b = match self.buckets.get(&key) {
            Some(b) => self.refill(*b, now),
            None => Bucket {
                tokens: self.rate.burst,
                at: now,
            },
        };
        self.buckets.insert(
            key,
            Bucket {
                tokens: b.tokens.saturating_sub(1),
                at: b.at,
            },
        );
    }

    /// Drops the buckets that are full again.
    fn prune(&mut self, now: Instant) {
        let full: Vec<K> = self
            .buckets
            .iter()
            .filter(|(_, b)| self.refill(**b, now).tokens >= self.rate.burst)
            .map(|(k, _)| *k)
            .collect();
        for k in full {
            self.buckets.remove(&k);
        }
    }
}

/// A keyed hash of a user id or a pair of them (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct UserKey([u8; 8]);

/// The rate limits of one membership service.
pub struct Quotas {
    key: Zeroizing<[u8; 32]>,
    signups_per_source: Limit<SourceKey>,
    signups: Limit<()>,
    prekeys_per_requester: Limit<UserKey>,
    prekeys_per_target: Limit<UserKey>,
    prekeys_per_pair: Limit<UserKey>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas").finish_non_exhaustive()
    }
}

impl Quotas {
    /// Empty buckets of `limits`, user ids keyed under `key` (draw it at random at each start).
    pub fn new(limits: QuotaLimits, key: [u8; 32]) -> Quotas {
        Quotas {
            key: Zeroizing::new(key),
            signups_per_source: Limit::new(limits.signups_per_source),
            signups: Limit::new(limits.signups),
            prekeys_per_requester: Limit::new(limits.prekeys_per_requester),
            prekeys_per_target: Limit::new(limits.prekeys_per_target),
            prekeys_per_pair: Limit::new(limits.prekeys_per_pair),
        }
    }

    /// A signup from `source` at `now`: counted, or refused until `retry_after`.
    pub fn signup(&mut self, source: SourceKey, now: Instant) -> Result<(), Limited> {
        self.signups_per_source.check(source, now)?;
        self.signups.check((), now)?;
        self.signups_per_source.take(source, now);
        self.signups.take((), now);
        Ok(())
    }

    /// Whether `requester` may take one of `target`'s one-time prekeys at `now` (counted if so).
    /// `false`: hand out the bundle without one.
    pub fn one_time_prekey(&mut self, requester: &UserId, target: &UserId, now: Instant) -> bool {
        let r = self.user_key(b"requester", &[requester]);
        let t = self.user_key(b"target", &[target]);
        let p = self.user_key(b"pair", &[requester, target]);
        let allowed = self.prekeys_per_requester.check(r, now).is_ok()
            && self.prekeys_per_target.check(t, now).is_ok()
            && self.prekeys_per_pair.check(p, now).is_ok();
        if allowed {
            self.prekeys_per_requester.take(r, now);
            self.prekeys_per_target.take(t, now);
            self.prekeys_per_pair.take(p, now);
        }
        allowed
    }

    fn user_key(&self, label: &[u8], users: &[&UserId]) -> UserKey {
        let mut h = Sha256::new();
        h.update(&self.key[..]);
        h.update(label);
        for u in users {
            h.update(u.0);
        }
        let digest = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        UserKey(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::SourceKeys;
    use std::net::{IpAddr, Ipv4Addr};

    fn source(n: u8) -> SourceKey {
        SourceKeys::new([1; 32]).key(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)))
    }

    fn limits() -> QuotaLimits {
        QuotaLimits {
            signups_per_source: Rate {
                burst: 3,
                every: Duration::from_secs(10),
            },
            signups: Rate {
                burst: 5,
                every: Duration::from_secs(1),
            },
            ..QuotaLimits::DEFAULT
        }
    }

    #[test]
    fn signups_per_source_then_in_all() {
        let mut q = Quotas::new(limits(), [2; 32]);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(q.signup(source(1), t0), Ok(()));
        }
        assert_eq!(
            q.signup(source(1), t0),
            Err(Limited {
                retry_after: Duration::from_secs(10)
            })
        );
        // Another source still signs up, until the total is spent.
        assert_eq!(q.signup(source(2), t0), Ok(()));
        assert_eq!(q.signup(source(3), t0), Ok(()));
        assert!(q.signup(source(4), t0).is_err(), "five in all at once");
        // A refused signup takes nothing: after a second the total has one token again.
        assert_eq!(q.signup(source(4), t0 + Duration::from_secs(1)), Ok(()));
        // After its period the first source has one again, not more.
        let t10 = t0 + Duration::from_secs(10);
        assert_eq!(q.signup(source(1), t10), Ok(()));
        assert!(q.signup(source(1), t10).is_err());
    }

    #[test]
    fn one_time_prekeys_per_pair_target_and_requester() {
        let mut q = Quotas::new(QuotaLimits::DEFAULT, [3; 32]);
        let t0 = Instant::now();
        let (a, b, c) = (UserId([1; 10]), UserId([2; 10]), UserId([3; 10]));
        assert!(q.one_time_prekey(&a, &b, t0));
        assert!(q.one_time_prekey(&a, &b, t0));
        assert!(!q.one_time_prekey(&a, &b, t0), "two per pair at once");
        assert!(
            q.one_time_prekey(&c, &b, t0),
            "another requester of the same target"
        );
        // The target gives ten at once, whoever asks.
        let mut given = 3;
        for n in 10..30u8 {
            if q.one_time_prekey(&UserId([n; 10]), &b, t0) {
                given += 1;
            }
        }
        assert_eq!(given, 10);
        // One requester takes twenty at once, whoever the targets.
        let mut taken = 0;
        for n in 100..130u8 {
            if q.one_time_prekey(&c, &UserId([n; 10]), t0) {
                taken += 1;
            }
        }
        assert_eq!(taken, 19, "twenty in all, one already taken of b");
    }

    #[test]
    fn full_buckets_are_forgotten_and_the_maps_are_bounded() {
        let mut l: Limit<u32> = Limit::new(Rate {
            burst: 1,
            every: Duration::from_secs(1),
        });
        let t0 = Instant::now();
        for k in 0..MAX_TRACKED as u32 {
            assert!(l.check(k, t0).is_ok());
            l.take(k, t0);
        }
        // Full of buckets in use: a new key is limited.
        assert!(l.check(u32::MAX, t0).is_err());
        // A second later every bucket is full again: pruned, the new key passes.
        assert!(l.check(u32::MAX, t0 + Duration::from_secs(1)).is_ok());
        assert!(l.buckets.is_empty());
    }
}
