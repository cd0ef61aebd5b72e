//! Identifiers (protocol.md section 2): user ids (ID-1), group ids (ID-2), message ids (ID-3) and the
//! inbox topic (ID-5).

use core::fmt;
use core::str::FromStr;

use crate::base32;
use crate::crypto::{CryptoRng, short_hex};
use crate::error::DecodeError;

/// A user id: 80 random bits from the membership service (ID-1). Shown as 16 base32 characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(pub [u8; 10]);

impl UserId {
    /// Length on the wire.
    pub const LEN: usize = 10;

    /// A fresh random user id (what the membership service assigns).
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut b = [0u8; 10];
        rng.fill_bytes(&mut b);
        UserId(b)
    }

    /// The 16-character form `[a-z2-7]{16}`.
    pub fn to_text(&self) -> String {
        base32::encode(&self.0)
    }

    /// The inbox topic `i/<user id>` (ID-5).
    pub fn inbox_topic(&self) -> String {
        format!("i/{}", self.to_text())
    }

    /// Parses the 16-character form; only lowercase `[a-z2-7]` is accepted, so each user id has
    /// exactly one text form (and one MQTT topic).
    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        if text.len() != 16
            || !text
                .bytes()
                .all(|c| c.is_ascii_lowercase() || (b'2'..=b'7').contains(&c))
                && !mutated!(Mutation::AllowUpperCaseUserId)
        {
            return Err(DecodeError::InvalidUserId);
        }
        #[cfg(feature = "mutations")]
        let lower = text.to_ascii_lowercase();
        #[cfg(feature = "mutations")]
        let text = if mutated!(Mutation::AllowUpperCaseUserId) {
            lower.as_str()
        } else {
            text
        };
        let bytes = base32::decode(text).map_err(|_| DecodeError::InvalidUserId)?;
        let arr: [u8; 10] = bytes.try_into().map_err(|_| DecodeError::InvalidUserId)?;
        Ok(UserId(arr))
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.to_text())
    }
}

impl FromStr for UserId {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UserId::parse(s)
    }
}

/// A group id: 16 random bytes chosen by the admin (ID-2).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub [u8; 16]);

impl GroupId {
    /// A fresh random group id.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        GroupId(b)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", short_hex(&self.0))
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

/// A message id, derived from the message's chain (ID-3, CHAIN-3). Known to both ends, never sent in
/// the clear.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub [u8; 16]);

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", short_hex(&self.0))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_and_debug_forms_id_1_id_2_id_3() {
        let user = UserId([0xff; 10]);
        assert_eq!(user.to_string(), "7777777777777777");
        assert_eq!(format!("{user:?}"), "UserId(7777777777777777)");
        assert_eq!("7777777777777777".parse::<UserId>().unwrap(), user);
        let group = GroupId([0x01; 16]);
        assert_eq!(group.to_string(), "aeaqcaibaeaqcaibaeaqcaibae");
        assert_eq!(format!("{group:?}"), "GroupId(010101010101..)");
        let msg = MessageId([0xab; 16]);
        assert_eq!(msg.to_string(), "ab".repeat(16));
        assert_eq!(format!("{msg:?}"), "MessageId(abababababab..)");
    }

    #[test]
    fn user_id_text_form_id_1() {
        let id = UserId([0; 10]);
        assert_eq!(id.to_text(), "aaaaaaaaaaaaaaaa");
        assert_eq!(id.inbox_topic(), "i/aaaaaaaaaaaaaaaa");
        assert_eq!(id.inbox_topic().len(), 18);
        for bad in [
            "",
            "aaaaaaaaaaaaaaa",
            "aaaaaaaaaaaaaaaaa",
            "AAAAAAAAAAAAAAAA",
            "aaaaaaaaaaaaaaa1",
        ] {
            assert_eq!(UserId::parse(bad), Err(DecodeError::InvalidUserId), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn user_id_round_trips(b in any::<[u8; 10]>()) {
            let id = UserId(b);
            prop_assert_eq!(UserId::parse(&id.to_text()).unwrap(), id);
        }
    }
}
