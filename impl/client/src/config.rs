//! [`Config`]: every tuning knob of the client in one struct, with defaults that suit a phone on a
//! mobile network. An app passes it to [`crate::Client::signup_with`] or
//! [`crate::Client::open_with`]; [`Default`] is what [`crate::Client::signup`] and
//! [`crate::Client::open`] use.
//!
//! ```
//! use std::time::Duration;
//! let config = sotto_client::Config {
//!     keep_alive: Duration::from_secs(60),
//!     ..sotto_client::Config::default()
//! };
//! assert_eq!(config.max_inflight, 256);
//! ```

use std::time::Duration;

use sotto_store::{Backoff, KdfParams};

/// How the client behaves. Every field has a documented default ([`Config::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Argon2id parameters of a store created at signup (STORE-1). Default: the store's
    /// [`KdfParams::default`] (64 MiB, 3 passes).
    pub kdf: KdfParams,
    /// One-time prekeys sent with the signup request (at most LIM-15, 100). Default 50.
    pub signup_one_time_prekeys: usize,
    /// Below this many one-time prekeys in the directory, a refill uploads more (KEY-4).
    /// Default 20.
    pub prekey_low_water: u32,
    /// Connect once after signup so the broker keeps a persistent MQTT session for the inbox
    /// (BROKER-4): messages sent before the first real connection are then queued, not lost.
    /// `None` skips it; a failure is logged, not returned. Default 15 s.
    pub establish_inbox: Option<Duration>,
    /// MQTT keep-alive; the front accepts 5 s to 1,200 s. Default 30 s.
    pub keep_alive: Duration,
    /// Largest MQTT packet either way; a LIM-1 envelope with its topic needs 8,214 bytes.
    /// Default 16 KiB.
    pub max_packet: usize,
    /// Publishes awaiting their PUBACK at once (the online loop also commits the sends queued
    /// together, so this bounds the bursts a sender commits at once). Default 256.
    pub max_inflight: usize,
    /// Events buffered for the app by [`crate::Client::connect`]; beyond this they are dropped
    /// with a warning (the store has everything). Default 1,024.
    pub event_capacity: usize,
    /// How long [`crate::Client::sync`] waits with nothing new before it ends. Default 1.5 s.
    pub sync_quiet: Duration,
    /// First delay before a reconnection; it doubles up to [`Config::reconnect_max`].
    /// Default 0.5 s.
    pub reconnect_first: Duration,
    /// Longest delay between reconnections. Default 60 s.
    pub reconnect_max: Duration,
    /// When the outbox publishes an unconfirmed message again (RX-6). Default: the store's
    /// [`Backoff::default`].
    pub resend: Backoff,
    /// When the account maintains itself ([`crate::maintenance`]); `None` turns it off.
    /// Default: [`crate::maintenance::MaintenancePolicy::default`].
    pub maintenance: Option<crate::maintenance::MaintenancePolicy>,
    /// Host names to reach at a given address instead of through DNS, certificates still
    /// verified for the name (`curl --resolve`; [`crate::resolve`]). Default: none.
    pub resolve: crate::Resolve,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kdf: KdfParams::default(),
            signup_one_time_prekeys: 50,
            prekey_low_water: 20,
            establish_inbox: Some(Duration::from_secs(15)),
            keep_alive: Duration::from_secs(30),
            max_packet: 16 * 1024,
            max_inflight: 256,
            event_capacity: 1024,
            sync_quiet: Duration::from_millis(1500),
            reconnect_first: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(60),
            resend: Backoff::default(),
            maintenance: Some(crate::maintenance::MaintenancePolicy::default()),
            resolve: crate::Resolve::none(),
        }
    }
}

impl Config {
    /// Checks the ranges the protocol and the service impose: at most LIM-15 one-time prekeys, a
    /// keep-alive the front accepts (BROKER rules), room for a LIM-1 envelope in a packet, at
    /// least one publish in flight and one event buffered.
    pub fn check(&self) -> crate::Result<()> {
        use crate::ClientError::Invalid;
        use sotto_wire::filter::{KEEP_ALIVE_MAX, KEEP_ALIVE_MIN, MAX_CLIENT_REMAINING};
        if self.signup_one_time_prekeys > sotto_core::limits::MAX_OPK_UPLOAD {
            return Err(Invalid("more one-time prekeys than LIM-15"));
        }
        let keep_alive = self.keep_alive.as_secs();
        if keep_alive < u64::from(KEEP_ALIVE_MIN) || keep_alive > u64::from(KEEP_ALIVE_MAX) {
            return Err(Invalid("keep-alive outside 5 s ..= 1200 s"));
        }
        if self.max_packet < MAX_CLIENT_REMAINING + 5 {
            return Err(Invalid("max_packet below a LIM-1 envelope's packet"));
        }
        if self.max_inflight == 0 || self.max_inflight > 1024 {
            return Err(Invalid("max_inflight outside 1 ..= 1024"));
        }
        if self.event_capacity == 0 {
            return Err(Invalid("event_capacity of 0"));
        }
        if self.reconnect_first.is_zero() || self.reconnect_max < self.reconnect_first {
            return Err(Invalid("reconnect delays"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_passes_its_own_check_and_bad_values_do_not() {
        assert!(Config::default().check().is_ok());
        for bad in [
            Config {
                keep_alive: Duration::from_secs(1),
                ..Config::default()
            },
            Config {
                signup_one_time_prekeys: 101,
                ..Config::default()
            },
            Config {
                max_packet: 1024,
                ..Config::default()
            },
            Config {
                max_inflight: 0,
                ..Config::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
