//! The contact card exchanged in person (CARD-1..CARD-4, Req2, Req5) and the safety number (SAFE-1).
//!
//! ```text
//!   card bytes  = 0x01 || user id [10] || public identity [128] || signed prekey [100] || check [4]
//!   card URI    = "sotto:" || base32(card bytes)            (395 characters, case-insensitive)
//! ```
//! Scanning a card yields a [`PreKeyBundle`] with no one-time prekey and no server involved, so a first
//! message can be composed offline; the contact is then *verified*.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha512};

use crate::base32;
use crate::codec::{Reader, Writer};
use crate::crypto::{self, SignPublic};
use crate::error::{DecodeError, Error, Result};
use crate::ids::UserId;
use crate::kdf;
use crate::keys::{PreKeyBundle, PublicIdentity, SignedPreKey};
use crate::limits::MAX_CARD_URI;

/// The URI scheme prefix (CARD-2).
pub const SCHEME: &str = "sotto:";
/// Length of the card bytes (CARD-1).
pub const CARD_LEN: usize = 243;

/// A verified contact card.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ContactCard {
    user_id: UserId,
    identity: PublicIdentity,
    spk: SignedPreKey,
}

impl ContactCard {
    /// The card of a device.
    pub fn new(user_id: UserId, identity: PublicIdentity, spk: SignedPreKey) -> Self {
        ContactCard {
            user_id,
            identity,
            spk,
        }
    }

    /// The owner's user id.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The owner's identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The bundle a session starts from (no one-time prekey: X3DH-5).
    pub fn bundle(&self) -> PreKeyBundle {
        PreKeyBundle::new(self.user_id, self.identity, self.spk, None)
    }

    /// The 243 card bytes (CARD-1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(CARD_LEN);
        w.u8(0x01).bytes(&self.user_id.0);
        self.identity.encode(&mut w);
        self.spk.encode(&mut w);
        let check = checksum(w.as_slice());
        w.bytes(&check);
        w.into_vec()
    }

    /// Decodes and verifies card bytes (CARD-3 after the URI layer).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 0x01 {
            return Err(DecodeError::UnknownVersion.into());
        }
        let body_len = CARD_LEN.saturating_sub(4);
        if bytes.len() < CARD_LEN {
            return Err(DecodeError::Truncated.into());
        }
        if bytes.len() > CARD_LEN {
            return Err(DecodeError::TrailingBytes.into());
        }
        let (body, check) = bytes.split_at(body_len);
        if !crypto::ct_eq(&checksum(body), check) && !mutated!(Mutation::SkipCardChecksum) {
            return Err(DecodeError::BadChecksum.into());
        }
        let user_id = UserId(r.array()?);
        let identity = PublicIdentity::read_unverified(&mut r)?;
        let spk = SignedPreKey::read_unverified(&mut r)?;
        let _check: [u8; 4] = r.array()?;
        r.finish()?;
        // NOT-5: the signatures after the whole layout.
        identity.verify()?;
        spk.verify(&identity)?;
        Ok(ContactCard {
            user_id,
            identity,
            spk,
        })
    }

    /// The `sotto:` URI (CARD-2), lowercase.
    pub fn to_uri(&self) -> String {
        format!("{SCHEME}{}", base32::encode(&self.to_bytes()))
    }

    /// Parses a card URI in either case (CARD-2, CARD-3).
    pub fn from_uri(uri: &str) -> Result<Self> {
        if uri.len() > MAX_CARD_URI && !mutated!(Mutation::SkipCardUriBound) {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let prefix = uri.get(..SCHEME.len()).ok_or(DecodeError::BadUri)?;
        if !prefix.eq_ignore_ascii_case(SCHEME) && !mutated!(Mutation::AcceptAnyCardScheme) {
            return Err(DecodeError::BadUri.into());
        }
        let payload = uri.get(SCHEME.len()..).ok_or(DecodeError::BadUri)?;
        ContactCard::from_bytes(&base32::decode(payload)?)
    }
}

impl fmt::Display for ContactCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl FromStr for ContactCard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ContactCard::from_uri(s)
    }
}

fn checksum(body: &[u8]) -> [u8; 4] {
    let h = crypto::sha256(&[kdf::CARD, body]);
    [h[0], h[1], h[2], h[3]]
}

/// Iterations of SAFE-1.
pub const SAFETY_ITERATIONS: u32 = 5200;

/// A 60-digit safety number (SAFE-1): the same on both devices iff each holds the other's real `IKs`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The safety number of two parties, in either order.
    pub fn compute(a: (&UserId, &SignPublic), b: (&UserId, &SignPublic)) -> Self {
        let fa = fingerprint(a.0, a.1);
        let fb = fingerprint(b.0, b.1);
        let (first, second) = if fa <= fb { (fa, fb) } else { (fb, fa) };
        SafetyNumber(first + &second)
    }

    /// The 60 digits.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// Twelve groups of five digits separated by spaces, as shown to people.
    pub fn grouped(&self) -> String {
        let chunks: Vec<&str> = (0..12)
            .filter_map(|i: usize| {
                self.0
                    .get(i.saturating_mul(5)..i.saturating_mul(5).saturating_add(5))
            })
            .collect();
        chunks.join(" ")
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.grouped())
    }
}

/// One party's 30 digits (SAFE-1).
pub fn fingerprint(user: &UserId, iks: &SignPublic) -> String {
    let mut h = Sha512::new();
    h.update([0x00, 0x01]);
    h.update(kdf::SAFETY);
    h.update(iks.0);
    h.update(user.0);
    let mut digest = h.finalize();
    for _ in 0..SAFETY_ITERATIONS {
        let mut h = Sha512::new();
        h.update(digest);
        h.update(iks.0);
        digest = h.finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in digest.chunks_exact(5).take(6) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        out.push_str(&format!("{:05}", v % 100_000));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::Identity;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn card(seed: u64) -> ContactCard {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let id = Identity::generate(&mut rng);
        let spk = id.new_signed_prekey(&mut rng, 42);
        ContactCard::new(UserId::random(&mut rng), *id.public(), *spk.public())
    }

    #[test]
    fn uri_round_trips_in_either_case_card_2() {
        let c = card(1);
        let uri = c.to_uri();
        assert_eq!(uri.len(), 395);
        assert!(uri.starts_with("sotto:"));
        assert_eq!(ContactCard::from_uri(&uri).unwrap(), c);
        assert_eq!(ContactCard::from_uri(&uri.to_uppercase()).unwrap(), c);
        assert_eq!(c.bundle().one_time_prekey(), None);
        // Display and FromStr are the URI.
        assert_eq!(c.to_string(), uri);
        assert_eq!(uri.parse::<ContactCard>().unwrap(), c);
    }

    #[test]
    fn every_flipped_byte_is_an_error_card_3() {
        let bytes = card(2).to_bytes();
        assert_eq!(bytes.len(), CARD_LEN);
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                assert!(ContactCard::from_bytes(&b).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn bad_uris_card_3() {
        let uri = card(3).to_uri();
        assert_eq!(
            ContactCard::from_uri("http://x"),
            Err(DecodeError::BadUri.into())
        );
        assert_eq!(
            ContactCard::from_uri(&uri.replace("sotto:", "sotto:1")),
            Err(DecodeError::InvalidBase32.into())
        );
        assert_eq!(
            ContactCard::from_uri(&uri[..uri.len() - 8]),
            Err(DecodeError::Truncated.into())
        );
        assert_eq!(
            ContactCard::from_uri(&"a".repeat(600)),
            Err(DecodeError::LengthOutOfRange.into())
        );
    }

    #[test]
    fn safety_number_is_symmetric_safe_1() {
        let (a, b) = (card(4), card(5));
        let ab = SafetyNumber::compute(
            (a.user_id(), a.identity().iks()),
            (b.user_id(), b.identity().iks()),
        );
        let ba = SafetyNumber::compute(
            (b.user_id(), b.identity().iks()),
            (a.user_id(), a.identity().iks()),
        );
        assert_eq!(ab, ba);
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(ab.grouped().split(' ').count(), 12);
        let c = card(6);
        let ac = SafetyNumber::compute(
            (a.user_id(), a.identity().iks()),
            (b.user_id(), c.identity().iks()),
        );
        assert_ne!(ab, ac);
    }
}
