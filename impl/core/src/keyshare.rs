//! The paper's key share (protocol.md section 8, Req4): a random master key and four random numbers,
//! drawn per direction and epoch, sealed for the peer.
//!
//! ```text
//!   plaintext (104) = MK [32] || s1 [16] || s2 [16] || s3 [16] || s4 [16] || t0 u64
//!   sealed    (120) = Seal(KS, 0^12, ad, plaintext)
//!   s1 -> CK_0 salt (CHAIN-1)   s2 -> nonce mask (CHAIN-4)
//!   s3 -> routing tag (KDF-9)   s4 -> key confirmation (KDF-10)
//! ```

use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto::{self, CryptoRng, Secret};
use crate::error::Result;
use crate::kdf;

/// A key-share block (KS-1).
#[derive(Clone)]
pub struct KeyShare {
    mk: Secret<32>,
    s1: Secret<16>,
    s2: Secret<16>,
    s3: Secret<16>,
    s4: Secret<16>,
    t0: u64,
}

impl core::fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyShare {{ t0: {}, .. }}", self.t0)
    }
}

impl KeyShare {
    /// Plaintext length (KS-1).
    pub const PLAIN_LEN: usize = 104;
    /// Sealed length (KS-2).
    pub const SEALED_LEN: usize = 120;

    /// A fresh block starting at server-corrected time `t0` (ms).
    pub fn random(rng: &mut impl CryptoRng, t0: u64) -> Self {
        KeyShare {
            mk: Secret::random(rng),
            s1: Secret::random(rng),
            s2: Secret::random(rng),
            s3: Secret::random(rng),
            s4: Secret::random(rng),
            t0,
        }
    }

    /// A block from explicit values (vectors).
    pub fn from_parts(
        mk: [u8; 32],
        s1: [u8; 16],
        s2: [u8; 16],
        s3: [u8; 16],
        s4: [u8; 16],
        t0: u64,
    ) -> Self {
        KeyShare {
            mk: Secret::new(mk),
            s1: Secret::new(s1),
            s2: Secret::new(s2),
            s3: Secret::new(s3),
            s4: Secret::new(s4),
            t0,
        }
    }

    /// The master key.
    pub fn mk(&self) -> &Secret<32> {
        &self.mk
    }

    /// The four seeds `s1..s4`.
    pub fn seeds(&self) -> [&Secret<16>; 4] {
        [&self.s1, &self.s2, &self.s3, &self.s4]
    }

    /// The epoch's start time (ms, server-corrected).
    pub fn t0(&self) -> u64 {
        self.t0
    }

    /// `CK_0` (CHAIN-1).
    pub fn chain_start(&self) -> Secret<32> {
        kdf::chain_start(&self.mk, &self.s1)
    }

    /// The nonce mask `s2` (CHAIN-4).
    pub fn nonce_seed(&self) -> &Secret<16> {
        &self.s2
    }

    /// The epoch's routing tag (KDF-9).
    pub fn routing_tag(&self) -> [u8; 8] {
        kdf::routing_tag(&self.s3)
    }

    /// The key-confirmation key (KDF-10).
    pub fn confirm_key(&self) -> Secret<32> {
        kdf::confirm_key(&self.s4)
    }

    /// The 104-byte plaintext (KS-1).
    pub fn to_plaintext(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(Self::PLAIN_LEN);
        w.bytes(self.mk.expose())
            .bytes(self.s1.expose())
            .bytes(self.s2.expose())
            .bytes(self.s3.expose())
            .bytes(self.s4.expose())
            .u64(self.t0);
        Zeroizing::new(w.into_vec())
    }

    /// Parses the 104-byte plaintext.
    pub fn from_plaintext(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let ks = KeyShare {
            mk: Secret::new(r.array()?),
            s1: Secret::new(r.array()?),
            s2: Secret::new(r.array()?),
            s3: Secret::new(r.array()?),
            s4: Secret::new(r.array()?),
            t0: r.u64()?,
        };
        r.finish()?;
        Ok(ks)
    }

    /// Seals the block under `ks` with associated data `ad` (KS-2).
    pub fn seal(&self, ks: &Secret<32>, ad: &[u8]) -> Vec<u8> {
        crypto::seal(ks, &[0u8; 12], ad, &self.to_plaintext())
    }

    /// Opens a sealed block (KS-2, KS-4).
    pub fn open(ks: &Secret<32>, ad: &[u8], sealed: &[u8]) -> Result<Self> {
        #[cfg(feature = "mutations")]
        if mutated!(Mutation::SkipKeyShareTag) {
            if let Some(plain) = crate::mutation::open_without_tag(ks, sealed) {
                return KeyShare::from_plaintext(&Zeroizing::new(plain));
            }
        }
        let plain = Zeroizing::new(crypto::open(ks, &[0u8; 12], ad, sealed)?);
        KeyShare::from_plaintext(&plain)
    }
}

#[cfg(feature = "test-utils")]
impl KeyShare {
    /// The master key and the four random numbers, for the wiretap (feature `test-utils`).
    pub(crate) fn held_secrets(&self, what: &str, out: &mut Vec<crate::device::HeldSecret>) {
        use crate::device::{HeldSecret, SecretClass};
        out.push(HeldSecret::new(
            SecretClass::KeyShare,
            format!("{what} master key"),
            self.mk.expose(),
        ));
        for (i, s) in [&self.s1, &self.s2, &self.s3, &self.s4]
            .into_iter()
            .enumerate()
        {
            out.push(HeldSecret::new(
                SecretClass::KeyShare,
                format!("{what} s{}", i + 1),
                s.expose(),
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::{CryptoError, DecodeError, Error};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn seal_open_and_tamper_ks_2() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let share = KeyShare::random(&mut rng, 1_700_000_000_000);
        let ks = Secret::new([3u8; 32]);
        let sealed = share.seal(&ks, b"hdr");
        assert_eq!(sealed.len(), KeyShare::SEALED_LEN);
        let back = KeyShare::open(&ks, b"hdr", &sealed).unwrap();
        assert_eq!(*back.to_plaintext(), *share.to_plaintext());
        for i in 0..sealed.len() {
            let mut s = sealed.clone();
            s[i] ^= 1;
            assert_eq!(
                KeyShare::open(&ks, b"hdr", &s).unwrap_err(),
                Error::Crypto(CryptoError::DecryptFailed)
            );
        }
        assert!(KeyShare::open(&ks, b"hdR", &sealed).is_err());
        assert!(KeyShare::open(&Secret::new([4; 32]), b"hdr", &sealed).is_err());
        assert_eq!(
            KeyShare::from_plaintext(&share.to_plaintext()[..103]).unwrap_err(),
            Error::Decode(DecodeError::Truncated)
        );
    }

    #[test]
    fn debug_hides_the_keys_prim_7() {
        let share = KeyShare::from_parts(
            [0xaa; 32], [0xbb; 16], [0xcc; 16], [0xdd; 16], [0xee; 16], 5,
        );
        let dbg = format!("{share:?}");
        assert!(!dbg.contains("aa") && !dbg.contains("170"), "{dbg}");
        assert_eq!(dbg, "KeyShare { t0: 5, .. }");
    }
}
