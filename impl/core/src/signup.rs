//! The signup request body (protocol.md section 4, Req1): keys and numbers only, signed by `IKs`, with an
//! optional proof of work (SIGNUP-3). There is no field that could carry a name, a phone number or an
//! e-mail address.

use crate::codec::{Reader, Writer};
use crate::crypto;
use crate::error::{CryptoError, DecodeError, Result};
use crate::kdf;
use crate::keys::{Identity, OneTimePreKey, PublicIdentity, SignedPreKey};
use crate::limits::{MAX_CHALLENGE, MAX_OPK_UPLOAD, MAX_POW_DIFFICULTY, MAX_SPKI};

/// A decoded and verified signup request (SIGNUP-1, SIGNUP-2).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SignupRequest {
    tls_spki: Vec<u8>,
    identity: PublicIdentity,
    spk: SignedPreKey,
    opks: Vec<OneTimePreKey>,
    challenge: Vec<u8>,
    pow_nonce: u64,
    sig: [u8; 64],
}

impl SignupRequest {
    /// Builds and signs a request, solving the proof of work at `difficulty` (0 = none).
    ///
    /// The work is found deterministically by counting `pow_nonce` up from 0; each extra bit of
    /// difficulty doubles the expected work.
    pub fn build(
        identity: &Identity,
        tls_spki: &[u8],
        spk: &SignedPreKey,
        opks: &[OneTimePreKey],
        challenge: &[u8],
        difficulty: u8,
    ) -> Result<Self> {
        if tls_spki.is_empty()
            || tls_spki.len() > MAX_SPKI
            || opks.len() > MAX_OPK_UPLOAD
            || challenge.len() > MAX_CHALLENGE
            || !difficulty_in_range(difficulty)
        {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        check_opk_ids(opks)?;
        let mut req = SignupRequest {
            tls_spki: tls_spki.to_vec(),
            identity: *identity.public(),
            spk: *spk,
            opks: opks.to_vec(),
            challenge: challenge.to_vec(),
            pow_nonce: 0,
            sig: [0; 64],
        };
        let prefix = req.pow_prefix();
        while leading_zero_bits(&pow_hash(&prefix, req.pow_nonce)) < u32::from(difficulty) {
            req.pow_nonce = req.pow_nonce.wrapping_add(1);
        }
        let signed = req.signed_part();
        req.sig = identity.signing().sign(kdf::SIG_SIGNUP, &[&signed]);
        Ok(req)
    }

    /// The request body (SIGNUP-1).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(&self.signed_part()).bytes(&self.sig);
        w.into_vec()
    }

    /// Decodes a request and checks it as the membership service must (SIGNUP-2): layout and bounds,
    /// both prekey signatures, the request signature, and the proof of work at `difficulty`.
    pub fn from_bytes(bytes: &[u8], difficulty: u8) -> Result<Self> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 0x01 {
            return Err(DecodeError::UnknownVersion.into());
        }
        let spki_len = usize::from(r.u16()?);
        if spki_len == 0 || (spki_len > MAX_SPKI && !mutated!(Mutation::SkipSpkiBound)) {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let tls_spki = r.bytes(spki_len)?.to_vec();
        let identity = PublicIdentity::read_unverified(&mut r)?;
        let spk = SignedPreKey::read_unverified(&mut r)?;
        let count = usize::from(r.u16()?);
        if count > MAX_OPK_UPLOAD && !mutated!(Mutation::SkipOpkUploadBound) {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let mut opks = Vec::with_capacity(count);
        for _ in 0..count {
            opks.push(OneTimePreKey::decode(&mut r)?);
        }
        check_opk_ids(&opks)?;
        let challenge_len = usize::from(r.u8()?);
        if challenge_len > MAX_CHALLENGE {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let challenge = r.bytes(challenge_len)?.to_vec();
        let pow_nonce = r.u64()?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        let req = SignupRequest {
            tls_spki,
            identity,
            spk,
            opks,
            challenge,
            pow_nonce,
            sig,
        };
        // NOT-5: the whole layout was read and bounded; now the signatures, then the work.
        req.identity.verify()?;
        req.spk.verify(&req.identity)?;
        if !mutated!(Mutation::SkipSignupSignature) {
            req.identity
                .iks()
                .verify(kdf::SIG_SIGNUP, &[&req.signed_part()], &req.sig)?;
        }
        if !difficulty_in_range(difficulty)
            || (leading_zero_bits(&pow_hash(&req.pow_prefix(), req.pow_nonce))
                < u32::from(difficulty)
                && !mutated!(Mutation::SkipProofOfWork))
        {
            return Err(CryptoError::InsufficientWork.into());
        }
        Ok(req)
    }

    /// The TLS public key (DER SubjectPublicKeyInfo) to certify.
    pub fn tls_spki(&self) -> &[u8] {
        &self.tls_spki
    }

    /// The device's public identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The signed prekey.
    pub fn signed_prekey(&self) -> &SignedPreKey {
        &self.spk
    }

    /// The one-time prekeys.
    pub fn one_time_prekeys(&self) -> &[OneTimePreKey] {
        &self.opks
    }

    /// The challenge the service handed out.
    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }

    /// The proof-of-work nonce.
    pub fn pow_nonce(&self) -> u64 {
        self.pow_nonce
    }

    // All bytes before pow_nonce.
    fn pow_prefix(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(0x01);
        // Lengths are bounded by MAX_SPKI and MAX_CHALLENGE, checked on every path that builds one.
        w.u16(u16::try_from(self.tls_spki.len()).unwrap_or(u16::MAX))
            .bytes(&self.tls_spki);
        self.identity.encode(&mut w);
        self.spk.encode(&mut w);
        w.u16(u16::try_from(self.opks.len()).unwrap_or(u16::MAX));
        for opk in &self.opks {
            opk.encode(&mut w);
        }
        w.u8(u8::try_from(self.challenge.len()).unwrap_or(u8::MAX))
            .bytes(&self.challenge);
        w.into_vec()
    }

    // All bytes before sig.
    fn signed_part(&self) -> Vec<u8> {
        let mut v = self.pow_prefix();
        v.extend_from_slice(&self.pow_nonce.to_be_bytes());
        v
    }
}

fn check_opk_ids(opks: &[OneTimePreKey]) -> Result<()> {
    let mut ids: Vec<u32> = opks.iter().map(OneTimePreKey::id).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    if ids.len() != before && !mutated!(Mutation::AllowDuplicatePrekeyIds) {
        return Err(DecodeError::LengthOutOfRange.into());
    }
    Ok(())
}

/// SIGNUP-3: `SHA-256("sotto/v1/pow" || prefix || nonce)`.
pub fn pow_hash(prefix: &[u8], nonce: u64) -> [u8; 32] {
    crypto::sha256(&[kdf::POW, prefix, &nonce.to_be_bytes()])
}

/// Number of leading zero bits of a hash.
pub fn leading_zero_bits(h: &[u8; 32]) -> u32 {
    let mut n = 0u32;
    for b in h {
        if *b == 0 {
            n = n.saturating_add(8);
        } else {
            return n.saturating_add(b.leading_zeros());
        }
    }
    n
}

/// Whether a proof-of-work difficulty is at most the bound (SIGNUP-3).
fn difficulty_in_range(difficulty: u8) -> bool {
    difficulty <= MAX_POW_DIFFICULTY
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::OneTimePreKeyPair;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn request(difficulty: u8) -> (SignupRequest, Identity) {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let id = Identity::generate(&mut rng);
        let spk = id.new_signed_prekey(&mut rng, 1);
        let opks: Vec<_> = (1..=3)
            .map(|i| *OneTimePreKeyPair::generate(&mut rng, i).unwrap().public())
            .collect();
        let req =
            SignupRequest::build(&id, &[0x30; 44], spk.public(), &opks, b"c", difficulty).unwrap();
        (req, id)
    }

    /// LIM-15, LIM-16 and the challenge and difficulty bounds when building: each out of range
    /// alone is `length_out_of_range`; at the bound the request builds.
    #[test]
    fn build_checks_each_bound_alone() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let id = Identity::generate(&mut rng);
        let spk = id.new_signed_prekey(&mut rng, 1);
        let opks: Vec<_> = (1..=MAX_OPK_UPLOAD as u32 + 1)
            .map(|i| *OneTimePreKeyPair::generate(&mut rng, i).unwrap().public())
            .collect();
        let spki = [0x30; MAX_SPKI + 1];
        let challenge = [7u8; MAX_CHALLENGE + 1];
        let build = |spki: &[u8], opks: &[OneTimePreKey], challenge: &[u8], difficulty| {
            SignupRequest::build(&id, spki, spk.public(), opks, challenge, difficulty)
        };
        let (ok_spki, ok_opks, ok_ch) = (
            &spki[..MAX_SPKI],
            &opks[..MAX_OPK_UPLOAD],
            &challenge[..MAX_CHALLENGE],
        );
        assert!(build(ok_spki, ok_opks, ok_ch, 0).is_ok());
        for bad in [
            build(&[], ok_opks, ok_ch, 0),
            build(&spki, ok_opks, ok_ch, 0),
            build(ok_spki, &opks, ok_ch, 0),
            build(ok_spki, ok_opks, &challenge, 0),
            build(ok_spki, ok_opks, ok_ch, MAX_POW_DIFFICULTY + 1),
        ] {
            assert_eq!(bad.unwrap_err(), DecodeError::LengthOutOfRange.into());
        }
    }

    /// SIGNUP-3: the work is the first `pow_nonce`, counting from 0, whose hash has enough
    /// leading zero bits; at difficulty 0 that is 0.
    #[test]
    fn the_work_is_the_first_nonce_that_meets_the_difficulty_signup_3() {
        assert_eq!(request(0).0.pow_nonce, 0);
        let mut exact = 0;
        for d in 1..=8u32 {
            let (req, _) = request(d as u8);
            let prefix = req.pow_prefix();
            let bits = leading_zero_bits(&pow_hash(&prefix, req.pow_nonce));
            assert!(bits >= d);
            assert!((0..req.pow_nonce).all(|n| leading_zero_bits(&pow_hash(&prefix, n)) < d));
            exact += usize::from(bits == d);
        }
        // The first hit usually has exactly the bits asked for: the search stops there.
        assert!(exact > 0);
    }

    #[test]
    fn round_trips_with_work_signup_1_signup_3() {
        let (req, _) = request(8);
        let bytes = req.to_bytes();
        assert_eq!(SignupRequest::from_bytes(&bytes, 8).unwrap(), req);
        assert_eq!(req.challenge(), b"c");
        assert!(leading_zero_bits(&pow_hash(&req.pow_prefix(), req.pow_nonce)) >= 8);
        // A stricter service refuses it (unless the hash happens to be better; 16 bits is unlikely).
        if leading_zero_bits(&pow_hash(&req.pow_prefix(), req.pow_nonce)) < 16 {
            assert_eq!(
                SignupRequest::from_bytes(&bytes, 16),
                Err(CryptoError::InsufficientWork.into())
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_an_error_signup_2() {
        let (req, _) = request(0);
        let bytes = req.to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(SignupRequest::from_bytes(&b, 0).is_err(), "byte {i}");
        }
    }

    #[test]
    fn rejects_duplicate_prekey_ids_signup_2() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let id = Identity::generate(&mut rng);
        let spk = id.new_signed_prekey(&mut rng, 1);
        let o = *OneTimePreKeyPair::generate(&mut rng, 5).unwrap().public();
        assert_eq!(
            SignupRequest::build(&id, &[1], spk.public(), &[o, o], b"", 0),
            Err(DecodeError::LengthOutOfRange.into())
        );
    }
}
