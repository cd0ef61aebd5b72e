//! The primitives of protocol.md section 1, wrapped so that every misuse the protocol forbids is a
//! typed error: all-zero X25519 outputs (PRIM-1), non-strict Ed25519 signatures (PRIM-2), and AEAD
//! failures (PRIM-5). Secret material lives in [`Secret`], zeroized on drop and redacted in `Debug`
//! (PRIM-7).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CryptoError, DecodeError, Error};

/// Length of an AEAD tag.
pub const TAG_LEN: usize = 16;

/// Fixed-size secret bytes: zeroized on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Wraps secret bytes.
    pub fn new(bytes: [u8; N]) -> Self {
        Secret(bytes)
    }

    /// Draws fresh random bytes.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut b = [0u8; N];
        rng.fill_bytes(&mut b);
        Secret(b)
    }

    /// The secret bytes. Callers must not copy them into unzeroized storage.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> core::fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Secret<{N}>(..)")
    }
}

/// The random source the core takes as input: any seeded or OS generator (rand_core 0.6).
pub trait CryptoRng: rand_core::RngCore + rand_core::CryptoRng {}
impl<T: rand_core::RngCore + rand_core::CryptoRng> CryptoRng for T {}

// ---------------------------------------------------------------------------------------------
// X25519 (PRIM-1)

/// An X25519 private key.
#[derive(Clone)]
pub struct DhSecret(x25519_dalek::StaticSecret);

impl DhSecret {
    /// A fresh random private key.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut b = Secret::<32>::random(rng);
        let s = DhSecret::from_bytes(*b.expose());
        b.zeroize();
        s
    }

    /// A private key from its 32 bytes (clamped by X25519 itself).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DhSecret(x25519_dalek::StaticSecret::from(bytes))
    }

    /// The private key bytes, for persistence and vectors.
    pub fn to_bytes(&self) -> Secret<32> {
        Secret(self.0.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> DhPublic {
        DhPublic(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    /// `DH(self, peer)`, rejecting the all-zero output (PRIM-1).
    pub fn dh(&self, peer: &DhPublic) -> Result<Secret<32>, CryptoError> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(peer.0));
        if !shared.was_contributory() && !mutated!(Mutation::AcceptNonContributoryDh) {
            return Err(CryptoError::NonContributoryDh);
        }
        Ok(Secret(shared.to_bytes()))
    }
}

impl core::fmt::Debug for DhSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DhSecret(public {:?})", self.public())
    }
}

/// An X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DhPublic(pub [u8; 32]);

impl core::fmt::Debug for DhPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DhPublic({})", short_hex(&self.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Ed25519 (PRIM-2)

/// An Ed25519 signing key (the identity key `IKs`).
#[derive(Clone)]
pub struct SignSecret(SigningKey);

impl SignSecret {
    /// A fresh random signing key.
    pub fn random(rng: &mut impl CryptoRng) -> Self {
        let mut seed = Secret::<32>::random(rng);
        let k = SignSecret::from_seed(*seed.expose());
        seed.zeroize();
        k
    }

    /// A signing key from its 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SignSecret(SigningKey::from_bytes(&seed))
    }

    /// The seed, for persistence and vectors.
    pub fn to_seed(&self) -> Secret<32> {
        Secret(self.0.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> SignPublic {
        SignPublic(self.0.verifying_key().to_bytes())
    }

    /// Signs `context || parts...` (deterministic, RFC 8032).
    pub fn sign(&self, context: &[u8], parts: &[&[u8]]) -> [u8; 64] {
        let msg = concat(context, parts);
        self.0.sign(&msg).to_bytes()
    }
}

impl core::fmt::Debug for SignSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SignSecret(public {:?})", self.public())
    }
}

/// An Ed25519 public key (`IKs`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignPublic(pub [u8; 32]);

impl SignPublic {
    /// Verifies `sig` over `context || parts...` with `verify_strict` (PRIM-2).
    pub fn verify(
        &self,
        context: &[u8],
        parts: &[&[u8]],
        sig: &[u8; 64],
    ) -> Result<(), CryptoError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::BadSignature)?;
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        let msg = concat(context, parts);
        if mutated!(Mutation::NonStrictSignatures) {
            return ed25519_dalek::Verifier::verify(&key, &msg, &sig)
                .map_err(|_| CryptoError::BadSignature);
        }
        key.verify_strict(&msg, &sig)
            .map_err(|_| CryptoError::BadSignature)
    }
}

impl core::fmt::Debug for SignPublic {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "SignPublic({})", short_hex(&self.0))
    }
}

fn concat(context: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let len = parts
        .iter()
        .fold(context.len(), |n, p| n.saturating_add(p.len()));
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(context);
    for p in parts {
        msg.extend_from_slice(p);
    }
    msg
}

// ---------------------------------------------------------------------------------------------
// HKDF, HMAC, SHA (PRIM-3, PRIM-4, PRIM-6)

/// `HKDF-Extract(salt, ikm)` as a PRK (PRIM-3).
pub fn extract(salt: &[u8], ikm: &[u8]) -> Secret<32> {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut out = [0u8; 32];
    out.copy_from_slice(&prk);
    Secret(out)
}

/// `HKDF-Expand(prk, info_parts..., N)` (PRIM-3). `N` is at most 255 x 32, checked at compile time by
/// the callers' sizes (all are at most 64).
pub fn expand<const N: usize>(prk: &Secret<32>, info: &[&[u8]]) -> Secret<N> {
    let hk = Hkdf::<Sha256>::from_prk(prk.expose()).expect("a 32-byte PRK is always long enough");
    let mut out = [0u8; N];
    hk.expand_multi_info(info, &mut out)
        .expect("outputs of at most 64 bytes are within HKDF's limit");
    Secret(out)
}

/// A PRK keyed once and expanded several times with different labels (saves re-keying HMAC).
pub struct Expander(Hkdf<Sha256>);

impl Expander {
    /// Keys HKDF-Expand with `prk`.
    pub fn new(prk: &Secret<32>) -> Self {
        Expander(
            Hkdf::<Sha256>::from_prk(prk.expose()).expect("a 32-byte PRK is always long enough"),
        )
    }

    /// `HKDF-Expand(prk, info_parts..., N)`; `N` is at most 64 for every caller.
    pub fn expand<const N: usize>(&self, info: &[&[u8]]) -> Secret<N> {
        let mut out = [0u8; N];
        self.0
            .expand_multi_info(info, &mut out)
            .expect("outputs of at most 64 bytes are within HKDF's limit");
        Secret(out)
    }
}

/// `Derive(ikm, info, N) = Expand(Extract(0^32, ikm), info, N)` (PRIM-3).
pub fn derive<const N: usize>(ikm: &[u8], info: &[&[u8]]) -> Secret<N> {
    expand(&extract(&[0u8; 32], ikm), info)
}

/// `HMAC-SHA256(key, parts...)` (PRIM-4).
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// `SHA-256(parts...)` (PRIM-6).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

// ---------------------------------------------------------------------------------------------
// ChaCha20-Poly1305 (PRIM-5)

/// `Seal(key, nonce, ad, pt) = ct || tag`.
pub fn seal(key: &Secret<32>, nonce: &[u8; 12], ad: &[u8], pt: &[u8]) -> Vec<u8> {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.expose()));
    cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg: pt, aad: ad })
        .expect("ChaCha20-Poly1305 encrypts any message below 256 GiB")
}

/// Seals in place: `buf` holds `ad || plaintext` and becomes `ad || ct || tag` (one allocation for the
/// whole envelope).
pub fn seal_in_place(key: &Secret<32>, nonce: &[u8; 12], buf: &mut Vec<u8>, ad_len: usize) {
    use chacha20poly1305::aead::AeadInPlace;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.expose()));
    let split = ad_len.min(buf.len());
    let (ad, msg) = buf.split_at_mut(split);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), ad, msg)
        .expect("ChaCha20-Poly1305 encrypts any message below 256 GiB");
    buf.extend_from_slice(&tag);
}

/// Opens `ct || tag`; any change to the key, nonce, associated data or bytes is
/// [`CryptoError::DecryptFailed`].
pub fn open(
    key: &Secret<32>,
    nonce: &[u8; 12],
    ad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, Error> {
    if sealed.len() < TAG_LEN {
        return Err(DecodeError::Truncated.into());
    }
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.expose()));
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: ad,
            },
        )
        .map_err(|_| CryptoError::DecryptFailed.into())
}

/// The first bytes of a public value in hex, for `Debug` output.
pub(crate) fn short_hex(b: &[u8]) -> String {
    b.iter()
        .take(6)
        .map(|x| format!("{x:02x}"))
        .collect::<String>()
        + ".."
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// PRIM-7: `Debug` names the type and shows at most a short prefix of a public key; a
    /// secret shows its public half or nothing.
    #[test]
    fn debug_shows_public_prefixes_only_prim_7() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let dh = DhSecret::random(&mut rng);
        let dh_pub = short_hex(&dh.public().0);
        assert_eq!(format!("{:?}", dh.public()), format!("DhPublic({dh_pub})"));
        assert_eq!(
            format!("{dh:?}"),
            format!("DhSecret(public DhPublic({dh_pub}))")
        );
        let sign = SignSecret::random(&mut rng);
        let sign_pub = short_hex(&sign.public().0);
        assert_eq!(
            format!("{:?}", sign.public()),
            format!("SignPublic({sign_pub})")
        );
        assert_eq!(
            format!("{sign:?}"),
            format!("SignSecret(public SignPublic({sign_pub}))")
        );
        assert_eq!(format!("{:?}", Secret::<32>([9; 32])), "Secret<32>(..)");
        assert_eq!(dh_pub.len(), 14);
    }

    #[test]
    fn dh_rejects_low_order_points_prim_1() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = DhSecret::random(&mut rng);
        // The all-zero u-coordinate and 1 are low-order points: the output is all zero.
        for u in [[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }] {
            assert_eq!(
                a.dh(&DhPublic(u)).unwrap_err(),
                CryptoError::NonContributoryDh
            );
        }
        let b = DhSecret::random(&mut rng);
        assert_eq!(
            a.dh(&b.public()).unwrap().expose(),
            b.dh(&a.public()).unwrap().expose()
        );
    }

    #[test]
    fn signatures_bind_context_prim_2() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let k = SignSecret::random(&mut rng);
        let sig = k.sign(b"sotto/v1/ikd", &[b"abc"]);
        k.public().verify(b"sotto/v1/ikd", &[b"abc"], &sig).unwrap();
        k.public()
            .verify(b"sotto/v1/ikd", &[b"ab", b"c"], &sig)
            .unwrap();
        assert_eq!(
            k.public().verify(b"sotto/v1/spk", &[b"abc"], &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn aead_detects_every_change_prim_5() {
        let key = Secret::new([7u8; 32]);
        let sealed = seal(&key, &[1; 12], b"ad", b"hello");
        assert_eq!(open(&key, &[1; 12], b"ad", &sealed).unwrap(), b"hello");
        assert!(open(&key, &[1; 12], b"ae", &sealed).is_err());
        assert!(open(&key, &[2; 12], b"ad", &sealed).is_err());
        assert!(open(&Secret::new([8; 32]), &[1; 12], b"ad", &sealed).is_err());
        assert_eq!(
            open(&key, &[1; 12], b"ad", &sealed[..15]),
            Err(DecodeError::Truncated.into())
        );
    }

    #[test]
    fn secrets_are_redacted_prim_7() {
        let s = Secret::new([0xabu8; 32]);
        assert!(!format!("{s:?}").contains("ab"));
        let k = SignSecret::from_seed([0x11; 32]);
        assert!(!format!("{k:?}").contains("1111"));
    }
}
