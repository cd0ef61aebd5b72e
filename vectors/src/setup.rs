//! `session-setup.json`: the triple Diffie-Hellman and the sealed sender identity (X3DH-1..X3DH-6).

use serde::{Deserialize, Serialize};
use sotto_core::crypto::{DhPublic, DhSecret, Secret};
use sotto_core::{PreKeyBundle, x3dh};

use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, core_err, seeded};

/// What both sides derive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Derived {
    /// `DH(IKd_A, SPK_B)`.
    pub dh1: Hex,
    /// `DH(EK_A, IKd_B)`.
    pub dh2: Hex,
    /// `DH(EK_A, SPK_B)`.
    pub dh3: Hex,
    /// `DH(EK_A, OPK_B)`, if a one-time prekey was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh4: Option<Hex>,
    /// KDF-1.
    pub sk: Hex,
    /// KDF-2.
    pub rk0: Hex,
    /// KDF-3.
    pub ks0: Hex,
    /// KDF-4.
    pub identity_key: Hex,
    /// X3DH-3: `Seal(identity_key, 0^12, ad, user id_A || public identity_A || E_A0)`.
    pub identity_box: Hex,
}

/// An opened identity box.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// The initiator's user id.
    pub user: Hex,
    /// The initiator's public identity (KEY-2).
    pub identity: Hex,
    /// The initiator's epoch-0 ratchet key `E_A0` (X3DH-7).
    pub ratchet: Hex,
}

/// The operations of `session-setup.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// X3DH-1..X3DH-3 from A's keys, B's bundle and `EK_A`; B's side must agree.
    X3dh {
        alice: PartyKeys,
        /// B's keys; the bundle below is what A uses.
        bob: PartyKeys,
        bundle: Hex,
        ek: Hex,
        /// A's epoch-0 ratchet public key `E_A0`, sealed in the identity box (X3DH-3, X3DH-7).
        e0: Hex,
        /// The identity box's associated data: `0x12 || EK_A || spk_id || opk_id`.
        ad: Hex,
        expect: Expect<Derived>,
    },
    /// X3DH-6: opening the sealed identity.
    OpenIdentity {
        key: Hex,
        ad: Hex,
        sealed: Hex,
        expect: Expect<Sender>,
    },
}

/// The `session-setup` area.
pub struct Setup;

fn dh(a: &DhSecret, b: &DhPublic) -> sotto_core::Result<Secret<32>> {
    a.dh(b).map_err(Into::into)
}

fn derive(
    alice: &PartyKeys,
    bundle: &Hex,
    ek: &Hex,
    e0: &Hex,
    ad: &Hex,
) -> Result<Expect<Derived>, String> {
    let a = alice.identity()?;
    let ek = DhSecret::from_bytes(ek.arr()?);
    let e0 = DhPublic(e0.arr()?);
    let r = (|| {
        let b = PreKeyBundle::from_bytes(&bundle.0)?;
        let s = x3dh::initiator_secrets(&a, &ek, &b)?;
        let spk = b.signed_prekey().key();
        let dh4 = match b.one_time_prekey() {
            Some(o) => Some(Hex::of(dh(&ek, o.key())?.expose())),
            None => None,
        };
        let boxed =
            x3dh::seal_identity(&s.identity_key, &ad.0, &alice_user(alice)?, a.public(), &e0);
        Ok(Derived {
            dh1: Hex::of(dh(a.dh(), spk)?.expose()),
            dh2: Hex::of(dh(&ek, b.identity().ikd())?.expose()),
            dh3: Hex::of(dh(&ek, spk)?.expose()),
            dh4,
            sk: Hex::of(s.sk.expose()),
            rk0: Hex::of(s.rk0.expose()),
            ks0: Hex::of(s.ks0.expose()),
            identity_key: Hex::of(s.identity_key.expose()),
            identity_box: Hex::of(boxed),
        })
    })();
    Ok(Expect::from_result(r, |d| d))
}

fn alice_user(alice: &PartyKeys) -> sotto_core::Result<sotto_core::UserId> {
    alice
        .user_id()
        .map_err(|_| sotto_core::error::DecodeError::InvalidUserId.into())
}

fn ad_of(ek: &DhPublic, spk_id: u32, opk_id: u32) -> Hex {
    let mut ad = vec![0x12];
    ad.extend_from_slice(&ek.0);
    ad.extend_from_slice(&spk_id.to_be_bytes());
    ad.extend_from_slice(&opk_id.to_be_bytes());
    Hex(ad)
}

fn open(key: &Hex, ad: &Hex, sealed: &Hex) -> Result<Expect<Sender>, String> {
    Ok(Expect::from_result(
        x3dh::open_identity(&Secret::new(key.arr()?), &ad.0, &sealed.0),
        |i: x3dh::Initiator| Sender {
            user: Hex::of(i.user.0),
            identity: Hex(i.identity.to_bytes()),
            ratchet: Hex::of(i.ratchet.0),
        },
    ))
}

impl Area for Setup {
    const NAME: &'static str = "session-setup";
    const DESCRIPTION: &'static str = "Session setup: the triple Diffie-Hellman over a verified bundle, SK, RK_0, KS_0 and the sealed sender identity (section 7).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let alice = PartyKeys::random(&mut r, 1, false);
        let mut cases = Vec::new();
        let mut opened_key = None;
        for with_opk in [false, true] {
            let bob = PartyKeys::random(&mut r, 2, with_opk);
            let ek = Hex::of(bytes::<32>(&mut r));
            let e0 = Hex::of(DhSecret::from_bytes(bytes::<32>(&mut r)).public().0);
            let bundle = Hex(bob.bundle().map(|b| b.to_bytes()).unwrap_or_default());
            let ek_pub = DhSecret::from_bytes(ek.arr().unwrap_or([0; 32])).public();
            let ad = ad_of(&ek_pub, bob.spk_id, bob.opk_id.unwrap_or(0));
            let expect =
                derive(&alice, &bundle, &ek, &e0, &ad).unwrap_or(Expect::Error("schema".into()));
            if let Expect::Ok(d) = &expect {
                opened_key = Some((d.identity_key.clone(), ad.clone(), d.identity_box.clone()));
            }
            cases.push(case(
                if with_opk {
                    "X3DH-2 setup with a one-time prekey"
                } else {
                    "X3DH-2 setup from a card (no one-time prekey)"
                },
                &["X3DH-1", "X3DH-2", "X3DH-3", "X3DH-5", "Req2"],
                Op::X3dh {
                    alice: alice.clone(),
                    bob,
                    bundle,
                    ek,
                    e0: e0.clone(),
                    ad,
                    expect,
                },
            ));
        }
        // A peer that signs a low-order point as its prekey: only PRIM-1 stops it.
        let bob = PartyKeys::random(&mut r, 2, false);
        let low = bob
            .identity()
            .map(|id| id.sign_prekey(1, DhPublic([0; 32])))
            .map(|spk| {
                PreKeyBundle::new(
                    bob.user_id().unwrap_or(sotto_core::UserId([2; 10])),
                    *bob.identity().expect("valid keys").public(),
                    spk,
                    None,
                )
                .to_bytes()
            })
            .unwrap_or_default();
        let ek = Hex::of(bytes::<32>(&mut r));
        let e0 = Hex::of(DhSecret::from_bytes(bytes::<32>(&mut r)).public().0);
        // The associated data these setups would use (`0x12 || EK_A || spk_id || opk_id`), although
        // both fail before the identity box is sealed.
        let ad = ad_of(
            &DhSecret::from_bytes(ek.arr().unwrap_or([0; 32])).public(),
            bob.spk_id,
            0,
        );
        let low = Hex(low);
        let expect = derive(&alice, &low, &ek, &e0, &ad).unwrap_or(Expect::Error("schema".into()));
        cases.push(case(
            "PRIM-1 signed prekey is a low-order point: all-zero DH",
            &["PRIM-1", "X3DH-1"],
            Op::X3dh {
                alice: alice.clone(),
                bob: bob.clone(),
                bundle: low.clone(),
                ek: ek.clone(),
                e0: e0.clone(),
                ad: ad.clone(),
                expect,
            },
        ));
        // A bundle whose prekey signature was altered.
        let mut forged = bob.bundle().map(|b| b.to_bytes()).unwrap_or_default();
        let sig_at = 1 + 10 + 128 + 4 + 32;
        forged[sig_at] ^= 0x40;
        let forged = Hex(forged);
        let expect =
            derive(&alice, &forged, &ek, &e0, &ad).unwrap_or(Expect::Error("schema".into()));
        cases.push(case(
            "KEY-3 bundle with a forged prekey signature",
            &["KEY-3", "KEY-5", "X3DH-1", "Req5"],
            Op::X3dh {
                alice: alice.clone(),
                bob,
                bundle: forged,
                ek,
                e0: e0.clone(),
                ad,
                expect,
            },
        ));
        if let Some((key, ad, sealed)) = opened_key {
            let push = |cases: &mut Vec<Case<Op>>, name: &str, key: Hex, ad: Hex, sealed: Hex| {
                let expect = open(&key, &ad, &sealed).unwrap_or(Expect::Error("schema".into()));
                cases.push(case(
                    name,
                    &["X3DH-3", "X3DH-6"],
                    Op::OpenIdentity {
                        key,
                        ad,
                        sealed,
                        expect,
                    },
                ));
            };
            push(
                &mut cases,
                "X3DH-6 open the sealed identity",
                key.clone(),
                ad.clone(),
                sealed.clone(),
            );
            let mut t = sealed.0.clone();
            t[20] ^= 1;
            push(
                &mut cases,
                "X3DH-6 tampered identity box",
                key.clone(),
                ad.clone(),
                Hex(t),
            );
            push(
                &mut cases,
                "X3DH-6 identity box under a wrong key",
                Hex::of(bytes::<32>(&mut r)),
                ad.clone(),
                sealed.clone(),
            );
            // A box that opens but whose sig_ikd is forged.
            let mut plain = alice.user.0.clone();
            let mut identity = alice
                .identity()
                .map(|a| a.public().to_bytes())
                .unwrap_or_default();
            identity[127] ^= 1;
            plain.extend_from_slice(&identity);
            plain.extend_from_slice(&e0.0);
            let resealed = sotto_core::crypto::seal(
                &Secret::new(key.arr().unwrap_or([0; 32])),
                &[0; 12],
                &ad.0,
                &plain,
            );
            let expect =
                open(&key, &ad, &Hex(resealed.clone())).unwrap_or(Expect::Error("schema".into()));
            cases.push(case(
                "KEY-2 sealed identity with a forged sig_ikd",
                &["KEY-2", "X3DH-6", "Req5"],
                Op::OpenIdentity {
                    key,
                    ad,
                    sealed: Hex(resealed),
                    expect,
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::X3dh {
                alice,
                bob,
                bundle,
                ek,
                e0,
                ad,
                expect,
            } => {
                let got = derive(alice, bundle, ek, e0, ad)?;
                check(got.clone(), expect)?;
                // B derives the same secrets from his private keys (X3DH-6).
                if let Expect::Ok(d) = got {
                    let b = bob.identity()?;
                    let ek_pub = DhSecret::from_bytes(ek.arr()?).public();
                    let (dh2, ik) = x3dh::responder_identity_key(&b, &ek_pub)
                        .map_err(|e| core_err("responder", e))?;
                    let opk = bob.opk_pair()?;
                    let s = x3dh::responder_secrets(
                        &b,
                        &bob.spk_pair()?,
                        opk.as_ref(),
                        &ek_pub,
                        dh2,
                        ik,
                        alice.identity()?.public(),
                    )
                    .map_err(|e| core_err("responder", e))?;
                    super::same("responder sk", s.sk.expose(), &d.sk)?;
                    super::same(
                        "responder identity key",
                        s.identity_key.expose(),
                        &d.identity_key,
                    )?;
                }
                Ok(())
            }
            Op::OpenIdentity {
                key,
                ad,
                sealed,
                expect,
            } => check(open(key, ad, sealed)?, expect),
        }
    }
}
