//! The resend schedule of the outbox (RX-6): when an unconfirmed message is published again.

/// The resend schedule: the n-th attempt (n >= 1) is followed by a wait of
/// `min(first_ms * 2^(n-1), max_ms)`. Deterministic: the caller's clock decides.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Backoff {
    /// Wait after the first attempt, ms.
    pub first_ms: u64,
    /// Longest wait, ms.
    pub max_ms: u64,
}

impl Backoff {
    /// 30 s, doubling up to one hour.
    pub const DEFAULT: Backoff = Backoff {
        first_ms: 30_000,
        max_ms: 3_600_000,
    };

    /// The wait after `attempts` attempts.
    pub fn delay(&self, attempts: u32) -> u64 {
        if attempts == 0 {
            return 0;
        }
        let mut d = self.first_ms;
        for _ in 1..attempts {
            if d >= self.max_ms {
                break;
            }
            d = d.saturating_mul(2);
        }
        d.min(self.max_ms)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::DEFAULT
    }
}
