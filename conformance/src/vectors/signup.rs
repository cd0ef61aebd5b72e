//! `signup.json`: the signup request body (SIGNUP-1..SIGNUP-3, Req1): keys and numbers only, signed,
//! with an optional proof of work; and what the membership service must refuse.

use serde::{Deserialize, Serialize};
use sotto_core::crypto::DhSecret;
use sotto_core::keys::OneTimePreKeyPair;
use sotto_core::signup::SignupRequest;

use super::{Area, Case, Expect, Hex, PartyKeys, bytes, case, check, same, seeded};

/// A one-time prekey with its private key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opk {
    /// Id (not 0).
    pub id: u32,
    /// Private key.
    pub secret: Hex,
}

/// What the service reads from a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The public identity (KEY-2).
    pub identity: Hex,
    /// The TLS public key to certify.
    pub tls_spki: Hex,
    /// One-time prekey ids.
    pub opk_ids: Vec<u32>,
    /// The proof-of-work nonce.
    pub pow_nonce: u64,
}

/// The operations of `signup.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// SIGNUP-1, SIGNUP-3: building a request (the proof of work counts up from nonce 0).
    Build {
        keys: PartyKeys,
        opks: Vec<Opk>,
        tls_spki: Hex,
        challenge: Hex,
        difficulty: u8,
        bytes: Hex,
    },
    /// SIGNUP-2: the service's checks at `difficulty`.
    Parse {
        bytes: Hex,
        difficulty: u8,
        expect: Expect<Accepted>,
    },
}

/// The `signup` area.
pub struct Signup;

fn build(
    keys: &PartyKeys,
    opks: &[Opk],
    spki: &Hex,
    challenge: &Hex,
    difficulty: u8,
) -> Result<Vec<u8>, String> {
    let id = keys.identity()?;
    let spk = keys.spk_pair()?;
    let opks = opks
        .iter()
        .map(|o| {
            let s = DhSecret::from_bytes(o.secret.arr()?);
            OneTimePreKeyPair::from_secret(o.id, s)
                .map(|p| *p.public())
                .map_err(|e| e.code().to_owned())
        })
        .collect::<Result<Vec<_>, String>>()?;
    SignupRequest::build(&id, &spki.0, spk.public(), &opks, &challenge.0, difficulty)
        .map(|r| r.to_bytes())
        .map_err(|e| e.code().to_owned())
}

fn parse(b: &[u8], difficulty: u8) -> Expect<Accepted> {
    Expect::from_result(SignupRequest::from_bytes(b, difficulty), |r| Accepted {
        identity: Hex(r.identity().to_bytes()),
        tls_spki: Hex::of(r.tls_spki()),
        opk_ids: r.one_time_prekeys().iter().map(|o| o.id()).collect(),
        pow_nonce: r.pow_nonce(),
    })
}

impl Area for Signup {
    const NAME: &'static str = "signup";
    const DESCRIPTION: &'static str = "The signup request body: TLS public key, identity, prekeys, challenge, proof of work and signature, and the membership service's refusals (section 4).";
    type Op = Op;

    fn generate() -> Vec<Case<Op>> {
        let mut r = seeded(Self::NAME);
        let keys = PartyKeys::random(&mut r, 0, false);
        let opks: Vec<Opk> = (1..=3)
            .map(|id| Opk {
                id,
                secret: Hex::of(bytes::<32>(&mut r)),
            })
            .collect();
        // A DER SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): 12-byte prefix and the key.
        let mut spki = hex::decode("302a300506032b6570032100").unwrap_or_default();
        spki.extend_from_slice(&bytes::<32>(&mut r));
        let spki = Hex(spki);
        let challenge = Hex::of(bytes::<16>(&mut r));
        let difficulty = 10;
        let good = build(&keys, &opks, &spki, &challenge, difficulty).unwrap_or_default();
        let mut cases = vec![
            case(
                "SIGNUP-1 a request with three one-time prekeys and 10 bits of work",
                &["SIGNUP-1", "SIGNUP-3", "Req1"],
                Op::Build {
                    keys: keys.clone(),
                    opks: opks.clone(),
                    tls_spki: spki.clone(),
                    challenge: challenge.clone(),
                    difficulty,
                    bytes: Hex(good.clone()),
                },
            ),
            case(
                "SIGNUP-2 the service accepts it",
                &["SIGNUP-2", "Req1"],
                Op::Parse {
                    expect: parse(&good, difficulty),
                    bytes: Hex(good.clone()),
                    difficulty,
                },
            ),
            case(
                "SIGNUP-3 a stricter service refuses the work",
                &["SIGNUP-3"],
                Op::Parse {
                    expect: parse(&good, 24),
                    bytes: Hex(good.clone()),
                    difficulty: 24,
                },
            ),
        ];
        let spki_at = 1usize;
        let identity_at = 3 + spki.0.len();
        let opk_count_at = identity_at + 128 + 100;
        let mut bad: Vec<(&str, &str, Vec<u8>)> = Vec::new();
        let mut sig = good.clone();
        let last = sig.len() - 1;
        sig[last] ^= 0x01;
        bad.push((
            "SIGNUP-2 request signature does not verify",
            "SIGNUP-2",
            sig,
        ));
        let mut ikd = good.clone();
        ikd[identity_at + 40] ^= 0x01;
        bad.push(("KEY-2 sig_ikd does not verify", "KEY-2", ikd));
        let mut long = good.clone();
        long[spki_at..spki_at + 2].copy_from_slice(&513u16.to_be_bytes());
        bad.push(("LIM-16 TLS key of 513 bytes", "LIM-16", long));
        let mut many = good.clone();
        many[opk_count_at..opk_count_at + 2].copy_from_slice(&101u16.to_be_bytes());
        bad.push(("LIM-15 101 one-time prekeys", "LIM-15", many));
        let mut dup = good.clone();
        let second_id = opk_count_at + 2 + 36;
        dup[second_id..second_id + 4].copy_from_slice(&1u32.to_be_bytes());
        bad.push(("SIGNUP-2 duplicate one-time prekey ids", "SIGNUP-2", dup));
        let mut zero = good.clone();
        zero[opk_count_at + 2..opk_count_at + 6].copy_from_slice(&0u32.to_be_bytes());
        bad.push(("ID-4 one-time prekey id 0", "ID-4", zero));
        let mut v2 = good.clone();
        v2[0] = 2;
        bad.push(("SIGNUP-1 version 2", "SIGNUP-1", v2));
        let mut trailing = good.clone();
        trailing.push(0);
        bad.push(("SIGNUP-1 trailing byte", "SIGNUP-1", trailing));
        bad.push((
            "SIGNUP-1 truncated",
            "SIGNUP-1",
            good[..good.len() - 1].to_vec(),
        ));
        for (name, rule, b) in bad {
            cases.push(case(
                name,
                &[rule, "SIGNUP-2"],
                Op::Parse {
                    expect: parse(&b, difficulty),
                    bytes: Hex(b),
                    difficulty,
                },
            ));
        }
        cases
    }

    fn run(op: &Op) -> Result<(), String> {
        match op {
            Op::Build {
                keys,
                opks,
                tls_spki,
                challenge,
                difficulty,
                bytes,
            } => same(
                "bytes",
                &build(keys, opks, tls_spki, challenge, *difficulty)?,
                bytes,
            ),
            Op::Parse {
                bytes,
                difficulty,
                expect,
            } => check(parse(&bytes.0, *difficulty), expect),
        }
    }
}
