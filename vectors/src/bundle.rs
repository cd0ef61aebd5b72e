//! `bundle.json`: prekey bundles as the directory serves them (KEY-2..KEY-5) and their refusals.

use serde::{Deserialize, Serialize};
use sotto_core::PreKeyBundle;

use super::{Area, Case, Expect, Hex, PartyKeys, case, check, same, seeded};

/// What a verified bundle holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// User id.
    pub user: Hex,
    /// Public identity (KEY-2).
    pub identity: Hex,
    /// Signed prekey id.
    pub spk_id: u32,
    /// One-time prekey id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opk_id: Option<u32>,
}

/// The operations of `bundle.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// KEY-5: a party's bundle bytes.
    Encode { keys: PartyKeys, bytes: Hex },
    /// KEY-5: decoding and verifying, or the error.
    Decode {
        bytes: Hex,
        expect: Expect<Verified>,
    },
}

/// The `bundle` area.
pub struct Bundle;

fn decode(b: &[u8]) -> Expect<Verified> {
    Expect::from_result(PreKeyBundle::from_bytes(b), |v| Verified {
        user: Hex::of(v.user_id().0),
        identity: Hex(v.identity().to_bytes()),
        spk_id: v.signed_prekey().id(),
        opk_id: v.one_time_prekey().map(|o| o.id()),
    })
}

impl Area for Bundle {
    const NAME: &'static str = "bundle";
    const DESCRIPTION: &'static str = "Prekey bundles: identity, signed prekey and optional one-time prekey, verified with verify_strict (section 3).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let mut cases = Vec::new();
        let mut with_opk = Vec::new();
        for opk in [false, true] {
            let keys = PartyKeys::random(&mut r, 5, opk);
            let bytes = keys.bundle().map(|b| b.to_bytes()).unwrap_or_default();
            let name = if opk {
                "KEY-5 bundle with a one-time prekey"
            } else {
                "KEY-5 bundle without a one-time prekey"
            };
            cases.push(case(
                name,
                &["KEY-2", "KEY-3", "KEY-4", "KEY-5"],
                Op::Encode {
                    keys,
                    bytes: Hex(bytes.clone()),
                },
            ));
            cases.push(case(
                &format!("{name} verifies"),
                &["KEY-5"],
                Op::Decode {
                    expect: decode(&bytes),
                    bytes: Hex(bytes.clone()),
                },
            ));
            with_opk = bytes;
        }
        let mut bad: Vec<(&str, &str, Vec<u8>)> = Vec::new();
        let mut spk_sig = with_opk.clone();
        spk_sig[1 + 10 + 128 + 4 + 32 + 1] ^= 0x01;
        bad.push(("KEY-3 forged prekey signature", "KEY-3", spk_sig));
        let mut ikd = with_opk.clone();
        ikd[1 + 10 + 32 + 3] ^= 0x01;
        bad.push(("KEY-2 IKd not the one signed", "KEY-2", ikd));
        let mut flag = with_opk.clone();
        flag[239] = 2;
        bad.push(("KEY-5 has_opk is 2", "KEY-5", flag));
        let mut zero = with_opk.clone();
        zero[240..244].copy_from_slice(&0u32.to_be_bytes());
        bad.push(("ID-4 one-time prekey id 0", "ID-4", zero));
        bad.push((
            "KEY-5 truncated",
            "KEY-5",
            with_opk[..with_opk.len() - 1].to_vec(),
        ));
        let mut trailing = with_opk.clone();
        trailing.push(0);
        bad.push(("KEY-5 trailing byte", "KEY-5", trailing));
        let mut v = with_opk.clone();
        v[0] = 0;
        bad.push(("KEY-5 version 0", "KEY-5", v));
        // NOT-5: a one-time prekey id 0 (layout) and a forged sig_ikd: the layout check wins.
        let mut both = with_opk.clone();
        both[240..244].copy_from_slice(&0u32.to_be_bytes());
        both[1 + 10 + 32 + 3] ^= 0x01;
        bad.push((
            "NOT-5 layout before signatures: id 0 and a bad sig_ikd",
            "NOT-5",
            both,
        ));
        // PRIM-2: `sig_ikd` with S + L (non-canonical S, the same point equation).
        let mut high_s = with_opk.clone();
        add_l(&mut high_s[1 + 10 + 64 + 32..1 + 10 + 128]);
        bad.push(("PRIM-2 sig_ikd with a non-canonical S", "PRIM-2", high_s));
        // PRIM-2: IKs is the identity point (small order) and every signature is R = identity,
        // S = 0, which a non-strict verifier accepts for any message.
        let mut weak = with_opk[..240].to_vec();
        weak[239] = 0;
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        let mut sig = [0u8; 64];
        sig[0] = 1;
        weak[11..43].copy_from_slice(&identity_point);
        weak[75..139].copy_from_slice(&sig);
        weak[175..239].copy_from_slice(&sig);
        bad.push(("PRIM-2 small-order IKs", "PRIM-2", weak));
        for (name, rule, b) in bad {
            cases.push(case(
                name,
                &[rule, "KEY-5"],
                Op::Decode {
                    expect: decode(&b),
                    bytes: Hex(b),
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Encode { keys, bytes } => same("bytes", &keys.bundle()?.to_bytes(), bytes),
            Op::Decode { bytes, expect } => check(decode(&bytes.0), expect),
        }
    }
}

/// Adds the Ed25519 group order L to the little-endian scalar `s` (32 bytes).
fn add_l(s: &mut [u8]) {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (b, l) in s.iter_mut().zip(L) {
        let v = u16::from(*b) + u16::from(l) + carry;
        *b = v.to_le_bytes()[0];
        carry = v >> 8;
    }
}
