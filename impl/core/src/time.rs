//! Server time (TIME-1, TIME-2): the device keeps the offset between the membership service's clock and
//! its own, and stamps everything with the corrected time, so peers need no synchronised clocks.

/// The offset between server time and local time, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerClock {
    offset_ms: i64,
}

impl ServerClock {
    /// A clock with no correction yet.
    pub fn new() -> Self {
        ServerClock::default()
    }

    /// A clock with a known offset (restored from the store).
    pub fn with_offset(offset_ms: i64) -> Self {
        ServerClock { offset_ms }
    }

    /// Records a server time observed at local time `local_ms` (TIME-1).
    pub fn observe(&mut self, server_ms: u64, local_ms: u64) {
        let s = i128::from(server_ms);
        let l = i128::from(local_ms);
        let d = s.saturating_sub(l);
        self.offset_ms = i64::try_from(d).unwrap_or(if d > 0 { i64::MAX } else { i64::MIN });
    }

    /// The offset, server minus local.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }

    /// The server-corrected time for local time `local_ms` (TIME-2).
    pub fn now(&self, local_ms: u64) -> u64 {
        local_ms.saturating_add_signed(self.offset_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrects_local_time_time_1() {
        let mut c = ServerClock::new();
        assert_eq!(c.now(1_000), 1_000);
        c.observe(10_000, 4_000);
        assert_eq!(c.offset_ms(), 6_000);
        assert_eq!(c.now(5_000), 11_000);
        c.observe(1_000, 4_000);
        assert_eq!(c.now(5_000), 2_000);
        assert_eq!(c.now(0), 0);
        c.observe(0, u64::MAX);
        assert_eq!(c.now(5), 0);
        assert_eq!(c.offset_ms(), i64::MIN);
        c.observe(u64::MAX, 0);
        assert_eq!(c.offset_ms(), i64::MAX);
        // Restored from the store.
        let restored = ServerClock::with_offset(-3_000);
        assert_eq!(restored.offset_ms(), -3_000);
        assert_eq!(restored.now(5_000), 2_000);
    }
}
