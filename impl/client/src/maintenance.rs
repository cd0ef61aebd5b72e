//! Keeping an account working for months without anyone's help: what is due, decided without
//! I/O from what the store recorded and the server-corrected time ([`due`]), and the event each
//! step leaves ([`Maintenance`]). [`crate::Client::maintain`] runs what is due; the online loop
//! calls it before every connection and every [`MaintenancePolicy::check_every`] while online, and
//! so does every sync.
//!
//! | step | when | what |
//! |---|---|---|
//! | refresh the server time (TIME-1) | [`MaintenancePolicy::refresh_time_every`] since the last | `GET /v1/time`, the offset kept |
//! | renew the certificate (TLS-1) | less than [`MaintenancePolicy::renew_before`] left | a new TLS key, `POST /v1/renew`, key and certificate replaced together |
//! | rotate the signed prekey (KEY-3) | [`MaintenancePolicy::rotate_signed_prekey_every`] since it was made, or the replay cache was full (X3DH-8) | a new one uploaded; the core keeps the last LIM-9 = 3, the grace for first messages in flight |
//! | refill one-time prekeys (KEY-4) | [`MaintenancePolicy::check_prekeys_every`] since the last look | below [`crate::Config::prekey_low_water`] in the directory, up to LIM-15 uploaded |

use std::time::Duration;

use crate::error::Fault;

/// How often each step is due (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenancePolicy {
    /// How often the online loop looks at what is due. Default 1 hour.
    pub check_every: Duration,
    /// Default 1 day.
    pub refresh_time_every: Duration,
    /// Renew when less than this is left of the certificate's validity (one year). Default 30
    /// days.
    pub renew_before: Duration,
    /// Default 7 days (with LIM-9 = 3 kept, a first message still opens two weeks after its
    /// bundle was fetched).
    pub rotate_signed_prekey_every: Duration,
    /// Default 1 day.
    pub check_prekeys_every: Duration,
}

impl Default for MaintenancePolicy {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        MaintenancePolicy {
            check_every: Duration::from_secs(3600),
            refresh_time_every: Duration::from_secs(DAY),
            renew_before: Duration::from_secs(30 * DAY),
            rotate_signed_prekey_every: Duration::from_secs(7 * DAY),
            check_prekeys_every: Duration::from_secs(DAY),
        }
    }
}

/// What the store recorded of the last maintenance (server times, ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// The last `GET /v1/time`.
    pub time_refreshed_at: Option<u64>,
    /// The current certificate's `notAfter`.
    pub certificate_expires_at: Option<u64>,
    /// When the current signed prekey was made.
    pub signed_prekey_made_at: Option<u64>,
    /// The last look at the directory's one-time prekey count.
    pub prekeys_checked_at: Option<u64>,
    /// The replay cache refused a first message since the last rotation (X3DH-8).
    pub replay_cache_full: bool,
}

/// The steps due now, in the order they run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Refresh the server time.
    pub refresh_time: bool,
    /// Renew the certificate.
    pub renew_certificate: bool,
    /// Rotate the signed prekey.
    pub rotate_signed_prekey: bool,
    /// Look at the one-time prekeys (and refill below the low water mark).
    pub check_prekeys: bool,
}

impl Due {
    /// Whether anything is due.
    pub fn any(&self) -> bool {
        self.refresh_time
            || self.renew_certificate
            || self.rotate_signed_prekey
            || self.check_prekeys
    }
}

/// What is due at server time `now` (ms): a step never recorded is due.
pub fn due(policy: &MaintenancePolicy, record: &Record, now: u64) -> Due {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let since =
        |at: Option<u64>, every: Duration| at.is_none_or(|t| now.saturating_sub(t) >= ms(every));
    Due {
        refresh_time: since(record.time_refreshed_at, policy.refresh_time_every),
        renew_certificate: record
            .certificate_expires_at
            .is_some_and(|end| end.saturating_sub(now) < ms(policy.renew_before)),
        rotate_signed_prekey: record.replay_cache_full
            || since(
                record.signed_prekey_made_at,
                policy.rotate_signed_prekey_every,
            ),
        check_prekeys: since(record.prekeys_checked_at, policy.check_prekeys_every),
    }
}

/// A maintenance step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MaintenanceStep {
    /// Refreshing the server time.
    RefreshTime,
    /// Renewing the certificate.
    RenewCertificate,
    /// Rotating the signed prekey.
    RotateSignedPrekey,
    /// Looking at (and refilling) the one-time prekeys.
    CheckPrekeys,
}

/// What one maintenance step did ([`crate::ClientEvent::Maintained`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Maintenance {
    /// The server time offset was refreshed (TIME-1).
    TimeRefreshed {
        /// `server - local`, ms.
        offset_ms: i64,
    },
    /// A new certificate for a new TLS key replaced the old one (the old one is revoked).
    CertificateRenewed {
        /// Its `notAfter`, ms.
        expires_at: u64,
    },
    /// A new signed prekey was made and uploaded (KEY-3).
    SignedPrekeyRotated,
    /// The directory's one-time prekeys were counted; `uploaded` were added (0: enough left).
    PrekeysChecked {
        /// How many the directory had.
        in_directory: u32,
        /// How many were uploaded.
        uploaded: u32,
    },
    /// A step failed; it is due again at the next look.
    Failed {
        /// Which.
        step: MaintenanceStep,
        /// Who is at fault ([`crate::ClientError::fault`]).
        fault: Fault,
        /// Whether trying again may help.
        retryable: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;

    #[test]
    fn what_is_due_follows_the_record_and_the_clock() {
        let p = MaintenancePolicy::default();
        let t0 = 1_000 * DAY;
        // Nothing recorded: everything but the renewal (no certificate date known) is due.
        let fresh = due(&p, &Record::default(), t0);
        assert!(fresh.refresh_time && fresh.rotate_signed_prekey && fresh.check_prekeys);
        assert!(!fresh.renew_certificate);
        // Just after a signup: nothing.
        let done = Record {
            time_refreshed_at: Some(t0),
            certificate_expires_at: Some(t0 + 365 * DAY),
            signed_prekey_made_at: Some(t0),
            prekeys_checked_at: Some(t0),
            replay_cache_full: false,
        };
        assert!(!due(&p, &done, t0).any());
        assert!(!due(&p, &done, t0 + DAY - 1).any());
        // A day later: time and prekeys; a week: the signed prekey; 335 days: the certificate.
        assert_eq!(
            due(&p, &done, t0 + DAY),
            Due {
                refresh_time: true,
                check_prekeys: true,
                ..Due::default()
            }
        );
        assert!(due(&p, &done, t0 + 7 * DAY).rotate_signed_prekey);
        assert!(!due(&p, &done, t0 + 335 * DAY - 1).renew_certificate);
        assert!(due(&p, &done, t0 + 335 * DAY + 1).renew_certificate);
        // A full replay cache asks for a rotation at once (X3DH-8).
        let full = Record {
            replay_cache_full: true,
            ..done
        };
        assert!(due(&p, &full, t0).rotate_signed_prekey);
    }
}
