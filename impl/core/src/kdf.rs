//! Every key derivation and signature context of protocol.md section 6 (KDF-1..KDF-21), each as one
//! function so the vectors can pin them one by one.

use zeroize::Zeroizing;

use crate::crypto::{self, DhPublic, Secret, SignPublic};

/// KDF-1: X3DH shared secret label.
pub const X3DH: &[u8] = b"sotto/v1/x3dh";
/// KDF-2: root key of epoch 0.
pub const ROOT: &[u8] = b"sotto/v1/root";
/// KDF-3: key that seals epoch 0's key-share block.
pub const KEYSHARE: &[u8] = b"sotto/v1/keyshare";
/// KDF-4: key of the sealed sender identity.
pub const IDENTITY: &[u8] = b"sotto/v1/identity";
/// KDF-5: root step of an epoch turn.
pub const EPOCH: &[u8] = b"sotto/v1/epoch";
/// KDF-6: message key.
pub const MSG: &[u8] = b"sotto/v1/msg";
/// KDF-7: next chain key.
pub const CHAIN: &[u8] = b"sotto/v1/chain";
/// KDF-8: message id.
pub const ID: &[u8] = b"sotto/v1/id";
/// KDF-9: pairwise routing tag.
pub const TAG: &[u8] = b"sotto/v1/tag";
/// KDF-10: key-confirmation key (and the HMAC prefix of EPOCH-4).
pub const CONFIRM: &[u8] = b"sotto/v1/confirm";
/// KDF-11: group member chain.
pub const GROUP_CHAIN: &[u8] = b"sotto/v1/group-chain";
/// KDF-12: group routing tag.
pub const GROUP_TAG: &[u8] = b"sotto/v1/group-tag";
/// KDF-13: group key confirmation HMAC prefix.
pub const GROUP_CONFIRM: &[u8] = b"sotto/v1/group-confirm";
/// KDF-14: signature context binding `IKd` to `IKs`.
pub const SIG_IKD: &[u8] = b"sotto/v1/ikd";
/// KDF-15: signature context of a signed prekey.
pub const SIG_SPK: &[u8] = b"sotto/v1/spk";
/// KDF-16: signature context of a signup request.
pub const SIG_SIGNUP: &[u8] = b"sotto/v1/signup";
/// Signature context of a certificate renewal (the membership API's `POST /v1/renew`).
pub const SIG_RENEW: &[u8] = b"sotto/v1/renew";
/// KDF-17: proof-of-work hash prefix.
pub const POW: &[u8] = b"sotto/v1/pow";
/// KDF-18: card checksum prefix.
pub const CARD: &[u8] = b"sotto/v1/card";
/// KDF-19: safety number prefix.
pub const SAFETY: &[u8] = b"sotto/v1/safety";
/// KDF-20: signature context of a group membership.
pub const SIG_GROUP_MEMBERS: &[u8] = b"sotto/v1/group-members";
/// KDF-21: signature context of a group message.
pub const SIG_GROUP_MSG: &[u8] = b"sotto/v1/group-msg";
/// KDF-22: signature context of a group handover.
pub const SIG_GROUP_HANDOVER: &[u8] = b"sotto/v1/group-handover";

/// Every label with its rule id, for the vectors and the docs check.
pub const ALL_LABELS: &[(&str, &[u8])] = &[
    ("KDF-1", X3DH),
    ("KDF-2", ROOT),
    ("KDF-3", KEYSHARE),
    ("KDF-4", IDENTITY),
    ("KDF-5", EPOCH),
    ("KDF-6", MSG),
    ("KDF-7", CHAIN),
    ("KDF-8", ID),
    ("KDF-9", TAG),
    ("KDF-10", CONFIRM),
    ("KDF-11", GROUP_CHAIN),
    ("KDF-12", GROUP_TAG),
    ("KDF-13", GROUP_CONFIRM),
    ("KDF-14", SIG_IKD),
    ("KDF-15", SIG_SPK),
    ("KDF-16", SIG_SIGNUP),
    ("KDF-17", POW),
    ("KDF-18", CARD),
    ("KDF-19", SAFETY),
    ("KDF-20", SIG_GROUP_MEMBERS),
    ("KDF-21", SIG_GROUP_MSG),
    ("KDF-22", SIG_GROUP_HANDOVER),
];

/// KDF-1: `SK` from the X3DH outputs (`dh4` when a one-time prekey was used).
pub fn x3dh_secret(
    dh1: &Secret<32>,
    dh2: &Secret<32>,
    dh3: &Secret<32>,
    dh4: Option<&Secret<32>>,
    iks_a: &SignPublic,
    iks_b: &SignPublic,
) -> Secret<32> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(160));
    ikm.extend_from_slice(&[0xff; 32]);
    for dh in [Some(dh1), Some(dh2), Some(dh3), dh4].into_iter().flatten() {
        ikm.extend_from_slice(dh.expose());
    }
    let prk = crypto::extract(&[0u8; 32], &ikm);
    crypto::expand(&prk, &[X3DH, &iks_a.0, &iks_b.0])
}

/// KDF-2 and KDF-3: `(RK_0, KS_0)` from `SK`.
pub fn root_and_keyshare(sk: &Secret<32>) -> (Secret<32>, Secret<32>) {
    (crypto::expand(sk, &[ROOT]), crypto::expand(sk, &[KEYSHARE]))
}

/// KDF-4: the key sealing the initiator's identity, from `DH2 = DH(EK_A, IKd_B)`.
pub fn identity_key(dh2: &Secret<32>, ek_a: &DhPublic, ikd_b: &DhPublic) -> Secret<32> {
    crypto::derive(dh2.expose(), &[IDENTITY, &ek_a.0, &ikd_b.0])
}

/// KDF-5: `(RK_{k+1}, KS_{k+1})` from `RK_k` and the epoch DH.
pub fn epoch_step(rk: &Secret<32>, dh: &Secret<32>) -> (Secret<32>, Secret<32>) {
    let prk = crypto::extract(rk.expose(), dh.expose());
    let out: Secret<64> = crypto::expand(&prk, &[EPOCH]);
    split_64(&out)
}

fn split_64(s: &Secret<64>) -> (Secret<32>, Secret<32>) {
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    let (x, y) = s.expose().split_at(32);
    a.copy_from_slice(x);
    b.copy_from_slice(y);
    (Secret::new(a), Secret::new(b))
}

/// CHAIN-1: `CK_0 = Extract(salt = s1, ikm = MK)`.
pub fn chain_start(mk: &Secret<32>, s1: &Secret<16>) -> Secret<32> {
    crypto::extract(s1.expose(), mk.expose())
}

/// One chain step (CHAIN-2, CHAIN-3): `(K_n, ID_n, CK_{n+1})` from `CK_n`.
pub fn chain_step(ck: &Secret<32>) -> (Secret<32>, [u8; 16], Secret<32>) {
    let hk = crypto::Expander::new(ck);
    let k: Secret<32> = hk.expand(&[MSG]);
    let id: Secret<16> = hk.expand(&[ID]);
    let next: Secret<32> = hk.expand(&[CHAIN]);
    (k, *id.expose(), next)
}

/// CHAIN-4: `nonce_n = s2[0..12] XOR (0^8 || u32 n)`.
pub fn nonce(s2: &Secret<16>, n: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    for (o, s) in out.iter_mut().zip(s2.expose().iter()) {
        *o = *s;
    }
    for (o, c) in out.iter_mut().skip(8).zip(n.to_be_bytes()) {
        *o ^= c;
    }
    out
}

/// KDF-9: the routing tag of a pairwise epoch.
pub fn routing_tag(s3: &Secret<16>) -> [u8; 8] {
    *crypto::derive::<8>(s3.expose(), &[TAG]).expose()
}

/// KDF-10: the key-confirmation key.
pub fn confirm_key(s4: &Secret<16>) -> Secret<32> {
    crypto::derive(s4.expose(), &[CONFIRM])
}

/// EPOCH-4: `HMAC(confirm key, "sotto/v1/confirm" || prev_tag || E)[0..16]`.
pub fn epoch_confirm(key: &Secret<32>, prev_tag: &[u8; 8], e: &DhPublic) -> [u8; 16] {
    first_16(&crypto::hmac(key.expose(), &[CONFIRM, prev_tag, &e.0]))
}

/// KDF-11: `CK_0` of group member `index`.
pub fn group_chain_start(gmk: &Secret<32>, s1: &Secret<16>, index: u8) -> Secret<32> {
    let prk = crypto::extract(s1.expose(), gmk.expose());
    crypto::expand(&prk, &[GROUP_CHAIN, &[index]])
}

/// KDF-12: the routing tag of a group epoch.
pub fn group_tag(s3: &Secret<16>) -> [u8; 8] {
    *crypto::derive::<8>(s3.expose(), &[GROUP_TAG]).expose()
}

/// GRP-9: a member's confirmation that it holds a group epoch's key.
pub fn group_confirm(s4: &Secret<16>, group_id: &[u8; 16], epoch: u32, index: u8) -> [u8; 16] {
    let key = confirm_key(s4);
    first_16(&crypto::hmac(
        key.expose(),
        &[GROUP_CONFIRM, group_id, &epoch.to_be_bytes(), &[index]],
    ))
}

fn first_16(mac: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, m) in out.iter_mut().zip(mac.iter()) {
        *o = *m;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_in_the_spec_and_distinct_kdf() {
        let spec = include_str!("../../../docs/protocol.md");
        let mut seen = std::collections::BTreeSet::new();
        for (id, label) in ALL_LABELS {
            let label = core::str::from_utf8(label).unwrap_or_default();
            assert!(label.starts_with("sotto/v1/"), "{label}");
            assert!(
                spec.contains(&format!("| **{id}** | `{label}` |")),
                "{id} {label} not in protocol.md"
            );
            assert!(seen.insert(label), "duplicate label {label}");
        }
    }

    #[test]
    fn nonce_masks_the_counter_chain_4() {
        let s2 = Secret::new([0xaa; 16]);
        assert_eq!(nonce(&s2, 0), [0xaa; 12]);
        let n = nonce(&s2, 0x0102_0304);
        assert_eq!(n[8..], [0xab, 0xa8, 0xa9, 0xae]);
        assert_eq!(n[..8], [0xaa; 8]);
    }
}
