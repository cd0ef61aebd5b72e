//! Device keys and prekeys (protocol.md section 3): the identity (KEY-1, KEY-2), signed prekeys (KEY-3),
//! one-time prekeys (KEY-4) and the prekey bundle the directory serves (KEY-5).
//!
//! Public types are only ever built by verifying their signatures: a [`PublicIdentity`] or a
//! [`PreKeyBundle`] in hand has passed `verify_strict` (PRIM-2).

use crate::codec::{Reader, Writer};
use crate::crypto::{CryptoRng, DhPublic, DhSecret, SignPublic, SignSecret};
use crate::error::{DecodeError, Result};
use crate::ids::UserId;
use crate::kdf;

/// A device's identity key pair: `IKs` (Ed25519) and `IKd` (X25519) bound by `sig_ikd` (KEY-1).
#[derive(Clone, Debug)]
pub struct Identity {
    signing: SignSecret,
    dh: DhSecret,
    public: PublicIdentity,
}

impl Identity {
    /// A fresh identity.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let signing = SignSecret::random(rng);
        let dh = DhSecret::random(rng);
        Identity::from_secrets(signing, dh)
    }

    /// The identity with these private keys (for persistence and vectors).
    pub fn from_secrets(signing: SignSecret, dh: DhSecret) -> Self {
        let ikd = dh.public();
        let sig_ikd = signing.sign(kdf::SIG_IKD, &[&ikd.0]);
        let public = PublicIdentity {
            iks: signing.public(),
            ikd,
            sig_ikd,
        };
        Identity {
            signing,
            dh,
            public,
        }
    }

    /// The public identity (KEY-2).
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// The signing key `IKs`.
    pub fn signing(&self) -> &SignSecret {
        &self.signing
    }

    /// The DH key `IKd`.
    pub fn dh(&self) -> &DhSecret {
        &self.dh
    }

    /// A new signed prekey with id `id` (KEY-3).
    pub fn new_signed_prekey(&self, rng: &mut impl CryptoRng, id: u32) -> SignedPreKeyPair {
        self.signed_prekey_from(id, DhSecret::random(rng))
    }

    /// The signed prekey for a given private key (vectors, persistence).
    pub fn signed_prekey_from(&self, id: u32, secret: DhSecret) -> SignedPreKeyPair {
        let public = self.sign_prekey(id, secret.public());
        SignedPreKeyPair { secret, public }
    }

    /// Signs any public key as prekey `id` (KEY-3). Honest devices sign their own keys; vectors and
    /// tests use this to build the bundles a malicious peer could publish.
    pub fn sign_prekey(&self, id: u32, key: DhPublic) -> SignedPreKey {
        let sig = self
            .signing
            .sign(kdf::SIG_SPK, &[&id.to_be_bytes(), &key.0]);
        SignedPreKey { id, key, sig }
    }
}

/// `IKs || IKd || sig_ikd` (KEY-2), verified.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct PublicIdentity {
    iks: SignPublic,
    ikd: DhPublic,
    sig_ikd: [u8; 64],
}

impl PublicIdentity {
    /// Encoded length.
    pub const LEN: usize = 128;

    /// The signing key `IKs`.
    pub fn iks(&self) -> &SignPublic {
        &self.iks
    }

    /// The DH key `IKd`.
    pub fn ikd(&self) -> &DhPublic {
        &self.ikd
    }

    /// Appends the 128-byte encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.bytes(&self.iks.0).bytes(&self.ikd.0).bytes(&self.sig_ikd);
    }

    /// Reads and verifies a public identity (KEY-2). Decoders of larger layouts use
    /// `PublicIdentity::read_unverified` and `PublicIdentity::verify` instead, so that every
    /// signature is checked after the whole layout was read (NOT-5).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let identity = PublicIdentity::read_unverified(r)?;
        identity.verify()?;
        Ok(identity)
    }

    /// Reads the 128 bytes of a public identity without checking `sig_ikd` (NOT-5: the caller
    /// must call [`PublicIdentity::verify`] once the rest of its layout is read).
    pub(crate) fn read_unverified(r: &mut Reader<'_>) -> Result<Self> {
        Ok(PublicIdentity {
            iks: SignPublic(r.array()?),
            ikd: DhPublic(r.array()?),
            sig_ikd: r.array()?,
        })
    }

    /// Checks `sig_ikd` (KEY-2).
    pub(crate) fn verify(&self) -> Result<()> {
        if mutated!(Mutation::SkipIkdSignature) {
            return Ok(());
        }
        self.iks
            .verify(kdf::SIG_IKD, &[&self.ikd.0], &self.sig_ikd)?;
        Ok(())
    }

    /// The 128-byte encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::LEN);
        self.encode(&mut w);
        w.into_vec()
    }
}

/// A signed prekey's public part: `id || SPK || sig_spk` (KEY-3). Verified against an identity by
/// [`SignedPreKey::decode`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SignedPreKey {
    id: u32,
    key: DhPublic,
    sig: [u8; 64],
}

impl SignedPreKey {
    /// Encoded length.
    pub const LEN: usize = 100;

    /// The prekey id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key `SPK`.
    pub fn key(&self) -> &DhPublic {
        &self.key
    }

    /// Appends the 100-byte encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.id).bytes(&self.key.0).bytes(&self.sig);
    }

    /// Reads a signed prekey and verifies it was signed by `owner` (KEY-3).
    pub fn decode(r: &mut Reader<'_>, owner: &PublicIdentity) -> Result<Self> {
        let spk = SignedPreKey::read_unverified(r)?;
        spk.verify(owner)?;
        Ok(spk)
    }

    /// Reads the 100 bytes of a signed prekey without checking `sig_spk` (NOT-5).
    pub(crate) fn read_unverified(r: &mut Reader<'_>) -> Result<Self> {
        Ok(SignedPreKey {
            id: r.u32()?,
            key: DhPublic(r.array()?),
            sig: r.array()?,
        })
    }

    /// Checks `sig_spk` against `owner` (KEY-3).
    pub(crate) fn verify(&self, owner: &PublicIdentity) -> Result<()> {
        if mutated!(Mutation::SkipSpkSignature) {
            return Ok(());
        }
        owner.iks.verify(
            kdf::SIG_SPK,
            &[&self.id.to_be_bytes(), &self.key.0],
            &self.sig,
        )?;
        Ok(())
    }
}

/// A signed prekey with its private key.
#[derive(Clone, Debug)]
pub struct SignedPreKeyPair {
    secret: DhSecret,
    public: SignedPreKey,
}

impl SignedPreKeyPair {
    /// The public part.
    pub fn public(&self) -> &SignedPreKey {
        &self.public
    }

    /// The private key.
    pub fn secret(&self) -> &DhSecret {
        &self.secret
    }
}

/// A one-time prekey's public part: `id || OPK` (KEY-4). Ids start at 1 (ID-4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct OneTimePreKey {
    id: u32,
    key: DhPublic,
}

impl OneTimePreKey {
    /// Encoded length.
    pub const LEN: usize = 36;

    /// The prekey id (never 0).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public key `OPK`.
    pub fn key(&self) -> &DhPublic {
        &self.key
    }

    /// Appends the 36-byte encoding.
    pub fn encode(&self, w: &mut Writer) {
        w.u32(self.id).bytes(&self.key.0);
    }

    /// Reads a one-time prekey; id 0 is reserved (ID-4).
    pub fn decode(r: &mut Reader<'_>) -> Result<Self> {
        let id = r.u32()?;
        if id == 0 && !mutated!(Mutation::AllowPrekeyIdZero) {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        Ok(OneTimePreKey {
            id,
            key: DhPublic(r.array()?),
        })
    }
}

/// A one-time prekey with its private key.
#[derive(Clone, Debug)]
pub struct OneTimePreKeyPair {
    secret: DhSecret,
    public: OneTimePreKey,
}

impl OneTimePreKeyPair {
    /// A fresh one-time prekey with id `id` (must not be 0).
    pub fn generate(rng: &mut impl CryptoRng, id: u32) -> Result<Self> {
        OneTimePreKeyPair::from_secret(id, DhSecret::random(rng))
    }

    /// The one-time prekey for a given private key (vectors, persistence).
    pub fn from_secret(id: u32, secret: DhSecret) -> Result<Self> {
        if id == 0 {
            return Err(DecodeError::LengthOutOfRange.into());
        }
        let key = secret.public();
        Ok(OneTimePreKeyPair {
            secret,
            public: OneTimePreKey { id, key },
        })
    }

    /// The public part.
    pub fn public(&self) -> &OneTimePreKey {
        &self.public
    }

    /// The private key.
    pub fn secret(&self) -> &DhSecret {
        &self.secret
    }
}

/// A verified prekey bundle (KEY-5): what a session starts from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PreKeyBundle {
    user_id: UserId,
    identity: PublicIdentity,
    spk: SignedPreKey,
    opk: Option<OneTimePreKey>,
}

impl PreKeyBundle {
    /// The bundle of a device, from its own keys.
    pub fn new(
        user_id: UserId,
        identity: PublicIdentity,
        spk: SignedPreKey,
        opk: Option<OneTimePreKey>,
    ) -> Self {
        PreKeyBundle {
            user_id,
            identity,
            spk,
            opk,
        }
    }

    /// The owner's user id.
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The owner's public identity.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// The signed prekey.
    pub fn signed_prekey(&self) -> &SignedPreKey {
        &self.spk
    }

    /// The one-time prekey, if the directory had one left.
    pub fn one_time_prekey(&self) -> Option<&OneTimePreKey> {
        self.opk.as_ref()
    }

    /// The encoding of KEY-5.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(276);
        w.u8(0x01).bytes(&self.user_id.0);
        self.identity.encode(&mut w);
        self.spk.encode(&mut w);
        match &self.opk {
            Some(opk) => {
                w.u8(1);
                opk.encode(&mut w);
            }
            None => {
                w.u8(0);
            }
        }
        w.into_vec()
    }

    /// Decodes and verifies a bundle (KEY-5): the whole layout first, then `sig_ikd`, then
    /// `sig_spk` (NOT-5).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        if r.u8()? != 0x01 {
            return Err(DecodeError::UnknownVersion.into());
        }
        let user_id = UserId(r.array()?);
        let identity = PublicIdentity::read_unverified(&mut r)?;
        let spk = SignedPreKey::read_unverified(&mut r)?;
        let opk = match r.u8()? {
            0 => None,
            1 => Some(OneTimePreKey::decode(&mut r)?),
            _ => return Err(DecodeError::LengthOutOfRange.into()),
        };
        r.finish()?;
        if !mutated!(Mutation::SkipPrekeySignatureCheck) {
            identity.verify()?;
            spk.verify(&identity)?;
        }
        Ok(PreKeyBundle {
            user_id,
            identity,
            spk,
            opk,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::CryptoError;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn bundle(opk: bool) -> PreKeyBundle {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let id = Identity::generate(&mut rng);
        let spk = id.new_signed_prekey(&mut rng, 1);
        let o = OneTimePreKeyPair::generate(&mut rng, 9).unwrap();
        PreKeyBundle::new(
            UserId::random(&mut rng),
            *id.public(),
            *spk.public(),
            opk.then(|| *o.public()),
        )
    }

    #[test]
    fn bundle_round_trips_key_5() {
        for opk in [false, true] {
            let b = bundle(opk);
            let bytes = b.to_bytes();
            assert_eq!(bytes.len(), if opk { 276 } else { 240 });
            assert_eq!(PreKeyBundle::from_bytes(&bytes).unwrap(), b);
        }
    }

    #[test]
    fn every_flipped_byte_is_an_error_key_5() {
        let bytes = bundle(true).to_bytes();
        for i in 0..bytes.len() {
            // The user id (routing only, ID-1) and the one-time prekey (KEY-4) are unsigned: a flip
            // there decodes to a different bundle, which is why a directory bundle is unverified.
            if (1..11).contains(&i) || (240..276).contains(&i) {
                continue;
            }
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(PreKeyBundle::from_bytes(&b).is_err(), "byte {i}");
        }
    }

    #[test]
    fn forged_spk_signature_is_rejected_key_3() {
        let mut bytes = bundle(false).to_bytes();
        bytes[1 + 10 + 128 + 4 + 32] ^= 0x80;
        assert_eq!(
            PreKeyBundle::from_bytes(&bytes),
            Err(CryptoError::BadSignature.into())
        );
    }
}
