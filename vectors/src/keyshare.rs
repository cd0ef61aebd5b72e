//! `keyshare.json`: the paper's key share, sealed and opened (KS-1..KS-4, Req4).

use serde::{Deserialize, Serialize};
use sotto_core::crypto::Secret;
use sotto_core::keyshare::KeyShare;

use super::{Area, Case, Expect, Hex, bytes, case, check, same, seeded};

/// The plaintext fields of a key-share block (KS-1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fields {
    /// Master key.
    pub mk: Hex,
    /// Chain salt.
    pub s1: Hex,
    /// Nonce mask.
    pub s2: Hex,
    /// Routing-tag seed.
    pub s3: Hex,
    /// Key-confirmation seed.
    pub s4: Hex,
    /// Epoch start, server-corrected ms.
    pub t0: u64,
}

impl Fields {
    pub(crate) fn of(k: &KeyShare) -> Self {
        let [s1, s2, s3, s4] = k.seeds();
        Fields {
            mk: Hex::of(k.mk().expose()),
            s1: Hex::of(s1.expose()),
            s2: Hex::of(s2.expose()),
            s3: Hex::of(s3.expose()),
            s4: Hex::of(s4.expose()),
            t0: k.t0(),
        }
    }

    pub(crate) fn share(&self) -> Result<KeyShare, String> {
        Ok(KeyShare::from_parts(
            self.mk.arr()?,
            self.s1.arr()?,
            self.s2.arr()?,
            self.s3.arr()?,
            self.s4.arr()?,
            self.t0,
        ))
    }
}

/// The operations of `keyshare.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// KS-1, KS-2: the 104-byte plaintext and the 120-byte sealed block.
    Seal {
        ks: Hex,
        ad: Hex,
        fields: Fields,
        plaintext: Hex,
        sealed: Hex,
    },
    /// KS-2, KS-4: opening, or the error.
    Open {
        ks: Hex,
        ad: Hex,
        sealed: Hex,
        expect: Expect<Fields>,
    },
}

/// The `keyshare` area.
pub struct KeyShareArea;

fn open(ks: &Hex, ad: &Hex, sealed: &Hex) -> Result<Expect<Fields>, String> {
    Ok(Expect::from_result(
        KeyShare::open(&Secret::new(ks.arr()?), &ad.0, &sealed.0),
        |k| Fields::of(&k),
    ))
}

impl Area for KeyShareArea {
    const NAME: &'static str = "keyshare";
    const DESCRIPTION: &'static str = "The key-share block: a master key and four random numbers per direction and epoch, sealed under the epoch's key-share key (section 8).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let share = KeyShare::from_parts(
            bytes(&mut r),
            bytes(&mut r),
            bytes(&mut r),
            bytes(&mut r),
            bytes(&mut r),
            1_767_225_600_000,
        );
        let ks = Hex::of(bytes::<32>(&mut r));
        let ad = Hex::of(bytes::<57>(&mut r));
        let sealed = share.seal(&Secret::new(ks.arr().unwrap_or([0; 32])), &ad.0);
        let mut cases = vec![case(
            "KS-2 seal a key-share block",
            &["KS-1", "KS-2", "Req4"],
            Op::Seal {
                ks: ks.clone(),
                ad: ad.clone(),
                fields: Fields::of(&share),
                plaintext: Hex::of(&share.to_plaintext()[..]),
                sealed: Hex::of(&sealed),
            },
        )];
        let mut push_open = |name: &str, ks: Hex, ad: Hex, sealed: Vec<u8>| {
            let sealed = Hex(sealed);
            let expect = open(&ks, &ad, &sealed).unwrap_or(Expect::Error("schema".into()));
            cases.push(case(
                name,
                &["KS-2", "KS-4"],
                Op::Open {
                    ks,
                    ad,
                    sealed,
                    expect,
                },
            ));
        };
        push_open(
            "KS-2 open a key-share block",
            ks.clone(),
            ad.clone(),
            sealed.clone(),
        );
        let mut tampered = sealed.clone();
        if let Some(last) = tampered.last_mut() {
            *last ^= 0x01;
        }
        push_open("KS-4 tampered tag", ks.clone(), ad.clone(), tampered);
        let mut flipped = sealed.clone();
        if let Some(first) = flipped.first_mut() {
            *first ^= 0x80;
        }
        push_open("KS-4 tampered ciphertext", ks.clone(), ad.clone(), flipped);
        push_open(
            "KS-4 wrong key",
            Hex::of(bytes::<32>(&mut r)),
            ad.clone(),
            sealed.clone(),
        );
        let mut other_ad = ad.0.clone();
        other_ad[0] ^= 1;
        push_open(
            "KS-4 changed associated data",
            ks.clone(),
            Hex(other_ad),
            sealed.clone(),
        );
        push_open(
            "KS-4 truncated block",
            ks.clone(),
            ad.clone(),
            sealed[..100].to_vec(),
        );
        push_open("KS-4 shorter than a tag", ks, ad, sealed[..15].to_vec());
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Seal {
                ks,
                ad,
                fields,
                plaintext,
                sealed,
            } => {
                let share = fields.share()?;
                same("plaintext", &share.to_plaintext(), plaintext)?;
                same(
                    "sealed",
                    &share.seal(&Secret::new(ks.arr()?), &ad.0),
                    sealed,
                )
            }
            Op::Open {
                ks,
                ad,
                sealed,
                expect,
            } => check(open(ks, ad, sealed)?, expect),
        }
    }
}
