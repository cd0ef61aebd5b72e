//! The refusal notice (BROKER-5): how the message service tells a sender that a QoS 1 PUBLISH it
//! acknowledges was **not** queued. MQTT 3.1.1 has no negative PUBACK, so the front writes, on the
//! same connection and right before the PUBACK of the refused packet id, a QoS 0 PUBLISH on the
//! reserved topic [`NOTICE_TOPIC`]:
//!
//! ```text
//!  front -> sender   PUBLISH QoS 0, topic "$sotto/refused", payload: pkid (u16 BE) || reason (u8)
//!  front -> sender   PUBACK pkid           (frees the sender's packet id; the envelope was NOT queued)
//! ```
//!
//! A sender that reads a notice for packet id `p` treats the next PUBACK of `p` as a refusal. For
//! a passing reason ([`RefusalReason::InboxFull`], and any code it does not know) the envelope
//! stays in its outbox, is tried again after its backoff, and the user can see why it waits; for
//! a permanent one ([`RefusalReason::is_permanent`]: [`RefusalReason::NoSuchRecipient`], the
//! recipient deleted their account) it is never tried again and the message is undeliverable. Clients cannot publish to `$`-topics (BROKER-3) nor subscribe to them (BROKER-2), so a
//! notice always comes from the service.

use std::fmt;

/// The reserved topic of refusal notices.
pub const NOTICE_TOPIC: &str = "$sotto/refused";
/// Length of a notice payload.
pub const NOTICE_LEN: usize = 3;

/// Why the service refused a PUBLISH it acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalReason {
    /// 1: the recipient's inbox holds its limit of envelopes or bytes (BROKER-5); try later.
    InboxFull,
    /// 2: the recipient deleted their account (`POST /v1/account/delete`): there is no inbox
    /// to queue in, now or later. Permanent: do not try again.
    NoSuchRecipient,
    /// A reason code this version does not know; the envelope was not queued all the same.
    Other(u8),
}

impl RefusalReason {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            RefusalReason::InboxFull => 1,
            RefusalReason::NoSuchRecipient => 2,
            RefusalReason::Other(c) => c,
        }
    }

    /// The reason of a wire code.
    pub fn from_code(code: u8) -> RefusalReason {
        match code {
            1 => RefusalReason::InboxFull,
            2 => RefusalReason::NoSuchRecipient,
            c => RefusalReason::Other(c),
        }
    }

    /// Whether trying again can never help ([`RefusalReason::NoSuchRecipient`]): the sender
    /// stops retrying the envelope. Unknown codes are not permanent (an older client keeps
    /// retrying what a newer service refuses, as it did before the code existed).
    pub fn is_permanent(self) -> bool {
        matches!(self, RefusalReason::NoSuchRecipient)
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefusalReason::InboxFull => f.write_str("the recipient's inbox is full"),
            RefusalReason::NoSuchRecipient => {
                f.write_str("the recipient deleted their account (no such user)")
            }
            RefusalReason::Other(c) => write!(f, "refused by the service (reason {c})"),
        }
    }
}

/// One refusal notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefusalNotice {
    /// The packet id of the refused PUBLISH.
    pub pkid: u16,
    /// Why.
    pub reason: RefusalReason,
}

/// A notice payload that is not [`NOTICE_LEN`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusal notice of {0} bytes (expected {NOTICE_LEN})")]
pub struct BadNotice(pub usize);

impl RefusalNotice {
    /// The payload bytes.
    pub fn to_bytes(self) -> [u8; NOTICE_LEN] {
        let [hi, lo] = self.pkid.to_be_bytes();
        [hi, lo, self.reason.code()]
    }

    /// Parses a payload received on [`NOTICE_TOPIC`].
    pub fn from_bytes(payload: &[u8]) -> Result<RefusalNotice, BadNotice> {
        match payload {
            [hi, lo, code] => Ok(RefusalNotice {
                pkid: u16::from_be_bytes([*hi, *lo]),
                reason: RefusalReason::from_code(*code),
            }),
            _ => Err(BadNotice(payload.len())),
        }
    }

    /// The whole MQTT packet the front writes: a QoS 0 PUBLISH on [`NOTICE_TOPIC`].
    pub fn encode(self) -> Vec<u8> {
        crate::mqtt::encode_publish(NOTICE_TOPIC, None, false, &self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_lengths() {
        let n = RefusalNotice {
            pkid: 0xbeef,
            reason: RefusalReason::InboxFull,
        };
        assert_eq!(n.to_bytes(), [0xbe, 0xef, 1]);
        assert_eq!(RefusalNotice::from_bytes(&n.to_bytes()), Ok(n));
        assert_eq!(
            RefusalNotice::from_bytes(&[0, 1, 9]).map(|n| n.reason),
            Ok(RefusalReason::Other(9))
        );
        assert_eq!(
            RefusalNotice::from_bytes(&[0, 1, 2]).map(|n| n.reason),
            Ok(RefusalReason::NoSuchRecipient)
        );
        assert!(RefusalReason::NoSuchRecipient.is_permanent());
        assert!(!RefusalReason::InboxFull.is_permanent());
        assert!(!RefusalReason::Other(9).is_permanent());
        assert_eq!(RefusalReason::NoSuchRecipient.code(), 2);
        assert_eq!(RefusalNotice::from_bytes(&[0, 1]), Err(BadNotice(2)));
        assert_eq!(RefusalNotice::from_bytes(&[0; 4]), Err(BadNotice(4)));
        let packet = n.encode();
        assert_eq!(crate::mqtt::publish_payload(&packet), Ok(&n.to_bytes()[..]));
    }
}
