//! `chain.json`: message-key chains (CHAIN-1..CHAIN-4) over many generations, and the bounds on reading
//! ahead (RX-2, LIM-3).

use serde::{Deserialize, Serialize};
use sotto_core::chain::Chain;
use sotto_core::crypto::Secret;
use sotto_core::kdf;

use super::{Area, Case, Expect, Hex, bytes, case, check, same, seeded};

/// The keys of one generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Counter.
    pub n: u32,
    /// `K_n`.
    pub key: Hex,
    /// `ID_n`.
    pub id: Hex,
    /// `nonce_n`.
    pub nonce: Hex,
}

/// How many keys a read-ahead skipped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Keys stored for skipped messages.
    pub skipped: u32,
}

/// The operations of `chain.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// The keys of chosen generations of the chain seeded by `mk`, `s1`, `s2`.
    Generations {
        mk: Hex,
        s1: Hex,
        s2: Hex,
        generations: Vec<Generation>,
    },
    /// After `consumed` messages, asking for message `request` (RX-2).
    ReadAhead {
        mk: Hex,
        s1: Hex,
        s2: Hex,
        consumed: u32,
        request: u32,
        expect: Expect<Skipped>,
    },
}

/// The `chain` area.
pub struct ChainArea;

fn chain(mk: &Hex, s1: &Hex, s2: &Hex) -> Result<Chain, String> {
    Ok(Chain::new(
        kdf::chain_start(&Secret::new(mk.arr()?), &Secret::new(s1.arr()?)),
        Secret::new(s2.arr()?),
    ))
}

fn generations(mk: &Hex, s1: &Hex, s2: &Hex, wanted: &[u32]) -> Result<Vec<Generation>, String> {
    let mut c = chain(mk, s1, s2)?;
    let last = wanted.iter().copied().max().unwrap_or(0);
    let mut out = Vec::new();
    for _ in 0..=last {
        let (n, k) = c.advance().map_err(|e| e.code().to_owned())?;
        if wanted.contains(&n) {
            out.push(Generation {
                n,
                key: Hex::of(k.key.expose()),
                id: Hex::of(k.id.0),
                nonce: Hex::of(k.nonce),
            });
        }
    }
    Ok(out)
}

fn read_ahead(
    mk: &Hex,
    s1: &Hex,
    s2: &Hex,
    consumed: u32,
    request: u32,
) -> Result<Expect<Skipped>, String> {
    let mut c = chain(mk, s1, s2)?;
    for _ in 0..consumed {
        c.advance().map_err(|e| e.code().to_owned())?;
    }
    Ok(Expect::from_result(c.read_ahead(request), |a| Skipped {
        skipped: u32::try_from(a.skipped.len()).unwrap_or(u32::MAX),
    }))
}

impl Area for ChainArea {
    const NAME: &'static str = "chain";
    const DESCRIPTION: &'static str = "Message-key chains: K_n, ID_n and nonce_n over many generations from a key share's MK, s1 and s2, and the bounds on skipping ahead (section 9, RX-2).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let (mk, s1, s2) = (
            Hex::of(bytes::<32>(&mut r)),
            Hex::of(bytes::<16>(&mut r)),
            Hex::of(bytes::<16>(&mut r)),
        );
        let wanted = [0u32, 1, 2, 3, 127, 128, 999, 1000];
        let mut cases = vec![case(
            "CHAIN-2 generations 0..3, 127, 128, 999, 1000",
            &["CHAIN-1", "CHAIN-2", "CHAIN-3", "CHAIN-4", "Req3"],
            Op::Generations {
                mk: mk.clone(),
                s1: s1.clone(),
                s2: s2.clone(),
                generations: generations(&mk, &s1, &s2, &wanted).unwrap_or_default(),
            },
        )];
        for (name, consumed, request) in [
            ("RX-2 next message: nothing skipped", 3u32, 3u32),
            ("RX-2 gap of 5: five keys kept for later", 3, 8),
            ("RX-2 gap of exactly LIM-3", 0, 1000),
            ("RX-2 gap beyond LIM-3: too_many_skipped", 0, 1001),
            ("RX-2 behind the chain: duplicate", 5, 4),
        ] {
            let expect = read_ahead(&mk, &s1, &s2, consumed, request)
                .unwrap_or(Expect::Error("schema".into()));
            cases.push(case(
                name,
                &["RX-2", "LIM-3"],
                Op::ReadAhead {
                    mk: mk.clone(),
                    s1: s1.clone(),
                    s2: s2.clone(),
                    consumed,
                    request,
                    expect,
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Generations {
                mk,
                s1,
                s2,
                generations: want,
            } => {
                let wanted: Vec<u32> = want.iter().map(|g| g.n).collect();
                let got = generations(mk, s1, s2, &wanted)?;
                if got.len() != want.len() {
                    return Err(format!(
                        "expected {} generations, got {}",
                        want.len(),
                        got.len()
                    ));
                }
                for (g, w) in got.iter().zip(want) {
                    same(&format!("key {}", w.n), &g.key.0, &w.key)?;
                    same(&format!("id {}", w.n), &g.id.0, &w.id)?;
                    same(&format!("nonce {}", w.n), &g.nonce.0, &w.nonce)?;
                }
                Ok(())
            }
            Op::ReadAhead {
                mk,
                s1,
                s2,
                consumed,
                request,
                expect,
            } => check(read_ahead(mk, s1, s2, *consumed, *request)?, expect),
        }
    }
}
