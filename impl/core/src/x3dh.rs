//! Session setup (protocol.md section 7, Req2, Req4, Req5): the triple Diffie-Hellman over a verified
//! bundle and the sealed sender identity.
//!
//! ```text
//!   A (initiator)                                         B (responder, maybe offline)
//!   EK_A, E_A0 fresh (EK_A deleted once SK is derived)
//!   DH1 = DH(IKd_A, SPK_B)   DH2 = DH(EK_A, IKd_B)
//!   DH3 = DH(EK_A, SPK_B)    DH4 = DH(EK_A, OPK_B)?
//!   SK = KDF-1(...)  RK_0, KS_0 = KDF-2, KDF-3
//!   identity_box = Seal(KDF-4(DH2), user id_A || identity_A || E_A0)
//!   keyshare_box = Seal(KS_0, MK_AB || s1..s4 || t0)
//!   ------------------- first message (ENV-3), via B's offline queue ------------------>
//!                                                          open identity with DH2, verify sig_ikd,
//!                                                          recompute SK, open key share, payload
//! ```
//! These functions are pure: nothing changes until the caller stores the session (RX-3).

use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto::{self, DhPublic, DhSecret, Secret};
use crate::envelope::IDENTITY_BOX_LEN;
use crate::error::{DecodeError, Result};
use crate::ids::UserId;
use crate::kdf;
use crate::keys::{Identity, OneTimePreKeyPair, PreKeyBundle, PublicIdentity, SignedPreKeyPair};

/// The secrets both sides derive (X3DH-2).
#[derive(Debug)]
pub struct SetupSecrets {
    /// `SK` (KDF-1).
    pub sk: Secret<32>,
    /// `RK_0` (KDF-2).
    pub rk0: Secret<32>,
    /// `KS_0` (KDF-3).
    pub ks0: Secret<32>,
    /// The identity-box key (KDF-4).
    pub identity_key: Secret<32>,
}

/// The initiator's side of X3DH-1 and X3DH-2.
pub fn initiator_secrets(
    local: &Identity,
    ek: &DhSecret,
    bundle: &PreKeyBundle,
) -> Result<SetupSecrets> {
    let peer = bundle.identity();
    let spk = bundle.signed_prekey().key();
    let dh1 = local.dh().dh(spk)?;
    let dh2 = ek.dh(peer.ikd())?;
    let dh3 = ek.dh(spk)?;
    let dh4 = match bundle.one_time_prekey() {
        Some(opk) => Some(ek.dh(opk.key())?),
        None => None,
    };
    let sk = kdf::x3dh_secret(
        &dh1,
        &dh2,
        &dh3,
        dh4.as_ref(),
        local.public().iks(),
        peer.iks(),
    );
    let (rk0, ks0) = kdf::root_and_keyshare(&sk);
    let identity_key = kdf::identity_key(&dh2, &ek.public(), peer.ikd());
    Ok(SetupSecrets {
        sk,
        rk0,
        ks0,
        identity_key,
    })
}

/// The responder's first step: `DH2` and the identity-box key, from `EK_A` alone.
pub fn responder_identity_key(local: &Identity, ek: &DhPublic) -> Result<(Secret<32>, Secret<32>)> {
    let dh2 = local.dh().dh(ek)?;
    let key = kdf::identity_key(&dh2, ek, local.public().ikd());
    Ok((dh2, key))
}

/// The responder's side of X3DH-6, once the initiator's identity is known.
pub fn responder_secrets(
    local: &Identity,
    spk: &SignedPreKeyPair,
    opk: Option<&OneTimePreKeyPair>,
    ek: &DhPublic,
    dh2: Secret<32>,
    identity_key: Secret<32>,
    initiator: &PublicIdentity,
) -> Result<SetupSecrets> {
    let dh1 = spk.secret().dh(initiator.ikd())?;
    let dh3 = spk.secret().dh(ek)?;
    let dh4 = match opk {
        Some(opk) => Some(opk.secret().dh(ek)?),
        None => None,
    };
    let sk = kdf::x3dh_secret(
        &dh1,
        &dh2,
        &dh3,
        dh4.as_ref(),
        initiator.iks(),
        local.public().iks(),
    );
    let (rk0, ks0) = kdf::root_and_keyshare(&sk);
    Ok(SetupSecrets {
        sk,
        rk0,
        ks0,
        identity_key,
    })
}

/// Seals the initiator's `user id || public identity || E_A0` (X3DH-3): 186 bytes. `E_A0` is the
/// initiator's ratchet key for epoch 0 (X3DH-7), so that `EK_A` can be deleted at once.
pub fn seal_identity(
    key: &Secret<32>,
    ad: &[u8],
    user: &UserId,
    identity: &PublicIdentity,
    ratchet: &DhPublic,
) -> [u8; IDENTITY_BOX_LEN] {
    let mut w = Writer::with_capacity(10 + PublicIdentity::LEN + 32);
    w.bytes(&user.0);
    identity.encode(&mut w);
    w.bytes(&ratchet.0);
    let sealed = crypto::seal(key, &[0u8; 12], ad, w.as_slice());
    let mut out = [0u8; IDENTITY_BOX_LEN];
    // 170 bytes of plaintext and a 16-byte tag: always exactly IDENTITY_BOX_LEN.
    for (o, s) in out.iter_mut().zip(sealed.iter()) {
        *o = *s;
    }
    out
}

/// The initiator as the sealed identity names it (X3DH-3).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Initiator {
    /// Its user id.
    pub user: UserId,
    /// Its verified public identity.
    pub identity: PublicIdentity,
    /// Its ratchet key for epoch 0 (`E_A0`).
    pub ratchet: DhPublic,
}

/// Opens a sealed identity and verifies its `sig_ikd` (X3DH-6).
pub fn open_identity(key: &Secret<32>, ad: &[u8], sealed: &[u8]) -> Result<Initiator> {
    let plain = Zeroizing::new(crypto::open(key, &[0u8; 12], ad, sealed)?);
    let mut r = Reader::new(&plain);
    let user = UserId(r.array()?);
    let identity = PublicIdentity::read_unverified(&mut r)?;
    let ratchet = DhPublic(r.array()?);
    r.finish().map_err(|_| DecodeError::TrailingBytes)?;
    // NOT-5: the signature after the whole layout.
    identity.verify()?;
    Ok(Initiator {
        user,
        identity,
        ratchet,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::{CryptoError, Error};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn both_sides_agree_x3dh_2() {
        let mut rng = ChaCha20Rng::seed_from_u64(21);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        let spk = b.new_signed_prekey(&mut rng, 1);
        for with_opk in [false, true] {
            let opk = OneTimePreKeyPair::generate(&mut rng, 2).unwrap();
            let bundle = PreKeyBundle::new(
                UserId([2; 10]),
                *b.public(),
                *spk.public(),
                with_opk.then(|| *opk.public()),
            );
            let ek = DhSecret::random(&mut rng);
            let sa = initiator_secrets(&a, &ek, &bundle).unwrap();
            let (dh2, ik) = responder_identity_key(&b, &ek.public()).unwrap();
            let sb = responder_secrets(
                &b,
                &spk,
                with_opk.then_some(&opk),
                &ek.public(),
                dh2,
                ik,
                a.public(),
            )
            .unwrap();
            assert_eq!(sa.sk.expose(), sb.sk.expose());
            assert_eq!(sa.rk0.expose(), sb.rk0.expose());
            assert_eq!(sa.ks0.expose(), sb.ks0.expose());
            assert_ne!(sa.rk0.expose(), sa.ks0.expose());
            let e0 = DhSecret::random(&mut rng).public();
            let boxed = seal_identity(&sa.identity_key, b"ad", &UserId([1; 10]), a.public(), &e0);
            let got = open_identity(&sb.identity_key, b"ad", &boxed).unwrap();
            assert_eq!(
                (got.user, got.identity, got.ratchet),
                (UserId([1; 10]), *a.public(), e0)
            );
        }
    }

    #[test]
    fn low_order_signed_prekey_is_rejected_prim_1() {
        let mut rng = ChaCha20Rng::seed_from_u64(22);
        let a = Identity::generate(&mut rng);
        let b = Identity::generate(&mut rng);
        // A malicious peer signs a low-order point as its prekey: only the DH check stops it.
        let spk = b.sign_prekey(1, DhPublic([0; 32]));
        let bundle = PreKeyBundle::new(UserId([2; 10]), *b.public(), spk, None);
        let ek = DhSecret::random(&mut rng);
        assert_eq!(
            initiator_secrets(&a, &ek, &bundle).unwrap_err(),
            Error::Crypto(CryptoError::NonContributoryDh)
        );
    }
}
