//! The plan of a soak: who writes to whom, how much, and how often clients drop; the seeded
//! random choices; and the text each message carries (`soak <sender> <seq> <to> <t_us>`).

use std::time::Duration;

use anyhow::ensure;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore as _, SeedableRng as _};

use super::MAX_CLIENTS;
use crate::cli::SoakArgs;

/// Who writes to whom, how much, and how often clients drop.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) n: usize,
    pub(super) m: usize,
    pub(super) window: usize,
    pub(super) disconnect: f64,
    pub(super) offline: Duration,
    pub(super) seed: u64,
    /// Client i writes to `(i + o) % n` for each offset `o`, message `seq` to offset `seq % K`.
    pub(super) offsets: Vec<usize>,
}

impl Plan {
    pub(super) fn new(args: &SoakArgs) -> anyhow::Result<Plan> {
        let n = args.clients;
        ensure!(
            (2..=MAX_CLIENTS).contains(&n),
            "--clients must be between 2 and {MAX_CLIENTS}"
        );
        ensure!(args.messages >= 1, "--messages must be at least 1");
        ensure!(
            args.messages <= 1_000_000,
            "--messages must be at most 1000000"
        );
        ensure!(args.window >= 1, "--window must be at least 1");
        ensure!(
            (0.0..=1.0).contains(&args.disconnect),
            "--disconnect is a probability: between 0 and 1"
        );
        ensure!(args.peers >= 1, "--peers must be at least 1");
        let k = args.peers.min(n - 1);
        // K distinct offsets from 1..n, chosen by the seed (a partial Fisher-Yates shuffle).
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
        let mut pool: Vec<usize> = (1..n).collect();
        for i in 0..k {
            let j = i + below(&mut rng, pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool.sort_unstable();
        Ok(Plan {
            n,
            m: args.messages,
            window: args.window,
            disconnect: args.disconnect,
            offline: args.offline,
            seed: args.seed,
            offsets: pool,
        })
    }

    pub(super) fn total(&self) -> usize {
        self.n * self.m
    }

    /// The recipient of message `seq` of client `i`.
    pub(super) fn target(&self, i: usize, seq: usize) -> usize {
        let k = self.offsets.len().max(1);
        let off = self.offsets.get(seq % k).copied().unwrap_or(1);
        (i + off) % self.n
    }

    /// Everyone `i` writes to or hears from.
    pub(super) fn contacts(&self, i: usize) -> Vec<usize> {
        let mut c: Vec<usize> = self
            .offsets
            .iter()
            .flat_map(|o| [(i + o) % self.n, (i + self.n - o) % self.n])
            .collect();
        c.sort_unstable();
        c.dedup();
        c.retain(|&j| j != i);
        c
    }

    /// The index of message `seq` of client `i` in the tallies.
    pub(super) fn slot(&self, i: usize, seq: usize) -> usize {
        i * self.m + seq
    }

    /// Client `i`'s own random stream.
    pub(super) fn rng(&self, i: usize) -> ChaCha8Rng {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&self.seed.to_le_bytes());
        seed[8..16].copy_from_slice(&(i as u64).to_le_bytes());
        seed[16..24].copy_from_slice(b"soak\0cli");
        ChaCha8Rng::from_seed(seed)
    }
}

/// Uniform in `0..n` (`n >= 1`; the modulo bias is irrelevant here).
fn below(rng: &mut ChaCha8Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// `true` with probability `p`.
pub(super) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    unit < p
}

/// The text of message `seq` from `from` to `to`, sent `t_us` after the start.
pub(super) fn text(from: usize, seq: usize, to: usize, t_us: u64) -> String {
    format!("soak {from} {seq} {to} {t_us}")
}

/// `(from, seq, to, t_us)` of a soak text.
pub(super) fn parse(text: &str) -> Option<(usize, usize, usize, u64)> {
    let mut it = text.split(' ');
    if it.next()? != "soak" {
        return None;
    }
    let from = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let to = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some((from, seq, to, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        assert_eq!(parse(&text(3, 17, 5, 12345)), Some((3, 17, 5, 12345)));
        assert_eq!(parse("soak 1 2 3"), None);
        assert_eq!(parse("hello 1 2 3 4"), None);
        assert_eq!(parse("soak 1 2 3 4 5"), None);
    }
}
