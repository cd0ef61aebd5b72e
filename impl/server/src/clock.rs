//! The service's wall clock: what it issues certificates at, checks client certificates and
//! renewal timestamps against, tells devices (TIME-1) and expires accounts and revocations by.
//! [`Clock::system`] everywhere but in tests, which may run the service ahead of the system
//! clock (`test-utils`: `Clock::skewed`, `Clock::advance`) to live through a year in minutes.
//! Rate limits and timeouts use the monotonic clock and are not moved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::UnixTime;

/// The service's wall clock (see the module documentation). Clones share it.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// How far ahead of the system clock, ms (0 outside tests).
    ahead_ms: Arc<AtomicU64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// A clock that starts at the system clock and that [`Clock::advance`] moves ahead.
    #[cfg(feature = "test-utils")]
    pub fn skewed() -> Clock {
        Clock::default()
    }

    /// Moves this clock (and every clone) `by` ahead of where it was.
    #[cfg(feature = "test-utils")]
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.ahead_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Now.
    pub fn now(&self) -> SystemTime {
        SystemTime::now() + Duration::from_millis(self.ahead_ms.load(Ordering::Relaxed))
    }

    /// Now, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

impl rustls::time_provider::TimeProvider for Clock {
    fn current_time(&self) -> Option<UnixTime> {
        self.now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(UnixTime::since_unix_epoch)
    }
}
