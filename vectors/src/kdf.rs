//! `kdf.json`: every derivation of protocol.md section 6 (KDF-1..KDF-13) and the X25519 it starts
//! from (PRIM-1, with the all-zero rejection), each with explicit inputs and outputs.

use serde::{Deserialize, Serialize};
use sotto_core::crypto::{DhPublic, DhSecret, Secret, SignPublic};
use sotto_core::kdf;

use super::{Area, Case, Expect, Hex, bytes, case, check, same, seeded};

/// The operations of `kdf.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// PRIM-1: `X25519(secret, public)`; an all-zero result is `non_contributory_dh`.
    X25519 {
        secret: Hex,
        public: Hex,
        expect: Expect<Shared>,
    },
    /// KDF-1.
    X3dh {
        dh1: Hex,
        dh2: Hex,
        dh3: Hex,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dh4: Option<Hex>,
        iks_a: Hex,
        iks_b: Hex,
        sk: Hex,
    },
    /// KDF-2, KDF-3.
    RootAndKeyshare { sk: Hex, rk0: Hex, ks0: Hex },
    /// KDF-4.
    IdentityKey {
        dh2: Hex,
        ek: Hex,
        ikd_b: Hex,
        key: Hex,
    },
    /// KDF-5.
    EpochStep {
        rk: Hex,
        dh: Hex,
        rk_next: Hex,
        ks: Hex,
    },
    /// CHAIN-1.
    ChainStart { mk: Hex, s1: Hex, ck0: Hex },
    /// KDF-6, KDF-7, KDF-8.
    ChainStep {
        ck: Hex,
        k: Hex,
        id: Hex,
        ck_next: Hex,
    },
    /// CHAIN-4.
    Nonce { s2: Hex, n: u32, nonce: Hex },
    /// KDF-9.
    RoutingTag { s3: Hex, tag: Hex },
    /// KDF-10.
    ConfirmKey { s4: Hex, key: Hex },
    /// EPOCH-4.
    EpochConfirm {
        key: Hex,
        prev_tag: Hex,
        e: Hex,
        confirm: Hex,
    },
    /// KDF-11.
    GroupChainStart {
        gmk: Hex,
        s1: Hex,
        index: u8,
        ck0: Hex,
    },
    /// KDF-12.
    GroupTag { s3: Hex, tag: Hex },
    /// GRP-9 (KDF-13).
    GroupConfirm {
        s4: Hex,
        group_id: Hex,
        epoch: u32,
        index: u8,
        confirm: Hex,
    },
}

/// A DH output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// The 32-byte shared secret.
    pub shared: Hex,
}

/// The `kdf` area.
pub struct Kdf;

fn x25519(secret: [u8; 32], public: [u8; 32]) -> Expect<Shared> {
    match DhSecret::from_bytes(secret).dh(&DhPublic(public)) {
        Ok(s) => Expect::Ok(Shared {
            shared: Hex::of(s.expose()),
        }),
        Err(e) => Expect::refused(&sotto_core::Error::from(e)),
    }
}

impl Area for Kdf {
    const NAME: &'static str = "kdf";
    const DESCRIPTION: &'static str = "Every HKDF derivation and label of protocol.md section 6, and the X25519 with the all-zero rejection they start from.";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let mut cases = Vec::new();
        let a: [u8; 32] = bytes(&mut r);
        let b: [u8; 32] = bytes(&mut r);
        let b_pub = DhSecret::from_bytes(b).public().0;
        cases.push(case(
            "PRIM-1 X25519 of two random keys",
            &["PRIM-1"],
            Op::X25519 {
                secret: Hex::of(a),
                public: Hex::of(b_pub),
                expect: x25519(a, b_pub),
            },
        ));
        // Low-order points: 0, 1 and the order-8 point of RFC 7748 give an all-zero output.
        let mut one = [0u8; 32];
        one[0] = 1;
        let order8 =
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap_or_default()
                .try_into()
                .unwrap_or([0; 32]);
        for (what, p) in [("zero", [0u8; 32]), ("one", one), ("order-8 point", order8)] {
            cases.push(case(
                &format!("PRIM-1 all-zero DH rejected: public key {what}"),
                &["PRIM-1"],
                Op::X25519 {
                    secret: Hex::of(a),
                    public: Hex::of(p),
                    expect: x25519(a, p),
                },
            ));
        }
        let dhs: Vec<Secret<32>> = (0..4).map(|_| Secret::new(bytes(&mut r))).collect();
        let iks_a = SignPublic(bytes(&mut r));
        let iks_b = SignPublic(bytes(&mut r));
        for with_dh4 in [false, true] {
            let sk = kdf::x3dh_secret(
                &dhs[0],
                &dhs[1],
                &dhs[2],
                with_dh4.then(|| &dhs[3]),
                &iks_a,
                &iks_b,
            );
            cases.push(case(
                if with_dh4 {
                    "KDF-1 SK with a one-time prekey"
                } else {
                    "KDF-1 SK without a one-time prekey"
                },
                &["KDF-1", "X3DH-2"],
                Op::X3dh {
                    dh1: Hex::of(dhs[0].expose()),
                    dh2: Hex::of(dhs[1].expose()),
                    dh3: Hex::of(dhs[2].expose()),
                    dh4: with_dh4.then(|| Hex::of(dhs[3].expose())),
                    iks_a: Hex::of(iks_a.0),
                    iks_b: Hex::of(iks_b.0),
                    sk: Hex::of(sk.expose()),
                },
            ));
        }
        let sk = Secret::new(bytes(&mut r));
        let (rk0, ks0) = kdf::root_and_keyshare(&sk);
        cases.push(case(
            "KDF-2 KDF-3 root and key-share keys from SK",
            &["KDF-2", "KDF-3"],
            Op::RootAndKeyshare {
                sk: Hex::of(sk.expose()),
                rk0: Hex::of(rk0.expose()),
                ks0: Hex::of(ks0.expose()),
            },
        ));
        let dh2 = Secret::new(bytes(&mut r));
        let ek = DhPublic(bytes(&mut r));
        let ikd = DhPublic(bytes(&mut r));
        cases.push(case(
            "KDF-4 identity-box key",
            &["KDF-4", "X3DH-3"],
            Op::IdentityKey {
                dh2: Hex::of(dh2.expose()),
                ek: Hex::of(ek.0),
                ikd_b: Hex::of(ikd.0),
                key: Hex::of(kdf::identity_key(&dh2, &ek, &ikd).expose()),
            },
        ));
        let rk = Secret::new(bytes(&mut r));
        let dh = Secret::new(bytes(&mut r));
        let (rk_next, ks) = kdf::epoch_step(&rk, &dh);
        cases.push(case(
            "KDF-5 epoch root step",
            &["KDF-5", "EPOCH-2"],
            Op::EpochStep {
                rk: Hex::of(rk.expose()),
                dh: Hex::of(dh.expose()),
                rk_next: Hex::of(rk_next.expose()),
                ks: Hex::of(ks.expose()),
            },
        ));
        let mk = Secret::new(bytes(&mut r));
        let s1 = Secret::<16>::new(bytes(&mut r));
        let ck0 = kdf::chain_start(&mk, &s1);
        cases.push(case(
            "CHAIN-1 chain start from the master key and s1",
            &["CHAIN-1", "KS-3"],
            Op::ChainStart {
                mk: Hex::of(mk.expose()),
                s1: Hex::of(s1.expose()),
                ck0: Hex::of(ck0.expose()),
            },
        ));
        let (k, id, next) = kdf::chain_step(&ck0);
        cases.push(case(
            "KDF-6 KDF-7 KDF-8 one chain step",
            &["KDF-6", "KDF-7", "KDF-8", "CHAIN-2", "CHAIN-3"],
            Op::ChainStep {
                ck: Hex::of(ck0.expose()),
                k: Hex::of(k.expose()),
                id: Hex::of(id),
                ck_next: Hex::of(next.expose()),
            },
        ));
        let s2 = Secret::<16>::new(bytes(&mut r));
        for n in [0u32, 1, 0x0102_0304, u32::MAX] {
            cases.push(case(
                &format!("CHAIN-4 nonce for n = {n}"),
                &["CHAIN-4"],
                Op::Nonce {
                    s2: Hex::of(s2.expose()),
                    n,
                    nonce: Hex::of(kdf::nonce(&s2, n)),
                },
            ));
        }
        let s3 = Secret::<16>::new(bytes(&mut r));
        cases.push(case(
            "KDF-9 pairwise routing tag",
            &["KDF-9", "KS-3"],
            Op::RoutingTag {
                s3: Hex::of(s3.expose()),
                tag: Hex::of(kdf::routing_tag(&s3)),
            },
        ));
        let s4 = Secret::<16>::new(bytes(&mut r));
        let ckey = kdf::confirm_key(&s4);
        cases.push(case(
            "KDF-10 key-confirmation key",
            &["KDF-10", "KS-3"],
            Op::ConfirmKey {
                s4: Hex::of(s4.expose()),
                key: Hex::of(ckey.expose()),
            },
        ));
        let prev_tag: [u8; 8] = bytes(&mut r);
        let e = DhPublic(bytes(&mut r));
        cases.push(case(
            "EPOCH-4 key confirmation of an epoch start",
            &["EPOCH-4", "KDF-10"],
            Op::EpochConfirm {
                key: Hex::of(ckey.expose()),
                prev_tag: Hex::of(prev_tag),
                e: Hex::of(e.0),
                confirm: Hex::of(kdf::epoch_confirm(&ckey, &prev_tag, &e)),
            },
        ));
        let gmk = Secret::new(bytes(&mut r));
        for index in [0u8, 1, 63] {
            cases.push(case(
                &format!("KDF-11 group chain of member {index}"),
                &["KDF-11", "GRP-5"],
                Op::GroupChainStart {
                    gmk: Hex::of(gmk.expose()),
                    s1: Hex::of(s1.expose()),
                    index,
                    ck0: Hex::of(kdf::group_chain_start(&gmk, &s1, index).expose()),
                },
            ));
        }
        cases.push(case(
            "KDF-12 group routing tag",
            &["KDF-12", "GRP-5"],
            Op::GroupTag {
                s3: Hex::of(s3.expose()),
                tag: Hex::of(kdf::group_tag(&s3)),
            },
        ));
        let gid: [u8; 16] = bytes(&mut r);
        cases.push(case(
            "KDF-13 group ack confirmation",
            &["KDF-13", "GRP-9"],
            Op::GroupConfirm {
                s4: Hex::of(s4.expose()),
                group_id: Hex::of(gid),
                epoch: 3,
                index: 2,
                confirm: Hex::of(kdf::group_confirm(&s4, &gid, 3, 2)),
            },
        ));
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::X25519 {
                secret,
                public,
                expect,
            } => check(x25519(secret.arr()?, public.arr()?), expect),
            Op::X3dh {
                dh1,
                dh2,
                dh3,
                dh4,
                iks_a,
                iks_b,
                sk,
            } => {
                let dh4 = match dh4 {
                    Some(d) => Some(Secret::new(d.arr()?)),
                    None => None,
                };
                let got = kdf::x3dh_secret(
                    &Secret::new(dh1.arr()?),
                    &Secret::new(dh2.arr()?),
                    &Secret::new(dh3.arr()?),
                    dh4.as_ref(),
                    &SignPublic(iks_a.arr()?),
                    &SignPublic(iks_b.arr()?),
                );
                same("sk", got.expose(), sk)
            }
            Op::RootAndKeyshare { sk, rk0, ks0 } => {
                let (r, k) = kdf::root_and_keyshare(&Secret::new(sk.arr()?));
                same("rk0", r.expose(), rk0)?;
                same("ks0", k.expose(), ks0)
            }
            Op::IdentityKey {
                dh2,
                ek,
                ikd_b,
                key,
            } => same(
                "key",
                kdf::identity_key(
                    &Secret::new(dh2.arr()?),
                    &DhPublic(ek.arr()?),
                    &DhPublic(ikd_b.arr()?),
                )
                .expose(),
                key,
            ),
            Op::EpochStep {
                rk,
                dh,
                rk_next,
                ks,
            } => {
                let (r, k) = kdf::epoch_step(&Secret::new(rk.arr()?), &Secret::new(dh.arr()?));
                same("rk_next", r.expose(), rk_next)?;
                same("ks", k.expose(), ks)
            }
            Op::ChainStart { mk, s1, ck0 } => same(
                "ck0",
                kdf::chain_start(&Secret::new(mk.arr()?), &Secret::new(s1.arr()?)).expose(),
                ck0,
            ),
            Op::ChainStep { ck, k, id, ck_next } => {
                let (gk, gid, gnext) = kdf::chain_step(&Secret::new(ck.arr()?));
                same("k", gk.expose(), k)?;
                same("id", &gid, id)?;
                same("ck_next", gnext.expose(), ck_next)
            }
            Op::Nonce { s2, n, nonce } => {
                same("nonce", &kdf::nonce(&Secret::new(s2.arr()?), *n), nonce)
            }
            Op::RoutingTag { s3, tag } => {
                same("tag", &kdf::routing_tag(&Secret::new(s3.arr()?)), tag)
            }
            Op::ConfirmKey { s4, key } => same(
                "key",
                kdf::confirm_key(&Secret::new(s4.arr()?)).expose(),
                key,
            ),
            Op::EpochConfirm {
                key,
                prev_tag,
                e,
                confirm,
            } => same(
                "confirm",
                &kdf::epoch_confirm(
                    &Secret::new(key.arr()?),
                    &prev_tag.arr()?,
                    &DhPublic(e.arr()?),
                ),
                confirm,
            ),
            Op::GroupChainStart {
                gmk,
                s1,
                index,
                ck0,
            } => same(
                "ck0",
                kdf::group_chain_start(&Secret::new(gmk.arr()?), &Secret::new(s1.arr()?), *index)
                    .expose(),
                ck0,
            ),
            Op::GroupTag { s3, tag } => same("tag", &kdf::group_tag(&Secret::new(s3.arr()?)), tag),
            Op::GroupConfirm {
                s4,
                group_id,
                epoch,
                index,
                confirm,
            } => same(
                "confirm",
                &kdf::group_confirm(&Secret::new(s4.arr()?), &group_id.arr()?, *epoch, *index),
                confirm,
            ),
        }
    }
}
